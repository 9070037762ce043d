use std::sync::Arc;

use http::Request;
use tower_layer::Layer;

use super::{
    buffer::RouteBuffer,
    exemplar::{Exemplars, SampledIds},
    rpc::{self, RpcMethod, RpcMethods},
    series::{ActiveGauges, KnownHost, Measurement, RouteSeries, SeriesKey, SeriesLabels, host_index},
    stats::HttpStats,
};
use crate::{
    address::{self, TrustedProxies},
    classify::StatusClassifier,
    context::{Parts, RequestContext},
    labeler::{Labeler, MetricLabels},
    observe::{Finished, Observe, Routed, Routes, Stage, route_in},
    recorder::MetricsRecorder,
    route::RouteMatcher,
};

/// The number of distinct route labels a layer keeps by default.
const DEFAULT_MAX_ROUTES: usize = 1024;

/// Layer that records the OTel HTTP server metrics of every request.
///
/// See the [module docs](super) for metric names and labels. Clones share
/// their label caches and their [`HttpStats`], so build one layer and clone
/// it. Setters compose in any order and keep the layer's `HttpStats`: a
/// handle taken before a setter reads the figures of the layer after it.
///
/// The metrics part of [`ObservabilityLayer`](crate::ObservabilityLayer);
/// used alone, it makes an [`HttpMetrics`] service. Under another layer of
/// the crate that measured the request already, it does nothing.
///
/// The request body is passed on as it came. Its size is the
/// `Content-Length`; without one (a chunked upload), an
/// `axum::body::Body` is wrapped to count the bytes the handler reads (with
/// the `axum` feature), and any other body type is given its exact size
/// hint, or 0 when it has none.
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpMetricsLayer {
    /// Behind one reference count: axum clones a route's service, and so
    /// the layer, for every request.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    gauges: Arc<ActiveGauges>,
    stats: HttpStats,
    routes: Routes<MetricsRoute>,
    /// The RPC series of gRPC calls, per method.
    rpc: Arc<RpcMethods>,
}

/// Service made by [`HttpMetricsLayer`]: the crate's
/// [`Observe`](crate::observe::Observe) service with the metrics part.
pub type HttpMetrics<S> = Observe<S, HttpMetricsLayer>;

#[derive(Debug, Clone)]
struct Config {
    recorder: Option<MetricsRecorder>,
    exclude: RouteMatcher,
    proxies: TrustedProxies,
    labels: SeriesLabels,
    classifier: Option<StatusClassifier>,
    ttfb: bool,
    max_routes: usize,
    /// Where the exemplars of the duration histograms go; `None`: off.
    exemplars: Option<Exemplars>,
}

/// What the metrics part keeps per route label.
#[derive(Debug)]
pub(crate) struct MetricsRoute {
    excluded: bool,
    /// The route's series and windows, written through per-thread buffers.
    buffer: Arc<RouteBuffer>,
    /// The layer's trusted proxies, for `server_address`.
    proxies: Option<TrustedProxies>,
    stats: HttpStats,
    gauges: Arc<ActiveGauges>,
    rpc: Arc<RpcMethods>,
    exemplars: Option<Exemplars>,
}

impl HttpMetricsLayer {
    /// A layer recording into the global `metrics` recorder.
    ///
    /// Metric handles are registered with the recorder installed at the
    /// first request of each label set: install the recorder before serving.
    pub fn new() -> Self {
        super::describe();
        let config = Config {
            recorder: None,
            exclude: RouteMatcher::default(),
            proxies: TrustedProxies::default(),
            labels: SeriesLabels::default(),
            classifier: None,
            ttfb: false,
            max_routes: DEFAULT_MAX_ROUTES,
            exemplars: Some(Exemplars::global()),
        };
        Self::from_parts(config, ActiveGauges::new(), HttpStats::new())
    }

    fn from_parts(config: Config, gauges: Arc<ActiveGauges>, stats: HttpStats) -> Self {
        let rpc = rpc::methods(config.max_routes, &stats, config.exemplars.clone());
        let routes = Routes::new(config.max_routes, |label| {
            Routed::new(make_route(&config, &gauges, &stats, &rpc, label, &RouteMatcher::default()))
        });
        Self { inner: Arc::new(Inner { config, gauges, stats, routes, rpc }) }
    }

    /// A new layer with `change` made to the configuration, keeping the
    /// figures; the route table (a cache) starts anew.
    fn with(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.inner.config.clone();
        change(&mut config);
        Self::from_parts(config, self.inner.gauges.clone(), self.inner.stats.clone())
    }

    /// Which statuses count as errors (the `error_type` label); 5xx by
    /// default. In an [`ObservabilityLayer`](crate::ObservabilityLayer), its
    /// own [`error_status`](crate::ObservabilityLayer::error_status) decides
    /// for every part.
    pub fn error_status(self, classifier: StatusClassifier) -> Self {
        self.with(|c| c.classifier = Some(classifier))
    }

    /// Also records [`HTTP_SERVER_TIME_TO_FIRST_BYTE`](super::HTTP_SERVER_TIME_TO_FIRST_BYTE),
    /// for streaming services. Off by default.
    pub fn time_to_first_byte(self, enabled: bool) -> Self {
        self.with(|c| c.ttfb = enabled)
    }

    /// Leaves requests on these route templates unmeasured (e.g. `/metrics`
    /// and health probes), adding to those given before. Requests that
    /// matched no route are always measured. Same as
    /// [`exclude`](Self::exclude) with [`RouteMatcher::templates`].
    pub fn exclude_routes<I, T>(self, routes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        self.exclude(RouteMatcher::templates(routes))
    }

    /// Leaves requests on the routes `routes` matches unmeasured (no
    /// series, no in-process windows), adding to those given before.
    pub fn exclude(self, routes: RouteMatcher) -> Self {
        self.with(|c| c.exclude = c.exclude.clone().or(routes))
    }

    /// Believes the `Forwarded: proto=` and `X-Forwarded-Proto` headers of
    /// requests whose socket peer is one of `proxies`, for the `url_scheme`
    /// label; see [`crate::address`]. None by default.
    pub fn trusted_proxies(self, proxies: TrustedProxies) -> Self {
        self.with(|c| c.proxies = proxies)
    }

    /// The trusted proxies of the layer, when it has any.
    pub(crate) fn proxies(&self) -> Option<&TrustedProxies> {
        (!self.inner.config.proxies.is_empty()).then_some(&self.inner.config.proxies)
    }

    /// Registers the layer's series with `recorder` instead of the
    /// `metrics` facade's; see [`MetricsRecorder`].
    pub fn recorder(self, recorder: MetricsRecorder) -> Self {
        MetricsRecorder::scope(Some(&recorder), super::describe);
        self.with(|c| c.recorder = Some(recorder))
    }

    /// The recorder given with [`recorder`](Self::recorder).
    pub(crate) fn custom_recorder(&self) -> Option<&MetricsRecorder> {
        self.inner.config.recorder.as_ref()
    }

    /// Lets handlers set these metric labels on their requests' series,
    /// through the request's [`Labeler`]; see [`crate::labeler`].
    pub fn labels(self, labels: MetricLabels) -> Self {
        self.with(|c| c.labels.declared = Some(labels))
    }

    /// Labels the series with `server_address` (and `server_port` for a
    /// `host:port` entry): the host the request was sent to (`Host`,
    /// `:authority`, or a trusted proxy's `Forwarded: host=`) when it is
    /// one of `hosts`, else `_OTHER`. Off by default: the conventions make
    /// these attributes opt-in, as the `Host` header is the client's to
    /// choose; the list bounds them. Entries are matched case-insensitively;
    /// an entry without a port matches any port.
    ///
    /// ```
    /// use tower_observability::metrics::HttpMetricsLayer;
    ///
    /// let layer = HttpMetricsLayer::new().server_address(["api.example.com", "admin.example.com:8443"]);
    /// ```
    pub fn server_address<I, T>(self, hosts: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let hosts: Arc<[KnownHost]> = hosts
            .into_iter()
            .filter_map(|h| {
                let (host, port) = address::host_and_port(h.as_ref())?;
                Some(KnownHost { host: host.to_ascii_lowercase().into(), port })
            })
            .collect();
        self.with(|c| c.labels.hosts = Some(hosts))
    }

    /// A new [`Labeler`] for a request, when labels are declared.
    pub(crate) fn new_labeler(&self) -> Option<Labeler> {
        self.inner.config.labels.declared.as_ref().map(|labels| Labeler::new(Some(labels.clone())))
    }

    /// Keeps, per series and bucket of the duration histograms
    /// (`http_server_request_duration_seconds` and
    /// `rpc_server_call_duration_seconds`), the latest request whose span
    /// is sampled, as an exemplar: its trace and span ids, duration and end
    /// time. `/metrics` shows them in OpenMetrics, the dashboard lists the
    /// slowest. On by default, into [`Exemplars::global`]; a request that
    /// is not sampled costs nothing more. See [`Exemplars`].
    ///
    /// ```
    /// use tower_observability::metrics::HttpMetricsLayer;
    ///
    /// let layer = HttpMetricsLayer::new().exemplars(false);
    /// # drop(layer);
    /// ```
    pub fn exemplars(self, enabled: bool) -> Self {
        self.with(|c| match (enabled, &c.exemplars) {
            (false, _) => c.exemplars = None,
            (true, None) => c.exemplars = Some(Exemplars::global()),
            (true, Some(_)) => {}
        })
    }

    /// Keeps the exemplars in `registry` instead of
    /// [`Exemplars::global`] (which `/metrics` reads): for tests, or to
    /// read them apart.
    pub fn exemplar_registry(self, registry: Exemplars) -> Self {
        self.with(|c| c.exemplars = Some(registry))
    }

    /// Keeps at most `max` distinct `http_route` values; requests on routes
    /// beyond it are labelled `_overflow`. Defaults to 1024. Routes come from
    /// the router's templates, so the cap is a guard against a misconfigured
    /// [`HttpRoute`](crate::HttpRoute), not a limit a router reaches. In an
    /// [`ObservabilityLayer`](crate::ObservabilityLayer) it caps the routes
    /// of every part.
    pub fn max_routes(self, max: usize) -> Self {
        self.with(|c| c.max_routes = max)
    }

    /// The in-process windowed statistics of the requests this layer (and
    /// its clones) measure: rate, error ratio and latency quantiles over the
    /// last 1, 5 and 15 minutes; see [`HttpStats`]. The setters keep them:
    /// take the handle before or after.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::{metrics::HttpMetricsLayer, window::Window};
    ///
    /// let layer = HttpMetricsLayer::new();
    /// let stats = layer.http_stats();
    /// let layer = layer.max_routes(100).time_to_first_byte(true);
    /// assert_eq!(stats.window(Window::FiveMinutes).requests, 0);
    /// # drop(layer);
    /// ```
    pub fn http_stats(&self) -> HttpStats {
        self.inner.stats.clone()
    }

    pub(crate) fn max_route_count(&self) -> usize {
        self.inner.config.max_routes
    }

    /// The classifier given with [`error_status`](Self::error_status).
    pub(crate) fn custom_classifier(&self) -> Option<StatusClassifier> {
        self.inner.config.classifier
    }

    /// Whether the time to first byte is recorded.
    pub(crate) fn wants_first_byte(&self) -> bool {
        self.inner.config.ttfb
    }

    /// The state of a new route label; `exclude` adds the templates of an
    /// enclosing layer.
    pub(crate) fn make_route(&self, label: &str, exclude: &RouteMatcher) -> MetricsRoute {
        make_route(&self.inner.config, &self.inner.gauges, &self.inner.stats, &self.inner.rpc, label, exclude)
    }

    /// The metrics part of a request: counts it as active.
    #[inline]
    pub(crate) fn start<B: http_body::Body + 'static>(
        cx: &mut RequestContext,
        route: &MetricsRoute,
        observed: bool,
        req: &mut Request<B>,
    ) -> Option<MetricsPending> {
        if !cx.claim(Parts::METRICS) || route.excluded || !observed {
            return None;
        }
        if let Some(call) = cx.rpc() {
            let method = route.rpc_method(call.recognized());
            method.start();
            return Some(MetricsPending {
                request_size: RequestSize::Known(0),
                server: None,
                rpc: Some(method),
            });
        }
        route.gauges.start(cx.known_method(), cx.is_https());
        route.stats.start_request();
        let server = route.buffer.series().known_hosts().map(|hosts| {
            let forwarded = route
                .proxies
                .as_ref()
                .filter(|p| address::is_forwarded(req, p))
                .and_then(|_| address::forwarded_server(req.headers()).host);
            host_index(hosts, address::server(req, forwarded))
        });
        Some(MetricsPending { request_size: request_size(req), server, rpc: None })
    }
}

fn make_route(
    config: &Config,
    gauges: &Arc<ActiveGauges>,
    stats: &HttpStats,
    rpc: &Arc<RpcMethods>,
    label: &str,
    exclude: &RouteMatcher,
) -> MetricsRoute {
    MetricsRoute {
        excluded: config.exclude.matches(label) || exclude.matches(label),
        buffer: RouteBuffer::new(
            RouteSeries::new(label, config.ttfb, config.labels.clone(), config.exemplars.clone()),
            stats.clone(),
        ),
        proxies: (!config.proxies.is_empty()).then(|| config.proxies.clone()),
        stats: stats.clone(),
        gauges: gauges.clone(),
        rpc: rpc.clone(),
        exemplars: config.exemplars.clone(),
    }
}

impl MetricsRoute {
    /// The RPC metrics of a gRPC method (`None`: not recognized, `_OTHER`).
    #[inline]
    fn rpc_method(&self, method: Option<&str>) -> Arc<RpcMethod> {
        self.rpc.get(method, |label| RpcMethod::new(label, self.stats.clone(), self.exemplars.clone()))
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
        Observe::new(inner, self.clone())
    }
}

/// What the metrics part keeps until the request is over.
#[derive(Debug)]
pub(crate) struct MetricsPending {
    request_size: RequestSize,
    server: Option<u16>,
    /// For a gRPC call, the method it is counted under as active.
    rpc: Option<Arc<RpcMethod>>,
}

impl MetricsPending {
    /// A gRPC call whose method was recognized from its response head
    /// moves from `_OTHER` to its method.
    #[inline]
    pub(crate) fn respond(this: &mut Option<Self>, route: &MetricsRoute, cx: &RequestContext) {
        let Some(Self { rpc: Some(counted), .. }) = this else { return };
        let Some(name) = cx.rpc().and_then(|call| call.recognized()) else { return };
        if counted.label() != name {
            let method = route.rpc_method(Some(name));
            counted.end();
            method.start();
            *counted = method;
        }
    }

    /// Records the finished request into its series and windows.
    #[inline]
    pub(crate) fn finish(this: Option<Self>, route: &MetricsRoute, cx: &RequestContext, finished: &Finished) {
        let Some(pending) = this else { return };
        if let Some(method) = pending.rpc {
            method.end();
            if finished.observed
                && let Some(end) = &finished.rpc
            {
                let seconds = finished.at.saturating_duration_since(cx.start()).as_secs_f64();
                method.record(seconds, end.code, finished.error, finished.at, || sampled(cx));
            }
            return;
        }
        route.gauges.end(cx.known_method(), cx.is_https());
        route.stats.end_request();
        if !finished.observed {
            return;
        }
        let seconds = finished.at.saturating_duration_since(cx.start()).as_secs_f64();
        let measurement = Measurement {
            seconds,
            request_bytes: pending.request_size.bytes(),
            response_bytes: finished.response_bytes,
            first_byte_seconds: finished
                .first_byte
                .map(|at| at.saturating_duration_since(cx.start()).as_secs_f64()),
        };
        let key = SeriesKey {
            method: cx.known_method(),
            https: cx.is_https(),
            version: cx.version(),
            server: pending.server,
            status: finished.status,
            error: finished.error,
            labels: cx.labeler().map(Labeler::values).unwrap_or_default(),
        };
        let error = finished.error.is_some();
        route.buffer.record(key, measurement, error, finished.at, || sampled(cx));
    }
}

/// The ids of the request's span when it is sampled: its exemplar.
#[inline]
fn sampled(cx: &RequestContext) -> Option<SampledIds> {
    if !cx.is_sampled() {
        return None;
    }
    Some(SampledIds { trace_id: cx.trace_id()?, span_id: cx.span_id()? })
}

impl Stage for HttpMetricsLayer {
    type Route = MetricsRoute;
    type Held<T: Send + 'static> = crate::observe::Inline<T>;
    type Pending = Option<MetricsPending>;

    const PASSES_CONTEXT: bool = false;

    #[inline]
    fn route(&self, template: Option<&str>) -> Arc<Routed<MetricsRoute>> {
        route_in(&self.inner.routes, template, |label| self.make_route(label, &RouteMatcher::default()))
    }

    fn classifier(&self) -> StatusClassifier {
        self.inner.config.classifier.unwrap_or_default()
    }

    fn wants_first_byte(&self) -> bool {
        self.inner.config.ttfb
    }

    #[inline]
    fn proxies(&self) -> Option<&TrustedProxies> {
        HttpMetricsLayer::proxies(self)
    }

    #[inline]
    fn labeler(&self) -> Option<Labeler> {
        self.new_labeler()
    }

    #[inline]
    fn recorder(&self) -> Option<&MetricsRecorder> {
        self.custom_recorder()
    }

    #[inline]
    fn on_request<B: http_body::Body + 'static>(
        &mut self,
        cx: &mut RequestContext,
        route: &MetricsRoute,
        observed: bool,
        req: &mut Request<B>,
    ) -> Self::Pending {
        Self::start(cx, route, observed, req)
    }

    #[inline]
    fn on_response<B>(
        pending: &mut Self::Pending,
        route: &MetricsRoute,
        cx: &RequestContext,
        _res: &mut http::Response<B>,
    ) {
        MetricsPending::respond(pending, route, cx);
    }

    #[inline]
    fn on_end(pending: Self::Pending, route: &MetricsRoute, cx: &RequestContext, finished: &Finished) {
        MetricsPending::finish(pending, route, cx, finished);
    }
}

/// How the size of `req`'s body will be known; wraps the body only for a
/// chunked upload in an `axum::body::Body`.
#[inline]
#[cfg_attr(not(feature = "axum"), allow(unused_variables))]
fn request_size<B: http_body::Body + 'static>(req: &mut Request<B>) -> RequestSize {
    if req.body().is_end_stream() {
        return RequestSize::Known(0);
    }
    if let Some(length) = content_length(req.headers()) {
        return RequestSize::Known(length);
    }
    // A body type the router boxes anyway: count it inside a new box.
    #[cfg(feature = "axum")]
    if let Some(body) = (req.body_mut() as &mut dyn std::any::Any).downcast_mut::<axum::body::Body>() {
        let (counted, counter) = crate::body::RequestBody::counting(std::mem::take(body));
        *body = axum::body::Body::new(counted);
        return RequestSize::Counted(counter);
    }
    RequestSize::Known(req.body().size_hint().exact().unwrap_or(0))
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
