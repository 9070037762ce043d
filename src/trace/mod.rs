//! A server span per request, in the OpenTelemetry HTTP span conventions,
//! continued from the caller's W3C Trace Context.
//!
//! The span is made through the OpenTelemetry API: kind server, named
//! `{method} {route}` (OTel HTTP semconv v1.26, "Name"), by the tracer given
//! to [`HttpTraceLayer::tracer`] (`Observability::layer` gives its
//! provider's), else by the global tracer provider's. It starts with every
//! attribute known from the request, so that samplers see them, and ends
//! when the response body ends, fails or is dropped, so its duration covers
//! the whole response.
//!
//! Attributes: `http.request.method` (`_OTHER` for unknown methods, with
//! `http.request.method_original`), `http.route`, `url.path`, `url.scheme`,
//! `user_agent.original`, `network.protocol.version`,
//! `http.response.status_code`, `error.type` and `request_id` (the
//! [`RequestId`](crate::request_id::RequestId) of the request, when
//! [`SetRequestIdLayer`](crate::request_id::SetRequestIdLayer) runs before this
//! layer); `cache.result` when [`RecordCacheStatusLayer`](crate::cache::RecordCacheStatusLayer)
//! runs inside it (it leaves its outcome in the response extensions). The span status is error on 5xx and on failures, unset
//! otherwise.
//!
//! While the inner service is polled, the span's context is the current
//! OTel context (`opentelemetry::Context::current()`): spans the handler
//! opens, through `tracing` and `tracing-opentelemetry` or the OTel API, are
//! its children, and `Context::current().span()` adds attributes or events
//! to it. A `tracing` span (target `tower_observability::request`, fields
//! `http.request.method`, `http.route`, `request_id`) is entered at the same
//! time and carries the request's [`Correlation`], which the log lines of
//! [`Observability`](crate::Observability) print. That span is not an OTel
//! span: `tracing-opentelemetry`'s `Span::current().context()` or
//! `set_attribute` do not reach the server span (use the OTel context).
//! [`ServerSpanLayer`] (part of `Observability`'s subscriber) does for it
//! what `tracing-opentelemetry` does for its spans: entering it makes the
//! server span's context current (a task spawned with `.in_current_span()`
//! stays in the trace) and log events inside it become events of the
//! server span.
//! An OTel layer that does not leave the target out (see
//! [`OTEL_LAYER_EXCLUDED_TARGETS`](crate::OTEL_LAYER_EXCLUDED_TARGETS))
//! exports that span too, as an internal child of the server span: noise,
//! but nothing leaves the trace.
//!
//! Sampling is decided first: a request whose W3C parent is not sampled
//! (`traceparent` flag `00`) gets no OTel span and no attribute is built;
//! its context holds a non-recording span with the caller's trace id and a
//! span id of its own, so its logs still correlate and calls it makes carry
//! the trace on, unsampled; see [`HttpTraceLayer::follow_parent_sampling`].
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_observability::{request_id::SetRequestIdLayer, trace::HttpTraceLayer};
//! use tower::ServiceBuilder;
//!
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(ServiceBuilder::new().layer(SetRequestIdLayer::new()).layer(HttpTraceLayer::new()));
//! ```

mod access_log;
mod bridge;
mod client;
mod correlation;
mod headers;
mod layer;
mod propagation;
mod span;

#[cfg(feature = "telemetry")]
pub(crate) use self::correlation::request_scope;
pub(crate) use self::layer::{TracePending, TraceRoute};
#[cfg(feature = "telemetry")]
pub(crate) use self::span::instrumentation_scope;
pub use self::{
    bridge::ServerSpanLayer,
    client::{HeaderInjector, PropagateContext, PropagateContextLayer},
    correlation::Correlation,
    layer::{HttpTrace, HttpTraceLayer},
    propagation::{HeaderExtractor, W3cPropagator, is_valid_traceparent},
};
