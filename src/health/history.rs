//! The last runs of each check ([`CheckHistory`]) and flapping detection.

use std::{
    collections::VecDeque,
    time::{Duration, SystemTime},
};

use serde::{Serialize, Serializer, ser::SerializeStruct};

use super::HealthStatus;
use crate::time::rfc3339;

/// How many runs of each check are kept: the last 20.
pub const HISTORY_RUNS: usize = 20;
/// The window flapping is judged over: the last 5 minutes.
pub const FLAP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// A check whose status changed at least this often within
/// [`FLAP_WINDOW`] is flapping: 3 changes.
pub const FLAP_CHANGES: usize = 3;

/// One run of a check: when it ended, what it found, how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckRun {
    /// When the run ended (wall clock).
    pub at: SystemTime,
    /// The status it reported (after the check's failure status).
    pub status: HealthStatus,
    /// How long it took, up to the check's timeout.
    pub duration: Duration,
}

impl Serialize for CheckRun {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("CheckRun", 3)?;
        s.serialize_field("at", &rfc3339(self.at))?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("duration_seconds", &self.duration.as_secs_f64())?;
        s.end()
    }
}

/// The last [`HISTORY_RUNS`] runs of one check, oldest first, and whether
/// it is flapping: its status changed at least [`FLAP_CHANGES`] times in
/// the runs of the last [`FLAP_WINDOW`].
///
/// Serializes as `{"flapping": false, "changes": 1, "runs": [{"at": "...",
/// "status": "healthy", "duration_seconds": 0.002}, ..]}`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_observability::health::{HealthGroup, HealthRegistry, HealthStatus};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = HealthRegistry::builder()
///     .check("db", || async { HealthStatus::Healthy })
///     .cache_ttl(Duration::ZERO)
///     .build();
/// registry.report(HealthGroup::Ready).await;
/// registry.report(HealthGroup::Ready).await;
/// let history = registry.history("db").unwrap();
/// assert_eq!(history.runs.len(), 2);
/// assert!(!history.flapping);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CheckHistory {
    /// Whether the check is flapping now.
    pub flapping: bool,
    /// Status changes among the runs of the last [`FLAP_WINDOW`].
    pub changes: usize,
    /// The last runs, oldest first.
    pub runs: Vec<CheckRun>,
}

/// The ring of one check's runs.
#[derive(Debug, Default)]
pub(super) struct Runs(VecDeque<CheckRun>);

impl Runs {
    pub(super) fn push(&mut self, run: CheckRun) {
        if self.0.len() >= HISTORY_RUNS {
            self.0.pop_front();
        }
        self.0.push_back(run);
    }

    /// The history as of `now`.
    pub(super) fn history(&self, now: SystemTime) -> CheckHistory {
        let recent: Vec<&CheckRun> = self
            .0
            .iter()
            .filter(|r| now.duration_since(r.at).map_or(true, |age| age <= FLAP_WINDOW))
            .collect();
        let changes = recent.windows(2).filter(|pair| pair[0].status != pair[1].status).count();
        CheckHistory { flapping: changes >= FLAP_CHANGES, changes, runs: self.0.iter().copied().collect() }
    }

    /// The bytes its ring holds.
    pub(super) fn heap_bytes(&self) -> usize {
        self.0.capacity() * size_of::<CheckRun>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(at: SystemTime, status: HealthStatus) -> CheckRun {
        CheckRun { at, status, duration: Duration::from_millis(3) }
    }

    #[test]
    fn keeps_the_last_runs_and_detects_flapping_within_the_window() {
        use HealthStatus::{Healthy, Unhealthy};
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut runs = Runs::default();
        for i in 0..30u64 {
            runs.push(run(t0 + Duration::from_secs(i), Healthy));
        }
        let h = runs.history(t0 + Duration::from_secs(30));
        assert_eq!((h.runs.len(), h.changes, h.flapping), (HISTORY_RUNS, 0, false));
        assert_eq!(h.runs[0].at, t0 + Duration::from_secs(10), "the oldest were dropped");
        for (i, status) in [Unhealthy, Healthy, Unhealthy].into_iter().enumerate() {
            runs.push(run(t0 + Duration::from_secs(40 + i as u64), status));
        }
        let h = runs.history(t0 + Duration::from_secs(45));
        assert_eq!((h.changes, h.flapping), (3, true));
        // Ten minutes later the changes are out of the window.
        let h = runs.history(t0 + Duration::from_secs(45) + FLAP_WINDOW * 2);
        assert_eq!((h.changes, h.flapping), (0, false));
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["runs"][0]["status"], "healthy");
        assert_eq!(json["runs"][0]["duration_seconds"], 0.003);
    }
}
