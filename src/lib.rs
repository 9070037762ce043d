//! Tower layers and an axum router that make an HTTP service observable:
//! OpenTelemetry HTTP semantic-convention metrics for Prometheus, OTLP traces
//! for Jaeger, and validated request ids, in three lines.
//!
//! # Overview
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_observability::Observability;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Reads OTEL_* env vars; installs the Prometheus recorder, the OTLP tracer
//! // (Jaeger's OTLP gRPC port on localhost by default) and JSON logs.
//! let obs = Observability::builder().service_name("users-api").init()?;
//!
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(obs.layer())                  // request id -> span -> metrics
//!     .merge(obs.monitoring_router());     // /metrics, /health/live, /health/ready
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Each concern is also a tower [`Layer`](tower_layer::Layer) of its own,
//! around any `Service<http::Request<B>>` whose response body is an
//! [`http_body::Body`], axum or not:
//!
//! - [`request_id::SetRequestIdLayer`] accepts a valid `x-request-id`, generate
//!   one otherwise, echoes it on the response;
//! - [`trace::HttpTraceLayer`] opens one OTel HTTP server span per request,
//!   parent from W3C `traceparent`, closed when the response body ends;
//! - [`metrics::HttpMetricsLayer`] records `http_server_request_duration_seconds`
//!   and friends, labelled by route template, timed to the end of the body;
//! - [`ObservabilityLayer`] stacks the three in the right order.
//!
//! The response body wrapper shared by the layers lives in [`body`].
//!
//! # Feature flags
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `axum` | yes | route labels from axum's `MatchedPath` |
//! | `monitoring` | yes | [`monitoring::MonitoringRouter`] (`/metrics`, `/health/*`) |
//! | `telemetry` | yes | the [`Observability`] builder: recorder, tracer provider, subscriber |
//! | `otlp-grpc` | yes | OTLP/gRPC export (port 4317) |
//! | `otlp-http` | yes | OTLP/HTTP protobuf export (port 4318) |
//! | `moka` | yes | [`cache::InstrumentedCache`]: cache metrics for `moka::future::Cache` |
//! | `health` | yes (with `monitoring`) | [`health::HealthRegistry`]: checks with timeouts, groups, a cache |
//! | `full` | no | all of the above |
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;

#[cfg(feature = "monitoring")]
pub mod alerts;
pub mod body;
pub mod cache;
mod classify;
mod context;
#[cfg(feature = "health")]
pub mod health;
mod layer;
pub mod metrics;
#[cfg(feature = "monitoring")]
pub mod monitoring;
#[cfg(feature = "telemetry")]
mod observability;
pub mod observe;
pub mod panic;
pub mod request_id;
pub mod route;
mod semconv;
#[cfg(feature = "telemetry")]
pub mod telemetry;
#[cfg(feature = "health")]
mod time;
pub mod trace;
pub mod window;

pub use self::{
    classify::{ErrorType, OTHER_ERROR, StatusClassifier},
    context::RequestContext,
    layer::{ObservabilityLayer, ObservabilityService},
    route::{HttpRoute, OVERFLOW_ROUTE, UNMATCHED_ROUTE},
};
#[cfg(feature = "telemetry")]
pub use self::{
    observability::{Observability, ObservabilityBuilder},
    telemetry::{
        InitError, LogFormat, OTEL_LAYER_EXCLUDED_TARGETS, OtlpProtocol, otel_layer, prometheus_builder,
    },
};
