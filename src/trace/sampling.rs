//! Per-route sampling: routes whose requests are never traced (probes) or
//! always are (a checkout), whatever the head sampler would decide.

use opentelemetry::Context;

/// How the requests of some routes are sampled, whatever the head sampler
/// says; set with
/// [`HttpTraceLayer::sample_routes`](super::HttpTraceLayer::sample_routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteSampling {
    /// Never sampled: no OTel span is built (as for a parent that is not
    /// sampled); the request keeps its correlation, and calls it makes
    /// carry the trace on, unsampled.
    Never,
    /// Always sampled, even under a parent that is not: the layer asks the
    /// tracer for a sampled span. The SDK's samplers cannot be told this;
    /// [`RouteSampler`] can, and `Observability` installs it. Under a
    /// tracer provider without it, the provider's sampler decides.
    Always,
}

/// The mark the trace layer puts in the parent context of a span it wants
/// sampled, for [`RouteSampler`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ForceSampled;

/// `parent` with the mark that asks [`RouteSampler`] for a sampled span.
pub(crate) fn force_sampled(parent: &Context) -> Context {
    parent.with_value(ForceSampled)
}

#[cfg(feature = "telemetry")]
pub use self::sampler::RouteSampler;

#[cfg(feature = "telemetry")]
mod sampler {
    use opentelemetry::{
        Context, KeyValue,
        trace::{Link, SpanKind, TraceContextExt as _, TraceId},
    };
    use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

    use super::ForceSampled;

    /// A head sampler that samples the spans
    /// [`HttpTraceLayer::sample_routes`](crate::trace::HttpTraceLayer::sample_routes)
    /// marks [`RouteSampling::Always`](super::RouteSampling::Always), and
    /// asks the sampler it wraps for every other span. [`Observability`](crate::Observability)
    /// wraps its sampler in it; wrap yours when you build the tracer
    /// provider yourself.
    ///
    /// # Example
    ///
    /// ```
    /// use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
    /// use tower_observability::trace::RouteSampler;
    ///
    /// let provider = SdkTracerProvider::builder()
    ///     .with_sampler(RouteSampler::new(Sampler::TraceIdRatioBased(0.01)))
    ///     .build();
    /// ```
    #[derive(Debug)]
    pub struct RouteSampler {
        inner: Box<dyn ShouldSample>,
    }

    impl RouteSampler {
        /// Samples marked spans, and asks `inner` for the others.
        pub fn new(inner: impl ShouldSample + 'static) -> Self {
            Self { inner: Box::new(inner) }
        }

        /// As [`new`](Self::new), for a boxed sampler (such as the SDK's
        /// default, `opentelemetry_sdk::trace::Config::default().sampler`).
        pub fn boxed(inner: Box<dyn ShouldSample>) -> Self {
            Self { inner }
        }
    }

    impl Clone for RouteSampler {
        fn clone(&self) -> Self {
            Self { inner: self.inner.box_clone() }
        }
    }

    impl ShouldSample for RouteSampler {
        fn should_sample(
            &self,
            parent_context: Option<&Context>,
            trace_id: TraceId,
            name: &str,
            span_kind: &SpanKind,
            attributes: &[KeyValue],
            links: &[Link],
        ) -> SamplingResult {
            if let Some(parent) = parent_context.filter(|cx| cx.get::<ForceSampled>().is_some()) {
                let trace_state = if parent.has_active_span() {
                    parent.span().span_context().trace_state().clone()
                } else {
                    Default::default()
                };
                return SamplingResult {
                    decision: SamplingDecision::RecordAndSample,
                    attributes: Vec::new(),
                    trace_state,
                };
            }
            self.inner.should_sample(parent_context, trace_id, name, span_kind, attributes, links)
        }
    }

    #[cfg(test)]
    mod tests {
        use opentelemetry_sdk::trace::Sampler;

        use super::*;
        use crate::trace::sampling::force_sampled;

        #[test]
        fn marked_spans_are_sampled_others_asked() {
            let sampler = RouteSampler::new(Sampler::AlwaysOff);
            let decide = |cx: &Context| {
                sampler
                    .should_sample(Some(cx), TraceId::from(1), "GET /", &SpanKind::Server, &[], &[])
                    .decision
            };
            assert_eq!(decide(&Context::new()), SamplingDecision::Drop);
            assert_eq!(decide(&force_sampled(&Context::new())), SamplingDecision::RecordAndSample);
        }
    }
}
