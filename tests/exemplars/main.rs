//! Exemplars end to end (issue 15): `/metrics` negotiates OpenMetrics 1.0
//! over loopback HTTP, Python `prometheus_client`'s OpenMetrics parser (an
//! independent implementation) reads every exposition, and a real
//! Prometheus (Debian's `prometheus`, `--enable-feature=exemplar-storage`)
//! scrapes the real quickstart binary, whose spans go to a real OTLP
//! receiver: the exemplars Prometheus stores are the traces the receiver
//! got, and requests whose parent was not sampled leave none.
#![cfg(all(feature = "monitoring", feature = "telemetry"))]

#[path = "../support/app.rs"]
mod app;
#[path = "../support/openmetrics.rs"]
mod openmetrics;
#[path = "../support/otlp.rs"]
mod otlp;
#[path = "../support/prom.rs"]
mod prom;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use app::App;
use axum::{Router, extract::Path, http::StatusCode, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use otlp::OtlpReceiver;
use serde_json::Value;
use tower_observability::{
    ObservabilityLayer,
    metrics::{Exemplars, HttpMetricsLayer},
    monitoring::MonitoringRouter,
    trace::HttpTraceLayer,
};

/// What Prometheus 2.x sends (`scrape.acceptHeader`).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A sampled parent and an unsampled one (W3C Trace Context).
const SAMPLED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SAMPLED_PARENT: &str = "b7ad6b7169203331";
const UNSAMPLED_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const UNSAMPLED_PARENT: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str, parent: &str, sampled: bool) -> String {
    format!("00-{trace}-{parent}-{}", if sampled { "01" } else { "00" })
}

/// The Prometheus recorder of this test process, installed once.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| tower_observability::prometheus_builder().install_recorder().expect("one recorder"))
}

async fn fetch(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

/// The exemplars of the parsed families `name`: (bucket labels, exemplar).
fn exemplars_of<'a>(parsed: &'a Value, name: &str) -> Vec<(&'a Value, &'a Value)> {
    openmetrics::samples(parsed)
        .into_iter()
        .filter(|s| s["name"] == format!("{name}_bucket") && !s["exemplar"].is_null())
        .map(|s| (&s["labels"], &s["exemplar"]))
        .collect()
}

/// Checks that each exemplar of `name` lies within its bucket: above the
/// previous bound of its series, at most its own.
fn assert_within_buckets(parsed: &Value, name: &str) {
    let family = parsed.as_array().unwrap().iter().find(|f| f["name"] == name).expect("the family");
    let mut previous: HashMap<String, f64> = HashMap::new();
    for s in family["samples"].as_array().unwrap().iter().filter(|s| s["name"] == format!("{name}_bucket")) {
        let mut labels = s["labels"].as_object().unwrap().clone();
        let le = labels.remove("le").unwrap();
        let le: f64 = if le == "+Inf" { f64::INFINITY } else { le.as_str().unwrap().parse().unwrap() };
        let series = serde_json::to_string(&labels).unwrap();
        let above = previous.insert(series, le).unwrap_or(f64::NEG_INFINITY);
        if let Some(value) = s["exemplar"]["value"].as_f64() {
            assert!(above < value && value <= le, "exemplar {value} outside ({above}, {le}]: {s}");
        }
    }
}

fn family<'a>(parsed: &'a Value, name: &str) -> &'a Value {
    parsed
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no family {name} in {parsed:#}"))
}

/// In process: the monitoring fragment over loopback, with the application's
/// own metrics of every type beside the crate's, and an SDK tracer whose
/// spans are kept in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_negotiates_openmetrics_whose_exemplars_are_the_sampled_spans() {
    let handle = recorder();
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
    let registry = Exemplars::new();
    let layer = ObservabilityLayer::new()
        .trace(HttpTraceLayer::new().tracer(provider.tracer("exemplars-test")))
        .metrics(HttpMetricsLayer::new().exemplar_registry(registry.clone()));
    let monitoring = MonitoringRouter::standalone()
        .observability_layer(layer.clone())
        .prometheus(handle.clone())
        .exemplars(registry.clone());
    // The application's own metrics, through the same facade (named and
    // described so that promtool finds nothing to say of the 0.0.4 text).
    metrics::describe_counter!("signups_total", "Users who \"signed up\".");
    metrics::counter!("signups_total", "plan" => "a \"b\"\nc").increment(3);
    metrics::describe_gauge!("queue_depth", "Jobs waiting.");
    metrics::gauge!("queue_depth").set(7.5);
    metrics::describe_histogram!("render_seconds", "Time to render a page.");
    metrics::histogram!("render_seconds").record(0.2);

    let app = Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(id % 4 * 20)).await;
                if id > 1000 { (StatusCode::NOT_FOUND, "no such user") } else { (StatusCode::OK, "user") }
            }),
        )
        .layer(layer)
        .merge(monitoring);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{address}{path}");

    for id in 1..=4 {
        fetch(&client, &url(&format!("/users/{id}")), &[]).await.bytes().await.unwrap();
    }
    let sampled = traceparent(SAMPLED_TRACE, SAMPLED_PARENT, true);
    fetch(&client, &url("/users/5"), &[("traceparent", &sampled)]).await.bytes().await.unwrap();
    let unsampled = traceparent(UNSAMPLED_TRACE, UNSAMPLED_PARENT, false);
    for _ in 0..3 {
        let res = fetch(&client, &url("/users/5000"), &[("traceparent", &unsampled)]).await;
        assert_eq!(res.status(), 404);
        res.bytes().await.unwrap();
    }
    // The spans end with their response bodies, just after the client has
    // read them: wait for the five sampled ones (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while spans.get_finished_spans().unwrap().len() < 5 {
        assert!(Instant::now() < deadline, "spans: {:?}", spans.get_finished_spans().unwrap().len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let finished = spans.get_finished_spans().unwrap();
    assert_eq!(finished.len(), 5, "unsampled requests export no span");
    let span_ids: HashMap<String, String> = finished
        .iter()
        .map(|s| (s.span_context.trace_id().to_string(), s.span_context.span_id().to_string()))
        .collect();

    // Content negotiation, over HTTP.
    let cases: [(Option<&str>, &str); 8] = [
        (None, TEXT),
        (Some("*/*"), TEXT),
        (Some("text/plain; version=0.0.4"), TEXT),
        (Some("application/json"), TEXT),
        (Some("application/openmetrics-text;q=0.2, text/plain;q=0.9"), TEXT),
        (Some("application/openmetrics-text; version=1.0.0"), OPENMETRICS),
        (Some(PROMETHEUS_ACCEPT), OPENMETRICS),
        (Some("text/plain;q=0.5, application/openmetrics-text"), OPENMETRICS),
    ];
    let mut openmetrics_text = String::new();
    for (accept, expected) in cases {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let res = fetch(&client, &url("/metrics"), &headers).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], expected, "Accept: {accept:?}");
        assert_eq!(res.headers()["vary"], "accept");
        let body = res.text().await.unwrap();
        if expected == TEXT {
            assert!(!body.contains("# EOF") && !body.contains("trace_id"), "0.0.4 is unchanged");
            assert!(body.contains("http_server_request_duration_seconds_bucket{"));
            prom::promtool_check(&body);
        } else {
            assert!(body.ends_with("\n# EOF\n"));
            openmetrics_text = body;
        }
    }

    // An independent parser reads it all.
    let parsed = openmetrics::parse(&openmetrics_text);
    let duration = family(&parsed, "http_server_request_duration_seconds");
    assert_eq!((duration["type"].as_str(), duration["unit"].as_str()), (Some("histogram"), Some("seconds")));
    let signups = family(&parsed, "signups");
    assert_eq!(signups["type"], "counter");
    assert_eq!(signups["help"], "Users who \"signed up\".");
    assert_eq!(signups["samples"][0]["name"], "signups_total");
    assert_eq!(signups["samples"][0]["labels"]["plan"], "a \"b\"\nc");
    assert_eq!(signups["samples"][0]["value"], 3.0);
    assert_eq!(family(&parsed, "queue_depth")["samples"][0]["value"], 7.5);
    assert_eq!(family(&parsed, "render_seconds")["type"], "histogram");
    assert_eq!(family(&parsed, "http_server_active_requests")["type"], "gauge");
    assert_eq!(family(&parsed, "http_server_request_body_size_bytes")["unit"], "bytes");

    // The exemplars: of sampled spans only, each within its bucket.
    let found = exemplars_of(&parsed, "http_server_request_duration_seconds");
    assert!(!found.is_empty(), "{openmetrics_text}");
    let mut traces = HashSet::new();
    for (labels, exemplar) in &found {
        let trace = exemplar["labels"]["trace_id"].as_str().unwrap();
        assert_eq!(
            span_ids.get(trace).map(String::as_str),
            exemplar["labels"]["span_id"].as_str(),
            "{exemplar}"
        );
        assert_eq!(labels["http_response_status_code"], "200", "the 404s were not sampled: {labels}");
        assert!(exemplar["timestamp"].as_f64().unwrap() > 1.0e9);
        traces.insert(trace.to_owned());
    }
    assert!(traces.contains(SAMPLED_TRACE), "the sampled parent's trace: {traces:?}");
    assert!(!traces.contains(UNSAMPLED_TRACE));
    assert_within_buckets(&parsed, "http_server_request_duration_seconds");
    assert!(
        exemplars_of(&parsed, "http_server_request_body_size_bytes").is_empty(),
        "only durations have them"
    );
}

// ------------------------------------------------------------ Prometheus

/// A Prometheus server of the test's own, on a loopback port; killed on drop.
struct Prometheus {
    child: Child,
    address: SocketAddr,
    dir: PathBuf,
}

/// Whether this Prometheus knows `scrape_protocols` (2.49 and later).
fn knows_scrape_protocols() -> bool {
    let out = Command::new("prometheus").arg("--version").output().expect("prometheus --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let version = text.split("version ").nth(1).and_then(|v| v.split(['+', ' ']).next()).unwrap_or("0.0");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major > 2 || (major == 2 && minor >= 49)
}

impl Prometheus {
    /// Starts Prometheus with exemplar storage, scraping `target`'s
    /// `/metrics` every second, preferring OpenMetrics; waits (at most 60 s)
    /// until it is ready.
    fn start(target: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        let dir = target_dir.join(format!("prometheus-exemplars-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Prometheus 2.x asks for OpenMetrics first by itself; from 2.49
        // the order is configured, and said here.
        let protocols = if knows_scrape_protocols() {
            "    scrape_protocols: [OpenMetricsText1.0.0, PrometheusText0.0.4]\n"
        } else {
            ""
        };
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: quickstart\n{protocols}    metrics_path: /metrics\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("prometheus is required: install Debian's `prometheus` package (scripts/test.sh does)");
        let prometheus = Self { child, address, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if answers_200(address, "/-/ready") {
                break;
            }
            assert!(Instant::now() < deadline, "Prometheus was not ready within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    async fn api(&self, client: &reqwest::Client, path: &str, query: &[(&str, String)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("http://{}{path}", self.address), query).unwrap();
        let res = client.get(url).send().await.unwrap();
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "success", "{path}: {body}");
        body["data"].clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `GET path` on `address` answers 200 (a blocking HTTP/1.1
/// exchange, for the readiness wait outside the runtime).
fn answers_200(address: SocketAddr, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = String::new();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

fn seconds_since_epoch(offset: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    (now + offset).to_string()
}

/// The real quickstart, its spans to a real OTLP receiver, scraped by a
/// real Prometheus: the exemplars Prometheus stores are the receiver's
/// traces, the sampled `traceparent`'s among them, and requests whose
/// parent was not sampled leave none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_exemplars_that_are_the_traces_the_collector_got() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.grpc_endpoint();
    let app = App::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "50")]);
    let client = reqwest::Client::new();

    // Sampled roots (the default sampler is parentbased_always_on).
    for id in 1..=10 {
        fetch(&client, &app.url(&format!("/users/{id}")), &[]).await.bytes().await.unwrap();
    }
    fetch(&client, &app.url("/report"), &[]).await.bytes().await.unwrap();
    // A sampled caller: the only request of its series.
    let sampled = traceparent(SAMPLED_TRACE, SAMPLED_PARENT, true);
    let res = fetch(&client, &app.url("/orders/7"), &[("traceparent", &sampled)]).await;
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    // An unsampled caller: the only requests of the 404 series.
    let unsampled = traceparent(UNSAMPLED_TRACE, UNSAMPLED_PARENT, false);
    for _ in 0..3 {
        let res = fetch(&client, &app.url("/users/5000"), &[("traceparent", &unsampled)]).await;
        assert_eq!(res.status(), 404);
        res.bytes().await.unwrap();
    }
    let parent = receiver.wait_for_span(Duration::from_secs(20), |s| s.trace_id == SAMPLED_TRACE).await;
    assert_eq!(parent.parent_span_id, SAMPLED_PARENT);

    // The quickstart's OpenMetrics, read by an independent parser.
    let res = fetch(&client, &app.url("/metrics"), &[("accept", PROMETHEUS_ACCEPT)]).await;
    assert_eq!(res.headers()["content-type"], OPENMETRICS);
    let text = res.text().await.unwrap();
    let parsed = openmetrics::parse(&text);
    assert_within_buckets(&parsed, "http_server_request_duration_seconds");
    assert_eq!(family(&parsed, "cache_gets")["type"], "counter", "the application's cache metrics too");
    assert_eq!(family(&parsed, "process_cpu_seconds")["unit"], "seconds");
    let local: HashSet<&str> = exemplars_of(&parsed, "http_server_request_duration_seconds")
        .into_iter()
        .map(|(_, e)| e["labels"]["trace_id"].as_str().unwrap())
        .collect();
    assert!(local.contains(SAMPLED_TRACE), "{text}");

    // Prometheus scrapes it, preferring OpenMetrics, and stores exemplars.
    let prometheus = tokio::task::block_in_place(|| Prometheus::start(&app.address));
    let query = "http_server_request_duration_seconds_bucket".to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let data = prometheus
            .api(
                &client,
                "/api/v1/query_exemplars",
                &[
                    ("query", query.clone()),
                    ("start", seconds_since_epoch(-600)),
                    ("end", seconds_since_epoch(60)),
                ],
            )
            .await;
        let has_sampled = data.as_array().is_some_and(|series| {
            series.iter().any(|s| {
                s["exemplars"].as_array().unwrap().iter().any(|e| e["labels"]["trace_id"] == SAMPLED_TRACE)
            })
        });
        if has_sampled {
            break data;
        }
        assert!(Instant::now() < deadline, "no exemplar of {SAMPLED_TRACE} in Prometheus after 60 s: {data}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let targets = prometheus.api(&client, "/api/v1/targets", &[]).await;
    let target = &targets["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "", "{target}");

    // Every exemplar is a trace the collector received, with its span.
    let received = receiver.spans();
    let spans: HashMap<&str, &str> =
        received.iter().map(|s| (s.trace_id.as_str(), s.span_id.as_str())).collect();
    let mut seen = 0;
    for series in stored.as_array().unwrap() {
        let labels = &series["seriesLabels"];
        assert_ne!(labels["http_response_status_code"], "404", "the unsampled requests' series: {series}");
        for exemplar in series["exemplars"].as_array().unwrap() {
            let trace = exemplar["labels"]["trace_id"].as_str().unwrap();
            assert_ne!(trace, UNSAMPLED_TRACE);
            assert_eq!(
                spans.get(trace).copied(),
                exemplar["labels"]["span_id"].as_str(),
                "{exemplar} not received"
            );
            let value: f64 = exemplar["value"].as_str().unwrap().parse().unwrap();
            let le = labels["le"].as_str().unwrap();
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            assert!(value <= le, "{value} above its bucket {le}");
            seen += 1;
        }
    }
    let orders: Vec<&Value> = stored
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["seriesLabels"]["http_route"] == "/orders/{id}")
        .flat_map(|s| s["exemplars"].as_array().unwrap())
        .collect();
    assert_eq!(orders.len(), 1, "one sampled request on /orders/{{id}}: {orders:?}");
    assert_eq!(orders[0]["labels"]["span_id"], parent.span_id.as_str());
    assert!(seen >= 3, "exemplars of /users, /report and /orders: {stored}");

    // The 404 series was scraped (it exists, with its count), without exemplars.
    let count = prometheus
        .api(
            &client,
            "/api/v1/query",
            &[(
                "query",
                "http_server_request_duration_seconds_count{http_response_status_code=\"404\"}".to_owned(),
            )],
        )
        .await;
    assert_eq!(count["result"][0]["value"][1], "3", "{count}");
    drop(prometheus);
    assert!(app.terminate().success());
}
