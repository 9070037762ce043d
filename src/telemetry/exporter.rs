//! Building the OTLP span exporter away from the application's runtime.
//!
//! The batch span processor exports from a thread of its own. The gRPC
//! exporter needs a tokio runtime for its channel; it gets a single-threaded
//! one on a dedicated thread, so that a slow or absent collector never takes
//! time from the application's runtime, and shutdown works from any context
//! (including a current-thread runtime, which would otherwise deadlock).

use std::thread;

#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) use opentelemetry_otlp::SpanExporter;
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
use opentelemetry_otlp::WithExportConfig;

use super::{InitError, OtlpProtocol};

/// A current-thread tokio runtime on a thread of its own, stopped on drop.
#[derive(Debug)]
pub(crate) struct ExporterRuntime {
    #[cfg_attr(not(any(feature = "otlp-grpc", feature = "pushgateway")), allow(dead_code))]
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

#[cfg_attr(not(any(feature = "otlp-grpc", feature = "pushgateway")), allow(dead_code))]
impl ExporterRuntime {
    /// Starts the runtime and its thread.
    pub(crate) fn start() -> Result<Self, InitError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::Builder::new().name("otlp-exporter".to_owned()).spawn(move || {
            // Resolves when `stop` is sent or dropped.
            let _ = runtime.block_on(stopped);
        })?;
        Ok(Self { handle, stop: Some(stop), thread: Some(thread) })
    }

    /// The runtime's handle, to spawn on it.
    #[cfg(feature = "pushgateway")]
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for ExporterRuntime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Stands for the OTLP exporter in a build with no transport feature: it
/// cannot be made, so [`build`] always fails.
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
#[derive(Debug)]
pub(crate) enum SpanExporter {}

#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
impl opentelemetry_sdk::trace::SpanExporter for SpanExporter {
    async fn export(
        &self,
        _batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        match *self {}
    }
}

/// Builds the exporter for `protocol`, sending to `endpoint` (a full URL,
/// already validated).
///
/// # Errors
///
/// [`InitError::UnsupportedProtocol`] when the protocol's feature
/// (`otlp-grpc`, `otlp-http`) is off.
pub(crate) fn build(
    protocol: OtlpProtocol,
    endpoint: &str,
) -> Result<(SpanExporter, Option<ExporterRuntime>), InitError> {
    match protocol {
        #[cfg(feature = "otlp-grpc")]
        OtlpProtocol::Grpc => {
            let runtime = ExporterRuntime::start()?;
            let exporter = {
                let _entered = runtime.handle.enter();
                SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()
            }
            .map_err(|e| InitError::Exporter(e.to_string()))?;
            Ok((exporter, Some(runtime)))
        }
        #[cfg(feature = "otlp-http")]
        OtlpProtocol::HttpProtobuf => {
            // reqwest's blocking client must not be built inside a tokio
            // runtime (it runs one of its own): build it on a plain thread.
            let endpoint = endpoint.to_owned();
            let exporter = thread::Builder::new()
                .name("otlp-exporter-build".to_owned())
                .spawn(move || {
                    SpanExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_endpoint(endpoint)
                        .build()
                })?
                .join()
                .map_err(|_| InitError::Exporter("the exporter builder panicked".to_owned()))?
                .map_err(|e| InitError::Exporter(e.to_string()))?;
            Ok((exporter, None))
        }
        #[allow(unreachable_patterns)]
        other => {
            let _ = endpoint;
            Err(InitError::UnsupportedProtocol(format!(
                "{other:?} (its feature, otlp-grpc or otlp-http, is off)"
            )))
        }
    }
}
