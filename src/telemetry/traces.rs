//! The OTLP traces pipeline: the tracer provider the builder installs, and
//! the `tracing` layers that feed it.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::{Layer as _, filter::Targets};

use super::{InitError, OtlpProtocol, config, exporter, exporter::ExporterRuntime, pipeline, sampler};
use crate::trace::{ServerSpanLayer, instrumentation_scope};

/// Targets the OTel layer of [`Observability::otel_layer`] leaves out: the
/// exporter's own HTTP stack (its spans would be exported in turn), and the
/// access log (`tower_observability::access`), whose event per request
/// would become an OTel span event per request (measured at +2.5 µs and 9
/// allocations a request) and adds nothing the span does not carry, and the
/// `tracing` span that carries a request's correlation for log lines
/// (`tower_observability::request`; the OTel server span is made by
/// [`HttpTraceLayer`](crate::trace::HttpTraceLayer) itself, see the
/// [trace module](crate::trace)). Use it when you build the OTel layer
/// yourself, and add a [`ServerSpanLayer`] after that layer, so that log
/// events inside a request reach its server span.
///
/// [`Observability::otel_layer`]: crate::Observability::otel_layer
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
) -> Result<(SdkTracerProvider, Option<ExporterRuntime>, std::sync::Arc<pipeline::Pipeline>), InitError> {
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
        .with_span_processor(pipeline::GuardedProcessor::new(batch, pipeline.clone()))
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
    Ok((provider, runtime, pipeline))
}
