//! [`HealthReport`] and [`CheckReport`]: what a group's checks found, and
//! their JSON form.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::{Serialize, Serializer, ser::SerializeStruct};
use serde_json::{Map, Value};

use super::{HealthCheckResult, HealthStatus};
use crate::time::rfc3339;

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
