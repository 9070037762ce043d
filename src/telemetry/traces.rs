//! The OTLP traces pipeline: the tracer provider the builder installs, and
//! the `tracing` layers that feed it.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::{Layer as _, filter::Targets};

use std::sync::Arc;

use super::{config, pipeline, sampler, span_batch};
use crate::trace::RouteSampler;
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

/// The targets of the exporters' own HTTP stack and of the SDK: what no
/// exporting layer takes (its records would be exported in turn, and
/// reported again). The first entries of [`OTEL_LAYER_EXCLUDED_TARGETS`].
pub(crate) const EXPORTER_TARGETS: [&str; 6] =
    ["h2", "hyper", "tonic", "tower::", "reqwest", "opentelemetry"];

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

/// A batch span processor exporting through `exporter`, the one
/// [`Observability`](crate::Observability) installs: each worker thread
/// queues finished spans in a shard of its own, and a thread named
/// `span-export` exports them in batches of `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`
/// (512) every `OTEL_BSP_SCHEDULE_DELAY` (5000 ms), as soon as a batch is
/// queued, on a flush and at shutdown, as the SDK's `BatchSpanProcessor`
/// does, without a channel every worker writes. Counted as
/// [`Observability`](crate::Observability) counts its own: the
/// `otlp_exporter_spans_{exported,failed,dropped,rejected}_total` counters
/// and the `otlp_exporter_queue_spans` gauge (registered with the `metrics`
/// recorder current when it is called), the first drop and every failed
/// episode logged once. For a tracer provider built by hand, with an
/// exporter of your own, that keeps the crate's accounting. `max_queue_size`
/// spans are kept at most (at least 1); past it spans are dropped and
/// counted, never waited for.
///
/// ```
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
/// use tower_observability::telemetry::counted_span_processor;
///
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(counted_span_processor(InMemorySpanExporter::default(), 2048))
///     .build();
/// # drop(provider);
/// ```
pub fn counted_span_processor<E>(
    exporter: E,
    max_queue_size: usize,
) -> impl opentelemetry_sdk::trace::SpanProcessor
where
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
{
    counted_batch(exporter, max_queue_size.max(1)).0
}

/// The counted batch processor of `exporter`, and its pipeline's counts.
fn counted_batch<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    exporter: E,
    queue: usize,
) -> (span_batch::ShardedBatchProcessor, Arc<pipeline::Pipeline>) {
    let pipeline = pipeline::Pipeline::new(&pipeline::SPANS, queue);
    let counting = pipeline::CountingExporter::new(exporter, pipeline.clone());
    (span_batch::ShardedBatchProcessor::new(counting, pipeline.clone()), pipeline)
}

/// The tracer provider exporting through `exporter` and the counted span
/// pipeline (a batch processor whose queue holds `queue` spans, at least
/// 1), with `resource`, and `sampler` (or the SDK's, from
/// `OTEL_TRACES_SAMPLER`) deciding locally unless `trust_remote_sampling`;
/// set as the global tracer provider. Call after the metrics recorder is
/// installed.
pub(crate) fn tracer_provider<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    resource: opentelemetry_sdk::Resource,
    exporter: E,
    queue: usize,
    sampler: Option<Sampler>,
    trust_remote_sampling: bool,
) -> (SdkTracerProvider, Arc<pipeline::Pipeline>) {
    let (processor, pipeline) = counted_batch(exporter, queue);
    let mut provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource);
    let sampler = sampler.filter(|_| config::env("OTEL_TRACES_SAMPLER").is_none());
    // The SDK's default sampler, as read from OTEL_TRACES_SAMPLER.
    let root = || opentelemetry_sdk::trace::Config::default().sampler;
    // Wrapped so that routes sampled `Always` are (trace::RouteSampling).
    provider = provider.with_sampler(match (sampler, trust_remote_sampling) {
        (Some(sampler), true) => RouteSampler::new(sampler),
        (Some(sampler), false) => RouteSampler::new(sampler::LocalDecision::new(sampler)),
        (None, false) => RouteSampler::new(sampler::LocalDecision::new(root())),
        (None, true) => RouteSampler::boxed(root()),
    });
    let provider = provider.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    (provider, pipeline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exporter_targets_are_excluded_from_spans_too() {
        assert_eq!(OTEL_LAYER_EXCLUDED_TARGETS[..EXPORTER_TARGETS.len()], EXPORTER_TARGETS);
    }
}
