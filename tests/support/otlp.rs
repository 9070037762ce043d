// In-process OTLP receiver for integration tests: traces, metrics and logs.
//
// Include with `#[path = "support/otlp.rs"] mod otlp;` (or from a `support`
// module). It starts a gRPC (tonic `TraceService`, `MetricsService`,
// `LogsService`) and an HTTP/protobuf (axum, `POST /v1/traces`,
// `/v1/metrics`, `/v1/logs`) receiver on ephemeral 127.0.0.1 ports and
// records every span, metric data point and log record it receives. Told
// to, it answers slowly, or rejects every item (an OTLP partial success).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    logs_service_server::{LogsService, LogsServiceServer},
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
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

/// One metric data point as received, flattened.
#[allow(dead_code, unreachable_pub)]
#[derive(Clone, Debug)]
pub struct ReceivedPoint {
    /// The metric's name, e.g. `http.server.request.duration`.
    pub name: String,
    pub unit: String,
    /// `gauge`, `sum`, `histogram`, `exponential_histogram` or `summary`.
    pub kind: &'static str,
    /// For sums: monotonic (a counter) or not (an up-down counter).
    pub monotonic: bool,
    /// 1 delta, 2 cumulative, 0 for gauges.
    pub temporality: i32,
    pub attributes: HashMap<String, String>,
    /// The type of `http.response.status_code`, if present: `int` or `string`.
    pub status_code_type: &'static str,
    pub service_name: String,
    /// Gauge and sum value.
    pub value: f64,
    /// Histogram count, sum and bucket bounds.
    pub count: u64,
    pub sum: f64,
    pub bounds: Vec<f64>,
}

/// One log record as received, flattened.
#[allow(dead_code, unreachable_pub)]
#[derive(Clone, Debug)]
pub struct ReceivedLog {
    /// Lowercase hex, "" when absent.
    pub trace_id: String,
    pub span_id: String,
    pub severity_number: i32,
    pub severity_text: String,
    /// The body, rendered as a string.
    pub body: String,
    pub attributes: HashMap<String, String>,
    pub service_name: String,
    pub event_name: String,
}

/// How the receiver answers.
#[allow(dead_code, unreachable_pub)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Behavior {
    /// How long each gRPC export waits before it is answered.
    pub delay: Duration,
    /// Answer every export with a partial success rejecting all its items.
    pub reject_all: bool,
}

/// The message of the receiver's partial successes.
#[allow(dead_code, unreachable_pub)]
pub const REJECT_MESSAGE: &str = "test receiver rejects everything";

#[allow(dead_code)]
#[derive(Debug, Default)]
struct Shared {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    points: Mutex<Vec<ReceivedPoint>>,
    logs: Mutex<Vec<ReceivedLog>>,
    behavior: Behavior,
    dropped: AtomicUsize,
    grpc_requests: AtomicUsize,
    http_requests: AtomicUsize,
    metric_requests: AtomicUsize,
    log_requests: AtomicUsize,
}

#[allow(dead_code)]
impl Shared {
    async fn wait(&self) {
        if !self.behavior.delay.is_zero() {
            tokio::time::sleep(self.behavior.delay).await;
        }
    }

    /// Records the spans (unless rejecting them all) and the answer.
    fn record(&self, request: &ExportTraceServiceRequest) -> ExportTraceServiceResponse {
        let converted = convert_request(request);
        if self.behavior.reject_all {
            let rejected_spans = converted.len() as i64;
            let error_message = REJECT_MESSAGE.to_owned();
            return ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess { rejected_spans, error_message }),
            };
        }
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        for span in converted {
            if spans.len() < MAX_STORED_SPANS {
                spans.push(span);
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        ExportTraceServiceResponse { partial_success: None }
    }

    fn record_metrics(&self, request: &ExportMetricsServiceRequest) -> ExportMetricsServiceResponse {
        self.metric_requests.fetch_add(1, Ordering::SeqCst);
        let converted = convert_metrics(request);
        if self.behavior.reject_all {
            let rejected_data_points = converted.len() as i64;
            let error_message = REJECT_MESSAGE.to_owned();
            return ExportMetricsServiceResponse {
                partial_success: Some(ExportMetricsPartialSuccess { rejected_data_points, error_message }),
            };
        }
        let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        if points.len() < MAX_STORED_SPANS {
            points.extend(converted);
        }
        ExportMetricsServiceResponse { partial_success: None }
    }

    fn record_logs(&self, request: &ExportLogsServiceRequest) -> ExportLogsServiceResponse {
        self.log_requests.fetch_add(1, Ordering::SeqCst);
        let converted = convert_logs(request);
        if self.behavior.reject_all {
            let rejected_log_records = converted.len() as i64;
            let error_message = REJECT_MESSAGE.to_owned();
            return ExportLogsServiceResponse {
                partial_success: Some(ExportLogsPartialSuccess { rejected_log_records, error_message }),
            };
        }
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        if logs.len() < MAX_STORED_SPANS {
            logs.extend(converted);
        }
        ExportLogsServiceResponse { partial_success: None }
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
        Self::start_behaving(grpc_addr, Behavior { delay, ..Behavior::default() }).await
    }

    /// Starts a receiver whose gRPC server listens on `grpc_addr` and that
    /// answers as `behavior` says.
    pub async fn start_behaving(grpc_addr: &str, behavior: Behavior) -> OtlpReceiver {
        let shared = Arc::new(Shared { behavior, ..Shared::default() });

        // gRPC
        let grpc_listener = tokio::net::TcpListener::bind(grpc_addr).await.expect("bind OTLP gRPC listener");
        let grpc_addr = grpc_listener.local_addr().expect("gRPC local_addr");
        let grpc_service = TraceServiceServer::new(GrpcTraceService { shared: Arc::clone(&shared) });
        let metrics_service = MetricsServiceServer::new(GrpcTraceService { shared: Arc::clone(&shared) });
        let logs_service = LogsServiceServer::new(GrpcTraceService { shared: Arc::clone(&shared) });
        let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener);
        let grpc_task = tokio::spawn(async move {
            if let Err(err) = tonic::transport::Server::builder()
                .add_service(grpc_service)
                .add_service(metrics_service)
                .add_service(logs_service)
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
            .route("/v1/metrics", axum::routing::post(http_export_metrics))
            .route("/v1/logs", axum::routing::post(http_export_logs))
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

    /// Every metric data point received so far, in arrival order.
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.shared.points.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every log record received so far, in arrival order.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.shared.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Metrics exports received (both transports).
    pub fn metric_requests(&self) -> usize {
        self.shared.metric_requests.load(Ordering::SeqCst)
    }

    /// Logs exports received (both transports).
    pub fn log_requests(&self) -> usize {
        self.shared.log_requests.load(Ordering::SeqCst)
    }

    /// Polls every 20 ms until `pred` holds for the points received so far;
    /// panics after `timeout`, listing the metric names received.
    pub async fn wait_for_points(
        &self,
        timeout: Duration,
        pred: impl Fn(&[ReceivedPoint]) -> bool,
    ) -> Vec<ReceivedPoint> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let points = self.points();
            if pred(&points) {
                return points;
            }
            if tokio::time::Instant::now() >= deadline {
                let mut names: Vec<String> = points.into_iter().map(|p| p.name).collect();
                names.sort();
                names.dedup();
                panic!(
                    "timed out after {timeout:?} waiting for metric points; {} exports, names: {names:?}",
                    self.metric_requests()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls every 20 ms until `pred` holds for the log records received so
    /// far; panics after `timeout`.
    pub async fn wait_for_logs(
        &self,
        timeout: Duration,
        pred: impl Fn(&[ReceivedLog]) -> bool,
    ) -> Vec<ReceivedLog> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let logs = self.logs();
            if pred(&logs) {
                return logs;
            }
            if tokio::time::Instant::now() >= deadline {
                let bodies: Vec<String> = logs.into_iter().map(|l| l.body).collect();
                panic!(
                    "timed out after {timeout:?} waiting for log records; {} exports, bodies: {bodies:?}",
                    self.log_requests()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        self.shared.wait().await;
        Ok(tonic::Response::new(self.shared.record(request.get_ref())))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcTraceService {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.shared.wait().await;
        Ok(tonic::Response::new(self.shared.record_metrics(request.get_ref())))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcTraceService {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.shared.wait().await;
        Ok(tonic::Response::new(self.shared.record_logs(request.get_ref())))
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
            let response = shared.record(&request);
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

/// Answers an HTTP/protobuf export: decodes `body` as `T`, hands it to
/// `record`, encodes the answer.
#[allow(dead_code)]
fn http_answer<T: prost::Message + Default, R: prost::Message>(
    body: axum::body::Bytes,
    record: impl FnOnce(&T) -> R,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match T::decode(body) {
        Ok(request) => (
            axum::http::StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
            record(&request).encode_to_vec(),
        )
            .into_response(),
        Err(err) => (axum::http::StatusCode::BAD_REQUEST, format!("invalid request: {err}")).into_response(),
    }
}

#[allow(dead_code)]
async fn http_export_metrics(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    shared.http_requests.fetch_add(1, Ordering::SeqCst);
    http_answer(body, |r: &ExportMetricsServiceRequest| shared.record_metrics(r))
}

#[allow(dead_code)]
async fn http_export_logs(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    shared.http_requests.fetch_add(1, Ordering::SeqCst);
    http_answer(body, |r: &ExportLogsServiceRequest| shared.record_logs(r))
}

#[allow(dead_code)]
fn service_name_of(resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| kv.value.as_ref())
        .map(render_any_value)
        .unwrap_or_default()
}

#[allow(dead_code)]
fn status_code_type(attributes: &[KeyValue]) -> &'static str {
    let value =
        attributes.iter().find(|kv| kv.key == "http.response.status_code").and_then(|kv| kv.value.as_ref());
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::IntValue(_)) => "int",
        Some(any_value::Value::StringValue(_)) => "string",
        Some(_) => "other",
        None => "",
    }
}

#[allow(dead_code)]
fn convert_metrics(request: &ExportMetricsServiceRequest) -> Vec<ReceivedPoint> {
    let mut out = Vec::new();
    for resource_metrics in &request.resource_metrics {
        let service_name = service_name_of(resource_metrics.resource.as_ref());
        for scope in &resource_metrics.scope_metrics {
            for m in &scope.metrics {
                let base = |kind: &'static str, attributes: &[KeyValue]| ReceivedPoint {
                    name: m.name.clone(),
                    unit: m.unit.clone(),
                    kind,
                    monotonic: false,
                    temporality: 0,
                    attributes: render_attributes(attributes),
                    status_code_type: status_code_type(attributes),
                    service_name: service_name.clone(),
                    value: 0.0,
                    count: 0,
                    sum: 0.0,
                    bounds: Vec::new(),
                };
                let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p.value {
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    None => f64::NAN,
                };
                match &m.data {
                    Some(metric::Data::Gauge(g)) => {
                        out.extend(
                            g.data_points
                                .iter()
                                .map(|p| ReceivedPoint { value: number(p), ..base("gauge", &p.attributes) }),
                        );
                    }
                    Some(metric::Data::Sum(sum)) => {
                        out.extend(sum.data_points.iter().map(|p| ReceivedPoint {
                            value: number(p),
                            monotonic: sum.is_monotonic,
                            temporality: sum.aggregation_temporality,
                            ..base("sum", &p.attributes)
                        }))
                    }
                    Some(metric::Data::Histogram(h)) => {
                        out.extend(h.data_points.iter().map(|p| ReceivedPoint {
                            count: p.count,
                            sum: p.sum.unwrap_or_default(),
                            bounds: p.explicit_bounds.clone(),
                            temporality: h.aggregation_temporality,
                            ..base("histogram", &p.attributes)
                        }))
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        out.extend(
                            h.data_points.iter().map(|p| base("exponential_histogram", &p.attributes)),
                        );
                    }
                    Some(metric::Data::Summary(s)) => {
                        out.extend(s.data_points.iter().map(|p| base("summary", &p.attributes)));
                    }
                    None => {}
                }
            }
        }
    }
    out
}

#[allow(dead_code)]
fn convert_logs(request: &ExportLogsServiceRequest) -> Vec<ReceivedLog> {
    let mut out = Vec::new();
    for resource_logs in &request.resource_logs {
        let service_name = service_name_of(resource_logs.resource.as_ref());
        for scope in &resource_logs.scope_logs {
            for record in &scope.log_records {
                out.push(ReceivedLog {
                    trace_id: to_hex(&record.trace_id),
                    span_id: to_hex(&record.span_id),
                    severity_number: record.severity_number,
                    severity_text: record.severity_text.clone(),
                    body: record.body.as_ref().map(render_any_value).unwrap_or_default(),
                    attributes: render_attributes(&record.attributes),
                    service_name: service_name.clone(),
                    event_name: record.event_name.clone(),
                });
            }
        }
    }
    out
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

/// A collector that accepts connections and never answers: its sockets
/// are held open until it is dropped.
#[allow(dead_code, unreachable_pub)]
pub struct HungCollector {
    pub endpoint: String,
    held: tokio::task::JoinHandle<()>,
}

#[allow(dead_code, unreachable_pub)]
impl HungCollector {
    pub async fn start() -> HungCollector {
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", hung.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = hung.accept().await {
                open.push(socket);
            }
        });
        HungCollector { endpoint, held }
    }
}

impl Drop for HungCollector {
    fn drop(&mut self) {
        self.held.abort();
    }
}
