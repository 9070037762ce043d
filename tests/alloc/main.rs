//! Heap allocations per request, per layer, on a warm known route (issue 8:
//! "zero heap allocations per request" for `HttpMetricsLayer`).
//!
//! The crate forbids `unsafe_code` for every target (`[lints.rust]` in
//! `Cargo.toml`, a `forbid` that no `#[allow]` can lift), and a counting
//! `#[global_allocator]` needs `unsafe impl GlobalAlloc`; so the counting is
//! done by valgrind's memcheck instead, which counts every `malloc` of the
//! process, all threads included. The test runs this binary again as a child
//! under valgrind, once per case with `N1` and once with `N2` measured
//! requests after the same warm-up; allocations per request are
//! `(allocs(N2) - allocs(N1)) / (N2 - N1)`, so start-up and warm-up cancel
//! out. Allocations of other threads caused by the requests (the batch span
//! processor's) are included.
//!
//! ```text
//! cargo test --test alloc -- --nocapture              # figures and assertions
//! ALLOC_TRACE=1 cargo test --test alloc -- --nocapture # + allocation sites
//! ```
//!
//! `ALLOC_TRACE=1` also records `metrics` and `full` with valgrind's
//! `--xtree-memory=full` and prints the allocations per request on every call
//! edge that leaves a function of this crate (differenced between the two
//! request counts): that names the call sites to remove. The xtree files stay
//! in `target/tmp/alloc/trace/` for `callgrind_annotate --inclusive=yes`.
#![cfg(all(feature = "axum", feature = "telemetry"))]

#[path = "../../benches/support/counting_exporter.rs"]
mod counting_exporter;

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    hint::black_box,
    path::{Path, PathBuf},
    process::Command,
};

use axum::{
    Router,
    body::Body,
    extract,
    http::{HeaderValue, Request, Uri, header::CONTENT_TYPE},
    response::IntoResponse,
    routing::get,
};
use counting_exporter::CountingExporter;
use http_body_util::BodyExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tower::{ServiceBuilder, ServiceExt, layer::util::Identity};
use tower_observability::{ObservabilityLayer, metrics::HttpMetricsLayer, trace::HttpTraceLayer};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};

/// Set in the child: `<case>:<measured requests>`.
const CHILD_ENV: &str = "TOWER_OBS_ALLOC_CHILD";
/// Requests before measuring: every label set, span name and pool is warm.
const WARM_UP: usize = 300;
const N1: usize = 200;
const N2: usize = 1200;

/// Upper bound of the allocations per request that `HttpMetricsLayer` adds
/// over the same router with `Router::layer(Identity)` (axum's own cost of a
/// layer: a boxed service clone and a boxed future). Today 1.048:
///
/// - 1: axum's `MapIntoResponse` boxes the response body
///   (`ResponseBody<Body, _>` is not `axum::body::Body`): the price, in axum,
///   of any layer that sees the end of the body (tower-http's `TraceLayer`
///   pays it too); measured alone by `bare_response_wrapped`;
/// - 0.048: the Prometheus recorder stores histogram samples in blocks of 64,
///   three histograms per request (3/64).
const METRICS_EXTRA_BOUND: f64 = 1.1;
/// Upper bound of what `HttpMetricsLayer`'s own code allocates per request,
/// measured with no recorder against a layer that wraps the response body as
/// it does: the issue's target, 0.
const METRICS_OWN_BOUND: f64 = 0.0;
/// Upper bound of the full stack's extra allocations per request over bare
/// axum (sampled root span), from today's measurement: 17.05 since the
/// composite boxes its request state (one allocation that saves ~540
/// instructions of copies per request), 16.05 before; 15.05 when the server
/// span was first made through the OTel API, 28.05 through
/// tracing-opentelemetry, 39.05 before the metrics layer stopped
/// allocating. The issue sets no target. A regression guard.
const FULL_EXTRA_BOUND: f64 = 18.0;

/// Every case: name, what it is.
const CASES: &[(&str, &str)] = &[
    ("bare", "axum alone"),
    ("bare_identity", "bare + Router::layer(Identity)"),
    ("bare_wrapped", "bare + a layer wrapping both bodies in non-axum types"),
    ("bare_response_wrapped", "bare + a layer wrapping the response body (axum boxes it)"),
    ("metrics_norecorder", "HttpMetricsLayer, no recorder installed (metrics facade no-op)"),
    ("metrics", "HttpMetricsLayer, Prometheus recorder"),
    ("full", "ObservabilityLayer, recorder + OTel pipeline, sampled root"),
    ("full_unsampled", "ObservabilityLayer, parent traceparent flag 00"),
    ("axum_prometheus", "anchor: axum-prometheus"),
];

// ------------------------------------------------------------------ child

async fn get_user(extract::Path(id): extract::Path<u32>) -> impl IntoResponse {
    black_box(id);
    ([(CONTENT_TYPE, "application/json")], r#"{"id":42,"name":"Ada Lovelace"}"#)
}

fn install_recorder() {
    // As `Observability` installs it.
    tower_observability::prometheus_builder().install_recorder().expect("one recorder per child");
}

fn install_tracing() -> SdkTracerProvider {
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(CountingExporter::default())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .build();
    // As `Observability` installs them.
    tracing_subscriber::registry().with(tower_observability::otel_layer(&provider)).init();
    provider
}

type Wrapped = http_body_util::combinators::MapErr<Body, fn(axum::Error) -> axum::Error>;

fn wrap(b: Body) -> Wrapped {
    b.map_err(std::convert::identity as fn(axum::Error) -> axum::Error)
}

/// The router and `traceparent` of a case, its process-wide setup done.
fn setup(case: &str) -> (Router, Option<HeaderValue>, Option<SdkTracerProvider>) {
    let (router, parent, provider) = setup_inner(case);
    // As `axum::serve` does: handlers become `Route`s once, not per request.
    (router.with_state(()), parent, provider)
}

fn setup_inner(case: &str) -> (Router, Option<HeaderValue>, Option<SdkTracerProvider>) {
    let router = Router::new().route("/users/{id}", get(get_user));
    let unsampled = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    match case {
        "bare" => (router, None, None),
        "bare_identity" => (router.layer(Identity::new()), None, None),
        "bare_wrapped" => {
            let layer = ServiceBuilder::new()
                .map_request(|req: Request<Body>| req.map(wrap))
                .map_response(|res: axum::response::Response| res.map(wrap));
            (router.layer(layer), None, None)
        }
        "bare_response_wrapped" => {
            let layer = ServiceBuilder::new().map_response(|res: axum::response::Response| res.map(wrap));
            (router.layer(layer), None, None)
        }
        "metrics_norecorder" => (router.layer(HttpMetricsLayer::new()), None, None),
        "metrics" => {
            install_recorder();
            (router.layer(HttpMetricsLayer::new()), None, None)
        }
        "full" | "full_unsampled" => {
            install_recorder();
            let provider = install_tracing();
            let parent = (case == "full_unsampled").then_some(unsampled);
            // As `Observability::layer`: server spans made by the SDK's tracer.
            let trace = HttpTraceLayer::new().tracer(provider.tracer("tower-observability"));
            (router.layer(ObservabilityLayer::new().trace(trace)), parent, Some(provider))
        }
        "axum_prometheus" => {
            install_recorder();
            (router.layer(axum_prometheus::PrometheusMetricLayer::new()), None, None)
        }
        other => panic!("unknown case {other}"),
    }
}

async fn one(router: &Router, uri: &Uri, parent: Option<&HeaderValue>) {
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = uri.clone();
    if let Some(parent) = parent {
        req.headers_mut().insert("traceparent", parent.clone());
    }
    let res = router.clone().oneshot(req).await.unwrap_or_else(|e: Infallible| match e {});
    assert!(res.status().is_success());
    black_box(res.into_body().collect().await.expect("body").to_bytes());
}

/// The workload of one child; a no-op unless the parent test spawned us.
#[test]
fn child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let (case, n) = spec.split_once(':').expect("case:n");
    let n: usize = n.parse().expect("n");
    let (router, parent, provider) = setup(case);
    let uri = Uri::from_static("/users/42");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for _ in 0..WARM_UP {
            one(&router, &uri, parent.as_ref()).await;
        }
        measured(&router, &uri, parent.as_ref(), n).await;
    });
    if let Some(provider) = provider {
        let _ = provider.shutdown();
    }
}

#[inline(never)]
async fn measured(router: &Router, uri: &Uri, parent: Option<&HeaderValue>, n: usize) {
    for _ in 0..n {
        one(router, uri, parent).await;
    }
}

// ----------------------------------------------------------------- parent

/// Heap figures of one child run.
#[derive(Debug, Clone, Copy)]
struct Heap {
    allocs: u64,
    bytes: u64,
}

fn valgrind(args: &[&str], case: &str, n: usize, log: &Path) -> std::process::Child {
    let exe = std::env::current_exe().expect("test binary");
    Command::new("valgrind")
        .args(args)
        .arg(format!("--log-file={}", log.display()))
        .arg(exe)
        .args(["--exact", "child", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, format!("{case}:{n}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("valgrind runs (Debian package `valgrind`)")
}

/// `total heap usage: 1,234 allocs, 1,230 frees, 56,789 bytes allocated`.
fn parse_heap(log: &str) -> Heap {
    let line = log
        .lines()
        .find_map(|l| l.split_once("total heap usage:").map(|(_, rest)| rest.replace(',', "")))
        .unwrap_or_else(|| panic!("no heap summary in:\n{log}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let find = |unit: &str| -> u64 {
        let i = words.iter().position(|w| *w == unit).unwrap_or_else(|| panic!("{unit} in {line}"));
        words[i - 1].parse().expect("number")
    };
    Heap { allocs: find("allocs"), bytes: find("bytes") }
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("alloc");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Allocations and bytes per request of `case`, from two child runs.
fn measure(case: &str) -> (f64, f64) {
    let dir = out_dir();
    let logs = [N1, N2].map(|n| dir.join(format!("{case}-{n}.log")));
    let mut children: Vec<_> = [N1, N2]
        .iter()
        .zip(&logs)
        .map(|(&n, log)| valgrind(&["--tool=memcheck", "--leak-check=no"], case, n, log))
        .collect();
    for child in &mut children {
        let status = child.wait().expect("valgrind");
        assert!(status.success(), "the child of {case} failed under valgrind: {status}");
    }
    let [a, b] = logs.map(|log| parse_heap(&std::fs::read_to_string(log).expect("valgrind log")));
    let n = (N2 - N1) as f64;
    ((b.allocs as f64 - a.allocs as f64) / n, (b.bytes as f64 - a.bytes as f64) / n)
}

/// Allocation blocks (event `totBk`) per call edge of an xtree file
/// (callgrind format), and per function called directly by malloc's callers.
fn xtree_edges(path: &Path) -> HashMap<(String, String), f64> {
    let text = std::fs::read_to_string(path).expect("xtree file");
    let events: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("events:"))
        .expect("events line")
        .split_whitespace()
        .collect();
    let total_blocks = events.iter().position(|e| *e == "totBk").expect("totBk event") + 1;
    let mut names: HashMap<String, String> = HashMap::new();
    let mut name = |spec: &str| -> String {
        let (id, rest) = spec.split_once(' ').map_or((spec, None), |(i, r)| (i, Some(r)));
        if let Some(rest) = rest {
            names.insert(id.to_owned(), rest.to_owned());
        }
        names.get(id).cloned().unwrap_or_default()
    };
    let (mut current, mut callee) = (String::new(), None::<String>);
    let mut edges = HashMap::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("fn=") {
            current = name(f);
        } else if let Some(f) = line.strip_prefix("cfn=") {
            callee = Some(name(f));
        } else if line.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-' || c == '*') {
            let blocks: f64 =
                line.split_whitespace().nth(total_blocks).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let to = callee.take().unwrap_or_else(|| "(malloc)".to_owned());
            *edges.entry((current.clone(), to)).or_default() += blocks;
        }
    }
    edges
}

/// Allocations per request on each call edge out of this crate's functions,
/// for `case`, from two `--xtree-memory=full` runs.
fn trace(case: &str) -> Vec<(f64, String, String)> {
    let dir = out_dir().join("trace");
    std::fs::create_dir_all(&dir).unwrap();
    let runs = [N1, N2].map(|n| {
        let xtree = dir.join(format!("{case}-{n}.kcg"));
        let log = dir.join(format!("{case}-{n}.log"));
        let args = [
            "--tool=memcheck",
            "--leak-check=no",
            "--xtree-memory=full",
            "--num-callers=40",
            &format!("--xtree-memory-file={}", xtree.display()),
        ];
        (valgrind(&args, case, n, &log), xtree)
    });
    let [a, b] = runs.map(|(mut child, xtree)| {
        assert!(child.wait().expect("valgrind").success());
        xtree_edges(&xtree)
    });
    let n = (N2 - N1) as f64;
    let mut rows: Vec<(f64, String, String)> = b
        .into_iter()
        .filter(|((from, _), _)| from.contains("tower_observability::"))
        .map(|((from, to), v)| {
            let per = (v - a.get(&(from.clone(), to.clone())).copied().unwrap_or(0.0)) / n;
            (per, from, to)
        })
        .filter(|(per, _, _)| per.abs() >= 0.01)
        .collect();
    rows.sort_by(|x, y| y.0.total_cmp(&x.0));
    rows
}

#[test]
fn allocations_per_request() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let figures: BTreeMap<&str, (f64, f64)> = CASES.iter().map(|(case, _)| (*case, measure(case))).collect();
    let bare = figures["bare"].0;
    println!(
        "\nheap allocations per warm request on GET /users/{{id}} (valgrind memcheck, {} requests)",
        N2 - N1
    );
    println!("{:<20} {:>12} {:>12} {:>12}  what", "case", "allocs/req", "vs bare", "bytes/req");
    for (case, what) in CASES {
        let (allocs, bytes) = figures[case];
        println!("{case:<20} {allocs:>12.3} {:>+12.3} {bytes:>12.1}  {what}", allocs - bare);
    }

    if std::env::var_os("ALLOC_TRACE").is_some() {
        for case in ["metrics", "full"] {
            println!(
                "\nallocations per request on call edges out of tower_observability, {case} \
                 (an edge into the inner service includes the inner service's own):"
            );
            for (per, from, to) in trace(case) {
                println!("{per:>8.3}  {from}\n          -> {to}");
            }
        }
        println!("\nxtree files (callgrind_annotate --inclusive=yes): {}", out_dir().join("trace").display());
    }

    let metrics_extra = figures["metrics"].0 - figures["bare_identity"].0;
    let metrics_own = figures["metrics_norecorder"].0 - figures["bare_response_wrapped"].0;
    let full_extra = figures["full"].0 - bare;
    println!(
        "\nHttpMetricsLayer: {metrics_extra:.3} allocations per request over Router::layer(Identity) \
         (bound {METRICS_EXTRA_BOUND}, target 0), {metrics_own:.3} by its own code (bound {METRICS_OWN_BOUND}); \
         full stack: {full_extra:.3} over bare (bound {FULL_EXTRA_BOUND})"
    );
    if metrics_extra > 0.06 {
        println!(
            "of the {metrics_extra:.3}: 1 is axum boxing the wrapped response body (as for any body-observing \
             layer), ~0.048 the Prometheus recorder's sample blocks; ALLOC_TRACE=1 names the call sites"
        );
    }
    assert!(
        metrics_own <= METRICS_OWN_BOUND + 0.01,
        "HttpMetricsLayer's own code allocates {metrics_own:.3} per request (bound {METRICS_OWN_BOUND})"
    );
    assert!(
        metrics_extra <= METRICS_EXTRA_BOUND,
        "HttpMetricsLayer adds {metrics_extra:.3} allocations per request (bound {METRICS_EXTRA_BOUND})"
    );
    assert!(
        full_extra <= FULL_EXTRA_BOUND,
        "the full stack adds {full_extra:.3} allocations per request (bound {FULL_EXTRA_BOUND})"
    );
}
