//! The axum router fragment that serves the monitoring endpoints.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition format 0.0.4 |
//! | `GET /health/live` | `200` JSON while the process serves |
//! | `GET /health/ready` | `200` JSON when ready to take traffic |
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

use std::{fmt, sync::Arc};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::{ObservabilityLayer, telemetry::ServiceInfo};

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
/// Built by [`Observability::monitoring_router`](crate::Observability::monitoring_router).
#[derive(Clone)]
#[must_use]
pub struct MonitoringRouter {
    state: Arc<MonitoringState>,
    layer: ObservabilityLayer,
}

struct MonitoringState {
    prometheus: Option<PrometheusHandle>,
    info: Arc<ServiceInfo>,
}

impl MonitoringRouter {
    pub(crate) fn new(
        prometheus: Option<PrometheusHandle>,
        info: Arc<ServiceInfo>,
        layer: ObservabilityLayer,
    ) -> Self {
        Self { state: Arc::new(MonitoringState { prometheus, info }), layer }
    }
}

impl fmt::Debug for MonitoringRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitoringRouter")
            .field("service_name", &self.state.info.name)
            .field("prometheus", &self.state.prometheus.is_some())
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

/// Body of the health endpoints.
#[derive(Debug, Serialize)]
struct Health<'a> {
    status: &'static str,
    service: &'a str,
    version: &'a str,
    uptime_seconds: f64,
}

fn health(state: &MonitoringState) -> Response {
    no_store(
        Json(Health {
            status: "healthy",
            service: &state.info.name,
            version: &state.info.version,
            uptime_seconds: state.info.started.elapsed().as_secs_f64(),
        })
        .into_response(),
    )
}

/// Liveness depends on nothing outside the process: it answers while the
/// server's runtime serves requests.
async fn live(State(state): State<Arc<MonitoringState>>) -> Response {
    health(&state)
}

/// Readiness; registered dependency checks are not implemented yet, so it
/// answers as liveness does.
async fn ready(State(state): State<Arc<MonitoringState>>) -> Response {
    health(&state)
}
