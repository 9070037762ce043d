//! Cache hits and misses: of the HTTP responses a service sends, and of the
//! caches inside the application.
//!
//! # Example
//!
//! ```
//! use std::{collections::HashMap, sync::{Arc, Mutex}};
//!
//! use axum::{Extension, Router, extract::{Path, State}, routing::get};
//! use tower_observability::cache::{CacheMetrics, CacheStatus, RecordCacheStatusLayer};
//!
//! #[derive(Clone)]
//! struct Users {
//!     names: Arc<Mutex<HashMap<u64, String>>>,
//!     metrics: CacheMetrics,
//! }
//!
//! async fn get_user(State(users): State<Users>, Path(id): Path<u64>) -> (Extension<CacheStatus>, String) {
//!     let cached = users.metrics.observe_get(async { users.names.lock().unwrap().get(&id).cloned() }).await;
//!     if let Some(name) = cached {
//!         return (Extension(CacheStatus::Hit), name);
//!     }
//!     let name = format!("user-{id}"); // the slow load
//!     users.names.lock().unwrap().insert(id, name.clone());
//!     users.metrics.record_put();
//!     (Extension(CacheStatus::Miss), name)
//! }
//!
//! let users = Users { names: Arc::default(), metrics: CacheMetrics::new("users") };
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(get_user))
//!     .with_state(users)
//!     .layer(RecordCacheStatusLayer::new());
//! ```
//!
//! With the `moka` feature, `InstrumentedCache` does the bookkeeping of
//! `get_user` in one call (`get_or_insert_with_status`), evictions and size
//! included.
//!
//! # Responses: [`RecordCacheStatusLayer`]
//!
//! The layer reads how a cache answered each request, from a [`CacheStatus`]
//! that the handler (or an inner caching layer) put in the response
//! extensions, or else from the response headers: RFC 9211 `Cache-Status`,
//! then `X-Cache`, then `CF-Cache-Status` ([`CacheStatus::from_headers`]).
//! A response that reports nothing is not counted.
//!
//! # Caches in the application: [`CacheMetrics`]
//!
//! A handle with Micrometer's cache metric names, for any cache; with the
//! `moka` feature, `InstrumentedCache` wraps a `moka::future::Cache` and
//! records everything by itself.
//!
//! # Metrics
//!
//! | metric | type | unit | labels |
//! |---|---|---|---|
//! | [`HTTP_SERVER_CACHE_REQUESTS`] | counter | requests | `http_route`, `cache`, `result` |
//! | [`CACHE_GETS`] | counter | gets | `cache`, `result` (`hit`, `miss`) |
//! | [`CACHE_PUTS`] | counter | puts | `cache` |
//! | [`CACHE_EVICTIONS`] | counter | entries | `cache` |
//! | [`CACHE_SIZE`] | gauge | entries | `cache` |
//! | [`CACHE_LOOKUP_DURATION`] | histogram | seconds | `cache`, `result` |
//!
//! `result` of the layer's counter is one of [`CacheStatus::as_str`]:
//! `hit`, `stale_hit`, `miss`, `revalidated`, `bypass`, `unknown`. The
//! `http_route` label is the route template, as for the HTTP metrics
//! ([`UNMATCHED_ROUTE`](crate::route::UNMATCHED_ROUTE) for requests that matched no
//! route). The lookup histogram must be rendered with buckets: when you
//! install a recorder yourself, set [`LOOKUP_DURATION_BUCKETS`] for it.
//!
//! # Hit ratios in process
//!
//! Both feed a [`CacheHitRatios`] registry (the [global](CacheHitRatios::global)
//! one unless told otherwise): the hit ratio of each cache and of each
//! route over the last 1, 5 and 15 minutes, without bypasses and unknowns,
//! and the windows below a warning threshold (default 0.70, once a window
//! has 20 hits and misses), for the overview and alerts.

mod layer;
mod metrics;
#[cfg(feature = "moka")]
mod moka;
mod parse;
mod ratio;
mod sfv;
mod status;

pub(crate) use self::layer::{CachePending, CacheRoute};
#[cfg(feature = "moka")]
pub use self::moka::{InstrumentedCache, instrumented_cache};
pub use self::{
    layer::{RecordCacheStatus, RecordCacheStatusLayer},
    metrics::CacheMetrics,
    parse::{MAX_FIELD_LEN, MAX_MEMBERS, parse_cache_status, parse_cf_cache_status, parse_x_cache},
    ratio::{
        CacheHitRatios, CacheWindowStats, DEFAULT_MAX_CACHES, DEFAULT_MAX_ROUTES, DEFAULT_MIN_SAMPLES,
        DEFAULT_WARN_BELOW, HitRatio, HitRatioSnapshot, HitRatioWarning,
    },
    status::CacheStatus,
};

/// Responses by cache outcome, per route (counter).
pub const HTTP_SERVER_CACHE_REQUESTS: &str = "http_server_cache_requests_total";
/// Cache gets, by result `hit` or `miss` (counter; Micrometer `cache.gets`).
pub const CACHE_GETS: &str = "cache_gets_total";
/// Entries stored in a cache (counter; Micrometer `cache.puts`).
pub const CACHE_PUTS: &str = "cache_puts_total";
/// Entries evicted for size or expiry (counter; Micrometer `cache.evictions`).
pub const CACHE_EVICTIONS: &str = "cache_evictions_total";
/// Entries in a cache (gauge; Micrometer `cache.size`).
pub const CACHE_SIZE: &str = "cache_size";
/// Seconds a caller waited for a get, by result (histogram).
pub const CACHE_LOOKUP_DURATION: &str = "cache_lookup_duration_seconds";

/// The `cache` label of [`RecordCacheStatusLayer::new`]: `http`.
pub const DEFAULT_CACHE_NAME: &str = "http";

/// Bucket bounds of [`CACHE_LOOKUP_DURATION`], in seconds: 10 us to 1 s, from
/// an in-memory hit to a remote cache's slow miss (semconv gives no advice).
pub const LOOKUP_DURATION_BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0,
];

/// Registers the `# HELP` text and unit of every metric of this module with
/// the installed recorder. The layer and [`CacheMetrics`] call it; calling
/// it again is harmless.
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_SERVER_CACHE_REQUESTS,
        Unit::Count,
        "HTTP server responses by cache outcome (RFC 9211 Cache-Status, X-Cache or CF-Cache-Status)."
    );
    describe_counter!(CACHE_GETS, Unit::Count, "Cache gets, by result: hit or miss.");
    describe_counter!(CACHE_PUTS, Unit::Count, "Entries stored in the cache.");
    describe_counter!(CACHE_EVICTIONS, Unit::Count, "Entries evicted from the cache, for size or expiry.");
    describe_gauge!(CACHE_SIZE, Unit::Count, "Number of entries in the cache.");
    describe_histogram!(
        CACHE_LOOKUP_DURATION,
        Unit::Seconds,
        "Time a caller waited for a cache get, by result."
    );
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, sync::Arc, time::Duration};

    use http::{Request, Response};
    use metrics_util::{
        CompositeKey, MetricKind,
        debugging::{DebugValue, DebuggingRecorder, Snapshotter},
    };
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::{route::HttpRoute, window::Window};

    type Snapshot = Vec<(CompositeKey, Option<::metrics::Unit>, Option<::metrics::SharedString>, DebugValue)>;

    fn counter(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        snapshot.iter().find_map(|(key, _, _, value)| {
            let matches = key.kind() == MetricKind::Counter
                && key.key().name() == name
                && labels.iter().all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
                && key.key().labels().count() == labels.len();
            match value {
                DebugValue::Counter(n) if matches => Some(*n),
                _ => None,
            }
        })
    }

    fn described(snapshot: &Snapshot, name: &str) -> bool {
        snapshot.iter().any(|(key, _, help, _)| key.key().name() == name && help.is_some())
    }

    /// Answers with the outcome named by the path, as an extension or a header.
    async fn handler(req: Request<String>) -> Result<Response<String>, Infallible> {
        let mut res = Response::new("body".to_owned());
        match req.uri().path() {
            "/ext/hit" => {
                res.extensions_mut().insert(CacheStatus::Hit);
            }
            "/ext/bypass" => {
                res.extensions_mut().insert(CacheStatus::Bypass);
            }
            "/header/miss" => {
                res.headers_mut().insert("cache-status", "Edge; fwd=uri-miss".parse().unwrap());
            }
            "/both" => {
                res.extensions_mut().insert(CacheStatus::Revalidated);
                res.headers_mut().insert("x-cache", "MISS".parse().unwrap());
            }
            "/named" => {
                res.headers_mut().insert("cache-status", "app; hit, Edge; fwd=uri-miss".parse().unwrap());
            }
            _ => {}
        }
        Ok(res)
    }

    fn request(path: &str, route: Option<&str>) -> Request<String> {
        let mut req = Request::get(path).body(String::new()).unwrap();
        if let Some(route) = route {
            req.extensions_mut().insert(HttpRoute::new(route));
        }
        req
    }

    async fn serve(layer: &RecordCacheStatusLayer, path: &str, route: Option<&str>) -> Response<String> {
        let svc = ServiceBuilder::new().layer(layer.clone()).service_fn(handler);
        let res = svc.oneshot(request(path, route)).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
        Response::from_parts(parts, String::from_utf8(body.to_vec()).unwrap())
    }

    fn recorder() -> (DebuggingRecorder, Snapshotter) {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        (recorder, snapshotter)
    }

    #[tokio::test]
    async fn counts_outcomes_per_route_from_extensions_then_headers() {
        let (recorder, snapshotter) = recorder();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let ratios = CacheHitRatios::new();
        let layer = RecordCacheStatusLayer::new().hit_ratios(ratios.clone());
        for _ in 0..3 {
            serve(&layer, "/ext/hit", Some("/ext/{status}")).await;
        }
        serve(&layer, "/ext/bypass", Some("/ext/{status}")).await;
        serve(&layer, "/header/miss", Some("/header/{status}")).await;
        serve(&layer, "/both", Some("/both")).await;
        serve(&layer, "/nothing", Some("/nothing")).await;
        serve(&layer, "/ext/hit", None).await;

        let snapshot = snapshotter.snapshot().into_vec();
        let count = |route: &str, result: &str| {
            counter(
                &snapshot,
                HTTP_SERVER_CACHE_REQUESTS,
                &[("http_route", route), ("cache", "http"), ("result", result)],
            )
        };
        assert_eq!(count("/ext/{status}", "hit"), Some(3));
        assert_eq!(count("/ext/{status}", "bypass"), Some(1));
        assert_eq!(count("/header/{status}", "miss"), Some(1));
        assert_eq!(count("/both", "revalidated"), Some(1), "the extension wins over headers");
        assert_eq!(count("/both", "miss"), None);
        assert_eq!(count(crate::route::UNMATCHED_ROUTE, "hit"), Some(1));
        assert!(
            !snapshot.iter().any(|(k, ..)| k.key().labels().any(|l| l.value() == "/nothing")),
            "no cache information, no series"
        );
        assert!(described(&snapshot, HTTP_SERVER_CACHE_REQUESTS));

        let stats = ratios.cache("http").window(Window::OneMinute);
        assert_eq!((stats.hits, stats.misses), (5, 1), "bypass is not in the ratio");
        let route = ratios.route("http", "/ext/{status}").window(Window::FiveMinutes);
        assert_eq!((route.hits, route.misses, route.ratio), (3, 0, Some(1.0)));
        let snapshots = ratios.snapshot();
        assert_eq!(snapshots.len(), 1 + 4, "the cache, and 4 routes with ratio outcomes: {snapshots:?}");
    }

    #[tokio::test]
    async fn reads_the_configured_member() {
        let (recorder, snapshotter) = recorder();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let ratios = CacheHitRatios::new();
        let last = RecordCacheStatusLayer::new().hit_ratios(ratios.clone());
        let named = RecordCacheStatusLayer::new().cache_name("app").hit_ratios(ratios.clone());
        let member =
            RecordCacheStatusLayer::new().cache_name("edge").cache_status_member("app").hit_ratios(ratios);
        serve(&last, "/named", Some("/named")).await;
        serve(&named, "/named", Some("/named")).await;
        serve(&member, "/named", Some("/named")).await;
        let snapshot = snapshotter.snapshot().into_vec();
        let count = |cache: &str, result: &str| {
            counter(
                &snapshot,
                HTTP_SERVER_CACHE_REQUESTS,
                &[("http_route", "/named"), ("cache", cache), ("result", result)],
            )
        };
        assert_eq!(count("http", "miss"), Some(1), "the last member");
        assert_eq!(count("app", "hit"), Some(1), "the member named as the cache");
        assert_eq!(count("edge", "hit"), Some(1), "the member configured");
    }

    #[tokio::test]
    async fn errors_and_responses_pass_untouched() {
        let layer = RecordCacheStatusLayer::new().hit_ratios(CacheHitRatios::new());
        let res = serve(&layer, "/header/miss", Some("/r")).await;
        assert_eq!(res.headers()["cache-status"], "Edge; fwd=uri-miss");
        assert_eq!(*res.body(), "body");

        let failing = ServiceBuilder::new().layer(layer).service_fn(|_: Request<String>| async {
            Err::<Response<String>, _>(std::io::Error::other("boom"))
        });
        assert!(failing.oneshot(request("/x", Some("/x"))).await.is_err());
    }

    #[tokio::test]
    async fn poll_ready_call_and_response_are_separate_steps() {
        use tower::Service;
        let ratios = CacheHitRatios::new();
        let layer = RecordCacheStatusLayer::new().hit_ratios(ratios.clone());
        let svc = tower_layer::Layer::layer(&layer, tower::service_fn(handler));
        let mut svc = tower_layer::Layer::layer(&layer, svc.into_inner());
        assert!(svc.get_ref().clone().ready().await.is_ok());
        let _ = svc.get_mut();
        svc.ready().await.unwrap();
        let future = svc.call(request("/ext/hit", Some("/steps")));
        assert_eq!(ratios.cache("http").window(Window::OneMinute).total(), 0, "nothing before the response");
        assert!(format!("{future:?}").contains("ResponseFuture"));
        future.await.unwrap();
        assert_eq!(ratios.cache("http").window(Window::OneMinute).hits, 1);
        // A future dropped before its response records nothing.
        drop(svc.call(request("/ext/hit", Some("/steps"))));
        assert_eq!(ratios.cache("http").window(Window::OneMinute).hits, 1);
    }

    /// The outcome read from the headers is left in the response extensions,
    /// where the trace layer around it finds it for `cache.result`; the
    /// cache layer writes into no span itself.
    #[tokio::test]
    async fn outcome_reaches_the_span_of_an_outer_trace_layer() {
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

        let layer = RecordCacheStatusLayer::new().hit_ratios(CacheHitRatios::new());
        let res = serve(&layer, "/header/miss", Some("/r")).await;
        assert_eq!(res.extensions().get::<CacheStatus>(), Some(&CacheStatus::Miss));

        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
        let svc = ServiceBuilder::new()
            .layer(crate::trace::HttpTraceLayer::new().tracer(provider.tracer("test")))
            .layer(layer)
            .service_fn(handler);
        for path in ["/header/miss", "/nothing"] {
            let res = svc.clone().oneshot(request(path, Some("/r"))).await.unwrap();
            http_body_util::BodyExt::collect(res.into_body()).await.unwrap();
        }
        let results: Vec<Vec<String>> = spans
            .get_finished_spans()
            .unwrap()
            .iter()
            .map(|span| {
                span.attributes
                    .iter()
                    .filter(|kv| kv.key.as_str() == "cache.result")
                    .map(|kv| kv.value.as_str().into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(results, [vec!["miss".to_owned()], vec![]]);
    }

    #[test]
    fn cache_metrics_use_micrometer_names() {
        let (recorder, snapshotter) = recorder();
        ::metrics::with_local_recorder(&recorder, || {
            let ratios = CacheHitRatios::new();
            let metrics = CacheMetrics::with_hit_ratios("users", &ratios);
            assert_eq!(metrics.name(), "users");
            let clone = metrics.clone();
            metrics.record_hit();
            clone.record_hit();
            metrics.record_miss();
            metrics.record_get(true, Duration::from_micros(30));
            metrics.record_put();
            metrics.record_eviction();
            metrics.record_evictions(2);
            metrics.set_size(7);
            let stats = metrics.hit_ratio().window(Window::OneMinute);
            assert_eq!((stats.hits, stats.misses), (3, 1));
            assert!(Arc::ptr_eq(&ratios.cache("users"), &ratios.cache("users")));
            assert_eq!(ratios.cache("users").window(Window::OneMinute).hits, 3);
            assert!(format!("{metrics:?}").contains("users"));
        });
        let snapshot = snapshotter.snapshot().into_vec();
        let users = [("cache", "users")];
        assert_eq!(counter(&snapshot, CACHE_GETS, &[("cache", "users"), ("result", "hit")]), Some(3));
        assert_eq!(counter(&snapshot, CACHE_GETS, &[("cache", "users"), ("result", "miss")]), Some(1));
        assert_eq!(counter(&snapshot, CACHE_PUTS, &users), Some(1));
        assert_eq!(counter(&snapshot, CACHE_EVICTIONS, &users), Some(3));
        let gauge = snapshot.iter().find_map(|(k, _, _, v)| match v {
            DebugValue::Gauge(g) if k.key().name() == CACHE_SIZE => Some(g.into_inner()),
            _ => None,
        });
        assert_eq!(gauge, Some(7.0));
        let lookups = snapshot.iter().find_map(|(k, _, _, v)| match v {
            DebugValue::Histogram(h) if k.key().name() == CACHE_LOOKUP_DURATION => Some(h.len()),
            _ => None,
        });
        assert_eq!(lookups, Some(1));
        for name in [CACHE_GETS, CACHE_PUTS, CACHE_EVICTIONS, CACHE_SIZE, CACHE_LOOKUP_DURATION] {
            assert!(described(&snapshot, name), "{name} has no HELP");
        }
    }

    #[tokio::test]
    async fn observe_get_times_and_classifies() {
        let (recorder, snapshotter) = recorder();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let metrics = CacheMetrics::with_hit_ratios("observed", &CacheHitRatios::new());
        assert_eq!(metrics.observe_get(async { Some(1) }).await, Some(1));
        assert_eq!(metrics.observe_get(std::future::ready(None::<u8>)).await, None);
        let snapshot = snapshotter.snapshot().into_vec();
        for result in ["hit", "miss"] {
            assert_eq!(counter(&snapshot, CACHE_GETS, &[("cache", "observed"), ("result", result)]), Some(1));
        }
        let histograms = snapshot
            .iter()
            .filter(|(k, _, _, v)| {
                k.key().name() == CACHE_LOOKUP_DURATION
                    && matches!(v, DebugValue::Histogram(h) if h.len() == 1)
            })
            .count();
        assert_eq!(histograms, 2);
    }

    #[cfg(feature = "moka")]
    #[tokio::test]
    async fn moka_evictions_and_size() {
        let (recorder, snapshotter) = recorder();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let metrics = CacheMetrics::with_hit_ratios("moka-unit", &CacheHitRatios::new());
        let cache =
            InstrumentedCache::with_metrics(metrics, ::moka::future::Cache::builder().max_capacity(2));
        for key in 0..5u32 {
            cache.insert(key, key).await;
            cache.run_pending_tasks().await;
        }
        let entries = cache.cache().entry_count();
        assert!(entries <= 2);
        let evictions = |snapshot: &Snapshot| counter(snapshot, CACHE_EVICTIONS, &[("cache", "moka-unit")]);
        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(evictions(&snapshot), Some(5 - entries), "every entry not kept was evicted for size");
        // Replacing a value and removing an entry are not evictions.
        let present = (0..5u32).find(|k| cache.cache().contains_key(k)).unwrap();
        cache.insert(present, 99).await;
        cache.invalidate(&present).await;
        cache.run_pending_tasks().await;
        // The debugging recorder's snapshots take deltas.
        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(evictions(&snapshot), Some(0));
        assert_eq!(counter(&snapshot, CACHE_PUTS, &[("cache", "moka-unit")]), Some(1));
        assert_eq!(cache.cache().entry_count(), entries - 1);
        let size = snapshot.iter().find_map(|(k, _, _, v)| match v {
            DebugValue::Gauge(g) if k.key().name() == CACHE_SIZE => Some(g.into_inner()),
            _ => None,
        });
        assert_eq!(size, Some((entries - 1) as f64), "cache_size follows the entry count");
        assert!(format!("{cache:?}").contains("moka-unit"));
    }

    #[test]
    fn traits() {
        fn assert_send<T: Send>() {}
        fn assert_sync<T: Sync>() {}
        assert_send::<RecordCacheStatusLayer>();
        assert_sync::<RecordCacheStatusLayer>();
        assert_send::<RecordCacheStatus<()>>();
        assert_sync::<RecordCacheStatus<()>>();
        assert_send::<crate::observe::ResponseFuture<(), RecordCacheStatusLayer>>();
        assert_sync::<crate::observe::ResponseFuture<(), RecordCacheStatusLayer>>();
        assert_send::<CacheMetrics>();
        assert_sync::<CacheMetrics>();
        assert_send::<CacheHitRatios>();
        assert_sync::<CacheHitRatios>();
        assert_send::<CacheStatus>();
        #[cfg(feature = "moka")]
        {
            assert_send::<InstrumentedCache<u64, String>>();
            assert_sync::<InstrumentedCache<u64, String>>();
        }
    }
}
