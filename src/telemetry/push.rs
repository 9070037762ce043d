//! Pushing the metrics to a Prometheus Pushgateway: metrics-exporter-prometheus'
//! push-gateway mode at an interval, on a runtime of its own, and one last
//! push at shutdown. The pushed recorder is the Prometheus half of the one
//! recording (see [`recorder::install`](super::recorder::install)): what
//! `/metrics` serves, and what the OTLP push reads beside it.

use std::{thread, time::Duration};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

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

impl PushConfig {
    /// Refuses a URL that is not `http(s)` and a zero interval, before
    /// anything is installed.
    pub(crate) fn check(&self) -> Result<(), InitError> {
        let url = reqwest::Url::parse(&self.endpoint).map_err(|e| self.invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.invalid("the scheme is not http or https"));
        }
        if self.interval.is_zero() {
            return Err(self.invalid("the push interval must be more than 0"));
        }
        Ok(())
    }

    fn invalid(&self, reason: &str) -> InitError {
        InitError::Pushgateway(format!("{}: {reason}", self.endpoint))
    }
}

/// The pushing exporter: its runtime, and what the last push needs.
#[derive(Debug)]
pub(crate) struct Pusher {
    runtime: ExporterRuntime,
    handle: PrometheusHandle,
    endpoint: String,
}

/// The Prometheus recorder of `builder` in push-gateway mode, not yet
/// installed, and its pusher: the exporter pushes the rendering with `PUT`
/// to `config.endpoint` every `config.interval` (the first push one
/// interval from now), and runs the recorder's upkeep, on a runtime of its
/// own (a Pushgateway that is down or slow never delays the application;
/// failures are logged by the exporter).
pub(crate) fn recorder(
    builder: PrometheusBuilder,
    config: &PushConfig,
) -> Result<(PrometheusRecorder, Pusher), InitError> {
    // The exporter's client takes the process's rustls provider: install
    // aws-lc-rs, the one the push-gateway feature builds, unless one is.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = ExporterRuntime::start()?;
    let (recorder, exporter) = {
        // `build` spawns the upkeep task on the current runtime.
        let _entered = runtime.handle().enter();
        builder
            .with_push_gateway(&config.endpoint, config.interval, None, None, false)
            .and_then(PrometheusBuilder::build)
            .map_err(|e| config.invalid(&e.to_string()))?
    };
    runtime.handle().spawn(exporter);
    let handle = recorder.handle();
    Ok((recorder, Pusher { runtime, handle, endpoint: config.endpoint.clone() }))
}

impl Pusher {
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
                client
                    .put(&endpoint)
                    .body({
                        crate::metrics::flush();
                        handle.render()
                    })
                    .send()
                    .await?
                    .error_for_status()
                    .map(drop)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{Options, plan};

    fn config(endpoint: &str, interval: Duration) -> PushConfig {
        PushConfig { endpoint: endpoint.to_owned(), interval }
    }

    #[test]
    fn a_url_that_is_not_http_or_a_zero_interval_is_refused() {
        let second = Duration::from_secs(1);
        assert!(config("http://127.0.0.1:9091/metrics/job/j", second).check().is_ok());
        assert!(config("https://pgw.example/metrics/job/j", second).check().is_ok());
        for bad in [config("ftp://pgw/metrics/job/j", second), config("pgw:9091", second)] {
            assert!(matches!(bad.check(), Err(InitError::Pushgateway(_))), "{bad:?}");
        }
        let zero = config("http://127.0.0.1:9091/metrics/job/j", Duration::ZERO);
        assert!(matches!(zero.check(), Err(InitError::Pushgateway(_))));
    }

    #[test]
    fn the_plan_checks_the_push_and_drops_it_without_the_recorder() {
        let push = config("http://127.0.0.1:9091/metrics/job/j", Duration::from_secs(1));
        let opts =
            |install_recorder, push| Options { install_recorder, push: Some(push), ..Options::default() };
        let planned = plan(&opts(true, push.clone())).unwrap();
        assert!(planned.push.is_some());
        let planned = plan(&opts(false, push)).unwrap();
        assert!(planned.push.is_none());
        assert!(planned.warnings.iter().any(|w| w.contains("Pushgateway")), "{:?}", planned.warnings);
        let invalid = config("ftp://pgw/metrics/job/j", Duration::from_secs(1));
        assert!(matches!(plan(&opts(true, invalid)), Err(InitError::Pushgateway(_))));
    }
}
