//! The read routes of the alerts: `GET /monitoring/alerts`, its history,
//! the rules in effect and the silences.

use std::{collections::HashMap, time::UNIX_EPOCH};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::{AlertEngine, HistoryFilter, RuleEntry, RuleError, Severity};

/// The route of [`router`]: `/monitoring/alerts`.
pub const ROUTE: &str = "/monitoring/alerts";
/// The route of the history: `/monitoring/alerts/history`.
pub const HISTORY_ROUTE: &str = "/monitoring/alerts/history";
/// The route of the rules: `/monitoring/alerts/rules` (and `/{name}`).
pub const RULES_ROUTE: &str = "/monitoring/alerts/rules";
/// The route of the silences: `/monitoring/silences`.
pub const SILENCES_ROUTE: &str = "/monitoring/silences";

/// The alerts of `engine` as the JSON of `GET /monitoring/alerts`, for a
/// handler of one's own or another page (the overview).
///
/// ```
/// use tower_observability::alerts::{AlertEngine, alerts_json};
///
/// let json = alerts_json(&AlertEngine::with_default_rules());
/// assert_eq!(json["counts"]["critical"], 0);
/// ```
#[must_use]
pub fn alerts_json(engine: &AlertEngine) -> serde_json::Value {
    serde_json::to_value(engine.report()).unwrap_or_default()
}

/// A router fragment serving the read routes of `engine`, each with
/// `Cache-Control: no-store`:
///
/// | route | answer |
/// |---|---|
/// | `GET /monitoring/alerts` | the [`AlertsReport`](super::AlertsReport) |
/// | `GET /monitoring/alerts/history?since=&rule=&severity=` | the [`HistoryReport`](super::HistoryReport): `since` is an RFC 3339 time or Unix seconds, `severity` `critical`, `warning` or `info`; `400` with `{"error": ..}` for a bad filter |
/// | `GET /monitoring/alerts/rules` | `{"rules": [RuleEntry..], "evaluating": true, "evaluations": 12}` |
/// | `GET /monitoring/alerts/rules/{name}?severity=` | one [`RuleEntry`]; `404` for no such rule, `409` when tiers share the name and no severity is given |
/// | `GET /monitoring/silences` | `{"silences": [SilenceEntry..]}` |
///
/// Merge it into the monitoring router; like the other monitoring
/// endpoints, it is for operators, not the public. The routes that change
/// the engine (silences, thresholds) are the monitoring router's, and exist
/// only with a write token (see `MonitoringRouter::write_token`).
///
/// `Router::from(engine)` is the same.
///
/// # Example
///
/// ```
/// use axum::Router;
/// use tower_observability::alerts::{self, AlertEngine};
///
/// let engine = AlertEngine::with_default_rules();
/// let app: Router = Router::new().merge(alerts::router(engine));
/// ```
pub fn router<S>(engine: AlertEngine) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(ROUTE, get(alerts))
        .route(HISTORY_ROUTE, get(history))
        .route(RULES_ROUTE, get(rules))
        .route(&format!("{RULES_ROUTE}/{{name}}"), get(rule))
        .route(SILENCES_ROUTE, get(silences))
        .with_state(engine)
}

impl<S> From<AlertEngine> for Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn from(engine: AlertEngine) -> Self {
        router(engine)
    }
}

/// `json` with `Cache-Control: no-store`.
fn fresh(json: impl serde::Serialize) -> Response {
    with_status(StatusCode::OK, json)
}

/// `json` answered with `status` and `Cache-Control: no-store`.
pub(crate) fn with_status(status: StatusCode, json: impl serde::Serialize) -> Response {
    let mut res = (status, Json(json)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A refused request: its status and the reason, answered as
/// `{"error": reason}` with `Cache-Control: no-store`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    reason: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, reason: impl std::fmt::Display) -> Self {
        Self { status, reason: reason.to_string() }
    }

    /// `422 Unprocessable Entity`: JSON of the wrong shape or values.
    pub(crate) fn unprocessable(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, reason)
    }

    /// The answer to a failed rule lookup or change: `404` unknown, `409`
    /// ambiguous, `422` invalid.
    pub(crate) fn rule(err: &RuleError) -> Self {
        let status = match err {
            RuleError::UnknownRule(_) => StatusCode::NOT_FOUND,
            RuleError::Ambiguous(_) => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        with_status(self.status, serde_json::json!({ "error": self.reason }))
    }
}

/// The `severity` query parameter, if any.
pub(crate) fn severity_param(query: &HashMap<String, String>) -> Result<Option<Severity>, ApiError> {
    query
        .get("severity")
        .map(|s| s.parse::<Severity>())
        .transpose()
        .map_err(|reason| ApiError::new(StatusCode::BAD_REQUEST, reason))
}

async fn alerts(State(engine): State<AlertEngine>) -> Response {
    fresh(engine.report())
}

async fn history(
    State(engine): State<AlertEngine>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut filter = HistoryFilter::default();
    if let Some(since) = query.get("since") {
        let parsed = humantime::parse_rfc3339_weak(since).ok().or_else(|| {
            since
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| UNIX_EPOCH + std::time::Duration::from_secs_f64(s.min(1e12)))
        });
        match parsed {
            Some(at) => filter = filter.since(at),
            None => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "since must be an RFC 3339 time (2025-06-01T12:00:00Z) or Unix seconds",
                )
                .into_response();
            }
        }
    }
    if let Some(rule) = query.get("rule") {
        filter = filter.rule(rule.clone());
    }
    match severity_param(&query) {
        Ok(Some(severity)) => filter = filter.severity(severity),
        Ok(None) => {}
        Err(err) => return err.into_response(),
    }
    fresh(engine.history(&filter))
}

async fn rules(State(engine): State<AlertEngine>) -> Response {
    let rules: Vec<RuleEntry> = engine.rules().iter().map(RuleEntry::from).collect();
    let (evaluations, _) = engine.evaluations();
    fresh(serde_json::json!({
        "rules": rules,
        "evaluating": engine.is_enabled(),
        "evaluations": evaluations,
    }))
}

async fn rule(
    State(engine): State<AlertEngine>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let severity = match severity_param(&query) {
        Ok(severity) => severity,
        Err(err) => return err.into_response(),
    };
    match engine.rule(&name, severity) {
        Ok(rule) => fresh(RuleEntry::from(&rule)),
        Err(err) => ApiError::rule(&err).into_response(),
    }
}

async fn silences(State(engine): State<AlertEngine>) -> Response {
    fresh(serde_json::json!({ "silences": engine.silence_entries() }))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::{
        alerts::{AlertInputs, AlertRule},
        health::HealthStatus,
    };

    #[tokio::test]
    async fn serves_the_report_uncached() {
        let engine = AlertEngine::builder()
            .rule(AlertRule::readiness_unhealthy().for_duration(std::time::Duration::ZERO))
            .build()
            .unwrap();
        engine.evaluate(&AlertInputs::default().with_readiness(HealthStatus::Unhealthy), Instant::now());
        let app: Router = Router::from(engine);
        let res = app.oneshot(http::Request::get(ROUTE).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["active"][0]["name"], "ReadinessUnhealthy");
        assert_eq!(json["active"][0]["summary"], "readiness checks report unhealthy");
        assert_eq!(json["counts"]["critical"], 1);
    }
}
