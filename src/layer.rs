//! [`ObservabilityLayer`]: every part of the crate's per-request pass, in
//! one layer and one pass.

use std::{fmt, sync::Arc};

use http::{Request, Response};
use tower_layer::Layer;

use crate::{
    address::TrustedProxies,
    cache::{CachePending, CacheRoute, RecordCacheStatusLayer},
    classify::StatusClassifier,
    context::RequestContext,
    labeler::{Labeler, MetricLabels},
    metrics::{HttpMetricsLayer, HttpStats, MetricsPending, MetricsRoute},
    observe::{Finished, Observe, Routed, Routes, Stage, route_in},
    panic::CatchPanic,
    recorder::MetricsRecorder,
    request_id::{MakeRequestId, MakeRequestUuid, SetRequestIdLayer},
    route::RouteMatcher,
    trace::{
        CaptureError, HeaderCapture, HttpTraceLayer, RouteSampling, TracePending, TraceRoute, TraceRules,
    },
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
/// Setters compose in any order: the exclusions, per-route sampling,
/// [`trusted_proxies`](Self::trusted_proxies) and
/// [`error_status`](Self::error_status) hold for every part, whichever
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
    /// Behind one reference count: axum clones a route's service, and so
    /// the layer, for every request.
    shared: Arc<Shared>,
}

/// The parts of the composite but the request id's `MakeRequestId` (which
/// a request may change), and the route table they share.
#[derive(Debug)]
struct Shared {
    trace: HttpTraceLayer,
    metrics: HttpMetricsLayer,
    cache: RecordCacheStatusLayer,
    rules: Rules,
    routes: Routes<RouteParts>,
}

/// The composite taken apart, to be changed and built again.
struct Parts<M> {
    request_id: SetRequestIdLayer<M>,
    trace: HttpTraceLayer,
    metrics: HttpMetricsLayer,
    cache: RecordCacheStatusLayer,
    rules: Rules,
}

impl<M> Parts<M> {
    fn build(self) -> ObservabilityLayer<M> {
        let Self { request_id, trace, metrics, cache, rules } = self;
        ObservabilityLayer::from_parts(request_id, trace, metrics, cache, rules)
    }
}

/// What the composite adds to its parts' own settings.
#[derive(Debug, Clone, Default)]
struct Rules {
    /// Left out of every signal.
    exclude: RouteMatcher,
    /// Left out of the metrics.
    exclude_metrics: RouteMatcher,
    /// Left out of traces or the access log, or sampled their own way.
    trace: TraceRules,
    classifier: Option<StatusClassifier>,
    /// `None`: the trace part's.
    proxies: Option<TrustedProxies>,
    /// `None`: the trace part's.
    capture: Option<HeaderCapture>,
    /// `None`: the metrics part's.
    labels: Option<MetricLabels>,
    /// `None`: the metrics part's.
    hosts: Option<Arc<[Box<str>]>>,
    /// Give every request a [`Labeler`], labels declared or not.
    labeler: bool,
    /// `None`: the metrics part's.
    recorder: Option<MetricsRecorder>,
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
            Rules::default(),
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
        rules: Rules,
    ) -> Self {
        let trace = match &rules.proxies {
            Some(proxies) => trace.trusted_proxies(proxies.clone()),
            None => trace,
        };
        let trace = match &rules.capture {
            Some(capture) => trace.capture_headers(capture.clone()).expect("checked when given"),
            None => trace,
        };
        let metrics = match &rules.labels {
            Some(labels) => metrics.labels(labels.clone()),
            None => metrics,
        };
        let metrics = match &rules.hosts {
            Some(hosts) => metrics.server_address(hosts.iter()),
            None => metrics,
        };
        let routes = Routes::new(metrics.max_route_count(), |label| {
            Routed::new(make_parts(&trace, &metrics, &cache, &rules, label))
        });
        Self { request_id, shared: Arc::new(Shared { trace, metrics, cache, rules, routes }) }
    }

    /// The parts, to change before [`Parts::build`] makes a layer with a
    /// new route table (a cache) from them.
    fn into_parts(self) -> Parts<M> {
        let Shared { trace, metrics, cache, rules, .. } = &*self.shared;
        Parts {
            request_id: self.request_id,
            trace: trace.clone(),
            metrics: metrics.clone(),
            cache: cache.clone(),
            rules: rules.clone(),
        }
    }

    /// Neither traces, logs nor measures requests on these route
    /// templates, adding to those given before;
    /// [`Observability::layer`](crate::Observability::layer) excludes the
    /// monitoring routes. Requests that matched no route are always
    /// observed. Same as [`exclude`](Self::exclude) with
    /// [`RouteMatcher::templates`].
    pub fn exclude_routes<I, T>(self, routes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        self.exclude(RouteMatcher::templates(routes))
    }

    /// Neither traces, logs nor measures requests on the routes `routes`
    /// matches, adding to those given before.
    pub fn exclude(self, routes: RouteMatcher) -> Self {
        let mut p = self.into_parts();
        p.rules.exclude = p.rules.exclude.or(routes);
        p.build()
    }

    /// Leaves requests on the routes `routes` matches out of the metrics
    /// and the in-process windows only (they are still traced and logged).
    ///
    /// ```
    /// use tower_observability::{ObservabilityLayer, route::RouteMatcher};
    ///
    /// let layer = ObservabilityLayer::new()
    ///     .exclude_from_metrics(RouteMatcher::templates(["/debug/{*rest}"]))
    ///     .exclude_from_traces(RouteMatcher::predicate(|route| route.starts_with("/assets/")))
    ///     .exclude_from_access_log(RouteMatcher::templates(["/health/live"]));
    /// ```
    pub fn exclude_from_metrics(self, routes: RouteMatcher) -> Self {
        let mut p = self.into_parts();
        p.rules.exclude_metrics = p.rules.exclude_metrics.or(routes);
        p.build()
    }

    /// Opens no span and logs no access line for requests on the routes
    /// `routes` matches (they are still measured).
    pub fn exclude_from_traces(self, routes: RouteMatcher) -> Self {
        let mut p = self.into_parts();
        p.rules.trace.exclude = p.rules.trace.exclude.or(routes);
        p.build()
    }

    /// Logs no access line for requests on the routes `routes` matches
    /// (they are still traced and measured).
    pub fn exclude_from_access_log(self, routes: RouteMatcher) -> Self {
        let mut p = self.into_parts();
        p.rules.trace.exclude_access_log = p.rules.trace.exclude_access_log.or(routes);
        p.build()
    }

    /// Samples the requests of the routes `routes` matches as `sampling`
    /// says; see [`HttpTraceLayer::sample_routes`].
    pub fn sample_routes(self, routes: RouteMatcher, sampling: RouteSampling) -> Self {
        let mut p = self.into_parts();
        p.rules.trace = p.rules.trace.sample(routes, sampling);
        p.build()
    }

    /// Records these request and response headers on the server span; see
    /// [`HttpTraceLayer::capture_headers`]. Holds whatever trace part is
    /// given after.
    ///
    /// # Errors
    ///
    /// [`CaptureError`] when a sensitive header is listed without
    /// [`HeaderCapture::allow_sensitive`].
    pub fn capture_headers(self, capture: HeaderCapture) -> Result<Self, CaptureError> {
        let mut p = self.into_parts();
        p.trace = p.trace.capture_headers(capture.clone())?;
        p.rules.capture = Some(capture);
        Ok(p.build())
    }

    /// Lets handlers set these metric labels through their request's
    /// [`Labeler`]; see [`HttpMetricsLayer::labels`]. Holds whatever
    /// metrics part is given after.
    pub fn metric_labels(self, labels: MetricLabels) -> Self {
        let mut p = self.into_parts();
        p.rules.labels = Some(labels);
        p.build()
    }

    /// Labels the series with `server_address` among these known hosts;
    /// see [`HttpMetricsLayer::server_address`]. Holds whatever metrics
    /// part is given after.
    pub fn server_address<I, T>(self, hosts: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        let mut p = self.into_parts();
        p.rules.hosts = Some(hosts.into_iter().map(Into::into).collect());
        p.build()
    }

    /// Registers every part's series (request metrics, active requests,
    /// cache outcomes, rejected request ids, RPC series) with `recorder`
    /// instead of the `metrics` facade's; see [`MetricsRecorder`].
    pub fn recorder(self, recorder: MetricsRecorder) -> Self {
        MetricsRecorder::scope(Some(&recorder), || {
            crate::metrics::describe();
            crate::cache::describe();
        });
        let mut p = self.into_parts();
        p.rules.recorder = Some(recorder);
        p.build()
    }

    /// Gives every request a [`Labeler`] in its extensions, for span
    /// attributes and error types from handlers, even without declared
    /// metric labels (declaring them with
    /// [`HttpMetricsLayer::labels`] gives one anyway). Off by default: it
    /// costs an allocation per request.
    pub fn labeler(self, enabled: bool) -> Self {
        let mut p = self.into_parts();
        p.rules.labeler = enabled;
        p.build()
    }

    /// Believes the proxy headers of requests whose socket peer is one of
    /// `proxies`, for every part: `url.scheme` on metrics and spans,
    /// `client.address` and `server.address`; see [`crate::address`].
    pub fn trusted_proxies(self, proxies: TrustedProxies) -> Self {
        let mut p = self.into_parts();
        p.rules.proxies = Some(proxies);
        p.build()
    }

    /// Which statuses count as errors, for spans and metrics alike; 5xx by
    /// default (OTel HTTP semconv). Without it, the classifier given to the
    /// metrics part, else to the trace part, decides for both.
    pub fn error_status(self, classifier: StatusClassifier) -> Self {
        let mut p = self.into_parts();
        p.rules.classifier = Some(classifier);
        p.build()
    }

    /// Replaces the request id part (e.g. another header name, or another
    /// [`MakeRequestId`]).
    pub fn request_id<M2>(self, layer: SetRequestIdLayer<M2>) -> ObservabilityLayer<M2> {
        let Parts { trace, metrics, cache, rules, .. } = self.into_parts();
        ObservabilityLayer::from_parts(layer, trace, metrics, cache, rules)
    }

    /// Replaces the trace part (e.g. another propagator or tracer).
    pub fn trace(self, layer: HttpTraceLayer) -> Self {
        let mut p = self.into_parts();
        p.trace = layer;
        p.build()
    }

    /// Replaces the cache part (e.g. another cache name).
    pub fn cache(self, layer: RecordCacheStatusLayer) -> Self {
        let mut p = self.into_parts();
        p.cache = layer;
        p.build()
    }

    /// Replaces the metrics part (e.g. another route cap); the layer's
    /// [`http_stats`](Self::http_stats) are then those of `layer`.
    pub fn metrics(self, layer: HttpMetricsLayer) -> Self {
        let mut p = self.into_parts();
        p.metrics = layer;
        p.build()
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
        self.shared.metrics.http_stats()
    }
}

fn make_parts(
    trace: &HttpTraceLayer,
    metrics: &HttpMetricsLayer,
    cache: &RecordCacheStatusLayer,
    rules: &Rules,
    label: &str,
) -> RouteParts {
    let all = TraceRules { exclude: rules.exclude.clone(), ..TraceRules::default() };
    RouteParts {
        trace: trace.make_route(label, &rules.trace.or(&all)),
        metrics: metrics.make_route(label, &rules.exclude.clone().or(rules.exclude_metrics.clone())),
        cache: cache.make_route(label),
    }
}

impl<M: Clone> Clone for ObservabilityLayer<M> {
    fn clone(&self) -> Self {
        Self { request_id: self.request_id.clone(), shared: self.shared.clone() }
    }
}

impl<M: fmt::Debug> fmt::Debug for ObservabilityLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservabilityLayer")
            .field("request_id", &self.request_id)
            .field("trace", &self.shared.trace)
            .field("metrics", &self.shared.metrics)
            .field("cache", &self.shared.cache)
            .field("rules", &self.shared.rules)
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
    type Held<T: Send + 'static> = Box<T>;
    type Pending = (
        <SetRequestIdLayer<M> as Stage>::Pending,
        Option<TracePending>,
        Option<MetricsPending>,
        CachePending,
    );

    #[inline]
    fn route(&self, template: Option<&str>) -> Arc<Routed<RouteParts>> {
        let shared = &*self.shared;
        route_in(&shared.routes, template, |label| {
            make_parts(&shared.trace, &shared.metrics, &shared.cache, &shared.rules, label)
        })
    }

    fn classifier(&self) -> StatusClassifier {
        self.shared
            .rules
            .classifier
            .or_else(|| self.shared.metrics.custom_classifier())
            .or_else(|| self.shared.trace.custom_classifier())
            .unwrap_or_default()
    }

    fn wants_first_byte(&self) -> bool {
        self.shared.metrics.wants_first_byte()
    }

    #[inline]
    fn proxies(&self) -> Option<&TrustedProxies> {
        self.shared.trace.proxies().or_else(|| self.shared.metrics.proxies())
    }

    #[inline]
    fn recorder(&self) -> Option<&MetricsRecorder> {
        self.shared.rules.recorder.as_ref().or_else(|| self.shared.metrics.custom_recorder())
    }

    #[inline]
    fn labeler(&self) -> Option<Labeler> {
        self.shared.metrics.new_labeler().or_else(|| self.shared.rules.labeler.then(|| Labeler::new(None)))
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
        let trace = self.shared.trace.start(cx, &route.trace, observed, req);
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
