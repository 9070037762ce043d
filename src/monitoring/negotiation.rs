//! Content negotiation of `/metrics`: the Prometheus text exposition
//! format 0.0.4, or OpenMetrics 1.0 for a client that asks for it
//! (RFC 9110, section 12.5.1, quality values and specificity).

use http::{HeaderMap, header::ACCEPT};

use super::PROMETHEUS_CONTENT_TYPE;

/// Content type of OpenMetrics 1.0 text (OpenMetrics 1.0, "Overall
/// Structure").
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition format of a `/metrics` answer, chosen from the request's
/// `Accept` header ([`from_accept`](Self::from_accept)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsFormat {
    /// The Prometheus text exposition format 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text, with exemplars.
    OpenMetrics,
}

impl MetricsFormat {
    /// The format for the `Accept` header value `accept` (RFC 9110,
    /// section 12.5.1): OpenMetrics when the client names
    /// `application/openmetrics-text` (with `version=1.0.0` or no version)
    /// with a quality above zero and at least that of every range matching
    /// `text/plain; version=0.0.4` (`text/plain`, `text/*`, `*/*`), the most
    /// specific range deciding each type's quality; the Prometheus text
    /// otherwise: without the header, for `*/*`, for anything unknown.
    ///
    /// ```
    /// use tower_observability::monitoring::MetricsFormat;
    ///
    /// // What Prometheus sends.
    /// let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// assert_eq!(MetricsFormat::from_accept(Some(prometheus)), MetricsFormat::OpenMetrics);
    /// assert_eq!(MetricsFormat::from_accept(Some("*/*")), MetricsFormat::Prometheus);
    /// assert_eq!(MetricsFormat::from_accept(None), MetricsFormat::Prometheus);
    /// ```
    #[must_use]
    pub fn from_accept(accept: Option<&str>) -> Self {
        let Some(accept) = accept else { return Self::Prometheus };
        let ranges: Vec<MediaRange<'_>> =
            split_outside_quotes(accept, ',').filter_map(MediaRange::parse).collect();
        let quality = |ty: &str, subtype: &str, version: &str| {
            ranges
                .iter()
                .filter_map(|r| r.specificity(ty, subtype, version).map(|s| (s, r.q)))
                .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        };
        let Some((specificity, om)) = quality("application", "openmetrics-text", "1.0.0") else {
            return Self::Prometheus;
        };
        let text = quality("text", "plain", "0.0.4").map_or(0.0, |(_, q)| q);
        // Named explicitly, not through a wildcard: `*/*` keeps the default.
        if specificity >= Specificity::Type && om > 0.0 && om >= text {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The format for a request's headers: their `Accept` values, joined
    /// as one list (RFC 9110, section 5.3).
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue, header::ACCEPT};
    /// use tower_observability::monitoring::MetricsFormat;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.append(ACCEPT, HeaderValue::from_static("text/plain;q=0.5"));
    /// headers.append(ACCEPT, HeaderValue::from_static("application/openmetrics-text"));
    /// assert_eq!(MetricsFormat::from_headers(&headers), MetricsFormat::OpenMetrics);
    /// ```
    #[must_use]
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let values: Vec<&str> = headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
        if values.is_empty() { Self::Prometheus } else { Self::from_accept(Some(&values.join(","))) }
    }

    /// The `Content-Type` of an answer in this format.
    ///
    /// ```
    /// use tower_observability::monitoring::{MetricsFormat, OPENMETRICS_CONTENT_TYPE};
    ///
    /// assert_eq!(MetricsFormat::OpenMetrics.content_type(), OPENMETRICS_CONTENT_TYPE);
    /// ```
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => PROMETHEUS_CONTENT_TYPE,
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// How closely a media range names a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    /// `*/*`
    Any,
    /// `type/*`
    Subtypes,
    /// `type/subtype`
    Type,
    /// `type/subtype; version=..`
    Version,
}

/// One media range of an `Accept` header.
#[derive(Debug)]
struct MediaRange<'a> {
    ty: &'a str,
    subtype: &'a str,
    version: Option<&'a str>,
    q: f32,
}

impl<'a> MediaRange<'a> {
    fn parse(range: &'a str) -> Option<Self> {
        let mut parts = split_outside_quotes(range, ';').map(str::trim);
        let (ty, subtype) = parts.next()?.split_once('/')?;
        let (mut version, mut q) = (None, 1.0);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else { continue };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "version" => version = Some(value),
                // A malformed weight leaves the range out.
                "q" => q = value.parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q))?,
                _ => {}
            }
        }
        Some(Self { ty: ty.trim(), subtype: subtype.trim(), version, q })
    }

    /// How this range matches `ty/subtype` served in `version`; `None`
    /// when it does not.
    fn specificity(&self, ty: &str, subtype: &str, version: &str) -> Option<Specificity> {
        if self.ty == "*" {
            return (self.subtype == "*").then_some(Specificity::Any);
        }
        if !self.ty.eq_ignore_ascii_case(ty) {
            return None;
        }
        if self.subtype == "*" {
            return Some(Specificity::Subtypes);
        }
        if !self.subtype.eq_ignore_ascii_case(subtype) {
            return None;
        }
        match self.version {
            None => Some(Specificity::Type),
            Some(v) if v == version => Some(Specificity::Version),
            Some(_) => None,
        }
    }
}

/// `s` split at `sep` where it is not within a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    s.split(move |c: char| {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        }
        c == sep && !quoted
    })
}
