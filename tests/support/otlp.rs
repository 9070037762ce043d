// In-process OTLP trace receiver for integration tests.
//
// Include with `#[path = "support/otlp.rs"] mod otlp;` (or from a `support`
// module). It starts a gRPC (tonic `TraceService`) and an HTTP/protobuf
// (axum, `POST /v1/traces`) receiver on ephemeral 127.0.0.1 ports and records
// every span it receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;

/// Maximum number of spans kept in memory; further spans are dropped and counted.
#[allow(dead_code, unreachable_pub)]
pub const MAX_STORED_SPANS: usize = 100_000;

/// One span as received by [`OtlpReceiver`], flattened for easy assertions.
#[allow(dead_code, unreachable_pub)]
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// Lowercase hex, 32 chars.
    pub trace_id: String,
    /// Lowercase hex, 16 chars.
    pub span_id: String,
    /// Lowercase hex, or "" for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP span kind (1 INTERNAL, 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER).
    pub kind: i32,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: String,
    /// Span attributes; values rendered as strings.
    pub attributes: HashMap<String, String>,
    /// `service.name` resource attribute, "" if absent.
    pub service_name: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// The span's events: name and attributes (values rendered as strings).
    pub events: Vec<(String, HashMap<String, String>)>,
}

#[allow(dead_code)]
#[derive(Debug, Default)]
struct Shared {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// How long each gRPC export waits before it is answered.
    delay: std::time::Duration,
    dropped: AtomicUsize,
    grpc_requests: AtomicUsize,
    http_requests: AtomicUsize,
}

#[allow(dead_code)]
impl Shared {
    fn record(&self, request: &ExportTraceServiceRequest) {
        let converted = convert_request(request);
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        for span in converted {
            if spans.len() < MAX_STORED_SPANS {
                spans.push(span);
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// In-process OTLP trace receiver (gRPC + HTTP/protobuf).
///
/// The server tasks are aborted when the receiver is dropped.
#[allow(dead_code, unreachable_pub)]
#[derive(Debug)]
pub struct OtlpReceiver {
    shared: Arc<Shared>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[allow(dead_code, unreachable_pub)]
impl OtlpReceiver {
    /// Starts both a gRPC (tonic `TraceService`) and an HTTP/protobuf (axum,
    /// `POST /v1/traces`) receiver on 127.0.0.1 ephemeral ports, as tokio tasks
    /// on the current runtime.
    pub async fn start() -> OtlpReceiver {
        Self::start_with("127.0.0.1:0", std::time::Duration::ZERO).await
    }

    /// Starts a receiver whose gRPC server listens on `grpc_addr` (e.g. the
    /// port of a receiver that was dropped, to simulate a collector coming
    /// back) and answers each export after `delay` (a slow collector).
    pub async fn start_with(grpc_addr: &str, delay: std::time::Duration) -> OtlpReceiver {
        let shared = Arc::new(Shared { delay, ..Shared::default() });

        // gRPC
        let grpc_listener = tokio::net::TcpListener::bind(grpc_addr).await.expect("bind OTLP gRPC listener");
        let grpc_addr = grpc_listener.local_addr().expect("gRPC local_addr");
        let grpc_service = TraceServiceServer::new(GrpcTraceService { shared: Arc::clone(&shared) });
        let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener);
        let grpc_task = tokio::spawn(async move {
            if let Err(err) = tonic::transport::Server::builder()
                .add_service(grpc_service)
                .serve_with_incoming(incoming)
                .await
            {
                eprintln!("OTLP test receiver: gRPC server error: {err}");
            }
        });

        // HTTP/protobuf
        let http_listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind OTLP HTTP listener");
        let http_addr = http_listener.local_addr().expect("HTTP local_addr");
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(http_export))
            .with_state(Arc::clone(&shared));
        let http_task = tokio::spawn(async move {
            if let Err(err) = axum::serve(http_listener, app).await {
                eprintln!("OTLP test receiver: HTTP server error: {err}");
            }
        });

        OtlpReceiver { shared, grpc_addr, http_addr, tasks: vec![grpc_task, http_task] }
    }

    /// The gRPC receiver's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// `http://127.0.0.1:PORT` of the gRPC receiver.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `http://127.0.0.1:PORT` of the HTTP receiver (base URL, without `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// All spans received so far, over both transports, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Polls every 20 ms until `pred` holds for some span and returns it; panics
    /// after `timeout`, listing the names of the spans received so far.
    pub async fn wait_for_span(
        &self,
        timeout: Duration,
        pred: impl Fn(&ReceivedSpan) -> bool,
    ) -> ReceivedSpan {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = {
                let spans = self.shared.spans.lock().unwrap_or_else(|e| e.into_inner());
                spans.iter().find(|s| pred(s)).cloned()
            };
            if let Some(span) = found {
                return span;
            }
            if tokio::time::Instant::now() >= deadline {
                let names: Vec<String> = self.spans().into_iter().map(|s| s.name).collect();
                panic!(
                    "timed out after {timeout:?} waiting for a matching span; \
                     received {} span(s) (grpc requests: {}, http requests: {}): {names:?}",
                    names.len(),
                    self.grpc_requests(),
                    self.http_requests(),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Number of gRPC `Export` calls received.
    pub fn grpc_requests(&self) -> usize {
        self.shared.grpc_requests.load(Ordering::SeqCst)
    }

    /// Number of HTTP `POST /v1/traces` calls received.
    pub fn http_requests(&self) -> usize {
        self.shared.http_requests.load(Ordering::SeqCst)
    }

    /// Number of spans dropped because the store was full (`MAX_STORED_SPANS`).
    pub fn dropped_spans(&self) -> usize {
        self.shared.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[allow(dead_code)]
struct GrpcTraceService {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl TraceService for GrpcTraceService {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.shared.grpc_requests.fetch_add(1, Ordering::SeqCst);
        if !self.shared.delay.is_zero() {
            tokio::time::sleep(self.shared.delay).await;
        }
        self.shared.record(request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[allow(dead_code)]
async fn http_export(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;

    shared.http_requests.fetch_add(1, Ordering::SeqCst);
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            shared.record(&request);
            let response = ExportTraceServiceResponse { partial_success: None };
            (
                axum::http::StatusCode::OK,
                [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                response.encode_to_vec(),
            )
                .into_response()
        }
        Err(err) => {
            (axum::http::StatusCode::BAD_REQUEST, format!("invalid ExportTraceServiceRequest: {err}"))
                .into_response()
        }
    }
}

#[allow(dead_code)]
fn convert_request(request: &ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in &request.resource_spans {
        let service_name = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref())
            .map(render_any_value)
            .unwrap_or_default();
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                let (status_code, status_message) =
                    span.status.as_ref().map(|s| (s.code, s.message.clone())).unwrap_or_default();
                out.push(ReceivedSpan {
                    trace_id: to_hex(&span.trace_id),
                    span_id: to_hex(&span.span_id),
                    parent_span_id: to_hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: span.kind,
                    status_code,
                    status_message,
                    attributes: render_attributes(&span.attributes),
                    service_name: service_name.clone(),
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    events: span
                        .events
                        .iter()
                        .map(|e| (e.name.clone(), render_attributes(&e.attributes)))
                        .collect(),
                });
            }
        }
    }
    out
}

#[allow(dead_code)]
fn render_attributes(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = kv.value.as_ref().map(render_any_value).unwrap_or_default();
            (kv.key.clone(), value)
        })
        .collect()
}

#[allow(dead_code)]
fn render_any_value(value: &AnyValue) -> String {
    use any_value::Value;
    match &value.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(bytes)) => to_hex(bytes),
        Some(Value::ArrayValue(array)) => {
            let items: Vec<String> = array.values.iter().map(render_any_value).collect();
            format!("[{}]", items.join(","))
        }
        Some(Value::KvlistValue(list)) => {
            let items: Vec<String> = list
                .values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().map(render_any_value).unwrap_or_default();
                    format!("{}={v}", kv.key)
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Some(Value::StringValueStrindex(i)) => format!("strindex:{i}"),
    }
}

#[allow(dead_code)]
fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
