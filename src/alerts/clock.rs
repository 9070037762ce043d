//! Monotonic instants to wall-clock timestamps.

use std::{
    fmt::Write as _,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// One reading of both clocks, to turn the engine's [`Instant`]s (injected
/// in tests) into the RFC 3339 timestamps of the JSON and of Alertmanager.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    instant: Instant,
    system: SystemTime,
}

impl WallClock {
    pub(crate) fn now() -> Self {
        Self { instant: Instant::now(), system: SystemTime::now() }
    }

    /// The wall-clock time of `at`.
    pub(crate) fn at(&self, at: Instant) -> SystemTime {
        if at >= self.instant {
            self.system + (at - self.instant)
        } else {
            self.system.checked_sub(self.instant - at).unwrap_or(UNIX_EPOCH)
        }
    }
}

/// `t` as an RFC 3339 UTC timestamp with milliseconds,
/// `1970-01-01T00:00:00.000Z`; times before the epoch give the epoch.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let second_of_day = secs % 86_400;
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        since_epoch.subsec_millis(),
    );
    out
}

/// Year, month (1-12) and day (1-31) of the proleptic Gregorian calendar,
/// `days` after 1970-01-01 (H. Hinnant's `civil_from_days`, for
/// non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789); // a leap day
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
    }

    #[test]
    fn instants_map_to_wall_time_both_ways() {
        let clock = WallClock::now();
        let later = clock.instant + Duration::from_secs(90);
        assert_eq!(clock.at(later).duration_since(clock.system).unwrap(), Duration::from_secs(90));
        if let Some(earlier) = clock.instant.checked_sub(Duration::from_secs(5)) {
            assert_eq!(clock.system.duration_since(clock.at(earlier)).unwrap(), Duration::from_secs(5));
        }
    }
}
