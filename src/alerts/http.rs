//! `GET /monitoring/alerts`.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::AlertEngine;

/// The route of [`router`]: `/monitoring/alerts`.
pub const ROUTE: &str = "/monitoring/alerts";

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

/// A router fragment serving `GET /monitoring/alerts`: the engine's
/// [`AlertsReport`](super::AlertsReport) as JSON, with
/// `Cache-Control: no-store`. Merge it into the monitoring router; like the
/// other monitoring endpoints, it is for operators, not the public.
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
    Router::new().route(ROUTE, get(alerts)).with_state(engine)
}

impl<S> From<AlertEngine> for Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn from(engine: AlertEngine) -> Self {
        router(engine)
    }
}

async fn alerts(State(engine): State<AlertEngine>) -> Response {
    let mut res = Json(engine.report()).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
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
