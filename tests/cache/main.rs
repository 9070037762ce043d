//! End to end: cache outcomes over real loopback HTTP, into a real
//! Prometheus recorder, read back with a strict exposition parser and
//! promtool; moka evictions and size.
#![cfg(all(feature = "telemetry", feature = "axum"))]

#[path = "../support/prom.rs"]
mod prom;

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
};

use axum::{
    Router,
    extract::{Path, State},
    http::HeaderMap,
    routing::get,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use prom::{Exposition, promtool_check};
use tower_observability::{
    cache::{
        CACHE_EVICTIONS, CACHE_GETS, CACHE_LOOKUP_DURATION, CACHE_PUTS, CACHE_SIZE, CacheHitRatios,
        CacheStatus, HTTP_SERVER_CACHE_REQUESTS, LOOKUP_DURATION_BUCKETS, RecordCacheStatusLayer,
    },
    window::Window,
};

/// The one recorder of this test binary; tests use distinct routes and
/// cache names because they share it.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(CACHE_LOOKUP_DURATION.to_owned()), &LOOKUP_DURATION_BUCKETS)
            .and_then(PrometheusBuilder::install_recorder)
            .expect("install the Prometheus recorder")
    })
}

fn render() -> (String, Exposition) {
    tower_observability::metrics::flush();
    let text = recorder().render();
    let parsed = Exposition::parse(&text);
    (text, parsed)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

async fn get_text(
    client: &reqwest::Client,
    url: String,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap) {
    let res = client.get(url).send().await.expect("request");
    let (status, headers) = (res.status(), res.headers().clone());
    res.bytes().await.unwrap();
    (status, headers)
}

/// `GET /ext-test/items/{id}`: the first request for an id is a miss, the
/// next ones hits, reported in the `CacheStatus` extension.
async fn item(State(seen): State<Arc<Mutex<HashSet<u64>>>>, Path(id): Path<u64>) -> (CacheStatus, String) {
    let fresh = seen.lock().unwrap().insert(id);
    (if fresh { CacheStatus::Miss } else { CacheStatus::Hit }, format!("item {id}"))
}

#[tokio::test]
async fn extension_outcomes_are_counted_exactly_per_route() {
    recorder();
    let ratios = CacheHitRatios::new();
    let app = Router::new()
        .route("/ext-test/items/{id}", get(item))
        .route("/ext-test/plain", get(|| async { "no cache here" }))
        .with_state(Arc::new(Mutex::new(HashSet::new())))
        .layer(RecordCacheStatusLayer::new().hit_ratios(ratios.clone()));
    let address = serve(app).await;
    let client = reqwest::Client::new();

    // 4 distinct ids: 4 misses; 17 requests: 13 hits.
    let ids = [1, 1, 2, 1, 3, 3, 3, 2, 4, 1, 1, 4, 2, 2, 3, 1, 4];
    for id in ids {
        let (status, _) = get_text(&client, format!("http://{address}/ext-test/items/{id}")).await;
        assert_eq!(status, 200);
    }
    for _ in 0..5 {
        get_text(&client, format!("http://{address}/ext-test/plain")).await;
    }
    get_text(&client, format!("http://{address}/ext-test/nowhere")).await;

    let (text, scrape) = render();
    let route = ("http_route", "/ext-test/items/{id}");
    let count = |result: &str| {
        scrape.sum(HTTP_SERVER_CACHE_REQUESTS, &[route, ("cache", "http"), ("result", result)])
    };
    assert_eq!(count("hit"), 13.0, "{text}");
    assert_eq!(count("miss"), 4.0);
    assert_eq!(scrape.matching(HTTP_SERVER_CACHE_REQUESTS, &[route]).count(), 2, "hit and miss only");
    assert_eq!(
        scrape.matching(HTTP_SERVER_CACHE_REQUESTS, &[("http_route", "/ext-test/plain")]).count(),
        0,
        "responses without cache information are not counted"
    );
    assert_eq!(scrape.types[HTTP_SERVER_CACHE_REQUESTS], "counter");
    assert!(scrape.help.contains_key(HTTP_SERVER_CACHE_REQUESTS));

    for window in Window::ALL {
        let stats = ratios.cache("http").window(window);
        assert_eq!((stats.hits, stats.misses), (13, 4), "{window}");
        assert_eq!(stats.ratio, Some(13.0 / 17.0));
    }
    let per_route = ratios.route("http", "/ext-test/items/{id}").window(Window::OneMinute);
    assert_eq!((per_route.hits, per_route.misses), (13, 4));
    // 76 % is above the 70 % default threshold.
    assert!(ratios.below_threshold().is_empty());
    promtool_check(&text);
}

/// `GET /hdr-test/{kind}`: answers with the `Cache-Status` header (or
/// another header) named by `kind`.
async fn with_header(Path(kind): Path<String>) -> (HeaderMap, &'static str) {
    let mut headers = HeaderMap::new();
    let (name, value) = match kind.as_str() {
        "hit" => ("cache-status", "OriginCache; fwd=uri-miss, edge; hit; ttl=30"),
        "stale" => ("cache-status", "edge; hit; ttl=-5"),
        "miss" => ("cache-status", "edge; fwd=uri-miss; stored"),
        "revalidated" => ("cache-status", "edge; fwd=stale; fwd-status=304"),
        "bypass" => ("cache-status", "edge; fwd=request; detail=\"no-cache\""),
        "garbage" => ("cache-status", "\"unterminated; hit"),
        "x-cache" => ("x-cache", "MISS, Hit from cloudfront"),
        "cloudflare" => ("cf-cache-status", "EXPIRED"),
        _ => return (headers, "no cache information"),
    };
    headers.insert(name, value.parse().unwrap());
    (headers, "body")
}

#[tokio::test]
async fn header_outcomes_are_counted_with_the_configured_cache_name() {
    recorder();
    let ratios = CacheHitRatios::with_threshold(0.9, 5);
    let app = Router::new()
        .route("/hdr-test/{kind}", get(with_header))
        .layer(RecordCacheStatusLayer::new().cache_name("edge").hit_ratios(ratios.clone()));
    let address = serve(app).await;
    let client = reqwest::Client::new();
    let pattern = [
        ("hit", 6),
        ("stale", 1),
        ("miss", 3),
        ("revalidated", 2),
        ("bypass", 4),
        ("garbage", 1),
        ("x-cache", 2),
        ("cloudflare", 1),
        ("none", 3),
    ];
    for (kind, n) in pattern {
        for _ in 0..n {
            let (status, headers) = get_text(&client, format!("http://{address}/hdr-test/{kind}")).await;
            assert_eq!(status, 200);
            if kind == "hit" {
                assert_eq!(
                    headers["cache-status"], "OriginCache; fwd=uri-miss, edge; hit; ttl=30",
                    "untouched"
                );
            }
        }
    }

    let (text, scrape) = render();
    let count = |result: &str| {
        scrape.sum(
            HTTP_SERVER_CACHE_REQUESTS,
            &[("http_route", "/hdr-test/{kind}"), ("cache", "edge"), ("result", result)],
        )
    };
    assert_eq!(count("hit"), 6.0 + 2.0, "the `edge` member, and the last X-Cache entry: {text}");
    assert_eq!(count("miss"), 3.0 + 1.0, "Cache-Status, and CF-Cache-Status EXPIRED");
    assert_eq!(count("stale_hit"), 1.0);
    assert_eq!(count("revalidated"), 2.0);
    assert_eq!(count("bypass"), 4.0);
    assert_eq!(count("unknown"), 1.0);
    let total: f64 = scrape
        .matching(HTTP_SERVER_CACHE_REQUESTS, &[("http_route", "/hdr-test/{kind}")])
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 20.0, "the 3 responses without a header are not counted");

    let stats = ratios.cache("edge").window(Window::FiveMinutes);
    assert_eq!((stats.hits, stats.misses), (6 + 2 + 1 + 2, 4), "bypass and unknown left out");
    let warnings = ratios.below_threshold();
    assert_eq!(warnings.len(), 6, "cache and route, 3 windows each, 73 % < 90 %: {warnings:?}");
    assert!(warnings.iter().all(|w| &*w.cache == "edge"));
    promtool_check(&text);
}

#[cfg(feature = "moka")]
mod moka_cache {
    use std::time::Duration;

    use tower_observability::cache::{CacheMetrics, InstrumentedCache};

    use super::*;

    /// `GET /moka-test/users/{id}` through a real moka cache: the handler
    /// reports the outcome it saw, in the extension and in `x-result`.
    async fn user(
        State(users): State<InstrumentedCache<u64, String>>,
        Path(id): Path<u64>,
    ) -> (CacheStatus, [(&'static str, &'static str); 1], String) {
        let (name, status) = users.get_or_insert_with_status(id, async move { format!("user-{id}") }).await;
        (status, [("x-result", status.as_str())], name)
    }

    #[tokio::test]
    async fn moka_gets_over_http_match_the_responses() {
        recorder();
        let ratios = CacheHitRatios::new();
        let users = InstrumentedCache::with_metrics(
            CacheMetrics::with_hit_ratios("moka_users", &ratios),
            moka::future::Cache::builder().max_capacity(1_000),
        );
        let app = Router::new()
            .route("/moka-test/users/{id}", get(user))
            .with_state(users.clone())
            .layer(RecordCacheStatusLayer::new().cache_name("moka_http").hit_ratios(ratios.clone()));
        let address = serve(app).await;
        let client = reqwest::Client::new();
        // 5 ids, each asked 4 times: 5 misses, 15 hits.
        let mut seen = Vec::new();
        for round in 0..4 {
            for id in 1..=5 {
                let (_, headers) = get_text(&client, format!("http://{address}/moka-test/users/{id}")).await;
                let result = headers["x-result"].to_str().unwrap().to_owned();
                assert_eq!(result, if round == 0 { "miss" } else { "hit" }, "round {round}, id {id}");
                seen.push(result);
            }
        }
        users.run_pending_tasks().await;

        let (text, scrape) = render();
        let gets = |result: &str| scrape.sum(CACHE_GETS, &[("cache", "moka_users"), ("result", result)]);
        assert_eq!(gets("hit"), 15.0, "{text}");
        assert_eq!(gets("miss"), 5.0);
        assert_eq!(scrape.sum(CACHE_PUTS, &[("cache", "moka_users")]), 5.0);
        assert_eq!(scrape.sum(CACHE_SIZE, &[("cache", "moka_users")]), 5.0);
        let route = ("http_route", "/moka-test/users/{id}");
        assert_eq!(scrape.sum(HTTP_SERVER_CACHE_REQUESTS, &[route, ("result", "hit")]), 15.0);
        assert_eq!(scrape.sum(HTTP_SERVER_CACHE_REQUESTS, &[route, ("result", "miss")]), 5.0);
        let lookups = scrape.sum("cache_lookup_duration_seconds_count", &[("cache", "moka_users")]);
        assert_eq!(lookups, 20.0);
        assert!(
            scrape.matching("cache_lookup_duration_seconds_bucket", &[("cache", "moka_users")]).count() > 0,
            "a histogram, not a summary"
        );
        for cache in ["moka_users", "moka_http"] {
            let stats = ratios.cache(cache).window(Window::OneMinute);
            assert_eq!((stats.hits, stats.misses, stats.ratio), (15, 5, Some(0.75)), "{cache}");
        }
        promtool_check(&text);
    }

    #[tokio::test]
    async fn moka_evictions_and_size_follow_the_cache() {
        recorder();
        let cache = InstrumentedCache::with_metrics(
            CacheMetrics::with_hit_ratios("moka_small", &CacheHitRatios::new()),
            moka::future::Cache::builder().max_capacity(4),
        );
        for key in 0..20u64 {
            cache.insert(key, format!("value-{key}")).await;
            cache.run_pending_tasks().await;
        }
        let entries = cache.cache().entry_count();
        assert!((1..=4).contains(&entries), "{entries}");
        let (text, scrape) = render();
        let labels = [("cache", "moka_small")];
        assert_eq!(scrape.sum(CACHE_PUTS, &labels), 20.0);
        assert_eq!(scrape.sum(CACHE_EVICTIONS, &labels), (20 - entries) as f64, "{text}");
        assert_eq!(scrape.sum(CACHE_SIZE, &labels), entries as f64);

        // Replacing and removing are not evictions; the size follows.
        let present = (0..20u64).find(|k| cache.cache().contains_key(k)).unwrap();
        cache.insert(present, "replaced".to_owned()).await;
        cache.invalidate(&present).await;
        cache.run_pending_tasks().await;
        let (_, scrape) = render();
        assert_eq!(scrape.sum(CACHE_EVICTIONS, &labels), (20 - entries) as f64);
        assert_eq!(scrape.sum(CACHE_SIZE, &labels), (entries - 1) as f64);

        // Expiry is an eviction too.
        let expiring = InstrumentedCache::with_metrics(
            CacheMetrics::with_hit_ratios("moka_ttl", &CacheHitRatios::new()),
            moka::future::Cache::builder().time_to_live(Duration::from_millis(50)),
        );
        expiring.insert(1_u64, 1_u64).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(expiring.get(&1).await, None);
        expiring.run_pending_tasks().await;
        let (text, scrape) = render();
        assert_eq!(scrape.sum(CACHE_EVICTIONS, &[("cache", "moka_ttl")]), 1.0, "{text}");
        assert_eq!(scrape.sum(CACHE_SIZE, &[("cache", "moka_ttl")]), 0.0);
        assert_eq!(scrape.sum(CACHE_GETS, &[("cache", "moka_ttl"), ("result", "miss")]), 1.0);
        promtool_check(&text);
    }
}
