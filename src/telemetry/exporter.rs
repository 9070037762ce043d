//! Building the OTLP exporters (spans, metrics, logs) away from the
//! application's runtime.
//!
//! The batch processors and the periodic metric reader export from threads
//! of their own. The gRPC
//! exporter needs a tokio runtime for its channel; it gets a single-threaded
//! one on a dedicated thread, so that a slow or absent collector never takes
//! time from the application's runtime, and shutdown works from any context
//! (including a current-thread runtime, which would otherwise deadlock).

use std::thread;

#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
use opentelemetry_otlp::WithExportConfig;
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
pub(crate) use opentelemetry_otlp::{LogExporter, MetricExporter, SpanExporter};

use opentelemetry_sdk::metrics::Temporality;

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

/// Stand-ins for the OTLP exporters in a build with no transport feature:
/// they cannot be made, so [`Exporters`] always fails to build them.
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
mod stand_in {
    use opentelemetry_sdk::error::OTelSdkResult;

    #[derive(Debug)]
    pub(crate) enum SpanExporter {}

    impl opentelemetry_sdk::trace::SpanExporter for SpanExporter {
        async fn export(&self, _batch: Vec<opentelemetry_sdk::trace::SpanData>) -> OTelSdkResult {
            match *self {}
        }
    }

    #[derive(Debug)]
    pub(crate) enum MetricExporter {}

    impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for MetricExporter {
        async fn export(
            &self,
            _metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
        ) -> OTelSdkResult {
            match *self {}
        }
        fn force_flush(&self) -> OTelSdkResult {
            match *self {}
        }
        fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
            match *self {}
        }
        fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
            match *self {}
        }
    }

    #[derive(Debug)]
    pub(crate) enum LogExporter {}

    impl opentelemetry_sdk::logs::LogExporter for LogExporter {
        async fn export(&self, _batch: opentelemetry_sdk::logs::LogBatch<'_>) -> OTelSdkResult {
            match *self {}
        }
    }
}
#[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
pub(crate) use stand_in::{LogExporter, MetricExporter, SpanExporter};

/// Builds one OTLP exporter of type `$exporter` for `$protocol`: over gRPC
/// inside the exporters' runtime, over HTTP on a plain thread; `$extra`
/// adds the signal's own settings to the transport's builder.
macro_rules! build_exporter {
    ($self:ident, $exporter:ident, $what:literal, $protocol:expr, $endpoint:expr, |$b:ident| $extra:expr) => {
        match $protocol {
            #[cfg(feature = "otlp-grpc")]
            OtlpProtocol::Grpc => $self.in_runtime($what, || {
                let $b = $exporter::builder().with_tonic().with_endpoint($endpoint);
                $extra.build()
            }),
            #[cfg(feature = "otlp-http")]
            OtlpProtocol::HttpProtobuf => {
                let endpoint = $endpoint.to_owned();
                Self::on_thread($what, move || {
                    let $b = $exporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_endpoint(endpoint);
                    $extra.build()
                })
            }
            #[allow(unreachable_patterns)]
            other => {
                let _ = $endpoint;
                Err(missing_feature(other))
            }
        }
    };
}

/// Builds the OTLP exporters; the gRPC ones share one [`ExporterRuntime`].
#[derive(Debug, Default)]
pub(crate) struct Exporters {
    runtime: Option<ExporterRuntime>,
}

#[cfg_attr(not(any(feature = "otlp-grpc", feature = "otlp-http")), allow(unused_variables))]
impl Exporters {
    /// The runtime the gRPC exporters run on, if one was started.
    pub(crate) fn into_runtime(self) -> Option<ExporterRuntime> {
        self.runtime
    }

    /// Runs `make` inside the exporters' runtime (the tonic channel must
    /// be made inside one), starting it first.
    #[cfg(feature = "otlp-grpc")]
    fn in_runtime<T, E: std::fmt::Display>(
        &mut self,
        what: &str,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, InitError> {
        if self.runtime.is_none() {
            self.runtime = Some(ExporterRuntime::start()?);
        }
        let runtime = self.runtime.as_ref().expect("started above");
        let _entered = runtime.handle.enter();
        make().map_err(|e| InitError::Exporter(format!("{what}: {e}")))
    }

    /// Runs `make` on a plain thread: reqwest's blocking client must not be
    /// built inside a tokio runtime (it runs one of its own).
    #[cfg(feature = "otlp-http")]
    fn on_thread<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
        what: &str,
        make: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, InitError> {
        thread::Builder::new()
            .name("otlp-exporter-build".to_owned())
            .spawn(make)?
            .join()
            .map_err(|_| InitError::Exporter(format!("{what}: the exporter builder panicked")))?
            .map_err(|e| InitError::Exporter(format!("{what}: {e}")))
    }

    /// The span exporter for `protocol`, sending to `endpoint` (a full URL,
    /// already validated).
    ///
    /// # Errors
    ///
    /// [`InitError::UnsupportedProtocol`] when the protocol's feature
    /// (`otlp-grpc`, `otlp-http`) is off.
    pub(crate) fn spans(
        &mut self,
        protocol: OtlpProtocol,
        endpoint: &str,
    ) -> Result<SpanExporter, InitError> {
        build_exporter!(self, SpanExporter, "spans", protocol, endpoint, |b| b)
    }

    /// The metric exporter for `protocol`, sending to `endpoint` with
    /// `temporality`.
    ///
    /// # Errors
    ///
    /// As [`spans`](Self::spans).
    pub(crate) fn metrics(
        &mut self,
        protocol: OtlpProtocol,
        endpoint: &str,
        temporality: Temporality,
    ) -> Result<MetricExporter, InitError> {
        build_exporter!(self, MetricExporter, "metrics", protocol, endpoint, |b| b
            .with_temporality(temporality))
    }

    /// The log exporter for `protocol`, sending to `endpoint`.
    ///
    /// # Errors
    ///
    /// As [`spans`](Self::spans).
    pub(crate) fn logs(&mut self, protocol: OtlpProtocol, endpoint: &str) -> Result<LogExporter, InitError> {
        build_exporter!(self, LogExporter, "logs", protocol, endpoint, |b| b)
    }
}

#[allow(dead_code)]
fn missing_feature(protocol: OtlpProtocol) -> InitError {
    InitError::UnsupportedProtocol(format!("{protocol:?} (its feature, otlp-grpc or otlp-http, is off)"))
}
