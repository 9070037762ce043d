use std::{
    fmt,
    future::IntoFuture,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use ::metrics::{Counter, Gauge, Histogram};

use super::{
    CACHE_EVICTIONS, CACHE_GETS, CACHE_LOOKUP_DURATION, CACHE_PUTS, CACHE_SIZE, CacheHitRatios, CacheStatus,
    HitRatio,
};

/// Metrics of a cache inside the application, in Micrometer's names:
/// `cache_gets_total{cache, result="hit|miss"}`, `cache_puts_total{cache}`,
/// `cache_evictions_total{cache}`, `cache_size{cache}` and
/// `cache_lookup_duration_seconds{cache, result}`; see the
/// [module docs](super) for the table.
///
/// Gets also feed the cache's in-process [`HitRatio`] in a
/// [`CacheHitRatios`] registry ([`CacheHitRatios::global`] by default).
///
/// Clones share one set of handles (an `Arc` inside), so clone freely.
/// Handles are registered with the `metrics` recorder installed at the first
/// recording, once; each recording is then an atomic operation, with no
/// allocation. For a `moka` cache,
/// `InstrumentedCache` (feature `moka`) records everything by
/// itself.
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use tower_observability::cache::CacheMetrics;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let users: Mutex<HashMap<u64, String>> = Mutex::default();
/// let metrics = CacheMetrics::new("users");
///
/// // A miss: timed, counted, then filled.
/// let found = metrics.observe_get(async { users.lock().unwrap().get(&42).cloned() }).await;
/// assert_eq!(found, None);
/// users.lock().unwrap().insert(42, "ada".to_owned());
/// metrics.record_put();
/// metrics.set_size(1);
///
/// // A hit.
/// let found = metrics.observe_get(async { users.lock().unwrap().get(&42).cloned() }).await;
/// assert_eq!(found.as_deref(), Some("ada"));
/// # });
/// ```
#[derive(Clone)]
pub struct CacheMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    handles: OnceLock<Handles>,
    ratio: Arc<HitRatio>,
}

struct Handles {
    hits: Counter,
    misses: Counter,
    puts: Counter,
    evictions: Counter,
    size: Gauge,
    hit_duration: Histogram,
    miss_duration: Histogram,
}

impl Handles {
    fn new(name: &str) -> Self {
        super::describe();
        let cache = name.to_owned();
        let get = |result: &'static str| ::metrics::counter!(CACHE_GETS, "cache" => cache.clone(), "result" => result);
        let lookup = |result: &'static str| ::metrics::histogram!(CACHE_LOOKUP_DURATION, "cache" => cache.clone(), "result" => result);
        Self {
            hits: get("hit"),
            misses: get("miss"),
            puts: ::metrics::counter!(CACHE_PUTS, "cache" => cache.clone()),
            evictions: ::metrics::counter!(CACHE_EVICTIONS, "cache" => cache.clone()),
            size: ::metrics::gauge!(CACHE_SIZE, "cache" => cache.clone()),
            hit_duration: lookup("hit"),
            miss_duration: lookup("miss"),
        }
    }
}

impl CacheMetrics {
    /// The metrics of the cache `name` (the `cache` label), whose hit ratio
    /// goes to [`CacheHitRatios::global`].
    ///
    /// The name must be a fixed, low-cardinality name ("users",
    /// "sessions"). Two handles with one name record into the same series.
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self::with_hit_ratios(name, &CacheHitRatios::global())
    }

    /// As [`new`](Self::new), feeding the hit ratio of `ratios` instead.
    #[must_use]
    pub fn with_hit_ratios(name: &str, ratios: &CacheHitRatios) -> Self {
        super::describe();
        let ratio = ratios.cache(name);
        Self { inner: Arc::new(Inner { name: name.into(), handles: OnceLock::new(), ratio }) }
    }

    /// The cache name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The cache's in-process hit ratio windows.
    #[must_use]
    pub fn hit_ratio(&self) -> &HitRatio {
        &self.inner.ratio
    }

    #[inline]
    fn handles(&self) -> &Handles {
        self.inner.handles.get_or_init(|| Handles::new(&self.inner.name))
    }

    /// Counts a get that found its entry: `cache_gets_total{result="hit"}`.
    #[inline]
    pub fn record_hit(&self) {
        self.handles().hits.increment(1);
        self.inner.ratio.record(CacheStatus::Hit);
    }

    /// Counts a get that found nothing: `cache_gets_total{result="miss"}`.
    #[inline]
    pub fn record_miss(&self) {
        self.handles().misses.increment(1);
        self.inner.ratio.record(CacheStatus::Miss);
    }

    /// Counts a get (a hit when `hit`) and records how long the caller
    /// waited for it in `cache_lookup_duration_seconds`.
    #[inline]
    pub fn record_get(&self, hit: bool, elapsed: Duration) {
        let handles = self.handles();
        if hit {
            handles.hit_duration.record(elapsed.as_secs_f64());
            self.record_hit();
        } else {
            handles.miss_duration.record(elapsed.as_secs_f64());
            self.record_miss();
        }
    }

    /// Counts an entry stored: `cache_puts_total`.
    #[inline]
    pub fn record_put(&self) {
        self.handles().puts.increment(1);
    }

    /// Counts one entry evicted (for size or expiry, not an explicit
    /// removal): `cache_evictions_total`.
    #[inline]
    pub fn record_eviction(&self) {
        self.record_evictions(1);
    }

    /// Counts `n` entries evicted.
    #[inline]
    pub fn record_evictions(&self, n: u64) {
        self.handles().evictions.increment(n);
    }

    /// Sets `cache_size`, the number of entries in the cache.
    #[inline]
    pub fn set_size(&self, entries: u64) {
        self.handles().size.set(entries as f64);
    }

    /// Awaits `lookup` and records it: `Some` is a hit, `None` a miss, and
    /// the time the caller waited goes to `cache_lookup_duration_seconds`.
    ///
    /// The future is not boxed. See the [type docs](Self) for an example.
    pub async fn observe_get<F, T>(&self, lookup: F) -> Option<T>
    where
        F: IntoFuture<Output = Option<T>>,
    {
        let start = Instant::now();
        let value = lookup.await;
        self.record_get(value.is_some(), start.elapsed());
        value
    }
}

impl fmt::Debug for CacheMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheMetrics").field("name", &self.inner.name).finish_non_exhaustive()
    }
}
