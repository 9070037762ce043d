//! One call that sets up the whole pipeline: the Prometheus recorder, the
//! OTLP tracer provider and the `tracing` subscriber.
//!
//! See [`Observability`] for the entry point and [`ObservabilityBuilder`] for
//! every setting and the environment variables it reads.

mod config;
mod exporter;
mod logs;
mod pipeline;
mod sampler;

pub use self::pipeline::{
    OTLP_EXPORTER_QUEUE_SPANS, OTLP_EXPORTER_SPANS_DROPPED, OTLP_EXPORTER_SPANS_EXPORTED,
    OTLP_EXPORTER_SPANS_FAILED,
};

use std::{
    fmt,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::Targets, layer::SubscriberExt, util::SubscriberInitExt,
};

pub use self::config::OtlpProtocol;
use self::exporter::ExporterRuntime;
use crate::{
    ObservabilityLayer,
    metrics::{
        DURATION_BUCKETS, HTTP_SERVER_REQUEST_BODY_SIZE, HTTP_SERVER_RESPONSE_BODY_SIZE, SIZE_BUCKETS,
    },
};

/// Targets the OTel layer of [`Observability::otel_layer`] leaves out: the
/// exporter's own HTTP stack (its spans would be exported in turn), and the
/// access log (`tower_observability::access`), whose event per request
/// would become an OTel span event per request (measured at +2.5 µs and 9
/// allocations a request) and adds nothing the span does not carry, and the
/// `tracing` span that carries a request's correlation for log lines
/// (`tower_observability::request`; the OTel server span is made by
/// [`HttpTraceLayer`](crate::trace::HttpTraceLayer) itself, see the
/// [trace module](crate::trace)). Use it when you build the OTel layer
/// yourself, and add a [`ServerSpanLayer`](crate::trace::ServerSpanLayer)
/// after that layer, so that log events inside a request reach its server
/// span.
pub const OTEL_LAYER_EXCLUDED_TARGETS: [&str; 8] = [
    "h2",
    "hyper",
    "tonic",
    "tower::",
    "reqwest",
    "opentelemetry",
    "tower_observability::access",
    REQUEST_SPAN_TARGET,
];

/// The target of the request's `tracing` span (see the [trace module](crate::trace)).
const REQUEST_SPAN_TARGET: &str = "tower_observability::request";

/// The `tracing` layers that feed `provider`, as [`Observability`] installs
/// them: a `tracing-opentelemetry` layer for the spans an application opens
/// (without source locations, thread ids or busy/idle times), followed by a
/// [`ServerSpanLayer`](crate::trace::ServerSpanLayer). Both take spans and
/// events at `INFO` and above, except [`OTEL_LAYER_EXCLUDED_TARGETS`]: the
/// exporter's own HTTP stack and the access log (the server span already
/// says what it says); the request's `tracing` span reaches only the
/// `ServerSpanLayer`.
///
/// ```
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let provider = SdkTracerProvider::builder().build();
/// let subscriber = tracing_subscriber::registry().with(tower_observability::otel_layer(&provider));
/// # drop(subscriber);
/// ```
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let tracer = provider.tracer_with_scope(crate::trace::instrumentation_scope());
    let internals = Targets::new()
        .with_default(tracing::Level::INFO)
        .with_targets(OTEL_LAYER_EXCLUDED_TARGETS.map(|t| (t, tracing_subscriber::filter::LevelFilter::OFF)));
    // The same filter, but taking the request's span, which the OTel layer
    // leaves out.
    let bridged = Targets::new().with_default(tracing::Level::INFO).with_targets(
        OTEL_LAYER_EXCLUDED_TARGETS
            .into_iter()
            .filter(|t| *t != REQUEST_SPAN_TARGET)
            .map(|t| (t, tracing_subscriber::filter::LevelFilter::OFF)),
    );
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(internals);
    // After the OTel layer: on entering a span, the server span's context is
    // attached last, so it is the current one.
    otel.and_then(crate::trace::ServerSpanLayer::new().with_filter(bridged))
}

/// How often the Prometheus recorder's upkeep runs (drains histogram samples).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// How long [`Observability`] waits for pending spans at shutdown.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// An error of [`ObservabilityBuilder::init`]. Nothing is installed globally
/// when `init` fails, except as noted on a variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A global `metrics` recorder was installed before; pass
    /// [`ObservabilityBuilder::install_metrics_recorder`]`(false)` to keep it.
    #[error("a global metrics recorder is already installed")]
    RecorderAlreadyInstalled,
    /// A global `tracing` subscriber was installed before; pass
    /// [`ObservabilityBuilder::install_subscriber`]`(false)` to keep it. The
    /// Prometheus recorder is not installed in that case.
    #[error("a global tracing subscriber is already installed")]
    SubscriberAlreadyInstalled,
    /// The collector endpoint is not an absolute `http://` URL.
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol this build cannot
    /// speak (`http/json`, or one whose feature is off).
    #[error("unsupported OTLP protocol {0:?} (expected \"grpc\" or \"http/protobuf\")")]
    UnsupportedProtocol(String),
    /// `RUST_LOG` or the builder's filter does not parse.
    #[error("invalid log filter: {0}")]
    InvalidLogFilter(String),
    /// The OTLP exporter could not be built. The Prometheus recorder is
    /// installed by then.
    #[error("failed to build the OTLP span exporter: {0}")]
    Exporter(String),
    /// The exporter's background thread could not start.
    #[error("failed to start the exporter thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Format of log lines written to standard output.
///
/// Both carry `request_id`, `trace_id` and `span_id` (of the request's
/// server span) on every line emitted inside a request, nested spans
/// included, so a line can be matched to its trace in Jaeger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (with `message`), `span` (name and fields of the current span),
    /// `request_id`, `trace_id`, `span_id`. The default: logs go to machines.
    #[default]
    Json,
    /// Human-readable lines, control characters escaped:
    /// `TIMESTAMP LEVEL target: message k=v request_id=.. trace_id=.. span_id=..`.
    Text,
}

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
    /// [`prometheus_builder`] to keep the crate's histogram buckets).
    pub fn install_metrics_recorder(mut self, install: bool) -> Self {
        self.install_recorder = install;
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
        let log_filter = self.build_log_filter()?;
        let service_name = config::env("OTEL_SERVICE_NAME")
            .or_else(|| self.service_name.clone())
            .unwrap_or_else(|| "unknown_service".to_owned());

        // Everything that can be refused is checked before anything global
        // is installed.
        let export = if config::sdk_disabled() {
            None
        } else {
            let protocol = config::resolve_protocol(self.protocol)?;
            Some((protocol, config::resolve_endpoint(self.endpoint.as_deref(), protocol)?))
        };

        // The recorder first: the span pipeline registers its metrics in it.
        let prometheus = if self.install_recorder { Some(install_recorder()?) } else { None };
        let upkeep = prometheus.clone().map(Upkeep::start).transpose()?;
        let tracing = export
            .map(|(protocol, endpoint)| self.tracer_provider(&service_name, protocol, &endpoint))
            .transpose()?;

        let info = Arc::new(ServiceInfo {
            name: service_name,
            version: self.service_version.clone().unwrap_or_default(),
            started: Instant::now(),
        });
        let (provider, runtime, endpoint) = match tracing {
            Some((provider, runtime, endpoint)) => (Some(provider), runtime, Some(endpoint)),
            None => (None, None, None),
        };

        let layer = default_layer(self.follows_parent_sampling(), provider.as_ref());
        let obs = Observability { info, prometheus, provider, layer, endpoint, _upkeep: upkeep, runtime };
        if self.install_subscriber {
            let fmt = match self.log_format {
                LogFormat::Json => tracing_subscriber::fmt::layer()
                    .event_format(logs::JsonFormat)
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .boxed(),
                LogFormat::Text => tracing_subscriber::fmt::layer().event_format(logs::TextFormat).boxed(),
            };
            tracing_subscriber::registry()
                .with(fmt.with_filter(log_filter))
                .with(obs.otel_layer())
                .try_init()
                .map_err(|_| InitError::SubscriberAlreadyInstalled)?;
        }
        Ok(obs)
    }

    fn build_log_filter(&self) -> Result<EnvFilter, InitError> {
        let directives =
            config::env("RUST_LOG").or_else(|| self.log_filter.clone()).unwrap_or_else(|| "info".to_owned());
        EnvFilter::builder()
            .parse(&directives)
            .map_err(|e| InitError::InvalidLogFilter(format!("{directives:?}: {e}")))
    }

    /// Whether the tracer's sampler follows a remote parent's sampled flag:
    /// remote sampling trusted, and a parent-based sampler (the SDK default,
    /// `parentbased_always_on`; `OTEL_TRACES_SAMPLER` wins over the builder).
    fn follows_parent_sampling(&self) -> bool {
        if !self.trust_remote_sampling {
            return false;
        }
        match config::env("OTEL_TRACES_SAMPLER") {
            Some(name) => name.trim().starts_with("parentbased_"),
            None => self.sampler.as_ref().is_none_or(|s| matches!(s, Sampler::ParentBased(_))),
        }
    }

    fn tracer_provider(
        &self,
        service_name: &str,
        protocol: OtlpProtocol,
        endpoint: &str,
    ) -> Result<(SdkTracerProvider, Option<ExporterRuntime>, String), InitError> {
        let (exporter, runtime) = exporter::build(protocol, endpoint)?;
        let mut resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_owned());
        if let Some(version) = &self.service_version {
            resource =
                resource.with_attribute(opentelemetry::KeyValue::new("service.version", version.clone()));
        }
        // The batch processor's queue size, as the SDK reads it.
        let capacity = config::env("OTEL_BSP_MAX_QUEUE_SIZE").and_then(|v| v.parse().ok()).unwrap_or(2048);
        let pipeline = pipeline::Pipeline::new(capacity);
        let counting = pipeline::CountingExporter::new(exporter, pipeline.clone());
        let batch = opentelemetry_sdk::trace::BatchSpanProcessor::builder(counting).build();
        let mut provider = SdkTracerProvider::builder()
            .with_span_processor(pipeline::GuardedProcessor::new(batch, pipeline))
            .with_resource(resource.build());
        let sampler = self.sampler.clone().filter(|_| config::env("OTEL_TRACES_SAMPLER").is_none());
        match (sampler, self.trust_remote_sampling) {
            (Some(sampler), true) => provider = provider.with_sampler(sampler),
            (Some(sampler), false) => provider = provider.with_sampler(sampler::LocalDecision::new(sampler)),
            (None, false) => {
                // The SDK's default sampler, as read from OTEL_TRACES_SAMPLER.
                let root = opentelemetry_sdk::trace::Config::default().sampler;
                provider = provider.with_sampler(sampler::LocalDecision::new(root));
            }
            (None, true) => {}
        }
        let provider = provider.build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        Ok((provider, runtime, endpoint.to_owned()))
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

/// A Prometheus recorder builder with the crate's histogram buckets, as
/// [`Observability`] installs it: body sizes in bytes ([`SIZE_BUCKETS`]),
/// cache lookups in seconds, every other histogram in the OTel HTTP semconv
/// duration buckets ([`DURATION_BUCKETS`], seconds). Start from it when you
/// install the recorder yourself
/// ([`ObservabilityBuilder::install_metrics_recorder`]`(false)`): without buckets,
/// metrics-exporter-prometheus renders histograms as summaries, which
/// Prometheus cannot aggregate across instances.
///
/// ```
/// let builder = tower_observability::prometheus_builder();
/// // builder.install_recorder()?, or .install() for its own HTTP listener.
/// # drop(builder);
/// ```
pub fn prometheus_builder() -> PrometheusBuilder {
    let exact = |name: &str| Matcher::Full(name.to_owned());
    PrometheusBuilder::new()
        .set_buckets(&DURATION_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(exact(HTTP_SERVER_REQUEST_BODY_SIZE), &SIZE_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(exact(HTTP_SERVER_RESPONSE_BODY_SIZE), &SIZE_BUCKETS))
        .and_then(|b| {
            b.set_buckets_for_metric(
                exact(crate::cache::CACHE_LOOKUP_DURATION),
                &crate::cache::LOOKUP_DURATION_BUCKETS,
            )
        })
        .expect("bucket lists are not empty")
}

fn install_recorder() -> Result<PrometheusHandle, InitError> {
    let handle = prometheus_builder().install_recorder().map_err(|_| InitError::RecorderAlreadyInstalled)?;
    crate::metrics::describe();
    Ok(handle)
}

/// Runs the Prometheus recorder's upkeep on a thread until dropped.
#[derive(Debug)]
struct Upkeep {
    _stop: mpsc::Sender<()>,
}

impl Upkeep {
    fn start(handle: PrometheusHandle) -> Result<Self, InitError> {
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new().name("prometheus-upkeep".to_owned()).spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(UPKEEP_INTERVAL) {
                handle.run_upkeep();
            }
        })?;
        Ok(Self { _stop: stop })
    }
}

/// Name, version and start time of the service, for the monitoring routes.
#[derive(Debug)]
pub(crate) struct ServiceInfo {
    pub(crate) name: String,
    pub(crate) version: String,
    #[cfg_attr(not(feature = "monitoring"), allow(dead_code))]
    pub(crate) started: Instant,
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
    info: Arc<ServiceInfo>,
    prometheus: Option<PrometheusHandle>,
    provider: Option<SdkTracerProvider>,
    layer: ObservabilityLayer,
    endpoint: Option<String>,
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
    pub fn monitoring_router(&self) -> crate::monitoring::MonitoringRouter {
        crate::monitoring::MonitoringRouter::new(
            self.prometheus.clone(),
            self.info.clone(),
            self.layer.clone(),
        )
    }

    /// The in-process windowed HTTP figures (rates, error ratios, latency
    /// quantiles over 1, 5 and 15 minutes) of [`layer`](Self::layer), the
    /// same the overview and the alert rules read.
    pub fn http_stats(&self) -> crate::metrics::HttpStats {
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
        self.endpoint.as_deref()
    }

    /// `service.name` as resolved from the builder and `OTEL_SERVICE_NAME`.
    pub fn service_name(&self) -> &str {
        &self.info.name
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
    /// 5 seconds. Dropping `Observability` does the same.
    pub fn shutdown(mut self) {
        self.shutdown_provider();
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
        drop(self.runtime.take());
    }
}

impl fmt::Debug for Observability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observability")
            .field("service_name", &self.info.name)
            .field("service_version", &self.info.version)
            .field("otlp_endpoint", &self.endpoint)
            .field("prometheus", &self.prometheus.is_some())
            .finish_non_exhaustive()
    }
}
