//! `/metrics` in OpenMetrics 1.0 text, with the exemplars of the crate's
//! duration histograms: see [`render_openmetrics`]; the format is chosen by
//! [`MetricsFormat`](super::MetricsFormat).

use std::{collections::HashMap, fmt::Write as _, time::UNIX_EPOCH};

use metrics_exporter_prometheus::{PrometheusHandle, formatting};

#[cfg(test)]
use super::negotiation::MetricsFormat;
use crate::metrics::{Exemplar, Exemplars};

/// Renders the metrics of `handle` in OpenMetrics 1.0 text, with the
/// exemplars of [`Exemplars::global`], the registry the crate's layers
/// record into: what `/metrics` answers a client that asks for
/// [`MetricsFormat::OpenMetrics`](super::MetricsFormat::OpenMetrics).
///
/// # One source per series
///
/// The `metrics` facade has no exemplar API, and metrics-exporter-prometheus
/// renders none. The crate does not render any series of its own: every
/// count, sum, bucket, gauge and counter, the application's too, comes from
/// the one Prometheus recorder (`PrometheusHandle::render`, the 0.0.4 text
/// served as it is to every other client). For OpenMetrics that text is
/// rewritten line by line into OpenMetrics 1.0 (OpenMetrics 1.0, "Text
/// format"), and the only data added are the exemplars, which the recorder
/// cannot hold: they come from the crate's exemplar slots
/// ([`Exemplars`](crate::metrics::Exemplars)), kept beside each series'
/// histogram handle and keyed by the same name and labels, formatted with
/// the exporter's own `formatting` functions to find the rendered series
/// again.
///
/// The rewrite, per the specification's sections:
///
/// - "Counter": the family is named without `_total`
///   (`# TYPE cache_gets counter`) and the sample with it
///   (`cache_gets_total 5`), also for a counter recorded without the suffix.
/// - "Unit" and "Units and Base Units": `# UNIT` for a family whose name
///   ends in a base unit (`_seconds`, `_bytes`, `_joules`, `_grams`,
///   `_meters`, `_ratio`, `_volts`, `_amperes`, `_celsius`), as the
///   specification requires the unit to be that suffix.
/// - "Considerations: Canonical Numbers": `le` and `quantile` values in the
///   Go `%g` rendering with `.0` added (`1.0`, `0.005`, `1e+06`, `+Inf`).
/// - "Escaping": `"` escaped in `# HELP` (0.0.4 leaves it raw).
/// - "Numbers": `+Inf`/`-Inf` for infinite gauge values.
/// - "Overall Structure": metadata in the order TYPE, UNIT, HELP, no blank
///   line, `# EOF` last.
/// - "Histogram" / "Exemplars": on a `_bucket` line, the latest exemplar
///   whose value lies in that bucket (above the previous bound, at most its
///   own), as `# {trace_id="..",span_id=".."} value timestamp`; none on
///   `_count` or `_sum`. `_created` is left out (a SHOULD the recorder has
///   no data for).
///
/// A series whose exemplars are shown must be rendered with the labels the
/// crate recorded it with; labels the recorder adds in front of them
/// (`PrometheusBuilder::add_global_label`) are allowed for.
///
/// What the formats make differ: a counter recorded as `jobs` is `jobs` in
/// the 0.0.4 text and `jobs_total` in OpenMetrics (the specification's
/// suffix), so Prometheus stores it under either name depending on the
/// format it scraped; the crate's counters all end in `_total` and keep
/// their name. A counter `x_total` beside a gauge `x` make two families
/// named `x`, which OpenMetrics forbids ("Suffixes"): name them apart.
///
/// ```
/// use tower_observability::monitoring::render_openmetrics;
///
/// let recorder = tower_observability::prometheus_builder().build_recorder();
/// let handle = recorder.handle();
/// metrics::with_local_recorder(&recorder, || metrics::counter!("orders_total").increment(3));
/// let text = render_openmetrics(&handle);
/// assert_eq!(text, "# TYPE orders counter\norders_total 3\n# EOF\n");
/// ```
#[must_use]
pub fn render_openmetrics(handle: &PrometheusHandle) -> String {
    render(handle, &Exemplars::global())
}

/// [`render_openmetrics`] with the exemplars of `exemplars`.
pub(crate) fn render(handle: &PrometheusHandle, exemplars: &Exemplars) -> String {
    crate::metrics::flush();
    // Exemplars first: each belongs to a sample recorded before it, which
    // the rendering below then counts.
    let index = ExemplarIndex::new(exemplars);
    translate(&handle.render(), &index)
}

/// The exemplars held now, by rendered metric name and label string.
#[derive(Debug, Default)]
struct ExemplarIndex {
    by_series: HashMap<String, HashMap<String, Vec<Exemplar>>>,
}

impl ExemplarIndex {
    fn new(exemplars: &Exemplars) -> Self {
        let mut by_series = HashMap::new();
        for series in exemplars.series() {
            let found = series.read();
            if found.is_empty() {
                continue;
            }
            let labels: Vec<String> = series
                .labels()
                .iter()
                .map(|l| {
                    format!(
                        "{}=\"{}\"",
                        formatting::sanitize_label_key(l.key()),
                        formatting::sanitize_label_value(l.value())
                    )
                })
                .collect();
            let name = formatting::sanitize_metric_name(series.name());
            by_series.entry(name).or_insert_with(HashMap::new).insert(labels.join(","), found);
        }
        Self { by_series }
    }

    /// The latest exemplar of the series `name{labels}` whose value is in
    /// `(above, upto]`. `pairs` are the starts of the label pairs in
    /// `labels`: a label string with labels in front of the recorded ones
    /// (global labels) is tried without them.
    fn find(&self, name: &str, labels: &str, pairs: &[usize], above: f64, upto: f64) -> Option<&Exemplar> {
        let by_labels = self.by_series.get(name)?;
        let series = pairs.iter().find_map(|&start| by_labels.get(&labels[start..]))?;
        series
            .iter()
            .filter(|e| above < e.value && e.value <= upto)
            .max_by(|a, b| a.timestamp.cmp(&b.timestamp))
    }
}

/// The OpenMetrics type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Unknown,
}

/// The family being rewritten.
#[derive(Debug)]
struct Family<'a> {
    /// Its name in the 0.0.4 text.
    name: &'a str,
    kind: Kind,
    /// Its OpenMetrics name (a counter's without `_total`).
    om_name: &'a str,
}

/// The bucket bounds seen so far of the histogram series being rewritten.
#[derive(Debug, Default)]
struct Buckets {
    labels: String,
    previous: f64,
}

/// Base units (OpenMetrics 1.0, "Units and Base Units"), as name suffixes.
const BASE_UNITS: [&str; 9] =
    ["seconds", "bytes", "joules", "grams", "meters", "ratio", "volts", "amperes", "celsius"];

/// Rewrites the Prometheus 0.0.4 text of metrics-exporter-prometheus into
/// OpenMetrics 1.0 text; see the module docs. A sample line it cannot read
/// is left out, so that the rest stays a valid exposition.
fn translate(text: &str, exemplars: &ExemplarIndex) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut help: Option<(&str, &str)> = None;
    let mut family: Option<Family<'_>> = None;
    let mut buckets = Buckets::default();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').or(Some((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ') else { continue };
            let kind = match kind.trim() {
                "counter" => Kind::Counter,
                "gauge" => Kind::Gauge,
                "histogram" => Kind::Histogram,
                "summary" => Kind::Summary,
                _ => Kind::Unknown,
            };
            let om_name = match kind {
                Kind::Counter => name.strip_suffix("_total").filter(|n| !n.is_empty()).unwrap_or(name),
                _ => name,
            };
            write_metadata(&mut out, om_name, kind, help.take().filter(|(n, _)| *n == name).map(|(_, h)| h));
            family = Some(Family { name, kind, om_name });
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some(sample) = Sample::parse(line) else { continue };
        match &family {
            Some(f) if f.kind == Kind::Counter && sample.name == f.name => {
                let _ = writeln!(out, "{}_total{} {}", f.om_name, sample.braced(), sample.value);
            }
            Some(f) if f.kind == Kind::Histogram && sample.name.strip_suffix("_bucket") == Some(f.name) => {
                write_bucket(&mut out, &sample, f.name, &mut buckets, exemplars);
            }
            Some(f) if f.kind == Kind::Summary && sample.name == f.name => {
                write_with_canonical(&mut out, &sample, "quantile");
            }
            _ => {
                let _ = writeln!(out, "{}{} {}", sample.name, sample.braced(), number(sample.value));
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// `# TYPE`, `# UNIT` and `# HELP` of a family, in that order.
fn write_metadata(out: &mut String, name: &str, kind: Kind, help: Option<&str>) {
    let kind_name = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
        Kind::Summary => "summary",
        Kind::Unknown => "unknown",
    };
    let _ = writeln!(out, "# TYPE {name} {kind_name}");
    if let Some(unit) =
        BASE_UNITS.iter().find(|u| name.strip_suffix(**u).is_some_and(|n| n.ends_with('_') && n.len() > 1))
    {
        let _ = writeln!(out, "# UNIT {name} {unit}");
    }
    if let Some(help) = help.filter(|h| !h.is_empty()) {
        // 0.0.4 escapes `\` and line feeds in HELP; OpenMetrics also `"`.
        let _ = writeln!(out, "# HELP {name} {}", help.replace('"', "\\\""));
    }
}

/// A `_bucket` line, its `le` canonical, with the exemplar of its bucket.
fn write_bucket(
    out: &mut String,
    sample: &Sample<'_>,
    family: &str,
    buckets: &mut Buckets,
    exemplars: &ExemplarIndex,
) {
    let Some(le) = sample.label("le") else { return };
    let Some(upto) = parse_number(le) else { return };
    let series = sample.labels_without("le");
    if buckets.labels != series {
        buckets.labels.clear();
        buckets.labels.push_str(&series);
        buckets.previous = f64::NEG_INFINITY;
    }
    let above = std::mem::replace(&mut buckets.previous, upto);
    let starts = pair_starts(&series);
    write_with_canonical_le(out, sample, upto);
    if let Some(e) = exemplars.find(family, &series, &starts, above, upto) {
        // Drop the line feed written above and add the exemplar.
        out.pop();
        let at = e.timestamp.duration_since(UNIX_EPOCH).unwrap_or_default();
        let _ = writeln!(
            out,
            " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {}.{:03}",
            e.trace_id,
            e.span_id,
            e.value,
            at.as_secs(),
            at.subsec_millis()
        );
    }
}

fn write_with_canonical_le(out: &mut String, sample: &Sample<'_>, le: f64) {
    let _ = writeln!(
        out,
        "{}{{{}}} {}",
        sample.name,
        sample.labels_with("le", &canonical(le)),
        number(sample.value)
    );
}

/// A sample whose `label` holds a number, rendered canonical.
fn write_with_canonical(out: &mut String, sample: &Sample<'_>, label: &str) {
    let Some(value) = sample.label(label).and_then(parse_number) else { return };
    let _ = writeln!(
        out,
        "{}{{{}}} {}",
        sample.name,
        sample.labels_with(label, &canonical(value)),
        number(sample.value)
    );
}

/// The starts of the label pairs of a label string (without braces).
fn pair_starts(labels: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => starts.push(i + 1),
            _ => {}
        }
    }
    starts
}

/// One sample line of the 0.0.4 text: `name{labels} value`.
#[derive(Debug)]
struct Sample<'a> {
    name: &'a str,
    /// The label pairs, as written (values escaped).
    labels: Vec<(&'a str, &'a str)>,
    value: &'a str,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let end = line.find(['{', ' '])?;
        let name = &line[..end];
        let mut labels = Vec::new();
        let mut rest = &line[end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut s = inner;
            loop {
                if let Some(after) = s.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (key, after) = s.split_once("=\"")?;
                let close = closing_quote(after)?;
                labels.push((key, &after[..close]));
                s = &after[close + 1..];
                s = s.strip_prefix(',').unwrap_or(s);
            }
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next()?;
        Some(Self { name, labels, value })
    }

    /// The raw (escaped) value of label `key`.
    fn label(&self, key: &str) -> Option<&'a str> {
        self.labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The labels, written back: `{a="x",b="y"}`, or nothing without any.
    fn braced(&self) -> String {
        if self.labels.is_empty() { String::new() } else { format!("{{{}}}", self.labels_with("", "")) }
    }

    /// The labels without `key`, written back without braces.
    fn labels_without(&self, key: &str) -> String {
        let mut out = String::new();
        for (k, v) in self.labels.iter().filter(|(k, _)| *k != key) {
            if !out.is_empty() {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{v}\"");
        }
        out
    }

    /// The labels with the value of `key` replaced by `value`, without
    /// braces.
    fn labels_with(&self, key: &str, value: &str) -> String {
        let mut out = String::new();
        for (k, v) in &self.labels {
            if !out.is_empty() {
                out.push(',');
            }
            let v = if *k == key { value } else { v };
            let _ = write!(out, "{k}=\"{v}\"");
        }
        out
    }
}

/// The index of the quote closing an escaped label value.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// A number of the 0.0.4 text (Rust's rendering of a float).
fn parse_number(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// A sample value in OpenMetrics: Rust's `inf` becomes `+Inf`.
fn number(value: &str) -> &str {
    match value {
        "inf" => "+Inf",
        "-inf" => "-Inf",
        v => v,
    }
}

/// The canonical rendering of `v` (OpenMetrics 1.0, "Considerations:
/// Canonical Numbers"): Go's `%g` (shortest digits, an exponent of at least
/// two digits below 1e-4 and from 1e+06), with `.0` added to a number
/// without a point or exponent.
fn canonical(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("an integer exponent");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if v.is_sign_negative() && v != 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs());
    }
    let rendered = if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
        } else {
            format!("{}.{}", &digits[..int_len], &digits[int_len..])
        }
    };
    format!("{sign}{rendered}")
}

#[cfg(test)]
mod tests;
