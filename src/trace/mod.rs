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
//! Attributes (OTel HTTP semconv v1.44, "HTTP server span"), all but the
//! response's given at the start, so that samplers see them:
//!
//! | attribute | requirement | source |
//! |---|---|---|
//! | `http.request.method`, `http.request.method_original` | required / when `_OTHER` | the method |
//! | `url.path`, `url.query` | required / when present | the target; sensitive query values `REDACTED` ([`SENSITIVE_QUERY_PARAMETERS`]) |
//! | `url.scheme` | required | a trusted proxy's `proto`, else the URI |
//! | `http.route` | when matched | the route template |
//! | `network.protocol.version` | recommended | `1.1`, `2` |
//! | `client.address`, `network.peer.address`, `network.peer.port` | recommended | the socket peer ([`crate::address`]); behind trusted proxies, the original client |
//! | `server.address`, `server.port` | recommended | a trusted proxy's host, `:authority` or `Host` |
//! | `user_agent.original` | recommended | `User-Agent` |
//! | `client.port` | opt-in | [`HttpTraceLayer::client_port`] |
//! | `http.request.header.<name>`, `http.response.header.<name>` | opt-in | [`HttpTraceLayer::capture_headers`] |
//! | `http.response.status_code`, `error.type` | when sent / on errors | the response and its end |
//! | `request_id`, `cache.result` | not semconv | the [`RequestId`](crate::request_id::RequestId); the cache part's outcome |
//!
//! Every value taken from the request is capped at
//! [`DEFAULT_VALUE_LENGTH_LIMIT`] bytes (or
//! `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`,
//! [`HttpTraceLayer::attribute_value_length_limit`]). The span status is
//! error on 5xx and on failures, unset otherwise; a caught panic adds an
//! `exception` event. Handlers add attributes through the request's
//! [`Labeler`](crate::labeler::Labeler) or `Context::current().span()`.
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
mod attributes;
mod bridge;
mod client;
mod correlation;
mod headers;
mod layer;
mod propagation;
mod rpc;
mod sampling;
mod span;

#[cfg(feature = "telemetry")]
pub(crate) use self::correlation::request_scope;
pub(crate) use self::layer::{TracePending, TraceRoute, TraceRules};
#[cfg(feature = "telemetry")]
pub use self::sampling::RouteSampler;
#[cfg(feature = "telemetry")]
pub(crate) use self::span::instrumentation_scope;
pub use self::{
    attributes::{
        CaptureError, DEFAULT_VALUE_LENGTH_LIMIT, HeaderCapture, SENSITIVE_HEADERS,
        SENSITIVE_QUERY_PARAMETERS,
    },
    bridge::ServerSpanLayer,
    client::{HeaderInjector, PropagateContext, PropagateContextLayer},
    correlation::Correlation,
    layer::{HttpTrace, HttpTraceLayer},
    propagation::{HeaderExtractor, W3cPropagator, is_valid_traceparent},
    sampling::RouteSampling,
};
