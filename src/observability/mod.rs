//! The [`Observability`] builder and guard: one call that installs the
//! metrics recorder (Prometheus, OTLP or both), the OTLP traces, metrics
//! and logs pipelines and the `tracing` subscriber (the pipelines of
//! [`telemetry`]), and the handle that builds the layer and the monitoring
//! router and flushes every signal when dropped.
//!
//! See [`Observability`] for the entry point and [`ObservabilityBuilder`] for
//! every setting and the environment variables it reads.

mod builder;

#[cfg(feature = "monitoring")]
use std::time::Instant;
use std::{fmt, sync::Arc, time::Duration};

use metrics_exporter_prometheus::PrometheusHandle;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{logs::SdkLoggerProvider, metrics::SdkMeterProvider, trace::SdkTracerProvider};
use tracing_subscriber::{
    Layer as _,
    filter::{FilterExt as _, LevelFilter, Targets},
};

pub use self::builder::ObservabilityBuilder;
#[cfg(feature = "monitoring")]
use crate::monitoring::{MonitoringRouter, ServiceInfo};
use crate::{
    layer::ObservabilityLayer,
    metrics::HttpStats,
    telemetry::{self, ExporterRuntime, Pipeline, Upkeep, otel_layer},
};

/// How long [`Observability`] waits for pending spans, metrics and log
/// records at shutdown (the three are flushed side by side).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

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
        capacity: totals.capacity,
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
    #[cfg(feature = "pushgateway")]
    pusher: Option<telemetry::Pusher>,
    /// Writes the queued log lines when dropped, last.
    _stdout: Option<telemetry::StdoutGuard>,
}

impl Observability {
    /// A builder with the defaults described on each setter.
    pub fn builder() -> ObservabilityBuilder {
        ObservabilityBuilder::new()
    }

    /// The layer stacking request id, span and metrics, in that order; see
    /// [`ObservabilityLayer`]. Every call shares the same metric caches.
    pub fn layer(&self) -> ObservabilityLayer {
        self.layer.clone()
    }

    /// The router fragment serving `/metrics`, `/health/live`,
    /// `/health/ready`, `/monitoring` (the dashboard),
    /// `/monitoring/overview`, `/monitoring/status`, `/monitoring/settings`
    /// and `/monitoring/alerts` with its history, rules and silences (see
    /// [`MonitoringRouter`]).
    ///
    /// It evaluates the default alert rules,
    /// [`AlertRule::defaults`](crate::alerts::AlertRule::defaults), every
    /// [`ALERT_EVALUATION_INTERVAL`](crate::monitoring::ALERT_EVALUATION_INTERVAL)
    /// (15 s) over the layer's windows, the cache hit ratios and, once a
    /// health registry is given, readiness:
    ///
    /// | rule | fires when | for | severity |
    /// |---|---|---|---|
    /// | `HighErrorRatio` | more than 5 % of the requests of the last 5 m failed (≥ 20 requests) | 1 m | critical |
    /// | `HighLatencyP95` | p95 latency over the last 5 m above 2 s (≥ 20 requests) | 5 m | warning |
    /// | `LowCacheHitRatio` | a cache's hit ratio over the last 15 m below 70 % (≥ 20 lookups) | 5 m | warning |
    /// | `ReadinessUnhealthy` | the readiness checks report unhealthy | 1 m | critical |
    ///
    /// Replace them with
    /// [`alert_engine`](crate::monitoring::MonitoringRouter::alert_engine),
    /// or turn them off with
    /// [`without_alerts`](crate::monitoring::MonitoringRouter::without_alerts).
    /// The evaluation task starts when the router is turned into an axum
    /// `Router` inside a tokio runtime.
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
        let router = MonitoringRouter::new(self.prometheus.clone(), Arc::new(info), self.layer.clone())
            .alert_engine(
                crate::alerts::AlertEngine::with_default_rules(),
                crate::monitoring::ALERT_EVALUATION_INTERVAL,
            );
        let pipelines = self.pipelines();
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

    /// What each running OTLP export pipeline (spans, metric points, log
    /// records) has done since the start, as the overview and
    /// `/monitoring/status` show it: exported, failed, dropped, rejected,
    /// queued now and the queue's size. Empty when no OTLP signal is
    /// exported.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let obs = tower_observability::Observability::builder().init()?;
    /// for exporter in obs.exporters() {
    ///     println!("{}: {} dropped", exporter.signal, exporter.dropped);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "monitoring")]
    #[must_use]
    pub fn exporters(&self) -> Vec<crate::monitoring::ExporterOverview> {
        self.pipelines().iter().map(|p| exporter_overview(p.totals())).collect()
    }

    /// The running OTLP pipelines: spans, metric points, log records.
    #[cfg(feature = "monitoring")]
    fn pipelines(&self) -> Vec<Arc<Pipeline>> {
        [
            self.tracer.as_ref().map(|(pipeline, _)| Arc::clone(pipeline)),
            self.meter.as_ref().and_then(|(_, counting, _)| counting.get().cloned()),
            self.logger.as_ref().map(|(_, pipeline, _)| Arc::clone(pipeline)),
        ]
        .into_iter()
        .flatten()
        .collect()
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

    /// The final push to the Pushgateway, if one is set.
    fn push_final(&mut self) {
        #[cfg(feature = "pushgateway")]
        if let Some(pusher) = self.pusher.take() {
            pusher.push_now();
        }
    }

    /// Flushes pending spans, metrics and log records and shuts the
    /// exporters down, side by side, waiting at most 5 seconds, then pushes
    /// the metrics to the Pushgateway, if one is set (at most 5 seconds
    /// more). Dropping `Observability` does the same. An exporter that does
    /// not finish in time is logged with what it abandons (spans and log
    /// records still queued).
    pub fn shutdown(mut self) {
        self.shutdown_pipelines();
        self.push_final();
    }

    fn shutdown_pipelines(&mut self) {
        // What the layers buffered reaches the OTLP metrics before their
        // last export.
        crate::metrics::flush();
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
        self.push_final();
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
