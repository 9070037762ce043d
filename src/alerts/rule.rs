//! [`AlertRule`], its [`AlertMetric`], [`Comparison`] and [`Severity`], and
//! the default rules.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::{Deserialize, Serialize};

use crate::window::Window;

/// How urgent an alert is, from most to least: the order of
/// [`AlertEngine::active`](super::AlertEngine::active).
///
/// Serializes in lowercase (`"critical"`, `"warning"`, `"info"`), the
/// `severity` label of Prometheus and Alertmanager conventions.
///
/// # Example
///
/// ```
/// use tower_observability::alerts::Severity;
///
/// assert!(Severity::Critical < Severity::Warning);
/// assert_eq!(Severity::Info.as_str(), "info");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Someone should act now (page).
    Critical,
    /// Someone should look soon (ticket).
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// All severities, most urgent first.
    pub const ALL: [Self; 3] = [Self::Critical, Self::Warning, Self::Info];

    /// The label value: `critical`, `warning` or `info`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    /// `critical`, `warning` or `info`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|sev| sev.as_str() == s)
            .ok_or_else(|| format!("unknown severity {s:?}: expected critical, warning or info"))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The windowed figure a rule watches, read from
/// [`AlertInputs`](super::AlertInputs).
///
/// The *samples* of a figure, compared with [`AlertRule::min_samples`], are
/// the requests of the rule's window for the HTTP figures, the hits plus
/// misses for a cache, and are not counted for readiness.
///
/// # Example
///
/// ```
/// use tower_observability::alerts::AlertMetric;
///
/// assert_eq!(AlertMetric::ErrorRatio.format_value(0.0734), "7.34%");
/// assert_eq!(AlertMetric::LatencyP95.format_value(2.5), "2.5 s");
/// assert_eq!(AlertMetric::Readiness.format_value(0.0), "unhealthy");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlertMetric {
    /// Failed requests over requests (0 to 1), as classified by the crate's
    /// `error_type`.
    ErrorRatio,
    /// The median request duration, in seconds.
    LatencyP50,
    /// The 95th percentile of request durations, in seconds.
    LatencyP95,
    /// The 99th percentile of request durations, in seconds.
    LatencyP99,
    /// Requests per second.
    RequestRate,
    /// The hit ratio (0 to 1) of the cache named `cache`, or, with `None`, of
    /// every cache in the inputs: one alert per cache (at most
    /// [`MAX_CACHE_ALERTS`](super::MAX_CACHE_ALERTS) per rule).
    CacheHitRatio {
        /// The cache name (the `cache` label); `None` for each cache.
        cache: Option<String>,
    },
    /// The readiness status as the `health_check_status` gauge encodes it:
    /// `1` healthy, `0.5` degraded, `0` unhealthy.
    Readiness,
    /// The error-budget burn rate of the service level objective named
    /// `slo` over two windows, the lesser of the two (so that the rule
    /// fires only while both burn faster than its threshold: the SRE
    /// workbook's multi-window alert). A burn rate of 1 spends the budget
    /// in exactly the SLO's period. Read from
    /// [`AlertInputs::burn_rates`](super::AlertInputs::burn_rates); made by
    /// [`Slo::alert_rules`](crate::slo::Slo::alert_rules).
    BurnRate {
        /// The SLO's name.
        slo: String,
        /// The long window (1 h for a 30-day SLO).
        long: Duration,
        /// The short window (5 m for a 30-day SLO).
        short: Duration,
    },
}

impl AlertMetric {
    /// A snake_case name: `error_ratio`, `latency_p95_seconds`,
    /// `request_rate`, `cache_hit_ratio`, `readiness`, ...
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::ErrorRatio => "error_ratio",
            Self::LatencyP50 => "latency_p50_seconds",
            Self::LatencyP95 => "latency_p95_seconds",
            Self::LatencyP99 => "latency_p99_seconds",
            Self::RequestRate => "request_rate",
            Self::CacheHitRatio { .. } => "cache_hit_ratio",
            Self::Readiness => "readiness",
            Self::BurnRate { .. } => "slo_burn_rate",
        }
    }

    /// `value` for humans: ratios in percent, latencies in seconds, rates
    /// per second, readiness as a status name.
    #[must_use]
    pub fn format_value(&self, value: f64) -> String {
        match self {
            Self::ErrorRatio | Self::CacheHitRatio { .. } => format!("{}%", round(value * 100.0)),
            Self::LatencyP50 | Self::LatencyP95 | Self::LatencyP99 => format!("{} s", round(value)),
            Self::RequestRate => format!("{}/s", round(value)),
            Self::BurnRate { .. } => format!("{}x", round(value)),
            Self::Readiness if value >= 1.0 => "healthy".to_owned(),
            Self::Readiness if value >= 0.5 => "degraded".to_owned(),
            Self::Readiness => "unhealthy".to_owned(),
        }
    }
}

/// `v` rounded to 1 decimal from 100 up, 2 from 1 up, 3 below.
fn round(v: f64) -> f64 {
    let scale = match v.abs() {
        a if a >= 100.0 => 10.0,
        a if a >= 1.0 => 100.0,
        _ => 1000.0,
    };
    (v * scale).round() / scale
}

/// On which side of the threshold a rule fires.
///
/// # Example
///
/// ```
/// use tower_observability::alerts::Comparison;
///
/// assert!(Comparison::Above.holds(0.06, 0.05));
/// assert!(!Comparison::Above.holds(0.05, 0.05), "strict");
/// assert!(Comparison::Below.holds(0.6, 0.7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Comparison {
    /// Fires when the value is strictly above the threshold.
    Above,
    /// Fires when the value is strictly below the threshold.
    Below,
}

impl Comparison {
    /// Whether `value` is strictly past `threshold` on this side; never for
    /// NaN.
    #[must_use]
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Above => value > threshold,
            Self::Below => value < threshold,
        }
    }

    /// The PromQL operator: `>` or `<`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Above => ">",
            Self::Below => "<",
        }
    }
}

/// The relative margin of the default resolve threshold: a rule resolves
/// once its value is 10 % of the threshold back on the good side
/// (`threshold × 0.9` for [`Comparison::Above`], `threshold × 1.1` for
/// [`Comparison::Below`]).
pub const DEFAULT_HYSTERESIS: f64 = 0.1;

/// The threshold of [`AlertRule::high_error_ratio`]: 5 % of requests failed.
pub const DEFAULT_ERROR_RATIO: f64 = 0.05;
/// The threshold of [`AlertRule::high_latency_p95`]: a p95 of 2 seconds.
pub const DEFAULT_LATENCY_P95_SECONDS: f64 = 2.0;
/// The threshold of [`AlertRule::low_cache_hit_ratio`]: 70 % hits, as
/// [`CacheHitRatios`](crate::cache::CacheHitRatios) warns.
pub const DEFAULT_CACHE_HIT_RATIO: f64 = crate::cache::DEFAULT_WARN_BELOW;
/// The minimum samples of the HTTP and cache default rules: 20 requests
/// (or cache lookups) in the window, as
/// [`CacheHitRatios`](crate::cache::CacheHitRatios) requires.
pub const DEFAULT_MIN_SAMPLES: u64 = crate::cache::DEFAULT_MIN_SAMPLES;

/// One threshold rule over a windowed figure.
///
/// The condition is `value <comparison> threshold` over the figure of
/// `window`, with at least `min_samples` samples. It makes the alert
/// *pending*, then *firing* once it has held for `for_`. A firing alert
/// resolves when the value comes back past the
/// [resolve threshold](Self::resolves_at) (hysteresis), or when the figure
/// is missing or has too few samples. See the [module docs](super) for
/// the state machine.
///
/// `summary` and `description` may use the placeholders `{value}`,
/// `{threshold}`, `{window}` and `{cache}`, filled in when the alert is
/// shown or sent.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_observability::{
///     alerts::{AlertMetric, AlertRule, Comparison, Severity},
///     window::Window,
/// };
///
/// // Warn when fewer than 0.5 requests per second arrive for 10 minutes.
/// let rule = AlertRule::new("LowTraffic", AlertMetric::RequestRate, Comparison::Below, 0.5)
///     .window(Window::FiveMinutes)
///     .for_duration(Duration::from_secs(600))
///     .severity(Severity::Info)
///     .label("team", "users")
///     .summary("Only {value} over the last {window}");
/// assert_eq!(rule.resolves_at(), 0.55);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[must_use]
pub struct AlertRule {
    /// The alert name (`alertname`), in UpperCamelCase by Prometheus
    /// convention.
    pub name: String,
    /// The watched figure.
    pub metric: AlertMetric,
    /// The window the figure is read over. Ignored by
    /// [`AlertMetric::Readiness`].
    pub window: Window,
    /// The side of the threshold that fires.
    pub comparison: Comparison,
    /// The firing threshold.
    pub threshold: f64,
    /// The resolve threshold; `None` for the default margin of
    /// [`DEFAULT_HYSTERESIS`]. See [`resolves_at`](Self::resolves_at).
    pub resolve_threshold: Option<f64>,
    /// How long the condition must hold before the alert fires (Prometheus'
    /// `for`); zero fires at the first evaluation that sees it.
    pub for_: Duration,
    /// The severity.
    pub severity: Severity,
    /// The fewest samples the figure needs for the rule to fire; fewer is
    /// treated as no data.
    pub min_samples: u64,
    /// Extra labels sent with the alert (e.g. `team`).
    pub labels: BTreeMap<String, String>,
    /// A one-line summary, with placeholders.
    pub summary: String,
    /// A longer description, with placeholders.
    pub description: String,
}

impl AlertRule {
    /// A rule firing when `metric` is past `threshold` on the side of
    /// `comparison`, over the last 5 minutes, for 1 minute, as a warning,
    /// with no minimum of samples and the default hysteresis.
    pub fn new(name: impl Into<String>, metric: AlertMetric, comparison: Comparison, threshold: f64) -> Self {
        let name = name.into();
        let summary = format!("{name}: {{value}} {} {{threshold}} over {{window}}", comparison.as_str());
        Self {
            name,
            metric,
            window: Window::FiveMinutes,
            comparison,
            threshold,
            resolve_threshold: None,
            for_: Duration::from_secs(60),
            severity: Severity::Warning,
            min_samples: 0,
            labels: BTreeMap::new(),
            summary,
            description: String::new(),
        }
    }

    /// `HighErrorRatio`, critical: more than 5 % of the requests of the
    /// last 5 minutes failed, with at least 20 requests, for 1 minute;
    /// resolves at 4.5 % or less.
    ///
    /// The 5-minute window smooths single bursts, and the extra minute of
    /// `for` confirms over four 15-second evaluations; the 20-request floor
    /// keeps one failed request out of three at night from paging anyone.
    ///
    /// ```
    /// use tower_observability::alerts::{AlertRule, Severity};
    ///
    /// let rule = AlertRule::high_error_ratio();
    /// assert_eq!((rule.threshold, rule.severity, rule.for_.as_secs()), (0.05, Severity::Critical, 60));
    /// ```
    pub fn high_error_ratio() -> Self {
        Self::new("HighErrorRatio", AlertMetric::ErrorRatio, Comparison::Above, DEFAULT_ERROR_RATIO)
            .severity(Severity::Critical)
            .min_samples(DEFAULT_MIN_SAMPLES)
            .summary("{value} of requests failed over the last {window} (threshold {threshold})")
            .description(
                "More than {threshold} of HTTP requests failed (5xx, panic, timeout or body error) over the \
                 last {window}.",
            )
    }

    /// `HighLatencyP95`, warning: the p95 request duration of the last 5
    /// minutes is above 2 s, with at least 20 requests, for 5 minutes;
    /// resolves at 1.8 s or less.
    ///
    /// ```
    /// use tower_observability::alerts::{AlertMetric, AlertRule};
    ///
    /// let rule = AlertRule::high_latency_p95();
    /// assert_eq!((rule.metric, rule.threshold, rule.for_.as_secs()), (AlertMetric::LatencyP95, 2.0, 300));
    /// ```
    pub fn high_latency_p95() -> Self {
        Self::new("HighLatencyP95", AlertMetric::LatencyP95, Comparison::Above, DEFAULT_LATENCY_P95_SECONDS)
            .for_duration(Duration::from_secs(300))
            .min_samples(DEFAULT_MIN_SAMPLES)
            .summary("p95 latency is {value} over the last {window} (threshold {threshold})")
            .description(
                "The 95th percentile of HTTP request durations stayed above {threshold} for 5 minutes.",
            )
    }

    /// `LowCacheHitRatio`, warning, one alert per cache: the hit ratio of
    /// the last 15 minutes is below 70 %, with at least 20 lookups, for 5
    /// minutes; resolves at 77 % or more.
    ///
    /// The long window and the sample floor keep a cold start or a quiet
    /// cache from warning.
    ///
    /// ```
    /// use tower_observability::{alerts::AlertRule, window::Window};
    ///
    /// let rule = AlertRule::low_cache_hit_ratio();
    /// assert_eq!((rule.window, rule.min_samples, rule.resolves_at()), (Window::FifteenMinutes, 20, 0.77));
    /// ```
    pub fn low_cache_hit_ratio() -> Self {
        Self::new(
            "LowCacheHitRatio",
            AlertMetric::CacheHitRatio { cache: None },
            Comparison::Below,
            DEFAULT_CACHE_HIT_RATIO,
        )
        .window(Window::FifteenMinutes)
        .for_duration(Duration::from_secs(300))
        .min_samples(DEFAULT_MIN_SAMPLES)
        .summary("cache {cache} hit ratio is {value} over the last {window} (threshold {threshold})")
        .description("The hit ratio of cache {cache} stayed below {threshold} for 5 minutes.")
    }

    /// `ReadinessUnhealthy`, critical: the readiness checks report
    /// unhealthy (the value, `0`, is below `0.25`) for 1 minute; resolves
    /// at degraded or better (`0.5` and `1` are above the resolve threshold
    /// `0.275`).
    ///
    /// The load balancer already takes an unready instance out of rotation;
    /// the minute of `for` leaves room for a restart or a short dependency
    /// blip before paging.
    ///
    /// ```
    /// use tower_observability::alerts::{AlertRule, Severity};
    ///
    /// let rule = AlertRule::readiness_unhealthy();
    /// assert_eq!((rule.threshold, rule.severity), (0.25, Severity::Critical));
    /// ```
    pub fn readiness_unhealthy() -> Self {
        Self::new("ReadinessUnhealthy", AlertMetric::Readiness, Comparison::Below, 0.25)
            .window(Window::OneMinute)
            .severity(Severity::Critical)
            .summary("readiness checks report {value}")
            .description("The readiness checks of the service have reported unhealthy for 1 minute.")
    }

    /// The four default rules: [`high_error_ratio`](Self::high_error_ratio),
    /// [`high_latency_p95`](Self::high_latency_p95),
    /// [`low_cache_hit_ratio`](Self::low_cache_hit_ratio) and
    /// [`readiness_unhealthy`](Self::readiness_unhealthy), the same rules
    /// as `deploy/prometheus/alerts.yml`.
    ///
    /// ```
    /// use tower_observability::alerts::AlertRule;
    ///
    /// let names: Vec<_> = AlertRule::defaults().into_iter().map(|r| r.name).collect();
    /// assert_eq!(names, ["HighErrorRatio", "HighLatencyP95", "LowCacheHitRatio", "ReadinessUnhealthy"]);
    /// ```
    #[must_use]
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::high_error_ratio(),
            Self::high_latency_p95(),
            Self::low_cache_hit_ratio(),
            Self::readiness_unhealthy(),
        ]
    }

    /// Sets the window.
    pub fn window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }

    /// Sets the firing threshold.
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// Sets the resolve threshold: a firing rule stays firing while its
    /// value is strictly past it on the firing side, and resolves at it. A value on the firing side of
    /// the threshold itself is clamped to the threshold (no hysteresis).
    pub fn resolve_threshold(mut self, resolve_threshold: f64) -> Self {
        self.resolve_threshold = Some(resolve_threshold);
        self
    }

    /// Sets how long the condition must hold before the alert fires.
    pub fn for_duration(mut self, for_: Duration) -> Self {
        self.for_ = for_;
        self
    }

    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Sets the fewest samples needed to fire.
    pub fn min_samples(mut self, min_samples: u64) -> Self {
        self.min_samples = min_samples;
        self
    }

    /// Adds a label sent with the alert. `alertname`, `severity`, `service`
    /// and `cache` are set by the crate and win over a label of that name.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// Sets the summary annotation.
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = summary.into();
        self
    }

    /// Sets the description annotation.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The resolve threshold in effect: a firing alert stays firing while
    /// its value is strictly past it on the firing side (`value >
    /// resolves_at()` for [`Comparison::Above`]), and resolves at or beyond
    /// it. It is [`resolve_threshold`] when set
    /// (clamped to the threshold when it lies on the firing side), else
    /// `threshold × 0.9` for [`Comparison::Above`] and `threshold × 1.1` for
    /// [`Comparison::Below`] ([`DEFAULT_HYSTERESIS`]).
    ///
    /// [`resolve_threshold`]: Self::resolve_threshold
    #[must_use]
    pub fn resolves_at(&self) -> f64 {
        let margin = match self.comparison {
            Comparison::Above => 1.0 - DEFAULT_HYSTERESIS,
            Comparison::Below => 1.0 + DEFAULT_HYSTERESIS,
        };
        let at = self.resolve_threshold.unwrap_or(round_ulp(self.threshold * margin));
        match self.comparison {
            Comparison::Above => at.min(self.threshold),
            Comparison::Below => at.max(self.threshold),
        }
    }

    /// Fills the placeholders of `template`.
    pub(crate) fn render(&self, template: &str, value: Option<f64>, cache: Option<&str>) -> String {
        let value = value.map_or_else(|| "no data".to_owned(), |v| self.metric.format_value(v));
        template
            .replace("{value}", &value)
            .replace("{threshold}", &self.metric.format_value(self.threshold))
            .replace("{window}", self.window.as_str())
            .replace("{cache}", cache.unwrap_or("-"))
    }
}

/// `v` rounded to 12 decimals, so that `0.7 × 1.1` is `0.77`.
fn round_ulp(v: f64) -> f64 {
    (v * 1e12).round() / 1e12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_thresholds_default_to_ten_percent_back() {
        assert_eq!(AlertRule::high_error_ratio().resolves_at(), 0.045);
        assert_eq!(AlertRule::high_latency_p95().resolves_at(), 1.8);
        assert_eq!(AlertRule::low_cache_hit_ratio().resolves_at(), 0.77);
        assert_eq!(AlertRule::readiness_unhealthy().resolves_at(), 0.275);
    }

    #[test]
    fn resolve_thresholds_on_the_firing_side_are_clamped() {
        let above = AlertRule::high_error_ratio().resolve_threshold(0.5);
        assert_eq!(above.resolves_at(), 0.05);
        let below = AlertRule::low_cache_hit_ratio().resolve_threshold(0.1);
        assert_eq!(below.resolves_at(), 0.7);
        assert_eq!(AlertRule::high_error_ratio().resolve_threshold(0.03).resolves_at(), 0.03);
    }

    #[test]
    fn templates_are_filled() {
        let rule = AlertRule::low_cache_hit_ratio();
        assert_eq!(
            rule.render(&rule.summary, Some(0.5), Some("users")),
            "cache users hit ratio is 50% over the last 15m (threshold 70%)"
        );
        let rule = AlertRule::high_error_ratio();
        assert!(rule.render(&rule.summary, None, None).starts_with("no data of requests"));
    }

    #[test]
    fn values_are_formatted_per_metric() {
        assert_eq!(AlertMetric::RequestRate.format_value(12.3449), "12.34/s");
        assert_eq!(AlertMetric::RequestRate.format_value(1234.56), "1234.6/s");
        assert_eq!(AlertMetric::LatencyP99.format_value(0.0123), "0.012 s");
        assert_eq!(AlertMetric::Readiness.format_value(0.5), "degraded");
        assert_eq!(AlertMetric::Readiness.format_value(1.0), "healthy");
        assert_eq!(AlertMetric::CacheHitRatio { cache: None }.format_value(0.7), "70%");
    }

    #[test]
    fn severities_sort_most_urgent_first() {
        let mut all = [Severity::Info, Severity::Critical, Severity::Warning];
        all.sort();
        assert_eq!(all, Severity::ALL);
        assert_eq!(serde_json::to_value(Severity::Warning).unwrap(), "warning");
    }
}
