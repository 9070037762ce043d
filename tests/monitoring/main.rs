//! The monitoring router as users get it: the application's layer shared
//! with the router, the alert engine evaluated in the background over the
//! router's own windows, over real loopback HTTP.

mod admin;

use std::time::{Duration, Instant};

use axum::{Router, http::StatusCode, routing::get};
use serde_json::Value;
use tower_observability::{
    ObservabilityLayer,
    alerts::{AlertEngine, AlertMetric, AlertRule, Comparison, Severity},
    monitoring::MonitoringRouter,
    window::Window,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_through_the_layer_fire_an_alert_shown_by_both_endpoints() {
    let layer = ObservabilityLayer::new();
    let rule = AlertRule::new("HighErrorRatio", AlertMetric::ErrorRatio, Comparison::Above, 0.05)
        .window(Window::OneMinute)
        .for_duration(Duration::from_millis(300))
        .min_samples(20)
        .severity(Severity::Critical);
    let engine = AlertEngine::builder().rules(vec![rule]).build().unwrap();
    let monitoring = MonitoringRouter::standalone()
        .observability_layer(layer.clone())
        .alert_engine(engine, Duration::from_millis(100));
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .layer(layer)
        .merge(monitoring);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let get = |path: &'static str| {
        let client = client.clone();
        async move { client.get(format!("http://{addr}{path}")).send().await.unwrap() }
    };

    // 20 % errors over 30 requests: above 5 %, and enough samples.
    for i in 0..30 {
        get(if i % 5 == 0 { "/fail" } else { "/ok" }).await.bytes().await.unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let firing = loop {
        let alerts: Value = get("/monitoring/alerts").await.json().await.unwrap();
        if let Some(alert) = alerts["active"].as_array().unwrap().iter().find(|a| a["state"] == "firing") {
            assert_eq!(alerts["counts"]["critical"], 1);
            break alert.clone();
        }
        assert!(Instant::now() < deadline, "never fired: {alerts}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(firing["name"], "HighErrorRatio");
    assert_eq!(firing["severity"], "critical");
    let value = firing["value"].as_f64().unwrap();
    assert!((value - 0.2).abs() < 1e-9, "error ratio {value}");

    let res = get("/monitoring/overview").await;
    assert_eq!(res.headers()["cache-control"], "no-store");
    let overview: Value = res.json().await.unwrap();
    assert_eq!(overview["http"]["windows"]["1m"]["requests"], 30);
    assert_eq!(overview["alerts"]["counts"]["critical"], 1);
    assert_eq!(overview["alerts"]["active"][0]["name"], "HighErrorRatio");

    // Monitoring requests themselves are not counted.
    assert_eq!(overview["http"]["windows"]["1m"]["requests"], 30);
    let page = get("/monitoring").await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn the_token_guard_refuses_everything_but_health_status_and_leaks_nothing() {
    let registry = tower_observability::health::HealthRegistry::builder()
        .check("db", || async { Err::<(), _>(std::io::Error::other("password=hunter2 refused")) })
        .build();
    let layer = ObservabilityLayer::new();
    let monitoring = MonitoringRouter::standalone()
        .observability_layer(layer.clone())
        .health(registry)
        .alert_engine(AlertEngine::with_default_rules(), Duration::from_secs(15))
        .bearer_token("s3cret-token");
    let app = Router::new().route("/ok", get(|| async { "ok" })).layer(layer).merge(monitoring);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut req = client.get(format!("http://{addr}{path}"));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        req.send()
    };

    for path in ["/metrics", "/monitoring", "/monitoring/overview", "/monitoring/alerts"] {
        for token in [None, Some("wrong"), Some(""), Some("S3CRET-TOKEN"), Some("s3cret-tokenX")] {
            let res = get(path, token).await.unwrap();
            assert_eq!(res.status(), 401, "{path} with {token:?}");
            assert_eq!(res.headers()["www-authenticate"], "Bearer");
            assert_eq!(res.text().await.unwrap(), "unauthorized\n", "{path} leaks nothing");
        }
        let res = get(path, Some("s3cret-token")).await.unwrap();
        assert_ne!(res.status(), 401, "{path} with the token");
    }
    // Probes still work without the token, and see only the status.
    for path in ["/health/live", "/health/ready"] {
        let res = get(path, None).await.unwrap();
        let code = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert!(!body.contains("hunter2") && !body.contains("db"), "{path} leaked: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 1, "status only: {body}");
        if path == "/health/ready" {
            assert_eq!((code, json["status"].as_str().unwrap()), (503, "unhealthy"));
        }
    }
    let detailed: Value = get("/health/ready", Some("s3cret-token")).await.unwrap().json().await.unwrap();
    assert_eq!(detailed["checks"]["db"]["status"], "unhealthy", "details with the token: {detailed}");
}

#[tokio::test]
async fn the_monitoring_routes_can_live_on_an_internal_listener() {
    let layer = ObservabilityLayer::new();
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_addr, internal_addr) = (public.local_addr().unwrap(), internal.local_addr().unwrap());
    let app = Router::new().route("/ok", get(|| async { "ok" })).layer(layer.clone());
    tokio::spawn(async move { axum::serve(public, app).await.unwrap() });
    tokio::spawn(MonitoringRouter::standalone().observability_layer(layer).serve(internal));
    let client = reqwest::Client::new();
    for _ in 0..3 {
        client.get(format!("http://{public_addr}/ok")).send().await.unwrap().bytes().await.unwrap();
    }
    let res = client.get(format!("http://{public_addr}/monitoring/overview")).send().await.unwrap();
    assert_eq!(res.status(), 404, "no monitoring on the public port");
    let overview: Value = client
        .get(format!("http://{internal_addr}/monitoring/overview"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // 3 answered requests and the public 404 above: the app's traffic.
    assert_eq!(overview["http"]["windows"]["1m"]["requests"], 4, "the internal port sees the public traffic");
}
