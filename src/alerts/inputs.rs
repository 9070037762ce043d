//! [`AlertInputs`]: the snapshot of windowed figures the rules read.

use crate::{cache::HitRatioSnapshot, health::HealthStatus, metrics::HttpWindowStats, window::Window};

/// The figures the rules are evaluated on, read at one instant: a plain
/// struct for glue code to fill from the in-process windows, the cache hit
/// ratios and the latest readiness report.
///
/// A figure that is absent (a window not listed, a `None` ratio or
/// quantile, no readiness) is *no data*: it never fires, and it resolves a
/// firing alert.
///
/// # Example
///
/// ```
/// use tower_observability::{
///     alerts::{AlertInputs, CacheFigures},
///     metrics::HttpWindowStats,
///     health::HealthStatus,
///     window::Window,
/// };
///
/// let inputs = AlertInputs::default()
///     .with_window(HttpWindowStats::from_counts(Window::FiveMinutes, 1_000, 70).with_p95(0.35))
///     .with_cache(CacheFigures::new("users", Window::FifteenMinutes, 180, 120))
///     .with_readiness(HealthStatus::Healthy);
/// let five = inputs.window(Window::FiveMinutes).unwrap();
/// assert_eq!(five.error_ratio, Some(0.07));
/// assert_eq!(five.request_rate, 1_000.0 / 300.0);
/// assert_eq!(inputs.caches[0].ratio, Some(0.6));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertInputs {
    /// The HTTP figures, one entry per window (a later entry for the same
    /// window is ignored).
    pub windows: Vec<HttpWindowStats>,
    /// The hit ratios, one entry per cache and window.
    pub caches: Vec<CacheFigures>,
    /// The aggregate status of the readiness checks; `None` when unknown.
    pub readiness: Option<HealthStatus>,
    /// The burn rates of the service level objectives, one entry per SLO
    /// and window.
    pub burn_rates: Vec<BurnRateFigures>,
}

impl AlertInputs {
    /// The HTTP figures of every window of `stats` at `now`; caches and
    /// readiness are left empty.
    ///
    /// ```
    /// use std::time::Instant;
    /// use tower_observability::{ObservabilityLayer, alerts::AlertInputs, window::Window};
    ///
    /// let inputs = AlertInputs::from_http_stats(&ObservabilityLayer::new().http_stats(), Instant::now());
    /// assert_eq!(inputs.window(Window::FiveMinutes).unwrap().requests, 0);
    /// ```
    #[must_use]
    pub fn from_http_stats(stats: &crate::metrics::HttpStats, now: std::time::Instant) -> Self {
        Self { windows: stats.windows_at(now).into_iter().collect(), ..Self::default() }
    }

    /// The figures of `window`, if listed.
    #[must_use]
    pub fn window(&self, window: Window) -> Option<&HttpWindowStats> {
        self.windows.iter().find(|w| w.window == window)
    }

    /// The figures of cache `name` over `window`, if listed.
    #[must_use]
    pub fn cache(&self, name: &str, window: Window) -> Option<&CacheFigures> {
        self.caches.iter().find(|c| c.window == window && c.cache == name)
    }

    /// The burn rate of the SLO `slo` over `window`, if listed.
    #[must_use]
    pub fn burn_rate(&self, slo: &str, window: std::time::Duration) -> Option<&BurnRateFigures> {
        self.burn_rates.iter().find(|b| b.window == window && b.slo == slo)
    }

    /// Sets the figures of `figures.window`, replacing any listed.
    #[must_use]
    pub fn with_window(mut self, figures: HttpWindowStats) -> Self {
        self.windows.retain(|w| w.window != figures.window);
        self.windows.push(figures);
        self
    }

    /// Adds the hit ratio of one cache over one window.
    #[must_use]
    pub fn with_cache(mut self, figures: CacheFigures) -> Self {
        self.caches.push(figures);
        self
    }

    /// Sets the readiness status.
    #[must_use]
    pub fn with_readiness(mut self, status: HealthStatus) -> Self {
        self.readiness = Some(status);
        self
    }

    /// Adds the three windows of each whole cache of `snapshots` (those
    /// without a route), e.g. from
    /// [`CacheHitRatios::snapshot`](crate::cache::CacheHitRatios::snapshot).
    ///
    /// ```
    /// use tower_observability::{alerts::AlertInputs, cache::{CacheHitRatios, CacheStatus}};
    ///
    /// let ratios = CacheHitRatios::new();
    /// ratios.cache("users").record(CacheStatus::Hit);
    /// let mut inputs = AlertInputs::default();
    /// inputs.add_hit_ratios(&ratios.snapshot());
    /// assert_eq!(inputs.caches.len(), 3);
    /// assert!(inputs.caches.iter().all(|c| c.cache == "users" && c.ratio == Some(1.0)));
    /// ```
    pub fn add_hit_ratios(&mut self, snapshots: &[HitRatioSnapshot]) {
        for snapshot in snapshots.iter().filter(|s| s.route.is_none()) {
            for stats in &snapshot.windows {
                self.caches.push(CacheFigures {
                    cache: snapshot.cache.to_string(),
                    window: stats.window,
                    ratio: stats.ratio,
                    samples: stats.total(),
                });
            }
        }
    }
}

/// The error-budget burn rate of one service level objective over one
/// window: the ratio of bad requests divided by the budget's ratio
/// (`1 - objective`); 1 spends the budget in exactly the SLO's period.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BurnRateFigures {
    /// The SLO's name.
    pub slo: String,
    /// The window.
    pub window: std::time::Duration,
    /// The burn rate, 0 or more.
    pub rate: f64,
    /// The requests the SLO counted in the window.
    pub requests: u64,
}

impl BurnRateFigures {
    /// The burn rate of `bad` of `requests` against an `objective`
    /// (e.g. `0.999`) over `window`; a rate of 0 without requests.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_observability::alerts::BurnRateFigures;
    ///
    /// let b = BurnRateFigures::new("api", Duration::from_secs(3600), 0.999, 1000, 15);
    /// assert!((b.rate - 15.0).abs() < 1e-9, "1.5 % of errors burn a 0.1 % budget 15 times too fast");
    /// ```
    #[must_use]
    pub fn new(
        slo: impl Into<String>,
        window: std::time::Duration,
        objective: f64,
        requests: u64,
        bad: u64,
    ) -> Self {
        let ratio = if requests == 0 { 0.0 } else { bad.min(requests) as f64 / requests as f64 };
        let budget = 1.0 - objective;
        let rate = if budget > 0.0 { ratio / budget } else { 0.0 };
        Self { slo: slo.into(), window, rate, requests }
    }
}

/// The hit ratio of one cache over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheFigures {
    /// The cache name (the `cache` label).
    pub cache: String,
    /// The window.
    pub window: Window,
    /// Hits over hits plus misses, 0 to 1; `None` without any.
    pub ratio: Option<f64>,
    /// Hits plus misses in the window.
    pub samples: u64,
}

impl CacheFigures {
    /// The figures of `hits` hits and `misses` misses of cache `cache` over
    /// `window`.
    ///
    /// ```
    /// use tower_observability::{alerts::CacheFigures, window::Window};
    ///
    /// let c = CacheFigures::new("users", Window::FiveMinutes, 3, 1);
    /// assert_eq!((c.ratio, c.samples), (Some(0.75), 4));
    /// ```
    #[must_use]
    pub fn new(cache: impl Into<String>, window: Window, hits: u64, misses: u64) -> Self {
        let samples = hits.saturating_add(misses);
        Self {
            cache: cache.into(),
            window,
            ratio: (samples > 0).then(|| hits as f64 / samples as f64),
            samples,
        }
    }
}
