use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use ::metrics::Gauge;
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::registry::{Registry, RouteSeries, SeriesKey};
use crate::{
    body::{self, BodyEnd, BodyObserver, ResponseBody},
    classify::{ErrorType, KnownMethod, RouteFilter, response_error, route_of, scheme_of},
};

/// Marks a request as measured, so that a second [`HttpMetrics`] around the
/// same request (a layer applied twice, e.g. on a merged router) lets it pass.
#[derive(Debug, Clone, Copy)]
struct Measured;

/// The number of distinct route labels a layer keeps by default.
const DEFAULT_MAX_ROUTES: usize = 1024;

/// Layer that records the OTel HTTP server metrics of every request.
///
/// See the [module docs](super) for metric names and labels. Clones share
/// their label caches, so build one layer and clone it.
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpMetricsLayer {
    registry: Arc<Registry>,
    exclude: RouteFilter,
}

impl HttpMetricsLayer {
    /// A layer recording into the global `metrics` recorder.
    ///
    /// Metric handles are registered with the recorder installed at the
    /// first request of each label set: install the recorder before serving.
    pub fn new() -> Self {
        super::describe();
        Self { registry: Arc::new(Registry::new(DEFAULT_MAX_ROUTES)), exclude: RouteFilter::default() }
    }

    /// Leaves requests on these route templates unmeasured (e.g. `/metrics`
    /// and health probes). Requests that matched no route are always measured.
    pub fn exclude_routes<I, T>(mut self, routes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        self.exclude = RouteFilter::new(routes);
        self
    }

    /// Keeps at most `max` distinct `http_route` values; requests on routes
    /// beyond it are labelled `_overflow`. Defaults to 1024. Routes come from
    /// the router's templates, so the cap is a guard against a misconfigured
    /// [`HttpRoute`](crate::HttpRoute), not a limit a router reaches.
    pub fn max_routes(mut self, max: usize) -> Self {
        self.registry = Arc::new(Registry::new(max));
        self
    }
}

impl Default for HttpMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics { inner, registry: self.registry.clone(), exclude: self.exclude.clone() }
    }
}

/// Service made by [`HttpMetricsLayer`].
#[derive(Debug, Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    registry: Arc<Registry>,
    exclude: RouteFilter,
}

impl<S> HttpMetrics<S> {
    /// Wraps `inner` with a new [`HttpMetricsLayer`].
    pub fn new(inner: S) -> Self {
        HttpMetricsLayer::new().layer(inner)
    }

    /// A new [`HttpMetricsLayer`].
    pub fn layer() -> HttpMetricsLayer {
        HttpMetricsLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody, MetricsObserver>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let route = route_of(req.extensions());
        if self.exclude.excludes(route) || req.extensions().get::<Measured>().is_some() {
            return ResponseFuture { inner: self.inner.call(req), pending: None };
        }
        let route = self.registry.route(route);
        req.extensions_mut().insert(Measured);
        let method = KnownMethod::of(req.method());
        let scheme = scheme_of(req.uri());
        let request_bytes = content_length(req.headers());
        let active = ActiveGuard::new(self.registry.active(method, scheme));
        let is_head = req.method() == http::Method::HEAD;
        ResponseFuture {
            inner: self.inner.call(req),
            pending: Some(Pending { start, method, scheme, route, request_bytes, is_head, _active: active }),
        }
    }
}

/// Request body size from `Content-Length`; 0 when absent or malformed.
#[inline]
fn content_length(headers: &http::HeaderMap) -> u64 {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Decrements the active-requests gauge when the request is over, whichever
/// way it ends: the guard lives in the future, then in the body observer.
#[derive(Debug)]
struct ActiveGuard(Gauge);

impl ActiveGuard {
    #[inline]
    fn new(gauge: &Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for ActiveGuard {
    #[inline]
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// What is known of a request before its response ends.
#[derive(Debug)]
struct Pending {
    start: Instant,
    method: KnownMethod,
    scheme: &'static str,
    route: Arc<RouteSeries>,
    request_bytes: u64,
    is_head: bool,
    _active: ActiveGuard,
}

impl Pending {
    #[inline]
    fn finish(self, status: Option<StatusCode>, error: Option<ErrorType>, response_bytes: u64) {
        let seconds = self.start.elapsed().as_secs_f64();
        let key = SeriesKey { method: self.method, scheme: self.scheme, status, error };
        self.route.record(key, seconds, self.request_bytes, response_bytes);
    }
}

pin_project! {
    /// Response future of [`HttpMetrics`].
    ///
    /// Dropped before the response is ready (the client went away while the
    /// handler ran), it records the request with `error_type="client_abort"`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                pending.finish(None, Some(ErrorType::ClientAbort), 0);
            }
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B, MetricsObserver>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(pending) = this.pending.take() else {
            // Excluded or measured by an outer layer: pass through.
            return Poll::Ready(result.map(|res| res.map(ResponseBody::unobserved)));
        };
        Poll::Ready(match result {
            Ok(res) => {
                let status = res.status();
                let is_head = pending.is_head;
                let observer = MetricsObserver { pending, status, response_bytes: 0 };
                Ok(res.map(|b| body::observe(b, observer, is_head, status)))
            }
            Err(err) => {
                pending.finish(None, Some(ErrorType::service::<E>()), 0);
                Err(err)
            }
        })
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// The [`BodyObserver`] of [`HttpMetrics`]: counts response bytes and
/// records the request when the body ends.
#[derive(Debug)]
pub struct MetricsObserver {
    pending: Pending,
    status: StatusCode,
    response_bytes: u64,
}

impl BodyObserver for MetricsObserver {
    #[inline]
    fn on_data(&mut self, len: usize) {
        self.response_bytes += len as u64;
    }

    #[inline]
    fn on_end(self, end: BodyEnd) {
        let error = response_error(self.status, end);
        self.pending.finish(Some(self.status), error, self.response_bytes);
    }
}
