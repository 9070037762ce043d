//! Pushing the metrics to a Prometheus Pushgateway: metrics-exporter-prometheus'
//! push-gateway mode at an interval, on a runtime of its own, and one last
//! push at shutdown.

use std::{thread, time::Duration};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::{InitError, exporter::ExporterRuntime};

/// How long the push at shutdown may take: 5 seconds.
const FINAL_PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how often to push.
#[derive(Debug, Clone)]
pub(crate) struct PushConfig {
    /// The full URL of the group, `http://pushgateway:9091/metrics/job/<job>`.
    pub(crate) endpoint: String,
    pub(crate) interval: Duration,
}

/// The pushing exporter: its runtime, and what the last push needs.
#[derive(Debug)]
pub(crate) struct Pusher {
    runtime: ExporterRuntime,
    handle: PrometheusHandle,
    endpoint: String,
}

/// Installs the global recorder of `builder` in push-gateway mode: its
/// exporter pushes the rendering with `PUT` to `config.endpoint` every
/// `config.interval`, on a runtime of its own (a Pushgateway that is down
/// or slow never delays the application; failures are logged by the
/// exporter).
pub(crate) fn install(builder: PrometheusBuilder, config: &PushConfig) -> Result<Pusher, InitError> {
    let invalid = |reason: String| InitError::Pushgateway(format!("{}: {reason}", config.endpoint));
    let url = reqwest::Url::parse(&config.endpoint).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme is not http or https".to_owned()));
    }
    if config.interval.is_zero() {
        return Err(invalid("the push interval must be more than 0".to_owned()));
    }
    // The exporter's client takes the process's rustls provider: install
    // aws-lc-rs, the one the push-gateway feature builds, unless one is.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = ExporterRuntime::start()?;
    let (recorder, exporter) = {
        let _entered = runtime.handle().enter();
        builder
            .with_push_gateway(&config.endpoint, config.interval, None, None, false)
            .and_then(PrometheusBuilder::build)
            .map_err(|e| invalid(e.to_string()))?
    };
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| InitError::RecorderAlreadyInstalled)?;
    runtime.handle().spawn(exporter);
    Ok(Pusher { runtime, handle, endpoint: config.endpoint.clone() })
}

impl Pusher {
    /// The handle of the installed recorder, for `/metrics`.
    pub(crate) fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
    }

    /// Pushes the metrics once more, now, waiting at most
    /// [`FINAL_PUSH_TIMEOUT`]; logs a failure. Called at shutdown, so that
    /// a short-lived job's last figures reach the Pushgateway.
    pub(crate) fn push_now(&self) {
        let (handle, endpoint, rt) =
            (self.handle.clone(), self.endpoint.clone(), self.runtime.handle().clone());
        // On a thread of its own: this may run inside the application's
        // runtime, where blocking on another runtime is refused.
        let pushed = thread::Builder::new().name("pushgateway-final".to_owned()).spawn(move || {
            rt.block_on(async move {
                let client = reqwest::Client::builder().timeout(FINAL_PUSH_TIMEOUT).build()?;
                client.put(&endpoint).body(handle.render()).send().await?.error_for_status().map(drop)
            })
        });
        let result = match pushed {
            Ok(thread) => match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                    tokio::task::block_in_place(|| thread.join())
                }
                _ => thread.join(),
            },
            Err(err) => {
                tracing::warn!(error = %err, "cannot push the metrics at shutdown");
                return;
            }
        };
        match result {
            Ok(Ok(())) => tracing::info!(endpoint = %self.endpoint, "metrics pushed at shutdown"),
            Ok(Err(err)) => {
                tracing::warn!(endpoint = %self.endpoint, error = %err, "the push at shutdown failed");
            }
            Err(_) => tracing::warn!("the push at shutdown panicked"),
        }
    }
}
