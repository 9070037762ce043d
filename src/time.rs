//! Wall-clock timestamps as the JSON answers and Alertmanager write them.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as an RFC 3339 UTC timestamp with milliseconds,
/// `1970-01-01T00:00:00.000Z` (humantime); times before the epoch give the
/// epoch.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t.max(UNIX_EPOCH)).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs: u64, millis: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(1_735_689_599, 0), "2024-12-31T23:59:59.000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(1)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(SystemTime::now()).len(), 24);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789); // a leap day
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
    }

    proptest! {
        /// Formatting keeps order and shape: a wrong month or day length
        /// would reorder some pair of instants.
        #[test]
        fn timestamps_sort_as_the_instants_they_format(a in 0_u64..253_402_300_800_000, b in 0_u64..253_402_300_800_000) {
            let format = |ms: u64| rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
            let (fa, fb) = (format(a), format(b));
            prop_assert_eq!(a.cmp(&b), fa.cmp(&fb), "{} {}", fa, fb);
            prop_assert_eq!(fa.len(), 24);
        }
    }
}
