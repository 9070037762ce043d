//! Cache metrics for [`moka::future::Cache`].

use std::{
    collections::hash_map::RandomState,
    fmt,
    future::Future,
    hash::{BuildHasher, Hash},
    sync::Arc,
    time::Instant,
};

use moka::{
    Equivalent,
    future::{Cache, CacheBuilder},
    notification::RemovalCause,
};

use super::{CacheMetrics, CacheStatus};

impl CacheMetrics {
    /// An eviction listener for a moka `CacheBuilder` that counts
    /// evictions in `cache_evictions_total`.
    ///
    /// Only real evictions count: [`RemovalCause::Size`] (the cache was
    /// full) and [`RemovalCause::Expired`] (time to live or idle), as
    /// [`RemovalCause::was_evicted`] says and as Caffeine and Micrometer
    /// count them. An explicit removal (`invalidate`) and a replaced value
    /// (`insert` over an entry) are not evictions. Moka runs listeners
    /// during its housekeeping, so evictions are counted a little after
    /// they happen (at once after `run_pending_tasks().await`).
    ///
    /// [`InstrumentedCache::new`] installs it; use this method to compose
    /// it with a listener of your own:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use moka::notification::RemovalCause;
    /// use tower_observability::cache::CacheMetrics;
    ///
    /// let metrics = CacheMetrics::new("sessions");
    /// let count = metrics.eviction_listener::<u64, String>();
    /// let cache: moka::future::Cache<u64, String> = moka::future::Cache::builder()
    ///     .max_capacity(10_000)
    ///     .eviction_listener(move |key: Arc<u64>, value: String, cause: RemovalCause| {
    ///         count(key.clone(), value.clone(), cause);
    ///         // ... your own handling
    ///     })
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn eviction_listener<K, V>(&self) -> impl Fn(Arc<K>, V, RemovalCause) + Send + Sync + 'static {
        let metrics = self.clone();
        move |_key, _value, cause| {
            if cause.was_evicted() {
                metrics.record_eviction();
            }
        }
    }

    /// Sets `cache_size` to `cache.entry_count()`.
    ///
    /// Moka's entry count is eventually consistent: it reflects writes once
    /// the cache has run its pending tasks (call
    /// `cache.run_pending_tasks().await` first for an exact figure, as the
    /// tests do). [`InstrumentedCache`] calls this after each operation;
    /// with a bare cache, call it periodically or after writes.
    pub fn sync_size<K, V, S>(&self, cache: &Cache<K, V, S>) {
        self.set_size(cache.entry_count());
    }
}

/// A [`moka::future::Cache`] with its [`CacheMetrics`]: every get, put and
/// eviction is counted, and `cache_size` follows the entry count.
///
/// # Example
///
/// ```
/// use tower_observability::cache::InstrumentedCache;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let users = InstrumentedCache::new("users", moka::future::Cache::builder().max_capacity(10_000));
/// // A miss: the value is loaded, stored and counted as a put.
/// let name = users.get_or_insert_with(42_u64, async { "ada".to_owned() }).await;
/// // A hit.
/// assert_eq!(users.get_or_insert_with(42, async { unreachable!() }).await, name);
/// let last_minute = users.metrics().hit_ratio().window(tower_observability::window::Window::OneMinute);
/// assert_eq!((last_minute.hits, last_minute.misses), (1, 1));
/// # });
/// ```
#[derive(Clone)]
pub struct InstrumentedCache<K, V, S = RandomState> {
    cache: Cache<K, V, S>,
    metrics: CacheMetrics,
}

impl<K, V> InstrumentedCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Builds the cache from `builder`, with the eviction listener of
    /// [`CacheMetrics::eviction_listener`] (replacing any listener set on
    /// the builder; compose by hand with [`from_parts`](Self::from_parts)
    /// to keep yours), labelled `cache=name`.
    pub fn new(name: &str, builder: CacheBuilder<K, V, Cache<K, V, RandomState>>) -> Self {
        Self::with_metrics(CacheMetrics::new(name), builder)
    }

    /// As [`new`](Self::new), with the given metrics (e.g. one made by
    /// [`CacheMetrics::with_hit_ratios`]).
    pub fn with_metrics(
        metrics: CacheMetrics,
        builder: CacheBuilder<K, V, Cache<K, V, RandomState>>,
    ) -> Self {
        let cache = builder.eviction_listener(metrics.eviction_listener()).build();
        Self::from_parts(cache, metrics)
    }
}

impl<K, V, S> InstrumentedCache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Pairs a cache with its metrics. Evictions are counted only if the
    /// cache was built with [`CacheMetrics::eviction_listener`].
    pub fn from_parts(cache: Cache<K, V, S>, metrics: CacheMetrics) -> Self {
        Self { cache, metrics }
    }

    /// Looks `key` up: a hit or a miss in `cache_gets_total`, the time in
    /// `cache_lookup_duration_seconds`.
    pub async fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Equivalent<K> + Hash + ?Sized,
    {
        let value = self.metrics.observe_get(self.cache.get(key)).await;
        self.sync_size();
        value
    }

    /// Stores `value` under `key`: `cache_puts_total`.
    pub async fn insert(&self, key: K, value: V) {
        self.cache.insert(key, value).await;
        self.metrics.record_put();
        self.sync_size();
    }

    /// Returns the value of `key`, computing and storing it with `init` when
    /// absent: a hit, or a miss and a put. The time the caller waited (on a
    /// miss, including `init`) goes to `cache_lookup_duration_seconds`.
    ///
    /// Concurrent calls for one absent key run `init` once (moka's
    /// coalescing): that call counts the miss and the put, the others wait
    /// and count hits, as Caffeine counts them.
    pub async fn get_or_insert_with(&self, key: K, init: impl Future<Output = V>) -> V {
        self.get_or_insert_with_status(key, init).await.0
    }

    /// As [`get_or_insert_with`](Self::get_or_insert_with), with the outcome
    /// ([`CacheStatus::Hit`] or [`CacheStatus::Miss`]) for the response
    /// extensions, so that [`RecordCacheStatusLayer`](super::RecordCacheStatusLayer)
    /// counts the request:
    ///
    /// ```
    /// use axum::{Extension, Router, extract::{Path, State}, routing::get};
    /// use tower_observability::cache::{CacheStatus, RecordCacheStatusLayer, InstrumentedCache};
    ///
    /// async fn user(
    ///     State(users): State<InstrumentedCache<u64, String>>,
    ///     Path(id): Path<u64>,
    /// ) -> (Extension<CacheStatus>, String) {
    ///     let (name, status) = users.get_or_insert_with_status(id, async move { format!("user-{id}") }).await;
    ///     (Extension(status), name)
    /// }
    ///
    /// let users = InstrumentedCache::new("users", moka::future::Cache::builder().max_capacity(10_000));
    /// let app: Router = Router::new()
    ///     .route("/users/{id}", get(user))
    ///     .with_state(users)
    ///     .layer(RecordCacheStatusLayer::new());
    /// ```
    pub async fn get_or_insert_with_status(&self, key: K, init: impl Future<Output = V>) -> (V, CacheStatus) {
        let start = Instant::now();
        let entry = self.cache.entry(key).or_insert_with(init).await;
        let fresh = entry.is_fresh();
        self.metrics.record_get(!fresh, start.elapsed());
        if fresh {
            self.metrics.record_put();
            self.sync_size();
        }
        (entry.into_value(), if fresh { CacheStatus::Miss } else { CacheStatus::Hit })
    }

    /// Removes `key`; not an eviction.
    pub async fn invalidate<Q>(&self, key: &Q)
    where
        Q: Equivalent<K> + Hash + ?Sized,
    {
        self.cache.invalidate(key).await;
        self.sync_size();
    }

    /// Runs moka's pending housekeeping (evictions, listener calls), then
    /// sets `cache_size` to the now exact entry count.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
        self.sync_size();
    }

    /// Sets `cache_size` to the entry count; see [`CacheMetrics::sync_size`].
    pub fn sync_size(&self) {
        self.metrics.sync_size(&self.cache);
    }

    /// The cache, for operations this wrapper does not count.
    pub fn cache(&self) -> &Cache<K, V, S> {
        &self.cache
    }

    /// The metrics.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }

    /// The cache and its metrics.
    pub fn into_parts(self) -> (Cache<K, V, S>, CacheMetrics) {
        (self.cache, self.metrics)
    }
}

impl<K, V, S> fmt::Debug for InstrumentedCache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstrumentedCache")
            .field("metrics", &self.metrics)
            .field("entry_count", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

/// Builds a moka cache whose evictions are counted, and its metrics: the
/// parts of [`InstrumentedCache::new`].
///
/// ```
/// let (cache, metrics) = tower_observability::cache::instrumented_cache::<u64, String>(
///     "users",
///     moka::future::Cache::builder().max_capacity(100),
/// );
/// metrics.sync_size(&cache);
/// ```
#[must_use]
pub fn instrumented_cache<K, V>(
    name: &str,
    builder: CacheBuilder<K, V, Cache<K, V, RandomState>>,
) -> (Cache<K, V>, CacheMetrics)
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    InstrumentedCache::new(name, builder).into_parts()
}
