//! The load-test server of `scripts/bench-load.sh` (issue 8): `GET /users/{id}`
//! on `127.0.0.1:$PORT` behind the layers chosen by `MODE`.
//!
//! | `MODE` | layers | process-wide setup |
//! |---|---|---|
//! | `bare` | none | a subscriber logging to stderr at `RUST_LOG` (default `warn`) |
//! | `metrics` | [`HttpMetricsLayer`] | the same, and the Prometheus recorder |
//! | `full` | `Observability::layer` | `Observability::init`, log filter `warn` |
//! | `full_log` | the same | `Observability::init`, log filter `info`: the JSON access log |
//! | `anchor` | axum-prometheus + tower-http request id + `TraceLayer` at INFO | recorder, tracer provider, subscriber |
//! | `floor_body` | `Router::layer` of a layer that only wraps the response body (`MapErr`) | as `bare` |
//!
//! `full` and `full_log` are what `Observability::init` installs (the
//! Prometheus recorder with the crate's buckets and its upkeep, the tracer
//! provider sampling `parentbased_always_on`, the subscriber), with the span
//! exporter replaced by one that counts and drops what it is given
//! (`span_exporter`), so that the load measures the layers and the span
//! pipeline and not a collector. `full_log` writes one JSON line per request
//! to standard output (the load script sends it to a file). `scripts/bench-load.sh`
//! also runs `full` as `unsampled`, every request carrying a `traceparent`
//! whose parent is not sampled. `anchor` installs the same recorder and a
//! tracer provider of its own with a batch processor to the counting
//! exporter; its logs go to stderr at `RUST_LOG` (default `warn`).
//! `floor_body` is the floor of any layer that sees the end of the
//! response body behind `Router::layer`: axum clones and boxes the route's
//! service, boxes its future and boxes the wrapped body, per request.
//! `WORKERS` sets tokio's worker threads (default: one per core). On
//! SIGINT/SIGTERM the server flushes spans and prints how many the exporter
//! received.
//!
//! ```text
//! MODE=full PORT=3001 cargo run --release --example bench_server --features full
//! ```

#[path = "../benches/support/counting_exporter.rs"]
mod counting_exporter;

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::Path,
    http::header::CONTENT_TYPE,
    response::{IntoResponse, Response},
    routing::get,
};
use counting_exporter::CountingExporter;
use http_body_util::{BodyExt, combinators::MapErr};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tower::ServiceBuilder;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultMakeSpan, TraceLayer},
};
use tower_observability::{Observability, metrics::HttpMetricsLayer};
use tracing_subscriber::{EnvFilter, Layer as _, layer::SubscriberExt, util::SubscriberInitExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    Metrics,
    Full,
    FullLog,
    Anchor,
    FloorBody,
}

impl Mode {
    fn from_env() -> Result<Self, String> {
        match std::env::var("MODE").as_deref().unwrap_or("bare") {
            "bare" => Ok(Self::Bare),
            "metrics" => Ok(Self::Metrics),
            "full" | "unsampled" => Ok(Self::Full),
            "full_log" => Ok(Self::FullLog),
            "anchor" => Ok(Self::Anchor),
            "floor_body" => Ok(Self::FloorBody),
            other => Err(format!(
                "MODE={other:?}: expected bare, metrics, full, unsampled, full_log, anchor or floor_body"
            )),
        }
    }
}

async fn get_user(Path(id): Path<u32>) -> impl IntoResponse {
    black_box(id);
    ([(CONTENT_TYPE, "application/json")], r#"{"id":42,"name":"Ada Lovelace"}"#)
}

fn install_recorder() {
    // As `Observability` installs it.
    let handle = tower_observability::prometheus_builder()
        .install_recorder()
        .expect("no other recorder in this process");
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(5));
            handle.run_upkeep();
        }
    });
}

/// Installs the subscriber: logs at `RUST_LOG` (default `warn`) and, when
/// `provider` is given, the OTel layer.
fn install_subscriber(provider: Option<&SdkTracerProvider>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter);
    // As `Observability` installs them.
    let otel = provider.map(tower_observability::otel_layer);
    tracing_subscriber::registry().with(logs).with(otel).init();
}

fn tracer_provider(exported: Arc<AtomicU64>) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(CountingExporter(exported))
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .build()
}

/// The response body of `floor_body`: wrapped, nothing else.
fn wrapped(body: Body) -> MapErr<Body, fn(axum::Error) -> axum::Error> {
    body.map_err(std::convert::identity as fn(axum::Error) -> axum::Error)
}

fn app(mode: Mode, obs: Option<&Observability>) -> Router {
    let router = Router::new().route("/users/{id}", get(get_user));
    match mode {
        Mode::Bare => router,
        Mode::FloorBody => router.layer(ServiceBuilder::new().map_response(|res: Response| res.map(wrapped))),
        Mode::Metrics => router.layer(HttpMetricsLayer::new()),
        Mode::Full | Mode::FullLog => router.layer(obs.expect("`Observability` for the full stack").layer()),
        Mode::Anchor => router.layer(axum_prometheus::PrometheusMetricLayer::new()).layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        ),
    }
}

async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = Mode::from_env()?;
    let port: u16 = std::env::var("PORT").ok().map_or(Ok(3000), |p| p.parse())?;

    let exported = Arc::new(AtomicU64::new(0));
    let (provider, obs) = match mode {
        Mode::Full | Mode::FullLog => {
            let obs = Observability::builder()
                .service_name("bench_server")
                .span_exporter(CountingExporter(exported.clone()))
                .log_filter(if mode == Mode::FullLog { "info" } else { "warn" })
                .init()?;
            (obs.tracer_provider().cloned(), Some(obs))
        }
        Mode::Anchor => {
            let provider = tracer_provider(exported.clone());
            install_subscriber(Some(&provider));
            install_recorder();
            (Some(provider), None)
        }
        Mode::Metrics => {
            install_subscriber(None);
            install_recorder();
            (None, None)
        }
        Mode::Bare | Mode::FloorBody => {
            install_subscriber(None);
            (None, None)
        }
    };

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = std::env::var("WORKERS").ok().and_then(|w| w.parse().ok()) {
        runtime.worker_threads(workers);
    }
    runtime.enable_all().build()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("bench_server mode={mode:?} listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app(mode, obs.as_ref())).with_graceful_shutdown(shutdown_signal()).await
    })?;

    if let Some(provider) = provider {
        let _ = provider.force_flush();
        eprintln!("spans exported: {}", exported.load(Ordering::Relaxed));
        let _ = provider.shutdown();
    }
    drop(obs);
    Ok(())
}
