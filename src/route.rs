//! The route of a request: which template it matched, found once, and the
//! bounded table of per-route state the layers keep.
//!
//! A request's route label is, in order: axum's `MatchedPath`; an
//! [`HttpRoute`] put in the request extensions; for traffic that axum
//! routed into a `Router::nest_service` (static files, sub-apps), the nest's
//! prefix template, `{prefix}/{*path}`; else [`UNMATCHED_ROUTE`]. Labels are
//! never raw paths: memory and metric cardinality stay bounded whatever
//! paths clients send. Once a table holds its most routes, new templates
//! share [`OVERFLOW_ROUTE`].

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{
        Arc, LazyLock, OnceLock, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use http::Extensions;

/// The route label given to requests that matched no route (404 fallbacks).
///
/// A fixed value keeps metric cardinality bounded whatever paths clients send.
pub const UNMATCHED_ROUTE: &str = "_unmatched";

/// The route label given to new route templates once a layer keeps its most
/// routes (see `HttpMetricsLayer::max_routes`).
pub const OVERFLOW_ROUTE: &str = "_overflow";

/// A route template set by hand, for services that are not axum routers.
///
/// Axum's `MatchedPath` is read first (with the `axum` feature); otherwise a
/// service can insert `HttpRoute` into request extensions, before the
/// observability layers run, to label its metrics and spans.
///
/// The value must be a low-cardinality template (`/users/{id}`), never a raw
/// path.
///
/// # Example
///
/// ```
/// use tower_observability::HttpRoute;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(HttpRoute::new("/users/{id}"));
/// assert_eq!(req.extensions().get::<HttpRoute>().unwrap().as_str(), "/users/{id}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpRoute(Arc<str>);

impl HttpRoute {
    /// A route template such as `/users/{id}`.
    pub fn new(template: impl Into<Arc<str>>) -> Self {
        Self(template.into())
    }

    /// The template.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The route label of one request, held without copying the template.
#[derive(Clone)]
pub(crate) enum RouteName {
    /// Matched no route.
    Unmatched,
    #[cfg(feature = "axum")]
    Axum(axum::extract::MatchedPath),
    /// An [`HttpRoute`], or the template of a nested service.
    Template(Arc<str>),
}

impl RouteName {
    /// The template, `None` for a request that matched no route.
    #[inline]
    pub(crate) fn template(&self) -> Option<&str> {
        match self {
            Self::Unmatched => None,
            #[cfg(feature = "axum")]
            Self::Axum(path) => Some(path.as_str()),
            Self::Template(template) => Some(template),
        }
    }

    /// The label: the template, or [`UNMATCHED_ROUTE`].
    #[inline]
    pub(crate) fn label(&self) -> &str {
        self.template().unwrap_or(UNMATCHED_ROUTE)
    }
}

impl fmt::Debug for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The route of a service's requests that carry no template: for the
/// fallback of an axum router, unmatched; for a service nested with
/// `Router::nest_service`, the nest's template. Axum gives a layer one
/// service per route, so the answer is the same for every request of that
/// service and is found once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Untemplated(Arc<OnceLock<Option<Arc<str>>>>);

/// Finds the route of a request once: see the [module docs](self).
#[inline]
pub(crate) fn resolve(extensions: &Extensions, untemplated: &Untemplated) -> RouteName {
    #[cfg(feature = "axum")]
    if let Some(path) = extensions.get::<axum::extract::MatchedPath>() {
        return RouteName::Axum(path.clone());
    }
    if let Some(route) = extensions.get::<HttpRoute>() {
        return RouteName::Template(route.0.clone());
    }
    match untemplated.0.get_or_init(|| nested_template(extensions)) {
        Some(template) => RouteName::Template(template.clone()),
        None => RouteName::Unmatched,
    }
}

/// The template of the `Router::nest_service` a request was routed into, as
/// `{prefix}/{*path}`; `None` when axum routed it to no nest.
///
/// Axum gives a nested service's requests no `MatchedPath`, only a private
/// extension with the nest's template. A router of its own, one route
/// `/{*path}` deep, reads it: axum joins the template of the nest the
/// request came through to that route's, as for any router nested in
/// another. Asked once per service (see [`Untemplated`]).
#[cfg(feature = "axum")]
fn nested_template(extensions: &Extensions) -> Option<Arc<str>> {
    use std::{
        future::Future,
        pin::pin,
        task::{Context, Poll, Waker},
    };

    use axum::{body::Body, extract::MatchedPath};
    use tower_service::Service as _;

    const PROBE: &str = "/{*path}";
    let mut router = axum::Router::new().route(
        PROBE,
        axum::routing::any(|req: axum::extract::Request| async move {
            let mut res = http::Response::new(Body::empty());
            if let Some(path) = req.extensions().get::<MatchedPath>() {
                res.extensions_mut().insert(path.clone());
            }
            res
        }),
    );
    let mut req = http::Request::new(Body::empty());
    *req.uri_mut() = http::Uri::from_static("/probe");
    *req.extensions_mut() = extensions.clone();
    let future = pin!(router.call(req));
    let Poll::Ready(Ok(res)) = future.poll(&mut Context::from_waker(Waker::noop())) else { return None };
    let template = res.extensions().get::<MatchedPath>()?.as_str();
    (template != PROBE).then(|| template.into())
}

#[cfg(not(feature = "axum"))]
fn nested_template(_: &Extensions) -> Option<Arc<str>> {
    None
}

/// The most gRPC methods recognized in one process; past it, methods are
/// labelled `_OTHER` (see [`crate::grpc`]).
pub const MAX_RPC_METHODS: usize = 1024;

/// The longest gRPC method name recognized, in bytes.
pub(crate) const MAX_RPC_METHOD_LEN: usize = 256;

type Methods = RwLock<HashSet<&'static str, foldhash::fast::RandomState>>;

/// The gRPC methods recognized in this process (`pkg.Service/Method`),
/// shared by every layer: kept for the life of the process, so that a
/// method name goes into spans and labels without a copy. Only methods a
/// server answered (or that were declared) get in, at most
/// [`MAX_RPC_METHODS`] of at most [`MAX_RPC_METHOD_LEN`] bytes: a client
/// sending random paths adds nothing.
static RPC_METHODS: LazyLock<Methods> = LazyLock::new(RwLock::default);

/// The recognized method a gRPC request path (`/pkg.Service/Method`) names.
#[inline]
pub(crate) fn rpc_method(path: &str) -> Option<&'static str> {
    let name = path.strip_prefix('/')?;
    RPC_METHODS.read().unwrap_or_else(PoisonError::into_inner).get(name).copied()
}

/// Recognizes the method of `path` (`/pkg.Service/Method`), answered by a
/// server; `None` for a path that does not name a method, or past the cap.
pub(crate) fn learn_rpc_method(path: &str) -> Option<&'static str> {
    path.strip_prefix('/').and_then(intern_rpc_method)
}

/// Declares `method` (`pkg.Service/Method`, with or without a leading
/// `/`) as served, so that its calls are labelled with it from the first
/// one (OTel RPC semconv: an instrumentation "SHOULD provide a way to
/// configure the list of recognized RPC methods"). Without it, a method is
/// recognized once a call to it is answered; see [`crate::grpc`].
///
/// Returns `false`, and recognizes nothing, for a name that is not
/// `{service}/{method}` (both non-empty, visible ASCII, no other `/`),
/// longer than 256 bytes, or past the [`MAX_RPC_METHODS`] of the process.
///
/// ```
/// use tower_observability::grpc::recognize_method;
///
/// assert!(recognize_method("/demo.Greeter/SayHello"));
/// assert!(!recognize_method("no-slash"));
/// ```
pub fn recognize_method(method: &str) -> bool {
    intern_rpc_method(method.strip_prefix('/').unwrap_or(method)).is_some()
}

fn intern_rpc_method(name: &str) -> Option<&'static str> {
    let well_formed = name.len() <= MAX_RPC_METHOD_LEN
        && name.bytes().all(|b| b.is_ascii_graphic())
        && matches!(name.split_once('/'), Some((service, method))
            if !service.is_empty() && !method.is_empty() && !method.contains('/'));
    if !well_formed {
        return None;
    }
    if let Some(known) = RPC_METHODS.read().unwrap_or_else(PoisonError::into_inner).get(name) {
        return Some(known);
    }
    let mut all = RPC_METHODS.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = all.get(name) {
        return Some(known);
    }
    if all.len() >= MAX_RPC_METHODS {
        return None;
    }
    let name: &'static str = Box::leak(name.into());
    all.insert(name);
    Some(name)
}

/// Which routes a setting applies to: route templates, predicates over
/// the template, or both (a route matches when any of them does).
///
/// Used to leave routes out of some signals
/// (`ObservabilityLayer::exclude_from_metrics` and its siblings) or to
/// sample them differently (`HttpTraceLayer::sample_routes`). A matcher is
/// asked once per route label, when a layer first sees the route, never
/// per request. Requests that matched no route ([`UNMATCHED_ROUTE`]) are
/// never matched: 404s stay observed.
///
/// # Example
///
/// ```
/// use tower_observability::route::RouteMatcher;
///
/// let probes = RouteMatcher::templates(["/health/live", "/health/ready"])
///     .or(RouteMatcher::predicate(|route| route.starts_with("/internal/")));
/// assert!(probes.matches("/health/live"));
/// assert!(probes.matches("/internal/{*rest}"));
/// assert!(!probes.matches("/users/{id}"));
/// assert!(!probes.matches("_unmatched"));
/// ```
#[derive(Clone, Default)]
pub struct RouteMatcher {
    templates: Option<Arc<[Box<str>]>>,
    predicates: Option<Arc<[Predicate]>>,
}

type Predicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl RouteMatcher {
    /// Matches no route.
    pub fn none() -> Self {
        Self::default()
    }

    /// Matches these route templates, exactly (`/users/{id}`).
    pub fn templates<I, T>(routes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        let routes: Arc<[Box<str>]> = routes.into_iter().map(Into::into).collect();
        Self { templates: (!routes.is_empty()).then_some(routes), predicates: None }
    }

    /// Matches the routes whose template `predicate` accepts.
    pub fn predicate(predicate: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self { templates: None, predicates: Some(Arc::new([Arc::new(predicate) as Predicate])) }
    }

    /// Matches what either matcher matches.
    pub fn or(self, other: Self) -> Self {
        fn join<T: Clone>(a: Option<Arc<[T]>>, b: Option<Arc<[T]>>) -> Option<Arc<[T]>> {
            match (a, b) {
                (None, b) => b,
                (a, None) => a,
                (Some(a), Some(b)) => Some(a.iter().chain(b.iter()).cloned().collect()),
            }
        }
        Self {
            templates: join(self.templates, other.templates),
            predicates: join(self.predicates, other.predicates),
        }
    }

    /// Whether the route labelled `route` matches; [`UNMATCHED_ROUTE`]
    /// never does.
    pub fn matches(&self, route: &str) -> bool {
        route != UNMATCHED_ROUTE
            && (self.templates.as_ref().is_some_and(|t| t.iter().any(|r| &**r == route))
                || self.predicates.as_ref().is_some_and(|p| p.iter().any(|p| p(route))))
    }
}

impl fmt::Debug for RouteMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteMatcher")
            .field("templates", &self.templates.as_deref().unwrap_or_default())
            .field("predicates", &self.predicates.as_ref().map_or(0, |p| p.len()))
            .finish()
    }
}

/// Per-route entries of type `T`, at most `max` routes plus two fixed ones.
///
/// Lookups of a known route take a read lock and allocate nothing; a new
/// route takes the write lock once. Requests that matched no route share one
/// entry, [`UNMATCHED_ROUTE`]; once `max` routes exist, new ones share
/// [`OVERFLOW_ROUTE`].
pub(crate) struct RouteTable<T> {
    /// Keyed with foldhash: route labels are the router's templates, not
    /// attacker-chosen, and their number is capped by `max`.
    routes: RwLock<HashMap<Box<str>, Arc<T>, foldhash::fast::RandomState>>,
    unmatched: Arc<T>,
    overflow: Arc<T>,
    /// Whether a request was given `unmatched` or `overflow`.
    unmatched_used: AtomicBool,
    overflow_used: AtomicBool,
    max: usize,
}

impl<T> RouteTable<T> {
    /// A table of at most `max` routes; `make` builds the entry of a route
    /// label (here, the two fixed ones).
    pub(crate) fn new(max: usize, make: impl Fn(&str) -> T) -> Self {
        Self {
            routes: RwLock::default(),
            unmatched: Arc::new(make(UNMATCHED_ROUTE)),
            overflow: Arc::new(make(OVERFLOW_ROUTE)),
            unmatched_used: AtomicBool::new(false),
            overflow_used: AtomicBool::new(false),
            max,
        }
    }

    /// The entry of the route template `template` (`None`: matched no
    /// route), made with `make` on its first request.
    #[inline]
    pub(crate) fn get(&self, template: Option<&str>, make: impl FnOnce(&str) -> T) -> Arc<T> {
        let Some(label) = template else {
            mark(&self.unmatched_used);
            return self.unmatched.clone();
        };
        if let Some(entry) = self.routes.read().unwrap_or_else(PoisonError::into_inner).get(label) {
            return entry.clone();
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = routes.get(label) {
            return entry.clone();
        }
        if routes.len() >= self.max {
            mark(&self.overflow_used);
            return self.overflow.clone();
        }
        let entry = Arc::new(make(label));
        routes.insert(label.into(), entry.clone());
        entry
    }

    /// The entry of a route label that requests were given, if any.
    pub(crate) fn find(&self, label: &str) -> Option<Arc<T>> {
        if let Some(entry) = self.routes.read().unwrap_or_else(PoisonError::into_inner).get(label) {
            return Some(entry.clone());
        }
        self.fixed().find(|(name, _)| *name == label).map(|(_, entry)| entry.clone())
    }

    /// Every entry that requests were given, in no order.
    pub(crate) fn all(&self) -> Vec<Arc<T>> {
        let mut all: Vec<Arc<T>> =
            self.routes.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        all.extend(self.fixed().map(|(_, entry)| entry.clone()));
        all
    }

    /// The fixed entries that requests were given.
    fn fixed(&self) -> impl Iterator<Item = (&'static str, &Arc<T>)> {
        [
            (UNMATCHED_ROUTE, &self.unmatched, &self.unmatched_used),
            (OVERFLOW_ROUTE, &self.overflow, &self.overflow_used),
        ]
        .into_iter()
        .filter(|(_, _, used)| used.load(Ordering::Relaxed))
        .map(|(name, entry, _)| (name, entry))
    }
}

/// Sets `flag` once, without a write when it is already set.
#[inline]
fn mark(flag: &AtomicBool) {
    if !flag.load(Ordering::Relaxed) {
        flag.store(true, Ordering::Relaxed);
    }
}

impl<T> fmt::Debug for RouteTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("RouteTable").field("routes", &routes).field("max", &self.max).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_bounded_and_fixed_entries_show_once_used() {
        let table = RouteTable::new(2, str::to_owned);
        let a = table.get(Some("/a"), str::to_owned);
        assert!(Arc::ptr_eq(&a, &table.get(Some("/a"), |_| unreachable!("made once"))));
        table.get(Some("/b"), str::to_owned);
        assert_eq!(table.all().len(), 2, "no fixed entry used yet");
        assert_eq!(*table.get(Some("/c"), str::to_owned), OVERFLOW_ROUTE);
        assert_eq!(*table.get(None, str::to_owned), UNMATCHED_ROUTE);
        assert_eq!(table.all().len(), 4);
        assert_eq!(table.find("/b").as_deref().map(String::as_str), Some("/b"));
        assert_eq!(table.find(OVERFLOW_ROUTE).as_deref().map(String::as_str), Some(OVERFLOW_ROUTE));
        assert!(table.find("/c").is_none(), "an overflowed route has no entry of its own");
    }

    #[test]
    fn rpc_methods_are_recognized_only_when_well_formed() {
        assert_eq!(rpc_method("/route.tests.Svc/M"), None);
        assert_eq!(learn_rpc_method("/route.tests.Svc/M"), Some("route.tests.Svc/M"));
        assert_eq!(rpc_method("/route.tests.Svc/M"), Some("route.tests.Svc/M"));
        for bad in ["/", "//M", "/S/", "/S/M/x", "/S M/x", "S/M", "/S/\u{e9}"] {
            assert_eq!(learn_rpc_method(bad), None, "{bad}");
        }
        let long = format!("/s/{}", "m".repeat(MAX_RPC_METHOD_LEN));
        assert_eq!(learn_rpc_method(&long), None);
        assert!(recognize_method("route.tests.Declared/M"));
        assert_eq!(rpc_method("/route.tests.Declared/M"), Some("route.tests.Declared/M"));
    }

    #[test]
    fn route_filter_excludes_only_listed_templates() {
        let filter = RouteMatcher::templates(["/metrics", "/health/live"]);
        assert!(filter.matches("/metrics"));
        assert!(!filter.matches("/metrics/x"));
        assert!(!filter.matches(UNMATCHED_ROUTE), "unmatched requests are always observed");
        assert!(!RouteMatcher::default().matches("/metrics"));
        let both = filter.or(RouteMatcher::templates(["/other"]));
        assert!(both.matches("/other") && both.matches("/metrics"));
        let any = both.or(RouteMatcher::predicate(|r| r.ends_with("/x")));
        assert!(any.matches("/metrics/x") && any.matches("/other"));
        assert!(!RouteMatcher::predicate(|_| true).matches(UNMATCHED_ROUTE));
    }

    #[test]
    fn route_prefers_matched_path_then_http_route() {
        let mut ext = Extensions::new();
        assert!(resolve(&ext, &Untemplated::default()).template().is_none());
        ext.insert(HttpRoute::new("/manual"));
        assert_eq!(resolve(&ext, &Untemplated::default()).label(), "/manual");
    }

    /// The template of a `nest_service` is its prefix; the fallback's
    /// requests are unmatched.
    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn nested_services_get_their_prefix_template() {
        use axum::{Router, body::Body, routing::get};
        use tower::ServiceExt as _;

        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = {
            let seen = seen.clone();
            axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
                // A fresh cache per request: `from_fn` shares its state across routes.
                let label = resolve(req.extensions(), &Untemplated::default()).label().to_owned();
                seen.lock().unwrap().push(label);
                next.run(req)
            })
        };
        let files = tower::service_fn(|_: axum::extract::Request| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("file")))
        });
        let app = Router::new()
            .route("/users/{id}", get(|| async { "user" }))
            .nest_service("/assets", files)
            .nest_service("/orgs/{org}/files", files)
            .layer(record);
        for path in ["/users/1", "/assets/css/app.css", "/orgs/acme/files/a/b", "/nowhere", "/assets"] {
            let res =
                app.clone().oneshot(http::Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            assert!(res.status().is_success() || path == "/nowhere", "{path}: {}", res.status());
        }
        assert_eq!(
            *seen.lock().unwrap(),
            ["/users/{id}", "/assets/{*path}", "/orgs/{org}/files/{*path}", UNMATCHED_ROUTE, "/assets"]
        );
    }
}
