//! A server span per request, in the OpenTelemetry HTTP span conventions,
//! continued from the caller's W3C Trace Context.
//!
//! The span is a `tracing` span at `INFO` with target
//! `tower_observability::trace`; `tracing-opentelemetry` turns it into an
//! OTel span of kind server, named `{method} {route}` (OTel HTTP semconv
//! v1.26, "Name"). It is entered while the inner service runs, so every log
//! event of the handler is inside it, and it closes when the response body
//! ends, fails or is dropped, so its duration covers the whole response.
//!
//! Attributes: `http.request.method` (`_OTHER` for unknown methods, with
//! `http.request.method_original`), `http.route`, `url.path`, `url.scheme`,
//! `user_agent.original`, `network.protocol.version`,
//! `http.response.status_code`, `error.type` and `request_id` (the
//! [`RequestId`](crate::request_id::RequestId) of the request, when
//! [`RequestIdLayer`](crate::request_id::RequestIdLayer) runs before this
//! layer). The span status is error on 5xx and on failures, unset otherwise.
//!
//! Sampling is decided first: a request whose W3C parent is not sampled
//! (`traceparent` flag `00`) gets no OTel span, only a `tracing` span with
//! target `tower_observability::request` that carries its
//! [`Correlation`] (the caller's trace id, a span id of its own), so its
//! logs still correlate and calls it makes carry the trace on, unsampled;
//! see [`HttpTraceLayer::follow_parent_sampling`].
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_observability::{request_id::RequestIdLayer, trace::HttpTraceLayer};
//! use tower::ServiceBuilder;
//!
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(ServiceBuilder::new().layer(RequestIdLayer::new()).layer(HttpTraceLayer::new()));
//! ```

mod client;
mod correlation;
mod propagation;
mod service;

pub use self::{
    client::{HeaderInjector, PropagateContext, PropagateContextLayer},
    correlation::Correlation,
    propagation::{HeaderExtractor, is_valid_traceparent},
    service::{HttpTrace, HttpTraceLayer, ResponseFuture, TraceObserver},
};
