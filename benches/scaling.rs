//! Throughput as workers are added (issue 19): N threads (1, 2, 4) drive one
//! router concurrently, so that contention (cache lines written by every
//! worker, locks, the span pipeline's queue) shows without wrk and the
//! kernel.
//!
//! Each worker is an OS thread with a tokio current-thread runtime driving a
//! clone of the same `Router` (so every worker shares the layers' state, as
//! the workers of a server do) with `tower::ServiceExt::oneshot`, the body
//! collected; `GET /users/{id}` as in the `overhead` bench. One process holds
//! one global recorder and subscriber: `Observability::init` with the log
//! filter `warn` (no access-log line) and a span exporter that counts and
//! drops what it gets (`ObservabilityBuilder::span_exporter`), sampler
//! `parentbased_always_on`.
//!
//! Cases: `bare` (no layer), `metrics` (`HttpMetricsLayer`), `full`
//! (`Observability::layer`, every request a sampled root) and `unsampled`
//! (the same, every request with a `traceparent` whose parent is not
//! sampled; bare with the same header is its baseline in the overhead
//! column). Rounds alternate bare and the case per worker count; each figure
//! is the median of `SCALING_ROUNDS` (default 5) runs of `SCALING_MILLIS`
//! (default 400) ms.
//!
//! Printed per case and worker count: requests per second in total and per
//! worker, the scaling (total at N over N times the total at 1; on this
//! 2-core machine 4 workers cannot exceed 2 cores' worth, so its ideal is
//! 0.5), the ratio to bare at the same N, and the cost per request in
//! microseconds of one core (`N / rps`, less bare's; capped at the cores).
//!
//! Run as a test (`cargo test --benches`), it makes one round of 20 ms per
//! figure.
//!
//! ```text
//! cargo bench --bench scaling
//! SCALING_ROUNDS=9 SCALING_MILLIS=1000 cargo bench --bench scaling
//! SCALING_ONLY=metrics:2:10 cargo bench --bench scaling   # one case, 2 workers, 10 s, for perf
//! ```

// Needs the `axum` and `telemetry` features (on by default; `required-features`).
fn main() {
    imp::main();
}

#[path = "support/counting_exporter.rs"]
mod counting_exporter;
#[path = "support/workers.rs"]
mod workers;

mod imp {
    use super::{counting_exporter::CountingExporter, workers::per_second};
    use std::{
        hint::black_box,
        sync::{
            Arc,
            atomic::{AtomicU64, Ordering},
        },
        time::Duration,
    };

    use axum::{Router, body::Body, extract::Path, http::Request, response::IntoResponse, routing::get};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    use tower_observability::{Observability, metrics::HttpMetricsLayer};

    const UNSAMPLED_PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    const WORKERS: [usize; 3] = [1, 2, 4];

    async fn get_user(Path(id): Path<u32>) -> impl IntoResponse {
        black_box(id);
        ([(axum::http::header::CONTENT_TYPE, "application/json")], r#"{"id":42,"name":"Ada Lovelace"}"#)
    }

    fn env(name: &str, default: u64) -> u64 {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    /// Requests per second of `workers` threads driving `router` for `run`.
    fn throughput(router: &Router, workers: usize, traceparent: bool, run: Duration) -> f64 {
        let router = router.clone();
        per_second(workers, run, move || {
            let router = router.clone();
            async move {
                let mut req = Request::get("/users/42");
                if traceparent {
                    req = req.header("traceparent", UNSAMPLED_PARENT);
                }
                let res = router.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
                assert!(res.status().is_success());
                black_box(res.into_body().collect().await.unwrap());
            }
        })
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
    }

    pub(super) fn main() {
        // Run as a test (`cargo test --all-targets`, no `--bench`): one short
        // round of each figure, to show the bench still works.
        let benchmarking = std::env::args().any(|a| a == "--bench");
        let rounds = if benchmarking { env("SCALING_ROUNDS", 5).max(1) as usize } else { 1 };
        let run = Duration::from_millis(if benchmarking { env("SCALING_MILLIS", 400) } else { 20 });
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let exported = Arc::new(AtomicU64::new(0));
        let obs = Observability::builder()
            .service_name("scaling")
            .span_exporter(CountingExporter(exported.clone()))
            .log_filter("warn")
            .init()
            .expect("init");

        let routes = Router::new().route("/users/{id}", get(get_user));
        let bare = routes.clone().with_state(());
        let cases: [(&str, Router, bool); 3] = [
            ("metrics", routes.clone().layer(HttpMetricsLayer::new()).with_state(()), false),
            ("full", routes.clone().layer(obs.layer()).with_state(()), false),
            ("unsampled", routes.layer(obs.layer()).with_state(()), true),
        ];

        if let Ok(only) = std::env::var("SCALING_ONLY") {
            // `case:workers:seconds`: one run, for a profiler.
            let mut parts = only.split(':');
            let (case, workers, seconds) = (
                parts.next().unwrap_or("full"),
                parts.next().and_then(|w| w.parse().ok()).unwrap_or(2),
                parts.next().and_then(|s| s.parse().ok()).unwrap_or(10),
            );
            let (router, traceparent) = match cases.iter().find(|(name, ..)| *name == case) {
                Some((_, router, traceparent)) => (router, *traceparent),
                None if case == "bare" => (&bare, false),
                None => panic!("SCALING_ONLY={only}: the case is bare, metrics, full or unsampled"),
            };
            let run = Duration::from_secs(seconds);
            let rps = throughput(router, workers, traceparent, run);
            if let Some(provider) = obs.tracer_provider() {
                let _ = provider.force_flush();
            }
            let spans = exported.load(Ordering::Relaxed) as f64;
            let requests = rps * run.as_secs_f64();
            println!(
                "{case} with {workers} workers: {rps:.0} req/s; spans exported: {spans:.0} ({:.1} % of requests)",
                100.0 * spans / requests.max(1.0)
            );
            return;
        }
        println!("scaling: {rounds} rounds of {} ms per figure, {cores} cores; medians", run.as_millis());
        println!(
            "{:<10} {:>3} {:>12} {:>12} {:>8} {:>10} {:>14}",
            "case", "N", "req/s", "per worker", "scaling", "/ bare", "us/req (core)"
        );
        let mut bare_at_one = 0.0;
        for (i, (name, router, traceparent)) in cases.iter().enumerate() {
            let mut at_one = 0.0;
            for workers in WORKERS {
                let (mut base, mut case) = (Vec::new(), Vec::new());
                for _ in 0..rounds {
                    base.push(throughput(&bare, workers, *traceparent, run));
                    case.push(throughput(router, workers, *traceparent, run));
                }
                let (base, case) = (median(base), median(case));
                let busy = workers.min(cores) as f64;
                if i == 0 {
                    if workers == 1 {
                        bare_at_one = base;
                    }
                    println!(
                        "{:<10} {workers:>3} {base:>12.0} {:>12.0} {:>8.2} {:>10} {:>14.2}",
                        "bare",
                        base / workers as f64,
                        base / (workers as f64 * bare_at_one),
                        "1.00",
                        busy * 1e6 / base,
                    );
                }
                if workers == 1 {
                    at_one = case;
                }
                println!(
                    "{name:<10} {workers:>3} {case:>12.0} {:>12.0} {:>8.2} {:>10.3} {:>+14.2}",
                    case / workers as f64,
                    case / (workers as f64 * at_one),
                    case / base,
                    busy * 1e6 / case - busy * 1e6 / base,
                );
            }
        }
        if let Some(provider) = obs.tracer_provider() {
            let _ = provider.force_flush();
        }
        println!("spans exported: {}", exported.load(Ordering::Relaxed));
    }
}
