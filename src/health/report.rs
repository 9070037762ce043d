//! [`HealthReport`] and [`CheckReport`]: what a group's checks found, and
//! their JSON form.

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, Serializer, ser::SerializeStruct};
use serde_json::{Map, Value};

use super::{HealthCheckResult, HealthStatus};

/// What one check reported in its latest run, as served.
///
/// Serializes as `{"status": "...", "duration_seconds": 0.012, "message":
/// "...", "details": {...}}`; `message` is left out when there is none and
/// `details` when empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    status: HealthStatus,
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    duration: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    details: Map<String, Value>,
}

impl CheckReport {
    /// The report of a run that returned `result` after `duration`;
    /// [`HealthStatus::Unhealthy`] becomes `failure_status`.
    pub(super) fn new(result: HealthCheckResult, failure_status: HealthStatus, duration: Duration) -> Self {
        let status = match result.status {
            HealthStatus::Unhealthy => failure_status,
            status => status,
        };
        Self { status, duration, message: result.message, details: result.details }
    }

    /// The status, after the check's failure status was applied (see
    /// [`CheckOptions::failure_status`](super::CheckOptions::failure_status)).
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// How long the run took, up to the check's timeout.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The check's message, or the reason of a failure the registry saw
    /// (`"timed out after 5 s"`, `"check panicked"`).
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The check's details; empty when it gave none.
    pub fn details(&self) -> &Map<String, Value> {
        &self.details
    }
}

/// The result of one group's checks: the aggregate status, each check's
/// report in registration order, and when the report was assembled.
///
/// Built by [`HealthRegistry::report`](super::HealthRegistry::report).
/// Serializes as the body of the health endpoints:
///
/// ```json
/// {
///   "status": "degraded",
///   "checks": {
///     "db": {"status": "healthy", "duration_seconds": 0.012},
///     "cache": {"status": "degraded", "duration_seconds": 0.5, "message": "timed out after 0.5 s"}
///   },
///   "timestamp": "2025-06-01T12:00:00.123Z"
/// }
/// ```
///
/// # Example
///
/// ```
/// use tower_observability::health::{HealthGroup, HealthRegistry, HealthStatus};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = HealthRegistry::builder().check("db", || async { HealthStatus::Healthy }).build();
/// let report = registry.report(HealthGroup::Ready).await;
/// assert_eq!(report.status(), HealthStatus::Healthy);
/// assert_eq!(report.check("db").unwrap().status(), HealthStatus::Healthy);
///
/// let json = serde_json::to_value(&report).unwrap();
/// assert_eq!(json["checks"]["db"]["status"], "healthy");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HealthReport {
    pub(super) status: HealthStatus,
    pub(super) checks: Vec<(Arc<str>, Arc<CheckReport>)>,
    pub(super) timestamp: SystemTime,
}

impl HealthReport {
    /// The worst status of the group's checks; healthy for an empty group.
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Each check's name and report, in registration order.
    pub fn checks(&self) -> impl ExactSizeIterator<Item = (&str, &CheckReport)> {
        self.checks.iter().map(|(name, report)| (&**name, &**report))
    }

    /// The report of the check named `name`, if it is in the group.
    pub fn check(&self, name: &str) -> Option<&CheckReport> {
        self.checks().find_map(|(n, report)| (n == name).then_some(report))
    }

    /// When the report was assembled (wall clock). Cached check results may
    /// be up to the registry's cache TTL older.
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }
}

impl Serialize for HealthReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Checks<'a>(&'a HealthReport);
        impl Serialize for Checks<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.checks())
            }
        }

        let mut s = serializer.serialize_struct("HealthReport", 3)?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("checks", &Checks(self))?;
        s.serialize_field("timestamp", &rfc3339(self.timestamp))?;
        s.end()
    }
}

fn seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// `t` as an RFC 3339 UTC timestamp with milliseconds,
/// `1970-01-01T00:00:00.000Z`; times before the epoch give the epoch.
pub(super) fn rfc3339(t: SystemTime) -> String {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
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
/// `days` after 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level Date
/// Algorithms", `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01, so that the leap day ends a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097; // [0, 146096]
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
