//! The axum router fragment that serves the monitoring endpoints.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition format 0.0.4 |
//! | `GET /health/live` | the liveness checks: `200` healthy or degraded, `503` unhealthy |
//! | `GET /health/ready` | the readiness checks: `200` healthy or degraded, `503` unhealthy |
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

use std::{fmt, sync::Arc, time::Instant};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::{
    ObservabilityLayer,
    health::{HealthGroup, HealthRegistry, HealthReport, HealthStatus, ShowDetails},
    telemetry::ServiceInfo,
};

/// The route templates this fragment serves; [`Observability::layer`]
/// excludes them from traces and metrics.
///
/// [`Observability::layer`]: crate::Observability::layer
pub const ROUTES: [&str; 3] = ["/metrics", "/health/live", "/health/ready"];

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
}

#[derive(Clone)]
struct MonitoringState {
    prometheus: Option<PrometheusHandle>,
    info: Arc<ServiceInfo>,
    health: HealthRegistry,
}

impl MonitoringRouter {
    pub(crate) fn new(
        prometheus: Option<PrometheusHandle>,
        info: Arc<ServiceInfo>,
        layer: ObservabilityLayer,
    ) -> Self {
        Self { state: Arc::new(MonitoringState { prometheus, info, health: HealthRegistry::new() }), layer }
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
    /// [`ROUTES`], as with `Observability`.
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
        Arc::make_mut(&mut self.state).health = registry;
        self
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
            .finish()
    }
}

impl<S> From<MonitoringRouter> for Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn from(router: MonitoringRouter) -> Self {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .with_state(router.state)
            // axum's `merge` keeps the merged-in router's default fallback:
            // layering it here keeps 404s observed when this fragment is
            // merged after the application's `.layer(..)`. The layer excludes
            // the routes above, and passes requests an outer copy observed.
            .layer(router.layer)
    }
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn metrics(State(state): State<Arc<MonitoringState>>) -> Response {
    let res = match &state.prometheus {
        Some(handle) => ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], handle.render()).into_response(),
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

/// Runs (or reads from the registry's cache) the checks of `group`:
/// `200` when healthy or degraded, `503` when unhealthy.
async fn health(state: &MonitoringState, group: HealthGroup) -> Response {
    let report = state.health.report(group).await;
    let code = report.status().http_status();
    let body = match state.health.show_details() {
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
async fn live(State(state): State<Arc<MonitoringState>>) -> Response {
    health(&state, HealthGroup::Live).await
}

/// Readiness: the registry's [`HealthGroup::Ready`] checks.
async fn ready(State(state): State<Arc<MonitoringState>>) -> Response {
    health(&state, HealthGroup::Ready).await
}
