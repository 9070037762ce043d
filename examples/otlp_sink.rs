//! A tiny OTLP/gRPC trace collector for benchmarks and fault drills: it
//! counts spans and can be told to answer slowly or never.
//!
//! ```text
//! SINK_MODE=hang SINK_PORT=4317 cargo run --release --example otlp_sink
//! ```
//!
//! Environment:
//!
//! - `SINK_PORT`: port on 127.0.0.1 (default 4317; `0` picks a free one).
//!   It always listens on loopback only.
//! - `SINK_MODE`: `ok` (answer every export at once, the default), `slow`
//!   (answer each export after `SINK_DELAY_MS`, default 500) or `hang`
//!   (accept each export and never answer; the client gives up on its own
//!   timeout, which cancels the call here).
//!
//! Every second, and once more on Ctrl-C or SIGTERM, it prints one line to
//! stderr made of `key=value` fields:
//!
//! ```text
//! otlp_sink: spans=1536 exports=3 received=1536 in_flight=0 mode=ok
//! ```
//!
//! `spans` are the spans of answered exports (what the client counts as
//! exported), `exports` the `Export` calls received, `received` the spans
//! in them whether answered or not, and `in_flight` the calls not yet
//! answered. The first line, `otlp_sink: listening on 127.0.0.1:PORT
//! mode=...`, says where it listens. Spans are counted, not stored: memory
//! stays flat however long it runs.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};

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
}

impl Counts {
    fn line(&self, mode: Mode) -> String {
        format!(
            "otlp_sink: spans={} exports={} received={} in_flight={} mode={}",
            self.spans.load(Ordering::Relaxed),
            self.exports.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
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

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: u64 = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        drop(request);
        self.counts.exports.fetch_add(1, Ordering::Relaxed);
        self.counts.received.fetch_add(spans, Ordering::Relaxed);
        self.counts.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&self.counts.in_flight);
        match self.mode {
            Mode::Ok => {}
            Mode::Slow(delay) => tokio::time::sleep(delay).await,
            Mode::Hang => std::future::pending::<()>().await,
        }
        self.counts.spans.fetch_add(spans, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
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
    let service = TraceServiceServer::new(Sink { mode, counts: Arc::clone(&counts) })
        // A batch of 512 large spans can pass tonic's 4 MiB default.
        .max_decoding_message_size(64 * 1024 * 1024);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let server = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming);

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
