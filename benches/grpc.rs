//! In-process cost of one unary gRPC call: bare tonic against tonic with
//! the crate's layers (issue 16).
//!
//! The tonic service `demo.Greeter/SayHello` (tests/support/greeter.rs,
//! the code tonic-build generates) is mounted in tonic's `Routes`
//! (prepared, as a server does) and driven with `oneshot`: a prost-encoded
//! request in one gRPC frame, the response body collected to its trailers,
//! on a tokio current-thread runtime. The process holds a Prometheus
//! recorder with the crate's buckets and an SDK tracer provider with the
//! crate's batch processor (`telemetry::counted_span_processor`) and a
//! no-op exporter, `parentbased_always_on`: every call is a sampled root
//! span.
//!
//! ```text
//! cargo bench --bench grpc
//! GRPC_LOOP=full:200000 cargo bench --bench grpc   # one case in a loop, for callgrind
//! GRPC_SCALING=metrics:2:3 cargo bench --bench grpc # calls/s of 2 threads for 3 s
//! ```
//!
//! `GRPC_SCALING=case:workers:seconds` drives one service from `workers`
//! threads at once (each a current-thread runtime calling in a loop, as the
//! `scaling` bench does for HTTP), so that what the workers of a server
//! write in common shows; it prints the calls per second of all of them.

#![allow(missing_docs)]

#[path = "../tests/support/greeter.rs"]
mod greeter;
#[path = "support/workers.rs"]
mod workers;

use std::{convert::Infallible, hint::black_box, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use criterion::Criterion;
use greeter::{GreeterServer, Hello, HelloRequest};
use http::{Request, Response};
use http_body_util::BodyExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter},
};
use prost::Message as _;
use tower::{Layer, Service, ServiceExt};
use tower_observability::{ObservabilityLayer, metrics::HttpMetricsLayer, trace::HttpTraceLayer};

#[derive(Debug)]
struct NoopExporter;

impl SpanExporter for NoopExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// The request body: one uncompressed gRPC frame holding `HelloRequest`.
fn frame() -> Bytes {
    let message = HelloRequest { name: "ada".to_owned() }.encode_to_vec();
    let mut buf = BytesMut::with_capacity(5 + message.len());
    buf.put_u8(0);
    buf.put_u32(message.len() as u32);
    buf.put_slice(&message);
    buf.freeze()
}

fn request(body: &Bytes) -> Request<tonic::body::Body> {
    Request::post("/demo.Greeter/SayHello")
        .version(http::Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(body.clone())))
        .unwrap()
}

/// Calls `svc` once and collects the response to its trailers; returns the
/// body's length, checking the call's status.
async fn call<S, B>(svc: &S, body: &Bytes) -> usize
where
    S: Service<Request<tonic::body::Body>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let res = svc.clone().oneshot(request(body)).await.unwrap();
    let collected = res.into_body().collect().await.unwrap();
    let status = collected.trailers().and_then(|t| t.get("grpc-status")).map(|v| v.as_bytes().to_vec());
    assert_eq!(status.as_deref(), Some(&b"0"[..]));
    collected.to_bytes().len()
}

/// Calls per second of `workers` threads calling `svc` for `run`.
fn calls_per_second<S, B>(svc: &S, body: &Bytes, workers: usize, run: Duration) -> f64
where
    S: Service<Request<tonic::body::Body>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (svc, body) = (svc.clone(), body.clone());
    workers::per_second(workers, run, move || {
        let (svc, body) = (svc.clone(), body.clone());
        async move {
            black_box(call(&svc, &body).await);
        }
    })
}

fn main() {
    let _prometheus =
        tower_observability::prometheus_builder().install_recorder().expect("the only recorder");
    // The crate's counted batch pipeline, as `Observability` installs it.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(tower_observability::telemetry::counted_span_processor(NoopExporter, 2048))
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .build();
    let tracer = provider.tracer("tower-observability");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body = frame();

    let bare = tonic::service::Routes::new(GreeterServer::new(Hello)).prepare();
    let full = ObservabilityLayer::new().trace(HttpTraceLayer::new().tracer(tracer)).layer(bare.clone());
    let metrics = HttpMetricsLayer::new().layer(bare.clone());

    if let Ok(spec) = std::env::var("GRPC_LOOP") {
        let (case, n) = spec.split_once(':').expect("GRPC_LOOP=case:n");
        let n: usize = n.parse().expect("a count");
        rt.block_on(async {
            for _ in 0..n {
                black_box(match case {
                    "bare" => call(&bare, &body).await,
                    "metrics" => call(&metrics, &body).await,
                    "full" => call(&full, &body).await,
                    other => panic!("unknown case {other}"),
                });
            }
        });
        return;
    }

    if let Ok(spec) = std::env::var("GRPC_SCALING") {
        let mut parts = spec.split(':');
        let case = parts.next().unwrap_or("metrics").to_owned();
        let workers: usize = parts.next().and_then(|w| w.parse().ok()).unwrap_or(2);
        let run = Duration::from_secs(parts.next().and_then(|s| s.parse().ok()).unwrap_or(3));
        let rate = match case.as_str() {
            "bare" => calls_per_second(&bare, &body, workers, run),
            "metrics" => calls_per_second(&metrics, &body, workers, run),
            "full" => calls_per_second(&full, &body, workers, run),
            other => panic!("GRPC_SCALING={spec}: the case is bare, metrics or full, not {other}"),
        };
        println!("{case} with {workers} workers: {rate:.0} calls/s");
        let _ = provider.shutdown();
        return;
    }

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut g = c.benchmark_group("grpc_unary");
    g.bench_function("tonic_bare", |b| b.to_async(&rt).iter(|| call(&bare, &body)));
    g.bench_function("tonic_metrics", |b| b.to_async(&rt).iter(|| call(&metrics, &body)));
    g.bench_function("tonic_full_sampled", |b| b.to_async(&rt).iter(|| call(&full, &body)));
    g.finish();
    c.final_summary();
    let _ = provider.shutdown();
}
