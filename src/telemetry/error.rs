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
    /// The protocol (from the builder or `OTEL_EXPORTER_OTLP_PROTOCOL`) is
    /// one whose feature (`otlp-grpc`, `otlp-http`) is off in this build;
    /// an unknown value in the environment is an
    /// [`InvalidEnvVar`](Self::InvalidEnvVar).
    #[error("unsupported OTLP protocol {0:?} (expected \"grpc\" or \"http/protobuf\")")]
    UnsupportedProtocol(String),
    /// An `OTEL_*` environment variable holds a value that does not parse or
    /// is out of range (`OTEL_BSP_MAX_QUEUE_SIZE=-5`, `OTEL_TRACES_SAMPLER=bogus`,
    /// `OTEL_METRICS_EXPORTER=console`); see the README's configuration
    /// table for what each one takes.
    #[error("invalid {name}={value:?}: {reason}")]
    InvalidEnvVar {
        /// The variable.
        name: String,
        /// Its value, as set.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A builder setting is out of range (a zero export interval or queue).
    #[error("invalid setting {setting}: {reason}")]
    InvalidSetting {
        /// The builder method.
        setting: &'static str,
        /// What is wrong with its value.
        reason: &'static str,
    },
    /// `RUST_LOG` or the builder's filter does not parse.
    #[error("invalid log filter: {0}")]
    InvalidLogFilter(String),
    /// An OTLP exporter (spans, metrics or logs, as the message says) could
    /// not be built. The Prometheus recorder is installed by then.
    #[error("failed to build an OTLP exporter: {0}")]
    Exporter(String),
    /// The Pushgateway URL or interval was refused (see
    /// [`ObservabilityBuilder::push_gateway`](crate::ObservabilityBuilder::push_gateway)).
    #[cfg(feature = "pushgateway")]
    #[error("invalid Pushgateway setting {0}")]
    Pushgateway(String),
    /// A background thread (an exporter's, or the log-line writer's) could
    /// not start.
    #[error("failed to start a background thread: {0}")]
    Thread(#[from] std::io::Error),
}
