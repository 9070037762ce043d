//! The state the handlers share: the service's identity, the Prometheus
//! handle, the health registry, the in-process windows, the alert engine
//! or alerts source, and the bearer tokens.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use metrics_exporter_prometheus::PrometheusHandle;

use crate::{
    alerts::{AlertEngine, AlertInputs, AlertsSource},
    cache::CacheHitRatios,
    health::{HealthGroup, HealthRegistry},
    metrics::{Exemplars, HttpStats},
    slo::SloSet,
};

/// Name, version and start time of the service, for the monitoring routes.
#[derive(Debug)]
pub(crate) struct ServiceInfo {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) started: Instant,
}

/// What every handler of the fragment reads; shared, and copied on write
/// by the router's setters.
#[derive(Clone)]
pub(super) struct MonitoringState {
    pub(super) prometheus: Option<PrometheusHandle>,
    pub(super) info: Arc<ServiceInfo>,
    pub(super) health: HealthRegistry,
    /// Whether `health` was given (else it is the empty default).
    pub(super) health_set: bool,
    /// The windows of `layer`'s metrics.
    pub(super) http: HttpStats,
    pub(super) cache: CacheHitRatios,
    pub(super) alerts: Option<SharedAlerts>,
    /// The alert engine the router evaluates, and how often.
    pub(super) engine: Option<(AlertEngine, Duration)>,
    /// With a token, everything but the health status needs it.
    pub(super) token: Option<Arc<str>>,
    /// The OTLP pipelines' counts, for the overview.
    pub(super) exporters: Option<ExportersSource>,
    /// With a write token, the write routes exist and need it.
    pub(super) write_token: Option<Arc<str>>,
    /// The service level objectives, counted from the layer's requests.
    pub(super) slos: Option<SloSet>,
    /// The exemplars `/metrics` and the dashboard show.
    pub(super) exemplars: Exemplars,
    /// How the dashboard links a trace id (`{trace_id}` replaced).
    pub(super) trace_link: Option<Arc<str>>,
    #[cfg(feature = "process-metrics")]
    pub(super) process: metrics_process::Collector,
    /// Describes the process metrics at the first `/metrics`, once the
    /// recorder is surely installed.
    #[cfg(feature = "process-metrics")]
    pub(super) process_described: Arc<std::sync::Once>,
}

impl MonitoringState {
    /// The alert engine's inputs at `now`: the windowed HTTP figures, the
    /// cache hit ratios, the SLOs' burn rates and, when a health registry
    /// is set, readiness.
    pub(super) async fn alert_inputs(&self, now: Instant) -> AlertInputs {
        let mut inputs = AlertInputs::from_http_stats(&self.http, now);
        inputs.add_hit_ratios(&self.cache.snapshot());
        if self.health_set {
            inputs.readiness = Some(self.health.report(HealthGroup::Ready).await.status());
        }
        if let Some(slos) = &self.slos {
            inputs.burn_rates = slos.burn_rates_at(now);
        }
        inputs
    }
}

/// Reads the OTLP pipelines' counts (given by `Observability`).
pub(crate) type ExportersSource = Arc<dyn Fn() -> Vec<super::ExporterOverview> + Send + Sync>;

/// A shared [`AlertsSource`], as the router state keeps it.
#[derive(Clone)]
pub(super) struct SharedAlerts(pub(super) Arc<dyn AlertsSource>);

impl fmt::Debug for SharedAlerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AlertsSource")
    }
}
