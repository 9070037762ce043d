//! A test kit: assert on your own service's telemetry in `cargo test`,
//! without a collector, a global recorder or a global subscriber (feature
//! `testing`).
//!
//! [`TestKit`] is wired like [`Observability`](crate::Observability): the
//! same [`ObservabilityLayer`] (request id, server span through the SDK's
//! tracer, metrics, cache outcome, panic catcher; monitoring routes left
//! out), the same `tracing` layers ([`otel_layer`](crate::otel_layer) and
//! the JSON log lines with their request and trace ids), the same
//! Prometheus buckets. Spans go to an in-memory exporter, metrics to a
//! recorder of the kit's own ([`MetricsRecorder`]), log lines to memory.
//! Each kit is independent: tests run in parallel, each with its own.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_observability::testing::TestKit;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! async fn get_user() -> &'static str {
//!     tracing::info!(user = 7, "loaded the user");
//!     "user 7"
//! }
//!
//! let kit = TestKit::new();
//! let app = Router::new().route("/users/{id}", get(get_user)).layer(kit.layer());
//! let captured = kit.get(app, "/users/7").await;
//!
//! assert_eq!(captured.status(), 200);
//! assert_eq!(captured.body(), "user 7");
//! let span = captured.server_span().expect("one server span");
//! assert_eq!(span.name, "GET /users/{id}");
//! let labels = [("http_route", "/users/{id}"), ("http_response_status_code", "200")];
//! assert_eq!(captured.metrics().histogram_count("http_server_request_duration_seconds", &labels), 1);
//! let line = captured.logs().iter().find(|l| l.message() == Some("loaded the user")).unwrap();
//! assert_eq!(line.request_id(), Some(captured.request_id()));
//! assert_eq!(line.trace_id(), Some(span.span_context.trace_id().to_string().as_str()));
//! # }
//! ```

use std::{
    fmt,
    io::Write,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{Router, body::Body};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use metrics_exporter_prometheus::PrometheusHandle;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use serde_json::Value;
use tower::ServiceExt as _;
use tracing::instrument::WithSubscriber as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::{
    layer::ObservabilityLayer,
    recorder::MetricsRecorder,
    telemetry,
    trace::{HttpTraceLayer, RouteSampler},
};

/// The in-memory pipelines of a test: spans, metrics and log lines; see
/// the [module docs](self).
pub struct TestKit {
    spans: InMemorySpanExporter,
    provider: SdkTracerProvider,
    metrics: PrometheusHandle,
    recorder: MetricsRecorder,
    logs: LogBuffer,
    dispatch: tracing::Dispatch,
}

impl TestKit {
    /// A kit sampling every trace (`parentbased_always_on`, as the OTel
    /// default), logging JSON lines at `DEBUG` and above.
    pub fn new() -> Self {
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .with_sampler(RouteSampler::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOn))))
            .build();
        let recorder = telemetry::prometheus_builder().build_recorder();
        let metrics = recorder.handle();
        let logs = LogBuffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(telemetry::otel_layer(&provider))
            .with(telemetry::json_layer_to(logs.clone()))
            .with(tracing_subscriber::filter::LevelFilter::DEBUG);
        Self {
            spans,
            provider,
            metrics,
            recorder: MetricsRecorder::new(recorder),
            logs,
            dispatch: tracing::Dispatch::new(subscriber),
        }
    }

    /// The layer to put on the service under test: `Observability::layer`'s,
    /// recording into this kit.
    pub fn layer(&self) -> ObservabilityLayer {
        let trace = HttpTraceLayer::new()
            .tracer(self.provider.tracer_with_scope(crate::trace::instrumentation_scope()));
        let layer = ObservabilityLayer::new().trace(trace).recorder(self.recorder.clone());
        #[cfg(feature = "monitoring")]
        let layer = layer.exclude_routes(crate::monitoring::ROUTES);
        layer
    }

    /// Sends `req` through `router` (with the kit's subscriber as the
    /// request's), reads the whole response body, and returns it with what
    /// the kit has captured so far.
    ///
    /// # Panics
    ///
    /// When the response body fails.
    pub async fn send(&self, router: Router, req: Request<Body>) -> Captured {
        let response = async move {
            let res = router.oneshot(req).await.unwrap_or_else(|never| match never {});
            let (parts, body) = res.into_parts();
            let body = body.collect().await.expect("the response body").to_bytes();
            Response::from_parts(parts, body)
        }
        .with_subscriber(self.dispatch.clone())
        .await;
        Captured { response, spans: self.spans(), metrics: self.metrics(), logs: self.logs() }
    }

    /// [`send`](Self::send) with a `GET` of `uri`.
    ///
    /// # Panics
    ///
    /// When `uri` is not a valid URI.
    pub async fn get(&self, router: Router, uri: &str) -> Captured {
        self.send(router, Request::get(uri).body(Body::empty()).expect("a valid URI")).await
    }

    /// The spans exported so far, ended ones only, in the order they ended.
    pub fn spans(&self) -> Vec<SpanData> {
        let _ = self.provider.force_flush();
        self.spans.get_finished_spans().unwrap_or_default()
    }

    /// The metrics recorded so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        crate::metrics::flush();
        MetricsSnapshot::parse(self.metrics.render())
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.logs.lines()
    }

    /// The kit's subscriber, to run other code (a background task) with
    /// it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tower_observability::testing::TestKit;
    /// use tracing::instrument::WithSubscriber as _;
    ///
    /// let kit = TestKit::new();
    /// async { tracing::warn!("from a task") }.with_subscriber(kit.dispatch().clone()).await;
    /// assert_eq!(kit.logs()[0].message(), Some("from a task"));
    /// assert_eq!(kit.logs()[0].level(), Some("WARN"));
    /// # }
    /// ```
    pub fn dispatch(&self) -> &tracing::Dispatch {
        &self.dispatch
    }

    /// Forgets the spans and log lines captured so far (metrics are
    /// cumulative and stay).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum::{Router, routing::get};
    /// use tower_observability::testing::TestKit;
    ///
    /// let kit = TestKit::new();
    /// let app = Router::new().route("/", get(|| async { "ok" })).layer(kit.layer());
    /// kit.get(app.clone(), "/").await;
    /// kit.clear();
    /// assert!(kit.spans().is_empty() && kit.logs().is_empty());
    /// let again = kit.get(app, "/").await;
    /// assert_eq!(again.spans().len(), 1);
    /// assert_eq!(again.metrics().histogram_count("http_server_request_duration_seconds", &[]), 2);
    /// # }
    /// ```
    pub fn clear(&self) {
        self.spans.reset();
        self.logs.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

impl Default for TestKit {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TestKit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestKit").finish_non_exhaustive()
    }
}

/// A response, with the spans, metrics and log lines captured up to its
/// end.
#[derive(Debug)]
pub struct Captured {
    /// The response, its body read.
    pub response: Response<Bytes>,
    spans: Vec<SpanData>,
    metrics: MetricsSnapshot,
    logs: Vec<LogLine>,
}

impl Captured {
    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The response body as text (lossy for bytes that are not UTF-8).
    pub fn body(&self) -> String {
        String::from_utf8_lossy(self.response.body()).into_owned()
    }

    /// The response's `x-request-id`, `""` without one.
    pub fn request_id(&self) -> &str {
        self.response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// Every span the kit holds.
    pub fn spans(&self) -> &[SpanData] {
        &self.spans
    }

    /// The last server span the kit holds: this request's, when it was
    /// traced.
    pub fn server_span(&self) -> Option<&SpanData> {
        self.spans.iter().rev().find(|s| s.span_kind == SpanKind::Server)
    }

    /// The metrics after the request.
    pub fn metrics(&self) -> &MetricsSnapshot {
        &self.metrics
    }

    /// Every log line the kit holds.
    pub fn logs(&self) -> &[LogLine] {
        &self.logs
    }
}

/// The Prometheus text of a kit's recorder and its samples, typed.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    text: String,
    samples: Vec<Sample>,
}

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (`http_server_request_duration_seconds_count`).
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl MetricsSnapshot {
    /// Parses Prometheus text exposition (0.0.4).
    ///
    /// ```
    /// use tower_observability::testing::MetricsSnapshot;
    ///
    /// let text = "\
    /// # TYPE hits_total counter
    /// hits_total{cache=\"users\"} 3
    /// # TYPE latency_seconds histogram
    /// latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 2
    /// latency_seconds_sum{route=\"/a\"} 0.5
    /// latency_seconds_count{route=\"/a\"} 2
    /// ";
    /// let m = MetricsSnapshot::parse(text.to_owned());
    /// assert_eq!(m.counter("hits", &[("cache", "users")]), 3.0);
    /// assert_eq!(m.histogram_count("latency_seconds", &[("route", "/a")]), 2);
    /// assert_eq!(m.histogram_sum("latency_seconds", &[]), 0.5);
    /// assert_eq!(m.sum("latency_seconds_bucket", &[("le", "+Inf")]), 2.0);
    /// assert_eq!(m.samples().len(), 4);
    /// ```
    pub fn parse(text: String) -> Self {
        let samples =
            text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter_map(sample).collect();
        Self { text, samples }
    }

    /// The exposition text, as `/metrics` serves it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every sample.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The sum of the samples named `name` whose labels include every pair
    /// of `labels` (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name && labels.iter().all(|(k, v)| s.labels.iter().any(|(l, w)| l == k && w == v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The value of counter `name` (without `_total`, or with it) over the
    /// series matching `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let total = if name.ends_with("_total") { name.to_owned() } else { format!("{name}_total") };
        self.sum(&total, labels)
    }

    /// The number of observations of histogram `name` over the series
    /// matching `labels`.
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.sum(&format!("{name}_count"), labels) as u64
    }

    /// The sum of the observations of histogram `name` over the series
    /// matching `labels`, in its unit.
    pub fn histogram_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.sum(&format!("{name}_sum"), labels)
    }
}

fn sample(line: &str) -> Option<Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, labels(rest.strip_suffix('}')?)),
        None => (head, Vec::new()),
    };
    Some(Sample { name: name.to_owned(), labels, value })
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes.
fn labels(mut rest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').to_owned(), value));
        rest = &after[end..];
    }
    out
}

/// One JSON log line, as `Observability`'s JSON format writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine(Value);

impl LogLine {
    /// The whole line.
    pub fn json(&self) -> &Value {
        &self.0
    }

    /// `level`: `INFO`, `ERROR`...
    pub fn level(&self) -> Option<&str> {
        self.0["level"].as_str()
    }

    /// `target`: the module that logged.
    pub fn target(&self) -> Option<&str> {
        self.0["target"].as_str()
    }

    /// The message.
    pub fn message(&self) -> Option<&str> {
        self.0["fields"]["message"].as_str()
    }

    /// A field of the event.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.0["fields"].get(name)
    }

    /// The request id of the request the line belongs to.
    pub fn request_id(&self) -> Option<&str> {
        self.0["request_id"].as_str()
    }

    /// The trace id of the request's server span.
    pub fn trace_id(&self) -> Option<&str> {
        self.0["trace_id"].as_str()
    }

    /// The span id of the request's server span.
    pub fn span_id(&self) -> Option<&str> {
        self.0["span_id"].as_str()
    }
}

/// Log bytes in memory, written by the JSON layer.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn lines(&self) -> Vec<LogLine> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok().map(LogLine))
            .collect()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_unescaped() {
        let s = sample(r#"m{a="x\"y",b="p\\q",c="l\nm"} 2"#).unwrap();
        assert_eq!(
            s.labels,
            [("a".into(), "x\"y".into()), ("b".into(), "p\\q".into()), ("c".into(), "l\nm".into())]
        );
        assert_eq!(sample("plain 1.5").unwrap().value, 1.5);
        assert_eq!(sample(r#"b{le="+Inf"} +Inf"#).unwrap().value, f64::INFINITY);
    }
}
