use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Instant,
};

use ::metrics::{Counter, SharedString};
use http::{Request, Response};
use tower_layer::Layer;

use super::{
    CacheHitRatios, CacheStatus, DEFAULT_CACHE_NAME, HTTP_SERVER_CACHE_REQUESTS, HitRatio, ratio::CacheRatios,
};
use crate::{
    classify::StatusClassifier,
    context::{Parts, RequestContext},
    observe::{Finished, Observe, Routed, Routes, Stage, route_in},
};

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
/// [`CacheHitRatios`]), and into the response extensions as a
/// [`CacheStatus`], where the trace layer around it reads it for the span's
/// `cache.result` attribute.
///
/// The response and its body pass untouched. Route labels are the route
/// templates, as for the HTTP metrics. Clones share their label caches, so
/// build one layer and clone it.
///
/// The cache part of [`ObservabilityLayer`](crate::ObservabilityLayer); used
/// alone, it makes a [`RecordCacheStatus`] service. Under another layer of
/// the crate that recorded the request's outcome already, it does nothing.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_observability::cache::{CacheHitRatios, RecordCacheStatusLayer};
///
/// let ratios = CacheHitRatios::new();
/// let app: Router = Router::new()
///     .route("/assets/{name}", get(|| async { ([("cache-status", "ExampleCache; hit")], "body") }))
///     .layer(RecordCacheStatusLayer::new().cache_name("cdn").cache_status_member("ExampleCache").hit_ratios(ratios));
/// ```
#[derive(Clone)]
#[must_use]
pub struct RecordCacheStatusLayer {
    shared: Arc<Shared>,
    routes: Arc<Routes<CacheRoute>>,
}

/// Service made by [`RecordCacheStatusLayer`]: the crate's
/// [`Observe`](crate::observe::Observe) service with the cache part.
pub type RecordCacheStatus<S> = Observe<S, RecordCacheStatusLayer>;

impl RecordCacheStatusLayer {
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
        let shared = Arc::new(Shared { ratios: OnceLock::new(), config });
        let routes =
            Routes::new(shared.config.max_routes, |label| Routed::new(CacheRoute::new(label, &shared)));
        Self { shared, routes: Arc::new(routes) }
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
    /// beyond it are labelled `_overflow`. Defaults to 1024. In an
    /// [`ObservabilityLayer`](crate::ObservabilityLayer), the route cap of
    /// its metrics layer applies instead.
    pub fn max_routes(self, max: usize) -> Self {
        self.with(|config| config.max_routes = max)
    }

    /// The state of a new route label.
    pub(crate) fn make_route(&self, label: &str) -> CacheRoute {
        CacheRoute::new(label, &self.shared)
    }

    /// The cache part of a request: whether this layer records its outcome.
    #[inline]
    pub(crate) fn start(cx: &mut RequestContext) -> CachePending {
        CachePending(cx.claim(Parts::CACHE))
    }
}

/// Whether the cache part records the request's outcome.
#[derive(Debug)]
pub(crate) struct CachePending(bool);

impl CachePending {
    /// Records the outcome of `res`, and leaves it in its extensions.
    #[inline]
    pub(crate) fn respond<B>(&self, route: &CacheRoute, res: &mut Response<B>) {
        if !self.0 {
            return;
        }
        let shared = &route.shared;
        let status = match res.extensions().get::<CacheStatus>() {
            Some(status) => *status,
            None => {
                let Some(status) = CacheStatus::from_headers(res.headers(), Some(shared.member())) else {
                    return;
                };
                res.extensions_mut().insert(status);
                status
            }
        };
        shared.record(route, status);
    }
}

impl Default for RecordCacheStatusLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for RecordCacheStatusLayer {
    type Service = RecordCacheStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe::new(inner, self.clone())
    }
}

impl Stage for RecordCacheStatusLayer {
    type Route = CacheRoute;
    type Held<T: Send + 'static> = crate::observe::Inline<T>;
    type Pending = CachePending;

    const PASSES_CONTEXT: bool = false;

    #[inline]
    fn route(&self, template: Option<&str>) -> Arc<Routed<CacheRoute>> {
        route_in(&self.routes, template, |label| self.make_route(label))
    }

    fn classifier(&self) -> StatusClassifier {
        StatusClassifier::default()
    }

    #[inline]
    fn on_request<B: http_body::Body + 'static>(
        &mut self,
        cx: &mut RequestContext,
        _route: &CacheRoute,
        _observed: bool,
        _req: &mut Request<B>,
    ) -> CachePending {
        Self::start(cx)
    }

    #[inline]
    fn on_response<B>(
        pending: &mut CachePending,
        route: &CacheRoute,
        _cx: &RequestContext,
        res: &mut Response<B>,
    ) {
        pending.respond(route, res);
    }

    #[inline]
    fn on_end(_pending: CachePending, _route: &CacheRoute, _cx: &RequestContext, _finished: &Finished) {}
}

impl fmt::Debug for RecordCacheStatusLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordCacheStatusLayer").field("config", &self.shared.config).finish_non_exhaustive()
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
struct Shared {
    config: Config,
    ratios: OnceLock<(CacheHitRatios, Arc<CacheRatios>)>,
}

impl Shared {
    /// The `Cache-Status` member to read.
    #[inline]
    fn member(&self) -> &str {
        self.config.member.as_deref().unwrap_or(&self.config.cache)
    }

    fn ratios(&self) -> &(CacheHitRatios, Arc<CacheRatios>) {
        self.ratios.get_or_init(|| {
            let ratios = self.config.ratios.clone().unwrap_or_else(CacheHitRatios::global);
            let entry = ratios.entry(&self.config.cache);
            (ratios, entry)
        })
    }

    /// Records one outcome on `route`: counter and hit ratios.
    #[inline]
    fn record(&self, route: &CacheRoute, status: CacheStatus) {
        route.counter(status, &self.config.cache).increment(1);
        if status.counts_toward_ratio() {
            let now = Instant::now();
            let (ratios, cache) = self.ratios();
            cache.total().record_at(status, now);
            route.ratio.get_or_init(|| ratios.route_ratio(cache, &route.route)).record_at(status, now);
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The counters and hit ratio of one route, registered on first use.
pub(crate) struct CacheRoute {
    route: Arc<str>,
    shared: Arc<Shared>,
    counters: [OnceLock<Counter>; CacheStatus::ALL.len()],
    ratio: OnceLock<Arc<HitRatio>>,
}

impl CacheRoute {
    fn new(route: &str, shared: &Arc<Shared>) -> Self {
        Self {
            route: route.into(),
            shared: shared.clone(),
            counters: Default::default(),
            ratio: OnceLock::new(),
        }
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

impl fmt::Debug for CacheRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheRoute").field("route", &self.route).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{OVERFLOW_ROUTE, UNMATCHED_ROUTE};

    #[test]
    fn routes_are_bounded() {
        let layer = RecordCacheStatusLayer::new().max_routes(2);
        let a = layer.route(Some("/a"));
        assert!(Arc::ptr_eq(&a, &layer.route(Some("/a"))));
        layer.route(Some("/b"));
        assert_eq!(&*layer.route(Some("/c")).state.route, OVERFLOW_ROUTE);
        assert_eq!(&*layer.route(None).state.route, UNMATCHED_ROUTE);
    }

    #[test]
    fn member_defaults_to_the_cache_name() {
        let layer = RecordCacheStatusLayer::new();
        assert_eq!(layer.shared.member(), "http");
        let layer = layer.cache_name("cdn");
        assert_eq!(layer.shared.member(), "cdn");
        let layer = layer.cache_status_member("ExampleCache").max_routes(3);
        assert_eq!(layer.shared.member(), "ExampleCache");
        assert!(format!("{layer:?}").contains("cdn"));
    }
}
