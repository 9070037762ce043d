//! The ids that tie a request's logs, spans and responses together.

use std::fmt;

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Registry, registry::LookupSpan};

use crate::request_id::RequestId;

/// The request id, trace id and server span id of a request.
///
/// [`HttpTraceLayer`](super::HttpTraceLayer) attaches it to the request's
/// span (in the `tracing-subscriber` registry's span extensions); the log
/// formatters of [`Observability`](crate::Observability) write it on every
/// line emitted inside the request, and
/// [`PropagateContextLayer`](super::PropagateContextLayer) reads the request
/// id from it. Read it yourself with [`Correlation::current`].
#[derive(Clone, PartialEq, Eq)]
pub struct Correlation {
    /// The request's validated id; `None` without a `RequestIdLayer`.
    pub request_id: Option<RequestId>,
    /// The W3C trace id; invalid (all zero) without an OTel layer.
    pub trace_id: TraceId,
    /// The id of the request's server span.
    pub span_id: SpanId,
}

impl Correlation {
    /// The correlation of the request whose span (or a span inside it) is
    /// current; `None` outside a request, or when the global subscriber is
    /// not built on `tracing_subscriber::Registry`.
    ///
    /// ```
    /// use tower_observability::trace::Correlation;
    ///
    /// async fn handler() -> String {
    ///     match Correlation::current().and_then(|c| c.request_id) {
    ///         Some(id) => format!("your request is {id}"),
    ///         None => "no request id".to_owned(),
    ///     }
    /// }
    /// ```
    pub fn current() -> Option<Self> {
        Span::current()
            .with_subscriber(|(id, dispatch)| {
                let registry = dispatch.downcast_ref::<Registry>()?;
                let span = registry.span(id)?;
                span.scope().find_map(|s| s.extensions().get::<Self>().cloned())
            })
            .flatten()
    }

    /// Whether the trace id is valid (an OTel layer made the span).
    pub fn has_trace(&self) -> bool {
        self.trace_id != TraceId::INVALID
    }
}

impl fmt::Debug for Correlation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Correlation")
            .field("request_id", &self.request_id.as_ref().map(RequestId::as_str))
            .field("trace_id", &format_args!("{}", self.trace_id))
            .field("span_id", &format_args!("{}", self.span_id))
            .finish()
    }
}

/// Stores the correlation of the request served under `span` in its
/// registry extensions. Starts the OTel span (its parent must be set).
pub(crate) fn attach(span: &Span, request_id: Option<&RequestId>) {
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    attach_ids(span, request_id, span_context.trace_id(), span_context.span_id(), None);
}

/// The OTel context of a request served without an OTel span (its parent
/// was not sampled), kept beside its [`Correlation`] for
/// [`PropagateContextLayer`](super::PropagateContextLayer).
#[derive(Clone)]
pub(crate) struct UnsampledContext(pub(crate) opentelemetry::Context);

/// Stores a correlation with the given ids in `span`'s registry extensions,
/// and the OTel context of a request that has no OTel span.
pub(crate) fn attach_ids(
    span: &Span,
    request_id: Option<&RequestId>,
    trace_id: TraceId,
    span_id: SpanId,
    unsampled: Option<opentelemetry::Context>,
) {
    let correlation = Correlation { request_id: request_id.cloned(), trace_id, span_id };
    span.with_subscriber(|(id, dispatch)| {
        if let Some(span) = dispatch.downcast_ref::<Registry>().and_then(|r| r.span(id)) {
            let mut extensions = span.extensions_mut();
            extensions.insert(correlation);
            if let Some(cx) = unsampled {
                extensions.insert(UnsampledContext(cx));
            }
        }
    });
}

/// The OTel context of the request whose span is current, for propagation:
/// the span's own context when it is an OTel span, the non-recording context
/// of a request whose parent was not sampled, or else the current OTel
/// context.
pub(crate) fn current_otel_context() -> opentelemetry::Context {
    let span = Span::current();
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        return cx;
    }
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        span.scope().find_map(|s| s.extensions().get::<UnsampledContext>().map(|u| u.0.clone()))
    })
    .flatten()
    .unwrap_or_else(opentelemetry::Context::current)
}
