//! [`AlertsSummary`] and [`AlertsSource`]: the active alerts as the
//! monitoring overview shows them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::AlertEngine;

/// The `"alerts"` section of the overview: the alerts active now and their
/// counts, as an [`AlertsSource`] reports them.
///
/// An alert is any JSON object (the alert engine serializes its own type);
/// `counts` maps a state or a severity to a number, e.g. `{"firing": 2,
/// "pending": 1}`. Without a source both are empty.
///
/// # Example
///
/// ```
/// use tower_observability::monitoring::AlertsSummary;
///
/// let summary = AlertsSummary::new(
///     vec![serde_json::json!({"name": "HighErrorRatio", "state": "firing"})],
///     [("firing".to_owned(), 1)].into(),
/// );
/// assert_eq!(serde_json::to_value(&summary).unwrap()["counts"]["firing"], 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AlertsSummary {
    /// The active alerts, one JSON object each.
    pub active: Vec<serde_json::Value>,
    /// Alerts per state or severity.
    pub counts: BTreeMap<String, u64>,
}

impl AlertsSummary {
    /// A summary of `active` alerts with their `counts`.
    #[must_use]
    pub fn new(active: Vec<serde_json::Value>, counts: BTreeMap<String, u64>) -> Self {
        Self { active, counts }
    }
}

/// Where the overview reads its active alerts: the hook of the alert
/// engine, given to [`MonitoringRouter::alerts`](crate::monitoring::MonitoringRouter::alerts).
///
/// It is called once per overview, on the request's task: return a
/// snapshot of state the engine already holds, without blocking or
/// evaluating rules. A closure returning an [`AlertsSummary`] is a source.
///
/// # Example
///
/// ```
/// use tower_observability::monitoring::{AlertsSource, AlertsSummary, MonitoringRouter};
///
/// struct Engine;
///
/// impl AlertsSource for Engine {
///     fn alerts_summary(&self) -> AlertsSummary {
///         AlertsSummary::new(Vec::new(), [("firing".to_owned(), 0)].into())
///     }
/// }
///
/// let router = MonitoringRouter::standalone().alerts(Engine);
/// let router = router.alerts(|| AlertsSummary::default());
/// # let _ = router;
/// ```
pub trait AlertsSource: Send + Sync + 'static {
    /// The alerts active now.
    fn alerts_summary(&self) -> AlertsSummary;
}

impl<F> AlertsSource for F
where
    F: Fn() -> AlertsSummary + Send + Sync + 'static,
{
    fn alerts_summary(&self) -> AlertsSummary {
        self()
    }
}

/// The engine's active alerts, for the overview's `alerts` section.
impl AlertsSource for AlertEngine {
    fn alerts_summary(&self) -> AlertsSummary {
        let report = self.report();
        let active = report.active.iter().filter_map(|a| serde_json::to_value(a).ok()).collect();
        let counts = [
            ("critical".to_owned(), report.counts.critical as u64),
            ("warning".to_owned(), report.counts.warning as u64),
            ("info".to_owned(), report.counts.info as u64),
        ];
        AlertsSummary::new(active, counts.into())
    }
}
