//! What the engine lists: [`Alert`]s, their [`AlertCounts`], and the
//! [`AlertsReport`] of `GET /monitoring/alerts`.

use std::time::Instant;

use serde::Serialize;

use super::{AlertMetric, AlertRule, AlertState, Comparison, Severity, clock::WallClock};
use crate::{time::rfc3339, window::Window};

/// One alert of a rule (and of a cache, for cache rules), as listed by
/// [`AlertEngine::active`](super::AlertEngine::active) and
/// [`AlertEngine::resolved`](super::AlertEngine::resolved).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Alert {
    /// The rule's name (`alertname`).
    pub name: String,
    /// The rule's severity.
    pub severity: Severity,
    /// Pending, firing or resolved.
    pub state: AlertState,
    /// The rule's figure.
    pub metric: AlertMetric,
    /// The cache, for a cache rule.
    pub cache: Option<String>,
    /// The latest value seen; for a resolved alert, the value that resolved
    /// it, or the last one seen when its data went away.
    pub value: Option<f64>,
    /// The rule's firing threshold.
    pub threshold: f64,
    /// The rule's comparison.
    pub comparison: Comparison,
    /// The rule's window.
    pub window: Window,
    /// When the condition started to hold (the start of *pending*).
    pub active_at: Instant,
    /// When the current state began: pending, firing or resolved.
    pub since: Instant,
    /// The summary, with its placeholders filled.
    pub summary: String,
    /// The description, with its placeholders filled.
    pub description: String,
    /// Whether a silence covers it: listed, not notified.
    pub silenced: bool,
}

/// The listing of the alert of `rule` (and `cache`) in `state`.
pub(super) fn alert(
    rule: &AlertRule,
    cache: Option<&str>,
    state: AlertState,
    value: Option<f64>,
    active_at: Instant,
    since: Instant,
) -> Alert {
    Alert {
        name: rule.name.clone(),
        severity: rule.severity,
        state,
        metric: rule.metric.clone(),
        cache: cache.map(str::to_owned),
        value,
        threshold: rule.threshold,
        comparison: rule.comparison,
        window: rule.window,
        active_at,
        since,
        summary: rule.render(&rule.summary, value, cache),
        description: rule.render(&rule.description, value, cache),
        silenced: false,
    }
}

/// The number of active alerts (pending and firing) of each severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AlertCounts {
    /// Active critical alerts.
    pub critical: usize,
    /// Active warnings.
    pub warning: usize,
    /// Active infos.
    pub info: usize,
}

impl AlertCounts {
    /// The count of `severity`.
    #[must_use]
    pub const fn get(&self, severity: Severity) -> usize {
        match severity {
            Severity::Critical => self.critical,
            Severity::Warning => self.warning,
            Severity::Info => self.info,
        }
    }

    /// All active alerts.
    #[must_use]
    pub const fn total(&self) -> usize {
        self.critical + self.warning + self.info
    }
}

/// The active alerts by severity.
pub(super) fn counts(active: &[Alert]) -> AlertCounts {
    let mut counts = AlertCounts::default();
    for a in active {
        match a.severity {
            Severity::Critical => counts.critical += 1,
            Severity::Warning => counts.warning += 1,
            Severity::Info => counts.info += 1,
        }
    }
    counts
}

/// The body of `GET /monitoring/alerts`: the active alerts (most severe
/// first), their counts by severity, and the recently resolved alerts
/// (latest first).
///
/// ```json
/// {
///   "active": [{"name": "HighErrorRatio", "severity": "critical", "state": "firing",
///               "value": 0.0734, "threshold": 0.05, "window": "5m",
///               "since": "2025-06-01T12:00:00.000Z",
///               "summary": "7.34% of requests failed over the last 5m (threshold 5%)"}],
///   "counts": {"critical": 1, "warning": 0, "info": 0},
///   "resolved": [],
///   "evaluating": true,
///   "silences": 0
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AlertsReport {
    /// Pending and firing alerts, most severe first.
    pub active: Vec<AlertEntry>,
    /// The active alerts by severity.
    pub counts: AlertCounts,
    /// Resolved alerts still listed, latest first.
    pub resolved: Vec<AlertEntry>,
    /// Whether the rules are being evaluated (see
    /// [`AlertEngine::set_enabled`](super::AlertEngine::set_enabled)).
    pub evaluating: bool,
    /// The number of active silences.
    pub silences: usize,
}

/// One alert in an [`AlertsReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AlertEntry {
    /// The rule's name.
    pub name: String,
    /// The severity.
    pub severity: Severity,
    /// `pending`, `firing` or `resolved`.
    pub state: AlertState,
    /// The latest value, `null` when unknown.
    pub value: Option<f64>,
    /// The firing threshold.
    pub threshold: f64,
    /// `above` or `below`.
    pub comparison: Comparison,
    /// The rule's figure (`error_ratio`, `latency_p95_seconds`, ...).
    pub metric: &'static str,
    /// The window, `1m`, `5m` or `15m`.
    pub window: &'static str,
    /// The cache, for a cache rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// When the current state began, RFC 3339 UTC.
    pub since: String,
    /// When the condition started to hold, RFC 3339 UTC.
    pub active_at: String,
    /// The summary.
    pub summary: String,
    /// Whether a silence covers it (listed, not notified).
    pub silenced: bool,
}

impl AlertEntry {
    pub(super) fn new(a: &Alert, clock: &WallClock) -> Self {
        Self {
            name: a.name.clone(),
            severity: a.severity,
            state: a.state,
            value: a.value,
            threshold: a.threshold,
            comparison: a.comparison,
            metric: a.metric.as_str(),
            window: a.window.as_str(),
            cache: a.cache.clone(),
            since: rfc3339(clock.at(a.since)),
            active_at: rfc3339(clock.at(a.active_at)),
            summary: a.summary.clone(),
            silenced: a.silenced,
        }
    }
}

/// A rule as `GET /monitoring/alerts/rules` lists it, with the values in
/// effect:
///
/// ```json
/// {"name": "HighErrorRatio", "metric": "error_ratio", "window": "5m", "comparison": "above",
///  "threshold": 0.05, "resolves_at": 0.045, "for_seconds": 60.0, "severity": "critical",
///  "min_samples": 20, "summary": "{value} of requests failed over the last {window} (threshold {threshold})"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RuleEntry {
    /// The rule's name.
    pub name: String,
    /// The figure (`error_ratio`, `latency_p95_seconds`, ...).
    pub metric: &'static str,
    /// The cache, for a rule of one cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// The window, `1m`, `5m` or `15m`.
    pub window: &'static str,
    /// `above` or `below`.
    pub comparison: Comparison,
    /// The firing threshold.
    pub threshold: f64,
    /// The resolve threshold in effect ([`AlertRule::resolves_at`]).
    pub resolves_at: f64,
    /// The rule's `for`, in seconds.
    pub for_seconds: f64,
    /// The severity.
    pub severity: Severity,
    /// The fewest samples needed to fire.
    pub min_samples: u64,
    /// The summary template.
    pub summary: String,
}

impl From<&AlertRule> for RuleEntry {
    fn from(rule: &AlertRule) -> Self {
        Self {
            name: rule.name.clone(),
            metric: rule.metric.as_str(),
            cache: match &rule.metric {
                AlertMetric::CacheHitRatio { cache } => cache.clone(),
                _ => None,
            },
            window: rule.window.as_str(),
            comparison: rule.comparison,
            threshold: rule.threshold,
            resolves_at: rule.resolves_at(),
            for_seconds: rule.for_.as_secs_f64(),
            severity: rule.severity,
            min_samples: rule.min_samples,
            summary: rule.summary.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::alerts::{
        AlertRule,
        fixtures::{engine, errors},
    };

    #[test]
    fn report_serializes_as_documented() {
        let e = engine([AlertRule::high_error_ratio().for_duration(Duration::ZERO)]);
        let t0 = Instant::now();
        e.evaluate(&errors(1000, 73), t0);
        let json = serde_json::to_value(e.report()).unwrap();
        let a = &json["active"][0];
        assert_eq!(a["name"], "HighErrorRatio");
        assert_eq!(a["severity"], "critical");
        assert_eq!(a["state"], "firing");
        assert_eq!(a["value"], 0.073);
        assert_eq!(a["threshold"], 0.05);
        assert_eq!(a["window"], "5m");
        assert_eq!(a["comparison"], "above");
        assert_eq!(a["metric"], "error_ratio");
        assert!(a.get("cache").is_none());
        assert!(a["since"].as_str().unwrap().ends_with('Z'));
        assert_eq!(json["counts"], serde_json::json!({"critical": 1, "warning": 0, "info": 0}));
        assert_eq!(json["resolved"], serde_json::json!([]));
    }
}
