//! `GET /monitoring/overview` and the process metrics of `/metrics` over real
//! loopback HTTP: axum on `127.0.0.1:0`, reqwest, an application router with
//! `ObservabilityLayer::new()` and a standalone `MonitoringRouter` given the
//! same layer, a global Prometheus recorder, promtool.
#![cfg(feature = "monitoring")]

#[path = "../support/prom.rs"]
mod prom;

use std::{
    net::SocketAddr,
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::{Router, http::StatusCode, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use prom::{Exposition, promtool_check};
use serde_json::{Value, json};
use tower_observability::{
    ObservabilityLayer,
    cache::{CacheHitRatios, CacheStatus},
    health::{CheckOptions, HealthGroup, HealthRegistry, HealthStatus},
    metrics::{
        DURATION_BUCKETS, HTTP_SERVER_REQUEST_BODY_SIZE, HTTP_SERVER_RESPONSE_BODY_SIZE, SIZE_BUCKETS,
    },
    monitoring::{AlertsSummary, MonitoringRouter},
    window::QUANTILE_RELATIVE_ERROR,
};

const FAST: Duration = Duration::from_millis(10);
const SLOW: Duration = Duration::from_millis(200);

/// The global recorder of this test binary, installed once with the
/// buckets `Observability` sets.
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let sizes = |name: &str| Matcher::Full(name.to_owned());
            let handle = PrometheusBuilder::new()
                .set_buckets(&DURATION_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(sizes(HTTP_SERVER_REQUEST_BODY_SIZE), &SIZE_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(sizes(HTTP_SERVER_RESPONSE_BODY_SIZE), &SIZE_BUCKETS))
                .unwrap()
                .install_recorder()
                .unwrap();
            tower_observability::metrics::describe();
            handle
        })
        .clone()
}

/// `/fast` answers 200 after [`FAST`], `/fail` 500 after [`SLOW`], under
/// `layer`, merged with `monitoring` given the same layer; served on an
/// ephemeral loopback port until the test's runtime ends.
async fn serve(layer: ObservabilityLayer, monitoring: MonitoringRouter) -> SocketAddr {
    let app: Router = Router::new()
        .route(
            "/fast",
            get(|| async {
                tokio::time::sleep(FAST).await;
                "ok"
            }),
        )
        .route(
            "/fail",
            get(|| async {
                tokio::time::sleep(SLOW).await;
                (StatusCode::INTERNAL_SERVER_ERROR, "failed")
            }),
        )
        .layer(layer.clone())
        .merge(monitoring.observability_layer(layer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// Sends `n` GETs to `path` on `streams` concurrent connections, asserting
/// the status and draining the bodies.
async fn drive(address: SocketAddr, path: &'static str, n: usize, streams: usize, status: u16) {
    let tasks: Vec<_> = (0..streams)
        .map(|stream| {
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for _ in (stream..n).step_by(streams) {
                    let res = client.get(format!("http://{address}{path}")).send().await.unwrap();
                    assert_eq!(res.status().as_u16(), status, "GET {path}");
                    res.bytes().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// GETs the overview, asserting `Cache-Control: no-store` and JSON.
async fn overview(address: SocketAddr) -> Value {
    let res = reqwest::get(format!("http://{address}/monitoring/overview")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json().await.unwrap()
}

fn f(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("not a number: {value}"))
}

/// Asserts that a latency estimate lies within the documented error of
/// `[low, high]`, the range the true quantile is known to be in.
fn assert_latency(value: &Value, low: Duration, high: Duration, what: &str) {
    let got = f(value);
    let (low, high) = (low.as_secs_f64(), high.as_secs_f64());
    assert!(
        got >= low * (1.0 - QUANTILE_RELATIVE_ERROR) && got <= high * (1.0 + QUANTILE_RELATIVE_ERROR),
        "{what}: {got} s outside [{low}, {high}] ± {QUANTILE_RELATIVE_ERROR}"
    );
}

#[tokio::test]
async fn the_overview_reports_a_known_traffic_mix() {
    let _ = prometheus();
    let before_layer = Instant::now();
    let layer = ObservabilityLayer::new();
    let after_layer = Instant::now();
    let registry = HealthRegistry::builder()
        .check("db", || async { HealthStatus::Healthy })
        .check("disk", || async { HealthStatus::Degraded })
        .check_with(
            "worker",
            || async { HealthStatus::Healthy },
            CheckOptions::new().groups([HealthGroup::Live]),
        )
        .build();
    // The overview reads the process-wide registry by default.
    let users = CacheHitRatios::global().cache("users");
    for i in 0..25 {
        users.record(if i < 5 { CacheStatus::Hit } else { CacheStatus::Miss });
    }
    let address = serve(layer, MonitoringRouter::standalone().health(registry)).await;

    // 90 fast successes on /fast, 10 slow failures on /fail, concurrently.
    tokio::join!(drive(address, "/fast", 90, 3, 200), drive(address, "/fail", 10, 10, 500));
    let after_traffic = Instant::now();
    let body = overview(address).await;
    let after_overview = Instant::now();
    eprintln!("{body:#}");

    assert_eq!(body["service"]["name"], "unknown_service");
    assert!(body["service"].get("version").is_none(), "an empty version is left out");
    assert!(f(&body["service"]["uptime_seconds"]) > 0.0);

    // Overall: 100 requests, 10 errors; the overview itself is not counted.
    let http = &body["http"];
    assert_eq!(http["active_requests"], 0);
    // Rates divide by the layer's age while it is younger than the window.
    let slowest_rate = 100.0 / (after_overview - before_layer).as_secs_f64().max(1.0);
    let fastest_rate = 100.0 / (after_traffic - after_layer).as_secs_f64().max(1.0);
    for window in ["1m", "5m", "15m"] {
        let w = &http["windows"][window];
        assert_eq!((&w["requests"], &w["errors"]), (&json!(100), &json!(10)), "{window}");
        assert_eq!(w["error_ratio"], 0.1, "{window}");
        let rate = f(&w["request_rate"]);
        assert!(slowest_rate <= rate && rate <= fastest_rate, "{window}: {rate} req/s");
        // Ranks 1 to 90 are fast, 91 to 100 slow: p50 is fast, p95 and p99
        // slow. Sleeps last at least their time; allow 150 ms of scheduling.
        let latency = &w["latency_seconds"];
        assert_latency(&latency["p50"], FAST, FAST + Duration::from_millis(150), "p50");
        assert_latency(&latency["p95"], SLOW, SLOW + Duration::from_millis(150), "p95");
        assert_latency(&latency["p99"], SLOW, SLOW + Duration::from_millis(150), "p99");
    }

    // Per route, busiest first.
    let routes = http["routes"].as_array().unwrap();
    let names: Vec<&str> = routes.iter().map(|r| r["route"].as_str().unwrap()).collect();
    assert_eq!(names, ["/fast", "/fail"]);
    assert_eq!(http["routes_omitted"], 0);
    let fast = &routes[0]["windows"]["1m"];
    assert_eq!(
        (&fast["requests"], &fast["errors"], &fast["error_ratio"]),
        (&json!(90), &json!(0), &json!(0.0))
    );
    for q in ["p50", "p95", "p99"] {
        assert_latency(&fast["latency_seconds"][q], FAST, FAST + Duration::from_millis(150), q);
    }
    let fail = &routes[1]["windows"]["15m"];
    assert_eq!(
        (&fail["requests"], &fail["errors"], &fail["error_ratio"]),
        (&json!(10), &json!(10), &json!(1.0))
    );
    assert_latency(&fail["latency_seconds"]["p50"], SLOW, SLOW + Duration::from_millis(150), "/fail p50");

    // Cache: 5 hits of 25 is below 0.70 with enough samples, in every window.
    let cache = &body["cache"];
    assert_eq!((&cache["warn_below"], &cache["min_samples"]), (&json!(0.7), &json!(20)));
    let entry = cache["caches"].as_array().unwrap().iter().find(|c| c["cache"] == "users").unwrap();
    assert_eq!(entry["route"], Value::Null);
    assert_eq!(entry["windows"]["1m"], json!({"hits": 5, "misses": 20, "ratio": 0.2}));
    let warnings: Vec<&Value> =
        cache["warnings"].as_array().unwrap().iter().filter(|w| w["cache"] == "users").collect();
    let windows: Vec<&str> = warnings.iter().map(|w| w["window"].as_str().unwrap()).collect();
    assert_eq!(windows, ["1m", "5m", "15m"]);
    assert_eq!(warnings[0]["ratio"], 0.2);

    // Health: each group's status and the checks that are not healthy;
    // each check's groups and its one run so far.
    assert_eq!(body["health"]["live"], json!({"status": "healthy", "failing": []}));
    assert_eq!(body["health"]["ready"], json!({"status": "degraded", "failing": ["disk"]}));
    let checks: Vec<(&str, &Value, &str, usize)> = body["health"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let runs = c["runs"].as_array().unwrap();
            (c["name"].as_str().unwrap(), &c["groups"], runs[0]["status"].as_str().unwrap(), runs.len())
        })
        .collect();
    assert_eq!(
        checks,
        [
            ("db", &json!(["ready"]), "healthy", 1),
            ("disk", &json!(["ready"]), "degraded", 1),
            ("worker", &json!(["live"]), "healthy", 1),
        ]
    );
    assert!(body["health"]["checks"].as_array().unwrap().iter().all(|c| c["flapping"] == false));

    // Process figures, read from /proc on Linux.
    let process = &body["process"];
    for key in ["resident_memory_bytes", "cpu_seconds_total", "open_fds", "threads"] {
        assert!(f(&process[key]) > 0.0, "{key}: {}", process[key]);
    }
    assert!(f(&process["resident_memory_bytes"]) > 1_000_000.0, "at least a megabyte resident");

    // The place the alert engine fills.
    assert_eq!(body["alerts"], json!({"active": [], "counts": {}}));
}

#[tokio::test]
async fn an_idle_overview_has_nulls_404s_and_the_alerts_of_its_source() {
    let layer = ObservabilityLayer::new();
    let monitoring = MonitoringRouter::standalone().alerts(|| {
        AlertsSummary::new(
            vec![json!({"name": "HighErrorRatio", "state": "firing"})],
            [("firing".to_owned(), 1), ("pending".to_owned(), 0)].into(),
        )
    });
    let stats = layer.http_stats();
    let address = serve(layer, monitoring).await;
    let body = overview(address).await;
    assert_eq!(body["health"], Value::Null, "no registry was given");
    let w = &body["http"]["windows"]["5m"];
    assert_eq!(
        w,
        &json!({
            "requests": 0, "errors": 0, "request_rate": 0.0, "error_ratio": null,
            "latency_seconds": {"p50": null, "p95": null, "p99": null},
        })
    );
    assert_eq!(body["http"]["routes"], json!([]));
    assert_eq!(
        body["alerts"],
        json!({"active": [{"name": "HighErrorRatio", "state": "firing"}], "counts": {"firing": 1, "pending": 0}})
    );

    // Requests that match no route are counted under one fixed label, by
    // the fragment's copy of the application's layer.
    drive(address, "/no/such/path", 2, 1, 404).await;
    let body = overview(address).await;
    assert_eq!(body["http"]["routes"][0]["route"], "_unmatched");
    assert_eq!(body["http"]["routes"][0]["windows"]["1m"]["requests"], 2);
    assert_eq!(body["http"]["windows"]["1m"]["errors"], 0, "404 is not a server error");
    assert_eq!(
        stats.route("_unmatched").unwrap().window(tower_observability::window::Window::OneMinute).requests,
        2
    );
}

#[tokio::test]
async fn metrics_export_the_process_figures_and_pass_promtool() {
    let layer = ObservabilityLayer::new();
    let address = serve(layer, MonitoringRouter::standalone().prometheus(prometheus())).await;
    drive(address, "/fast", 3, 1, 200).await;
    let res = reqwest::get(format!("http://{address}/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let text = res.text().await.unwrap();
    let scrape = Exposition::parse(&text);

    for (name, kind) in [
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_threads", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_cpu_seconds_total", "counter"),
    ] {
        assert_eq!(scrape.types.get(name).map(String::as_str), Some(kind), "# TYPE of {name}");
        assert!(scrape.help.contains_key(name), "# HELP of {name}");
    }
    assert!(scrape.sum("process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(scrape.sum("process_open_fds", &[]) > 0.0);
    assert!(scrape.sum("http_server_request_duration_seconds_count", &[("http_route", "/fast")]) >= 3.0);
    promtool_check(&text);
}
