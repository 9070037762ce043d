//! Tower layers and an axum router that make an HTTP service observable:
//! OpenTelemetry HTTP semantic-convention metrics for Prometheus, OTLP traces
//! for Jaeger, validated request ids, cache outcomes, health checks, alerts
//! and a dashboard, in three lines.
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
//!     .layer(obs.layer())                  // every signal of every request
//!     .merge(obs.monitoring_router());     // /metrics, /health/*, /monitoring/*
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # One pass per request
//!
//! [`ObservabilityLayer`] (what [`Observability::layer`] returns) runs every
//! part of the crate around a service, in one pass:
//!
//! 1. [`request_id::SetRequestIdLayer`] accepts a valid `x-request-id`,
//!    generates one otherwise, echoes it on the response;
//! 2. [`trace::HttpTraceLayer`] opens one OTel HTTP server span per request,
//!    parented by the W3C `traceparent`, ended when the response body ends;
//! 3. [`metrics::HttpMetricsLayer`] records `http_server_request_duration_seconds`
//!    and its siblings, labelled by route template, timed to the end of the
//!    body, and the in-process windows ([`metrics::HttpStats`]);
//! 4. [`cache::RecordCacheStatusLayer`] counts the response's cache outcome
//!    (RFC 9211 `Cache-Status`, `X-Cache`, or a typed [`cache::CacheStatus`]);
//! 5. [`panic::CatchPanicLayer`], innermost, turns a panic into a 500.
//!
//! The outermost layer builds one [`RequestContext`] (start, method, route,
//! scheme, protocol, span context), looks the route up once, wraps the
//! response body once ([`body::ResponseBody`]), and at the body's end
//! classifies the request once ([`ErrorType`]) and ends every part. Each
//! part is also a tower [`Layer`](tower_layer::Layer) of its own, around
//! any `Service<http::Request<B>>` whose response body is an
//! [`http_body::Body`], axum or not; stacked by hand in the order above
//! they give the same signals, and each part runs at most once per request
//! whatever the stacking. They all make the same service,
//! [`observe::Observe`].
//!
//! # gRPC
//!
//! The same layer wraps a tonic server
//! (`Server::builder().layer(obs.layer())`, or a tonic service mounted in an
//! axum `Router`): a request whose `content-type` is `application/grpc` is
//! observed with the OpenTelemetry RPC conventions (v1.44.0), its status
//! read from the trailers, and recorded in `rpc_server_*` instead of
//! `http_server_*`; see [`grpc`]. Observing gRPC needs no feature.
//!
//! # Composing with the monitoring routes
//!
//! Both orders observe every application request once and no monitoring
//! request: `.layer(obs.layer()).merge(obs.monitoring_router())` and
//! `.merge(obs.monitoring_router()).layer(obs.layer())`, with `nest` and
//! `nest_service` (labelled with the nest's template, `/assets/{*path}`).
//! A `.fallback(..)` must come before `.layer(..)`: axum's `Router::layer`
//! wraps what the router holds when it is called, so a fallback added after
//! it is outside every layer (and its 404s unobserved, by any middleware).
//!
//! # Feature flags
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `axum` | yes | route templates from axum's `MatchedPath`, and of nested services |
//! | `telemetry` | yes | the [`Observability`] builder: Prometheus recorder, OTLP traces, metrics and logs (the OpenTelemetry SDK, `OTEL_METRICS_EXPORTER`, `OTEL_LOGS_EXPORTER`), log subscriber |
//! | `otlp-grpc` | yes | OTLP/gRPC export (port 4317), every signal |
//! | `monitoring` | yes | [`monitoring::MonitoringRouter`]: `/metrics`, `/health/*`, `/monitoring/*`, the dashboard |
//! | `health` | with `monitoring` | [`health::HealthRegistry`]: checks with timeouts, groups, a cache |
//! | `alerts` | with `monitoring` | [`alerts::AlertEngine`]: rules over the in-process windows, history, silences; [`slo`]: objectives and burn-rate alerts |
//! | `otlp-http` | no | OTLP/HTTP protobuf export (port 4318), every signal |
//! | `notify` | no | [`alerts::AlertNotifier`]: push alerts to Alertmanager and webhooks |
//! | `process-metrics` | no | the `process_*` metrics on `/metrics` and in the overview |
//! | `moka` | no | [`cache::InstrumentedCache`]: cache metrics for `moka::future::Cache` |
//! | `tower-http` | no | tower-http's `RequestId` extension beside the crate's |
//! | `grpc` | no | [`grpc::HealthService`]: the health registry as `grpc.health.v1.Health` (tonic-health) |
//! | `pushgateway` | no | `ObservabilityBuilder::push_gateway`: push the metrics to a Prometheus Pushgateway at an interval and at shutdown |
//! | `full` | no | all of the above |
//!
//! Without default features the layers need only the OpenTelemetry API:
//! spans go to the global tracer provider, or to any tracer given to
//! [`trace::HttpTraceLayer::tracer`].
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[macro_use]
mod macros;

pub mod address;
#[cfg(feature = "alerts")]
pub mod alerts;
pub mod body;
pub mod cache;
mod classify;
mod context;
pub mod grpc;
#[cfg(feature = "health")]
pub mod health;
pub mod labeler;
mod layer;
pub mod metrics;
#[cfg(feature = "monitoring")]
pub mod monitoring;
#[cfg(feature = "telemetry")]
mod observability;
pub mod observe;
pub mod panic;
pub mod recorder;
pub mod request_id;
pub mod route;
mod semconv;
mod shard;
#[cfg(feature = "alerts")]
pub mod slo;
#[cfg(feature = "telemetry")]
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
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
        InitError, LogFormat, MetricsExporters, OTEL_LAYER_EXCLUDED_TARGETS, OtlpProtocol, otel_layer,
        prometheus_builder,
    },
};
