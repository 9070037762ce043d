//! The Prometheus recorder: its builder with the crate's buckets, its
//! installation, and the thread that runs its upkeep.

use std::{sync::mpsc, thread, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::layers::FanoutBuilder;

use super::{InitError, metrics_bridge::OtelRecorder};
use crate::{
    cache::{CACHE_LOOKUP_DURATION, LOOKUP_DURATION_BUCKETS},
    metrics::{
        DURATION_BUCKETS, HTTP_SERVER_REQUEST_BODY_SIZE, HTTP_SERVER_RESPONSE_BODY_SIZE, SIZE_BUCKETS,
    },
};

/// How often the Prometheus recorder's upkeep runs (drains histogram samples).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

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
///
/// [`Observability`]: crate::Observability
/// [`ObservabilityBuilder::install_metrics_recorder`]: crate::ObservabilityBuilder::install_metrics_recorder
pub fn prometheus_builder() -> PrometheusBuilder {
    let exact = |name: &str| Matcher::Full(name.to_owned());
    PrometheusBuilder::new()
        .set_buckets(&DURATION_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(exact(HTTP_SERVER_REQUEST_BODY_SIZE), &SIZE_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(exact(HTTP_SERVER_RESPONSE_BODY_SIZE), &SIZE_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(exact(CACHE_LOOKUP_DURATION), &LOOKUP_DURATION_BUCKETS))
        .expect("bucket lists are not empty")
}

/// Installs the global `metrics` recorder: the Prometheus recorder
/// `prometheus` (built from [`prometheus_builder`], for the scrape or the
/// Pushgateway) when given, the OTel bridge `otel` when given, and both
/// behind one fan-out (metrics-util's `Fanout`) when both are, so that one
/// `metrics` call feeds the scrape, the Pushgateway and the OTLP push.
/// Describes the HTTP metrics to it and returns the Prometheus recorder's
/// handle. Installs nothing when neither is given.
pub(crate) fn install(
    prometheus: Option<PrometheusRecorder>,
    otel: Option<OtelRecorder>,
) -> Result<Option<PrometheusHandle>, InitError> {
    fn set<R>(result: Result<(), metrics::SetRecorderError<R>>) -> Result<(), InitError> {
        result.map_err(|_| InitError::RecorderAlreadyInstalled)
    }
    let handle = prometheus.as_ref().map(PrometheusRecorder::handle);
    match (prometheus, otel) {
        (None, None) => return Ok(None),
        (Some(prometheus), None) => set(metrics::set_global_recorder(prometheus))?,
        (None, Some(otel)) => set(metrics::set_global_recorder(otel))?,
        (Some(prometheus), Some(otel)) => {
            let fanout = FanoutBuilder::default().add_recorder(prometheus).add_recorder(otel).build();
            set(metrics::set_global_recorder(fanout))?;
        }
    }
    crate::metrics::describe();
    Ok(handle)
}

/// Runs the Prometheus recorder's upkeep on a thread until dropped.
#[derive(Debug)]
pub(crate) struct Upkeep {
    _stop: mpsc::Sender<()>,
}

impl Upkeep {
    pub(crate) fn start(handle: PrometheusHandle) -> Result<Self, InitError> {
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new().name("prometheus-upkeep".to_owned()).spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(UPKEEP_INTERVAL) {
                handle.run_upkeep();
            }
        })?;
        Ok(Self { _stop: stop })
    }
}
