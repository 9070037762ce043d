//! The pipelines [`Observability`](crate::Observability) installs: the
//! Prometheus recorder, the OTLP tracer provider and its span pipeline, and
//! the log subscriber's formats.
//!
//! Install them with [`Observability::builder`](crate::Observability::builder);
//! the pieces here serve a setup of one's own: [`prometheus_builder`],
//! [`otel_layer`], [`OTEL_LAYER_EXCLUDED_TARGETS`].

mod config;
mod exporter;
mod logs;
mod pipeline;
mod sampler;

pub use self::pipeline::{
    OTLP_EXPORTER_QUEUE_SPANS, OTLP_EXPORTER_SPANS_DROPPED, OTLP_EXPORTER_SPANS_EXPORTED,
    OTLP_EXPORTER_SPANS_FAILED,
};

use std::{sync::mpsc, thread, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer as _, filter::Targets, registry::LookupSpan};

pub use self::config::OtlpProtocol;
pub(crate) use self::{
    config::{env, resolve_endpoint, resolve_protocol, sdk_disabled},
    exporter::ExporterRuntime,
};
use crate::{
    cache::{CACHE_LOOKUP_DURATION, LOOKUP_DURATION_BUCKETS},
    metrics::{
        DURATION_BUCKETS, HTTP_SERVER_REQUEST_BODY_SIZE, HTTP_SERVER_RESPONSE_BODY_SIZE, SIZE_BUCKETS,
    },
    trace::{ServerSpanLayer, instrumentation_scope},
};

/// Targets the OTel layer of [`Observability::otel_layer`](crate::Observability::otel_layer) leaves out: the
/// exporter's own HTTP stack (its spans would be exported in turn), and the
/// access log (`tower_observability::access`), whose event per request
/// would become an OTel span event per request (measured at +2.5 µs and 9
/// allocations a request) and adds nothing the span does not carry, and the
/// `tracing` span that carries a request's correlation for log lines
/// (`tower_observability::request`; the OTel server span is made by
/// [`HttpTraceLayer`](crate::trace::HttpTraceLayer) itself, see the
/// [trace module](crate::trace)). Use it when you build the OTel layer
/// yourself, and add a [`ServerSpanLayer`]
/// after that layer, so that log events inside a request reach its server
/// span.
pub const OTEL_LAYER_EXCLUDED_TARGETS: [&str; 8] = [
    "h2",
    "hyper",
    "tonic",
    "tower::",
    "reqwest",
    "opentelemetry",
    "tower_observability::access",
    REQUEST_SPAN_TARGET,
];

/// The target of the request's `tracing` span (see the [trace module](crate::trace)).
const REQUEST_SPAN_TARGET: &str = "tower_observability::request";

/// The `tracing` layers that feed `provider`, as [`Observability`](crate::Observability) installs
/// them: a `tracing-opentelemetry` layer for the spans an application opens
/// (without source locations, thread ids or busy/idle times), followed by a
/// [`ServerSpanLayer`]. Both take spans and
/// events at `INFO` and above, except [`OTEL_LAYER_EXCLUDED_TARGETS`]: the
/// exporter's own HTTP stack and the access log (the server span already
/// says what it says); the request's `tracing` span reaches only the
/// `ServerSpanLayer`.
///
/// ```
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let provider = SdkTracerProvider::builder().build();
/// let subscriber = tracing_subscriber::registry().with(tower_observability::otel_layer(&provider));
/// # drop(subscriber);
/// ```
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let tracer = provider.tracer_with_scope(instrumentation_scope());
    let internals = Targets::new()
        .with_default(tracing::Level::INFO)
        .with_targets(OTEL_LAYER_EXCLUDED_TARGETS.map(|t| (t, tracing_subscriber::filter::LevelFilter::OFF)));
    // The same filter, but taking the request's span, which the OTel layer
    // leaves out.
    let bridged = Targets::new().with_default(tracing::Level::INFO).with_targets(
        OTEL_LAYER_EXCLUDED_TARGETS
            .into_iter()
            .filter(|t| *t != REQUEST_SPAN_TARGET)
            .map(|t| (t, tracing_subscriber::filter::LevelFilter::OFF)),
    );
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(internals);
    // After the OTel layer: on entering a span, the server span's context is
    // attached last, so it is the current one.
    otel.and_then(ServerSpanLayer::new().with_filter(bridged))
}

/// The tracer provider exporting to `endpoint` over `protocol`, through the
/// counted span pipeline, with `service.name` and `service.version`, and
/// `sampler` (or the SDK's, from `OTEL_TRACES_SAMPLER`) deciding locally
/// unless `trust_remote_sampling`; set as the global tracer provider.
pub(crate) fn tracer_provider(
    service_name: &str,
    service_version: Option<&str>,
    sampler: Option<Sampler>,
    trust_remote_sampling: bool,
    protocol: OtlpProtocol,
    endpoint: &str,
) -> Result<(SdkTracerProvider, Option<ExporterRuntime>), InitError> {
    let (exporter, runtime) = exporter::build(protocol, endpoint)?;
    let mut resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_owned());
    if let Some(version) = service_version {
        resource =
            resource.with_attribute(opentelemetry::KeyValue::new("service.version", version.to_owned()));
    }
    // The batch processor's queue size, as the SDK reads it.
    let capacity = config::env("OTEL_BSP_MAX_QUEUE_SIZE").and_then(|v| v.parse().ok()).unwrap_or(2048);
    let pipeline = pipeline::Pipeline::new(capacity);
    let counting = pipeline::CountingExporter::new(exporter, pipeline.clone());
    let batch = opentelemetry_sdk::trace::BatchSpanProcessor::builder(counting).build();
    let mut provider = SdkTracerProvider::builder()
        .with_span_processor(pipeline::GuardedProcessor::new(batch, pipeline))
        .with_resource(resource.build());
    let sampler = sampler.filter(|_| config::env("OTEL_TRACES_SAMPLER").is_none());
    match (sampler, trust_remote_sampling) {
        (Some(sampler), true) => provider = provider.with_sampler(sampler),
        (Some(sampler), false) => provider = provider.with_sampler(sampler::LocalDecision::new(sampler)),
        (None, false) => {
            // The SDK's default sampler, as read from OTEL_TRACES_SAMPLER.
            let root = opentelemetry_sdk::trace::Config::default().sampler;
            provider = provider.with_sampler(sampler::LocalDecision::new(root));
        }
        (None, true) => {}
    }
    let provider = provider.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok((provider, runtime))
}

/// How often the Prometheus recorder's upkeep runs (drains histogram samples).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// An error of [`ObservabilityBuilder::init`](crate::ObservabilityBuilder::init). Nothing is installed globally
/// when `init` fails, except as noted on a variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A global `metrics` recorder was installed before; pass
    /// [`ObservabilityBuilder::install_metrics_recorder`](crate::ObservabilityBuilder::install_metrics_recorder)`(false)`
    /// to keep it.
    #[error("a global metrics recorder is already installed")]
    RecorderAlreadyInstalled,
    /// A global `tracing` subscriber was installed before; pass
    /// [`ObservabilityBuilder::install_subscriber`](crate::ObservabilityBuilder::install_subscriber)`(false)`
    /// to keep it. The
    /// Prometheus recorder is not installed in that case.
    #[error("a global tracing subscriber is already installed")]
    SubscriberAlreadyInstalled,
    /// The collector endpoint is not an absolute `http://` URL.
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol this build cannot
    /// speak (`http/json`, or one whose feature is off).
    #[error("unsupported OTLP protocol {0:?} (expected \"grpc\" or \"http/protobuf\")")]
    UnsupportedProtocol(String),
    /// `RUST_LOG` or the builder's filter does not parse.
    #[error("invalid log filter: {0}")]
    InvalidLogFilter(String),
    /// The OTLP exporter could not be built. The Prometheus recorder is
    /// installed by then.
    #[error("failed to build the OTLP span exporter: {0}")]
    Exporter(String),
    /// The exporter's background thread could not start.
    #[error("failed to start the exporter thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Format of log lines written to standard output.
///
/// Both carry `request_id`, `trace_id` and `span_id` (of the request's
/// server span) on every line emitted inside a request, nested spans
/// included, so a line can be matched to its trace in Jaeger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (with `message`), `span` (name and fields of the current span),
    /// `request_id`, `trace_id`, `span_id`. The default: logs go to machines.
    #[default]
    Json,
    /// Human-readable lines, control characters escaped:
    /// `TIMESTAMP LEVEL target: message k=v request_id=.. trace_id=.. span_id=..`.
    Text,
}

/// The log filter: `RUST_LOG`, else `fallback`, else `info`.
pub(crate) fn log_filter(fallback: Option<&str>) -> Result<EnvFilter, InitError> {
    let directives =
        env("RUST_LOG").or_else(|| fallback.map(str::to_owned)).unwrap_or_else(|| "info".to_owned());
    EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| InitError::InvalidLogFilter(format!("{directives:?}: {e}")))
}

/// The layer writing log lines to standard output in `format`.
pub(crate) fn fmt_layer<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(logs::JsonFormat)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().event_format(logs::TextFormat).boxed(),
    }
}

/// A Prometheus recorder builder with the crate's histogram buckets, as
/// [`Observability`](crate::Observability) installs it: body sizes in bytes ([`SIZE_BUCKETS`]),
/// cache lookups in seconds, every other histogram in the OTel HTTP semconv
/// duration buckets ([`DURATION_BUCKETS`], seconds). Start from it when you
/// install the recorder yourself
/// ([`ObservabilityBuilder::install_metrics_recorder`](crate::ObservabilityBuilder::install_metrics_recorder)`(false)`): without buckets,
/// metrics-exporter-prometheus renders histograms as summaries, which
/// Prometheus cannot aggregate across instances.
///
/// ```
/// let builder = tower_observability::prometheus_builder();
/// // builder.install_recorder()?, or .install() for its own HTTP listener.
/// # drop(builder);
/// ```
pub fn prometheus_builder() -> PrometheusBuilder {
    let exact = |name: &str| Matcher::Full(name.to_owned());
    PrometheusBuilder::new()
        .set_buckets(&DURATION_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(exact(HTTP_SERVER_REQUEST_BODY_SIZE), &SIZE_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(exact(HTTP_SERVER_RESPONSE_BODY_SIZE), &SIZE_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(exact(CACHE_LOOKUP_DURATION), &LOOKUP_DURATION_BUCKETS))
        .expect("bucket lists are not empty")
}

/// Installs the global recorder of [`prometheus_builder`] and describes the
/// HTTP metrics to it.
pub(crate) fn install_recorder() -> Result<PrometheusHandle, InitError> {
    let handle = prometheus_builder().install_recorder().map_err(|_| InitError::RecorderAlreadyInstalled)?;
    crate::metrics::describe();
    Ok(handle)
}

/// Runs the Prometheus recorder's upkeep on a thread until dropped.
#[derive(Debug)]
pub(crate) struct Upkeep {
    _stop: mpsc::Sender<()>,
}

impl Upkeep {
    pub(crate) fn start(handle: PrometheusHandle) -> Result<Self, InitError> {
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new().name("prometheus-upkeep".to_owned()).spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(UPKEEP_INTERVAL) {
                handle.run_upkeep();
            }
        })?;
        Ok(Self { _stop: stop })
    }
}
