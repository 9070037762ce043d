//! [`ObservabilityLayer`]: every part of the crate's per-request pass, in
//! one layer and one pass.

use std::{fmt, sync::Arc};

use http::{Request, Response};
use tower_layer::Layer;

use crate::{
    cache::{CachePending, CacheRoute, RecordCacheStatusLayer},
    classify::StatusClassifier,
    context::RequestContext,
    metrics::{HttpMetricsLayer, HttpStats, MetricsPending, MetricsRoute},
    observe::{Finished, Observe, Routed, Routes, Stage, route_in},
    panic::CatchPanic,
    request_id::{MakeRequestId, MakeRequestUuid, SetRequestIdLayer},
    route::RouteFilter,
    trace::{HttpTraceLayer, TracePending, TraceRoute},
};

/// The service of [`ObservabilityLayer`]: the crate's
/// [`Observe`](crate::observe::Observe) service with every part, around a
/// panic catcher around `S`.
pub type ObservabilityService<S, M = MakeRequestUuid> = Observe<CatchPanic<S>, ObservabilityLayer<M>>;

/// Request id, server span, HTTP metrics and cache outcome, in one pass,
/// around a panic catcher: every signal of every request.
///
/// The parts are the public layers, composed: [`SetRequestIdLayer`],
/// [`HttpTraceLayer`], [`HttpMetricsLayer`] and [`RecordCacheStatusLayer`],
/// in the order the request flows (DESIGN: "request id -> span -> metrics
/// -> cache"), then [`CatchPanicLayer`](crate::panic::CatchPanicLayer)
/// innermost so that every part sees the 500 a panic becomes
/// (`error_type="panic"`). One [`RequestContext`] is built per request, the
/// route is looked up once, the response body is wrapped once, and one
/// end-of-body event classifies the request once and ends every part.
/// Stacking the parts by hand in this order gives the same signals, one
/// pass per layer.
///
/// Setters compose in any order: [`exclude_routes`](Self::exclude_routes)
/// and [`error_status`](Self::error_status) hold for every part, whichever
/// parts are replaced after them.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_observability::ObservabilityLayer;
///
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "user" }))
///     .layer(ObservabilityLayer::new());
/// ```
#[must_use]
pub struct ObservabilityLayer<M = MakeRequestUuid> {
    request_id: SetRequestIdLayer<M>,
    trace: HttpTraceLayer,
    metrics: HttpMetricsLayer,
    cache: RecordCacheStatusLayer,
    exclude: RouteFilter,
    classifier: Option<StatusClassifier>,
    routes: Arc<Routes<RouteParts>>,
}

/// What every part keeps per route label, found with one lookup.
#[derive(Debug)]
pub(crate) struct RouteParts {
    trace: TraceRoute,
    metrics: MetricsRoute,
    cache: CacheRoute,
}

impl ObservabilityLayer {
    /// All parts with their defaults, recording into the global recorder
    /// and the global tracer provider.
    pub fn new() -> Self {
        Self::from_parts(
            SetRequestIdLayer::new(),
            HttpTraceLayer::new(),
            HttpMetricsLayer::new(),
            RecordCacheStatusLayer::new(),
            RouteFilter::default(),
            None,
        )
    }
}

impl Default for ObservabilityLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> ObservabilityLayer<M> {
    fn from_parts(
        request_id: SetRequestIdLayer<M>,
        trace: HttpTraceLayer,
        metrics: HttpMetricsLayer,
        cache: RecordCacheStatusLayer,
        exclude: RouteFilter,
        classifier: Option<StatusClassifier>,
    ) -> Self {
        let routes = Routes::new(metrics.max_route_count(), |label| {
            Routed::new(make_parts(&trace, &metrics, &cache, &exclude, label))
        });
        Self { request_id, trace, metrics, cache, exclude, classifier, routes: Arc::new(routes) }
    }

    /// The same parts with a new route table (a cache).
    fn rebuilt(self) -> Self {
        let Self { request_id, trace, metrics, cache, exclude, classifier, .. } = self;
        Self::from_parts(request_id, trace, metrics, cache, exclude, classifier)
    }

    /// Neither traces nor measures requests on these route templates,
    /// adding to those given before;
    /// [`Observability::layer`](crate::Observability::layer) excludes the
    /// monitoring routes. Requests that matched no route are always
    /// observed. Holds whatever parts are given after.
    pub fn exclude_routes<I, T>(mut self, routes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        self.exclude = self.exclude.union(&RouteFilter::new(routes));
        self.rebuilt()
    }

    /// Which statuses count as errors, for spans and metrics alike; 5xx by
    /// default (OTel HTTP semconv). Without it, the classifier given to the
    /// metrics part, else to the trace part, decides for both.
    pub fn error_status(mut self, classifier: StatusClassifier) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// Replaces the request id part (e.g. another header name, or another
    /// [`MakeRequestId`]).
    pub fn request_id<M2>(self, layer: SetRequestIdLayer<M2>) -> ObservabilityLayer<M2> {
        let Self { trace, metrics, cache, exclude, classifier, .. } = self;
        ObservabilityLayer::from_parts(layer, trace, metrics, cache, exclude, classifier)
    }

    /// Replaces the trace part (e.g. another propagator or tracer).
    pub fn trace(mut self, layer: HttpTraceLayer) -> Self {
        self.trace = layer;
        self.rebuilt()
    }

    /// Replaces the cache part (e.g. another cache name).
    pub fn cache(mut self, layer: RecordCacheStatusLayer) -> Self {
        self.cache = layer;
        self.rebuilt()
    }

    /// Replaces the metrics part (e.g. another route cap); the layer's
    /// [`http_stats`](Self::http_stats) are then those of `layer`.
    pub fn metrics(mut self, layer: HttpMetricsLayer) -> Self {
        self.metrics = layer;
        self.rebuilt()
    }

    /// The in-process windowed statistics of the requests this layer (and
    /// its clones) measure: request rate, error ratio and latency quantiles
    /// over the last 1, 5 and 15 minutes, overall and per route; see
    /// [`HttpStats`]. Those of the metrics part: every setter but
    /// [`metrics`](Self::metrics) keeps them.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::{ObservabilityLayer, window::Window};
    ///
    /// let layer = ObservabilityLayer::new();
    /// let stats = layer.http_stats();
    /// let layer = layer.exclude_routes(["/metrics"]);
    /// assert_eq!(stats.window(Window::OneMinute).request_rate, 0.0);
    /// # drop(layer);
    /// ```
    pub fn http_stats(&self) -> HttpStats {
        self.metrics.http_stats()
    }
}

fn make_parts(
    trace: &HttpTraceLayer,
    metrics: &HttpMetricsLayer,
    cache: &RecordCacheStatusLayer,
    exclude: &RouteFilter,
    label: &str,
) -> RouteParts {
    RouteParts {
        trace: trace.make_route(label, exclude),
        metrics: metrics.make_route(label, exclude),
        cache: cache.make_route(label),
    }
}

impl<M: Clone> Clone for ObservabilityLayer<M> {
    fn clone(&self) -> Self {
        Self {
            request_id: self.request_id.clone(),
            trace: self.trace.clone(),
            metrics: self.metrics.clone(),
            cache: self.cache.clone(),
            exclude: self.exclude.clone(),
            classifier: self.classifier,
            routes: self.routes.clone(),
        }
    }
}

impl<M: fmt::Debug> fmt::Debug for ObservabilityLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservabilityLayer")
            .field("request_id", &self.request_id)
            .field("trace", &self.trace)
            .field("metrics", &self.metrics)
            .field("cache", &self.cache)
            .field("exclude", &self.exclude)
            .finish_non_exhaustive()
    }
}

impl<S, M> Layer<S> for ObservabilityLayer<M>
where
    M: MakeRequestId + Clone + Send + Sync + 'static,
{
    type Service = ObservabilityService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe::new(CatchPanic::new(inner), self.clone())
    }
}

impl<M> Stage for ObservabilityLayer<M>
where
    M: MakeRequestId + Clone + Send + Sync + 'static,
{
    type Route = RouteParts;
    type Pending = (
        <SetRequestIdLayer<M> as Stage>::Pending,
        Option<TracePending>,
        Option<MetricsPending>,
        CachePending,
    );

    #[inline]
    fn route(&self, template: Option<&str>) -> Arc<Routed<RouteParts>> {
        route_in(&self.routes, template, |label| {
            make_parts(&self.trace, &self.metrics, &self.cache, &self.exclude, label)
        })
    }

    fn classifier(&self) -> StatusClassifier {
        self.classifier
            .or_else(|| self.metrics.custom_classifier())
            .or_else(|| self.trace.custom_classifier())
            .unwrap_or_default()
    }

    fn wants_first_byte(&self) -> bool {
        self.metrics.wants_first_byte()
    }

    #[inline]
    fn on_request<B: http_body::Body + 'static>(
        &mut self,
        cx: &mut RequestContext,
        route: &RouteParts,
        observed: bool,
        req: &mut Request<B>,
    ) -> Self::Pending {
        let id = self.request_id.on_request(cx, &(), observed, req);
        let trace = self.trace.start(cx, &route.trace, observed, req);
        let metrics = HttpMetricsLayer::start(cx, &route.metrics, observed, req);
        let cache = RecordCacheStatusLayer::start(cx);
        (id, trace, metrics, cache)
    }

    #[inline]
    fn in_scope<T>(pending: &Self::Pending, poll: impl FnOnce() -> T) -> T {
        TracePending::in_scope(&pending.1, poll)
    }

    #[inline]
    fn on_response<B>(
        pending: &mut Self::Pending,
        route: &RouteParts,
        cx: &RequestContext,
        res: &mut Response<B>,
    ) {
        // Inner parts first: the span reads the cache outcome.
        pending.3.respond(&route.cache, res);
        MetricsPending::respond(&mut pending.2, &route.metrics, cx);
        TracePending::respond(&mut pending.1, cx, res);
        <SetRequestIdLayer<M> as Stage>::on_response(&mut pending.0, &(), cx, res);
    }

    #[inline]
    fn on_end(pending: Self::Pending, route: &RouteParts, cx: &RequestContext, finished: &Finished) {
        let (_, trace, metrics, _) = pending;
        MetricsPending::finish(metrics, &route.metrics, cx, finished);
        TracePending::finish(trace, cx, finished);
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::{request_id::RequestId, window::Window};

    /// A request passing two applications of the layer (the monitoring
    /// fragment's copy and the application's, say) is observed once: by the
    /// outer one, whose context the inner one finds.
    #[tokio::test]
    async fn a_request_is_observed_by_one_application_only() {
        let (outer, inner) = (ObservabilityLayer::new(), ObservabilityLayer::new());
        let (outer_stats, inner_stats) = (outer.http_stats(), inner.http_stats());
        let handler = service_fn(|req: Request<String>| async move {
            let id = req.extensions().get::<RequestId>().cloned().expect("an id");
            Ok::<_, Infallible>(Response::new(id.as_str().to_owned()))
        });
        let svc = outer.layer(inner.layer(handler));
        for _ in 0..3 {
            let res = svc.clone().oneshot(Request::new(String::new())).await.unwrap();
            let ids: Vec<_> = res.headers().get_all("x-request-id").iter().cloned().collect();
            assert_eq!(ids.len(), 1);
            let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
            assert_eq!(ids[0].as_bytes(), &body[..], "the handler saw the id the client gets");
        }
        assert_eq!(outer_stats.window(Window::OneMinute).requests, 3);
        assert_eq!(inner_stats.window(Window::OneMinute).requests, 0);
    }
}
