//! The pipelines [`Observability`](crate::Observability) installs: the
//! Prometheus recorder, the OTLP traces, metrics and logs pipelines, and
//! the log subscriber's formats.
//!
//! Install them with [`Observability::builder`](crate::Observability::builder);
//! the pieces here serve a setup of one's own: [`prometheus_builder`],
//! [`otel_layer`], [`OTEL_LAYER_EXCLUDED_TARGETS`].
//!
//! One recording feeds every exporter: the crate's metrics and the
//! application's go through the `metrics` facade to one recorder, a
//! fan-out (metrics-util's `Fanout`) of the Prometheus recorder (the
//! `/metrics` scrape) and a bridge into OpenTelemetry instruments (the OTLP
//! push), which gives each metric its OTel name, unit and attribute keys
//! (`http_server_request_duration_seconds` on `/metrics` is
//! `http.server.request.duration`, unit `s`, over OTLP). Which exporters
//! run is `OTEL_METRICS_EXPORTER` ([`MetricsExporters`]). With the
//! `pushgateway` feature, the Prometheus half is also pushed to a
//! Pushgateway (`ObservabilityBuilder::push_gateway`), whatever
//! `OTEL_METRICS_EXPORTER` says.

mod config;
mod env;
mod error;
mod exporter;
mod logs;
mod logs_otlp;
#[cfg(feature = "testing")]
pub(crate) use self::logs::json_layer_to;
mod metrics_bridge;
mod metrics_otlp;
mod otel_names;
mod pipeline;
#[cfg(feature = "pushgateway")]
mod push;
mod recorder;
mod sampler;
mod sdk_events;
mod setup;
mod span_batch;
mod stdout;
mod traces;

#[cfg(feature = "monitoring")]
pub(crate) use self::pipeline::PipelineTotals;
#[cfg(feature = "pushgateway")]
pub(crate) use self::push::{PushConfig, Pusher};
pub use self::{
    config::OtlpProtocol,
    env::MetricsExporters,
    error::InitError,
    logs::LogFormat,
    pipeline::{
        OTLP_EXPORTER_LOG_RECORDS_DROPPED, OTLP_EXPORTER_LOG_RECORDS_EXPORTED,
        OTLP_EXPORTER_LOG_RECORDS_FAILED, OTLP_EXPORTER_LOG_RECORDS_REJECTED,
        OTLP_EXPORTER_METRIC_POINTS_EXPORTED, OTLP_EXPORTER_METRIC_POINTS_FAILED,
        OTLP_EXPORTER_METRIC_POINTS_REJECTED, OTLP_EXPORTER_QUEUE_LOG_RECORDS, OTLP_EXPORTER_QUEUE_SPANS,
        OTLP_EXPORTER_SPANS_DROPPED, OTLP_EXPORTER_SPANS_EXPORTED, OTLP_EXPORTER_SPANS_FAILED,
        OTLP_EXPORTER_SPANS_REJECTED,
    },
    recorder::prometheus_builder,
    traces::{OTEL_LAYER_EXCLUDED_TARGETS, counted_span_processor, otel_layer},
};
pub(crate) use self::{
    config::env,
    exporter::ExporterRuntime,
    logs::{fmt_layer, log_filter},
    logs_otlp::otlp_logs_layer,
    metrics_otlp::Counting as MetricsCounting,
    pipeline::Pipeline,
    recorder::Upkeep,
    sdk_events::{Deferred, accounted_for, sdk_events_layer},
    setup::{Options, UserExporter, build, plan},
    stdout::{LOG_LINES_DROPPED, Stdout, StdoutGuard},
    traces::EXPORTER_TARGETS,
};
