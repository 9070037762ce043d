//! A sampler that does not let remote callers decide.

use opentelemetry::{
    Context, KeyValue,
    trace::{Link, SpanKind, TraceContextExt, TraceId},
};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

/// Decides locally for traces that come from outside.
///
/// - No parent, or a *remote* parent (a `traceparent` sent by a client): the
///   root sampler decides, as for a new trace, whatever the caller's sampled
///   flag says. The trace id and `tracestate` are kept, so the trace still
///   joins up when both sides sample it.
/// - A local parent (a span of this process): follow its decision, as a
///   parent-based sampler does, so traces are never cut in half.
#[derive(Debug)]
pub(crate) struct LocalDecision {
    root: Box<dyn ShouldSample>,
}

impl LocalDecision {
    pub(crate) fn new(root: impl Into<Box<dyn ShouldSample>>) -> Self {
        Self { root: root.into() }
    }
}

impl Clone for LocalDecision {
    fn clone(&self) -> Self {
        Self { root: self.root.box_clone() }
    }
}

impl ShouldSample for LocalDecision {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let parent =
            parent_context.filter(|cx| cx.has_active_span()).map(|cx| cx.span().span_context().clone());
        match parent {
            Some(parent) if !parent.is_remote() => SamplingResult {
                decision: if parent.is_sampled() {
                    SamplingDecision::RecordAndSample
                } else {
                    SamplingDecision::Drop
                },
                attributes: Vec::new(),
                trace_state: parent.trace_state().clone(),
            },
            Some(parent) => {
                let mut result = self.root.should_sample(None, trace_id, name, span_kind, attributes, links);
                result.trace_state = parent.trace_state().clone();
                result
            }
            None => self.root.should_sample(None, trace_id, name, span_kind, attributes, links),
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};
    use opentelemetry_sdk::trace::Sampler;

    use super::*;

    fn parent(remote: bool, sampled: bool) -> Context {
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let sc = SpanContext::new(TraceId::from(7), SpanId::from(9), flags, remote, TraceState::default());
        Context::new().with_remote_span_context(sc)
    }

    fn decide(sampler: &LocalDecision, cx: Option<&Context>) -> SamplingDecision {
        sampler.should_sample(cx, TraceId::from(7), "GET /", &SpanKind::Server, &[], &[]).decision
    }

    #[test]
    fn remote_sampled_flags_do_not_force_sampling() {
        let never = LocalDecision::new(Sampler::AlwaysOff);
        assert_eq!(decide(&never, Some(&parent(true, true))), SamplingDecision::Drop);
        let always = LocalDecision::new(Sampler::AlwaysOn);
        assert_eq!(decide(&always, Some(&parent(true, false))), SamplingDecision::RecordAndSample);
        assert_eq!(decide(&never, None), SamplingDecision::Drop);
    }
}
