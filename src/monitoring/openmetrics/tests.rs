use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue, header::ACCEPT};
use metrics::Label;
use metrics_exporter_prometheus::PrometheusBuilder;
use opentelemetry::trace::{SpanId, TraceId};

use super::*;
use crate::metrics::{HTTP_SERVER_REQUEST_DURATION, SampledIds};

#[test]
fn canonical_numbers_are_those_of_the_specification() {
    // OpenMetrics 1.0, "Considerations: Canonical Numbers", both lists.
    let cases = [
        (0.0, "0.0"),
        (0.001, "0.001"),
        (0.002, "0.002"),
        (0.01, "0.01"),
        (0.1, "0.1"),
        (0.9, "0.9"),
        (0.95, "0.95"),
        (0.99, "0.99"),
        (0.999, "0.999"),
        (1.0, "1.0"),
        (1.7, "1.7"),
        (10.0, "10.0"),
        (1e-10, "1e-10"),
        (1e-9, "1e-09"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (100_000.0, "100000.0"),
        (1e6, "1e+06"),
        (1e10, "1e+10"),
        (1e23, "1e+23"),
        (1.1e23, "1.1e+23"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (-2.5, "-2.5"),
        // The crate's buckets.
        (0.005, "0.005"),
        (0.075, "0.075"),
        (7.5, "7.5"),
        (262_144.0, "262144.0"),
        (1_048_576.0, "1.048576e+06"),
        (67_108_864.0, "6.7108864e+07"),
    ];
    for (value, expected) in cases {
        assert_eq!(canonical(value), expected, "{value:?}");
    }
    assert_eq!(canonical(f64::NAN), "NaN");
}

#[test]
fn content_negotiation_follows_quality_values_and_specificity() {
    use MetricsFormat::{OpenMetrics as Om, Prometheus as Text};
    let prometheus_2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let prometheus_3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let cases: &[(Option<&str>, MetricsFormat)] = &[
        (None, Text),
        (Some(""), Text),
        (Some("*/*"), Text),
        (Some("text/plain"), Text),
        (Some("text/plain; version=0.0.4"), Text),
        (Some("application/json"), Text),
        (Some("application/*"), Text),
        (Some("garbage"), Text),
        (Some(prometheus_2), Om),
        (Some(prometheus_3), Om),
        (Some("application/openmetrics-text"), Om),
        (Some("application/openmetrics-text; version=1.0.0"), Om),
        (Some("Application/OpenMetrics-Text; Version=\"1.0.0\"; charset=utf-8"), Om),
        // Only a version this server does not write.
        (Some("application/openmetrics-text; version=0.0.1"), Text),
        (Some("application/openmetrics-text; version=2.0.0"), Text),
        // Quality values.
        (Some("application/openmetrics-text;q=0"), Text),
        (Some("application/openmetrics-text;q=0.5, text/plain;q=0.9"), Text),
        (Some("text/plain;q=0.5, application/openmetrics-text;q=0.9"), Om),
        (Some("application/openmetrics-text;q=0.5, */*;q=0.9"), Text),
        (Some("application/openmetrics-text;q=0.5, text/*;q=0.4"), Om),
        // Equal quality: the one named explicitly.
        (Some("text/plain, application/openmetrics-text"), Om),
        // The most specific range decides: OpenMetrics refused by name.
        (Some("*/*, application/openmetrics-text;q=0"), Text),
        (Some("application/openmetrics-text;version=1.0.0;q=0, application/openmetrics-text;q=1"), Text),
        // A malformed weight leaves its range out.
        (Some("application/openmetrics-text;q=high"), Text),
        (Some("application/openmetrics-text;q=2"), Text),
        // A comma inside a quoted parameter does not split.
        (Some("text/plain;x=\"a,application/openmetrics-text\";q=0.1"), Text),
    ];
    for (accept, expected) in cases {
        assert_eq!(MetricsFormat::from_accept(*accept), *expected, "Accept: {accept:?}");
    }
}

#[test]
fn several_accept_headers_are_one_list() {
    let mut headers = HeaderMap::new();
    assert_eq!(MetricsFormat::from_headers(&headers), MetricsFormat::Prometheus);
    headers.append(ACCEPT, HeaderValue::from_static("text/plain;q=0.5"));
    assert_eq!(MetricsFormat::from_headers(&headers), MetricsFormat::Prometheus);
    headers.append(ACCEPT, HeaderValue::from_static("application/openmetrics-text;version=1.0.0"));
    assert_eq!(MetricsFormat::from_headers(&headers), MetricsFormat::OpenMetrics);
    assert_eq!(
        MetricsFormat::OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(MetricsFormat::Prometheus.content_type(), "text/plain; version=0.0.4; charset=utf-8");
}

fn ids(n: u8) -> SampledIds {
    SampledIds { trace_id: TraceId::from_bytes([n; 16]), span_id: SpanId::from_bytes([n; 8]) }
}

/// The exporter's text for every type, as metrics-exporter-prometheus 0.18
/// writes it, rewritten.
#[test]
fn every_type_is_rewritten_as_the_specification_says() {
    let text = "\
# HELP cache_gets_total Cache lookups, by \"result\".
# TYPE cache_gets_total counter
cache_gets_total{cache=\"users\",result=\"hit\"} 5

# TYPE jobs counter
jobs 2

# HELP process_cpu_seconds_total CPU time.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1

# HELP http_server_active_requests Active requests.
# TYPE http_server_active_requests gauge
http_server_active_requests{http_request_method=\"GET\",url_scheme=\"http\"} 1
# TYPE temperature_celsius gauge
temperature_celsius inf
temperature_celsius{probe=\"b\"} -inf
temperature_celsius{probe=\"c\"} NaN

# HELP queue_wait_seconds Wait.
# TYPE queue_wait_seconds summary
queue_wait_seconds{quantile=\"0\"} 0.1
queue_wait_seconds{quantile=\"0.5\"} 0.2
queue_wait_seconds{quantile=\"1\"} 0.3
queue_wait_seconds_sum 0.6
queue_wait_seconds_count 3

# HELP upload_bytes Uploads.
# TYPE upload_bytes histogram
upload_bytes_bucket{path=\"a\\\\b\\\"c\\nd\",le=\"1048576\"} 1
upload_bytes_bucket{path=\"a\\\\b\\\"c\\nd\",le=\"+Inf\"} 1
upload_bytes_sum{path=\"a\\\\b\\\"c\\nd\"} 10
upload_bytes_count{path=\"a\\\\b\\\"c\\nd\"} 1

";
    let expected = "\
# TYPE cache_gets counter
# HELP cache_gets Cache lookups, by \\\"result\\\".
cache_gets_total{cache=\"users\",result=\"hit\"} 5
# TYPE jobs counter
jobs_total 2
# TYPE process_cpu_seconds counter
# UNIT process_cpu_seconds seconds
# HELP process_cpu_seconds CPU time.
process_cpu_seconds_total 1
# TYPE http_server_active_requests gauge
# HELP http_server_active_requests Active requests.
http_server_active_requests{http_request_method=\"GET\",url_scheme=\"http\"} 1
# TYPE temperature_celsius gauge
# UNIT temperature_celsius celsius
temperature_celsius +Inf
temperature_celsius{probe=\"b\"} -Inf
temperature_celsius{probe=\"c\"} NaN
# TYPE queue_wait_seconds summary
# UNIT queue_wait_seconds seconds
# HELP queue_wait_seconds Wait.
queue_wait_seconds{quantile=\"0.0\"} 0.1
queue_wait_seconds{quantile=\"0.5\"} 0.2
queue_wait_seconds{quantile=\"1.0\"} 0.3
queue_wait_seconds_sum 0.6
queue_wait_seconds_count 3
# TYPE upload_bytes histogram
# UNIT upload_bytes bytes
# HELP upload_bytes Uploads.
upload_bytes_bucket{path=\"a\\\\b\\\"c\\nd\",le=\"1.048576e+06\"} 1
upload_bytes_bucket{path=\"a\\\\b\\\"c\\nd\",le=\"+Inf\"} 1
upload_bytes_sum{path=\"a\\\\b\\\"c\\nd\"} 10
upload_bytes_count{path=\"a\\\\b\\\"c\\nd\"} 1
# EOF
";
    assert_eq!(translate(text, &ExemplarIndex::default()), expected);
}

#[test]
fn an_empty_recorder_is_an_empty_exposition() {
    assert_eq!(translate("", &ExemplarIndex::default()), "# EOF\n");
}

/// The crate's duration labels, in the order `RouteSeries` records them.
fn duration_labels(route: &'static str, status: &'static str) -> Vec<Label> {
    vec![
        Label::new("http_request_method", "GET"),
        Label::new("http_route", route),
        Label::new("http_response_status_code", status),
        Label::new("url_scheme", "http"),
        Label::new("network_protocol_version", "1.1"),
    ]
}

/// The lines of `text` naming `name` whose labels include `needle`.
fn lines<'a>(text: &'a str, name: &str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(name) && l.contains(needle)).collect()
}

#[test]
fn exemplars_go_on_the_bucket_of_their_value_and_nowhere_else() {
    let recorder = crate::prometheus_builder().build_recorder();
    let handle = recorder.handle();
    let registry = Exemplars::new();
    let labels = duration_labels("/users/{id}", "200");
    let series = registry.series_of(HTTP_SERVER_REQUEST_DURATION, &labels).unwrap();
    let other = registry.series_of(HTTP_SERVER_REQUEST_DURATION, &duration_labels("/quiet", "200")).unwrap();
    metrics::with_local_recorder(&recorder, || {
        let histogram = metrics::histogram!(HTTP_SERVER_REQUEST_DURATION, labels.clone());
        let quiet = metrics::histogram!(HTTP_SERVER_REQUEST_DURATION, duration_labels("/quiet", "200"));
        let at = Instant::now();
        for (seconds, n) in [(0.003, 1), (0.004, 2), (0.3, 3), (12.0, 4)] {
            histogram.record(seconds);
            series.record(seconds, ids(n), at + Duration::from_millis(u64::from(n)));
        }
        quiet.record(0.3);
        let _ = &other;
    });
    let text = render(&handle, &registry);
    let buckets = lines(&text, "http_server_request_duration_seconds_bucket", "/users/{id}");
    assert_eq!(buckets.len(), 15, "{text}");
    let with: Vec<&str> = buckets.iter().copied().filter(|l| l.contains(" # {")).collect();
    assert_eq!(with.len(), 3, "one per written bucket:\n{text}");
    let trace = |n: u8| format!("trace_id=\"{}\",span_id=\"{}\"", ids(n).trace_id, ids(n).span_id);
    // The latest of the 0.005 bucket, in it.
    assert!(with[0].starts_with("http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_route=\"/users/{id}\",http_response_status_code=\"200\",url_scheme=\"http\",network_protocol_version=\"1.1\",le=\"0.005\"} 2 # {"), "{}", with[0]);
    assert!(with[0].contains(&trace(2)) && with[0].contains("} 0.004 "), "{}", with[0]);
    assert!(
        with[1].contains("le=\"0.5\"") && with[1].contains(&trace(3)) && with[1].contains("} 0.3 "),
        "{}",
        with[1]
    );
    assert!(
        with[2].contains("le=\"+Inf\"") && with[2].contains(&trace(4)) && with[2].contains("} 12 "),
        "{}",
        with[2]
    );
    // The timestamp: seconds since the epoch, milliseconds.
    let ts: f64 = with[0].rsplit(' ').next().unwrap().parse().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(ts > now - 60.0 && ts <= now + 1.0, "{ts} vs {now}");
    // Not on `_count` or `_sum`, nor on a series without sampled requests.
    for line in text.lines().filter(|l| !l.contains("_bucket")) {
        assert!(!line.contains(" # {"), "{line}");
    }
    assert!(
        lines(&text, "http_server_request_duration_seconds_bucket", "/quiet")
            .iter()
            .all(|l| !l.contains('#'))
    );
    assert!(text.starts_with("# TYPE http_server_request_duration_seconds histogram\n# UNIT http_server_request_duration_seconds seconds\n") || text.contains("\n# TYPE http_server_request_duration_seconds histogram\n# UNIT http_server_request_duration_seconds seconds\n"), "{text}");
    assert!(text.ends_with("\n# EOF\n"));
}

#[test]
fn global_labels_in_front_do_not_hide_the_exemplars() {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&crate::metrics::DURATION_BUCKETS)
        .unwrap()
        .add_global_label("env", "prod")
        .build_recorder();
    let handle = recorder.handle();
    let registry = Exemplars::new();
    let labels = duration_labels("/g", "200");
    let series = registry.series_of(HTTP_SERVER_REQUEST_DURATION, &labels).unwrap();
    metrics::with_local_recorder(&recorder, || {
        metrics::histogram!(HTTP_SERVER_REQUEST_DURATION, labels.clone()).record(0.02);
        series.record(0.02, ids(9), Instant::now());
    });
    let text = render(&handle, &registry);
    let line = lines(&text, "http_server_request_duration_seconds_bucket", "le=\"0.025\"");
    assert_eq!(line.len(), 1, "{text}");
    assert!(
        line[0].starts_with("http_server_request_duration_seconds_bucket{env=\"prod\",http_request_method")
    );
    assert!(line[0].contains(&format!("trace_id=\"{}\"", ids(9).trace_id)), "{}", line[0]);
}

#[test]
fn buckets_of_other_bounds_get_the_exemplars_within_them() {
    // A recorder of the application's own, with coarser buckets.
    let recorder = PrometheusBuilder::new().set_buckets(&[0.1, 1.0]).unwrap().build_recorder();
    let handle = recorder.handle();
    let registry = Exemplars::new();
    let labels = duration_labels("/coarse", "200");
    let series = registry.series_of(HTTP_SERVER_REQUEST_DURATION, &labels).unwrap();
    let at = Instant::now();
    metrics::with_local_recorder(&recorder, || {
        let histogram = metrics::histogram!(HTTP_SERVER_REQUEST_DURATION, labels.clone());
        for (seconds, n) in [(0.004, 1), (0.06, 2), (0.02, 3)] {
            histogram.record(seconds);
            series.record(seconds, ids(n), at + Duration::from_millis(u64::from(n)));
        }
    });
    let text = render(&handle, &registry);
    let first = lines(&text, "http_server_request_duration_seconds_bucket", "le=\"0.1\"");
    // Three slots fall in (-inf, 0.1]: the latest one is shown.
    assert!(first[0].contains(&format!("trace_id=\"{}\"", ids(3).trace_id)), "{text}");
    assert!(lines(&text, "http_server_request_duration_seconds_bucket", "le=\"1.0\"")[0].ends_with(" 3"));
}

#[test]
fn everything_the_recorder_holds_is_rendered_users_metrics_too() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_counter!("signups", "Users who signed up.");
        metrics::counter!("signups", "plan" => "free").increment(4);
        metrics::gauge!("queue_depth").set(7.5);
        // No buckets: a summary.
        metrics::histogram!("render_seconds").record(0.25);
    });
    let text = render(&handle, &Exemplars::new());
    for needle in [
        "# TYPE signups counter\n# HELP signups Users who signed up.\nsignups_total{plan=\"free\"} 4\n",
        "# TYPE queue_depth gauge\nqueue_depth 7.5\n",
        "# TYPE render_seconds summary\n# UNIT render_seconds seconds\n",
        "render_seconds{quantile=\"0.0\"} 0.25",
        "render_seconds{quantile=\"0.99\"} ",
        "render_seconds_count 1\n",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
}
