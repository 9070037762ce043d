//! The [`Observability`] builder and guard: one call that installs the
//! Prometheus recorder, the OTLP tracer provider and the `tracing`
//! subscriber (the pipelines of [`telemetry`]), and the
//! handle that builds the layer and the monitoring router and flushes spans
//! when dropped.
//!
//! See [`Observability`] for the entry point and [`ObservabilityBuilder`] for
//! every setting and the environment variables it reads.

#[cfg(feature = "monitoring")]
use std::time::Instant;
use std::{fmt, sync::Arc, time::Duration};

use metrics_exporter_prometheus::PrometheusHandle;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::{Layer as _, layer::SubscriberExt, util::SubscriberInitExt};

#[cfg(feature = "monitoring")]
use crate::monitoring::{MonitoringRouter, ServiceInfo};
use crate::{
    layer::ObservabilityLayer,
    metrics::HttpStats,
    telemetry::{
        self, ExporterRuntime, InitError, LogFormat, OtlpProtocol, Pipeline, SpanExportStats, Upkeep,
        otel_layer,
    },
};

/// How long [`Observability`] waits for pending spans at shutdown.
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
    #[cfg(feature = "pushgateway")]
    push: Option<telemetry::PushConfig>,
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

    /// Whether to install a global `tracing` subscriber (logs and the OTel
    /// layer). Defaults to `true`; with `false`, add
    /// [`Observability::otel_layer`] to your own subscriber.
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
    /// shutdown waits at most 5 seconds. `/metrics` still serves the same
    /// recorder. Has no effect with
    /// [`install_metrics_recorder`](Self::install_metrics_recorder)`(false)`.
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
    /// flushes pending spans when dropped.
    ///
    /// The OTLP exporter connects lazily, on a thread of its own: an absent
    /// or slow collector never fails `init` nor slows a request; spans that
    /// cannot be sent are dropped once the batch queue (2048 spans,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`) is full.
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
        let export = if telemetry::sdk_disabled() {
            None
        } else {
            let protocol = telemetry::resolve_protocol(self.protocol)?;
            Some((protocol, telemetry::resolve_endpoint(self.endpoint.as_deref(), protocol)?))
        };

        // The recorder first: the span pipeline registers its metrics in it.
        #[cfg(feature = "pushgateway")]
        let pusher = match &self.push {
            Some(config) if self.install_recorder => {
                let pusher = telemetry::install_pushing_recorder(crate::prometheus_builder(), config)?;
                crate::metrics::describe();
                Some(pusher)
            }
            _ => None,
        };
        #[cfg(feature = "pushgateway")]
        let (prometheus, upkeep) = match &pusher {
            // The push-gateway exporter runs its own upkeep.
            Some(pusher) => (Some(pusher.handle()), None),
            None if self.install_recorder => {
                let handle = telemetry::install_recorder()?;
                (Some(handle.clone()), Some(Upkeep::start(handle)?))
            }
            None => (None, None),
        };
        #[cfg(not(feature = "pushgateway"))]
        let prometheus = if self.install_recorder { Some(telemetry::install_recorder()?) } else { None };
        #[cfg(not(feature = "pushgateway"))]
        let upkeep = prometheus.clone().map(Upkeep::start).transpose()?;
        let tracing = export
            .map(|(protocol, endpoint)| {
                telemetry::tracer_provider(
                    &service_name,
                    self.service_version.as_deref(),
                    self.sampler.clone(),
                    self.trust_remote_sampling,
                    protocol,
                    &endpoint,
                )
                .map(|(provider, runtime, pipeline)| (provider, runtime, pipeline, endpoint))
            })
            .transpose()?;

        #[cfg(feature = "monitoring")]
        let started = Instant::now();
        let (provider, runtime, pipeline, endpoint) = match tracing {
            Some((provider, runtime, pipeline, endpoint)) => {
                (Some(provider), runtime, Some(pipeline), Some(endpoint))
            }
            None => (None, None, None, None),
        };

        let layer = default_layer(self.follows_parent_sampling(), provider.as_ref());
        let obs = Observability {
            service_name,
            service_version: self.service_version.clone().unwrap_or_default(),
            #[cfg(feature = "monitoring")]
            started,
            prometheus,
            provider,
            layer,
            endpoint,
            _upkeep: upkeep,
            runtime,
            pipeline,
            #[cfg(feature = "pushgateway")]
            pusher,
        };
        if self.install_subscriber {
            tracing_subscriber::registry()
                .with(telemetry::fmt_layer(self.log_format).with_filter(log_filter))
                .with(obs.otel_layer())
                .try_init()
                .map_err(|_| InitError::SubscriberAlreadyInstalled)?;
        }
        Ok(obs)
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
    prometheus: Option<PrometheusHandle>,
    provider: Option<SdkTracerProvider>,
    layer: ObservabilityLayer,
    endpoint: Option<String>,
    _upkeep: Option<Upkeep>,
    runtime: Option<ExporterRuntime>,
    pipeline: Option<Arc<Pipeline>>,
    #[cfg(feature = "pushgateway")]
    pusher: Option<telemetry::Pusher>,
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
            #[cfg(feature = "pushgateway")]
            push: None,
        }
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
        MonitoringRouter::new(self.prometheus.clone(), Arc::new(info), self.layer.clone())
            .span_pipeline(self.pipeline.clone())
            .alert_engine(
                crate::alerts::AlertEngine::with_default_rules(),
                crate::monitoring::ALERT_EVALUATION_INTERVAL,
            )
    }

    /// The in-process windowed HTTP figures (rates, error ratios, latency
    /// quantiles over 1, 5 and 15 minutes) of [`layer`](Self::layer), the
    /// same the overview and the alert rules read.
    pub fn http_stats(&self) -> HttpStats {
        self.layer.http_stats()
    }

    /// The figures of the span export pipeline (queue, sent, failed,
    /// dropped); `None` when trace export is off.
    #[must_use]
    pub fn span_export_stats(&self) -> Option<SpanExportStats> {
        self.pipeline.as_ref().map(|p| p.stats())
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
        self.endpoint.as_deref()
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

    /// Flushes pending spans and shuts the exporter down, waiting at most
    /// 5 seconds, then pushes the metrics to the Pushgateway, if one is
    /// set (at most 5 seconds more). Dropping `Observability` does the same.
    pub fn shutdown(mut self) {
        self.shutdown_provider();
        self.push_final();
    }

    fn push_final(&mut self) {
        #[cfg(feature = "pushgateway")]
        if let Some(pusher) = self.pusher.take() {
            pusher.push_now();
        }
    }

    fn shutdown_provider(&mut self) {
        let Some(provider) = self.provider.take() else { return };
        let shutdown = move || {
            if let Err(err) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                tracing::warn!(error = %err, "span exporter shutdown did not complete");
            }
        };
        // The exporter runs on its own thread and runtime, so blocking here
        // cannot starve it; in a multi-thread runtime, tell tokio we block.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(shutdown),
            _ => shutdown(),
        }
    }
}

impl Drop for Observability {
    fn drop(&mut self) {
        self.shutdown_provider();
        self.push_final();
        drop(self.runtime.take());
    }
}

impl fmt::Debug for Observability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observability")
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("otlp_endpoint", &self.endpoint)
            .field("prometheus", &self.prometheus.is_some())
            .finish_non_exhaustive()
    }
}
