//! The one place where a metric recorded through the `metrics` facade, in
//! its Prometheus form, gets its OpenTelemetry form for OTLP: name, unit,
//! instrument, bucket boundaries and attribute keys.
//!
//! | recorded (Prometheus, `/metrics`) | OTLP | unit | instrument |
//! |---|---|---|---|
//! | `http_server_request_duration_seconds` | `http.server.request.duration` | `s` | histogram, semconv buckets |
//! | `http_server_active_requests` | `http.server.active_requests` | `{request}` | up-down counter |
//! | `http_server_request_body_size_bytes` | `http.server.request.body.size` | `By` | histogram |
//! | `http_server_response_body_size_bytes` | `http.server.response.body.size` | `By` | histogram |
//! | `http_server_time_to_first_byte_seconds` | `http.server.time_to_first_byte` | `s` | histogram |
//! | `http_server_cache_requests_total` | `http.server.cache.requests` | `{request}` | counter |
//! | `http_server_request_id_rejected_total` | `http.server.request_id.rejected` | `{request}` | counter |
//! | `cache_gets_total`, `_puts_total`, `_evictions_total` | `cache.gets`, `cache.puts`, `cache.evictions` | `{get}`, `{put}`, `{eviction}` | counter |
//! | `cache_size` | `cache.size` | `{entry}` | gauge |
//! | `cache_lookup_duration_seconds` | `cache.lookup.duration` | `s` | histogram |
//! | `health_check_status`, `health_check_duration_seconds` | `health.check.status`, `health.check.duration` | `1`, `s` | gauge, histogram |
//! | `tower_observability_alerts` | `tower_observability.alerts` | `{alert}` | gauge |
//! | `tower_observability_alert_notifications_{sent,failed,dropped}_total` | `tower_observability.alert.notifications.{sent,failed,dropped}` | `{notification}` | counter |
//! | `otlp_exporter_{spans,log_records}_{exported,failed,dropped,rejected}_total` | `otlp.exporter.{spans,log_records}.{...}` | `{span}`, `{log_record}` | counter |
//! | `otlp_exporter_metric_points_{exported,failed,rejected}_total` | `otlp.exporter.metric_points.{...}` | `{data_point}` | counter |
//! | `otlp_exporter_queue_{spans,log_records}` | `otlp.exporter.queue.{spans,log_records}` | `{span}`, `{log_record}` | up-down counter |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, ... | `process.cpu.time`, `process.memory.usage`, ... | `s`, `By` | as semconv "process" metrics |
//! | any other counter `x_total` | `x` | from `describe_counter!` | counter |
//! | any other metric | its name | from `describe_*!` | counter, gauge, histogram ([`DURATION_BUCKETS`]) |
//!
//! Attribute keys: `http_request_method` -> `http.request.method`,
//! `http_route` -> `http.route`, `http_response_status_code` ->
//! `http.response.status_code` (an integer), `url_scheme` -> `url.scheme`,
//! `error_type` -> `error.type`, `network_protocol_version` ->
//! `network.protocol.version`; on the cache metrics `cache` ->
//! `cache.name` and `result` -> `cache.result`; on the health metrics
//! `check` -> `health.check.name`. Other labels keep their key.
//!
//! Sources: OTel semantic conventions v1.38, "HTTP metrics" (stable since
//! v1.23) and "Process metrics"; the OTel specification's "Prometheus and
//! OpenMetrics Compatibility" (a counter's `_total` suffix is Prometheus's,
//! not part of the OTel name); UCUM units as the conventions write them.

use std::borrow::Cow;

use crate::{
    cache::{
        CACHE_EVICTIONS, CACHE_GETS, CACHE_LOOKUP_DURATION, CACHE_PUTS, CACHE_SIZE,
        HTTP_SERVER_CACHE_REQUESTS, LOOKUP_DURATION_BUCKETS,
    },
    metrics::{
        DURATION_BUCKETS, HTTP_SERVER_ACTIVE_REQUESTS, HTTP_SERVER_REQUEST_BODY_SIZE,
        HTTP_SERVER_REQUEST_DURATION, HTTP_SERVER_RESPONSE_BODY_SIZE, HTTP_SERVER_TIME_TO_FIRST_BYTE,
        SIZE_BUCKETS,
    },
    request_id::HTTP_SERVER_REQUEST_ID_REJECTED,
};

/// The OTel instrument a metric becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Instrument {
    /// Monotonic sum.
    Counter,
    /// Non-monotonic sum (`increment`/`decrement` of a facade gauge).
    UpDownCounter,
    /// Last value.
    Gauge,
    /// Explicit-bucket histogram.
    Histogram,
}

/// A metric's OTel form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OtelMetric {
    /// The OTel name, e.g. `http.server.request.duration`.
    pub(crate) name: Cow<'static, str>,
    /// The UCUM unit; `None` when the recording gave none.
    pub(crate) unit: Option<Cow<'static, str>>,
    pub(crate) instrument: Instrument,
    /// The histogram's bucket boundaries (the same as on `/metrics`).
    pub(crate) boundaries: &'static [f64],
}

use Instrument::{Counter, Gauge, Histogram, UpDownCounter};

/// Recorded name, OTel name, unit, instrument, boundaries.
type Row = (&'static str, &'static str, &'static str, Instrument, &'static [f64]);

/// The crate's metrics, and those of metrics-process.
const TABLE: &[Row] = &[
    (HTTP_SERVER_REQUEST_DURATION, "http.server.request.duration", "s", Histogram, &DURATION_BUCKETS),
    (HTTP_SERVER_ACTIVE_REQUESTS, "http.server.active_requests", "{request}", UpDownCounter, &[]),
    (HTTP_SERVER_REQUEST_BODY_SIZE, "http.server.request.body.size", "By", Histogram, &SIZE_BUCKETS),
    (HTTP_SERVER_RESPONSE_BODY_SIZE, "http.server.response.body.size", "By", Histogram, &SIZE_BUCKETS),
    (HTTP_SERVER_TIME_TO_FIRST_BYTE, "http.server.time_to_first_byte", "s", Histogram, &DURATION_BUCKETS),
    (HTTP_SERVER_CACHE_REQUESTS, "http.server.cache.requests", "{request}", Counter, &[]),
    (HTTP_SERVER_REQUEST_ID_REJECTED, "http.server.request_id.rejected", "{request}", Counter, &[]),
    (CACHE_GETS, "cache.gets", "{get}", Counter, &[]),
    (CACHE_PUTS, "cache.puts", "{put}", Counter, &[]),
    (CACHE_EVICTIONS, "cache.evictions", "{eviction}", Counter, &[]),
    (CACHE_SIZE, "cache.size", "{entry}", Gauge, &[]),
    (CACHE_LOOKUP_DURATION, "cache.lookup.duration", "s", Histogram, &LOOKUP_DURATION_BUCKETS),
    // Literal names: health and alerts are features of their own.
    ("health_check_status", "health.check.status", "1", Gauge, &[]),
    ("health_check_duration_seconds", "health.check.duration", "s", Histogram, &DURATION_BUCKETS),
    ("tower_observability_alerts", "tower_observability.alerts", "{alert}", Gauge, &[]),
    (
        "tower_observability_alert_notifications_sent_total",
        "tower_observability.alert.notifications.sent",
        "{notification}",
        Counter,
        &[],
    ),
    (
        "tower_observability_alert_notifications_failed_total",
        "tower_observability.alert.notifications.failed",
        "{notification}",
        Counter,
        &[],
    ),
    (
        "tower_observability_alert_notifications_dropped_total",
        "tower_observability.alert.notifications.dropped",
        "{notification}",
        Counter,
        &[],
    ),
    ("otlp_exporter_spans_exported_total", "otlp.exporter.spans.exported", "{span}", Counter, &[]),
    ("otlp_exporter_spans_failed_total", "otlp.exporter.spans.failed", "{span}", Counter, &[]),
    ("otlp_exporter_spans_dropped_total", "otlp.exporter.spans.dropped", "{span}", Counter, &[]),
    ("otlp_exporter_spans_rejected_total", "otlp.exporter.spans.rejected", "{span}", Counter, &[]),
    ("otlp_exporter_queue_spans", "otlp.exporter.queue.spans", "{span}", UpDownCounter, &[]),
    (
        "otlp_exporter_log_records_exported_total",
        "otlp.exporter.log_records.exported",
        "{log_record}",
        Counter,
        &[],
    ),
    (
        "otlp_exporter_log_records_failed_total",
        "otlp.exporter.log_records.failed",
        "{log_record}",
        Counter,
        &[],
    ),
    (
        "otlp_exporter_log_records_dropped_total",
        "otlp.exporter.log_records.dropped",
        "{log_record}",
        Counter,
        &[],
    ),
    (
        "otlp_exporter_log_records_rejected_total",
        "otlp.exporter.log_records.rejected",
        "{log_record}",
        Counter,
        &[],
    ),
    (
        "otlp_exporter_queue_log_records",
        "otlp.exporter.queue.log_records",
        "{log_record}",
        UpDownCounter,
        &[],
    ),
    (
        "otlp_exporter_metric_points_exported_total",
        "otlp.exporter.metric_points.exported",
        "{data_point}",
        Counter,
        &[],
    ),
    (
        "otlp_exporter_metric_points_failed_total",
        "otlp.exporter.metric_points.failed",
        "{data_point}",
        Counter,
        &[],
    ),
    (
        "otlp_exporter_metric_points_rejected_total",
        "otlp.exporter.metric_points.rejected",
        "{data_point}",
        Counter,
        &[],
    ),
    ("process_cpu_seconds_total", "process.cpu.time", "s", Counter, &[]),
    ("process_resident_memory_bytes", "process.memory.usage", "By", Gauge, &[]),
    ("process_virtual_memory_bytes", "process.memory.virtual", "By", Gauge, &[]),
    ("process_virtual_memory_max_bytes", "process.memory.virtual.max", "By", Gauge, &[]),
    ("process_open_fds", "process.open_file_descriptor.count", "{file_descriptor}", Gauge, &[]),
    ("process_max_fds", "process.open_file_descriptor.limit", "{file_descriptor}", Gauge, &[]),
    ("process_threads", "process.thread.count", "{thread}", Gauge, &[]),
    ("process_start_time_seconds", "process.start_time", "s", Gauge, &[]),
];

/// The OTel form of the metric recorded as `name`, an instrument of the
/// `facade` kind (a facade gauge becomes a gauge unless the table says
/// up-down counter); `described` is the unit given to `describe_*!`.
pub(crate) fn metric(name: &str, facade: Instrument, described: Option<metrics::Unit>) -> OtelMetric {
    if let Some((_, otel, unit, instrument, boundaries)) = TABLE.iter().find(|row| row.0 == name) {
        return OtelMetric {
            name: Cow::Borrowed(otel),
            unit: Some(Cow::Borrowed(unit)),
            instrument: *instrument,
            boundaries,
        };
    }
    let otel = match facade {
        Counter => name.strip_suffix("_total").filter(|n| !n.is_empty()).unwrap_or(name),
        _ => name,
    };
    OtelMetric {
        name: Cow::Owned(otel.to_owned()),
        unit: described.map(ucum),
        instrument: facade,
        boundaries: &DURATION_BUCKETS,
    }
}

/// The UCUM form of a facade unit.
fn ucum(unit: metrics::Unit) -> Cow<'static, str> {
    use metrics::Unit as U;
    Cow::Borrowed(match unit {
        U::Count => "1",
        U::Percent => "%",
        U::Seconds => "s",
        U::Milliseconds => "ms",
        U::Microseconds => "us",
        U::Nanoseconds => "ns",
        U::Bytes => "By",
        U::Kibibytes => "KiBy",
        U::Mebibytes => "MiBy",
        U::Gibibytes => "GiBy",
        U::Tebibytes => "TiBy",
        U::BitsPerSecond => "bit/s",
        U::KilobitsPerSecond => "kbit/s",
        U::MegabitsPerSecond => "Mbit/s",
        U::GigabitsPerSecond => "Gbit/s",
        U::TerabitsPerSecond => "Tbit/s",
        U::CountPerSecond => "1/s",
    })
}

/// The OTel attribute of label `key`=`value` of the metric recorded as
/// `metric`.
pub(crate) fn attribute(metric: &str, key: &str, value: &str) -> opentelemetry::KeyValue {
    use opentelemetry::KeyValue;
    let otel_key: Cow<'static, str> = match key {
        "http_request_method" => "http.request.method".into(),
        "http_route" => "http.route".into(),
        "http_response_status_code" => {
            // An integer in the conventions; a label is text.
            return match value.parse::<i64>() {
                Ok(code) => KeyValue::new("http.response.status_code", code),
                Err(_) => KeyValue::new("http.response.status_code", value.to_owned()),
            };
        }
        "url_scheme" => "url.scheme".into(),
        "error_type" => "error.type".into(),
        "network_protocol_version" => "network.protocol.version".into(),
        "cache" if metric.starts_with("cache_") => "cache.name".into(),
        "result" if metric.starts_with("cache_") || metric == HTTP_SERVER_CACHE_REQUESTS => {
            "cache.result".into()
        }
        "check" if metric.starts_with("health_check_") => "health.check.name".into(),
        other => Cow::Owned(other.to_owned()),
    };
    KeyValue::new(otel_key, value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_metrics_get_their_semconv_form() {
        let duration = metric(HTTP_SERVER_REQUEST_DURATION, Histogram, Some(metrics::Unit::Seconds));
        assert_eq!(duration.name, "http.server.request.duration");
        assert_eq!(duration.unit.as_deref(), Some("s"));
        assert_eq!(duration.boundaries, DURATION_BUCKETS);
        let active = metric(HTTP_SERVER_ACTIVE_REQUESTS, Gauge, None);
        assert_eq!(active.instrument, UpDownCounter);
        assert_eq!(metric(HTTP_SERVER_REQUEST_BODY_SIZE, Histogram, None).unit.as_deref(), Some("By"));
        assert_eq!(metric(CACHE_GETS, Counter, None).name, "cache.gets");
    }

    #[test]
    fn other_metrics_keep_their_name_less_total() {
        let orders = metric("orders_placed_total", Counter, Some(metrics::Unit::Count));
        assert_eq!((orders.name.as_ref(), orders.unit.as_deref()), ("orders_placed", Some("1")));
        assert_eq!(metric("queue_depth", Gauge, None).name, "queue_depth");
        assert_eq!(metric("_total", Counter, None).name, "_total");
    }

    #[test]
    fn labels_get_otel_keys() {
        let status = attribute(HTTP_SERVER_REQUEST_DURATION, "http_response_status_code", "404");
        assert_eq!(status, opentelemetry::KeyValue::new("http.response.status_code", 404_i64));
        assert_eq!(attribute("x", "http_route", "/a").key.as_str(), "http.route");
        assert_eq!(attribute(CACHE_GETS, "cache", "users").key.as_str(), "cache.name");
        assert_eq!(attribute("mine", "cache", "users").key.as_str(), "cache");
        assert_eq!(attribute("x", "error_type", "500").key.as_str(), "error.type");
    }
}
