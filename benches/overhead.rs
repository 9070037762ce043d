//! In-process cost per request of each layer of the crate, against bare axum
//! and the crates users stack today, all in one run (issue 8).
//!
//! The router `GET /users/{id}` (a `Path<u32>` extractor, a small JSON body)
//! is driven with `tower::ServiceExt::oneshot` on a cloned `Router`, the
//! response body collected, on a tokio current-thread runtime. Every router
//! gets `.with_state(())` first, as `axum::serve` does: without it axum turns
//! each handler into a `Route` again at every request, re-running every
//! layer's `Layer::layer` and boxing it (a cost no server pays).
//!
//! One process holds one global `metrics` recorder and one global `tracing`
//! subscriber, so every case shares them: a Prometheus recorder with the
//! crate's buckets (upkeep every 5 s, as `Observability` does), and a
//! `tracing-opentelemetry` layer configured as `Observability::otel_layer`
//! over an SDK tracer provider with a batch processor, a counting no-op
//! exporter and the sampler `parentbased_always_on`. A request without
//! `traceparent` is therefore sampled (100 %), one whose `traceparent` has
//! the flag `00` is not.
//!
//! ```text
//! cargo bench --bench overhead                  # everything, < 5 min
//! cargo bench --bench overhead -- metrics       # criterion's name filter
//! OVERHEAD_ROUNDS=31 OVERHEAD_BATCH=4000 cargo bench --bench overhead
//! OVERHEAD_LOOP=full_sampled:200000 cargo bench --bench overhead   # profiling loop only
//! OVERHEAD_EXEMPLARS=off cargo bench --bench overhead  # the metrics part without exemplars
//! OVERHEAD_LOG=1 OVERHEAD_LOOP=full_sampled:5000 cargo bench --bench overhead >/dev/null
//!     # under Observability::init, the JSON access log on: the line's cost
//! ```
//!
//! After criterion, a summary pass times every case again in interleaved
//! rounds (bare, case, bare, case, ...: each round runs one batch of every
//! case back to back) so that load from other processes hits bare and the
//! case alike; overhead and ratios are computed per round against the
//! baseline of the same round and reported as median, min and max. The
//! criterion median of each case, read from
//! `target/criterion/<group>/<case>/new/estimates.json`, is printed beside it.

// Needs the `axum` and `telemetry` features (on by default; `required-features`).
fn main() {
    imp::main();
}

#[path = "support/counting_exporter.rs"]
mod counting_exporter;

mod imp {
    use super::counting_exporter::CountingExporter;
    use std::{
        cell::Cell,
        convert::Infallible,
        hint::black_box,
        path::PathBuf,
        sync::{
            Arc, OnceLock,
            atomic::{AtomicU64, Ordering},
        },
        time::{Duration, Instant, SystemTime},
    };

    use axum::{
        Router,
        body::Body,
        extract::Path,
        http::{HeaderValue, Request, Uri, header::CONTENT_TYPE},
        response::IntoResponse,
        routing::get,
    };
    use criterion::Criterion;
    use http_body_util::BodyExt;
    use metrics_exporter_prometheus::PrometheusHandle;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
    use tower::{ServiceBuilder, ServiceExt, layer::util::Identity};
    use tower_http::{
        request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer as TowerSetRequestIdLayer},
        trace::{DefaultMakeSpan, TraceLayer},
    };
    use tower_observability::{
        ObservabilityLayer, cache::RecordCacheStatusLayer, metrics::HttpMetricsLayer,
        request_id::SetRequestIdLayer, trace::HttpTraceLayer,
    };
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};

    /// A W3C parent that is sampled, and one that is not.
    const PARENT_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const PARENT_UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    // ---------------------------------------------------------------- pipeline

    /// The process-wide recorder and subscriber every case runs under.
    struct Pipeline {
        provider: SdkTracerProvider,
        exported: Arc<AtomicU64>,
        _prometheus: PrometheusHandle,
        /// With `OVERHEAD_OTLP_METRICS=1`: what installed the recorder.
        _observability: Option<tower_observability::Observability>,
    }

    /// The Prometheus recorder as `Observability` installs it; with
    /// `OVERHEAD_OTLP_METRICS=1`, `Observability` itself installs it with
    /// OTLP metrics on beside Prometheus (`MetricsExporters::BOTH`: the
    /// fan-out recorder and the OTel bridge, pushing every 60 s to a closed
    /// port). Run that with `OTEL_TRACES_EXPORTER=none`: the bench makes
    /// its spans with a tracer of its own.
    fn install_recorder() -> (PrometheusHandle, Option<tower_observability::Observability>) {
        if std::env::var("OVERHEAD_OTLP_METRICS").is_ok_and(|v| v == "1") {
            let obs = tower_observability::Observability::builder()
                .metrics_exporters(tower_observability::MetricsExporters::BOTH)
                .otlp_endpoint("http://127.0.0.1:9")
                .install_subscriber(false)
                .init()
                .expect("OTLP metrics beside Prometheus");
            assert!(obs.tracer_provider().is_none(), "run with OTEL_TRACES_EXPORTER=none");
            let handle = obs.prometheus_handle().expect("Prometheus too").clone();
            eprintln!("recorder: Prometheus + OTLP metrics (fan-out)");
            return (handle, Some(obs));
        }
        let handle = tower_observability::prometheus_builder()
            .install_recorder()
            .expect("the bench installs the only recorder");
        (handle, None)
    }

    /// With `OVERHEAD_LOG=1`: the pipeline is `Observability::init` itself
    /// (its recorder, tracer provider with the counting exporter, and
    /// subscriber with the JSON lines at `info` on standard output), so
    /// that the access log's line is counted; run it with stdout to
    /// `/dev/null`.
    fn install_observability() -> Option<Pipeline> {
        if !std::env::var("OVERHEAD_LOG").is_ok_and(|v| v == "1") {
            return None;
        }
        let exporter = CountingExporter::default();
        let exported = exporter.0.clone();
        let obs = tower_observability::Observability::builder()
            .span_exporter(exporter)
            .log_filter("info")
            .init()
            .expect("the only pipeline");
        let provider = obs.tracer_provider().expect("a tracer provider").clone();
        let prometheus = obs.prometheus_handle().expect("the Prometheus recorder").clone();
        TRACER.set(provider.tracer("tower-observability")).expect("one pipeline");
        eprintln!("pipeline: Observability::init, JSON lines at info on stdout");
        Some(Pipeline { provider, exported, _prometheus: prometheus, _observability: Some(obs) })
    }

    fn install_pipeline() -> Pipeline {
        if let Some(pipeline) = install_observability() {
            return pipeline;
        }
        // As `Observability` installs it.
        let (prometheus, observability) = install_recorder();
        let upkeep = prometheus.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });

        let exporter = CountingExporter::default();
        let exported = exporter.0.clone();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .build();
        // As `Observability` installs them.
        tracing_subscriber::registry().with(tower_observability::otel_layer(&provider)).init();
        // As `Observability::layer`: server spans made by the SDK's tracer.
        TRACER.set(provider.tracer("tower-observability")).expect("one pipeline");
        opentelemetry::global::set_tracer_provider(provider.clone());
        Pipeline { provider, exported, _prometheus: prometheus, _observability: observability }
    }

    // ------------------------------------------------------------------ cases

    static TRACER: OnceLock<opentelemetry_sdk::trace::SdkTracer> = OnceLock::new();

    /// `HttpTraceLayer` with the pipeline's tracer.
    fn trace() -> HttpTraceLayer {
        HttpTraceLayer::new().tracer(TRACER.get().expect("pipeline installed").clone())
    }

    /// `HttpMetricsLayer::new()`; without exemplars with
    /// `OVERHEAD_EXEMPLARS=off`, to count what they cost.
    fn metrics_part() -> HttpMetricsLayer {
        let layer = HttpMetricsLayer::new();
        if std::env::var("OVERHEAD_EXEMPLARS").is_ok_and(|v| v == "off") {
            layer.exemplars(false)
        } else {
            layer
        }
    }

    /// `ObservabilityLayer` as `Observability::layer` builds it.
    fn full() -> ObservabilityLayer {
        ObservabilityLayer::new().trace(trace()).metrics(metrics_part())
    }

    async fn get_user(Path(id): Path<u32>) -> impl IntoResponse {
        black_box(id);
        ([(CONTENT_TYPE, "application/json")], r#"{"id":42,"name":"Ada Lovelace"}"#)
    }

    fn users(routes: usize) -> Router {
        let mut router = Router::new().route("/users/{id}", get(get_user));
        for i in 1..routes {
            router = router.route(&format!("/r{i}/{{id}}"), get(get_user));
        }
        router
    }

    /// The request of each iteration: a path among `uris`, in turn, and an
    /// optional `traceparent`.
    struct Workload {
        uris: Vec<Uri>,
        traceparent: Option<HeaderValue>,
        /// `Host`, `User-Agent` and the socket peer, as a browser's request
        /// to `axum::serve` with `ConnectInfo` carries them.
        browser: bool,
        next: Cell<usize>,
    }

    impl Workload {
        fn fixed(traceparent: Option<&'static str>) -> Self {
            Self {
                uris: vec![Uri::from_static("/users/42")],
                traceparent: traceparent.map(HeaderValue::from_static),
                browser: false,
                next: Cell::new(0),
            }
        }

        /// `GET /users/42?view=full&sig=abc` with `Host`, a browser's
        /// `User-Agent` and a `ConnectInfo` peer.
        fn browser(traceparent: Option<&'static str>) -> Self {
            Self {
                uris: vec![Uri::from_static("/users/42?view=full&sig=abc")],
                browser: true,
                ..Self::fixed(traceparent)
            }
        }

        /// 4096 distinct ids on `/users/{id}`.
        fn distinct_ids() -> Self {
            let uris = (0..4096).map(|i| format!("/users/{}", 1_000 + i * 7).parse().unwrap()).collect();
            Self { uris, traceparent: None, browser: false, next: Cell::new(0) }
        }

        /// Distinct ids over the first 1000 routes of [`users`].
        fn spread_routes() -> Self {
            let uris = (0..4096)
                .map(|i| {
                    let route = i % 1000;
                    let path =
                        if route == 0 { format!("/users/{i}") } else { format!("/r{route}/{}", 1_000 + i) };
                    path.parse().unwrap()
                })
                .collect();
            Self { uris, traceparent: None, browser: false, next: Cell::new(0) }
        }

        #[inline]
        fn request(&self) -> Request<Body> {
            let i = self.next.get();
            self.next.set(if i + 1 == self.uris.len() { 0 } else { i + 1 });
            let mut req = Request::new(Body::empty());
            *req.uri_mut() = self.uris[i].clone();
            if let Some(tp) = &self.traceparent {
                req.headers_mut().insert("traceparent", tp.clone());
            }
            if self.browser {
                let headers = req.headers_mut();
                headers.insert("host", HeaderValue::from_static("api.example.com:8443"));
                headers.insert("user-agent", HeaderValue::from_static(USER_AGENT));
                req.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                    [203, 0, 113, 9],
                    51_234,
                ))));
            }
            req
        }
    }

    const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

    /// One request through the router, body collected.
    #[inline]
    async fn one(router: &Router, req: Request<Body>) -> usize {
        let res = router.clone().oneshot(req).await.unwrap_or_else(|e: Infallible| match e {});
        assert!(res.status().is_success());
        res.into_body().collect().await.expect("body").to_bytes().len()
    }

    struct Case {
        group: &'static str,
        name: &'static str,
        /// The case that overhead and ratios are computed against.
        baseline: &'static str,
        what: &'static str,
        router: Router,
        workload: Workload,
    }

    type Build = fn() -> (Router, Workload);

    /// Every case: group, name, baseline, description, builder.
    fn specs() -> Vec<(&'static str, &'static str, &'static str, &'static str, Build)> {
        fn body_wrapper(
            b: Body,
        ) -> http_body_util::combinators::MapErr<Body, fn(axum::Error) -> axum::Error> {
            b.map_err(std::convert::identity as fn(axum::Error) -> axum::Error)
        }
        vec![
            ("overhead", "bare", "bare", "axum alone", || (users(1), Workload::fixed(None))),
            (
                "overhead",
                "bare_identity_layer",
                "bare",
                "bare + Router::layer(Identity): axum's Route re-boxing",
                || (users(1).layer(Identity::new()), Workload::fixed(None)),
            ),
            (
                "overhead",
                "bare_body_wrappers",
                "bare",
                "bare + a layer wrapping request and response bodies (axum boxes both)",
                || {
                    let layer = ServiceBuilder::new()
                        .map_request(|req: Request<Body>| req.map(body_wrapper))
                        .map_response(|res: axum::response::Response| res.map(body_wrapper));
                    (users(1).layer(layer), Workload::fixed(None))
                },
            ),
            (
                "overhead",
                "bare_response_wrapped",
                "bare",
                "bare + a layer wrapping the response body only: the floor of a body-observing layer",
                || {
                    let layer = ServiceBuilder::new()
                        .map_response(|res: axum::response::Response| res.map(body_wrapper));
                    (users(1).layer(layer), Workload::fixed(None))
                },
            ),
            ("overhead", "bare_parent", "bare_parent", "bare, request with a traceparent (flag 00)", || {
                (users(1), Workload::fixed(Some(PARENT_UNSAMPLED)))
            }),
            ("overhead", "request_id", "bare", "SetRequestIdLayer", || {
                (users(1).layer(SetRequestIdLayer::new()), Workload::fixed(None))
            }),
            ("overhead", "trace_sampled", "bare", "HttpTraceLayer, sampled root span", || {
                (users(1).layer(trace()), Workload::fixed(None))
            }),
            ("overhead", "trace_sampled_no_access_log", "bare", "HttpTraceLayer, access_log(None)", || {
                (users(1).layer(trace().access_log(None)), Workload::fixed(None))
            }),
            (
                "overhead",
                "trace_unsampled",
                "bare_parent",
                "HttpTraceLayer, parent traceparent flag 00",
                || (users(1).layer(trace()), Workload::fixed(Some(PARENT_UNSAMPLED))),
            ),
            ("overhead", "metrics", "bare", "HttpMetricsLayer", || {
                (users(1).layer(metrics_part()), Workload::fixed(None))
            }),
            ("overhead", "cache", "bare", "RecordCacheStatusLayer (no cache header)", || {
                (users(1).layer(RecordCacheStatusLayer::new()), Workload::fixed(None))
            }),
            ("overhead", "full_sampled", "bare", "ObservabilityLayer, no traceparent (sampled root)", || {
                (users(1).layer(full()), Workload::fixed(None))
            }),
            (
                "overhead",
                "full_sampled_no_access_log",
                "bare",
                "ObservabilityLayer, trace access_log(None), sampled root",
                || {
                    let layer = full().trace(trace().access_log(None));
                    (users(1).layer(layer), Workload::fixed(None))
                },
            ),
            (
                "overhead",
                "full_sampled_parent",
                "bare_parent",
                "ObservabilityLayer, traceparent flag 01",
                || (users(1).layer(full()), Workload::fixed(Some(PARENT_SAMPLED))),
            ),
            ("overhead", "full_unsampled", "bare_parent", "ObservabilityLayer, traceparent flag 00", || {
                (users(1).layer(full()), Workload::fixed(Some(PARENT_UNSAMPLED)))
            }),
            (
                "overhead",
                "bare_browser",
                "bare_browser",
                "bare, a browser's request (Host, User-Agent, query, peer)",
                || (users(1), Workload::browser(None)),
            ),
            (
                "overhead",
                "full_browser",
                "bare_browser",
                "ObservabilityLayer, a browser's request, sampled root",
                || (users(1).layer(full()), Workload::browser(None)),
            ),
            (
                "overhead",
                "bare_browser_parent",
                "bare_browser_parent",
                "bare, a browser's request with a traceparent (flag 00)",
                || (users(1), Workload::browser(Some(PARENT_UNSAMPLED))),
            ),
            (
                "overhead",
                "full_browser_unsampled",
                "bare_browser_parent",
                "ObservabilityLayer, a browser's request, traceparent flag 00",
                || (users(1).layer(full()), Workload::browser(Some(PARENT_UNSAMPLED))),
            ),
            ("overhead", "axum_prometheus", "bare", "anchor: axum-prometheus PrometheusMetricLayer", || {
                (users(1).layer(axum_prometheus::PrometheusMetricLayer::new()), Workload::fixed(None))
            }),
            (
                "overhead",
                "tower_http",
                "bare",
                "anchor: tower-http SetRequestId + TraceLayer(INFO) + PropagateRequestId",
                || (users(1).layer(tower_http_stack()), Workload::fixed(None)),
            ),
            ("overhead", "anchors_stacked", "bare", "anchor: axum-prometheus + the tower-http stack", || {
                let router =
                    users(1).layer(axum_prometheus::PrometheusMetricLayer::new()).layer(tower_http_stack());
                (router, Workload::fixed(None))
            }),
            ("routes", "bare_10", "bare_10", "10 routes, distinct ids", || {
                (users(10), Workload::distinct_ids())
            }),
            ("routes", "full_10", "bare_10", "full stack, 10 routes, distinct ids", || {
                (users(10).layer(full()), Workload::distinct_ids())
            }),
            ("routes", "bare_10k", "bare_10k", "10 000 routes, distinct ids", || {
                (users(10_000), Workload::distinct_ids())
            }),
            ("routes", "full_10k", "bare_10k", "full stack, 10 000 routes, distinct ids", || {
                (users(10_000).layer(full()), Workload::distinct_ids())
            }),
            ("routes", "bare_10k_spread", "bare_10k_spread", "10 000 routes, 1000 of them hit", || {
                (users(10_000), Workload::spread_routes())
            }),
            ("routes", "full_10k_spread", "bare_10k_spread", "full stack, 10 000 routes, 1000 hit", || {
                (users(10_000).layer(full()), Workload::spread_routes())
            }),
        ]
    }

    fn tower_http_stack() -> impl tower::Layer<
        axum::routing::Route,
        Service: tower::Service<
            Request<Body>,
            Response: IntoResponse + 'static,
            Error: Into<Infallible> + 'static,
            Future: Send + 'static,
        > + Clone
                     + Send
                     + Sync
                     + 'static,
    > + Clone
    + Send
    + Sync
    + 'static {
        ServiceBuilder::new()
            .layer(TowerSetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http().make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO)),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
    }

    fn build(only: Option<&str>) -> Vec<Case> {
        specs()
            .into_iter()
            .filter(|(_, name, baseline, _, _)| only.is_none_or(|o| o == *name || o == *baseline))
            .map(|(group, name, baseline, what, build)| {
                let (router, workload) = build();
                // As `axum::serve` does (`into_make_service`): handlers become
                // `Route`s once, not at every request.
                let router = router.with_state(());
                Case { group, name, baseline, what, router, workload }
            })
            .collect()
    }

    // ------------------------------------------------------------------- main

    fn env_usize(name: &str, default: usize) -> usize {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    pub(super) fn main() {
        let pipeline = install_pipeline();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

        if let Ok(spec) = std::env::var("OVERHEAD_LOOP") {
            profile(&rt, &spec);
            return;
        }

        let started = SystemTime::now();
        let benchmarking =
            std::env::args().any(|a| a == "--bench") && !std::env::args().any(|a| a == "--test");
        let cases = build(None);

        let mut c = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(50)
            .without_plots()
            .configure_from_args();
        for group in ["overhead", "routes"] {
            let mut g = c.benchmark_group(group);
            for case in cases.iter().filter(|c| c.group == group) {
                g.bench_function(case.name, |b| {
                    b.to_async(&rt).iter(|| one(&case.router, case.workload.request()));
                });
            }
            g.finish();
        }
        c.final_summary();

        if benchmarking {
            summary(&rt, &cases, started);
        }
        drop(cases);
        let _ = pipeline.provider.force_flush();
        println!("spans exported by the batch processor: {}", pipeline.exported.load(Ordering::Relaxed));
        let _ = pipeline.provider.shutdown();
    }

    /// `OVERHEAD_LOOP=<case>:<n>`: warm up, then `n` requests of one case, for
    /// callgrind or perf (`--toggle-collect='overhead::imp::profile_loop'`).
    fn profile(rt: &tokio::runtime::Runtime, spec: &str) {
        let (name, n) = spec.split_once(':').unwrap_or((spec, "100000"));
        let n: usize = n.parse().expect("OVERHEAD_LOOP=<case>:<n>");
        let cases = build(Some(name));
        let case = cases.iter().find(|c| c.name == name).unwrap_or_else(|| {
            let names: Vec<_> = specs().into_iter().map(|s| s.1).collect();
            panic!("unknown case {name:?}; one of {names:?}")
        });
        rt.block_on(async {
            for _ in 0..2_000 {
                one(&case.router, case.workload.request()).await;
            }
        });
        profile_loop(rt, case, n);
        eprintln!("ran {n} requests of {name}");
    }

    /// The measured loop of [`profile`], a function of its own for
    /// `valgrind --tool=callgrind --toggle-collect='overhead::imp::profile_loop'`.
    #[inline(never)]
    fn profile_loop(rt: &tokio::runtime::Runtime, case: &Case, n: usize) {
        rt.block_on(async {
            for _ in 0..n {
                black_box(one(&case.router, case.workload.request()).await);
            }
        });
    }

    // ---------------------------------------------------------------- summary

    fn criterion_dir() -> PathBuf {
        if let Some(home) = std::env::var_os("CRITERION_HOME") {
            return home.into();
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
        target.join("criterion")
    }

    /// The criterion median of a case measured by this process, in ns.
    fn criterion_median(case: &Case, since: SystemTime) -> Option<f64> {
        let path = criterion_dir().join(case.group).join(case.name).join("new/estimates.json");
        let fresh = std::fs::metadata(&path).and_then(|m| m.modified()).is_ok_and(|t| t >= since);
        if !fresh {
            return None;
        }
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        json["median"]["point_estimate"].as_f64()
    }

    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
    }

    fn summary(rt: &tokio::runtime::Runtime, cases: &[Case], since: SystemTime) {
        let rounds = env_usize("OVERHEAD_ROUNDS", 21).max(1);
        let batch = env_usize("OVERHEAD_BATCH", 3000).max(1);
        println!(
            "\nsummary pass: {rounds} interleaved rounds x {batch} requests per case \
             (overhead and ratios per round against the baseline of the same round)"
        );
        let time_batch = |case: &Case| -> f64 {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..batch {
                    black_box(one(&case.router, case.workload.request()).await);
                }
                t.elapsed().as_nanos() as f64 / batch as f64
            })
        };
        for case in cases {
            time_batch(case); // warm-up
        }
        let mut ns: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); cases.len()];
        for _ in 0..rounds {
            for (i, case) in cases.iter().enumerate() {
                ns[i].push(time_batch(case));
            }
        }
        let index = |name: &str| cases.iter().position(|c| c.name == name).expect("baseline");

        println!(
            "{:<28} {:>10} {:>10} {:>24} {:>8} {:>20}  what",
            "case", "criterion", "median", "overhead ns (min..max)", "t/bare", "bare/t (min..max)"
        );
        for (i, case) in cases.iter().enumerate() {
            let b = index(case.baseline);
            let mut over: Vec<f64> = ns[i].iter().zip(&ns[b]).map(|(c, b)| c - b).collect();
            let mut speed: Vec<f64> = ns[i].iter().zip(&ns[b]).map(|(c, b)| b / c).collect();
            let med = median(&mut ns[i].clone());
            let crit = criterion_median(case, since).map_or_else(|| "-".to_owned(), |m| format!("{m:.0}"));
            let (omin, omax) = (
                over.iter().copied().fold(f64::MAX, f64::min),
                over.iter().copied().fold(f64::MIN, f64::max),
            );
            let (smin, smax) = (
                speed.iter().copied().fold(f64::MAX, f64::min),
                speed.iter().copied().fold(f64::MIN, f64::max),
            );
            let omed = median(&mut over);
            let smed = median(&mut speed);
            let cell = if i == b {
                format!("{:>24} {:>8} {:>20}", "(baseline)", "1.00", "")
            } else {
                format!(
                    "{:>24} {:>8.2} {:>20}",
                    format!("{omed:+.0} ({omin:+.0}..{omax:+.0})"),
                    1.0 / smed,
                    format!("{smed:.2} ({smin:.2}..{smax:.2})")
                )
            };
            println!("{:<28} {:>10} {:>10.0} {cell}  {}", case.name, crit, med, case.what);
        }
        println!(
            "criterion = criterion's median ns/request; median = summary pass; t/bare = time ratio \
             (median of per-round ratios); bare/t = throughput-equivalent ratio"
        );
    }
}
