//! Every way a request can end, over real loopback HTTP: streamed to the
//! last byte, cut by the client, panicked, failed mid-body, chunked both
//! ways; and the same layers around a plain `tower::service_fn`.
//!
//! One Prometheus recorder and one in-memory span exporter serve the whole
//! binary; each test uses its own routes, and tests that read the shared
//! active-requests gauge hold `SERIAL`.

#[path = "../support/prom.rs"]
mod prom;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::OnceLock,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::Path,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use prom::Exposition;
use tower_observability::{
    ObservabilityLayer, StatusClassifier, metrics::DURATION_BUCKETS, trace::ServerSpanLayer,
};
use tracing_subscriber::layer::SubscriberExt;

struct Harness {
    prometheus: PrometheusHandle,
    spans: InMemorySpanExporter,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let prometheus =
            PrometheusBuilder::new().set_buckets(&DURATION_BUCKETS).unwrap().install_recorder().unwrap();
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("outcomes")))
            .with(ServerSpanLayer::new());
        tracing::subscriber::set_global_default(subscriber).unwrap();
        // `ObservabilityLayer::new()` makes its server spans with the global
        // tracer provider's tracer. The OTel layer above takes every target,
        // `tower_observability::request` too (a hand-built subscriber that
        // does not use `OTEL_LAYER_EXCLUDED_TARGETS`): nothing leaves the
        // trace, and the request's span is an extra child of the server span.
        opentelemetry::global::set_tracer_provider(provider);
        Harness { prometheus, spans }
    })
}

/// Serialises the tests that read the shared active-requests gauge.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn scrape() -> Exposition {
    tower_observability::metrics::flush();
    Exposition::parse(&harness().prometheus.render())
}

fn count(route: &str, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("http_route", route)];
    all.extend_from_slice(labels);
    scrape().sum("http_server_request_duration_seconds_count", &all)
}

fn active() -> f64 {
    scrape().sum("http_server_active_requests", &[])
}

/// Polls `cond` every 20 ms for at most 10 s.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn finished_span(route: &str) -> Vec<SpanData> {
    harness()
        .spans
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| {
            s.span_kind == opentelemetry::trace::SpanKind::Server
                && s.attributes.iter().any(|kv| kv.key.as_str() == "http.route" && kv.value.as_str() == route)
        })
        .collect()
}

fn span_attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.as_str().into_owned())
}

/// A body of `n` chunks of `size` bytes, `delay` apart.
fn chunks(n: usize, size: usize, delay: Duration) -> Body {
    let stream = futures_util::stream::unfold(0, move |i| async move {
        if i == n {
            return None;
        }
        tokio::time::sleep(delay).await;
        Some((Ok::<_, Infallible>(Bytes::from(vec![b'x'; size])), i + 1))
    });
    Body::from_stream(stream)
}

fn app() -> Router {
    Router::new()
        .route(
            "/stream/{n}",
            get(|Path(n): Path<usize>| async move { chunks(n, 100, Duration::from_millis(50)) }),
        )
        .route("/forever", get(|| async { chunks(usize::MAX, 10, Duration::from_millis(20)) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("handler bug");
                }
                "unreachable"
            }),
        )
        .route(
            "/body-error",
            get(|| async {
                // One chunk, then (once the headers are surely out) a failure.
                let stream = futures_util::stream::unfold(0, |i| async move {
                    match i {
                        0 => Some((Ok(Bytes::from_static(b"partial")), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Some((Err(std::io::Error::other("disk gone")), 2))
                        }
                        _ => None,
                    }
                });
                Body::from_stream(stream)
            }),
        )
        .route("/ok", get(|| async { "ok" }))
        .route("/chunked", get(|| async { chunks(7, 1000, Duration::from_millis(1)) }))
        .route("/upload", post(|body: Bytes| async move { body.len().to_string() }))
        .route("/throttled", get(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response() }))
        .route("/nested", get(nested))
        .layer(ObservabilityLayer::new())
}

/// A handler that opens spans of its own, both ways and in a spawned task,
/// logs, and adds an attribute and a cache outcome to the server span.
async fn nested() -> impl IntoResponse {
    use opentelemetry::{KeyValue, trace::TraceContextExt as _};
    use tracing::Instrument as _;
    async { tokio::time::sleep(Duration::from_millis(5)).await }
        .instrument(tracing::info_span!("load user"))
        .await;
    opentelemetry::Context::current().span().set_attribute(KeyValue::new("app.user", "ada"));
    tracing::info!(user = "ada", attempts = 2, "loaded user");
    // A spawned task in the request's span stays in the trace.
    tokio::spawn(async { tracing::info_span!("background").in_scope(|| ()) }.in_current_span())
        .await
        .unwrap();
    let tracer = opentelemetry::global::tracer("app");
    opentelemetry::trace::Tracer::in_span(&tracer, "render", |_| ());
    (tower_observability::cache::CacheStatus::Hit, "done")
}

async fn serve(router: Router) -> SocketAddr {
    harness();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// The server span is the parent of the spans a handler opens, through
/// `tracing` or the OTel API, in a spawned task too (`ServerSpanLayer`),
/// takes attributes added through the OTel context, the cache outcome and
/// the handler's log event. This harness's OTel layer takes every target:
/// the request's `tracing` span is exported as one more child, and nothing
/// leaves the trace.
#[tokio::test]
async fn handler_spans_are_children_of_the_server_span() {
    let addr = serve(app()).await;
    let res = reqwest::get(format!("http://{addr}/nested")).await.unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    eventually("server span", || !finished_span("/nested").is_empty()).await;
    let server = finished_span("/nested").remove(0);
    assert_eq!(server.name, "GET /nested");
    assert_eq!(server.span_kind, opentelemetry::trace::SpanKind::Server);
    assert_eq!(span_attr(&server, "app.user").as_deref(), Some("ada"));
    assert_eq!(span_attr(&server, "cache.result").as_deref(), Some("hit"));
    assert_eq!(span_attr(&server, "http.response.status_code").as_deref(), Some("200"));
    let trace = server.span_context.trace_id();
    let in_trace: Vec<SpanData> = harness()
        .spans
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect();
    let mut names: Vec<&str> = in_trace.iter().map(|s| s.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["GET /nested", "HTTP request", "background", "load user", "render"],
        "the request's tracing span is exported too: this OTel layer does not leave it out"
    );
    let events: Vec<_> = server.events.iter().map(|e| (e.name.to_string(), e.attributes.clone())).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let (name, attributes) = &events[0];
    assert_eq!(name, "loaded user");
    let attribute =
        |key: &str| attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string());
    assert_eq!(attribute("user").as_deref(), Some("ada"));
    assert_eq!(attribute("attempts").as_deref(), Some("2"));
    assert_eq!(attribute("level").as_deref(), Some("INFO"));
    for child in in_trace.iter().filter(|s| s.name != "GET /nested") {
        assert_eq!(child.parent_span_id, server.span_context.span_id(), "{} is a child", child.name);
    }
}

#[tokio::test]
async fn streamed_response_is_timed_to_its_last_byte() {
    let addr = serve(app()).await;
    let started = Instant::now();
    let body = reqwest::get(format!("http://{addr}/stream/6")).await.unwrap().bytes().await.unwrap();
    let client_seconds = started.elapsed().as_secs_f64();
    assert_eq!(body.len(), 600);

    let exp = scrape();
    let route = [("http_route", "/stream/{n}")];
    let seconds = exp.sum("http_server_request_duration_seconds_sum", &route);
    assert!(seconds >= 6.0 * 0.05, "6 chunks x 50 ms, recorded {seconds} s");
    assert!(seconds <= client_seconds, "{seconds} s recorded, {client_seconds} s seen by the client");
    assert_eq!(exp.sum("http_server_response_body_size_bytes_sum", &route), 600.0);

    eventually("stream span", || !finished_span("/stream/{n}").is_empty()).await;
    let span = &finished_span("/stream/{n}")[0];
    let span_seconds = span.end_time.duration_since(span.start_time).unwrap().as_secs_f64();
    assert!(span_seconds >= 0.3, "span ended early: {span_seconds} s");
}

#[tokio::test]
async fn client_abort_mid_stream_is_counted_once_and_the_gauge_returns_to_zero() {
    let _serial = SERIAL.lock().await;
    let addr = serve(app()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /forever HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let mut read = 0;
    while read < 200 {
        read += stream.read(&mut buf).await.unwrap();
    }
    assert!(active() >= 1.0, "the streaming request is active");
    drop(stream);

    eventually("one client_abort", || count("/forever", &[("error_type", "client_abort")]) == 1.0).await;
    eventually("gauge back to 0", || active() == 0.0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count("/forever", &[]), 1.0, "counted exactly once");

    eventually("abort span", || !finished_span("/forever").is_empty()).await;
    let span = &finished_span("/forever")[0];
    assert_eq!(span_attr(span, "error.type").as_deref(), Some("client_abort"));
    assert!(matches!(span.status, Status::Error { .. }));
}

#[tokio::test]
async fn client_abort_before_the_response_is_counted_once() {
    let _serial = SERIAL.lock().await;
    let addr = serve(app()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    eventually("slow request active", || active() >= 1.0).await;
    drop(stream);
    eventually("one client_abort on /slow", || count("/slow", &[("error_type", "client_abort")]) == 1.0)
        .await;
    eventually("gauge back to 0", || active() == 0.0).await;
    assert_eq!(count("/slow", &[]), 1.0);
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
    let _serial = SERIAL.lock().await;
    let addr = serve(app()).await;
    for _ in 0..3 {
        let res = reqwest::get(format!("http://{addr}/panic")).await.unwrap();
        assert_eq!(res.status(), 500);
        assert_eq!(res.text().await.unwrap(), "Internal Server Error");
    }
    let res = reqwest::get(format!("http://{addr}/ok")).await.unwrap();
    assert_eq!(res.status(), 200, "the server still serves");
    res.bytes().await.unwrap();

    assert_eq!(count("/panic", &[("error_type", "panic"), ("http_response_status_code", "500")]), 3.0);
    eventually("gauge back to 0", || active() == 0.0).await;
    eventually("panic spans", || finished_span("/panic").len() == 3).await;
    for span in finished_span("/panic") {
        assert_eq!(span_attr(&span, "error.type").as_deref(), Some("panic"));
        assert_eq!(span_attr(&span, "http.response.status_code").as_deref(), Some("500"));
        assert!(matches!(span.status, Status::Error { .. }));
    }
}

#[tokio::test]
async fn a_body_that_fails_mid_stream_is_a_body_error() {
    let addr = serve(app()).await;
    let res = reqwest::get(format!("http://{addr}/body-error")).await.unwrap();
    assert_eq!(res.status(), 200, "the headers went out before the failure");
    assert!(res.bytes().await.is_err(), "the client sees a broken body");
    eventually("one body_error", || count("/body-error", &[("error_type", "body_error")]) == 1.0).await;
    eventually("body error span", || !finished_span("/body-error").is_empty()).await;
    let span = &finished_span("/body-error")[0];
    assert_eq!(span_attr(span, "error.type").as_deref(), Some("body_error"));
}

#[tokio::test]
async fn chunked_sizes_are_the_bytes_that_flowed() {
    let addr = serve(app()).await;
    let res = reqwest::get(format!("http://{addr}/chunked")).await.unwrap();
    assert!(res.headers().get("content-length").is_none(), "a chunked response");
    assert_eq!(res.bytes().await.unwrap().len(), 7000);
    let exp = scrape();
    assert_eq!(exp.sum("http_server_response_body_size_bytes_sum", &[("http_route", "/chunked")]), 7000.0);

    // A chunked upload (no Content-Length) is counted frame by frame.
    let parts =
        futures_util::stream::iter((0..5).map(|_| Ok::<_, Infallible>(Bytes::from(vec![b'u'; 1234]))));
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/upload"))
        .body(reqwest::Body::wrap_stream(parts))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "6170");
    // A sized upload reports its Content-Length.
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/upload"))
        .body(vec![0u8; 321])
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "321");
    let exp = scrape();
    assert_eq!(
        exp.sum("http_server_request_body_size_bytes_sum", &[("http_route", "/upload")]),
        6170.0 + 321.0
    );
    assert_eq!(exp.sum("http_server_request_body_size_bytes_count", &[("http_route", "/upload")]), 2.0);
}

#[tokio::test]
async fn status_classification_is_configurable() {
    let strict = Router::new()
        .route("/strict-throttled", get(|| async { StatusCode::TOO_MANY_REQUESTS }))
        .layer(ObservabilityLayer::new().error_status(StatusClassifier::new(|s| s.as_u16() >= 429)));
    let addr = serve(strict.merge(app())).await;
    for path in ["/strict-throttled", "/throttled"] {
        let res = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(res.status(), 429);
        res.bytes().await.unwrap();
    }
    assert_eq!(count("/strict-throttled", &[("error_type", "429")]), 1.0);
    assert_eq!(count("/throttled", &[("http_response_status_code", "429")]), 1.0);
    assert!(
        scrape()
            .matching(
                "http_server_request_duration_seconds_count",
                &[("http_route", "/throttled"), ("error_type", "429")]
            )
            .next()
            .is_none(),
        "the OTel default: 4xx is not an error"
    );
}

#[tokio::test]
async fn time_to_first_byte_is_recorded_when_enabled() {
    use tower_observability::metrics::HttpMetricsLayer;
    let layer = ObservabilityLayer::new().metrics(HttpMetricsLayer::new().time_to_first_byte(true));
    let router =
        Router::new().route("/ttfb", get(|| async { chunks(4, 10, Duration::from_millis(50)) })).layer(layer);
    let addr = serve(router).await;
    let body = reqwest::get(format!("http://{addr}/ttfb")).await.unwrap().bytes().await.unwrap();
    assert_eq!(body.len(), 40);
    let exp = scrape();
    let route = [("http_route", "/ttfb")];
    assert_eq!(exp.sum("http_server_time_to_first_byte_seconds_count", &route), 1.0);
    let first_byte = exp.sum("http_server_time_to_first_byte_seconds_sum", &route);
    let duration = exp.sum("http_server_request_duration_seconds_sum", &route);
    assert!(first_byte >= 0.05, "the first chunk comes after 50 ms: {first_byte}");
    assert!(duration >= 0.2 && first_byte < duration, "first byte {first_byte} s, last byte {duration} s");
    // Off by default: the other routes have no such series.
    assert_eq!(exp.sum("http_server_time_to_first_byte_seconds_count", &[("http_route", "/chunked")]), 0.0);
}

mod plain_tower {
    //! The layers around a `tower::service_fn` with a body type of its own:
    //! no axum anywhere, `Error = S::Error` kept.
    use std::{
        collections::VecDeque,
        pin::Pin,
        task::{Context, Poll},
    };

    use http::{Request, Response};
    use http_body::{Body, Frame};
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt, service_fn};
    use tower_observability::HttpRoute;

    use super::*;

    /// A body of pre-cut chunks.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    #[derive(Debug)]
    struct BackendDown;

    async fn handler(req: Request<Chunks>) -> Result<Response<Chunks>, BackendDown> {
        if req.uri().path() == "/plain/fail" {
            return Err(BackendDown);
        }
        let request_bytes = req.into_body().collect().await.unwrap().to_bytes().len();
        let echo = Bytes::from(vec![b'e'; request_bytes * 2]);
        Ok(Response::new(Chunks(VecDeque::from([echo.slice(..request_bytes), echo.slice(request_bytes..)]))))
    }

    /// A request as a client sends it, with `Content-Length`: the size of a
    /// body type other than axum's is read from it (or from an exact size
    /// hint), as the layer does not change the request's body type.
    fn request(path: &str, body: &[&'static [u8]]) -> Request<Chunks> {
        let length: usize = body.iter().map(|b| b.len()).sum();
        let mut req = Request::get(path)
            .header("content-length", length)
            .body(Chunks(body.iter().map(|b| Bytes::from_static(b)).collect()))
            .unwrap();
        req.extensions_mut().insert(HttpRoute::new("/plain/{x}"));
        req
    }

    #[tokio::test]
    async fn layers_work_around_a_service_fn_with_a_custom_body() {
        harness();
        let svc = ObservabilityLayer::new().layer(service_fn(handler));
        let res = svc.clone().oneshot(request("/plain/ok", &[b"abc", b"defg"])).await.unwrap();
        assert!(res.headers().contains_key("x-request-id"));
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 14);

        let err = svc.oneshot(request("/plain/fail", &[])).await.unwrap_err();
        assert!(matches!(err, BackendDown), "the service's own error comes back");

        let exp = scrape();
        let route = [("http_route", "/plain/{x}"), ("http_response_status_code", "200")];
        assert_eq!(exp.sum("http_server_request_body_size_bytes_sum", &route), 7.0);
        assert_eq!(exp.sum("http_server_response_body_size_bytes_sum", &route), 14.0);
        let failed: Vec<_> = exp
            .matching("http_server_request_duration_seconds_count", &[("http_route", "/plain/{x}")])
            .collect();
        assert_eq!(failed.len(), 2);
        let err = failed.iter().find(|s| s.labels.contains_key("error_type")).unwrap();
        assert!(err.labels["error_type"].ends_with("BackendDown"), "{:?}", err.labels);
        assert!(!err.labels.contains_key("http_response_status_code"), "no status was sent");
    }
}
