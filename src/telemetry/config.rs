//! Reading the standard OpenTelemetry environment variables.
//!
//! Precedence, for each setting: the signal-specific variable
//! (`OTEL_EXPORTER_OTLP_TRACES_*`), the general one (`OTEL_EXPORTER_OTLP_*`),
//! the value given to the builder, then the default. Environment variables
//! win over code so that operators can redirect a deployed binary.

use super::InitError;

/// How spans, metrics and logs are sent to the collector (OTLP
/// specification, "Protocol").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// OTLP/gRPC, Jaeger's and the Collector's port 4317. The default.
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies, port 4318, paths `/v1/traces`,
    /// `/v1/metrics`, `/v1/logs`.
    HttpProtobuf,
}

impl OtlpProtocol {
    /// Parses the values of `OTEL_EXPORTER_OTLP_PROTOCOL`.
    ///
    /// # Errors
    ///
    /// [`InitError::UnsupportedProtocol`] for `http/json` and unknown values.
    pub fn parse(value: &str) -> Result<Self, InitError> {
        match value.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            other => Err(InitError::UnsupportedProtocol(other.to_owned())),
        }
    }

    /// The collector endpoint used when none is configured.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Self::Grpc => "http://localhost:4317",
            Self::HttpProtobuf => "http://localhost:4318",
        }
    }
}

pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// `OTEL_SDK_DISABLED=true` turns every OTel SDK signal off: spans, OTLP
/// metrics and OTLP logs (OTel SDK environment variables specification);
/// the Prometheus scrape, which is not the SDK's, stays.
pub(crate) fn sdk_disabled() -> bool {
    env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// One of the three OTLP signals, with its variables and HTTP path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    /// The signal's part of the variable names: `TRACES`, `METRICS`, `LOGS`.
    fn infix(self) -> &'static str {
        match self {
            Self::Traces => "TRACES",
            Self::Metrics => "METRICS",
            Self::Logs => "LOGS",
        }
    }

    /// The OTLP/HTTP path: `/v1/traces`, `/v1/metrics`, `/v1/logs`.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Self::Traces => "/v1/traces",
            Self::Metrics => "/v1/metrics",
            Self::Logs => "/v1/logs",
        }
    }

    /// `OTEL_EXPORTER_OTLP_{SIGNAL}_{suffix}`.
    pub(crate) fn var(self, suffix: &str) -> String {
        format!("OTEL_EXPORTER_OTLP_{}_{suffix}", self.infix())
    }
}

/// The protocol of `signal`: `OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL`, else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, else the builder's, else gRPC.
pub(crate) fn resolve_protocol(
    signal: Signal,
    builder: Option<OtlpProtocol>,
) -> Result<OtlpProtocol, InitError> {
    match env(&signal.var("PROTOCOL")).or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL")) {
        Some(value) => OtlpProtocol::parse(&value),
        None => Ok(builder.unwrap_or_default()),
    }
}

/// The full URL `signal` is sent to.
///
/// A signal-specific endpoint (`OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT`, or
/// the builder's `signal_builder`) is used as given; a base endpoint
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`, the builder's `base_builder`, the
/// default) gets the signal's path (`/v1/traces`...) appended for OTLP/HTTP
/// (OTLP exporter specification, "Endpoint URLs for OTLP/HTTP").
pub(crate) fn resolve_endpoint(
    signal: Signal,
    signal_builder: Option<&str>,
    base_builder: Option<&str>,
    protocol: OtlpProtocol,
) -> Result<String, InitError> {
    let (endpoint, is_full) = if let Some(full) = env(&signal.var("ENDPOINT")) {
        (full, true)
    } else if let Some(base) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
        (base, false)
    } else if let Some(full) = signal_builder {
        (full.to_owned(), true)
    } else {
        (base_builder.unwrap_or(protocol.default_endpoint()).to_owned(), false)
    };
    validate_endpoint(&endpoint)?;
    Ok(match protocol {
        OtlpProtocol::HttpProtobuf if !is_full => {
            format!("{}{}", endpoint.trim_end_matches('/'), signal.path())
        }
        _ => endpoint,
    })
}

/// An endpoint must be an absolute `http://` URL with a host. `https://`
/// needs TLS, which this build of the exporter does not include.
pub(crate) fn validate_endpoint(endpoint: &str) -> Result<(), InitError> {
    let invalid = |reason: &'static str| InitError::InvalidEndpoint { endpoint: endpoint.to_owned(), reason };
    let uri: http::Uri = endpoint.parse().map_err(|_| invalid("not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(invalid("https needs TLS, which this build does not include")),
        Some(_) => return Err(invalid("the scheme must be http")),
        None => return Err(invalid("missing scheme, e.g. http://localhost:4317")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("missing host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().ends_with(':')) {
        return Err(invalid("empty port"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_validated() {
        assert!(validate_endpoint("http://localhost:4317").is_ok());
        assert!(validate_endpoint("http://127.0.0.1:4318/").is_ok());
        for bad in [
            "127.0.0.1:4317",
            "localhost",
            "https://collector:4317",
            "ftp://x:1",
            "http://",
            "::",
            "http://127.0.0.1:",
        ] {
            assert!(
                matches!(validate_endpoint(bad), Err(InitError::InvalidEndpoint { .. })),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn protocols_parse() {
        assert_eq!(OtlpProtocol::parse("grpc").unwrap(), OtlpProtocol::Grpc);
        assert_eq!(OtlpProtocol::parse("http/protobuf").unwrap(), OtlpProtocol::HttpProtobuf);
        assert!(matches!(OtlpProtocol::parse("http/json"), Err(InitError::UnsupportedProtocol(_))));
    }
}
