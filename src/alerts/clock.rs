//! Monotonic instants to wall-clock timestamps.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
