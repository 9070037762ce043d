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
/// id from it. Read it yourself with [`Correlation::current`], or in a
/// formatter of your own with [`Correlation::from_extensions`].
#[derive(Clone, PartialEq, Eq)]
pub struct Correlation {
    /// The request's validated id; `None` without a `SetRequestIdLayer`.
    pub request_id: Option<RequestId>,
    /// The W3C trace id; invalid (all zero) when no tracer provider is
    /// installed and the caller sent no trace context.
    pub trace_id: TraceId,
    /// The id of the request's server span (with no tracer provider, the
    /// caller's span id, or invalid).
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
                span.scope().find_map(|s| Self::from_extensions(&s.extensions()))
            })
            .flatten()
    }

    /// The correlation stored in a span's registry extensions: that of the
    /// request span, `None` for other spans. For event formatters that walk
    /// an event's scope:
    ///
    /// ```
    /// use tower_observability::trace::Correlation;
    /// use tracing_subscriber::{fmt::FmtContext, registry::LookupSpan};
    ///
    /// fn correlation<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<Correlation>
    /// where
    ///     S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    ///     N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static,
    /// {
    ///     ctx.event_scope()?.find_map(|span| Correlation::from_extensions(&span.extensions()))
    /// }
    /// ```
    pub fn from_extensions(extensions: &tracing_subscriber::registry::Extensions<'_>) -> Option<Self> {
        extensions.get::<RequestScope>().map(|scope| scope.correlation.clone())
    }

    /// Whether the trace id is valid (a tracer made the server span, or the
    /// caller sent a trace).
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

/// What the trace layer keeps in its request span's registry extensions
/// (one entry): the request's [`Correlation`] and the OTel context it runs
/// in, the server span's (or, for a parent that is not sampled, the
/// non-recording context standing for this server).
pub(crate) struct RequestScope {
    pub(crate) correlation: Correlation,
    pub(crate) cx: opentelemetry::Context,
}

/// The OTel context and request id of the request a span (found in the
/// registry) belongs to: the first request scope from `span` to the root.
/// For the OTLP log pipeline, which gives a request's log records the ids
/// of its server span.
#[cfg(feature = "telemetry")]
pub(crate) fn request_scope<'a, R: LookupSpan<'a>>(
    span: tracing_subscriber::registry::SpanRef<'a, R>,
) -> Option<(opentelemetry::Context, Option<RequestId>)> {
    span.scope().find_map(|s| {
        s.extensions().get::<RequestScope>().map(|r| (r.cx.clone(), r.correlation.request_id.clone()))
    })
}

/// Stores the correlation and OTel context of the request served under
/// `span` in its registry extensions.
pub(crate) fn attach(span: &Span, request_id: Option<&RequestId>, cx: &opentelemetry::Context) {
    let otel = cx.span();
    let sc = otel.span_context();
    let correlation =
        Correlation { request_id: request_id.cloned(), trace_id: sc.trace_id(), span_id: sc.span_id() };
    span.with_subscriber(|(id, dispatch)| {
        if let Some(span) = dispatch.downcast_ref::<Registry>().and_then(|r| r.span(id)) {
            span.extensions_mut().insert(RequestScope { correlation, cx: cx.clone() });
        }
    });
}

/// The OTel context for propagation from inside a request: that of the
/// current `tracing-opentelemetry` span (a span the handler opened), else
/// the current OTel context when it holds a span (the trace layer attaches
/// its own while the handler is polled), else the context stored in the
/// request's span (code running in a task instrumented with it).
pub(crate) fn current_otel_context() -> opentelemetry::Context {
    let span = Span::current();
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        return cx;
    }
    let current = opentelemetry::Context::current();
    if current.span().span_context().is_valid() {
        return current;
    }
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        span.scope().find_map(|s| s.extensions().get::<RequestScope>().map(|r| r.cx.clone()))
    })
    .flatten()
    .unwrap_or(current)
}
