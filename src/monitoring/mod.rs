//! The axum router fragment that serves the monitoring endpoints.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition format 0.0.4; OpenMetrics 1.0 with exemplars when asked (see below) |
//! | `GET /health/live` | the liveness checks: `200` healthy or degraded, `503` unhealthy |
//! | `GET /health/ready` | the readiness checks: `200` healthy or degraded, `503` unhealthy |
//! | `GET /monitoring/overview` | the service at a glance, as JSON: see [`Overview`] |
//!
//! Every answer sets `Cache-Control: no-store`. These endpoints are for the
//! operators of the service, not its users: do not expose them publicly
//! (serve them on an internal listener, or guard them at the proxy).
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_observability::Observability;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let obs = Observability::builder().service_name("users-api").init()?;
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(obs.layer())
//!     .merge(obs.monitoring_router());
//! # Ok(())
//! # }
//! ```
//!
//! The health endpoints serve the checks of a [`HealthRegistry`] given to
//! [`MonitoringRouter::health`]; without one, both answer healthy with no
//! checks. Their JSON body is the group's [`HealthReport`] plus the
//! service's name, version (left out when empty) and uptime, or
//! `{"status": "..."}` alone with [`ShowDetails::Never`]:
//!
//! ```json
//! {
//!   "status": "unhealthy",
//!   "checks": {
//!     "db": {"status": "unhealthy", "duration_seconds": 5.0, "message": "timed out after 5 s"}
//!   },
//!   "timestamp": "2025-06-01T12:00:00.123Z",
//!   "service": "users-api",
//!   "version": "1.4.0",
//!   "uptime_seconds": 3600.5
//! }
//! ```
//!
//! `/metrics` answers in OpenMetrics 1.0 text
//! ([`OPENMETRICS_CONTENT_TYPE`]) a client whose `Accept` header names
//! `application/openmetrics-text` (as Prometheus does): the same series,
//! with the exemplars of the duration histograms, the trace id of a recent
//! sampled request on each bucket. Any other client (no `Accept`, `*/*`,
//! `text/plain`) gets the Prometheus text 0.0.4 as before; both carry
//! `Vary: Accept`. See [`MetricsFormat`] for the negotiation and
//! [`render_openmetrics`] for how the two are made from one recorder.
//!
//! `/metrics` also exports the standard process metrics
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
//! `process_open_fds`, ...), collected with `metrics-process` before each
//! rendering.
//!
//! # Overview
//!
//! `GET /monitoring/overview` reads the in-process windows of the last 1, 5
//! and 15 minutes: the HTTP figures of the [`ObservabilityLayer`] the
//! router belongs to ([`HttpStats`]: request rate in requests per second,
//! error ratio, p50/p95/p99 latency in seconds, overall and for the
//! [`OVERVIEW_TOP_ROUTES`] busiest routes of the last 15 minutes), cache hit
//! ratios with the windows below the warning threshold, the status of each
//! health group, process figures, and the active alerts of an
//! [`AlertsSource`]:
//!
//! ```json
//! {
//!   "service": {"name": "users-api", "version": "1.4.0", "uptime_seconds": 3600.5},
//!   "http": {
//!     "active_requests": 3,
//!     "windows": {
//!       "1m": {"requests": 100, "errors": 10, "request_rate": 1.67, "error_ratio": 0.1,
//!              "latency_seconds": {"p50": 0.0109, "p95": 0.2235, "p99": 0.2235}},
//!       "5m": {...}, "15m": {...}
//!     },
//!     "routes": [{"route": "/users/{id}", "windows": {"1m": {...}, "5m": {...}, "15m": {...}}}],
//!     "routes_omitted": 0
//!   },
//!   "cache": {
//!     "warn_below": 0.7, "min_samples": 20,
//!     "caches": [{"cache": "users", "route": null,
//!                 "windows": {"1m": {"hits": 5, "misses": 20, "ratio": 0.2}, "5m": {...}, "15m": {...}}}],
//!     "warnings": [{"cache": "users", "route": null, "window": "1m", "hits": 5, "misses": 20, "ratio": 0.2}]
//!   },
//!   "health": {"live": {"status": "healthy", "failing": []},
//!              "ready": {"status": "degraded", "failing": ["disk"]}},
//!   "process": {"resident_memory_bytes": 24117248, "virtual_memory_bytes": 1073741824,
//!               "cpu_seconds_total": 1.25, "open_fds": 17, "max_fds": 1024, "threads": 5,
//!               "start_time_seconds": 1750000000},
//!   "alerts": {"active": [], "counts": {}},
//!   "slow_requests": {"routes": [{"route": "/report", "requests": [
//!     {"trace_id": "08832169350a63adb0752f1e8d353b00", "span_id": "c7c60a8e859ed7fc",
//!      "seconds": 0.5068, "status": "200", "ended_at": "2025-06-01T12:00:00.123Z",
//!      "link": "http://localhost:16686/trace/08832169350a63adb0752f1e8d353b00"}]}]}
//! }
//! ```
//!
//! `slow_requests` lists, per route, the slowest sampled requests of the
//! last 15 minutes from the exemplar slots ([`SlowRequests`]; `link` is
//! `null` without [`MonitoringRouter::trace_link`]).
//!
//! `health` is `null` without a registry; a figure that cannot be known
//! (a ratio or quantile without requests, a process figure the platform
//! does not give) is `null`.
//!
//! [`HealthRegistry`]: crate::health::HealthRegistry
//! [`HealthReport`]: crate::health::HealthReport
//! [`ShowDetails::Never`]: crate::health::ShowDetails::Never
//! [`ObservabilityLayer`]: crate::ObservabilityLayer
//! [`HttpStats`]: crate::metrics::HttpStats

mod admin;
mod auth;
mod dashboard;
mod handlers;
mod negotiation;
mod openmetrics;
mod overview;
mod router;
mod slow;
mod state;
mod status;

use std::time::Duration;

pub use self::admin::TEST_ROUTE;
#[cfg(feature = "telemetry")]
pub(crate) use self::state::{ExportersSource, ServiceInfo};
pub use self::{
    negotiation::{MetricsFormat, OPENMETRICS_CONTENT_TYPE},
    openmetrics::render_openmetrics,
    overview::{
        CacheOverview, CheckOverview, ExporterOverview, GroupHealth, HealthOverview, HttpOverview,
        OVERVIEW_TOP_ROUTES, Overview, PerWindow, ProcessOverview, RouteOverview, ServiceOverview,
    },
    router::MonitoringRouter,
    slow::{
        RouteSlowRequests, SLOW_REQUESTS_PER_ROUTE, SLOW_REQUESTS_ROUTES, SLOW_REQUESTS_WITHIN, SlowRequest,
        SlowRequests, TraceLinkError,
    },
};
pub use crate::alerts::{AlertsSource, AlertsSummary};

/// The route templates this fragment serves; [`Observability::layer`]
/// excludes them from traces and metrics.
///
/// [`Observability::layer`]: crate::Observability::layer
pub const ROUTES: [&str; 14] = [
    "/metrics",
    "/health/live",
    "/health/ready",
    "/monitoring",
    "/monitoring/overview",
    "/monitoring/alerts",
    "/monitoring/alerts/history",
    "/monitoring/alerts/rules",
    "/monitoring/alerts/rules/{name}",
    "/monitoring/alerts/test",
    "/monitoring/silences",
    "/monitoring/silences/{id}",
    STATUS_ROUTE,
    SETTINGS_ROUTE,
];

/// The route of the self-monitoring status: `/monitoring/status`.
pub const STATUS_ROUTE: &str = "/monitoring/status";

/// The route of the run-time switches: `/monitoring/settings`.
pub const SETTINGS_ROUTE: &str = "/monitoring/settings";

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often the alert rules are evaluated by default.
pub const ALERT_EVALUATION_INTERVAL: Duration = Duration::from_secs(15);
