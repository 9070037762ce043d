//! The [`Observability`] builder and guard: one call that installs the
//! metrics recorder (Prometheus, OTLP or both), the OTLP traces, metrics
//! and logs pipelines and the `tracing` subscriber (the pipelines of
//! [`telemetry`]), and the handle that builds the layer and the monitoring
//! router and flushes every signal when dropped.
//!
//! See [`Observability`] for the entry point and [`ObservabilityBuilder`] for
//! every setting and the environment variables it reads.

#[cfg(feature = "monitoring")]
use std::time::Instant;
use std::{fmt, sync::Arc, time::Duration};

use metrics_exporter_prometheus::PrometheusHandle;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    logs::SdkLoggerProvider,
    metrics::{SdkMeterProvider, Temporality},
    trace::{Sampler, SdkTracerProvider},
};
use tracing_subscriber::{
    Layer as _,
    filter::{FilterExt as _, LevelFilter, Targets},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

#[cfg(feature = "monitoring")]
use crate::monitoring::{MonitoringRouter, ServiceInfo};
use crate::{
    layer::ObservabilityLayer,
    metrics::HttpStats,
    telemetry::{
        self, Deferred, ExporterRuntime, InitError, LogFormat, MetricsExporters, OtlpProtocol, Pipeline,
        Upkeep, otel_layer,
    },
};

/// How long [`Observability`] waits for pending spans, metrics and log
/// records at shutdown (the three are flushed side by side).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

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
}

impl ObservabilityBuilder {
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
        if self.install_subscriber && tracing::dispatcher::has_been_set() {
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
        let upkeep = pipelines.prometheus.clone().map(Upkeep::start).transpose()?;

        #[cfg(feature = "monitoring")]
        let started = Instant::now();
        let provider = pipelines.tracer.as_ref().map(|(provider, _, _)| provider.clone());
        let layer = default_layer(self.follows_parent_sampling(), provider.as_ref());
        let obs = Observability {
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
            _upkeep: upkeep,
            runtime: pipelines.runtime,
        };
        if self.install_subscriber {
            // The SDK's export errors and partial successes are counted and
            // logged once per episode by the pipelines, not per batch.
            let stdout =
                log_filter.and(tracing_subscriber::filter::filter_fn(|m| !telemetry::accounted_for(m)));
            tracing_subscriber::registry()
                .with(telemetry::fmt_layer(self.log_format).with_filter(stdout))
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
            install_recorder: self.install_recorder,
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

/// A pipeline's counts as the overview shows them.
#[cfg(feature = "monitoring")]
fn exporter_overview(totals: telemetry::PipelineTotals) -> crate::monitoring::ExporterOverview {
    crate::monitoring::ExporterOverview {
        signal: totals.signal,
        exported: totals.exported,
        failed: totals.failed,
        dropped: totals.dropped,
        rejected: totals.rejected,
        queued: totals.queued,
    }
}

/// The layer of [`Observability::layer`]: the monitoring routes excluded;
/// `follow_parent_sampling` when the sampler is parent-based; server spans
/// made by `provider`'s tracer, none without a provider.
fn default_layer(follow_parent_sampling: bool, provider: Option<&SdkTracerProvider>) -> ObservabilityLayer {
    let mut trace = crate::trace::HttpTraceLayer::new().follow_parent_sampling(follow_parent_sampling);
    trace = match provider {
        Some(provider) => trace.tracer(provider.tracer_with_scope(crate::trace::instrumentation_scope())),
        // `OTEL_SDK_DISABLED=true`: no span is built at all.
        None => trace.without_spans(),
    };
    let layer = ObservabilityLayer::new().trace(trace);
    #[cfg(feature = "monitoring")]
    let layer = layer.exclude_routes(crate::monitoring::ROUTES);
    layer
}

/// The installed pipeline: the handle to build layers and the monitoring
/// router from, and the guard that flushes spans when dropped.
///
/// # Example
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use tower_observability::Observability;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let obs = Observability::builder()
///     .service_name("users-api")
///     .service_version(env!("CARGO_PKG_VERSION"))
///     .init()?;
///
/// let app = Router::new()
///     .route("/users/{id}", get(|| async { "user" }))
///     .layer(obs.layer())
///     .merge(obs.monitoring_router());
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await?;
/// obs.shutdown(); // or let it drop: pending spans are flushed either way
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping Observability shuts the span exporter down"]
pub struct Observability {
    service_name: String,
    service_version: String,
    /// When the pipeline was set up: the uptime of the monitoring routes.
    #[cfg(feature = "monitoring")]
    started: Instant,
    /// The builder's log filter, for the OTLP log layer's filter.
    log_directives: Option<String>,
    prometheus: Option<PrometheusHandle>,
    provider: Option<SdkTracerProvider>,
    /// The span pipeline and the URL spans go to.
    tracer: Option<(Arc<Pipeline>, String)>,
    meter: Option<(SdkMeterProvider, telemetry::MetricsCounting, String)>,
    logger: Option<(SdkLoggerProvider, Arc<Pipeline>, String)>,
    layer: ObservabilityLayer,
    _upkeep: Option<Upkeep>,
    runtime: Option<ExporterRuntime>,
}

impl Observability {
    /// A builder with the defaults described on each setter.
    pub fn builder() -> ObservabilityBuilder {
        ObservabilityBuilder {
            service_name: None,
            service_version: None,
            endpoint: None,
            protocol: None,
            sampler: None,
            log_format: LogFormat::default(),
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
        }
    }

    /// The layer stacking request id, span and metrics, in that order; see
    /// [`ObservabilityLayer`]. Every call shares the same metric caches.
    pub fn layer(&self) -> ObservabilityLayer {
        self.layer.clone()
    }

    /// The router fragment serving `/metrics`, `/health/live`,
    /// `/health/ready`, `/monitoring` (the dashboard),
    /// `/monitoring/overview` and `/monitoring/alerts`, with the default
    /// alert rules evaluated every 15 s (see
    /// [`MonitoringRouter::alert_engine`](crate::monitoring::MonitoringRouter::alert_engine)).
    ///
    /// Merge it before or after applying [`layer`](Self::layer): either way
    /// monitoring requests are neither traced nor measured, and requests that
    /// match no route (404) are observed exactly once.
    #[cfg(feature = "monitoring")]
    pub fn monitoring_router(&self) -> MonitoringRouter {
        let info = ServiceInfo {
            name: self.service_name.clone(),
            version: self.service_version.clone(),
            started: self.started,
        };
        let router = MonitoringRouter::new(self.prometheus.clone(), Arc::new(info), self.layer.clone());
        let pipelines: Vec<Arc<Pipeline>> = [
            self.tracer.as_ref().map(|(pipeline, _)| Arc::clone(pipeline)),
            self.meter.as_ref().and_then(|(_, counting, _)| counting.get().cloned()),
            self.logger.as_ref().map(|(_, pipeline, _)| Arc::clone(pipeline)),
        ]
        .into_iter()
        .flatten()
        .collect();
        if pipelines.is_empty() {
            return router;
        }
        router.exporters(Arc::new(move || pipelines.iter().map(|p| exporter_overview(p.totals())).collect()))
    }

    /// The in-process windowed HTTP figures (rates, error ratios, latency
    /// quantiles over 1, 5 and 15 minutes) of [`layer`](Self::layer), the
    /// same the overview and the alert rules read.
    pub fn http_stats(&self) -> HttpStats {
        self.layer.http_stats()
    }

    /// The Prometheus handle, when this crate installed the recorder.
    pub fn prometheus_handle(&self) -> Option<&PrometheusHandle> {
        self.prometheus.as_ref()
    }

    /// The tracer provider; `None` when `OTEL_SDK_DISABLED=true`.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// The URL spans are exported to; `None` when tracing export is off.
    pub fn otlp_endpoint(&self) -> Option<&str> {
        self.tracer.as_ref().map(|(_, endpoint)| endpoint.as_str())
    }

    /// The URL metrics are pushed to; `None` unless OTLP metrics are on.
    pub fn otlp_metrics_endpoint(&self) -> Option<&str> {
        self.meter.as_ref().map(|(_, _, endpoint)| endpoint.as_str())
    }

    /// The URL log records are pushed to; `None` unless OTLP logs are on.
    pub fn otlp_logs_endpoint(&self) -> Option<&str> {
        self.logger.as_ref().map(|(_, _, endpoint)| endpoint.as_str())
    }

    /// The meter provider of OTLP metrics; `None` unless they are on.
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.meter.as_ref().map(|(provider, _, _)| provider)
    }

    /// The logger provider of OTLP logs; `None` unless they are on.
    pub fn logger_provider(&self) -> Option<&SdkLoggerProvider> {
        self.logger.as_ref().map(|(provider, _, _)| provider)
    }

    /// `service.name` as resolved from the builder and `OTEL_SERVICE_NAME`.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// The layers of [`otel_layer`] for this provider, for a subscriber
    /// you build yourself (see [`ObservabilityBuilder::install_subscriber`]);
    /// `None` when `OTEL_SDK_DISABLED=true`.
    pub fn otel_layer<S>(&self) -> Option<impl tracing_subscriber::Layer<S> + use<S>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        self.provider.as_ref().map(otel_layer)
    }

    /// Every layer the installed subscriber holds but the stdout lines, for
    /// a subscriber you build yourself (see
    /// [`ObservabilityBuilder::install_subscriber`]): the layers of
    /// [`otel_layer`](Self::otel_layer) (when spans are exported), the OTLP
    /// log layer (when logs are; filtered by `RUST_LOG` or the builder's
    /// filter, the exporters' own HTTP stack left out), and the layer that
    /// counts the collector's partial successes.
    ///
    /// ```no_run
    /// use tower_observability::Observability;
    /// use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let obs = Observability::builder().otlp_logs(true).install_subscriber(false).init()?;
    /// tracing_subscriber::registry()
    ///     .with(tracing_subscriber::fmt::layer()) // your own lines
    ///     .with(obs.layers())
    ///     .init();
    /// # Ok(())
    /// # }
    /// ```
    pub fn layers<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let logs = self.logger.as_ref().map(|(provider, _, _)| {
            let filter = telemetry::log_filter(self.log_directives.as_deref())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            // The exporters' HTTP stack and the SDK: their records would be
            // exported in turn.
            let internals = Targets::new()
                .with_default(LevelFilter::TRACE)
                .with_targets(telemetry::EXPORTER_TARGETS.iter().map(|t| (*t, LevelFilter::OFF)));
            telemetry::otlp_logs_layer(provider).with_filter(filter.and(internals))
        });
        // `Layer::and_then`, not `Option::and_then`.
        let traces_and_logs = tracing_subscriber::Layer::and_then(self.otel_layer(), logs);
        traces_and_logs.and_then(telemetry::sdk_events_layer())
    }

    /// Flushes pending spans, metrics and log records and shuts the
    /// exporters down, side by side, waiting at most 5 seconds. Dropping
    /// `Observability` does the same. An exporter that does not finish in
    /// time is logged with what it abandons (spans and log records still
    /// queued).
    pub fn shutdown(mut self) {
        self.shutdown_pipelines();
    }

    fn shutdown_pipelines(&mut self) {
        let tracer = self.provider.take().zip(self.tracer.as_ref().map(|(pipeline, _)| Arc::clone(pipeline)));
        let meter = self.meter.take().map(|(provider, _, _)| provider);
        let logger = self.logger.take().map(|(provider, pipeline, _)| (provider, pipeline));
        if tracer.is_none() && meter.is_none() && logger.is_none() {
            return;
        }
        let shutdown = move || {
            std::thread::scope(|scope| {
                let spans = tracer.map(|(provider, pipeline)| {
                    scope.spawn(move || {
                        provider
                            .shutdown_with_timeout(SHUTDOWN_TIMEOUT)
                            .err()
                            .map(|e| (e, pipeline.pending()))
                    })
                });
                let metrics = meter.map(|provider| {
                    scope.spawn(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT).err())
                });
                let logs = logger.map(|(provider, pipeline)| {
                    scope.spawn(move || {
                        provider
                            .shutdown_with_timeout(SHUTDOWN_TIMEOUT)
                            .err()
                            .map(|e| (e, pipeline.pending()))
                    })
                });
                if let Some(Ok(Some((error, abandoned)))) = spans.map(|h| h.join()) {
                    tracing::warn!(%error, abandoned, "span exporter shutdown did not complete: {abandoned} spans abandoned");
                }
                if let Some(Ok(Some(error))) = metrics.map(|h| h.join()) {
                    tracing::warn!(%error, "metric exporter shutdown did not complete: the last collection is lost");
                }
                if let Some(Ok(Some((error, abandoned)))) = logs.map(|h| h.join()) {
                    tracing::warn!(%error, abandoned, "log exporter shutdown did not complete: {abandoned} log records abandoned");
                }
            });
        };
        // The exporters run on their own threads and runtime, so blocking
        // here cannot starve them; in a multi-thread runtime, tell tokio we
        // block.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(shutdown),
            _ => shutdown(),
        }
    }
}

impl Drop for Observability {
    fn drop(&mut self) {
        self.shutdown_pipelines();
        drop(self.runtime.take());
    }
}

impl fmt::Debug for Observability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observability")
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("otlp_endpoint", &self.otlp_endpoint())
            .field("otlp_metrics_endpoint", &self.otlp_metrics_endpoint())
            .field("otlp_logs_endpoint", &self.otlp_logs_endpoint())
            .field("prometheus", &self.prometheus.is_some())
            .finish_non_exhaustive()
    }
}
