//! Threshold alerts over the in-process windowed figures: rules, their
//! state machine, the `tower_observability_alerts` gauge,
//! `GET /monitoring/alerts`, and optional push to Prometheus Alertmanager
//! and JSON webhooks.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! use axum::Router;
//! use tower_observability::{
//!     alerts::{self, AlertEngine, AlertInputs, AlertRule, AlertState},
//!     metrics::HttpWindowStats,
//!     health::HealthStatus,
//!     window::Window,
//! };
//!
//! let engine = AlertEngine::builder().rules(AlertRule::defaults()).build()?;
//!
//! // Glue code fills the inputs from the in-process windows; here, 8 % of
//! // 500 requests failed over the last 5 minutes.
//! let inputs = AlertInputs::default()
//!     .with_window(HttpWindowStats::from_counts(Window::FiveMinutes, 500, 40).with_p95(0.4))
//!     .with_readiness(HealthStatus::Healthy);
//!
//! let t0 = Instant::now();
//! engine.evaluate(&inputs, t0);
//! engine.evaluate(&inputs, t0 + Duration::from_secs(60));
//! let firing = &engine.active()[0];
//! assert_eq!((firing.name.as_str(), firing.state), ("HighErrorRatio", AlertState::Firing));
//!
//! // Serve GET /monitoring/alerts next to the other monitoring routes.
//! let app: Router = Router::new().merge(alerts::router(engine));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! In a service, [`AlertEngine::spawn_evaluator`] evaluates every few
//! seconds on inputs read by a closure:
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_observability::{
//!     alerts::{AlertEngine, AlertInputs},
//!     cache::CacheHitRatios,
//! };
//!
//! # #[tokio::main]
//! # async fn main() {
//! let engine = AlertEngine::with_default_rules();
//! let ratios = CacheHitRatios::global();
//! engine.clone().spawn_evaluator(Duration::from_secs(15), move || {
//!     let mut inputs = AlertInputs::default();
//!     // inputs.windows = ... the HTTP windows of the overview ...
//!     inputs.add_hit_ratios(&ratios.snapshot());
//!     inputs
//! });
//! # }
//! ```
//!
//! # Default rules
//!
//! [`AlertRule::defaults`], the same rules as
//! `deploy/prometheus/alerts.yml` writes in PromQL for a fleet:
//!
//! | name | figure | window | fires when | resolves when | for | severity | min samples |
//! |---|---|---|---|---|---|---|---|
//! | `HighErrorRatio` | error ratio | 5m | > 5 % | ≤ 4.5 % | 1m | critical | 20 requests |
//! | `HighLatencyP95` | p95 latency | 5m | > 2 s | ≤ 1.8 s | 5m | warning | 20 requests |
//! | `LowCacheHitRatio` | hit ratio, per cache | 15m | < 70 % | ≥ 77 % | 5m | warning | 20 lookups |
//! | `ReadinessUnhealthy` | readiness | latest | unhealthy | degraded or healthy | 1m | critical | - |
//!
//! # States
//!
//! Each rule (and each cache, for a cache rule) has one alert:
//!
//! - **inactive** (not listed) → **pending** when the condition
//!   `value <comparison> threshold` holds, with at least `min_samples`;
//! - **pending** → **firing** once the condition has held for the rule's
//!   `for_` (at once when it is zero); pending → inactive as soon as it
//!   stops holding;
//! - **firing** → **resolved** when the value comes back past the *resolve
//!   threshold* ([`AlertRule::resolves_at`]): the firing threshold moved
//!   10 % toward the good side by default (`threshold × 0.9` for
//!   [`Comparison::Above`], `× 1.1` for [`Comparison::Below`]), or set per
//!   rule. This value hysteresis keeps a figure that hovers around its
//!   threshold from flapping: an error ratio at 4.8 % keeps a firing 5 %
//!   alert firing. Missing data and too few samples resolve a firing alert
//!   (as an absent series does in Prometheus) and never fire one.
//! - **resolved** alerts stay listed for
//!   [`resolved_retention`](AlertEngineBuilder::resolved_retention)
//!   (15 minutes, at most 100); a new episode starts over at pending.
//!
//! Time is whatever `now` [`AlertEngine::evaluate`] is given, so tests
//! drive it without sleeping.
//!
//! # Metrics
//!
//! | name | type | labels |
//! |---|---|---|
//! | [`ALERTS`] `tower_observability_alerts` | gauge | `alertname`, `severity`, `alertstate` (`pending`, `firing`), `cache` (cache rules) |
//! | [`ALERT_NOTIFICATIONS_SENT`] `tower_observability_alert_notifications_sent_total` | counter | `target` (`alertmanager`, `webhook`) |
//! | [`ALERT_NOTIFICATIONS_FAILED`] `tower_observability_alert_notifications_failed_total` | counter | `target` |
//! | [`ALERT_NOTIFICATIONS_DROPPED`] `tower_observability_alert_notifications_dropped_total` | counter | `target` |
//!
//! The gauge is Prometheus' own `ALERTS` series under a name of the crate:
//! `1` while the alert is in that state, `0` after it left it. It is not
//! called `ALERTS` because Prometheus writes that series itself for its
//! rules, and a scraped `ALERTS` would mix with it; the name is also
//! lowercase snake_case as `promtool check metrics` expects.
//!
//! # `GET /monitoring/alerts`
//!
//! [`router`] serves [`AlertEngine::report`] with `Cache-Control: no-store`;
//! see [`AlertsReport`] for the JSON.
//!
//! The engine is also an [`AlertsSource`]: the monitoring overview lists
//! its active alerts as an [`AlertsSummary`].
//!
//! # Notifications
//!
//! See [`AlertNotifier`]: bounded per-target queues that drop their oldest
//! alert when full, retries with capped exponential backoff, a timeout per
//! request, re-sends of firing alerts every minute.

mod builder;
mod change;
mod clock;
mod engine;
mod error;
mod evaluator;
mod history;
#[cfg(feature = "monitoring")]
pub(crate) mod http;
mod inputs;
mod notification;
#[cfg(feature = "notify")]
mod notify;
mod report;
mod rule;
mod silences;
mod state;
mod summary;

#[cfg(feature = "monitoring")]
pub use self::http::{HISTORY_ROUTE, ROUTE, RULES_ROUTE, SILENCES_ROUTE, alerts_json, router};
#[cfg(feature = "notify")]
pub use self::notify::{
    AlertNotifier, AlertNotifierBuilder, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BACKOFF,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_RESEND_INTERVAL, DEFAULT_TIMEOUT, MAX_BATCH, NotifierError,
    NotifierStats, SIGNATURE_HEADER, TargetInfo, TestResult,
};
pub use self::{
    builder::{AlertEngineBuilder, DEFAULT_MAX_RESOLVED, DEFAULT_RESOLVED_RETENTION},
    change::{MAX_FOR, RuleChange},
    engine::{AlertEngine, MAX_CACHE_ALERTS},
    error::RuleError,
    history::{
        DEFAULT_HISTORY_CAPACITY, HistoryFilter, HistoryReport, Transition, TransitionEntry, TransitionKind,
    },
    inputs::{AlertInputs, BurnRateFigures, CacheFigures},
    report::{Alert, AlertCounts, AlertEntry, AlertsReport, RuleEntry},
    rule::{
        AlertMetric, AlertRule, Comparison, DEFAULT_CACHE_HIT_RATIO, DEFAULT_ERROR_RATIO, DEFAULT_HYSTERESIS,
        DEFAULT_LATENCY_P95_SECONDS, DEFAULT_MIN_SAMPLES, Severity,
    },
    silences::{
        MAX_SILENCE_DURATION, MAX_SILENCE_REASON, MAX_SILENCES, Silence, SilenceEntry, SilenceError,
        SilenceMatcher,
    },
    state::AlertState,
    summary::{AlertsSource, AlertsSummary},
};

/// `tower_observability_alerts{alertname, severity, alertstate[, cache]}`:
/// `1` while an alert is pending or firing (by `alertstate`), `0` once it
/// left that state (gauge).
pub const ALERTS: &str = "tower_observability_alerts";

/// `tower_observability_alert_notifications_sent_total{target}`: alerts
/// delivered to Alertmanager or a webhook (counter).
pub const ALERT_NOTIFICATIONS_SENT: &str = "tower_observability_alert_notifications_sent_total";

/// `tower_observability_alert_notifications_failed_total{target}`: alerts
/// given up on after the last retry or refused (counter).
pub const ALERT_NOTIFICATIONS_FAILED: &str = "tower_observability_alert_notifications_failed_total";

/// `tower_observability_alert_notifications_dropped_total{target}`: alerts
/// dropped from a full queue (counter).
pub const ALERT_NOTIFICATIONS_DROPPED: &str = "tower_observability_alert_notifications_dropped_total";

/// Describes the alert metrics (`# HELP` lines) to the global `metrics`
/// recorder.
///
/// [`AlertEngineBuilder::build`] and [`AlertNotifierBuilder::build`] call
/// it; call it yourself when you install a recorder after both.
///
/// # Example
///
/// ```
/// tower_observability::alerts::describe();
/// ```
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        ALERTS,
        "Alerts of the in-process rules: 1 while pending or firing (alertstate), 0 after."
    );
    describe_counter!(ALERT_NOTIFICATIONS_SENT, "Alerts delivered to Alertmanager or a webhook.");
    describe_counter!(
        ALERT_NOTIFICATIONS_FAILED,
        "Alerts not delivered after the last retry, or refused by the receiver."
    );
    describe_counter!(ALERT_NOTIFICATIONS_DROPPED, "Alerts dropped because the notification queue was full.");
}

/// Inputs and engines the unit tests of the engine's files share.
#[cfg(test)]
mod fixtures {
    use std::time::Duration;

    use super::{AlertEngine, AlertInputs, AlertRule};
    use crate::metrics::HttpWindowStats;
    use crate::window::Window;

    pub(super) const S: Duration = Duration::from_secs(1);

    pub(super) fn errors(requests: u64, errors: u64) -> AlertInputs {
        AlertInputs::default().with_window(HttpWindowStats::from_counts(
            Window::FiveMinutes,
            requests,
            errors,
        ))
    }

    pub(super) fn engine(rules: impl IntoIterator<Item = AlertRule>) -> AlertEngine {
        AlertEngine::builder().rules(rules).build().unwrap()
    }
}
