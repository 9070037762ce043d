//! OTLP for every signal, end to end: the real quickstart binary, real
//! HTTP over loopback, and the test receiver built from the official
//! opentelemetry-proto definitions (gRPC and HTTP/protobuf), getting
//! spans, metrics and log records; then the collector misbehaving, and
//! hostile settings.

#[path = "../support/app.rs"]
mod app;
#[path = "../support/otlp.rs"]
mod otlp;
#[path = "../support/prom.rs"]
mod prom;

use std::{collections::HashMap, time::Duration};

use app::App;
use otlp::{Behavior, HungCollector, OtlpReceiver, REJECT_MESSAGE, ReceivedLog, ReceivedPoint};
use prom::{Exposition, promtool_check};

const WAIT: Duration = Duration::from_secs(30);

/// Fast export of every signal: spans every 50 ms, metrics every 100 ms,
/// log records every 50 ms.
const FAST: [(&str, &str); 5] = [
    ("OTEL_METRICS_EXPORTER", "otlp"),
    ("OTEL_LOGS_EXPORTER", "otlp"),
    ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
    ("OTEL_BLRP_SCHEDULE_DELAY", "50"),
];

fn env_with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<_> = base.to_vec();
    for (k, v) in more {
        env.retain(|(key, _)| key != k);
        env.push((k, v));
    }
    env
}

/// GET `path` with request id `id`; asserts the status; drains the body.
async fn get(client: &reqwest::Client, app: &App, path: &str, id: &str, status: u16) {
    let res = client.get(app.url(path)).header("x-request-id", id).send().await.expect("request");
    assert_eq!(res.status().as_u16(), status, "GET {path}");
    res.bytes().await.unwrap();
}

async fn scrape(client: &reqwest::Client, app: &App) -> (String, Exposition) {
    let res = client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let parsed = Exposition::parse(&text);
    (text, parsed)
}

/// Scrapes until `counter` is above zero; the scrape.
async fn scrape_until_positive(client: &reqwest::Client, app: &App, counter: &str) -> Exposition {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, exposition) = scrape(client, app).await;
        if exposition.sum(counter, &[]) > 0.0 {
            return exposition;
        }
        assert!(tokio::time::Instant::now() < deadline, "{counter} stayed at 0: {:#?}", app.lines());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The latest cumulative histogram point of `name` whose attributes
/// include `attrs`, summed over the other attributes.
fn latest_count(points: &[ReceivedPoint], name: &str, attrs: &[(&str, &str)]) -> u64 {
    let mut latest: HashMap<Vec<(String, String)>, u64> = HashMap::new();
    for p in points.iter().filter(|p| p.name == name) {
        if attrs.iter().all(|(k, v)| p.attributes.get(*k).map(String::as_str) == Some(*v)) {
            let mut key: Vec<_> = p.attributes.clone().into_iter().collect();
            key.sort();
            latest.insert(key, p.count);
        }
    }
    latest.values().sum()
}

fn access_log<'a>(logs: &'a [ReceivedLog], id: &str) -> Option<&'a ReceivedLog> {
    logs.iter().find(|l| {
        l.body == "request finished" && l.attributes.get("request_id").map(String::as_str) == Some(id)
    })
}

/// Every signal of the quickstart, over `protocol`, to one receiver.
async fn every_signal_reaches_the_receiver(protocol: &str) {
    let receiver = OtlpReceiver::start().await;
    let endpoint = if protocol == "grpc" { receiver.grpc_endpoint() } else { receiver.http_endpoint() };
    let env = env_with(
        &FAST,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)],
    );
    let app = App::start(&env);
    let client = reqwest::Client::new();

    let users: Vec<String> = (0..7).map(|i| format!("{protocol}-user-{i}")).collect();
    for (i, id) in users.iter().enumerate() {
        get(&client, &app, &format!("/users/{i}"), id, 200).await;
    }
    let orders: Vec<String> = (0..3).map(|i| format!("{protocol}-order-{i}")).collect();
    for id in &orders {
        get(&client, &app, "/orders/5", id, 500).await;
    }
    // With OTLP alone, there is no Prometheus scrape.
    let res = client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 503, "OTEL_METRICS_EXPORTER=otlp serves no /metrics");

    // Metrics: the duration histogram of /users/{id} counts every request,
    // with the OTel name, unit, buckets and attribute keys.
    let duration = "http.server.request.duration";
    let users_route = [("http.route", "/users/{id}")];
    let points = receiver.wait_for_points(WAIT, |p| latest_count(p, duration, &users_route) == 7).await;
    let users_point = points
        .iter()
        .rev()
        .find(|p| {
            p.name == duration && p.attributes.get("http.route").map(String::as_str) == Some("/users/{id}")
        })
        .unwrap();
    assert_eq!(users_point.unit, "s");
    assert_eq!(users_point.kind, "histogram");
    assert_eq!(users_point.temporality, 2, "cumulative by default");
    assert_eq!(
        users_point.bounds,
        [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
    );
    assert_eq!(users_point.attributes["http.request.method"], "GET");
    assert_eq!(users_point.attributes["http.response.status_code"], "200");
    assert_eq!(users_point.status_code_type, "int", "an integer, as the conventions say");
    assert_eq!(users_point.attributes["url.scheme"], "http");
    assert!(!users_point.attributes.contains_key("error.type"));
    // OTel keys, not the Prometheus labels of /metrics.
    assert!(
        users_point.attributes.keys().all(|k| !k.starts_with("http_") && !k.starts_with("url_")),
        "{users_point:?}"
    );
    let points = receiver
        .wait_for_points(WAIT, |p| latest_count(p, duration, &[("http.route", "/orders/{id}")]) == 3)
        .await;
    let failing = points
        .iter()
        .rev()
        .find(|p| {
            p.name == duration && p.attributes.get("http.route").map(String::as_str) == Some("/orders/{id}")
        })
        .unwrap();
    assert_eq!(failing.attributes["error.type"], "500");
    assert_eq!(failing.attributes["http.response.status_code"], "500");
    let active = points.iter().find(|p| p.name == "http.server.active_requests").expect("active requests");
    assert!(active.kind == "sum" && !active.monotonic, "an up-down counter: {active:?}");
    let body = points.iter().find(|p| p.name == "http.server.response.body.size").expect("response size");
    assert_eq!(body.unit, "By");
    let cache = points.iter().find(|p| p.name == "cache.gets").expect("the users cache's gets");
    assert_eq!(cache.attributes["cache.name"], "users");

    // Logs: the access log of every request, and the handler's line, with
    // the ids of the request's server span and its request id.
    let all: Vec<&String> = users.iter().chain(&orders).collect();
    let logs = receiver.wait_for_logs(WAIT, |logs| all.iter().all(|id| access_log(logs, id).is_some())).await;
    for id in &all {
        let record = access_log(&logs, id).unwrap();
        let span = receiver.wait_for_span(WAIT, |s| s.attributes.get("request_id") == Some(*id)).await;
        assert_eq!(
            (record.trace_id.as_str(), record.span_id.as_str()),
            (span.trace_id.as_str(), span.span_id.as_str()),
            "{id}"
        );
        assert_eq!(record.attributes["http.route"], span.attributes["http.route"]);
        assert_eq!(span.service_name, "quickstart");
        assert_eq!(record.service_name, "quickstart");
    }
    let failed = access_log(&logs, &orders[0]).unwrap();
    assert_eq!(failed.attributes["error.type"], "500");
    let loaded = logs
        .iter()
        .find(|l| l.body == "loaded user" && l.attributes.get("request_id") == Some(&users[3]))
        .expect("the handler's line");
    assert_eq!(loaded.severity_number, 9, "INFO");
    assert_eq!(loaded.attributes["user.id"], "3");
    let span = receiver.wait_for_span(WAIT, |s| s.attributes.get("request_id") == Some(&users[3])).await;
    assert_eq!(
        (loaded.trace_id.as_str(), loaded.span_id.as_str()),
        (span.trace_id.as_str(), span.span_id.as_str())
    );
    // The quickstart's failing order (every fifth: a flaky order store).
    let store = logs.iter().find(|l| l.body == "order store timed out").expect("the error line");
    assert_eq!(store.severity_number, 17, "ERROR");
    // The same service.name on all three signals.
    assert!(points.iter().all(|p| p.service_name == "quickstart"));
    assert!(logs.iter().all(|l| l.service_name == "quickstart"));
    // Outside a request: no trace context.
    let listening = logs.iter().find(|l| l.body == "listening").expect("the listening line");
    assert_eq!(listening.trace_id, "");

    if protocol == "grpc" {
        assert_eq!(receiver.http_requests(), 0);
    } else {
        assert_eq!(receiver.grpc_requests(), 0);
    }
    assert!(app.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_reaches_an_otlp_grpc_receiver() {
    every_signal_reaches_the_receiver("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_reaches_an_otlp_http_receiver() {
    every_signal_reaches_the_receiver("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_recording_feeds_prometheus_and_otlp() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.grpc_endpoint();
    let env = env_with(
        &FAST,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_METRICS_EXPORTER", "otlp,prometheus")],
    );
    let app = App::start(&env);
    let client = reqwest::Client::new();
    for i in 0..12 {
        get(&client, &app, &format!("/users/{i}"), &format!("both-{i}"), 200).await;
    }
    let points = receiver
        .wait_for_points(WAIT, |p| {
            latest_count(p, "http.server.request.duration", &[("http.route", "/users/{id}")]) == 12
        })
        .await;
    let (text, exposition) = scrape(&client, &app).await;
    let scraped =
        exposition.sum("http_server_request_duration_seconds_count", &[("http_route", "/users/{id}")]);
    assert_eq!(scraped, 12.0);
    let pushed = latest_count(&points, "http.server.request.duration", &[("http.route", "/users/{id}")]);
    assert_eq!(pushed as f64, scraped, "the same recording on both sides");
    promtool_check(&text);
    // The export is counted once the collector has answered it.
    let exposition = scrape_until_positive(&client, &app, "otlp_exporter_metric_points_exported_total").await;
    // Metric exports are answered, so pushes do not fail.
    assert_eq!(exposition.sum("otlp_exporter_metric_points_failed_total", &[]), 0.0);
    assert!(app.terminate().success());
}

#[tokio::test]
async fn sigterm_flushes_metrics_and_logs() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.grpc_endpoint();
    // Ten minutes between exports: only the shutdown flush can deliver.
    let app = App::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_METRICS_EXPORTER", "otlp"),
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "600000"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "600000"),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ]);
    let client = reqwest::Client::new();
    for i in 0..4 {
        get(&client, &app, &format!("/users/{i}"), &format!("flush-{i}"), 200).await;
    }
    assert!(receiver.points().is_empty() && receiver.logs().is_empty(), "nothing exported before shutdown");
    let status = tokio::task::spawn_blocking(move || app.terminate()).await.unwrap();
    assert!(status.success());
    assert_eq!(
        latest_count(&receiver.points(), "http.server.request.duration", &[("http.route", "/users/{id}")]),
        4
    );
    let logs = receiver.logs();
    for i in 0..4 {
        assert!(access_log(&logs, &format!("flush-{i}")).is_some(), "access log flush-{i} lost at shutdown");
    }
}

/// Counts lines containing `needle`.
fn count_lines(app: &App, needle: &str) -> usize {
    app.lines().iter().filter(|l| l.contains(needle)).count()
}

/// Every signal on, Prometheus too (to read the counts), towards `endpoint`.
fn all_signals(endpoint: &str, more: &[(&str, &str)]) -> App {
    let mut env = env_with(
        &FAST,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint), ("OTEL_METRICS_EXPORTER", "otlp,prometheus")],
    );
    env = env_with(&env, more);
    App::start(&env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_collector_fails_no_request_and_every_signal_counts_it() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = all_signals(&format!("http://{closed}"), &[("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")]);
    let client = reqwest::Client::new();
    for i in 0..300 {
        get(&client, &app, &format!("/users/{}", i % 50), &format!("refused-{i}"), 200).await;
    }
    scrape_until_positive(&client, &app, "otlp_exporter_spans_failed_total").await;
    scrape_until_positive(&client, &app, "otlp_exporter_metric_points_failed_total").await;
    let exposition = scrape_until_positive(&client, &app, "otlp_exporter_log_records_failed_total").await;
    assert_eq!(exposition.sum("otlp_exporter_log_records_exported_total", &[]), 0.0);
    assert_eq!(exposition.sum("otlp_exporter_metric_points_exported_total", &[]), 0.0);
    for warning in ["span export failed", "metric point export failed", "log record export failed"] {
        assert_eq!(count_lines(&app, warning), 1, "{warning}: {:#?}", app.lines());
    }
    // The overview shows the same counts.
    let overview: serde_json::Value =
        client.get(app.url("/monitoring/overview")).send().await.unwrap().json().await.unwrap();
    let exporters = overview["exporters"].as_array().expect("exporters in the overview");
    let signals: Vec<&str> = exporters.iter().map(|e| e["signal"].as_str().unwrap()).collect();
    assert_eq!(signals, ["spans", "metric_points", "log_records"]);
    for exporter in exporters {
        assert!(exporter["failed"].as_u64().unwrap() > 0, "{exporter}");
        assert_eq!(exporter["exported"], 0, "{exporter}");
    }
    // So does the monitoring status, with the queues' sizes.
    let status: serde_json::Value =
        client.get(app.url("/monitoring/status")).send().await.unwrap().json().await.unwrap();
    for signal in ["spans", "metric_points", "log_records"] {
        let pipeline = &status["exporters"][signal];
        assert_eq!(pipeline["signal"], signal, "{status}");
        assert!(pipeline["failed"].as_u64().unwrap() > 0, "{pipeline}");
        assert!(status["dropped"][signal].is_u64(), "{status}");
    }
    assert_eq!(status["exporters"]["spans"]["capacity"], 2048, "{status}");
    assert_eq!(status["exporters"]["log_records"]["capacity"], 2048, "{status}");
    assert!(status["exporters"]["metric_points"].get("capacity").is_none(), "no queue: {status}");
    let status = tokio::task::spawn_blocking(move || app.terminate()).await.unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_collector_keeps_every_queue_bounded_and_counts_drops() {
    let hung = HungCollector::start().await;
    let endpoint = hung.endpoint.clone();
    let app = all_signals(
        &endpoint,
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "32"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "8"),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "32"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "8"),
        ],
    );
    let client = reqwest::Client::new();
    for i in 0..200 {
        get(&client, &app, &format!("/users/{}", i % 20), &format!("warm-{i}"), 200).await;
    }
    let rss_before = app::rss_bytes(app.pid());
    for i in 0..2000 {
        get(&client, &app, &format!("/users/{}", i % 20), &format!("hung-{i}"), 200).await;
    }
    let rss_after = app::rss_bytes(app.pid());
    let (text, exposition) = scrape(&client, &app).await;
    assert!(
        exposition.sum("otlp_exporter_log_records_dropped_total", &[]) >= 2000.0,
        "every access log past the queue dropped, counted"
    );
    assert!(exposition.sum("otlp_exporter_spans_dropped_total", &[]) >= 2000.0 - 32.0);
    assert!(exposition.sum("otlp_exporter_queue_log_records", &[]) <= 32.0);
    assert!(exposition.sum("otlp_exporter_queue_spans", &[]) <= 32.0);
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 16 * 1024 * 1024,
        "memory grew by {} KiB over 2000 requests with a hung collector",
        growth / 1024
    );
    promtool_check(&text);
    assert_eq!(count_lines(&app, "the log record export queue is full"), 1);
    drop(app);
    drop(hung);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_collector_fails_no_request_and_still_gets_every_signal() {
    let slow = OtlpReceiver::start_behaving(
        "127.0.0.1:0",
        Behavior { delay: Duration::from_millis(300), ..Behavior::default() },
    )
    .await;
    let app = all_signals(&slow.grpc_endpoint(), &[]);
    let client = reqwest::Client::new();
    for i in 0..100 {
        get(&client, &app, &format!("/users/{}", i % 10), &format!("slow-{i}"), 200).await;
    }
    slow.wait_for_points(WAIT, |p| latest_count(p, "http.server.request.duration", &[]) >= 100).await;
    slow.wait_for_logs(WAIT, |l| access_log(l, "slow-99").is_some()).await;
    slow.wait_for_span(WAIT, |s| s.attributes.get("request_id").map(String::as_str) == Some("slow-99")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_logs_flow_again_when_the_collector_comes_back() {
    let (runtime, receiver) = tokio::task::spawn_blocking(|| {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let receiver = runtime.block_on(OtlpReceiver::start());
        (runtime, receiver)
    })
    .await
    .unwrap();
    let addr = receiver.grpc_addr().to_string();
    let app = all_signals(&receiver.grpc_endpoint(), &[("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")]);
    let client = reqwest::Client::new();
    get(&client, &app, "/users/1", "before", 200).await;
    receiver.wait_for_logs(WAIT, |l| access_log(l, "before").is_some()).await;
    receiver.wait_for_points(WAIT, |p| !p.is_empty()).await;

    tokio::task::spawn_blocking(move || {
        drop(receiver);
        runtime.shutdown_timeout(Duration::from_secs(1));
    })
    .await
    .unwrap();
    for i in 0..20 {
        get(&client, &app, "/users/2", &format!("during-{i}"), 200).await;
    }
    scrape_until_positive(&client, &app, "otlp_exporter_metric_points_failed_total").await;
    scrape_until_positive(&client, &app, "otlp_exporter_log_records_failed_total").await;

    let back = OtlpReceiver::start_with(&addr, Duration::ZERO).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut i = 0;
    loop {
        get(&client, &app, "/users/3", &format!("after-{i}"), 200).await;
        let logs = back.logs();
        let log_back =
            logs.iter().any(|l| l.attributes.get("request_id").is_some_and(|id| id.starts_with("after-")));
        if log_back && !back.points().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics and logs never flowed again: {:#?}",
            app.lines()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        i += 1;
    }
    // The recovery line of each signal (a log line can come a batch later).
    let deadline = tokio::time::Instant::now() + WAIT;
    while count_lines(&app, "metric point export recovered") == 0
        || count_lines(&app, "log record export recovered") == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "no recovery line: {:#?}", app.lines());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_answering_garbage_fails_no_request() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Reads a little, answers bytes that are neither HTTP/2 nor HTTP/1.
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", garbage.local_addr().unwrap());
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = garbage.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(b"\x00\xffgarbage\r\n\r\nnot a protocol at all").await;
            });
        }
    });
    let app = all_signals(&endpoint, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")]);
    let client = reqwest::Client::new();
    for i in 0..100 {
        get(&client, &app, &format!("/users/{}", i % 10), &format!("garbage-{i}"), 200).await;
    }
    scrape_until_positive(&client, &app, "otlp_exporter_spans_failed_total").await;
    scrape_until_positive(&client, &app, "otlp_exporter_metric_points_failed_total").await;
    scrape_until_positive(&client, &app, "otlp_exporter_log_records_failed_total").await;
    drop(app);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_counted_and_the_collector_message_logged_once_per_signal() {
    for protocol in ["grpc", "http/protobuf"] {
        let rejecting =
            OtlpReceiver::start_behaving("127.0.0.1:0", Behavior { reject_all: true, ..Behavior::default() })
                .await;
        let endpoint = if protocol == "grpc" { rejecting.grpc_endpoint() } else { rejecting.http_endpoint() };
        let app = all_signals(&endpoint, &[("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)]);
        let client = reqwest::Client::new();
        for i in 0..50 {
            get(&client, &app, &format!("/users/{}", i % 10), &format!("rejected-{i}"), 200).await;
        }
        scrape_until_positive(&client, &app, "otlp_exporter_spans_rejected_total").await;
        scrape_until_positive(&client, &app, "otlp_exporter_metric_points_rejected_total").await;
        let exposition =
            scrape_until_positive(&client, &app, "otlp_exporter_log_records_rejected_total").await;
        assert_eq!(exposition.sum("otlp_exporter_spans_failed_total", &[]), 0.0, "answered, not failed");
        for noun in ["spans", "metric points", "log records"] {
            let needle = format!("the collector rejected {noun}");
            let lines: Vec<String> = app.lines().into_iter().filter(|l| l.contains(&needle)).collect();
            assert_eq!(lines.len(), 1, "{protocol} {needle}: {:#?}", app.lines());
            assert!(lines[0].contains(REJECT_MESSAGE), "the collector's message is logged: {}", lines[0]);
        }
        // The SDK's own line per batch is not printed.
        assert_eq!(count_lines(&app, "PartialSuccess"), 0, "{:#?}", app.lines());
        assert!(rejecting.spans().is_empty());
        drop(app);
    }
}

#[test]
fn hostile_settings_are_refused_by_name() {
    for (name, value) in [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "-5"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_TRACES_SAMPLER", "bogus"),
        ("OTEL_TRACES_SAMPLER_ARG", "2.5"),
        ("OTEL_METRICS_EXPORTER", "console"),
        ("OTEL_LOGS_EXPORTER", "stdout"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "lowmemory"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "-1"),
    ] {
        let mut env = vec![(name, value)];
        if name == "OTEL_TRACES_SAMPLER_ARG" {
            env.push(("OTEL_TRACES_SAMPLER", "traceidratio"));
        }
        let (status, lines) = app::run_to_exit(&env);
        assert!(!status.success(), "{name}={value} must refuse the start");
        let said = lines.iter().any(|l| l.contains("InvalidEnvVar") && l.contains(name));
        assert!(said, "{name}={value}: the error names the variable: {lines:#?}");
    }
}

#[test]
fn ignored_settings_get_one_warning_each_by_name() {
    for (name, value) in [
        ("OTEL_PROPAGATORS", "b3"),
        ("OTEL_SDK_DISABLED", "yes"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
        ("OTEL_NO_SUCH_SETTING", "1"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
    ] {
        let app = App::start(&[(name, value), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")]);
        let warnings: Vec<String> =
            app.lines().into_iter().filter(|l| l.contains(r#""level":"WARN""#) && l.contains(name)).collect();
        assert_eq!(warnings.len(), 1, "{name}={value}: {:#?}", app.lines());
        assert!(app.terminate().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_cut_short_says_what_it_abandons() {
    // Accepts connections and never answers; exports wait 30 s, longer
    // than the 5 s the shutdown grants.
    let hung = HungCollector::start().await;
    let endpoint = hung.endpoint.clone();
    let app = App::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "30000"),
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "600000"),
    ]);
    let client = reqwest::Client::new();
    for i in 0..10 {
        get(&client, &app, &format!("/users/{i}"), &format!("abandoned-{i}"), 200).await;
    }
    let (status, lines) = tokio::task::spawn_blocking(move || app.terminate_with_output()).await.unwrap();
    assert!(status.success(), "{status}");
    drop(hung);
    let said = |needle: &str| lines.iter().filter(|l| l.contains(needle)).cloned().collect::<Vec<_>>();
    // Ten requests, ten spans, none sent: all ten abandoned, and said so.
    let spans = said("span exporter shutdown did not complete");
    assert_eq!(spans.len(), 1, "{lines:#?}");
    assert!(
        spans[0].contains("10 spans abandoned") && spans[0].contains(r#""abandoned":10"#),
        "{}",
        spans[0]
    );
    // At least the ten access log records.
    let logs = said("log exporter shutdown did not complete");
    assert_eq!(logs.len(), 1, "{lines:#?}");
    let abandoned: serde_json::Value = serde_json::from_str(&logs[0]).unwrap();
    assert!(abandoned["fields"]["abandoned"].as_u64().unwrap() >= 10, "{}", logs[0]);
}
