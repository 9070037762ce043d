//! [`InitError`]: why the pipelines could not be installed.

/// An error of [`ObservabilityBuilder::init`](crate::ObservabilityBuilder::init).
/// Nothing is installed globally when `init` fails, except as noted on a
/// variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A global `metrics` recorder was installed before; pass
    /// [`ObservabilityBuilder::install_metrics_recorder`]`(false)` to keep it.
    ///
    /// [`ObservabilityBuilder::install_metrics_recorder`]: crate::ObservabilityBuilder::install_metrics_recorder
    #[error("a global metrics recorder is already installed")]
    RecorderAlreadyInstalled,
    /// A global `tracing` subscriber was installed before; pass
    /// [`ObservabilityBuilder::install_subscriber`]`(false)` to keep it. The
    /// Prometheus recorder is not installed in that case.
    ///
    /// [`ObservabilityBuilder::install_subscriber`]: crate::ObservabilityBuilder::install_subscriber
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
    /// The Pushgateway URL or interval was refused (see
    /// [`ObservabilityBuilder::push_gateway`](crate::ObservabilityBuilder::push_gateway)).
    #[cfg(feature = "pushgateway")]
    #[error("invalid Pushgateway setting {0}")]
    Pushgateway(String),
    /// The exporter's background thread could not start.
    #[error("failed to start the exporter thread: {0}")]
    Thread(#[from] std::io::Error),
}
