//! How the layers compose, over real loopback HTTP: the public parts stacked
//! by hand give the signals the composite gives; both orders of
//! `.layer(..)` and `.merge(monitoring)` observe every application request
//! once and no monitoring request; nested services get their prefix
//! template; errors of tower middlewares get bounded names.
//!
//! Each test records into a Prometheus recorder of its own, set as the
//! thread's default while it runs (the tests run on current-thread
//! runtimes: server, client and layers on one thread), and exports spans to
//! an in-memory exporter of its own.

#[path = "../support/prom.rs"]
mod prom;

use std::{collections::BTreeMap, convert::Infallible, net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::Body,
    error_handling::HandleErrorLayer,
    http::StatusCode,
    routing::{get, post},
};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use prom::Exposition;
use tower::ServiceBuilder;
use tower_observability::{
    ObservabilityLayer, UNMATCHED_ROUTE,
    cache::RecordCacheStatusLayer,
    metrics::HttpMetricsLayer,
    monitoring::{MonitoringRouter, ROUTES},
    panic::CatchPanicLayer,
    request_id::SetRequestIdLayer,
    trace::HttpTraceLayer,
};

/// A recorder and a span exporter for one test.
struct Signals {
    recorder: PrometheusRecorder,
    spans: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

impl Signals {
    fn new() -> Self {
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
        Self { recorder: tower_observability::prometheus_builder().build_recorder(), spans, provider }
    }

    fn handle(&self) -> PrometheusHandle {
        self.recorder.handle()
    }

    fn trace_layer(&self) -> HttpTraceLayer {
        HttpTraceLayer::new().tracer(self.provider.tracer("composition"))
    }

    /// The composite, tracing with this test's provider.
    fn composite(&self) -> ObservabilityLayer {
        ObservabilityLayer::new().trace(self.trace_layer())
    }

    /// The server spans, as comparable text: name, kind, status and the
    /// attributes that do not change from run to run.
    fn server_spans(&self) -> Vec<String> {
        let mut spans: Vec<String> = self.spans.get_finished_spans().unwrap().iter().map(describe).collect();
        spans.sort();
        spans
    }
}

fn describe(span: &SpanData) -> String {
    let attributes: BTreeMap<String, String> = span
        .attributes
        .iter()
        // Ids and ports differ from server to server.
        .filter(|kv| !matches!(kv.key.as_str(), "request_id" | "user_agent.original" | "server.port"))
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    format!("{} {:?} {:?} {attributes:?}", span.name, span.span_kind, span.status)
}

/// The `http_server_*` samples of `handle`, name, labels and value, but for
/// the buckets and sums of durations (which differ from run to run).
fn http_series(handle: &PrometheusHandle) -> Vec<String> {
    tower_observability::metrics::flush();
    let exposition = Exposition::parse(&handle.render());
    let mut series: Vec<String> = exposition
        .samples
        .iter()
        .filter(|s| s.name.starts_with("http_server_"))
        .filter(|s| {
            !(s.name.starts_with("http_server_request_duration_seconds_")
                && (s.name.ends_with("_bucket") || s.name.ends_with("_sum")))
        })
        .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
        .collect();
    series.sort();
    series
}

fn count(handle: &PrometheusHandle, route: &str) -> f64 {
    tower_observability::metrics::flush();
    Exposition::parse(&handle.render())
        .sum("http_server_request_duration_seconds_count", &[("http_route", route)])
}

/// Serves `router` on loopback. Its handlers become services once, here
/// (`with_state`), not once per connection, so that the concurrency limit
/// below is one for every connection.
async fn serve(router: Router) -> SocketAddr {
    let router = router.with_state(());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap()
}

/// Sends `requests` (method, path) one after the other and reads each body
/// to its end; returns the statuses.
async fn send(addr: SocketAddr, requests: &[(&str, &str)]) -> Vec<u16> {
    let client = client();
    let mut statuses = Vec::new();
    for (method, path) in requests {
        let url = format!("http://{addr}{path}");
        let req = match *method {
            "POST" => client.post(url).body("0123456789"),
            _ => client.get(url),
        };
        let res = req.send().await.unwrap();
        statuses.push(res.status().as_u16());
        res.bytes().await.unwrap();
    }
    statuses
}

/// The application of the tests: a route, a failing one, a cached one, a
/// panicking one, a body, and a custom fallback.
fn app() -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/fail", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }))
        .route("/cached", get(|| async { ([("cache-status", "http; hit")], "cached") }))
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("handler bug");
                }
                "never"
            }),
        )
        .route("/upload", post(|body: String| async move { body.len().to_string() }))
}

const TRAFFIC: &[(&str, &str)] = &[
    ("GET", "/users/1"),
    ("GET", "/users/2"),
    ("GET", "/fail"),
    ("GET", "/cached"),
    ("GET", "/panic"),
    ("POST", "/upload"),
    ("GET", "/nowhere"),
];

/// The public layers stacked by hand in the documented order give the
/// composite's metrics and spans for the same traffic.
#[tokio::test]
async fn hand_stacked_layers_equal_the_composite() {
    let composite = Signals::new();
    let statuses = {
        let _recorder = metrics::set_default_local_recorder(&composite.recorder);
        let addr = serve(app().layer(composite.composite())).await;
        send(addr, TRAFFIC).await
    };
    assert_eq!(statuses, [200, 200, 503, 200, 500, 200, 404]);

    let by_hand = Signals::new();
    {
        let _recorder = metrics::set_default_local_recorder(&by_hand.recorder);
        let stack = ServiceBuilder::new()
            .layer(SetRequestIdLayer::new())
            .layer(by_hand.trace_layer())
            .layer(HttpMetricsLayer::new())
            .layer(RecordCacheStatusLayer::new())
            .layer(CatchPanicLayer::new());
        let addr = serve(app().layer(stack)).await;
        assert_eq!(send(addr, TRAFFIC).await, statuses);
    }

    let (a, b) = (http_series(&composite.handle()), http_series(&by_hand.handle()));
    assert!(a.iter().any(|s| s.contains("cache_requests_total")), "{a:#?}");
    assert!(a.iter().any(|s| s.contains("\"error_type\": \"panic\"")), "{a:#?}");
    assert_eq!(a, b);
    let (a, b) = (composite.server_spans(), by_hand.server_spans());
    assert_eq!(a.len(), TRAFFIC.len(), "{a:#?}");
    assert!(a.iter().any(|s| s.contains("cache.result")), "{a:#?}");
    assert_eq!(a, b);
}

/// The monitoring fragment merged after the application's layer, or before
/// it, with a fallback, a nested router and a nested service: every
/// application request is counted once, no monitoring request is, and both
/// orders give the same `/metrics`.
#[tokio::test]
async fn both_composition_orders_give_identical_metrics() {
    let files = tower::service_fn(|_: axum::extract::Request| async {
        Ok::<_, Infallible>(axum::response::Response::new(Body::from("file")))
    });
    let application = || {
        app()
            .nest("/api", Router::new().route("/items/{id}", get(|| async { "item" })))
            .nest_service("/assets", files)
            .fallback(|| async { (StatusCode::NOT_FOUND, "no such page") })
    };
    let traffic: &[(&str, &str)] = &[
        ("GET", "/users/1"),
        ("GET", "/api/items/3"),
        ("GET", "/assets/css/site.css"),
        ("GET", "/nowhere"),
        ("GET", "/nowhere/else"),
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("GET", "/monitoring/overview"),
        ("GET", "/metrics"),
        ("GET", "/metrics"),
    ];

    let mut renders = Vec::new();
    for order in ["layer then merge", "merge then layer"] {
        let signals = Signals::new();
        let _recorder = metrics::set_default_local_recorder(&signals.recorder);
        // As `Observability::layer` and `monitoring_router` make them.
        let layer = signals.composite().exclude_routes(ROUTES);
        let monitoring = MonitoringRouter::standalone().observability_layer(layer.clone());
        let router = match order {
            "layer then merge" => application().layer(layer).merge(monitoring),
            _ => application().merge(monitoring).layer(layer),
        };
        let addr = serve(router).await;
        let statuses = send(addr, traffic).await;
        assert_eq!(statuses, [200, 200, 200, 404, 404, 200, 200, 200, 503, 503], "{order}");
        let handle = signals.handle();
        assert_eq!(count(&handle, UNMATCHED_ROUTE), 2.0, "{order}: each 404 once");
        assert_eq!(count(&handle, "/assets/{*path}"), 1.0, "{order}: the nest's template");
        assert_eq!(count(&handle, "/api/items/{id}"), 1.0, "{order}");
        for route in ROUTES {
            assert_eq!(count(&handle, route), 0.0, "{order}: {route} is never observed");
        }
        let spans = signals.server_spans();
        assert_eq!(spans.len(), 5, "{order}: one span per application request: {spans:#?}");
        renders.push(http_series(&handle));
    }
    assert_eq!(renders[0], renders[1]);
}

/// Monitoring routes nested under a prefix the layer was not told of, inside
/// the layer: never counted; after its first request (which the layer traces
/// before the route says what it is), a route is not traced either.
#[tokio::test]
async fn monitoring_nested_inside_the_layer_is_learned() {
    let signals = Signals::new();
    let _recorder = metrics::set_default_local_recorder(&signals.recorder);
    let layer = signals.composite();
    let monitoring = MonitoringRouter::standalone().observability_layer(layer.clone());
    let router = app().nest("/ops", Router::from(monitoring)).layer(layer);
    let addr = serve(router).await;
    let statuses = send(addr, &[("GET", "/ops/health/live"); 3]).await;
    assert_eq!(statuses, [200; 3]);
    let handle = signals.handle();
    assert_eq!(count(&handle, "/ops/health/live"), 0.0);
    assert_eq!(signals.server_spans().len(), 1, "only the first request, before the route was known");
    send(addr, &[("GET", "/users/1")]).await;
    assert_eq!(count(&handle, "/users/{id}"), 1.0);
}

/// A fallback set before `.layer(..)` is observed in both orders of the
/// merge; a fallback set after it is outside the layer (axum's
/// `Router::layer` wraps what the router holds at that moment), which the
/// crate documents.
#[tokio::test]
async fn a_fallback_before_the_layer_is_counted_in_both_orders() {
    for order in ["layer then merge", "merge then layer"] {
        let signals = Signals::new();
        let _recorder = metrics::set_default_local_recorder(&signals.recorder);
        let layer = signals.composite().exclude_routes(ROUTES);
        let monitoring = MonitoringRouter::standalone().observability_layer(layer.clone());
        let application = app().fallback(|| async { (StatusCode::NOT_FOUND, "custom") });
        let router = match order {
            "layer then merge" => application.layer(layer).merge(monitoring),
            _ => application.merge(monitoring).layer(layer),
        };
        let addr = serve(router).await;
        assert_eq!(send(addr, &[("GET", "/a"), ("GET", "/b/c")]).await, [404, 404]);
        assert_eq!(count(&signals.handle(), UNMATCHED_ROUTE), 2.0, "{order}");
    }
}

/// Errors of tower middlewares inside the layer: tower's timeout gives
/// `error_type="timeout"`, load shedding a bounded type name; never the
/// `Box<dyn Error>` type name.
#[tokio::test]
async fn errors_of_tower_middlewares_get_bounded_types() {
    let signals = Signals::new();
    let _recorder = metrics::set_default_local_recorder(&signals.recorder);
    let layer = signals.composite();
    let handle_error = HandleErrorLayer::new(|error: tower::BoxError| async move {
        if error.is::<tower::timeout::error::Elapsed>() {
            StatusCode::REQUEST_TIMEOUT
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    });
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        "late"
    };
    let router = Router::new()
        .route(
            "/timeout",
            get(slow).layer(
                ServiceBuilder::new()
                    .layer(handle_error.clone())
                    .layer(layer.clone())
                    .timeout(Duration::from_millis(50)),
            ),
        )
        .route(
            "/shed",
            get(slow).layer(
                ServiceBuilder::new().layer(handle_error).layer(layer).load_shed().concurrency_limit(1),
            ),
        );
    let addr = serve(router).await;
    assert_eq!(send(addr, &[("GET", "/timeout")]).await, [408]);
    let url = format!("http://{addr}/shed");
    let (a, b) = tokio::join!(client().get(&url).send(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client().get(&url).send().await
    });
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 503]);

    tower_observability::metrics::flush();
    let exposition = Exposition::parse(&signals.handle().render());
    let error = |route: &str| -> Vec<String> {
        exposition
            .matching("http_server_request_duration_seconds_count", &[("http_route", route)])
            .filter_map(|s| s.labels.get("error_type").cloned())
            .collect()
    };
    assert_eq!(error("/timeout"), ["timeout"]);
    assert_eq!(error("/shed"), ["tower::load_shed::error::Overloaded"]);
    let text = signals.handle().render();
    assert!(!text.contains("Box<dyn"), "no type name with generics: {text}");
}

/// Two stacks in one process, each given its own recorder, served on a
/// multi-threaded runtime (no thread-local default recorder helps there):
/// each recorder holds its own stack's traffic and nothing of the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_record_into_their_own_recorders() {
    use tower_observability::recorder::MetricsRecorder;

    let mut handles = Vec::new();
    let mut addrs = Vec::new();
    for name in ["alpha", "beta"] {
        let recorder = tower_observability::prometheus_builder().build_recorder();
        handles.push(recorder.handle());
        let layer = ObservabilityLayer::new().recorder(MetricsRecorder::new(recorder));
        let route = format!("/{name}/{{id}}");
        let app = Router::new().route(&route, get(|| async { "ok" })).layer(layer);
        addrs.push(serve(app).await);
    }
    assert_eq!(
        send(addrs[0], &[("GET", "/alpha/1"), ("GET", "/alpha/2"), ("GET", "/nope")]).await,
        [200, 200, 404]
    );
    assert_eq!(send(addrs[1], &[("GET", "/beta/1")]).await, [200]);
    tower_observability::metrics::flush();
    let (alpha, beta) = (handles[0].render(), handles[1].render());
    assert_eq!(count(&handles[0], "/alpha/{id}"), 2.0, "{alpha}");
    assert_eq!(count(&handles[0], UNMATCHED_ROUTE), 1.0, "{alpha}");
    assert_eq!(count(&handles[1], "/beta/{id}"), 1.0, "{beta}");
    assert!(!alpha.contains("/beta/") && !beta.contains("/alpha/"), "{alpha}\n{beta}");
    assert!(
        alpha.contains("# HELP http_server_request_duration_seconds"),
        "described in the given recorder: {alpha}"
    );
    prom::promtool_check(&alpha);
}
