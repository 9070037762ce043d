//! A user's test written with the test kit: a small orders service, its
//! telemetry asserted in `cargo test` without a collector, a global
//! recorder or a global subscriber. Each test has its own kit, so they run
//! in parallel.

#![cfg(feature = "testing")]

use axum::{
    Extension, Router,
    extract::Path,
    http::{Request, StatusCode},
    routing::{get, post},
};
use opentelemetry::trace::Status;
use tower_observability::{labeler::Labeler, testing::TestKit};

/// The service under test.
fn orders(kit: &TestKit) -> Router {
    Router::new()
        .route(
            "/orders/{id}",
            get(|Path(id): Path<u32>| async move {
                tracing::info!(order = id, "loading the order");
                if id == 13 {
                    tracing::error!(order = id, "the order store failed");
                    return Err(StatusCode::SERVICE_UNAVAILABLE);
                }
                Ok(format!("order {id}"))
            }),
        )
        .route(
            "/orders",
            post(|Extension(labeler): Extension<Labeler>| async move {
                labeler.error_type("payment_declined");
                "declined"
            }),
        )
        .layer(kit.layer().labeler(true))
}

#[tokio::test]
async fn a_served_order_is_traced_measured_and_logged_with_its_ids() {
    let kit = TestKit::new();
    let captured = kit.get(orders(&kit), "/orders/7").await;

    assert_eq!(captured.status(), StatusCode::OK);
    assert_eq!(captured.body(), "order 7");
    let span = captured.server_span().expect("the request's span");
    assert_eq!(span.name, "GET /orders/{id}");
    assert_eq!(span.status, Status::Unset);
    let attribute =
        |key: &str| span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string());
    assert_eq!(attribute("http.route").as_deref(), Some("/orders/{id}"));
    assert_eq!(attribute("request_id").as_deref(), Some(captured.request_id()));

    let ok = [("http_route", "/orders/{id}"), ("http_response_status_code", "200")];
    assert_eq!(captured.metrics().histogram_count("http_server_request_duration_seconds", &ok), 1);

    let line = captured
        .logs()
        .iter()
        .find(|l| l.message() == Some("loading the order"))
        .expect("the handler's line");
    assert_eq!(line.field("order").and_then(|v| v.as_u64()), Some(7));
    assert_eq!(line.request_id(), Some(captured.request_id()));
    assert_eq!(line.trace_id(), Some(span.span_context.trace_id().to_string().as_str()));
    assert_eq!(line.span_id(), Some(span.span_context.span_id().to_string().as_str()));
}

#[tokio::test]
async fn a_failing_order_is_an_error_on_every_signal() {
    let kit = TestKit::new();
    let captured = kit.get(orders(&kit), "/orders/13").await;

    assert_eq!(captured.status(), StatusCode::SERVICE_UNAVAILABLE);
    let span = captured.server_span().unwrap();
    assert!(matches!(span.status, Status::Error { .. }));
    let failed = [("http_route", "/orders/{id}"), ("error_type", "503")];
    assert_eq!(captured.metrics().histogram_count("http_server_request_duration_seconds", &failed), 1);
    let error = captured.logs().iter().find(|l| l.level() == Some("ERROR")).expect("the error line");
    assert_eq!(error.request_id(), Some(captured.request_id()));
}

#[tokio::test]
async fn an_application_error_type_reaches_span_and_metrics() {
    let kit = TestKit::new();
    let req = Request::post("/orders").body(axum::body::Body::empty()).unwrap();
    let captured = kit.send(orders(&kit), req).await;

    assert_eq!(captured.status(), StatusCode::OK);
    let span = captured.server_span().unwrap();
    let error =
        span.attributes.iter().find(|kv| kv.key.as_str() == "error.type").map(|kv| kv.value.to_string());
    assert_eq!(error.as_deref(), Some("payment_declined"));
    let declined = [("http_route", "/orders"), ("error_type", "payment_declined")];
    assert_eq!(captured.metrics().histogram_count("http_server_request_duration_seconds", &declined), 1);
}

/// Kits are independent: two in one test see only their own requests.
#[tokio::test]
async fn kits_do_not_see_each_other() {
    let (a, b) = (TestKit::new(), TestKit::new());
    a.get(orders(&a), "/orders/1").await;
    a.get(orders(&a), "/orders/2").await;
    let captured = b.get(orders(&b), "/orders/3").await;
    let all = [("http_route", "/orders/{id}")];
    assert_eq!(captured.metrics().histogram_count("http_server_request_duration_seconds", &all), 1);
    assert_eq!(captured.spans().len(), 1);
    assert_eq!(a.metrics().histogram_count("http_server_request_duration_seconds", &all), 2);
    assert_eq!(a.spans().len(), 2);
    a.clear();
    assert!(a.spans().is_empty() && a.logs().is_empty());
}

/// Per-route controls, seen through the kit: a route left out of the
/// access log still has its span and series; one left out of the metrics
/// still has its span and access line.
#[tokio::test]
async fn routes_left_out_of_one_signal_keep_the_others() {
    use tower_observability::route::RouteMatcher;

    let kit = TestKit::new();
    let layer = kit
        .layer()
        .exclude_from_access_log(RouteMatcher::templates(["/quiet"]))
        .exclude_from_metrics(RouteMatcher::predicate(|route| route.starts_with("/internal")));
    let app = Router::new()
        .route("/quiet", get(|| async { "shh" }))
        .route("/internal/ping", get(|| async { "pong" }))
        .layer(layer);
    let quiet = kit.get(app.clone(), "/quiet").await;
    let internal = kit.get(app, "/internal/ping").await;

    let access = |captured: &tower_observability::testing::Captured| {
        captured
            .logs()
            .iter()
            .filter(|l| {
                l.target() == Some("tower_observability::access")
                    && l.request_id() == Some(captured.request_id())
            })
            .count()
    };
    assert_eq!(access(&quiet), 0, "no access line for /quiet");
    assert_eq!(access(&internal), 1);
    let spans: Vec<_> = internal.spans().iter().map(|s| s.name.to_string()).collect();
    assert!(
        spans.contains(&"GET /quiet".to_owned()) && spans.contains(&"GET /internal/ping".to_owned()),
        "{spans:?}"
    );
    let metrics = internal.metrics();
    assert_eq!(
        metrics.histogram_count("http_server_request_duration_seconds", &[("http_route", "/quiet")]),
        1
    );
    assert!(!metrics.text().contains("/internal/ping"), "{}", metrics.text());
}
