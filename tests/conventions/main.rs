//! The server span against the OTel HTTP semantic conventions v1.44 over
//! real loopback, exported by `Observability` to the OTLP receiver: HTTP/1.1
//! and h2c, with and without axum's `ConnectInfo`, behind a trusted proxy
//! and behind headers nobody trusts; and, on the same servers, per-route
//! sampling and exclusions, the `Labeler` and a caught panic.
//!
//! One test: `Observability` installs process-wide pipelines.

#[path = "../support/otlp.rs"]
mod otlp;
#[path = "../support/prom.rs"]
mod prom;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use axum::{
    Extension, Router,
    http::{HeaderName, StatusCode},
    routing::{get, post},
};
use opentelemetry::KeyValue;
use otlp::{OtlpReceiver, ReceivedSpan};
use prom::Exposition;
use tower_observability::{
    Observability, ObservabilityLayer,
    address::TrustedProxies,
    labeler::{Labeler, MetricLabels},
    metrics::HttpMetricsLayer,
    route::RouteMatcher,
    trace::{HeaderCapture, RouteSampling},
};

const UNSAMPLED_PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

fn app(layer: ObservabilityLayer) -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/health/live", get(|| async { "ok" }))
        .route("/quiet", get(|| async { "shh" }))
        .route(
            "/checkout",
            post(|Extension(labeler): Extension<Labeler>| async move {
                labeler.label("tenant", "acme");
                labeler.attribute(KeyValue::new("app.cart.items", 3));
                labeler.error_type("payment_declined");
                "declined"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("handler bug");
                }
                "never"
            }),
        )
        .layer(layer)
}

/// The layer of every server: `obs.layer()` with header capture, labels,
/// per-route sampling and exclusions.
fn layer(obs: &Observability, proxies: TrustedProxies) -> ObservabilityLayer {
    let capture = HeaderCapture::new()
        .request_headers([HeaderName::from_static("x-tenant")])
        .response_headers([HeaderName::from_static("content-type")]);
    let labels = MetricLabels::new(["tenant"]).unwrap();
    obs.layer()
        .capture_headers(capture)
        .unwrap()
        .metric_labels(labels)
        .trusted_proxies(proxies)
        .sample_routes(RouteMatcher::templates(["/health/live"]), RouteSampling::Never)
        .sample_routes(RouteMatcher::templates(["/checkout"]), RouteSampling::Always)
        .exclude_from_traces(RouteMatcher::predicate(|route| route == "/quiet"))
        .exclude_from_metrics(RouteMatcher::templates(["/health/live"]))
}

async fn serve(app: Router, connect_info: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if connect_info {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
        } else {
            axum::serve(listener, app).await.unwrap();
        }
    });
    addr
}

fn client(h2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10));
    if h2 { builder.http2_prior_knowledge() } else { builder.http1_only() }.build().unwrap()
}

/// One server: how it is reached and what it believes.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    connect_info: bool,
    trusts_loopback: bool,
}

/// Sends the conformance request: a query with a signature, a long user
/// agent, proxy headers claiming another client, host and scheme, and a
/// captured header; returns the request's id.
async fn send(client: &reqwest::Client, server: &Server, tag: &str) -> String {
    let res = client
        .get(format!("http://{}/users/7?q=1&sig=secret&tag={tag}", server.addr))
        .header("user-agent", "u".repeat(10_000))
        .header("x-forwarded-for", "198.51.100.7, 127.0.0.1")
        .header("forwarded", "for=203.0.113.60;proto=https;host=shop.example.com")
        .header("x-tenant", "acme")
        .header("authorization", "Bearer never-captured")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    res.bytes().await.unwrap();
    id
}

/// Checks one span against the conventions' requirement levels.
fn check_span(span: &ReceivedSpan, server: &Server, h2: bool) {
    let a = &span.attributes;
    let what = format!("{} {}: {a:#?}", server.name, if h2 { "h2c" } else { "h1" });
    let has = |key: &str| a.contains_key(key);
    // Name and kind.
    assert_eq!(span.name, "GET /users/{id}", "{what}");
    assert_eq!(span.kind, 2, "SERVER: {what}");
    assert_eq!(span.status_code, 0, "unset on success: {what}");
    // Required.
    assert_eq!(a["http.request.method"], "GET", "{what}");
    assert!(a["url.path"].starts_with("/users/7"), "{what}");
    // Conditionally required.
    assert_eq!(a["http.response.status_code"], "200", "{what}");
    assert_eq!(a["http.route"], "/users/{id}", "{what}");
    assert!(a["url.query"].starts_with("q=1&sig=REDACTED&tag="), "{what}");
    assert!(!a["url.query"].contains("secret"), "{what}");
    assert!(!has("error.type") && !has("http.request.method_original"), "{what}");
    assert!(!has("network.protocol.name"), "http is the default: {what}");
    // Recommended.
    assert_eq!(a["network.protocol.version"], if h2 { "2" } else { "1.1" }, "{what}");
    assert_eq!(a["user_agent.original"].len(), 4096, "capped at 4 KiB: {what}");
    if server.trusts_loopback && server.connect_info {
        // The peer is a trusted proxy: the proxy headers are believed.
        assert_eq!(a["url.scheme"], "https", "{what}");
        assert_eq!(a["client.address"], "203.0.113.60", "Forwarded wins over X-Forwarded-For: {what}");
        assert_eq!(a["server.address"], "shop.example.com", "{what}");
        assert!(!has("server.port"), "the forwarded host names no port: {what}");
    } else {
        assert_eq!(a["url.scheme"], "http", "{what}");
        assert_eq!(a["server.address"], "127.0.0.1", "{what}");
        assert_eq!(a["server.port"], server.addr.port().to_string(), "{what}");
        if server.connect_info {
            assert_eq!(a["client.address"], "127.0.0.1", "untrusted headers ignored: {what}");
        }
    }
    if server.connect_info {
        assert_eq!(a["network.peer.address"], "127.0.0.1", "{what}");
        assert!(a["network.peer.port"].parse::<u16>().is_ok(), "{what}");
    } else {
        for key in ["client.address", "network.peer.address", "network.peer.port"] {
            assert!(!has(key), "no peer without ConnectInfo: {key}: {what}");
        }
    }
    // Opt-in: only what was asked.
    assert!(!has("client.port"), "{what}");
    assert_eq!(a["http.request.header.x-tenant"], "[acme]", "{what}");
    assert_eq!(a["http.response.header.content-type"], "[text/plain; charset=utf-8]", "{what}");
    assert!(!a.keys().any(|k| k.contains("authorization")), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_spans_follow_the_http_conventions() {
    let receiver = OtlpReceiver::start().await;
    let obs = Observability::builder()
        .service_name("conventions")
        .otlp_endpoint(receiver.grpc_endpoint())
        .log_filter("warn")
        .init()
        .expect("init");
    let loopback = || TrustedProxies::new(["127.0.0.0/8".parse().unwrap()]);
    let mut servers = Vec::new();
    for (name, connect_info, trusts_loopback) in
        [("trusted proxy", true, true), ("untrusted headers", true, false), ("no ConnectInfo", false, true)]
    {
        let proxies = if trusts_loopback { loopback() } else { TrustedProxies::default() };
        let addr = serve(app(layer(&obs, proxies)), connect_info).await;
        servers.push(Server { name, addr, connect_info, trusts_loopback });
    }

    // The conformance request, over HTTP/1.1 and h2c, to every server.
    let mut expected = HashMap::new();
    for h2 in [false, true] {
        let client = client(h2);
        for (i, server) in servers.iter().enumerate() {
            let tag = format!("{i}-{h2}");
            send(&client, server, &tag).await;
            expected.insert(tag, (i, h2));
        }
    }

    // Per-route controls, the Labeler and a panic, on the trusted server.
    let client = client(false);
    let base = format!("http://{}", servers[0].addr);
    for _ in 0..3 {
        let res = client.get(format!("{base}/health/live")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(client.get(format!("{base}/quiet")).send().await.unwrap().status(), 200);
    let res =
        client.post(format!("{base}/checkout")).header("traceparent", UNSAMPLED_PARENT).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(client.get(format!("{base}/panic")).send().await.unwrap().status(), 500);

    obs.tracer_provider().unwrap().force_flush().unwrap();
    let wait = Duration::from_secs(10);
    receiver.wait_for_span(wait, |s| s.name == "GET /panic").await;
    for (tag, (i, h2)) in &expected {
        let span = receiver
            .wait_for_span(wait, |s| {
                s.attributes.get("url.query").is_some_and(|q| q.ends_with(&format!("tag={tag}")))
            })
            .await;
        check_span(&span, &servers[*i], *h2);
    }

    let spans = receiver.spans();
    let named = |name: &str| spans.iter().filter(|s| s.name == name).cloned().collect::<Vec<_>>();
    assert!(named("GET /health/live").is_empty(), "never sampled");
    assert!(named("GET /quiet").is_empty(), "excluded from traces");

    // Always sampled, under a parent that is not; the handler's attribute
    // and error type.
    let checkout = named("POST /checkout");
    assert_eq!(checkout.len(), 1, "{spans:#?}");
    let checkout = &checkout[0];
    assert_eq!(checkout.trace_id, "0af7651916cd43dd8448eb211c80319c", "the caller's trace");
    assert_eq!(checkout.parent_span_id, "b7ad6b7169203331");
    assert_eq!(checkout.attributes["app.cart.items"], "3");
    assert_eq!(checkout.attributes["error.type"], "payment_declined");
    assert_eq!(checkout.status_code, 2, "error");

    // The panic: an exception event with the conventions' keys.
    let panic = &named("GET /panic")[0];
    assert_eq!(panic.attributes["error.type"], "panic");
    let (_, exception) =
        panic.events.iter().find(|(name, _)| name == "exception").expect("an exception event");
    assert_eq!(exception["exception.type"], "panic");
    assert_eq!(exception["exception.message"], "handler bug");

    // Metrics: the handler's label and error type, the exclusion, and
    // every series with its protocol version.
    tower_observability::metrics::flush();
    let text = obs.prometheus_handle().unwrap().render();
    let scrape = Exposition::parse(&text);
    let checkout = [("http_route", "/checkout"), ("tenant", "acme"), ("error_type", "payment_declined")];
    assert_eq!(scrape.sum("http_server_request_duration_seconds_count", &checkout), 1.0, "{text}");
    let quiet = [("http_route", "/quiet")];
    assert_eq!(scrape.sum("http_server_request_duration_seconds_count", &quiet), 1.0, "measured, not traced");
    assert!(!text.contains("/health/live"), "excluded from metrics: {text}");
    for version in ["1.1", "2"] {
        let users = [("http_route", "/users/{id}"), ("network_protocol_version", version)];
        assert_eq!(scrape.sum("http_server_request_duration_seconds_count", &users), 3.0, "{version}");
    }
    for raw in ["secret", "198.51.100.7", "shop.example.com", "acme-x"] {
        assert!(!text.contains(raw), "{raw} reached a metric label");
    }
    let https = [("http_route", "/users/{id}"), ("url_scheme", "https")];
    assert_eq!(
        scrape.sum("http_server_request_duration_seconds_count", &https),
        2.0,
        "the trusted proxy's proto"
    );
    obs.shutdown();
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(64))]

    /// Hostile `Host`, proxy headers, queries, captured headers and
    /// handler-chosen label values never reach a metric label: the labels
    /// hold only templates, the known hosts, the declared keys and at most
    /// the first `max_values` values of each, or `_OTHER`.
    #[test]
    fn hostile_requests_never_reach_a_metric_label(
        host in "[a-zA-Z0-9.:-]{1,40}",
        forwarded in "[ -~]{0,60}",
        query in "[a-zA-Z0-9=&%]{0,60}",
        tenants in proptest::collection::vec("[a-z]{8}", 1..6),
    ) {
        use tower::ServiceExt as _;

        let recorder = tower_observability::prometheus_builder().build_recorder();
        let handle = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let labels = MetricLabels::new(["tenant"]).unwrap().max_values(2);
        let layer = ObservabilityLayer::new()
            .metrics(HttpMetricsLayer::new().labels(labels).server_address(["api.example.com:443"]))
            .trusted_proxies(TrustedProxies::new(["0.0.0.0/0".parse().unwrap()]));
        let app = Router::new()
            .route("/t/{tenant}", get(|Extension(l): Extension<Labeler>, axum::extract::Path(t): axum::extract::Path<String>| async move {
                l.label("tenant", &t);
                "ok"
            }))
            .layer(layer);
        rt.block_on(async {
            for tenant in &tenants {
                let mut req = axum::http::Request::get(format!("/t/{tenant}?{query}")).body(axum::body::Body::empty()).unwrap();
                let headers = req.headers_mut();
                headers.insert("host", host.parse().unwrap());
                headers.insert("forwarded", forwarded.parse().unwrap());
                headers.insert("x-forwarded-host", host.parse().unwrap());
                req.extensions_mut().insert(axum::extract::ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 1))));
                let res = app.clone().oneshot(req).await.unwrap();
                axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
            }
        });
        tower_observability::metrics::flush();
        let text = handle.render();
        let scrape = Exposition::parse(&text);
        let mut kept: Vec<&String> = Vec::new();
        for tenant in &tenants {
            if !kept.contains(&tenant) && kept.len() < 2 {
                kept.push(tenant);
            }
        }
        proptest::prop_assert!(text.contains(&format!("tenant=\"{}\"", kept[0])), "{}", text);
        for sample in scrape.samples.iter().filter(|s| s.name.starts_with("http_server_")) {
            for (key, value) in &sample.labels {
                let allowed = match key.as_str() {
                    "http_route" => value == "/t/{tenant}",
                    "server_address" => value == "api.example.com" || value == "_OTHER",
                    "server_port" => value == "443",
                    "tenant" => kept.contains(&value) || value == "_OTHER",
                    "http_request_method" | "http_response_status_code" | "url_scheme"
                    | "network_protocol_version" | "le" | "error_type" => true,
                    other => panic!("unexpected label {other}={value}"),
                };
                proptest::prop_assert!(allowed, "{}={} in {}", key, value, text);
            }
        }
    }
}
