//! Every `OTEL_*` environment variable the crate or the OpenTelemetry SDK
//! reads, checked once at [`init`](crate::ObservabilityBuilder::init).
//!
//! The SDK and the OTLP exporter read these variables themselves and, when
//! a value does not parse, fall back to the default without a word
//! (`OTEL_BSP_MAX_QUEUE_SIZE=-5` became 2048). Here each one is parsed
//! before anything is built:
//!
//! - a value that does not parse, or is out of range, is an
//!   [`InitError::InvalidEnvVar`] naming the variable: an operator's typo
//!   fails the start, it never changes what is exported in silence;
//! - a variable this build does not read (`OTEL_PROPAGATORS` other than
//!   `tracecontext`, TLS certificates, an unknown `OTEL_*` name) is ignored
//!   with one warning that names it, as the OTel SDK environment-variable
//!   specification asks for settings an SDK does not support, and so is a
//!   boolean that is neither `true` nor `false` (the specification: "treat
//!   as false, log a warning").
//!
//! Source: OpenTelemetry specification v1.x, "Environment Variable
//! Specification" and "OTLP Exporter Configuration".

use std::time::Duration;

use super::{InitError, OtlpProtocol, config};

/// What a variable holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Milliseconds, a non-negative integer.
    Millis,
    /// An integer of at least 1.
    Positive,
    /// A non-negative integer.
    Count,
    /// `true` or `false`, case-insensitive.
    Bool,
    /// `grpc` or `http/protobuf`.
    Protocol,
    /// An absolute `http://` URL.
    Endpoint,
    /// `key=value` pairs separated by commas (headers, resource attributes).
    Pairs,
    /// `none` (the only compression this build has).
    Compression,
    /// A sampler name of the SDK.
    Sampler,
    /// The sampler's argument (checked with the sampler).
    SamplerArg,
    /// Any text.
    Text,
    /// `cumulative` or `delta` (`lowmemory` is not offered).
    Temporality,
    /// A comma-separated list of `otlp`, `prometheus`, or `none`.
    MetricsExporter,
    /// `otlp` or `none`.
    SignalExporter,
    /// Read by no part of this build: ignored with a warning giving the reason.
    Unsupported(&'static str),
}

/// The variables, with what they hold.
const VARIABLES: &[(&str, Kind)] = &[
    ("OTEL_SDK_DISABLED", Kind::Bool),
    ("OTEL_SERVICE_NAME", Kind::Text),
    ("OTEL_RESOURCE_ATTRIBUTES", Kind::Pairs),
    ("OTEL_TRACES_EXPORTER", Kind::SignalExporter),
    ("OTEL_METRICS_EXPORTER", Kind::MetricsExporter),
    ("OTEL_LOGS_EXPORTER", Kind::SignalExporter),
    ("OTEL_TRACES_SAMPLER", Kind::Sampler),
    ("OTEL_TRACES_SAMPLER_ARG", Kind::SamplerArg),
    ("OTEL_BSP_SCHEDULE_DELAY", Kind::Millis),
    ("OTEL_BSP_EXPORT_TIMEOUT", Kind::Millis),
    ("OTEL_BSP_MAX_QUEUE_SIZE", Kind::Positive),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", Kind::Positive),
    ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", Kind::Positive),
    ("OTEL_BLRP_SCHEDULE_DELAY", Kind::Millis),
    ("OTEL_BLRP_EXPORT_TIMEOUT", Kind::Millis),
    ("OTEL_BLRP_MAX_QUEUE_SIZE", Kind::Positive),
    ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", Kind::Positive),
    ("OTEL_METRIC_EXPORT_INTERVAL", Kind::Positive),
    ("OTEL_METRIC_EXPORT_TIMEOUT", Kind::Millis),
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", Kind::Count),
    ("OTEL_SPAN_EVENT_COUNT_LIMIT", Kind::Count),
    ("OTEL_SPAN_LINK_COUNT_LIMIT", Kind::Count),
    ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", Kind::Temporality),
    ("OTEL_PROPAGATORS", Kind::Unsupported("the crate propagates W3C trace context (`tracecontext`) only")),
    (
        "OTEL_LOG_LEVEL",
        Kind::Unsupported("set the SDK's log level with RUST_LOG, e.g. `info,opentelemetry_sdk=debug`"),
    ),
];

/// The per-signal variables of the OTLP exporter: `OTEL_EXPORTER_OTLP_*`
/// and `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_*`.
const OTLP_SUFFIXES: &[(&str, Kind)] = &[
    ("ENDPOINT", Kind::Endpoint),
    ("PROTOCOL", Kind::Protocol),
    ("TIMEOUT", Kind::Millis),
    ("HEADERS", Kind::Pairs),
    ("COMPRESSION", Kind::Compression),
    ("INSECURE", Kind::Bool),
    ("CERTIFICATE", Kind::Unsupported("this build has no TLS (only http:// endpoints)")),
    ("CLIENT_KEY", Kind::Unsupported("this build has no TLS (only http:// endpoints)")),
    ("CLIENT_CERTIFICATE", Kind::Unsupported("this build has no TLS (only http:// endpoints)")),
];

/// The sampler names of the SDK (OTel SDK environment variables,
/// `OTEL_TRACES_SAMPLER`), but the Jaeger remote samplers, which this build
/// does not include.
const SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// The kind of `name`, `None` for a variable no part of this build reads.
fn kind_of(name: &str) -> Option<Kind> {
    if let Some((_, kind)) = VARIABLES.iter().find(|(n, _)| *n == name) {
        return Some(*kind);
    }
    let rest = name.strip_prefix("OTEL_EXPORTER_OTLP_")?;
    let rest = ["TRACES_", "METRICS_", "LOGS_"].iter().find_map(|s| rest.strip_prefix(s)).unwrap_or(rest);
    OTLP_SUFFIXES.iter().find(|(suffix, _)| *suffix == rest).map(|(_, kind)| *kind)
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> InitError {
    InitError::InvalidEnvVar { name: name.to_owned(), value: value.to_owned(), reason: reason.into() }
}

/// Checks one value of `kind`; `Ok(Some(warning))` when it is ignored.
fn check(name: &str, value: &str, kind: Kind) -> Result<Option<String>, InitError> {
    let integer = |min: u64| -> Result<Option<String>, InitError> {
        match value.parse::<u64>() {
            Ok(n) if n >= min => Ok(None),
            Ok(_) => Err(invalid(name, value, format!("must be at least {min}"))),
            Err(_) => Err(invalid(name, value, "not a non-negative integer")),
        }
    };
    match kind {
        Kind::Millis | Kind::Count => integer(0),
        Kind::Positive => integer(1),
        Kind::Bool => Ok((!value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false"))
            .then(|| format!("{name}={value:?} is neither true nor false: taken as false"))),
        Kind::Protocol => match OtlpProtocol::parse(value) {
            Ok(_) => Ok(None),
            Err(_) => Err(invalid(name, value, "expected grpc or http/protobuf (http/json is not offered)")),
        },
        Kind::Endpoint => match config::validate_endpoint(value) {
            Ok(()) => Ok(None),
            Err(InitError::InvalidEndpoint { reason, .. }) => Err(invalid(name, value, reason)),
            Err(other) => Err(other),
        },
        Kind::Pairs => {
            for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some((key, val)) if !key.trim().is_empty() && !val.trim().is_empty() => {}
                    _ => return Err(invalid(name, value, format!("{pair:?} is not key=value"))),
                }
            }
            Ok(None)
        }
        Kind::Compression if value.eq_ignore_ascii_case("none") => Ok(None),
        Kind::Compression => Err(invalid(name, value, "this build has no compression; use none")),
        Kind::Sampler if SAMPLERS.contains(&value) => Ok(None),
        Kind::Sampler => Err(invalid(name, value, format!("expected one of {}", SAMPLERS.join(", ")))),
        Kind::SamplerArg => check_sampler_arg(value),
        Kind::Text => Ok(None),
        Kind::Temporality => parse_temporality(value).map(|_| None),
        Kind::MetricsExporter => MetricsExporters::parse(value).map(|_| None),
        Kind::SignalExporter => parse_signal_exporter(name, value).map(|_| None),
        Kind::Unsupported(reason) => {
            Ok(Some(format!("{name} is not read by this build ({reason}): ignored")))
        }
    }
}

/// `OTEL_TRACES_SAMPLER_ARG`: a ratio in `[0, 1]` for the `traceidratio`
/// samplers; for the others it is ignored, with a warning.
fn check_sampler_arg(value: &str) -> Result<Option<String>, InitError> {
    const NAME: &str = "OTEL_TRACES_SAMPLER_ARG";
    let sampler = config::env("OTEL_TRACES_SAMPLER").unwrap_or_else(|| "parentbased_always_on".to_owned());
    if !sampler.ends_with("traceidratio") {
        return Ok(Some(format!("{NAME} is ignored: the sampler {sampler} takes no argument")));
    }
    match value.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(None),
        _ => Err(invalid(NAME, value, "expected a ratio from 0 to 1")),
    }
}

/// Checks every `OTEL_*` variable of the environment; returns the warnings
/// to log once the subscriber is up, one per ignored variable.
///
/// # Errors
///
/// [`InitError::InvalidEnvVar`] for the first value that does not parse.
pub(crate) fn validate() -> Result<Vec<String>, InitError> {
    let mut names: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with("OTEL_").then(|| (k, v.to_string_lossy().into_owned()))
        })
        .collect();
    names.sort();
    let mut warnings = Vec::new();
    for (name, raw) in names {
        let value = raw.trim();
        // The specification: an empty value is the same as unset.
        if value.is_empty() {
            continue;
        }
        match kind_of(&name) {
            Some(kind) => warnings.extend(check(&name, value, kind)?),
            None => warnings.push(format!("{name} is not read by this build: ignored")),
        }
    }
    Ok(warnings)
}

/// Milliseconds of `name`, when set (validated by [`validate`]).
pub(crate) fn millis(name: &str) -> Result<Option<Duration>, InitError> {
    number(name).map(|n| n.map(Duration::from_millis))
}

/// The integer of `name`, when set.
pub(crate) fn number(name: &str) -> Result<Option<u64>, InitError> {
    config::env(name)
        .map(|v| v.parse::<u64>().map_err(|_| invalid(name, &v, "not a non-negative integer")))
        .transpose()
}

/// A queue or batch size of `name` (at least 1), when set.
pub(crate) fn size(name: &str) -> Result<Option<usize>, InitError> {
    match number(name)? {
        Some(0) => Err(invalid(name, "0", "must be at least 1 (a queue of 0 would drop everything)")),
        Some(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        None => Ok(None),
    }
}

/// Which metrics exporters run (`OTEL_METRICS_EXPORTER`, OTel SDK
/// environment variables: a comma-separated list).
///
/// ```
/// use tower_observability::telemetry::MetricsExporters;
///
/// let both = MetricsExporters::parse("otlp,prometheus").unwrap();
/// assert!(both.otlp() && both.prometheus());
/// assert_eq!(MetricsExporters::default(), MetricsExporters::PROMETHEUS);
/// assert!(MetricsExporters::parse("statsd").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricsExporters {
    prometheus: bool,
    otlp: bool,
}

impl Default for MetricsExporters {
    fn default() -> Self {
        Self::PROMETHEUS
    }
}

impl MetricsExporters {
    /// `prometheus`: the `/metrics` scrape only. The default.
    pub const PROMETHEUS: Self = Self { prometheus: true, otlp: false };
    /// `otlp`: pushed to the collector only; `/metrics` answers 503.
    pub const OTLP: Self = Self { prometheus: false, otlp: true };
    /// `otlp,prometheus`: both, from the same recording.
    pub const BOTH: Self = Self { prometheus: true, otlp: true };
    /// `none`: no exporter; the in-process windows (overview, alerts) still
    /// count requests.
    pub const NONE: Self = Self { prometheus: false, otlp: false };

    /// Whether `/metrics` is served.
    pub fn prometheus(self) -> bool {
        self.prometheus
    }

    /// Whether metrics are pushed over OTLP.
    pub fn otlp(self) -> bool {
        self.otlp
    }

    /// Parses a value of `OTEL_METRICS_EXPORTER`: `prometheus`, `otlp`,
    /// both separated by a comma, or `none` (alone).
    ///
    /// # Errors
    ///
    /// [`InitError::InvalidEnvVar`] for an unknown name (`console` is not
    /// offered) or `none` beside another name.
    pub fn parse(value: &str) -> Result<Self, InitError> {
        const NAME: &str = "OTEL_METRICS_EXPORTER";
        let mut out = Self::NONE;
        let mut none = false;
        for item in value.split(',').map(str::trim) {
            match item {
                "prometheus" => out.prometheus = true,
                "otlp" => out.otlp = true,
                "none" => none = true,
                other => {
                    return Err(invalid(
                        NAME,
                        value,
                        format!("unknown exporter {other:?} (expected otlp, prometheus or none)"),
                    ));
                }
            }
        }
        if none && out != Self::NONE {
            return Err(invalid(NAME, value, "none cannot be combined with an exporter"));
        }
        Ok(out)
    }
}

/// `otlp` (true) or `none` (false), for `OTEL_TRACES_EXPORTER` and
/// `OTEL_LOGS_EXPORTER`.
pub(crate) fn parse_signal_exporter(name: &str, value: &str) -> Result<bool, InitError> {
    match value.trim() {
        "otlp" => Ok(true),
        "none" => Ok(false),
        _ => Err(invalid(name, value, "expected otlp or none")),
    }
}

/// `cumulative` or `delta` (OTLP exporter specification,
/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`).
pub(crate) fn parse_temporality(value: &str) -> Result<opentelemetry_sdk::metrics::Temporality, InitError> {
    use opentelemetry_sdk::metrics::Temporality;
    match value.trim().to_ascii_lowercase().as_str() {
        "cumulative" => Ok(Temporality::Cumulative),
        "delta" => Ok(Temporality::Delta),
        _ => Err(invalid(
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            value,
            "expected cumulative or delta",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_by_kind() {
        assert!(check("OTEL_BSP_MAX_QUEUE_SIZE", "-5", Kind::Positive).is_err());
        assert!(check("OTEL_BSP_MAX_QUEUE_SIZE", "0", Kind::Positive).is_err());
        assert_eq!(check("OTEL_BSP_MAX_QUEUE_SIZE", "32", Kind::Positive).unwrap(), None);
        assert!(check("OTEL_TRACES_SAMPLER", "bogus", Kind::Sampler).is_err());
        assert!(check("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b", Kind::Pairs).is_err());
        assert!(check("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip", Kind::Compression).is_err());
        let warning = check("OTEL_SDK_DISABLED", "yes", Kind::Bool).unwrap().unwrap();
        assert!(warning.contains("OTEL_SDK_DISABLED"), "{warning}");
        assert_eq!(kind_of("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"), Some(Kind::Endpoint));
        assert_eq!(kind_of("OTEL_EXPORTER_OTLP_TIMEOUT"), Some(Kind::Millis));
        assert_eq!(kind_of("OTEL_NOT_A_THING"), None);
    }

    #[test]
    fn metrics_exporters_parse() {
        assert_eq!(MetricsExporters::parse("otlp").unwrap(), MetricsExporters::OTLP);
        assert_eq!(MetricsExporters::parse("prometheus, otlp").unwrap(), MetricsExporters::BOTH);
        assert_eq!(MetricsExporters::parse("none").unwrap(), MetricsExporters::NONE);
        assert!(MetricsExporters::parse("none,otlp").is_err());
        assert!(MetricsExporters::parse("console").is_err());
        assert!(parse_signal_exporter("OTEL_LOGS_EXPORTER", "otlp").unwrap());
        assert!(parse_signal_exporter("OTEL_LOGS_EXPORTER", "stdout").is_err());
    }
}
