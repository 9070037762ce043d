//! The axum router fragment that serves the monitoring endpoints.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition format 0.0.4 |
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
//!   "alerts": {"active": [], "counts": {}}
//! }
//! ```
//!
//! `health` is `null` without a registry; a figure that cannot be known
//! (a ratio or quantile without requests, a process figure the platform
//! does not give) is `null`.

mod dashboard;
mod overview;

use std::{
    fmt,
    sync::{Arc, Once},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use self::overview::SharedAlerts;
pub use self::overview::{
    CacheOverview, GroupHealth, HealthOverview, HttpOverview, OVERVIEW_TOP_ROUTES, Overview, PerWindow,
    ProcessOverview, RouteOverview, ServiceOverview,
};
pub use crate::alerts::{AlertsSource, AlertsSummary};
use crate::{
    ObservabilityLayer,
    alerts::{AlertEngine, AlertInputs},
    cache::CacheHitRatios,
    health::{HealthGroup, HealthRegistry, HealthReport, HealthStatus, ShowDetails},
    metrics::HttpStats,
};

/// The route templates this fragment serves; [`Observability::layer`]
/// excludes them from traces and metrics.
///
/// [`Observability::layer`]: crate::Observability::layer
pub const ROUTES: [&str; 6] = [
    "/metrics",
    "/health/live",
    "/health/ready",
    "/monitoring",
    "/monitoring/overview",
    "/monitoring/alerts",
];

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The monitoring routes; turn it into a [`Router`] with `.merge(..)` or
/// `Router::from`.
///
/// Built by [`Observability::monitoring_router`](crate::Observability::monitoring_router),
/// or by [`MonitoringRouter::standalone`] without the global pipeline.
#[derive(Clone)]
#[must_use]
pub struct MonitoringRouter {
    state: Arc<MonitoringState>,
    layer: ObservabilityLayer,
    alert_engine: Option<(AlertEngine, Duration)>,
}

/// How often the alert rules are evaluated by default.
pub const ALERT_EVALUATION_INTERVAL: Duration = Duration::from_secs(15);

/// Name, version and start time of the service, for the monitoring routes.
#[derive(Debug)]
pub(crate) struct ServiceInfo {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) started: Instant,
}

#[derive(Clone)]
struct MonitoringState {
    prometheus: Option<PrometheusHandle>,
    info: Arc<ServiceInfo>,
    health: HealthRegistry,
    /// Whether `health` was given (else it is the empty default).
    health_set: bool,
    /// The windows of `layer`'s metrics.
    http: HttpStats,
    cache: CacheHitRatios,
    alerts: Option<SharedAlerts>,
    /// With a token, everything but the health status needs it.
    token: Option<Arc<str>>,
    process: metrics_process::Collector,
    /// Describes the process metrics at the first `/metrics`, once the
    /// recorder is surely installed.
    process_described: Arc<Once>,
}

impl MonitoringState {
    /// The alert engine's inputs at `now`: the windowed HTTP figures, the
    /// cache hit ratios and, when a health registry is set, readiness.
    async fn alert_inputs(&self, now: Instant) -> AlertInputs {
        let mut inputs = AlertInputs::from_http_stats(&self.http, now);
        inputs.add_hit_ratios(&self.cache.snapshot());
        if self.health_set {
            inputs.readiness = Some(self.health.report(HealthGroup::Ready).await.status());
        }
        inputs
    }
}

impl MonitoringRouter {
    pub(crate) fn new(
        prometheus: Option<PrometheusHandle>,
        info: Arc<ServiceInfo>,
        layer: ObservabilityLayer,
    ) -> Self {
        let state = MonitoringState {
            prometheus,
            info,
            health: HealthRegistry::new(),
            health_set: false,
            http: layer.http_stats(),
            cache: CacheHitRatios::global(),
            alerts: None,
            token: None,
            process: metrics_process::Collector::default(),
            process_described: Arc::new(Once::new()),
        };
        Self { state: Arc::new(state), layer, alert_engine: None }
    }

    /// The routes without [`Observability`](crate::Observability): for an
    /// application that installs its own recorder and subscriber, or for a
    /// test.
    ///
    /// The service name is `unknown_service` (the OTel default) and its
    /// version empty; `/metrics` answers `503` until given a handle with
    /// [`prometheus`](Self::prometheus); the health endpoints answer healthy
    /// until given a registry with [`health`](Self::health). 404s of the
    /// merged router are observed by an [`ObservabilityLayer`] excluding
    /// [`ROUTES`], as with `Observability`; give it the application's layer
    /// with [`observability_layer`](Self::observability_layer) so that the
    /// overview shows the application's requests.
    ///
    /// # Example
    ///
    /// ```
    /// use axum::Router;
    /// use tower_observability::{health::HealthRegistry, monitoring::MonitoringRouter};
    ///
    /// let registry = HealthRegistry::builder()
    ///     .check("db", || async { Ok::<(), std::io::Error>(()) })
    ///     .build();
    /// let app: Router = Router::new().merge(MonitoringRouter::standalone().health(registry));
    /// ```
    pub fn standalone() -> Self {
        let info = ServiceInfo {
            name: "unknown_service".to_owned(),
            version: String::new(),
            started: Instant::now(),
        };
        Self::new(None, Arc::new(info), ObservabilityLayer::new().exclude_routes(ROUTES))
    }

    /// Serves `registry` at `/health/live` (its [`HealthGroup::Live`]
    /// checks) and `/health/ready` (its [`HealthGroup::Ready`] checks),
    /// replacing the empty default registry; see [`crate::health`].
    ///
    /// Also describes the health metrics to the installed recorder.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use axum::Router;
    /// use tower_observability::{Observability, health::HealthRegistry};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let obs = Observability::builder().service_name("users-api").init()?;
    /// let registry = HealthRegistry::builder()
    ///     .check("db", || async { Ok::<(), std::io::Error>(()) })
    ///     .build();
    /// let app: Router = Router::new().merge(obs.monitoring_router().health(registry));
    /// # Ok(())
    /// # }
    /// ```
    pub fn health(mut self, registry: HealthRegistry) -> Self {
        crate::health::describe();
        let state = Arc::make_mut(&mut self.state);
        state.health = registry;
        state.health_set = true;
        self
    }

    /// Observes with (a clone of) `layer`, the one the application's router
    /// uses: `/monitoring/overview` and [`http_stats`](Self::http_stats)
    /// then read the figures of the application's requests, and the
    /// fragment's 404s are counted with them. The fragment's own routes
    /// ([`ROUTES`]) stay unobserved.
    ///
    /// [`Observability::monitoring_router`](crate::Observability::monitoring_router)
    /// does this already; it is for [`standalone`](Self::standalone).
    ///
    /// # Example
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_observability::{ObservabilityLayer, monitoring::MonitoringRouter};
    ///
    /// let layer = ObservabilityLayer::new();
    /// let app: Router = Router::new()
    ///     .route("/users/{id}", get(|| async { "user" }))
    ///     .layer(layer.clone())
    ///     .merge(MonitoringRouter::standalone().observability_layer(layer));
    /// ```
    pub fn observability_layer(mut self, layer: ObservabilityLayer) -> Self {
        let layer = layer.exclude_routes(ROUTES);
        Arc::make_mut(&mut self.state).http = layer.http_stats();
        self.layer = layer;
        self
    }

    /// Reads the cache hit ratios of the overview from `ratios` instead of
    /// [`CacheHitRatios::global`], for caches and layers given their own
    /// registry.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::{cache::CacheHitRatios, monitoring::MonitoringRouter};
    ///
    /// let ratios = CacheHitRatios::new();
    /// let router = MonitoringRouter::standalone().cache_hit_ratios(ratios.clone());
    /// # let _ = router;
    /// ```
    pub fn cache_hit_ratios(mut self, ratios: CacheHitRatios) -> Self {
        Arc::make_mut(&mut self.state).cache = ratios;
        self
    }

    /// Fills the overview's `"alerts"` section from `source`, the alert
    /// engine's hook (see [`AlertsSource`]); without one it is empty.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::monitoring::{AlertsSummary, MonitoringRouter};
    ///
    /// let router = MonitoringRouter::standalone()
    ///     .alerts(|| AlertsSummary::new(Vec::new(), [("firing".to_owned(), 0)].into()));
    /// # let _ = router;
    /// ```
    pub fn alerts(mut self, source: impl AlertsSource) -> Self {
        Arc::make_mut(&mut self.state).alerts = Some(SharedAlerts(Arc::new(source)));
        self
    }

    /// Guards the routes with a bearer token (RFC 6750): `/metrics`,
    /// `/monitoring`, `/monitoring/overview` and `/monitoring/alerts` answer
    /// `401` with `WWW-Authenticate: Bearer` and nothing else unless the
    /// request carries `Authorization: Bearer <token>`; `/health/live` and
    /// `/health/ready` stay open for probes but show only their status
    /// (`{"status": ".."}`, and the code) without the token, never check
    /// names, messages or details.
    ///
    /// The comparison takes the same time whatever the token sent. An empty
    /// token can never match: everything guarded is refused.
    ///
    /// The monitoring routes are for operators: prefer serving them on an
    /// internal listener (see [`serve`](Self::serve)); the token is a second
    /// line of defence, or the first where only one port is exposed.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::monitoring::MonitoringRouter;
    ///
    /// let token = std::env::var("MONITORING_TOKEN").unwrap_or_default();
    /// let router = MonitoringRouter::standalone().bearer_token(token);
    /// # let _ = router;
    /// ```
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.state).token = Some(Arc::from(token.into()));
        self
    }

    /// Serves the monitoring routes alone on `listener`, e.g. an internal
    /// port that the public load balancer does not reach. Runs until the
    /// server fails; spawn it beside the application's server.
    ///
    /// # Errors
    ///
    /// The I/O error that stopped the server.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tower_observability::Observability;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let obs = Observability::builder().service_name("users-api").init()?;
    /// let internal = tokio::net::TcpListener::bind("127.0.0.1:9100").await?;
    /// tokio::spawn(obs.monitoring_router().serve(internal));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, Router::<()>::from(self)).await
    }

    /// Evaluates `engine`'s rules every [`ALERT_EVALUATION_INTERVAL`] over
    /// the router's windowed HTTP figures, cache hit ratios and readiness
    /// (when a health registry is set), serves its report at
    /// `GET /monitoring/alerts`, and shows its active alerts in the overview.
    ///
    /// [`Observability::monitoring_router`](crate::Observability::monitoring_router)
    /// sets an engine with [`AlertRule::defaults`](crate::alerts::AlertRule::defaults).
    /// The evaluation task is spawned on the current tokio runtime when the
    /// router is built (`Router::from` / `.merge(..)`); without a runtime no
    /// task runs and a warning is logged.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_observability::{alerts::AlertEngine, monitoring::MonitoringRouter};
    ///
    /// let router = MonitoringRouter::standalone()
    ///     .alert_engine(AlertEngine::with_default_rules(), Duration::from_secs(5));
    /// # let _ = router;
    /// ```
    pub fn alert_engine(mut self, engine: AlertEngine, every: Duration) -> Self {
        self = self.alerts(engine.clone());
        self.alert_engine = Some((engine, every));
        self
    }

    /// The in-process windowed HTTP statistics the overview shows: those of
    /// the router's [`ObservabilityLayer`] (see
    /// [`observability_layer`](Self::observability_layer)).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::{monitoring::MonitoringRouter, window::Window};
    ///
    /// let stats = MonitoringRouter::standalone().http_stats();
    /// assert_eq!(stats.window(Window::OneMinute).requests, 0);
    /// ```
    pub fn http_stats(&self) -> HttpStats {
        self.state.http.clone()
    }

    /// The overview `GET /monitoring/overview` serves, built now: it runs
    /// (or reads from the registry's cache) the health checks.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::monitoring::MonitoringRouter;
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let overview = MonitoringRouter::standalone().overview().await;
    /// assert!(overview.health.is_none(), "no registry was given");
    /// assert_eq!(overview.http.active_requests, 0);
    /// # }
    /// ```
    pub async fn overview(&self) -> Overview {
        overview::build(&self.state).await
    }

    /// Serves `handle`'s rendering at `/metrics`, for a recorder installed
    /// without [`Observability`](crate::Observability).
    ///
    /// # Example
    ///
    /// ```
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// use tower_observability::monitoring::MonitoringRouter;
    ///
    /// let recorder = PrometheusBuilder::new().build_recorder();
    /// let router = MonitoringRouter::standalone().prometheus(recorder.handle());
    /// # let _ = router;
    /// ```
    pub fn prometheus(mut self, handle: PrometheusHandle) -> Self {
        Arc::make_mut(&mut self.state).prometheus = Some(handle);
        self
    }
}

impl fmt::Debug for MonitoringRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitoringRouter")
            .field("service_name", &self.state.info.name)
            .field("prometheus", &self.state.prometheus.is_some())
            .field("health", &self.state.health)
            .field("alerts", &self.state.alerts.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> From<MonitoringRouter> for Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn from(router: MonitoringRouter) -> Self {
        let alerts = match router.alert_engine {
            Some((engine, every)) => {
                let state = Arc::clone(&router.state);
                engine.clone().spawn_evaluator_on_current_runtime(every, move |now| {
                    let state = Arc::clone(&state);
                    async move { state.alert_inputs(now).await }
                });
                crate::alerts::router(engine)
            }
            None => Router::new(),
        };
        let guarded = Router::new()
            .route("/metrics", get(metrics))
            .route("/monitoring", get(dashboard::page))
            .route("/monitoring/overview", get(overview_handler))
            .with_state(router.state.clone())
            .merge(alerts)
            .route_layer(axum::middleware::from_fn_with_state(router.state.clone(), guard));
        Router::new()
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .with_state(router.state)
            .merge(guarded)
            // axum's `merge` keeps the merged-in router's default fallback:
            // layering it here keeps 404s observed when this fragment is
            // merged after the application's `.layer(..)`. The layer excludes
            // the routes above, and passes requests an outer copy observed.
            // Nested under a prefix, its routes' templates carry the prefix:
            // this copy observes the fallback only, whatever the prefix.
            .layer(router.layer.fallback_only())
    }
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn metrics(State(state): State<Arc<MonitoringState>>) -> Response {
    let res = match &state.prometheus {
        Some(handle) => {
            state.process_described.call_once(|| state.process.describe());
            state.process.collect();
            ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], handle.render()).into_response()
        }
        None => {
            (StatusCode::SERVICE_UNAVAILABLE, "no Prometheus recorder was installed by tower-observability\n")
                .into_response()
        }
    };
    no_store(res)
}

/// Body of the health endpoints when details are shown.
#[derive(Debug, Serialize)]
struct Health<'a> {
    #[serde(flatten)]
    report: &'a HealthReport,
    service: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'a str,
    uptime_seconds: f64,
}

/// Body of the health endpoints when details are hidden.
#[derive(Debug, Serialize)]
struct HealthSummary {
    status: HealthStatus,
}

/// Whether `headers` carry the bearer token of `state`, when it has one.
fn authorized(state: &MonitoringState, headers: &axum::http::HeaderMap) -> bool {
    let Some(token) = &state.token else { return true };
    let Some(sent) = headers.get(header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    !token.is_empty() && constant_time_eq(sent, token.as_bytes())
}

/// Compares two byte strings in a time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses guarded routes without the bearer token: `401`, nothing else.
async fn guard(
    State(state): State<Arc<MonitoringState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if authorized(&state, req.headers()) {
        return next.run(req).await;
    }
    let mut res = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    no_store(res)
}

/// Runs (or reads from the registry's cache) the checks of `group`:
/// `200` when healthy or degraded, `503` when unhealthy. Without the
/// bearer token (when one is set), only the status is shown.
async fn health(state: &MonitoringState, group: HealthGroup, headers: &axum::http::HeaderMap) -> Response {
    let report = state.health.report(group).await;
    let code = report.status().http_status();
    let show = if authorized(state, headers) { state.health.show_details() } else { ShowDetails::Never };
    let body = match show {
        ShowDetails::Never => Json(HealthSummary { status: report.status() }).into_response(),
        ShowDetails::Always => Json(Health {
            report: &report,
            service: &state.info.name,
            version: &state.info.version,
            uptime_seconds: state.info.started.elapsed().as_secs_f64(),
        })
        .into_response(),
    };
    no_store((code, body).into_response())
}

/// Liveness: the registry's [`HealthGroup::Live`] checks, none by default,
/// so that it depends on nothing outside the process unless told to.
async fn live(State(state): State<Arc<MonitoringState>>, headers: axum::http::HeaderMap) -> Response {
    health(&state, HealthGroup::Live, &headers).await
}

/// Readiness: the registry's [`HealthGroup::Ready`] checks.
async fn ready(State(state): State<Arc<MonitoringState>>, headers: axum::http::HeaderMap) -> Response {
    health(&state, HealthGroup::Ready, &headers).await
}

/// The overview, as JSON.
async fn overview_handler(State(state): State<Arc<MonitoringState>>) -> Response {
    no_store(Json(overview::build(&state).await).into_response())
}
