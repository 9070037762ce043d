//! The health endpoints over real loopback HTTP: axum on `127.0.0.1:0`,
//! reqwest, a `MonitoringRouter` built without the global `Observability`.
#![cfg(feature = "monitoring")]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use axum::Router;
use serde_json::{Value, json};
use tower_observability::{
    health::{CheckOptions, HealthCheckResult, HealthGroup, HealthRegistry, HealthStatus, ShowDetails},
    monitoring::MonitoringRouter,
};

/// Serves `registry` (or none) on an ephemeral loopback port until the test's
/// runtime ends.
async fn serve(registry: Option<HealthRegistry>) -> SocketAddr {
    let mut router = MonitoringRouter::standalone();
    if let Some(registry) = registry {
        router = router.health(registry);
    }
    let app: Router = router.into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// GETs `path`, asserts `Cache-Control: no-store` and a JSON body, and
/// returns the status code and the body.
async fn get(address: SocketAddr, path: &str) -> (u16, Value) {
    let res = reqwest::get(format!("http://{address}{path}")).await.expect("request");
    assert_eq!(res.headers()["cache-control"], "no-store", "GET {path}");
    assert_eq!(res.headers()["content-type"], "application/json", "GET {path}");
    let code = res.status().as_u16();
    (code, res.json().await.expect("JSON body"))
}

fn fixed(status: HealthStatus) -> impl Fn() -> std::future::Ready<HealthStatus> + Send + Sync + 'static {
    move || std::future::ready(status)
}

#[tokio::test]
async fn without_a_registry_both_probes_are_healthy_with_no_checks() {
    let address = serve(None).await;
    for path in ["/health/live", "/health/ready"] {
        let (code, body) = get(address, path).await;
        assert_eq!(code, 200, "{path}");
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["checks"], json!({}));
        assert_eq!(body["service"], "unknown_service");
        assert!(body["uptime_seconds"].is_f64());
    }
}

#[tokio::test]
async fn the_status_code_follows_the_aggregate() {
    use HealthStatus::{Degraded, Healthy, Unhealthy};
    for (worst, code) in [(Healthy, 200), (Degraded, 200), (Unhealthy, 503)] {
        let registry =
            HealthRegistry::builder().check("db", fixed(Healthy)).check("other", fixed(worst)).build();
        let address = serve(Some(registry)).await;
        let (got, body) = get(address, "/health/ready").await;
        assert_eq!(got, code, "{worst}");
        assert_eq!(body["status"], worst.as_str());
        assert_eq!(body["checks"]["other"]["status"], worst.as_str());
    }
}

#[tokio::test]
async fn the_body_has_the_documented_shape() {
    let registry = HealthRegistry::builder()
        .check("db", || async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            HealthCheckResult::healthy().with_detail("pool_size", 10)
        })
        .check_with(
            "cache",
            || async { Err::<(), _>("connection refused") },
            CheckOptions::new().failure_status(HealthStatus::Degraded),
        )
        .build();
    let address = serve(Some(registry)).await;
    let (code, body) = get(address, "/health/ready").await;
    assert_eq!(code, 200);
    let raw = reqwest::get(format!("http://{address}/health/ready")).await.unwrap().text().await.unwrap();
    assert!(raw.starts_with(r#"{"status":"degraded","checks":{"db":"#), "{raw}");

    let object = body.as_object().unwrap();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    // (serde_json's `Map` sorts keys; the wire order is status, checks, timestamp, service, ...)
    assert_eq!(keys, ["checks", "service", "status", "timestamp", "uptime_seconds"], "no version when empty");
    assert_eq!(body["status"], "degraded");
    let db = &body["checks"]["db"];
    assert_eq!(db["status"], "healthy");
    assert!(db["duration_seconds"].as_f64().unwrap() >= 0.005, "{db}");
    assert_eq!(db["details"], json!({"pool_size": 10}));
    assert!(db.get("message").is_none(), "no message, no key: {db}");
    let cache = &body["checks"]["cache"];
    assert_eq!(cache["status"], "degraded");
    assert_eq!(cache["message"], "connection refused");
    assert!(cache.get("details").is_none(), "no details, no key: {cache}");

    // RFC 3339, UTC, milliseconds: 2025-06-01T12:00:00.123Z
    let timestamp = body["timestamp"].as_str().unwrap();
    let shape: String = timestamp.chars().map(|c| if c.is_ascii_digit() { 'd' } else { c }).collect();
    assert_eq!(shape, "dddd-dd-ddTdd:dd:dd.dddZ", "{timestamp}");
}

#[tokio::test]
async fn liveness_ignores_readiness_checks_by_default() {
    let registry = HealthRegistry::builder()
        .check("db", fixed(HealthStatus::Unhealthy))
        .check_with(
            "worker",
            fixed(HealthStatus::Healthy),
            CheckOptions::new().groups([HealthGroup::Live, HealthGroup::Ready]),
        )
        .build();
    let address = serve(Some(registry)).await;
    let (live, live_body) = get(address, "/health/live").await;
    assert_eq!(live, 200);
    assert_eq!(live_body["checks"].as_object().unwrap().keys().collect::<Vec<_>>(), ["worker"]);
    let (ready, _) = get(address, "/health/ready").await;
    assert_eq!(ready, 503);
}

#[tokio::test]
async fn a_hung_check_is_answered_within_its_timeout() {
    let timeout = Duration::from_millis(300);
    let registry = HealthRegistry::builder()
        .check_with(
            "hung",
            || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                HealthStatus::Healthy
            },
            CheckOptions::new().timeout(timeout),
        )
        .build();
    let address = serve(Some(registry)).await;
    let started = Instant::now();
    let (code, body) = get(address, "/health/ready").await;
    let elapsed = started.elapsed();
    eprintln!("hung check with a {timeout:?} timeout answered in {elapsed:?}");
    assert_eq!(code, 503);
    assert_eq!(body["checks"]["hung"]["message"], "timed out after 0.3 s");
    assert!(elapsed >= timeout && elapsed < timeout + Duration::from_millis(300), "{elapsed:?}");
}

#[tokio::test]
async fn a_panicking_check_gives_503_and_the_server_keeps_serving() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let registry = HealthRegistry::builder()
        .check("boom", move || {
            counter.fetch_add(1, SeqCst);
            async {
                panic!("the check panics");
                #[allow(unreachable_code)]
                HealthStatus::Healthy
            }
        })
        .cache_ttl(Duration::ZERO)
        .build();
    let address = serve(Some(registry)).await;
    for _ in 0..3 {
        let (code, body) = get(address, "/health/ready").await;
        assert_eq!(code, 503);
        assert_eq!(body["checks"]["boom"]["status"], "unhealthy");
        assert_eq!(body["checks"]["boom"]["message"], "check panicked");
    }
    assert_eq!(calls.load(SeqCst), 3, "a zero TTL runs the check per request");
    let (live, _) = get(address, "/health/live").await;
    assert_eq!(live, 200);
}

#[tokio::test]
async fn details_are_hidden_when_configured() {
    let registry = HealthRegistry::builder()
        .check("db", || async { HealthCheckResult::unhealthy("password authentication failed") })
        .show_details(ShowDetails::Never)
        .build();
    let address = serve(Some(registry)).await;
    let (code, body) = get(address, "/health/ready").await;
    assert_eq!(code, 503);
    assert_eq!(body, json!({"status": "unhealthy"}));
    let (code, body) = get(address, "/health/live").await;
    assert_eq!(code, 200);
    assert_eq!(body, json!({"status": "healthy"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_probes_run_each_check_once_per_ttl() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let registry = HealthRegistry::builder()
        .check("db", move || {
            counter.fetch_add(1, SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                HealthStatus::Healthy
            }
        })
        .cache_ttl(Duration::from_secs(60))
        .build();
    let address = serve(Some(registry)).await;
    let client = reqwest::Client::new();
    let requests = (0..50).map(|_| {
        let client = client.clone();
        async move { client.get(format!("http://{address}/health/ready")).send().await.unwrap().status() }
    });
    for status in futures_util::future::join_all(requests).await {
        assert_eq!(status, 200);
    }
    assert_eq!(calls.load(SeqCst), 1);
}
