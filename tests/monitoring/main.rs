//! The monitoring router as users get it: the application's layer shared
//! with the router, the alert engine evaluated in the background over the
//! router's own windows, over real loopback HTTP.

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
