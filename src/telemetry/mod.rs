//! The pipelines [`Observability`](crate::Observability) installs: the
//! Prometheus recorder, the OTLP tracer provider and its span pipeline, and
//! the log subscriber's formats.
//!
//! Install them with [`Observability::builder`](crate::Observability::builder);
//! the pieces here serve a setup of one's own: [`prometheus_builder`],
//! [`otel_layer`], [`OTEL_LAYER_EXCLUDED_TARGETS`].

mod config;
mod error;
mod exporter;
mod logs;
mod pipeline;
#[cfg(feature = "pushgateway")]
mod push;
mod recorder;
mod sampler;
mod traces;

#[cfg(feature = "pushgateway")]
pub(crate) use self::push::{PushConfig, Pusher, install as install_pushing_recorder};
pub use self::{
    config::OtlpProtocol,
    error::InitError,
    logs::LogFormat,
    pipeline::{
        OTLP_EXPORTER_QUEUE_SPANS, OTLP_EXPORTER_SPANS_DROPPED, OTLP_EXPORTER_SPANS_EXPORTED,
        OTLP_EXPORTER_SPANS_FAILED, SpanExportStats,
    },
    recorder::prometheus_builder,
    traces::{OTEL_LAYER_EXCLUDED_TARGETS, otel_layer},
};
pub(crate) use self::{
    config::{env, resolve_endpoint, resolve_protocol, sdk_disabled},
    exporter::ExporterRuntime,
    logs::{fmt_layer, log_filter},
    pipeline::Pipeline,
    recorder::{Upkeep, install_recorder},
    traces::tracer_provider,
};
