//! A tiny OTLP collector for benchmarks and fault drills: it counts spans,
//! metric data points and log records (gRPC `TraceService`,
//! `MetricsService`, `LogsService`, and optionally OTLP/HTTP) and can be
//! told to answer slowly or never.
//!
//! ```text
//! SINK_MODE=hang SINK_PORT=4317 cargo run --release --example otlp_sink
//! ```
//!
//! Environment:
//!
//! - `SINK_PORT`: gRPC port on 127.0.0.1 (default 4317; `0` picks a free
//!   one). It always listens on loopback only.
//! - `SINK_HTTP_PORT`: also serve OTLP/HTTP protobuf (`POST /v1/traces`,
//!   `/v1/metrics`, `/v1/logs`) on that 127.0.0.1 port; unset: gRPC only.
//! - `SINK_MODE`: `ok` (answer every export at once, the default), `slow`
//!   (answer each export after `SINK_DELAY_MS`, default 500) or `hang`
//!   (accept each export and never answer; the client gives up on its own
//!   timeout, which cancels the call here).
//!
//! Every second, and once more on Ctrl-C or SIGTERM, it prints one line to
//! stderr made of `key=value` fields:
//!
//! ```text
//! otlp_sink: spans=1536 exports=3 received=1536 in_flight=0 points=42 records=1540 mode=ok
//! ```
//!
//! `spans` are the spans of answered exports (what the client counts as
//! exported), `exports` the trace `Export` calls received, `received` the
//! spans in them whether answered or not, `in_flight` the calls (of every
//! signal) not yet answered, `points` and `records` the metric data points
//! and log records of answered exports. The first line, `otlp_sink:
//! listening on 127.0.0.1:PORT mode=...`, says where it listens. Nothing is
//! stored, only counted: memory stays flat however long it runs.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry_proto::tonic::collector::{
    logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
        logs_service_server::{LogsService, LogsServiceServer},
    },
    metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message as _;

/// How the sink answers an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// At once.
    Ok,
    /// After a delay.
    Slow(Duration),
    /// Never: the call stays open until the client cancels it.
    Hang,
}

impl Mode {
    fn from_env() -> Result<Self, String> {
        let delay_ms = match std::env::var("SINK_DELAY_MS") {
            Ok(v) => v.parse::<u64>().map_err(|e| format!("SINK_DELAY_MS={v:?}: {e}"))?,
            Err(_) => 500,
        };
        match std::env::var("SINK_MODE").as_deref().unwrap_or("ok") {
            "ok" => Ok(Self::Ok),
            "slow" => Ok(Self::Slow(Duration::from_millis(delay_ms))),
            "hang" => Ok(Self::Hang),
            other => Err(format!("SINK_MODE={other:?}: expected ok, slow or hang")),
        }
    }

    fn name(self) -> String {
        match self {
            Self::Ok => "ok".to_owned(),
            Self::Slow(delay) => format!("slow delay_ms={}", delay.as_millis()),
            Self::Hang => "hang".to_owned(),
        }
    }
}

/// The counters printed every second.
#[derive(Debug, Default)]
struct Counts {
    /// Spans of answered exports.
    spans: AtomicU64,
    /// `Export` calls received.
    exports: AtomicU64,
    /// Spans in the calls received, answered or not.
    received: AtomicU64,
    /// Calls received and not yet answered (nor cancelled).
    in_flight: AtomicU64,
    /// Metric data points of answered exports.
    points: AtomicU64,
    /// Log records of answered exports.
    records: AtomicU64,
}

impl Counts {
    fn line(&self, mode: Mode) -> String {
        format!(
            "otlp_sink: spans={} exports={} received={} in_flight={} points={} records={} mode={}",
            self.spans.load(Ordering::Relaxed),
            self.exports.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
            self.points.load(Ordering::Relaxed),
            self.records.load(Ordering::Relaxed),
            mode.name(),
        )
    }
}

/// Decrements `in_flight` when a call ends, answered or cancelled (tonic
/// drops the handler's future when the client resets the stream).
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Sink {
    mode: Mode,
    counts: Arc<Counts>,
}

fn span_count(request: &ExportTraceServiceRequest) -> u64 {
    request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum()
}

fn point_count(request: &ExportMetricsServiceRequest) -> u64 {
    let points = |data: &Option<Data>| match data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    } as u64;
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| points(&m.data))
        .sum()
}

fn record_count(request: &ExportLogsServiceRequest) -> u64 {
    request.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len() as u64).sum()
}

impl Sink {
    /// Waits as the mode says before a call is answered (a hung call never
    /// is: the client cancels it, which drops this future).
    async fn answer(&self) {
        self.counts.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&self.counts.in_flight);
        match self.mode {
            Mode::Ok => {}
            Mode::Slow(delay) => tokio::time::sleep(delay).await,
            Mode::Hang => std::future::pending::<()>().await,
        }
    }

    async fn traces(&self, spans: u64) {
        self.counts.exports.fetch_add(1, Ordering::Relaxed);
        self.counts.received.fetch_add(spans, Ordering::Relaxed);
        self.answer().await;
        self.counts.spans.fetch_add(spans, Ordering::Relaxed);
    }

    async fn metrics(&self, points: u64) {
        self.answer().await;
        self.counts.points.fetch_add(points, Ordering::Relaxed);
    }

    async fn logs(&self, records: u64) {
        self.answer().await;
        self.counts.records.fetch_add(records, Ordering::Relaxed);
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = span_count(request.get_ref());
        drop(request);
        self.traces(spans).await;
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let points = point_count(request.get_ref());
        drop(request);
        self.metrics(points).await;
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let records = record_count(request.get_ref());
        drop(request);
        self.logs(records).await;
        Ok(tonic::Response::new(ExportLogsServiceResponse { partial_success: None }))
    }
}

/// The OTLP/HTTP protobuf routes, counting as the gRPC services do.
fn http_routes(sink: Arc<Sink>) -> axum::Router {
    use axum::{body::Bytes, extract::State, http::StatusCode, routing::post};
    type Answer = (StatusCode, [(&'static str, &'static str); 1], Vec<u8>);
    fn ok(body: Vec<u8>) -> Answer {
        (StatusCode::OK, [("content-type", "application/x-protobuf")], body)
    }
    fn bad() -> Answer {
        (StatusCode::BAD_REQUEST, [("content-type", "text/plain")], b"invalid OTLP request".to_vec())
    }
    axum::Router::new()
        .route(
            "/v1/traces",
            post(|State(sink): State<Arc<Sink>>, body: Bytes| async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else { return bad() };
                sink.traces(span_count(&request)).await;
                ok(ExportTraceServiceResponse { partial_success: None }.encode_to_vec())
            }),
        )
        .route(
            "/v1/metrics",
            post(|State(sink): State<Arc<Sink>>, body: Bytes| async move {
                let Ok(request) = ExportMetricsServiceRequest::decode(body) else { return bad() };
                sink.metrics(point_count(&request)).await;
                ok(ExportMetricsServiceResponse { partial_success: None }.encode_to_vec())
            }),
        )
        .route(
            "/v1/logs",
            post(|State(sink): State<Arc<Sink>>, body: Bytes| async move {
                let Ok(request) = ExportLogsServiceRequest::decode(body) else { return bad() };
                sink.logs(record_count(&request)).await;
                ok(ExportLogsServiceResponse { partial_success: None }.encode_to_vec())
            }),
        )
        .with_state(sink)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

// One thread: the sink should take as little CPU as possible from the
// service it measures.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = Mode::from_env()?;
    let port: u16 = match std::env::var("SINK_PORT") {
        Ok(v) => v.parse().map_err(|e| format!("SINK_PORT={v:?}: {e}"))?,
        Err(_) => 4317,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let address: SocketAddr = listener.local_addr()?;
    eprintln!("otlp_sink: listening on {address} mode={}", mode.name());

    let counts = Arc::new(Counts::default());
    let sink = Arc::new(Sink { mode, counts: Arc::clone(&counts) });
    // A batch of 512 large spans can pass tonic's 4 MiB default.
    const MAX_MESSAGE: usize = 64 * 1024 * 1024;
    let traces = TraceServiceServer::from_arc(Arc::clone(&sink)).max_decoding_message_size(MAX_MESSAGE);
    let metrics = MetricsServiceServer::from_arc(Arc::clone(&sink)).max_decoding_message_size(MAX_MESSAGE);
    let logs = LogsServiceServer::from_arc(Arc::clone(&sink)).max_decoding_message_size(MAX_MESSAGE);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let server = tonic::transport::Server::builder()
        .add_service(traces)
        .add_service(metrics)
        .add_service(logs)
        .serve_with_incoming(incoming);
    if let Ok(v) = std::env::var("SINK_HTTP_PORT") {
        {
            let port: u16 = v.parse().map_err(|e| format!("SINK_HTTP_PORT={v:?}: {e}"))?;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            eprintln!("otlp_sink: OTLP/HTTP on {}", listener.local_addr()?);
            let app = http_routes(Arc::clone(&sink)).layer(axum::extract::DefaultBodyLimit::max(MAX_MESSAGE));
            tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, app).await {
                    eprintln!("otlp_sink: HTTP server error: {err}");
                }
            });
        }
    }

    let report = {
        let counts = Arc::clone(&counts);
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("{}", counts.line(mode));
            }
        }
    };

    // A hung call would hold a graceful shutdown forever: stop at once.
    tokio::select! {
        result = server => result?,
        () = report => {},
        () = shutdown_signal() => {},
    }
    eprintln!("{}", counts.line(mode));
    Ok(())
}
