//! From settings to running pipelines: what
//! [`ObservabilityBuilder::init`](crate::ObservabilityBuilder::init)
//! resolves (builder values and `OTEL_*` variables, every one checked
//! first) and builds (exporters, the recorder, the three providers, the
//! Pushgateway push), in the order that keeps every count visible: the
//! recorder before the pipelines that register their counters in it.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::{
    Resource,
    logs::SdkLoggerProvider,
    metrics::{SdkMeterProvider, Temporality},
    trace::{Sampler, SdkTracerProvider},
};

use super::{
    ExporterRuntime, InitError, MetricsExporters, OtlpProtocol,
    config::{self, Signal},
    env,
    exporter::Exporters,
    logs_otlp::{self, LogBatchSettings},
    metrics_bridge::OtelRecorder,
    metrics_otlp,
    pipeline::Pipeline,
    recorder::{self, Upkeep},
    sdk_events::Deferred,
    traces,
};

/// What the builder was given; `None` is "not set" (the environment or the
/// default decides).
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub(crate) service_name: String,
    pub(crate) service_version: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) protocol: Option<OtlpProtocol>,
    pub(crate) metrics_endpoint: Option<String>,
    pub(crate) logs_endpoint: Option<String>,
    pub(crate) metrics_exporters: Option<MetricsExporters>,
    pub(crate) otlp_logs: Option<bool>,
    pub(crate) metric_export_interval: Option<Duration>,
    pub(crate) temporality: Option<Temporality>,
    pub(crate) log_queue_size: Option<usize>,
    pub(crate) sampler: Option<Sampler>,
    pub(crate) trust_remote_sampling: bool,
    pub(crate) install_recorder: bool,
    #[cfg(feature = "pushgateway")]
    pub(crate) push: Option<super::PushConfig>,
    /// A span exporter of the application's, instead of OTLP.
    pub(crate) span_exporter: Option<UserExporter>,
    /// A tracer provider of the application's: no traces pipeline is built.
    pub(crate) tracer_provider: bool,
}

/// Makes the tracer provider of a span exporter the application gave:
/// the resource, the queue size, the sampler, whether remote sampling is
/// trusted.
type ProviderFactory =
    Box<dyn FnOnce(Resource, usize, Option<Sampler>, bool) -> (SdkTracerProvider, Arc<Pipeline>) + Send>;

/// A span exporter the application gave the builder, used by the first
/// `init` of the builder (or of a clone).
#[derive(Clone)]
pub(crate) struct UserExporter(Arc<Mutex<Option<ProviderFactory>>>);

impl UserExporter {
    pub(crate) fn new<E: opentelemetry_sdk::trace::SpanExporter + 'static>(exporter: E) -> Self {
        let factory: ProviderFactory = Box::new(move |resource, queue, sampler, trust| {
            traces::tracer_provider(resource, exporter, queue, sampler, trust)
        });
        Self(Arc::new(Mutex::new(Some(factory))))
    }

    fn take(&self) -> Option<ProviderFactory> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl fmt::Debug for UserExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserExporter")
    }
}

/// Where one signal goes.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) protocol: OtlpProtocol,
    pub(crate) endpoint: String,
}

/// Everything resolved, before anything is built.
#[derive(Debug)]
pub(crate) struct Plan {
    traces: Option<(Target, usize)>,
    metrics: Option<(Target, Duration, Temporality)>,
    prometheus: bool,
    logs: Option<(Target, LogBatchSettings)>,
    #[cfg(feature = "pushgateway")]
    pub(super) push: Option<super::PushConfig>,
    /// One per ignored variable, logged once the subscriber is up.
    pub(crate) warnings: Vec<String>,
}

/// The default `OTEL_METRIC_EXPORT_INTERVAL`: 60 s (OTel SDK environment
/// variables).
const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);

fn target(signal: Signal, opts: &Options, signal_endpoint: Option<&str>) -> Result<Target, InitError> {
    let protocol = config::resolve_protocol(signal, opts.protocol)?;
    let endpoint = config::resolve_endpoint(signal, signal_endpoint, opts.endpoint.as_deref(), protocol)?;
    Ok(Target { protocol, endpoint })
}

/// Resolves `opts` against the environment.
///
/// # Errors
///
/// [`InitError::InvalidEnvVar`] for any `OTEL_*` value that does not parse
/// (see [`env`]), [`InitError::InvalidEndpoint`],
/// [`InitError::UnsupportedProtocol`], [`InitError::InvalidSetting`],
/// `InitError::Pushgateway`.
pub(crate) fn plan(opts: &Options) -> Result<Plan, InitError> {
    let warnings = env::validate()?;
    let disabled = config::sdk_disabled();
    let exporter = |name: &str, default: bool| -> Result<bool, InitError> {
        config::env(name).map_or(Ok(default), |v| env::parse_signal_exporter(name, &v))
    };
    let traces = if !disabled && exporter("OTEL_TRACES_EXPORTER", true)? {
        let queue = env::size("OTEL_BSP_MAX_QUEUE_SIZE")?.unwrap_or(2048);
        Some((target(Signal::Traces, opts, None)?, queue))
    } else {
        None
    };
    let exporters = match config::env("OTEL_METRICS_EXPORTER") {
        Some(value) => MetricsExporters::parse(&value)?,
        None => opts.metrics_exporters.unwrap_or_default(),
    };
    let metrics = if exporters.otlp() && !disabled {
        let interval = match env::number("OTEL_METRIC_EXPORT_INTERVAL")? {
            Some(ms) => Duration::from_millis(ms),
            None => opts.metric_export_interval.unwrap_or(DEFAULT_METRIC_INTERVAL),
        };
        if interval.is_zero() {
            return Err(InitError::InvalidSetting {
                setting: "metric_export_interval",
                reason: "must be longer than zero",
            });
        }
        let temporality = match config::env("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") {
            Some(value) => env::parse_temporality(&value)?,
            None => opts.temporality.unwrap_or(Temporality::Cumulative),
        };
        Some((target(Signal::Metrics, opts, opts.metrics_endpoint.as_deref())?, interval, temporality))
    } else {
        None
    };
    let otlp_logs = match config::env("OTEL_LOGS_EXPORTER") {
        Some(value) => env::parse_signal_exporter("OTEL_LOGS_EXPORTER", &value)?,
        None => opts.otlp_logs.unwrap_or(false),
    };
    let logs = if otlp_logs && !disabled {
        let max_queue_size = match env::size("OTEL_BLRP_MAX_QUEUE_SIZE")? {
            Some(n) => n,
            None => match opts.log_queue_size {
                Some(0) => {
                    return Err(InitError::InvalidSetting {
                        setting: "log_queue_size",
                        reason: "must be at least 1",
                    });
                }
                Some(n) => n,
                None => 2048,
            },
        };
        let batch = LogBatchSettings {
            max_queue_size,
            max_export_batch_size: env::size("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE")?.unwrap_or(512),
            scheduled_delay: env::millis("OTEL_BLRP_SCHEDULE_DELAY")?.unwrap_or(Duration::from_secs(1)),
        };
        Some((target(Signal::Logs, opts, opts.logs_endpoint.as_deref())?, batch))
    } else {
        None
    };
    let prometheus = exporters.prometheus() && opts.install_recorder;
    let mut warnings = warnings;
    let metrics = if opts.install_recorder {
        metrics
    } else {
        if metrics.is_some() {
            warnings.push(
                "OTLP metrics (OTEL_METRICS_EXPORTER or metrics_exporters) are off: they need the \
                 crate's recorder, and install_metrics_recorder(false) was set"
                    .to_owned(),
            );
        }
        None
    };
    // The Pushgateway is set in code, not an exporter of
    // OTEL_METRICS_EXPORTER: it pushes whatever that says (with `otlp` or
    // `none`, a Prometheus recording is kept for the push alone, and
    // `/metrics` still answers 503).
    #[cfg(feature = "pushgateway")]
    let push = match &opts.push {
        Some(config) => {
            config.check()?;
            if opts.install_recorder {
                Some(config.clone())
            } else {
                warnings.push(
                    "the Pushgateway push is off: it needs the crate's recorder, and \
                     install_metrics_recorder(false) was set"
                        .to_owned(),
                );
                None
            }
        }
        None => None,
    };
    Ok(Plan {
        traces,
        metrics,
        prometheus,
        logs,
        #[cfg(feature = "pushgateway")]
        push,
        warnings,
    })
}

/// The running pipelines.
#[derive(Debug, Default)]
pub(crate) struct Pipelines {
    pub(crate) prometheus: Option<PrometheusHandle>,
    pub(crate) tracer: Option<(SdkTracerProvider, Arc<Pipeline>, String)>,
    pub(crate) meter: Option<(SdkMeterProvider, metrics_otlp::Counting, String)>,
    pub(crate) logger: Option<(SdkLoggerProvider, Arc<Pipeline>, String)>,
    pub(crate) runtime: Option<ExporterRuntime>,
    /// The Prometheus recorder's upkeep, unless the Pushgateway exporter
    /// runs it.
    pub(crate) upkeep: Option<Upkeep>,
    #[cfg(feature = "pushgateway")]
    pub(crate) pusher: Option<super::Pusher>,
}

/// The Prometheus half of the recording, when `/metrics` or the
/// Pushgateway needs it, and the pusher; not installed yet.
#[cfg(feature = "pushgateway")]
fn prometheus_recorder(
    plan: &Plan,
) -> Result<(Option<PrometheusRecorder>, Option<super::Pusher>), InitError> {
    match &plan.push {
        Some(config) => {
            let (recorder, pusher) = super::push::recorder(recorder::prometheus_builder(), config)?;
            Ok((Some(recorder), Some(pusher)))
        }
        None => Ok((plan.prometheus.then(|| recorder::prometheus_builder().build_recorder()), None)),
    }
}

/// The Prometheus half of the recording, when `/metrics` needs it; not
/// installed yet.
#[cfg(not(feature = "pushgateway"))]
fn prometheus_recorder(plan: &Plan) -> Result<(Option<PrometheusRecorder>, Option<()>), InitError> {
    Ok((plan.prometheus.then(|| recorder::prometheus_builder().build_recorder()), None))
}

/// The resource of every signal: `service.name`, `service.version`, and
/// what `OTEL_RESOURCE_ATTRIBUTES` adds (the SDK's detectors).
fn resource(opts: &Options) -> Resource {
    let mut resource = Resource::builder().with_service_name(opts.service_name.clone());
    if let Some(version) = &opts.service_version {
        resource = resource.with_attribute(opentelemetry::KeyValue::new("service.version", version.clone()));
    }
    resource.build()
}

/// Builds what `plan` says, the SDK's own log events held in `deferred`.
///
/// # Errors
///
/// [`InitError::RecorderAlreadyInstalled`], [`InitError::Exporter`],
/// [`InitError::Thread`].
pub(crate) fn build(plan: Plan, opts: &Options, deferred: &Deferred) -> Result<Pipelines, InitError> {
    deferred.hold(|| {
        let resource = resource(opts);
        let mut exporters = Exporters::default();
        // An exporter or a provider of the application's replaces OTLP.
        let otlp_spans = opts.span_exporter.is_none() && !opts.tracer_provider;
        let span_exporter = plan
            .traces
            .as_ref()
            .filter(|_| otlp_spans)
            .map(|(t, queue)| {
                exporters.spans(t.protocol, &t.endpoint).map(|e| (e, *queue, t.endpoint.clone()))
            })
            .transpose()?;
        let metric_exporter = plan
            .metrics
            .as_ref()
            .map(|(t, interval, temporality)| {
                exporters
                    .metrics(t.protocol, &t.endpoint, *temporality)
                    .map(|e| (e, *interval, t.endpoint.clone()))
            })
            .transpose()?;
        let log_exporter = plan
            .logs
            .as_ref()
            .map(|(t, batch)| {
                exporters.logs(t.protocol, &t.endpoint).map(|e| (e, *batch, t.endpoint.clone()))
            })
            .transpose()?;

        // The recorder first: the pipelines register their counters in it.
        let meter = metric_exporter.map(|(exporter, interval, endpoint)| {
            let (provider, counting) = metrics_otlp::meter_provider(resource.clone(), exporter, interval);
            (provider, counting, endpoint)
        });
        let otel = meter.as_ref().map(|(provider, _, _)| {
            OtelRecorder::new(provider.meter_with_scope(crate::trace::instrumentation_scope()))
        });
        let (prometheus, pusher) = prometheus_recorder(&plan)?;
        // `/metrics` serves the recording only when Prometheus is one of
        // the exporters; the Pushgateway pushes it either way.
        let prometheus = recorder::install(prometheus, otel)?.filter(|_| plan.prometheus);
        // The Pushgateway exporter runs the upkeep on its own runtime.
        let upkeep = match &pusher {
            Some(_) => None,
            None => prometheus.clone().map(Upkeep::start).transpose()?,
        };
        if let Some((_, counting, _)) = &meter {
            metrics_otlp::start_counting(counting);
        }
        let tracer = span_exporter.map(|(exporter, queue, endpoint)| {
            let (provider, pipeline) = traces::tracer_provider(
                resource.clone(),
                exporter,
                queue,
                opts.sampler.clone(),
                opts.trust_remote_sampling,
            );
            (provider, pipeline, endpoint)
        });
        let tracer = match (tracer, &opts.span_exporter, &plan.traces) {
            (None, Some(user), Some((_, queue))) if !opts.tracer_provider => user.take().map(|make| {
                let (provider, pipeline) =
                    make(resource.clone(), *queue, opts.sampler.clone(), opts.trust_remote_sampling);
                (provider, pipeline, "the application's span exporter".to_owned())
            }),
            (tracer, _, _) => tracer,
        };
        let logger = log_exporter.map(|(exporter, batch, endpoint)| {
            let (provider, pipeline) = logs_otlp::logger_provider(resource.clone(), exporter, batch);
            (provider, pipeline, endpoint)
        });
        Ok(Pipelines {
            prometheus,
            tracer,
            meter,
            logger,
            runtime: exporters.into_runtime(),
            upkeep,
            #[cfg(feature = "pushgateway")]
            pusher,
        })
    })
}
