//! The handlers of `/metrics`, `/health/live`, `/health/ready` and
//! `/monitoring/overview` (the dashboard page is [`dashboard`](super::dashboard)'s).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use axum::{
    Json,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::{auth::authorized, negotiation::MetricsFormat, openmetrics, overview, state::MonitoringState};
use crate::health::{CheckHistory, HealthGroup, HealthReport, HealthStatus, ShowDetails};

/// Sets `Cache-Control: no-store`: every answer of the fragment is live.
pub(super) fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The Prometheus rendering, with the process metrics collected just
/// before: OpenMetrics with exemplars when the `Accept` header asks for it,
/// the Prometheus text otherwise; `503` without a handle.
pub(super) async fn metrics(State(state): State<Arc<MonitoringState>>, headers: HeaderMap) -> Response {
    let res = match &state.prometheus {
        Some(handle) => {
            #[cfg(feature = "process-metrics")]
            {
                state.process_described.call_once(|| state.process.describe());
                state.process.collect();
            }
            let format = MetricsFormat::from_headers(&headers);
            let body = match format {
                MetricsFormat::OpenMetrics => openmetrics::render(handle, &state.exemplars),
                MetricsFormat::Prometheus => handle.render(),
            };
            let mut res = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
            res.headers_mut().insert(header::VARY, HeaderValue::from_static("accept"));
            res
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
    /// With `?details`: each check's last runs and whether it flaps.
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<BTreeMap<&'a str, CheckHistory>>,
}

/// Body of the health endpoints when details are hidden.
#[derive(Debug, Serialize)]
struct HealthSummary {
    status: HealthStatus,
}

/// Runs (or reads from the registry's cache) the checks of `group`:
/// `200` when healthy or degraded, `503` when unhealthy. Without the
/// bearer token (when one is set), only the status is shown.
async fn health(
    state: &MonitoringState,
    group: HealthGroup,
    headers: &axum::http::HeaderMap,
    details: bool,
) -> Response {
    let report = state.health.report(group).await;
    let code = report.status().http_status();
    let show = if authorized(state, headers) { state.health.show_details() } else { ShowDetails::Never };
    let body = match show {
        ShowDetails::Never => Json(HealthSummary { status: report.status() }).into_response(),
        ShowDetails::Always => {
            let history = details.then(|| {
                state
                    .health
                    .histories()
                    .into_iter()
                    .filter(|(_, groups, _)| groups.contains(&group))
                    .map(|(name, _, history)| (name, history))
                    .collect()
            });
            Json(Health {
                report: &report,
                service: &state.info.name,
                version: &state.info.version,
                uptime_seconds: state.info.started.elapsed().as_secs_f64(),
                history,
            })
            .into_response()
        }
    };
    no_store((code, body).into_response())
}

/// Liveness: the registry's [`HealthGroup::Live`] checks, none by default,
/// so that it depends on nothing outside the process unless told to.
/// `?details` adds each check's history.
pub(super) async fn live(
    State(state): State<Arc<MonitoringState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    health(&state, HealthGroup::Live, &headers, query.contains_key("details")).await
}

/// Readiness: the registry's [`HealthGroup::Ready`] checks. `?details`
/// adds each check's history.
pub(super) async fn ready(
    State(state): State<Arc<MonitoringState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    health(&state, HealthGroup::Ready, &headers, query.contains_key("details")).await
}

/// The overview, as JSON.
pub(super) async fn overview(State(state): State<Arc<MonitoringState>>) -> Response {
    no_store(Json(overview::build(&state).await).into_response())
}
