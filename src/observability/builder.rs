//! [`ObservabilityBuilder`]: every setting of [`Observability`], the
//! environment variables that override them, and `init`, which checks them
//! all, then installs the pipelines and the subscriber.

#[cfg(feature = "monitoring")]
use std::time::Instant;
use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use opentelemetry_sdk::{
    metrics::Temporality,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_subscriber::{
    Layer, Registry, filter::FilterExt as _, layer::SubscriberExt, util::SubscriberInitExt,
};

use super::{Observability, default_layer};
use crate::{
    recorder::MetricsRecorder,
    telemetry::{self, Deferred, InitError, LogFormat, MetricsExporters, OtlpProtocol},
};

/// The default of [`ObservabilityBuilder::stdout_buffer`], in bytes.
const DEFAULT_STDOUT_BUFFER: usize = 8 << 20;

/// Builder of [`Observability`]; start with [`Observability::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ObservabilityBuilder {
    service_name: Option<String>,
    service_version: Option<String>,
    endpoint: Option<String>,
    protocol: Option<OtlpProtocol>,
    sampler: Option<Sampler>,
    log_format: LogFormat,
    stdout_buffer: usize,
    log_filter: Option<String>,
    install_subscriber: bool,
    install_recorder: bool,
    trust_remote_sampling: bool,
    metrics_endpoint: Option<String>,
    logs_endpoint: Option<String>,
    metrics_exporters: Option<MetricsExporters>,
    otlp_logs: Option<bool>,
    metric_export_interval: Option<Duration>,
    temporality: Option<Temporality>,
    log_queue_size: Option<usize>,
    #[cfg(feature = "pushgateway")]
    push: Option<telemetry::PushConfig>,
    span_exporter: Option<telemetry::UserExporter>,
    tracer_provider: Option<SdkTracerProvider>,
    layers: ExtraLayers,
    metrics_recorder: Option<MetricsRecorder>,
}

/// `tracing` layers the application adds to the installed subscriber, taken
/// by the first `init` of the builder (or of a clone).
#[derive(Clone, Default)]
struct ExtraLayers(Arc<Mutex<Vec<Box<dyn Layer<Registry> + Send + Sync>>>>);

impl fmt::Debug for ExtraLayers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        write!(f, "ExtraLayers({n})")
    }
}

impl ObservabilityBuilder {
    /// The defaults described on each setter.
    pub(super) fn new() -> Self {
        Self {
            service_name: None,
            service_version: None,
            endpoint: None,
            protocol: None,
            sampler: None,
            log_format: LogFormat::default(),
            stdout_buffer: DEFAULT_STDOUT_BUFFER,
            log_filter: None,
            install_subscriber: true,
            install_recorder: true,
            trust_remote_sampling: true,
            metrics_endpoint: None,
            logs_endpoint: None,
            metrics_exporters: None,
            otlp_logs: None,
            metric_export_interval: None,
            temporality: None,
            log_queue_size: None,
            #[cfg(feature = "pushgateway")]
            push: None,
            span_exporter: None,
            tracer_provider: None,
            layers: ExtraLayers::default(),
            metrics_recorder: None,
        }
    }

    /// Exports spans with `exporter` instead of OTLP (a vendor's exporter,
    /// an in-memory one in tests), through the same counted batch pipeline
    /// as the OTLP exporter (`otlp_exporter_spans_*`, the queue cap,
    /// [`Observability::exporters`]) and the same sampler and resource. The
    /// OTLP traces endpoint settings are then unused.
    ///
    /// ```
    /// use opentelemetry_sdk::trace::InMemorySpanExporter;
    /// use tower_observability::Observability;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let spans = InMemorySpanExporter::default();
    /// let obs = Observability::builder()
    ///     .span_exporter(spans.clone())
    ///     .install_subscriber(false)
    ///     .install_metrics_recorder(false)
    ///     .init()?;
    /// assert!(obs.tracer_provider().is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn span_exporter<E>(mut self, exporter: E) -> Self
    where
        E: opentelemetry_sdk::trace::SpanExporter + 'static,
    {
        self.span_exporter = Some(telemetry::UserExporter::new(exporter));
        self
    }

    /// Makes server spans with `provider` and joins `tracing` spans to it,
    /// instead of building a tracer provider: its processors, exporters and
    /// sampler are yours (wrap the sampler in
    /// [`RouteSampler`](crate::trace::RouteSampler) for per-route
    /// sampling; export through
    /// [`counted_span_processor`](crate::telemetry::counted_span_processor)
    /// to keep the crate's accounting). `init` does not set it as the global
    /// provider, and [`Observability::shutdown`] leaves it to you.
    pub fn tracer_provider(mut self, provider: SdkTracerProvider) -> Self {
        self.tracer_provider = Some(provider);
        self
    }

    /// Adds `layer` to the subscriber `init` installs, beside the crate's
    /// log lines and span layers (a second log format, a filter of your
    /// own, an error reporter). Has no effect with
    /// [`install_subscriber`](Self::install_subscriber)`(false)`: add
    /// [`Observability::layers`] to your subscriber then.
    ///
    /// ```no_run
    /// use tower_observability::Observability;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let obs = Observability::builder()
    ///     .with_layer(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
    ///     .init()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_layer<L>(self, layer: L) -> Self
    where
        L: Layer<Registry> + Send + Sync + 'static,
    {
        self.layers.0.lock().unwrap_or_else(PoisonError::into_inner).push(Box::new(layer));
        self
    }

    /// Records the layer's metrics into `recorder` instead of installing
    /// the crate's global Prometheus recorder (as
    /// [`install_metrics_recorder`](Self::install_metrics_recorder)`(false)`,
    /// but the series of [`Observability::layer`] go to `recorder`, without
    /// a global one); `/metrics` then answers 503: serve `recorder`'s
    /// rendering yourself.
    pub fn metrics_recorder(mut self, recorder: MetricsRecorder) -> Self {
        self.metrics_recorder = Some(recorder);
        self
    }

    /// `service.name` of the resource; `OTEL_SERVICE_NAME` overrides it.
    /// Defaults to `unknown_service` (OTel resource semconv).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// `service.version` of the resource, e.g. `env!("CARGO_PKG_VERSION")`.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// Base URL of the OTLP collector (Jaeger, the OTel Collector).
    ///
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// override it. Defaults to `http://localhost:4317` for gRPC and
    /// `http://localhost:4318` for HTTP, Jaeger's OTLP ports. With HTTP,
    /// `/v1/traces` is appended to a base URL.
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Transport to the collector; `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`,
    /// `http/protobuf`) overrides it. Defaults to [`OtlpProtocol::Grpc`].
    pub fn otlp_protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Head sampler of the tracer provider. When unset, or when
    /// `OTEL_TRACES_SAMPLER` is set, the SDK reads `OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`).
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = Some(sampler);
        self
    }

    /// Whether a caller's sampling decision is honoured. With `false`, the
    /// sampled flag of a *remote* parent (`traceparent` from a client) is
    /// ignored and this service's sampler decides, as for a new trace; the
    /// trace id is still continued. Use it on edge services, so that
    /// unauthenticated callers cannot force sampling (and export costs) on
    /// you. Defaults to `true` (W3C Trace Context, parent-based sampling).
    pub fn trust_remote_sampling(mut self, trust: bool) -> Self {
        self.trust_remote_sampling = trust;
        self
    }

    /// Format of log lines; defaults to [`LogFormat::Json`].
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.log_format = format;
        self
    }

    /// How many bytes of log lines may wait for standard output. Defaults to
    /// 8 MiB (some 20 000 access-log lines).
    ///
    /// A request's thread appends its formatted line to a buffer (one per
    /// thread, as far as `2 x cores` buffers go, at most 64, each a share of
    /// `bytes` and at least 64 KiB); a thread of its own (`log-lines`) writes
    /// what has accumulated every 20 ms, or as soon as a buffer is half full,
    /// one `write(2)` per buffer, and sleeps while nothing is logged. The
    /// request's thread does not wait for standard output: when its buffer
    /// is full (standard output slower than the requests, e.g. a stalled
    /// pipe), the line is dropped and counted in
    /// `tower_observability_log_lines_dropped_total`, as are the lines of a
    /// batch whose write fails. A line longer than a buffer is written by
    /// the thread that logs it. Lines of one thread keep their order; lines
    /// of different threads come out in batches, so out of order by about a
    /// batch (each carries its timestamp). Dropping the [`Observability`]
    /// writes what is buffered (waiting at most a second) and later lines are
    /// written directly; a process that exits without dropping it loses what
    /// was still buffered (at most the last 20 ms or so).
    ///
    /// With `0`, each line is written by the thread that logs it, blocking
    /// while standard output is: nothing is dropped, and a slow reader slows
    /// the requests.
    pub fn stdout_buffer(mut self, bytes: usize) -> Self {
        self.stdout_buffer = bytes;
        self
    }

    /// Log filter directives in `RUST_LOG` syntax, used when `RUST_LOG` is
    /// unset. Defaults to `info`.
    pub fn log_filter(mut self, directives: impl Into<String>) -> Self {
        self.log_filter = Some(directives.into());
        self
    }

    /// Which metrics exporters run: [`MetricsExporters::PROMETHEUS`] (the
    /// default: `/metrics`), [`MetricsExporters::OTLP`] (pushed to the
    /// collector, `/metrics` answers 503), [`MetricsExporters::BOTH`] (one
    /// recording, both), [`MetricsExporters::NONE`].
    /// `OTEL_METRICS_EXPORTER` (`prometheus`, `otlp`, `otlp,prometheus`,
    /// `none`) overrides it. OTLP metrics use the traces' protocol and
    /// endpoint rules (`OTEL_EXPORTER_OTLP_METRICS_*` first), path
    /// `/v1/metrics` over HTTP.
    pub fn metrics_exporters(mut self, exporters: MetricsExporters) -> Self {
        self.metrics_exporters = Some(exporters);
        self
    }

    /// Full URL OTLP metrics are sent to (used as given, no path appended);
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` and
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` override it. Defaults to the
    /// [`otlp_endpoint`](Self::otlp_endpoint) rules.
    pub fn otlp_metrics_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.metrics_endpoint = Some(endpoint.into());
        self
    }

    /// How often metrics are pushed over OTLP (the periodic reader's
    /// interval); `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds) overrides
    /// it. Defaults to 60 s (OTel SDK environment variables). Zero is an
    /// [`InitError::InvalidSetting`].
    pub fn metric_export_interval(mut self, interval: Duration) -> Self {
        self.metric_export_interval = Some(interval);
        self
    }

    /// Aggregation temporality of OTLP metrics;
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` (`cumulative`,
    /// `delta`) overrides it. Defaults to cumulative (what Prometheus and
    /// the Collector's Prometheus exporter expect).
    pub fn metrics_temporality(mut self, temporality: Temporality) -> Self {
        self.temporality = Some(temporality);
        self
    }

    /// Whether the process's `tracing` events (the access log included)
    /// are also pushed as OTLP log records, each one inside a request with
    /// its server span's trace id and span id and a `request_id`
    /// attribute. `OTEL_LOGS_EXPORTER` (`otlp`, `none`) overrides it.
    /// Defaults to `false` (`none`): stdout only. The same filter as the
    /// stdout lines (`RUST_LOG`) applies.
    pub fn otlp_logs(mut self, enabled: bool) -> Self {
        self.otlp_logs = Some(enabled);
        self
    }

    /// Full URL OTLP logs are sent to (used as given);
    /// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` and `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// override it. Defaults to the [`otlp_endpoint`](Self::otlp_endpoint)
    /// rules, path `/v1/logs` over HTTP.
    pub fn otlp_logs_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.logs_endpoint = Some(endpoint.into());
        self
    }

    /// How many log records wait for export at most; a record that finds
    /// the queue full is dropped and counted
    /// (`otlp_exporter_log_records_dropped_total`), never waited for.
    /// `OTEL_BLRP_MAX_QUEUE_SIZE` overrides it; the other `OTEL_BLRP_*`
    /// (schedule delay 1000 ms, batch size 512, export timeout 30000 ms)
    /// are read from the environment. Defaults to 2048; zero is an
    /// [`InitError::InvalidSetting`].
    pub fn log_queue_size(mut self, records: usize) -> Self {
        self.log_queue_size = Some(records);
        self
    }

    /// Whether to install a global `tracing` subscriber (stdout logs, the
    /// OTel span layers, the OTLP log layer). Defaults to `true`; with
    /// `false`, add [`Observability::layers`] to your own subscriber (without
    /// it, spans are still exported but log lines do not join them, no log
    /// record is exported and partial successes are not counted).
    pub fn install_subscriber(mut self, install: bool) -> Self {
        self.install_subscriber = install;
        self
    }

    /// Whether to install the global Prometheus `metrics` recorder. Defaults
    /// to `true`; with `false`, `/metrics` answers 503 and metrics go to
    /// whatever recorder you installed (build it from
    /// [`prometheus_builder`](crate::prometheus_builder) to keep the crate's histogram buckets).
    pub fn install_metrics_recorder(mut self, install: bool) -> Self {
        self.install_recorder = install;
        self
    }

    /// Pushes the metrics to a Prometheus Pushgateway every `interval`, and
    /// once more when the [`Observability`] is shut down or dropped: for
    /// short-lived jobs that Prometheus cannot scrape. `endpoint` is the
    /// full URL of the job's group, `http://pushgateway:9091/metrics/job/<job>`
    /// (add `/instance/<name>` and other grouping labels as the Pushgateway
    /// API says). Each push is a `PUT` of the whole rendering, which
    /// replaces the group's metrics.
    ///
    /// Uses metrics-exporter-prometheus' push-gateway mode, on a runtime of
    /// its own: a Pushgateway that is down or slow never delays the
    /// application (its failures are logged by the exporter); the push at
    /// shutdown waits at most 5 seconds. The pushed recorder is the one
    /// recording: `/metrics` serves it, and the OTLP push reads the same
    /// `metrics` calls. The push is set in code, not by
    /// `OTEL_METRICS_EXPORTER`, and runs whatever that says: with `otlp` or
    /// `none` the Prometheus recording is kept for the push alone and
    /// `/metrics` still answers 503. Has no effect (one warning at `init`)
    /// with [`install_metrics_recorder`](Self::install_metrics_recorder)`(false)`.
    ///
    /// A Pushgateway is for batch jobs; a long-running service is scraped
    /// (`/metrics`). `init` fails with [`InitError::Pushgateway`] for a
    /// URL that is not `http(s)` or a zero interval.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tower_observability::Observability;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let obs = Observability::builder()
    ///     .service_name("nightly-export")
    ///     .push_gateway("http://127.0.0.1:9091/metrics/job/nightly-export", Duration::from_secs(10))
    ///     .init()?;
    /// // ... the job's work ...
    /// obs.shutdown(); // pushes the final figures
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "pushgateway")]
    pub fn push_gateway(mut self, endpoint: impl Into<String>, interval: Duration) -> Self {
        self.push = Some(telemetry::PushConfig { endpoint: endpoint.into(), interval });
        self
    }

    /// Installs everything and returns the [`Observability`] handle, which
    /// flushes pending spans, metrics and log records when dropped.
    ///
    /// Every `OTEL_*` variable is checked first: a value that does not
    /// parse is an [`InitError::InvalidEnvVar`] and nothing is installed; a
    /// variable this build does not read is logged once, by name, as a
    /// warning. The SDK's own log events (its `internal-logs`) go to the
    /// installed subscriber, those of its setup included.
    ///
    /// The OTLP exporters connect lazily, on threads of their own: an absent
    /// or slow collector never fails `init` nor slows a request; spans and
    /// log records that cannot be sent are dropped once their batch queue
    /// (2048, `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BLRP_MAX_QUEUE_SIZE`) is full,
    /// and counted.
    ///
    /// # Errors
    ///
    /// See [`InitError`]. A subscriber or recorder already installed is an
    /// error value, never a panic.
    pub fn init(self) -> Result<Observability, InitError> {
        if self.install_subscriber && global_subscriber_set() {
            return Err(InitError::SubscriberAlreadyInstalled);
        }
        let log_filter = telemetry::log_filter(self.log_filter.as_deref())?;
        let service_name = telemetry::env("OTEL_SERVICE_NAME")
            .or_else(|| self.service_name.clone())
            .unwrap_or_else(|| "unknown_service".to_owned());

        // Everything that can be refused is checked before anything global
        // is installed.
        let opts = self.options(&service_name);
        let mut plan = telemetry::plan(&opts)?;
        let warnings = std::mem::take(&mut plan.warnings);
        let deferred = Deferred::default();
        let pipelines = telemetry::build(plan, &opts, &deferred)?;

        #[cfg(feature = "monitoring")]
        let started = Instant::now();
        let provider = match &self.tracer_provider {
            Some(provider) => Some(provider.clone()),
            None => pipelines.tracer.as_ref().map(|(provider, _, _)| provider.clone()),
        };
        let layer = default_layer(self.follows_parent_sampling(), provider.as_ref());
        let layer = match &self.metrics_recorder {
            Some(recorder) => layer.recorder(recorder.clone()),
            None => layer,
        };
        let mut obs = Observability {
            service_name,
            service_version: self.service_version.clone().unwrap_or_default(),
            #[cfg(feature = "monitoring")]
            started,
            log_directives: self.log_filter.clone(),
            prometheus: pipelines.prometheus,
            provider,
            tracer: pipelines.tracer.map(|(_, pipeline, endpoint)| (pipeline, endpoint)),
            meter: pipelines.meter,
            logger: pipelines.logger,
            layer,
            _upkeep: pipelines.upkeep,
            runtime: pipelines.runtime,
            #[cfg(feature = "pushgateway")]
            pusher: pipelines.pusher,
            _stdout: None,
        };
        if self.install_subscriber {
            let (writer, guard) = telemetry::Stdout::buffered(
                self.stdout_buffer,
                MetricsRecorder::scope(self.metrics_recorder.as_ref(), || {
                    ::metrics::describe_counter!(
                        telemetry::LOG_LINES_DROPPED,
                        "Log lines dropped because the queue to standard output was full."
                    );
                    ::metrics::counter!(telemetry::LOG_LINES_DROPPED)
                }),
            )?;
            obs._stdout = guard;
            // The SDK's export errors and partial successes are counted and
            // logged once per episode by the pipelines, not per batch.
            let stdout =
                log_filter.and(tracing_subscriber::filter::filter_fn(|m| !telemetry::accounted_for(m)));
            let extra = std::mem::take(&mut *self.layers.0.lock().unwrap_or_else(PoisonError::into_inner));
            // `None` without extra layers: an empty `Vec` layer answers
            // `Interest::never` and would silence every callsite beside
            // per-layer filters.
            let extra = (!extra.is_empty()).then_some(extra);
            tracing_subscriber::registry()
                .with(extra)
                .with(telemetry::fmt_layer(self.log_format, writer).with_filter(stdout))
                .with(obs.layers())
                .try_init()
                .map_err(|_| InitError::SubscriberAlreadyInstalled)?;
        }
        for warning in warnings {
            tracing::warn!(target: "tower_observability::telemetry", "{warning}");
        }
        deferred.replay();
        Ok(obs)
    }

    fn options(&self, service_name: &str) -> telemetry::Options {
        telemetry::Options {
            service_name: service_name.to_owned(),
            service_version: self.service_version.clone(),
            endpoint: self.endpoint.clone(),
            protocol: self.protocol,
            metrics_endpoint: self.metrics_endpoint.clone(),
            logs_endpoint: self.logs_endpoint.clone(),
            metrics_exporters: self.metrics_exporters,
            otlp_logs: self.otlp_logs,
            metric_export_interval: self.metric_export_interval,
            temporality: self.temporality,
            log_queue_size: self.log_queue_size,
            sampler: self.sampler.clone(),
            trust_remote_sampling: self.trust_remote_sampling,
            install_recorder: self.install_recorder && self.metrics_recorder.is_none(),
            #[cfg(feature = "pushgateway")]
            push: self.push.clone(),
            span_exporter: self.span_exporter.clone(),
            tracer_provider: self.tracer_provider.is_some(),
        }
    }

    /// Whether the tracer's sampler follows a remote parent's sampled flag:
    /// remote sampling trusted, and a parent-based sampler (the SDK default,
    /// `parentbased_always_on`; `OTEL_TRACES_SAMPLER` wins over the builder).
    fn follows_parent_sampling(&self) -> bool {
        if !self.trust_remote_sampling {
            return false;
        }
        match telemetry::env("OTEL_TRACES_SAMPLER") {
            Some(name) => name.trim().starts_with("parentbased_"),
            None => self.sampler.as_ref().is_none_or(|s| matches!(s, Sampler::ParentBased(_))),
        }
    }
}

/// Whether a global `tracing` subscriber is installed. Asked on a thread of
/// its own: `tracing::dispatcher::has_been_set` also answers `true` once any
/// thread has held a scoped default (the pipelines hold one while they are
/// built), and the calling thread may hold one too.
fn global_subscriber_set() -> bool {
    let global = || tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>());
    std::thread::scope(|scope| match std::thread::Builder::new().spawn_scoped(scope, global) {
        Ok(asked) => asked.join().unwrap_or(false),
        // No thread to ask from: the cruder answer (see above).
        Err(_) => tracing::dispatcher::has_been_set(),
    })
}
