use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, OnceLock, PoisonError, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use super::CacheStatus;
use crate::{
    // The key given to caches, or routes, beyond the registry's bounds.
    route::OVERFLOW_ROUTE as OVERFLOW,
    window::{Window, WindowedCounter},
};

/// Hits and misses of one cache (or one route of it) over the last 1, 5 and
/// 15 minutes, in process.
///
/// Two [`WindowedCounter`]s of 1-second slots (14.4 KB together), so the
/// windows carry the error bound of the [`window`](crate::window) module:
/// at most the oldest second of each window is missing. Bypasses and
/// unknown outcomes are not counted ([`CacheStatus::counts_toward_ratio`]);
/// hits, stale hits and revalidations are hits ([`CacheStatus::is_hit`]).
///
/// # Example
///
/// ```
/// use tower_observability::{cache::{CacheStatus, HitRatio}, window::Window};
///
/// let ratio = HitRatio::new();
/// for status in [CacheStatus::Hit, CacheStatus::Hit, CacheStatus::Hit, CacheStatus::Miss, CacheStatus::Bypass] {
///     ratio.record(status);
/// }
/// let last_minute = ratio.window(Window::OneMinute);
/// assert_eq!((last_minute.hits, last_minute.misses), (3, 1));
/// assert_eq!(last_minute.ratio, Some(0.75));
/// ```
#[derive(Debug, Default)]
pub struct HitRatio {
    hits: WindowedCounter,
    misses: WindowedCounter,
}

impl HitRatio {
    /// Empty windows.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one outcome now; bypasses and unknowns are ignored.
    #[inline]
    pub fn record(&self, status: CacheStatus) {
        self.record_at(status, Instant::now());
    }

    /// Counts one outcome at `now`, a reading of the monotonic clock.
    #[inline]
    pub fn record_at(&self, status: CacheStatus, now: Instant) {
        if !status.counts_toward_ratio() {
            return;
        }
        if status.is_hit() { &self.hits } else { &self.misses }.add_at(1, now);
    }

    /// The figures of one window, now.
    #[must_use]
    pub fn window(&self, window: Window) -> CacheWindowStats {
        self.window_at(window, Instant::now())
    }

    /// The figures of the window that ends at `now`.
    #[must_use]
    pub fn window_at(&self, window: Window, now: Instant) -> CacheWindowStats {
        let hits = self.hits.sum_at(window.duration(), now);
        let misses = self.misses.sum_at(window.duration(), now);
        CacheWindowStats::new(window, hits, misses)
    }

    /// The figures of every window of [`Window::ALL`], now.
    #[must_use]
    pub fn windows(&self) -> [CacheWindowStats; 3] {
        self.windows_at(Instant::now())
    }

    /// The figures of every window of [`Window::ALL`], at `now`.
    #[must_use]
    pub fn windows_at(&self, now: Instant) -> [CacheWindowStats; 3] {
        Window::ALL.map(|window| self.window_at(window, now))
    }
}

/// Hits and misses over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CacheWindowStats {
    /// The window.
    pub window: Window,
    /// Hits, stale hits and revalidations in the window.
    pub hits: u64,
    /// Misses in the window.
    pub misses: u64,
    /// `hits / (hits + misses)`, from 0 to 1; `None` without any.
    pub ratio: Option<f64>,
}

impl CacheWindowStats {
    fn new(window: Window, hits: u64, misses: u64) -> Self {
        let total = hits.saturating_add(misses);
        let ratio = (total > 0).then(|| hits as f64 / total as f64);
        Self { window, hits, misses, ratio }
    }

    /// Hits plus misses: the requests the ratio is computed from.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.hits.saturating_add(self.misses)
    }
}

/// The hit ratio of one cache, or of one route of it, in a snapshot of
/// [`CacheHitRatios`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HitRatioSnapshot {
    /// The cache name: the `cache` label.
    pub cache: Arc<str>,
    /// The route template (the `http_route` label), for the per-route
    /// figures of [`RecordCacheStatusLayer`](super::RecordCacheStatusLayer); `None` for
    /// the cache as a whole.
    pub route: Option<Arc<str>>,
    /// The 1, 5 and 15-minute windows, in that order.
    pub windows: [CacheWindowStats; 3],
}

/// A window whose hit ratio is below the warning threshold.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HitRatioWarning {
    /// The cache name.
    pub cache: Arc<str>,
    /// The route template, or `None` for the cache as a whole.
    pub route: Option<Arc<str>>,
    /// The window, with its ratio.
    pub stats: CacheWindowStats,
}

/// The default warning threshold of [`CacheHitRatios`]: a hit ratio below
/// 0.70.
pub const DEFAULT_WARN_BELOW: f64 = 0.70;

/// The default minimum of hits plus misses in a window before its ratio
/// can warn: 20.
pub const DEFAULT_MIN_SAMPLES: u64 = 20;

/// The most caches a registry keeps by default; more share the cache
/// `_overflow`.
pub const DEFAULT_MAX_CACHES: usize = 64;

/// The most routes a registry keeps by default, over all its caches; more
/// share, per cache, the route `_overflow`.
pub const DEFAULT_MAX_ROUTES: usize = 256;

/// A shared registry of in-process hit ratios: per cache name, and per
/// route for [`RecordCacheStatusLayer`](super::RecordCacheStatusLayer).
///
/// Clones share one registry; the layer and [`CacheMetrics`](super::CacheMetrics)
/// record into [`CacheHitRatios::global`] unless given another handle. The
/// overview and alerts read it with [`snapshot`](Self::snapshot) and
/// [`below_threshold`](Self::below_threshold).
///
/// Memory is bounded: at most [`DEFAULT_MAX_CACHES`] caches and
/// [`DEFAULT_MAX_ROUTES`] routes (plus one overflow entry per cache), 14.4 KB
/// each, allocated on first use.
///
/// # Example
///
/// ```
/// use tower_observability::cache::{CacheHitRatios, CacheMetrics, RecordCacheStatusLayer};
///
/// let ratios = CacheHitRatios::with_threshold(0.8, 10);
/// let layer = RecordCacheStatusLayer::new().hit_ratios(ratios.clone());
/// let users = CacheMetrics::with_hit_ratios("users", &ratios);
/// for _ in 0..10 {
///     users.record_miss();
/// }
/// let warnings = ratios.below_threshold();
/// assert_eq!(warnings.len(), 3, "1, 5 and 15 minutes");
/// assert_eq!(&*warnings[0].cache, "users");
/// assert_eq!(warnings[0].stats.ratio, Some(0.0));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct CacheHitRatios {
    inner: Arc<Registry>,
}

struct Registry {
    caches: RwLock<HashMap<Arc<str>, Arc<CacheRatios>>>,
    overflow: OnceLock<Arc<CacheRatios>>,
    routes: AtomicUsize,
    max_caches: usize,
    max_routes: usize,
    warn_below: f64,
    min_samples: u64,
}

/// The windows of one cache: as a whole, and per route.
pub(crate) struct CacheRatios {
    name: Arc<str>,
    total: Arc<HitRatio>,
    routes: RwLock<HashMap<Arc<str>, Arc<HitRatio>>>,
    overflow_route: OnceLock<Arc<HitRatio>>,
}

impl CacheRatios {
    fn new(name: Arc<str>) -> Self {
        Self { name, total: Arc::default(), routes: RwLock::default(), overflow_route: OnceLock::new() }
    }

    /// The windows of the cache as a whole.
    pub(crate) fn total(&self) -> &Arc<HitRatio> {
        &self.total
    }
}

impl CacheHitRatios {
    /// An empty registry with the default threshold ([`DEFAULT_WARN_BELOW`],
    /// [`DEFAULT_MIN_SAMPLES`]).
    #[must_use]
    pub fn new() -> Self {
        Self::with_threshold(DEFAULT_WARN_BELOW, DEFAULT_MIN_SAMPLES)
    }

    /// An empty registry that warns about windows whose ratio is below
    /// `warn_below` (clamped to 0..=1; NaN means the default) once they hold
    /// at least `min_samples` hits and misses.
    #[must_use]
    pub fn with_threshold(warn_below: f64, min_samples: u64) -> Self {
        let warn_below = if warn_below.is_nan() { DEFAULT_WARN_BELOW } else { warn_below.clamp(0.0, 1.0) };
        Self {
            inner: Arc::new(Registry {
                caches: RwLock::default(),
                overflow: OnceLock::new(),
                routes: AtomicUsize::new(0),
                max_caches: DEFAULT_MAX_CACHES,
                max_routes: DEFAULT_MAX_ROUTES,
                warn_below,
                min_samples,
            }),
        }
    }

    /// The process-wide registry, created on first use, that
    /// [`RecordCacheStatusLayer::new`](super::RecordCacheStatusLayer::new) and
    /// [`CacheMetrics::new`](super::CacheMetrics::new) record into. Use an
    /// explicit handle instead to keep separate figures (tests, several
    /// apps in one process).
    #[must_use]
    pub fn global() -> Self {
        static GLOBAL: OnceLock<CacheHitRatios> = OnceLock::new();
        GLOBAL.get_or_init(Self::new).clone()
    }

    /// The warning threshold.
    #[must_use]
    pub fn warn_below(&self) -> f64 {
        self.inner.warn_below
    }

    /// The fewest hits plus misses a window needs before it can warn.
    #[must_use]
    pub fn min_samples(&self) -> u64 {
        self.inner.min_samples
    }

    /// The windows of the cache `name`, created on first use.
    #[must_use]
    pub fn cache(&self, name: &str) -> Arc<HitRatio> {
        self.entry(name).total.clone()
    }

    /// The windows of `route` within the cache `name`, created on first use.
    #[must_use]
    pub fn route(&self, name: &str, route: &str) -> Arc<HitRatio> {
        self.route_ratio(&self.entry(name), route)
    }

    pub(crate) fn entry(&self, name: &str) -> Arc<CacheRatios> {
        let inner = &*self.inner;
        if let Some(entry) = read(&inner.caches).get(name) {
            return entry.clone();
        }
        let mut caches = inner.caches.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = caches.get(name) {
            return entry.clone();
        }
        if caches.len() >= inner.max_caches {
            return inner.overflow.get_or_init(|| Arc::new(CacheRatios::new(OVERFLOW.into()))).clone();
        }
        let name: Arc<str> = name.into();
        let entry = Arc::new(CacheRatios::new(name.clone()));
        caches.insert(name, entry.clone());
        entry
    }

    pub(crate) fn route_ratio(&self, cache: &CacheRatios, route: &str) -> Arc<HitRatio> {
        if let Some(ratio) = read(&cache.routes).get(route) {
            return ratio.clone();
        }
        let mut routes = cache.routes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(ratio) = routes.get(route) {
            return ratio.clone();
        }
        let admitted = self
            .inner
            .routes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.inner.max_routes).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            return cache.overflow_route.get_or_init(Arc::default).clone();
        }
        let ratio = Arc::new(HitRatio::new());
        routes.insert(route.into(), ratio.clone());
        ratio
    }

    /// Every cache and route with its windows, now.
    #[must_use]
    pub fn snapshot(&self) -> Vec<HitRatioSnapshot> {
        self.snapshot_at(Instant::now())
    }

    /// Every cache and route with its windows ending at `now`, sorted by
    /// cache, then route (the cache as a whole first).
    #[must_use]
    pub fn snapshot_at(&self, now: Instant) -> Vec<HitRatioSnapshot> {
        let mut caches: Vec<Arc<CacheRatios>> = read(&self.inner.caches).values().cloned().collect();
        caches.extend(self.inner.overflow.get().cloned());
        let mut out = Vec::new();
        for cache in caches {
            out.push(HitRatioSnapshot {
                cache: cache.name.clone(),
                route: None,
                windows: cache.total.windows_at(now),
            });
            let overflow =
                cache.overflow_route.get().map(|ratio| (Arc::<str>::from(OVERFLOW), ratio.clone()));
            let routes: Vec<_> =
                read(&cache.routes).iter().map(|(route, ratio)| (route.clone(), ratio.clone())).collect();
            for (route, ratio) in routes.into_iter().chain(overflow) {
                out.push(HitRatioSnapshot {
                    cache: cache.name.clone(),
                    route: Some(route),
                    windows: ratio.windows_at(now),
                });
            }
        }
        out.sort_by(|a, b| (&a.cache, &a.route).cmp(&(&b.cache, &b.route)));
        out
    }

    /// The windows, of every cache and route, whose hit ratio is below the
    /// threshold with at least the minimum of samples, now.
    #[must_use]
    pub fn below_threshold(&self) -> Vec<HitRatioWarning> {
        self.below_threshold_at(Instant::now())
    }

    /// [`below_threshold`](Self::below_threshold) over the windows ending at `now`.
    #[must_use]
    pub fn below_threshold_at(&self, now: Instant) -> Vec<HitRatioWarning> {
        let (warn_below, min_samples) = (self.inner.warn_below, self.inner.min_samples);
        self.snapshot_at(now)
            .into_iter()
            .flat_map(|snapshot| {
                snapshot.windows.into_iter().filter_map(move |stats| {
                    let low =
                        stats.total() >= min_samples.max(1) && stats.ratio.is_some_and(|r| r < warn_below);
                    low.then(|| HitRatioWarning {
                        cache: snapshot.cache.clone(),
                        route: snapshot.route.clone(),
                        stats,
                    })
                })
            })
            .collect()
    }
}

impl Default for CacheHitRatios {
    /// An empty registry, as [`new`](Self::new); not the
    /// [`global`](Self::global) one.
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CacheHitRatios {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHitRatios")
            .field("caches", &read(&self.inner.caches).len())
            .field("routes", &self.inner.routes.load(Ordering::Relaxed))
            .field("warn_below", &self.inner.warn_below)
            .field("min_samples", &self.inner.min_samples)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CacheRatios {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheRatios").field("name", &self.name).finish_non_exhaustive()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(ratio: &HitRatio, status: CacheStatus, n: usize, at: Instant) {
        for _ in 0..n {
            ratio.record_at(status, at);
        }
    }

    #[test]
    fn ratio_excludes_bypass_and_unknown() {
        let ratio = HitRatio::new();
        let now = Instant::now();
        for status in CacheStatus::ALL {
            ratio.record_at(status, now);
        }
        let stats = ratio.window_at(Window::OneMinute, now);
        assert_eq!((stats.hits, stats.misses, stats.total()), (3, 1, 4));
        assert_eq!(stats.ratio, Some(0.75));
        assert_eq!(HitRatio::new().window(Window::FiveMinutes).ratio, None);
    }

    #[test]
    fn windows_age_out_separately() {
        let ratio = HitRatio::new();
        let t0 = Instant::now();
        record(&ratio, CacheStatus::Miss, 10, t0);
        record(&ratio, CacheStatus::Hit, 30, t0 + Duration::from_secs(8 * 60));
        let [one, five, fifteen] = ratio.windows_at(t0 + Duration::from_secs(10 * 60));
        assert_eq!((one.hits, one.misses), (0, 0));
        assert_eq!(one.ratio, None);
        assert_eq!((five.hits, five.misses, five.ratio), (30, 0, Some(1.0)));
        assert_eq!((fifteen.hits, fifteen.misses, fifteen.ratio), (30, 10, Some(0.75)));
    }

    #[test]
    fn warnings_need_samples_and_a_low_ratio() {
        let ratios = CacheHitRatios::new();
        assert_eq!((ratios.warn_below(), ratios.min_samples()), (0.70, 20));
        let now = Instant::now();
        // 19 samples at 0 %: not enough to warn.
        record(&ratios.cache("small"), CacheStatus::Miss, 19, now);
        // 20 samples at 65 %: warns.
        let low = ratios.route("http", "/low");
        record(&low, CacheStatus::Hit, 13, now);
        record(&low, CacheStatus::Miss, 7, now);
        // 20 samples at 70 %: at the threshold, no warning.
        let ok = ratios.cache("ok");
        record(&ok, CacheStatus::Hit, 14, now);
        record(&ok, CacheStatus::Miss, 6, now);
        let warnings = ratios.below_threshold_at(now);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings.iter().all(|w| &*w.cache == "http" && w.route.as_deref() == Some("/low")));
        assert_eq!(warnings.iter().map(|w| w.stats.window).collect::<Vec<_>>(), Window::ALL);
        assert_eq!(warnings[0].stats.ratio, Some(0.65));
        // Later, the 1-minute window has aged out; the others still warn.
        let later = ratios.below_threshold_at(now + Duration::from_secs(120));
        assert_eq!(later.len(), 2);
    }

    #[test]
    fn thresholds_are_clamped() {
        assert_eq!(CacheHitRatios::with_threshold(f64::NAN, 1).warn_below(), DEFAULT_WARN_BELOW);
        assert_eq!(CacheHitRatios::with_threshold(7.0, 1).warn_below(), 1.0);
        let zero = CacheHitRatios::with_threshold(1.0, 0);
        let _ = zero.cache("empty");
        assert!(zero.below_threshold().is_empty(), "an empty window never warns");
    }

    #[test]
    fn entries_are_shared_and_bounded() {
        let ratios = CacheHitRatios::new();
        assert!(Arc::ptr_eq(&ratios.cache("a"), &ratios.clone().cache("a")));
        assert!(Arc::ptr_eq(&ratios.route("a", "/x"), &ratios.route("a", "/x")));
        for i in 0..DEFAULT_MAX_CACHES + 5 {
            let _ = ratios.cache(&format!("cache-{i}"));
        }
        let overflow = ratios.cache("one too many");
        assert!(Arc::ptr_eq(&overflow, &ratios.cache("another")));
        for i in 0..DEFAULT_MAX_ROUTES + 5 {
            let _ = ratios.route("a", &format!("/r{i}"));
        }
        assert!(Arc::ptr_eq(&ratios.route("a", "/late"), &ratios.route("a", "/later")));
        let snapshot = ratios.snapshot();
        assert_eq!(snapshot.len(), DEFAULT_MAX_CACHES + 1 + DEFAULT_MAX_ROUTES + 1);
        assert!(snapshot.iter().any(|s| &*s.cache == OVERFLOW && s.route.is_none()));
        assert!(snapshot.iter().any(|s| &*s.cache == "a" && s.route.as_deref() == Some(OVERFLOW)));
        assert!(format!("{ratios:?}").contains("routes: 256"));
    }

    #[test]
    fn global_is_one_registry() {
        let a = CacheHitRatios::global();
        assert!(Arc::ptr_eq(&a.inner, &CacheHitRatios::global().inner));
        assert!(!Arc::ptr_eq(&a.inner, &CacheHitRatios::default().inner));
    }
}
