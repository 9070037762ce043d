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

use super::{
    registry::{Measurement, Registry, RouteSeries, SeriesKey},
    stats::HttpStats,
};
use crate::{
    body::{self, BodyEnd, BodyObserver, ResponseBody},
    classify::{ErrorType, KnownMethod, RouteFilter, StatusClassifier, is_https, response_error, route_of},
    stack::{self, StackId},
};

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
    classifier: StatusClassifier,
    stack: Option<StackId>,
}

impl HttpMetricsLayer {
    /// A layer recording into the global `metrics` recorder.
    ///
    /// Metric handles are registered with the recorder installed at the
    /// first request of each label set: install the recorder before serving.
    pub fn new() -> Self {
        super::describe();
        Self {
            registry: Arc::new(Registry::new(DEFAULT_MAX_ROUTES, false)),
            exclude: RouteFilter::default(),
            classifier: StatusClassifier::default(),
            stack: None,
        }
    }

    /// Makes the layer part of one `ObservabilityLayer` application.
    pub(crate) fn in_stack(mut self, stack: StackId) -> Self {
        self.stack = Some(stack);
        self
    }

    /// Which statuses count as errors (the `error_type` label); 5xx by default.
    pub fn error_status(mut self, classifier: StatusClassifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Also records [`HTTP_SERVER_TIME_TO_FIRST_BYTE`](super::HTTP_SERVER_TIME_TO_FIRST_BYTE),
    /// for streaming services. Off by default.
    pub fn time_to_first_byte(mut self, enabled: bool) -> Self {
        self.registry = Arc::new(Registry::new(self.registry.max_routes(), enabled));
        self
    }

    /// Replaces the route filter (crate use: the monitoring fragment).
    #[cfg(feature = "monitoring")]
    pub(crate) fn with_exclude(mut self, exclude: RouteFilter) -> Self {
        self.exclude = exclude;
        self
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
        self.registry = Arc::new(Registry::new(max, self.registry.ttfb()));
        self
    }

    /// The in-process windowed statistics of the requests this layer (and
    /// its clones) measure: rate, error ratio and latency quantiles over the
    /// last 1, 5 and 15 minutes; see [`HttpStats`].
    ///
    /// Take it after [`max_routes`](Self::max_routes) and
    /// [`time_to_first_byte`](Self::time_to_first_byte), which start new
    /// figures.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::{metrics::HttpMetricsLayer, window::Window};
    ///
    /// let layer = HttpMetricsLayer::new().max_routes(100);
    /// let stats = layer.http_stats();
    /// assert_eq!(stats.window(Window::FiveMinutes).requests, 0);
    /// ```
    pub fn http_stats(&self) -> HttpStats {
        HttpStats::new(self.registry.clone())
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
        HttpMetrics {
            inner,
            registry: self.registry.clone(),
            exclude: self.exclude.clone(),
            classifier: self.classifier,
            stack: self.stack,
        }
    }
}

/// Service made by [`HttpMetricsLayer`].
///
/// The request body is passed on as it came. Its size is the
/// `Content-Length`; without one (a chunked upload), an
/// `axum::body::Body` is wrapped to count the bytes the handler reads (with
/// the `axum` feature), and any other body type is given its exact size hint,
/// or 0 when it has none.
#[derive(Debug, Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    registry: Arc<Registry>,
    exclude: RouteFilter,
    classifier: StatusClassifier,
    stack: Option<StackId>,
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
    ReqBody: http_body::Body + 'static,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody, MetricsObserver>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let route = route_of(req.extensions());
        if self.exclude.excludes(route) || stack::foreign(req.extensions(), self.stack) {
            return ResponseFuture { inner: self.inner.call(req), pending: None };
        }
        let route = self.registry.route(route);
        let method = KnownMethod::of(req.method());
        let https = is_https(req.uri());
        let is_head = req.method() == http::Method::HEAD;
        let (req, request_size) = request_size(req);
        let active = ActiveGuard::new(self.registry.active(method, https), route);
        ResponseFuture {
            inner: self.inner.call(req),
            pending: Some(Pending {
                start,
                method,
                https,
                request_size,
                is_head,
                classifier: self.classifier,
                active,
            }),
        }
    }
}

/// How the size of `req`'s body will be known; wraps the body only for a
/// chunked upload in an `axum::body::Body`.
#[inline]
#[cfg_attr(not(feature = "axum"), allow(unused_mut))]
fn request_size<B: http_body::Body + 'static>(mut req: Request<B>) -> (Request<B>, RequestSize) {
    if req.body().is_end_stream() {
        return (req, RequestSize::Known(0));
    }
    if let Some(length) = content_length(req.headers()) {
        return (req, RequestSize::Known(length));
    }
    // A body type the router boxes anyway: count it inside a new box.
    #[cfg(feature = "axum")]
    if let Some(body) = (req.body_mut() as &mut dyn std::any::Any).downcast_mut::<axum::body::Body>() {
        let (counted, counter) = crate::body::RequestBody::counting(std::mem::take(body));
        *body = axum::body::Body::new(counted);
        return (req, RequestSize::Counted(counter));
    }
    let hint = req.body().size_hint().exact().unwrap_or(0);
    (req, RequestSize::Known(hint))
}

/// The request body size: `Content-Length`, or counted as the body is read.
#[derive(Debug)]
enum RequestSize {
    Known(u64),
    #[cfg(feature = "axum")]
    Counted(Arc<std::sync::atomic::AtomicU64>),
}

impl RequestSize {
    #[inline]
    fn bytes(&self) -> u64 {
        match self {
            Self::Known(n) => *n,
            #[cfg(feature = "axum")]
            Self::Counted(counter) => counter.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// `Content-Length` of a request, when present and well formed.
#[inline]
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Counts a request as active, in the gauge and in its route's windows,
/// until it is over, whichever way it ends: the guard lives in the future,
/// then in the body observer. It owns the request's route series, which
/// `Pending::finish` records into.
#[derive(Debug)]
struct ActiveGuard {
    gauge: Gauge,
    route: Arc<RouteSeries>,
}

impl ActiveGuard {
    #[inline]
    fn new(gauge: &Gauge, route: Arc<RouteSeries>) -> Self {
        gauge.increment(1.0);
        route.stats().start_request();
        Self { gauge: gauge.clone(), route }
    }
}

impl Drop for ActiveGuard {
    #[inline]
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
        self.route.stats().end_request();
    }
}

/// What is known of a request before its response ends.
#[derive(Debug)]
struct Pending {
    start: Instant,
    method: KnownMethod,
    https: bool,
    request_size: RequestSize,
    is_head: bool,
    classifier: StatusClassifier,
    /// Also holds the route's series.
    active: ActiveGuard,
}

impl Pending {
    #[inline]
    fn route(&self) -> &RouteSeries {
        &self.active.route
    }

    #[inline]
    fn finish(
        self,
        status: Option<StatusCode>,
        error: Option<ErrorType>,
        response_bytes: u64,
        first_byte_seconds: Option<f64>,
    ) {
        // One clock reading for the duration and the windows' slot.
        let at = Instant::now();
        let measurement = Measurement {
            at,
            seconds: at.saturating_duration_since(self.start).as_secs_f64(),
            request_bytes: self.request_size.bytes(),
            response_bytes,
            first_byte_seconds,
        };
        let key = SeriesKey { method: self.method, https: self.https, status, error };
        self.route().record(key, measurement);
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
                pending.finish(None, Some(ErrorType::ClientAbort), 0, None);
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
                let marked = res.extensions().get::<ErrorType>().copied();
                let observer =
                    MetricsObserver { pending, status, marked, response_bytes: 0, first_byte_seconds: None };
                Ok(res.map(|b| body::observe(b, observer, is_head, status)))
            }
            Err(err) => {
                pending.finish(None, Some(ErrorType::service::<E>()), 0, None);
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
    marked: Option<ErrorType>,
    response_bytes: u64,
    first_byte_seconds: Option<f64>,
}

impl BodyObserver for MetricsObserver {
    #[inline]
    fn on_data(&mut self, len: usize) {
        if self.first_byte_seconds.is_none() && len > 0 && self.pending.route().ttfb() {
            self.first_byte_seconds = Some(self.pending.start.elapsed().as_secs_f64());
        }
        self.response_bytes += len as u64;
    }

    #[inline]
    fn on_end(self, end: BodyEnd) {
        let error = response_error(self.pending.classifier, self.status, self.marked, end);
        self.pending.finish(Some(self.status), error, self.response_bytes, self.first_byte_seconds);
    }
}
