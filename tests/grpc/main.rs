//! gRPC servers observed with the RPC conventions, over real loopback with
//! real tonic clients: the `grpc` example binary (`Server::builder()
//! .layer(obs.layer())`, the real `Observability` pipelines: Prometheus
//! `/metrics`, OTLP spans to the test receiver), and in process a tonic
//! service mounted in an axum `Router` beside an HTTP route that calls it
//! through `PropagateContextLayer` (one trace, HTTP -> gRPC).

#[path = "../support/app.rs"]
mod app;
#[path = "../support/greeter.rs"]
mod greeter;
#[path = "../support/otlp.rs"]
mod otlp;
#[path = "../support/prom.rs"]
mod prom;

use std::time::{Duration, Instant};

use app::App;
use greeter::{CountRequest, GreeterClient, HelloRequest};
use otlp::{OtlpReceiver, ReceivedSpan};
use prom::{Exposition, promtool_check};
use tonic::{Code, transport::Channel};

const WAIT: Duration = Duration::from_secs(20);
const DURATION: &str = "rpc_server_call_duration_seconds";
const COUNT: &str = "rpc_server_call_duration_seconds_count";
const SUM: &str = "rpc_server_call_duration_seconds_sum";

/// Starts the `grpc` example exporting spans to `receiver`; returns it and
/// the address of its monitoring routes.
fn start(receiver: &OtlpReceiver) -> (App, String) {
    let endpoint = receiver.grpc_endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("GRPC_PORT", "0"),
    ];
    let app = App::start_example("grpc", &env);
    let monitoring = app
        .lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|json| json["fields"]["message"] == "monitoring listening")
        .and_then(|json| json["fields"]["address"].as_str().map(str::to_owned))
        .expect("the monitoring address is logged before the gRPC one");
    (app, monitoring)
}

async fn client(app: &App) -> GreeterClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", app.address)).unwrap().connect().await.unwrap();
    GreeterClient::new(channel)
}

async fn scrape(monitoring: &str) -> (String, Exposition) {
    let text = reqwest::get(format!("http://{monitoring}/metrics")).await.unwrap().text().await.unwrap();
    let parsed = Exposition::parse(&text);
    (text, parsed)
}

/// Scrapes until `done` holds (at most [`WAIT`]).
async fn scrape_until(
    monitoring: &str,
    what: &str,
    done: impl Fn(&Exposition) -> bool,
) -> (String, Exposition) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (text, parsed) = scrape(monitoring).await;
        if done(&parsed) {
            return (text, parsed);
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn calls(scrape: &Exposition, labels: &[(&str, &str)]) -> f64 {
    scrape.sum(COUNT, labels)
}

fn hello(name: &str) -> HelloRequest {
    HelloRequest { name: name.to_owned() }
}

/// OK, NOT_FOUND, INTERNAL, UNAVAILABLE, UNIMPLEMENTED (unknown method and
/// unknown service, trailers-only) and DEADLINE_EXCEEDED (the client's
/// `grpc-timeout` shorter than the handler) are each counted once with their
/// status, `error_type` only on the server errors; no HTTP series claims
/// them; the OTLP receiver gets one server span per call with the RPC
/// name, attributes and status.
#[tokio::test]
async fn each_status_is_counted_once_and_exported_as_an_rpc_span() {
    let receiver = OtlpReceiver::start().await;
    let (app, monitoring) = start(&receiver);
    let mut greeter = client(&app).await;

    assert_eq!(greeter.say_hello(hello("ada")).await.unwrap().into_inner().message, "Hello, ada!");
    let failures = [("nobody", Code::NotFound), ("crash", Code::Internal), ("busy", Code::Unavailable)];
    for (name, code) in failures {
        assert_eq!(greeter.say_hello(hello(name)).await.unwrap_err().code(), code, "{name}");
    }
    let unknown = greeter.unary_at("/demo.Greeter/Nope", hello("x")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unimplemented);
    let unknown = greeter.unary_at("/demo.Missing/Nope", hello("x")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unimplemented);
    let mut slow = tonic::Request::new(hello("slow:3000"));
    slow.set_timeout(Duration::from_millis(300));
    let late = greeter.say_hello(slow).await.unwrap_err();
    assert!(matches!(late.code(), Code::Cancelled | Code::DeadlineExceeded), "{late:?}");

    let method = ("rpc_method", "demo.Greeter/SayHello");
    let (text, metrics) = scrape_until(&monitoring, "the deadline call", |m| {
        calls(m, &[method, ("rpc_response_status_code", "DEADLINE_EXCEEDED")]) > 0.0
    })
    .await;
    promtool_check(&text);
    assert_eq!(metrics.types[DURATION], "histogram");
    assert!(metrics.help.contains_key(DURATION));
    let system = ("rpc_system_name", "grpc");
    for (status, error) in [
        ("OK", None),
        ("NOT_FOUND", None),
        ("INTERNAL", Some("INTERNAL")),
        ("UNAVAILABLE", Some("UNAVAILABLE")),
        ("DEADLINE_EXCEEDED", Some("DEADLINE_EXCEEDED")),
    ] {
        let labels = [system, method, ("rpc_response_status_code", status)];
        let series: Vec<_> = metrics.matching(COUNT, &labels).collect();
        assert_eq!(series.len(), 1, "{status}: one series\n{text}");
        assert_eq!(series[0].value, 1.0, "{status}: counted once\n{text}");
        assert_eq!(series[0].labels.get("error_type").map(String::as_str), error, "{status}");
    }
    let other = [system, ("rpc_method", "_OTHER"), ("rpc_response_status_code", "UNIMPLEMENTED")];
    assert_eq!(
        calls(&metrics, &[other[0], other[1], other[2], ("error_type", "UNIMPLEMENTED")]),
        2.0,
        "{text}"
    );
    let all_methods: std::collections::BTreeSet<&str> =
        metrics.samples.iter().filter_map(|s| s.labels.get("rpc_method").map(String::as_str)).collect();
    assert_eq!(all_methods, ["_OTHER", "demo.Greeter/SayHello"].into(), "no label from a raw path");
    assert_eq!(calls(&metrics, &[]), 7.0, "seven calls, each once\n{text}");
    assert!(
        !metrics.samples.iter().any(|s| s.name.starts_with("http_server_request_duration")),
        "gRPC calls are not in the HTTP series\n{text}"
    );
    let active = metrics.sum("rpc_server_active_calls", &[method]);
    assert_eq!(active, 0.0, "no call under way\n{text}");

    // The spans, over OTLP.
    let span = |status: &'static str| {
        receiver.wait_for_span(WAIT, move |s| {
            s.attributes.get("rpc.response.status_code").map(String::as_str) == Some(status)
        })
    };
    let ok = span("OK").await;
    assert_eq!((ok.name.as_str(), ok.kind, ok.status_code), ("demo.Greeter/SayHello", 2, 0));
    assert_eq!(ok.service_name, "greeter");
    assert_eq!(ok.attributes["rpc.system.name"], "grpc");
    assert_eq!(ok.attributes["rpc.method"], "demo.Greeter/SayHello");
    assert!(!ok.attributes.contains_key("error.type"));
    assert!(!ok.attributes.contains_key("http.route"), "an RPC span, not an HTTP one");
    assert!(ok.attributes.contains_key("request_id"));
    let not_found = span("NOT_FOUND").await;
    assert_eq!(not_found.status_code, 0, "NOT_FOUND is not a server error");
    assert!(!not_found.attributes.contains_key("error.type"));
    let internal = span("INTERNAL").await;
    assert_eq!((internal.status_code, internal.status_message.as_str()), (2, "the greeter fell over"));
    assert_eq!(internal.attributes["error.type"], "INTERNAL");
    let deadline = span("DEADLINE_EXCEEDED").await;
    assert_eq!((deadline.name.as_str(), deadline.status_code), ("demo.Greeter/SayHello", 2));
    assert!(deadline.end_unix_nanos - deadline.start_unix_nanos >= 250_000_000, "{deadline:?}");
    let unimplemented: Vec<ReceivedSpan> = {
        receiver
            .wait_for_span(WAIT, |s| {
                s.attributes.get("rpc.method_original").is_some_and(|m| m.contains("Missing"))
            })
            .await;
        receiver.spans().into_iter().filter(|s| s.attributes.contains_key("rpc.method_original")).collect()
    };
    let mut originals: Vec<&str> =
        unimplemented.iter().map(|s| s.attributes["rpc.method_original"].as_str()).collect();
    originals.sort();
    assert_eq!(originals, ["demo.Greeter/Nope", "demo.Missing/Nope"]);
    for span in &unimplemented {
        assert_eq!((span.name.as_str(), span.status_code), ("grpc", 2), "{span:?}");
        assert_eq!(span.attributes["rpc.method"], "_OTHER");
        assert_eq!(span.attributes["error.type"], "UNIMPLEMENTED");
    }
}

/// A server stream is timed to its end: one that completes (trailers) after
/// its replies, one held open and cancelled by the client at least as long
/// as it was held (`CANCELLED`, not an error); the active count rises while
/// it is open and returns to 0.
#[tokio::test]
async fn streams_are_timed_to_their_end_and_never_leak_active_calls() {
    let receiver = OtlpReceiver::start().await;
    let (app, monitoring) = start(&receiver);
    let mut greeter = client(&app).await;
    let method = ("rpc_method", "demo.Greeter/Count");

    let mut done = greeter.count(CountRequest { n: 3, interval_ms: 100 }).await.unwrap().into_inner();
    let mut replies = Vec::new();
    while let Some(reply) = done.message().await.unwrap() {
        replies.push(reply.i);
    }
    assert_eq!(replies, [0, 1, 2]);

    let held = Instant::now();
    let mut open = greeter.count(CountRequest { n: 100_000, interval_ms: 10 }).await.unwrap().into_inner();
    for _ in 0..3 {
        open.message().await.unwrap().expect("a reply");
    }
    let (_, during) =
        scrape_until(&monitoring, "the open stream", |m| m.sum("rpc_server_active_calls", &[method]) == 1.0)
            .await;
    assert_eq!(during.sum("rpc_server_active_calls", &[method]), 1.0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(open);
    let held = held.elapsed();

    let cancelled = [method, ("rpc_response_status_code", "CANCELLED")];
    let (text, after) =
        scrape_until(&monitoring, "the cancelled stream", |m| calls(m, &cancelled) == 1.0).await;
    assert_eq!(after.sum("rpc_server_active_calls", &[method]), 0.0, "{text}");
    let ok = [method, ("rpc_response_status_code", "OK")];
    assert_eq!(calls(&after, &ok), 1.0, "{text}");
    assert!(after.sum(SUM, &ok) >= 0.3, "three replies 100 ms apart\n{text}");
    let seconds = after.sum(SUM, &cancelled);
    assert!(seconds >= 0.4, "held 400 ms at least, recorded {seconds} s\n{text}");
    assert!(seconds <= held.as_secs_f64() + 1.0, "{seconds} s for a stream held {held:?}");
    assert!(!after.matching(COUNT, &cancelled).any(|s| s.labels.contains_key("error_type")));

    let span = receiver
        .wait_for_span(WAIT, |s| {
            s.attributes.get("rpc.response.status_code").map(String::as_str) == Some("CANCELLED")
        })
        .await;
    assert_eq!((span.name.as_str(), span.status_code), ("demo.Greeter/Count", 0));
    assert!(span.end_unix_nanos - span.start_unix_nanos >= 400_000_000);
}

/// The health registry answers `grpc.health.v1.Health`, and the probes are
/// observed as any call.
#[tokio::test]
async fn the_health_registry_is_served_as_grpc_health() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };

    let receiver = OtlpReceiver::start().await;
    let (app, monitoring) = start(&receiver);
    let channel = Channel::from_shared(format!("http://{}", app.address)).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "liveness", "readiness", "self"] {
        let req = HealthCheckRequest { service: service.to_owned() };
        let status = health.check(req).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let missing = health.check(HealthCheckRequest { service: "nope".to_owned() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);
    drop(watch);

    let check = ("rpc_method", "grpc.health.v1.Health/Check");
    let (text, metrics) = scrape_until(&monitoring, "the health calls", |m| {
        calls(m, &[("rpc_method", "grpc.health.v1.Health/Watch")]) == 1.0
    })
    .await;
    assert_eq!(calls(&metrics, &[check, ("rpc_response_status_code", "OK")]), 4.0, "{text}");
    assert_eq!(calls(&metrics, &[check, ("rpc_response_status_code", "NOT_FOUND")]), 1.0, "{text}");
}

mod in_process {
    //! In process, on one current-thread runtime: a recorder and a span
    //! exporter of the test's own.

    use std::net::SocketAddr;

    use axum::{Router, extract::Path, routing::get};
    use metrics_exporter_prometheus::PrometheusRecorder;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tower::ServiceBuilder;
    use tower_observability::{
        ObservabilityLayer,
        trace::{HttpTraceLayer, PropagateContextLayer},
    };

    use super::*;
    use crate::greeter::{GreeterServer, Hello};

    type Propagating = tower_observability::trace::PropagateContext<Channel>;

    async fn greet(Path(name): Path<String>, client: axum::Extension<GreeterClient<Propagating>>) -> String {
        let mut client = client.0.clone();
        client
            .say_hello(HelloRequest { name })
            .await
            .map(|r| r.into_inner().message)
            .unwrap_or_else(|s| s.to_string())
    }

    /// A tonic service mounted in an axum `Router` (`Routes::into_axum_router`)
    /// beside an HTTP route whose handler calls it through
    /// `PropagateContextLayer`: the call is recorded in the RPC series
    /// under its method (not the router's wildcard), the HTTP request in
    /// the HTTP series, and one trace crosses from the HTTP span to the
    /// gRPC span with the request id.
    #[tokio::test]
    async fn a_tonic_service_in_an_axum_router_and_one_trace_from_http_to_grpc() {
        let recorder: PrometheusRecorder = tower_observability::prometheus_builder().build_recorder();
        let handle = recorder.handle();
        let _recorder = metrics::set_default_local_recorder(&recorder);
        // The registry keeps each request's correlation (its request id),
        // which `PropagateContextLayer` reads; `Observability` installs it.
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
        let layer =
            ObservabilityLayer::new().trace(HttpTraceLayer::new().tracer(provider.tracer("grpc-test")));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        let propagating = ServiceBuilder::new().layer(PropagateContextLayer::new()).service(channel.clone());
        let grpc = tonic::service::Routes::new(GreeterServer::new(Hello)).into_axum_router();
        let app = Router::new()
            .route("/hello/{name}", get(greet))
            .layer(axum::Extension(GreeterClient::new(propagating)))
            .merge(grpc)
            .layer(layer);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let res = reqwest::Client::new()
            .get(format!("http://{addr}/hello/ada"))
            .header("x-request-id", "req-42")
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-request-id"], "req-42");
        assert_eq!(res.text().await.unwrap(), "Hello, ada!");
        let mut direct = GreeterClient::new(channel);
        let unknown = direct.unary_at("/demo.Greeter/Nope", hello("x")).await.unwrap_err();
        assert_eq!(unknown.code(), Code::Unimplemented);
        let not_here = direct.count(CountRequest { n: 1, interval_ms: 0 }).await.unwrap_err();
        assert_eq!(not_here.code(), Code::Unimplemented, "a served method answering UNIMPLEMENTED");

        let deadline = Instant::now() + WAIT;
        let finished = loop {
            let finished = spans.get_finished_spans().unwrap();
            if finished.len() == 4 || Instant::now() > deadline {
                break finished;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let names: Vec<&str> = finished.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(finished.len(), 4, "{names:?}");
        let http = finished.iter().find(|s| s.name == "GET /hello/{name}").expect("the HTTP span");
        let rpc = finished.iter().find(|s| s.name == "demo.Greeter/SayHello").expect("the gRPC span");
        assert_eq!(rpc.span_context.trace_id(), http.span_context.trace_id(), "one trace");
        assert_eq!(rpc.parent_span_id, http.span_context.span_id(), "the gRPC span is the HTTP span's child");
        let attribute = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
            span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
        };
        assert_eq!(attribute(rpc, "request_id").as_deref(), Some("req-42"), "the request id crossed");
        assert_eq!(attribute(rpc, "rpc.response.status_code").as_deref(), Some("OK"));
        assert!(finished.iter().any(|s| s.name == "grpc"), "the unknown method: {names:?}");
        let count = finished.iter().find(|s| s.name == "demo.Greeter/Count").expect("a served method");
        assert_eq!(attribute(count, "error.type").as_deref(), Some("UNIMPLEMENTED"));

        tower_observability::metrics::flush();
        let text = handle.render();
        let metrics = Exposition::parse(&text);
        let http_count = "http_server_request_duration_seconds_count";
        assert_eq!(metrics.sum(http_count, &[("http_route", "/hello/{name}")]), 1.0, "{text}");
        assert_eq!(metrics.sum(http_count, &[]), 1.0, "only the HTTP request\n{text}");
        let ok = [("rpc_method", "demo.Greeter/SayHello"), ("rpc_response_status_code", "OK")];
        assert_eq!(calls(&metrics, &ok), 1.0, "{text}");
        let other = [("rpc_method", "_OTHER"), ("rpc_response_status_code", "UNIMPLEMENTED")];
        assert_eq!(calls(&metrics, &other), 1.0, "{text}");
        let count = [("rpc_method", "demo.Greeter/Count"), ("error_type", "UNIMPLEMENTED")];
        assert_eq!(calls(&metrics, &count), 1.0, "{text}");
    }
}
