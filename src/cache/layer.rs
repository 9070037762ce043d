use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Instant,
};

use ::metrics::{Counter, SharedString};
use opentelemetry::{KeyValue, trace::TraceContextExt as _};
use tower_layer::Layer;

use super::{
    CACHE_RESULT, CacheHitRatios, CacheStatus, CacheStatusService, DEFAULT_CACHE_NAME,
    HTTP_SERVER_CACHE_REQUESTS, HitRatio, ratio::CacheRatios,
};

use crate::routes::RouteTable;

/// The number of distinct route labels a layer keeps by default.
const DEFAULT_MAX_ROUTES: usize = 1024;

/// Layer that records how a cache answered each request:
/// `http_server_cache_requests_total{http_route, cache, result}`.
///
/// The outcome is read from the response: a [`CacheStatus`] in its
/// extensions first, else the `Cache-Status`, `X-Cache` or
/// `CF-Cache-Status` header (see [`CacheStatus::from_headers`]). A response
/// with none of them is not counted. The outcome also goes to the
/// in-process hit ratio of the cache and of the route (see
/// [`CacheHitRatios`]), and to the attribute `cache.result` of the current
/// OTel span (`opentelemetry::Context::current()`: the server span of
/// [`HttpTraceLayer`](crate::trace::HttpTraceLayer) when this layer runs
/// inside it).
///
/// The response and its body pass untouched. Route labels are the route
/// templates, as for the HTTP metrics. Clones share their label caches, so
/// build one layer and clone it.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_observability::cache::{CacheHitRatios, CacheStatusLayer};
///
/// let ratios = CacheHitRatios::new();
/// let app: Router = Router::new()
///     .route("/assets/{name}", get(|| async { ([("cache-status", "ExampleCache; hit")], "body") }))
///     .layer(CacheStatusLayer::new().cache_name("cdn").cache_status_member("ExampleCache").hit_ratios(ratios));
/// ```
#[derive(Clone)]
#[must_use]
pub struct CacheStatusLayer {
    pub(super) shared: Arc<Shared>,
    stack: Option<crate::stack::StackId>,
}

impl CacheStatusLayer {
    /// A layer labelling its figures `cache="http"`, reading the last
    /// `Cache-Status` member, recording into the global `metrics` recorder
    /// and [`CacheHitRatios::global`].
    ///
    /// Counters are registered with the recorder installed when their label
    /// set is first seen: install the recorder before serving.
    pub fn new() -> Self {
        super::describe();
        Self::from_config(Config {
            cache: DEFAULT_CACHE_NAME.into(),
            member: None,
            ratios: None,
            max_routes: DEFAULT_MAX_ROUTES,
        })
    }

    fn from_config(config: Config) -> Self {
        Self { shared: Arc::new(Shared::new(config)), stack: None }
    }

    /// Makes the layer part of one `ObservabilityLayer` application.
    pub(crate) fn in_stack(mut self, stack: crate::stack::StackId) -> Self {
        self.stack = Some(stack);
        self
    }

    fn with(&self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        change(&mut config);
        Self::from_config(config)
    }

    /// The `cache` label, and the name of the hit ratio entry: `http` by
    /// default. Also the `Cache-Status` member read, unless
    /// [`cache_status_member`](Self::cache_status_member) says otherwise.
    pub fn cache_name(self, name: &str) -> Self {
        self.with(|config| config.cache = name.into())
    }

    /// Reads the `Cache-Status` member whose identifier is `member` (e.g.
    /// `ExampleCache`, `"CDN Company Here"` unquoted), instead of the one
    /// named as [`cache_name`](Self::cache_name); the last member when
    /// neither is present.
    pub fn cache_status_member(self, member: &str) -> Self {
        self.with(|config| config.member = Some(member.into()))
    }

    /// Records the hit ratios into `ratios` instead of
    /// [`CacheHitRatios::global`].
    pub fn hit_ratios(self, ratios: CacheHitRatios) -> Self {
        self.with(|config| config.ratios = Some(ratios))
    }

    /// Keeps at most `max` distinct `http_route` values; requests on routes
    /// beyond it are labelled `_overflow`. Defaults to 1024.
    pub fn max_routes(self, max: usize) -> Self {
        self.with(|config| config.max_routes = max)
    }
}

impl Default for CacheStatusLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for CacheStatusLayer {
    type Service = CacheStatusService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheStatusService { inner, shared: self.shared.clone(), stack: self.stack }
    }
}

impl fmt::Debug for CacheStatusLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheStatusLayer").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Config {
    cache: Arc<str>,
    member: Option<Arc<str>>,
    /// `None` for the global registry, resolved at the first outcome so
    /// that a layer renamed before use leaves no entry behind.
    ratios: Option<CacheHitRatios>,
    max_routes: usize,
}

/// What every service of one layer shares: configuration and label caches.
pub(super) struct Shared {
    config: Config,
    ratios: OnceLock<(CacheHitRatios, Arc<CacheRatios>)>,
    routes: RouteTable<RouteCounters>,
}

impl Shared {
    fn new(config: Config) -> Self {
        Self {
            ratios: OnceLock::new(),
            routes: RouteTable::new(config.max_routes, RouteCounters::new),
            config,
        }
    }

    /// The `Cache-Status` member to read.
    #[inline]
    pub(super) fn member(&self) -> &str {
        self.config.member.as_deref().unwrap_or(&self.config.cache)
    }

    /// The counters of `route`; a bounded number of distinct routes is kept.
    #[inline]
    pub(super) fn route(&self, route: Option<&str>) -> Arc<RouteCounters> {
        self.routes.get(route, RouteCounters::new)
    }

    fn ratios(&self) -> &(CacheHitRatios, Arc<CacheRatios>) {
        self.ratios.get_or_init(|| {
            let ratios = self.config.ratios.clone().unwrap_or_else(CacheHitRatios::global);
            let entry = ratios.entry(&self.config.cache);
            (ratios, entry)
        })
    }

    /// Records one outcome on `route`: counter, hit ratios, and the
    /// `cache.result` attribute of the current OTel span.
    #[inline]
    pub(super) fn record(&self, route: &RouteCounters, status: CacheStatus) {
        route.counter(status, &self.config.cache).increment(1);
        if status.counts_toward_ratio() {
            let now = Instant::now();
            let (ratios, cache) = self.ratios();
            cache.total().record_at(status, now);
            route.ratio.get_or_init(|| ratios.route_of(cache, &route.route)).record_at(status, now);
        }
        // The trace layer attaches the server span's context while this
        // future is polled; without one the span is a no-op.
        opentelemetry::Context::map_current(|cx| {
            cx.span().set_attribute(KeyValue::new(CACHE_RESULT, status.as_str()));
        });
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The counters and hit ratio of one route, registered on first use.
pub(super) struct RouteCounters {
    route: Arc<str>,
    counters: [OnceLock<Counter>; CacheStatus::ALL.len()],
    ratio: OnceLock<Arc<HitRatio>>,
}

impl RouteCounters {
    fn new(route: &str) -> Self {
        Self { route: route.into(), counters: Default::default(), ratio: OnceLock::new() }
    }

    #[inline]
    fn counter(&self, status: CacheStatus, cache: &Arc<str>) -> &Counter {
        self.counters[status.index()].get_or_init(|| {
            super::describe();
            ::metrics::counter!(
                HTTP_SERVER_CACHE_REQUESTS,
                "http_route" => SharedString::from(self.route.clone()),
                "cache" => SharedString::from(cache.clone()),
                "result" => status.as_str(),
            )
        })
    }
}

impl fmt::Debug for RouteCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteCounters").field("route", &self.route).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{classify::UNMATCHED_ROUTE, routes::OVERFLOW_ROUTE};

    #[test]
    fn routes_are_bounded() {
        let layer = CacheStatusLayer::new().max_routes(2);
        let shared = &layer.shared;
        let a = shared.route(Some("/a"));
        assert!(Arc::ptr_eq(&a, &shared.route(Some("/a"))));
        shared.route(Some("/b"));
        assert_eq!(&*shared.route(Some("/c")).route, OVERFLOW_ROUTE);
        assert_eq!(&*shared.route(None).route, UNMATCHED_ROUTE);
    }

    #[test]
    fn member_defaults_to_the_cache_name() {
        let layer = CacheStatusLayer::new();
        assert_eq!(layer.shared.member(), "http");
        let layer = layer.cache_name("cdn");
        assert_eq!(layer.shared.member(), "cdn");
        let layer = layer.cache_status_member("ExampleCache").max_routes(3);
        assert_eq!(layer.shared.member(), "ExampleCache");
        assert!(format!("{layer:?}").contains("cdn"));
    }
}
