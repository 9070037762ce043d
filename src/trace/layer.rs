use std::{fmt, sync::Arc};

use http::{Request, Response};
use opentelemetry::{
    KeyValue,
    propagation::TextMapPropagator,
    trace::{TraceContextExt as _, Tracer},
};
use tower_layer::Layer;
use tracing::Level;

use super::{
    access_log,
    attributes::{self, AttributeConfig, CaptureError, HeaderCapture, ResponseCapture},
    headers::TraceHeaders,
    rpc,
    sampling::RouteSampling,
    span::{self, RequestSpan, RouteNames, SpanOptions, SpanSource},
};
use crate::{
    address::TrustedProxies,
    cache::CacheStatus,
    classify::StatusClassifier,
    context::{Parts, RequestContext},
    observe::{Finished, Observe, Routed, Routes, Stage, route_in},
    panic::CaughtPanic,
    route::RouteMatcher,
    semconv::CACHE_RESULT,
};

/// The number of distinct route labels a layer keeps by default.
const DEFAULT_MAX_ROUTES: usize = 1024;

/// Layer that opens an OTel HTTP server span for every request.
///
/// See the [module docs](super): the span is made through the OTel API
/// with [`tracer`](Self::tracer) (the global tracer provider's by default),
/// current in `opentelemetry::Context` while the inner service runs, and a
/// `tracing` span carries the request's correlation for log lines. The
/// parent comes from the request's W3C `traceparent`/`tracestate` (and
/// `baggage`) headers; invalid headers are ignored and a new trace starts
/// (W3C Trace Context, section 4).
///
/// The span part of [`ObservabilityLayer`](crate::ObservabilityLayer); used
/// alone, it makes an [`HttpTrace`] service. Under another layer of the
/// crate that traced the request already, it does nothing. Setters compose
/// in any order.
#[derive(Clone)]
#[must_use]
pub struct HttpTraceLayer {
    config: Arc<Config>,
    routes: Arc<Routes<TraceRoute>>,
}

/// Service made by [`HttpTraceLayer`]: the crate's
/// [`Observe`](crate::observe::Observe) service with the span part.
pub type HttpTrace<S> = Observe<S, HttpTraceLayer>;

#[derive(Clone)]
struct Config {
    /// `None`: W3C Trace Context and Baggage, read by the layer itself.
    propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>,
    source: SpanSource,
    rules: TraceRules,
    classifier: Option<StatusClassifier>,
    /// Open no OTel span for a W3C parent whose sampled flag is unset.
    follow_parent_sampling: bool,
    access_log: Option<Level>,
    headers: TraceHeaders,
    attributes: AttributeConfig,
}

/// Which routes the span part leaves out or samples its own way; a
/// composite layer adds its own to a part's.
#[derive(Debug, Clone, Default)]
pub(crate) struct TraceRules {
    /// No span, no access log.
    pub(crate) exclude: RouteMatcher,
    /// No access log line.
    pub(crate) exclude_access_log: RouteMatcher,
    pub(crate) never_sample: RouteMatcher,
    pub(crate) always_sample: RouteMatcher,
}

impl TraceRules {
    /// Both rule sets.
    pub(crate) fn or(&self, other: &Self) -> Self {
        Self {
            exclude: self.exclude.clone().or(other.exclude.clone()),
            exclude_access_log: self.exclude_access_log.clone().or(other.exclude_access_log.clone()),
            never_sample: self.never_sample.clone().or(other.never_sample.clone()),
            always_sample: self.always_sample.clone().or(other.always_sample.clone()),
        }
    }

    /// `routes` sampled as `sampling` says, on top of these rules.
    pub(crate) fn sample(mut self, routes: RouteMatcher, sampling: RouteSampling) -> Self {
        match sampling {
            RouteSampling::Never => self.never_sample = self.never_sample.or(routes),
            RouteSampling::Always => self.always_sample = self.always_sample.or(routes),
        }
        self
    }
}

/// What the span part keeps per route label.
#[derive(Debug)]
pub(crate) struct TraceRoute {
    excluded: bool,
    access_log: bool,
    sampling: Option<RouteSampling>,
    /// The route's span names, `None` for no template or past the caps.
    kept: Option<&'static RouteNames>,
}

impl HttpTraceLayer {
    /// A layer extracting W3C Trace Context and Baggage.
    pub fn new() -> Self {
        Self::from_config(Config {
            propagator: None,
            source: SpanSource::global(),
            rules: TraceRules::default(),
            classifier: None,
            follow_parent_sampling: true,
            access_log: Some(Level::INFO),
            headers: TraceHeaders::default(),
            attributes: AttributeConfig::new(),
        })
    }

    fn from_config(config: Config) -> Self {
        Self { config: Arc::new(config), routes: Arc::new(Self::table()) }
    }

    fn table() -> Routes<TraceRoute> {
        Routes::new(DEFAULT_MAX_ROUTES, |_| {
            Routed::new(TraceRoute { excluded: false, access_log: true, sampling: None, kept: None })
        })
    }

    /// A new layer with `change` made to the configuration; the route
    /// table (a cache) starts anew.
    fn with(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = Arc::unwrap_or_clone(self.config);
        change(&mut config);
        Self::from_config(config)
    }

    /// Which statuses mark the span as an error; 5xx by default (OTel HTTP
    /// semconv for server spans). In an
    /// [`ObservabilityLayer`](crate::ObservabilityLayer), its own
    /// [`error_status`](crate::ObservabilityLayer::error_status) decides for
    /// every part.
    pub fn error_status(self, classifier: StatusClassifier) -> Self {
        self.with(|c| c.classifier = Some(classifier))
    }

    /// The level of the access log, one event per finished request with
    /// target `tower_observability::access` (method, route, status,
    /// `duration_seconds`, `error.type`; request and trace ids come from the
    /// span). `Some(Level::INFO)` by default; `None` turns it off.
    pub fn access_log(self, level: Option<Level>) -> Self {
        self.with(|c| c.access_log = level)
    }

    /// Writes the server span's context on responses as a W3C `traceparent`
    /// header, so a client can find the trace. Off by default: it tells
    /// callers your trace ids.
    pub fn traceparent_response_header(self, enabled: bool) -> Self {
        self.with(|c| c.headers.traceparent = enabled)
    }

    /// Writes `Server-Timing: traceparent;desc="00-{trace}-{span}-{flags}"`
    /// on responses, the form browsers expose to scripts (W3C Server Timing)
    /// and OpenTelemetry's browser instrumentation reads. Off by default.
    pub fn server_timing_header(self, enabled: bool) -> Self {
        self.with(|c| c.headers.server_timing = enabled)
    }

    /// Makes server spans with `tracer` instead of the global tracer
    /// provider's (`opentelemetry::global::tracer_provider`, asked once, on
    /// the first request traced). [`Observability::layer`](crate::Observability::layer)
    /// passes the tracer of the provider it built. Any OTel API tracer
    /// works; the spans of the SDK's `SdkTracer` are made without a box
    /// (with the `telemetry` feature), those of another tracer are boxed.
    ///
    /// ```
    /// use opentelemetry::trace::TracerProvider as _;
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    /// use tower_observability::trace::HttpTraceLayer;
    ///
    /// let provider = SdkTracerProvider::builder().build();
    /// let layer = HttpTraceLayer::new().tracer(provider.tracer("my-service"));
    /// ```
    pub fn tracer<T>(self, tracer: T) -> Self
    where
        T: Tracer + Send + Sync + 'static,
        T::Span: Send + Sync + 'static,
    {
        let source = SpanSource::of(tracer);
        self.with(|c| c.source = source)
    }

    /// Builds no OTel span (crate use: `Observability` with
    /// `OTEL_SDK_DISABLED=true`); requests keep their correlation and pass
    /// their caller's trace context on.
    #[cfg_attr(not(feature = "telemetry"), expect(dead_code, reason = "used by Observability only"))]
    pub(crate) fn without_spans(self) -> Self {
        self.with(|c| c.source = SpanSource::Disabled)
    }

    /// Opens no span for requests on these route templates (e.g. `/metrics`
    /// and health probes), adding to those given before. Requests that
    /// matched no route are always traced. Same as
    /// [`exclude`](Self::exclude) with [`RouteMatcher::templates`].
    pub fn exclude_routes<I, T>(self, routes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        self.exclude(RouteMatcher::templates(routes))
    }

    /// Opens no span (and logs no access line) for requests on the routes
    /// `routes` matches, adding to those given before.
    pub fn exclude(self, routes: RouteMatcher) -> Self {
        self.with(|c| c.rules.exclude = c.rules.exclude.clone().or(routes))
    }

    /// Logs no access line for requests on the routes `routes` matches
    /// (their spans are still made), adding to those given before.
    pub fn exclude_from_access_log(self, routes: RouteMatcher) -> Self {
        self.with(|c| c.rules.exclude_access_log = c.rules.exclude_access_log.clone().or(routes))
    }

    /// Samples the requests of the routes `routes` matches as `sampling`
    /// says, whatever the head sampler or the caller's `traceparent` would
    /// decide: `/health/*` never, `/checkout` always. A route given both is
    /// never sampled. See [`RouteSampling`] for what `Always` needs of the
    /// tracer provider.
    ///
    /// ```
    /// use tower_observability::{route::RouteMatcher, trace::{HttpTraceLayer, RouteSampling}};
    ///
    /// let layer = HttpTraceLayer::new()
    ///     .sample_routes(RouteMatcher::predicate(|r| r.starts_with("/health/")), RouteSampling::Never)
    ///     .sample_routes(RouteMatcher::templates(["/checkout"]), RouteSampling::Always);
    /// ```
    pub fn sample_routes(self, routes: RouteMatcher, sampling: RouteSampling) -> Self {
        self.with(|c| c.rules = c.rules.clone().sample(routes, sampling))
    }

    /// Believes the proxy headers (`Forwarded`, `X-Forwarded-For`,
    /// `X-Forwarded-Host`, `X-Forwarded-Proto`) of requests whose socket
    /// peer is one of `proxies`, for `client.address`, `server.address`
    /// and `url.scheme`; see [`crate::address`]. None by default.
    pub fn trusted_proxies(self, proxies: TrustedProxies) -> Self {
        self.with(|c| c.attributes.trusted_proxies = proxies)
    }

    /// Records these request and response headers as span attributes
    /// (`http.request.header.<name>`, `http.response.header.<name>`),
    /// replacing the capture given before.
    ///
    /// # Errors
    ///
    /// [`CaptureError`] when a sensitive header (`authorization`,
    /// `proxy-authorization`, `cookie`, `set-cookie`) is listed without
    /// [`HeaderCapture::allow_sensitive`].
    pub fn capture_headers(self, capture: HeaderCapture) -> Result<Self, CaptureError> {
        let headers = capture.checked()?;
        Ok(self.with(|c| c.attributes.headers = headers))
    }

    /// Redacts the values of these query parameters in `url.query` too,
    /// beside [`SENSITIVE_QUERY_PARAMETERS`](super::SENSITIVE_QUERY_PARAMETERS)
    /// (case-sensitive keys, as the conventions say).
    pub fn redact_query_parameters<I, T>(self, keys: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        self.with(|c| {
            let keys = c.attributes.sensitive_query.iter().cloned().chain(keys.into_iter().map(Into::into));
            c.attributes.sensitive_query = keys.collect();
        })
    }

    /// Caps every attribute value taken from a request (path, query, user
    /// agent, captured headers, a panic's message) at `bytes` bytes, cut at
    /// a character boundary. Defaults to `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`,
    /// else `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else
    /// [`DEFAULT_VALUE_LENGTH_LIMIT`](super::DEFAULT_VALUE_LENGTH_LIMIT)
    /// (4 KiB).
    pub fn attribute_value_length_limit(self, bytes: usize) -> Self {
        self.with(|c| c.attributes.value_limit = bytes)
    }

    /// Also records `client.port` (an opt-in attribute of the
    /// conventions). Off by default.
    pub fn client_port(self, enabled: bool) -> Self {
        self.with(|c| c.attributes.client_port = enabled)
    }

    /// The trusted proxies of the layer, when it has any.
    pub(crate) fn proxies(&self) -> Option<&TrustedProxies> {
        let proxies = &self.config.attributes.trusted_proxies;
        (!proxies.is_empty()).then_some(proxies)
    }

    /// Extracts the parent context with `propagator` instead. The W3C
    /// shortcut of [`follow_parent_sampling`](Self::follow_parent_sampling)
    /// is then off: the propagator decides what the parent is.
    pub fn propagator(self, propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        self.with(|c| c.propagator = Some(Arc::new(propagator)))
    }

    /// Whether a request whose valid W3C `traceparent` has the sampled flag
    /// unset (`-00`) skips the OTel span: the decision a parent-based sampler
    /// (the OpenTelemetry default, `parentbased_always_on`) would take, taken
    /// before any attribute is built. Such a request still gets its
    /// `tracing` span (target `tower_observability::request`) with its
    /// [`Correlation`](super::Correlation): the caller's trace id and a new
    /// span id, so its logs correlate and
    /// [`PropagateContextLayer`](super::PropagateContextLayer) passes the
    /// trace on, unsampled. While the handler runs, the OTel context holds
    /// that non-recording span, so spans the handler opens are not sampled
    /// either.
    ///
    /// On by default. Turn it off when the tracer's sampler decides for
    /// remote parents itself (`Observability` does, for
    /// `trust_remote_sampling(false)` or a sampler that is not parent-based).
    pub fn follow_parent_sampling(self, enabled: bool) -> Self {
        self.with(|c| c.follow_parent_sampling = enabled)
    }

    /// The classifier given with [`error_status`](Self::error_status).
    pub(crate) fn custom_classifier(&self) -> Option<StatusClassifier> {
        self.config.classifier
    }

    /// The state of a new route label; `outer` adds the rules of an
    /// enclosing layer.
    pub(crate) fn make_route(&self, label: &str, outer: &TraceRules) -> TraceRoute {
        let rules = self.config.rules.or(outer);
        let excluded = rules.exclude.matches(label);
        let sampling = if rules.never_sample.matches(label) {
            Some(RouteSampling::Never)
        } else {
            rules.always_sample.matches(label).then_some(RouteSampling::Always)
        };
        let template = (label != crate::route::UNMATCHED_ROUTE).then_some(label);
        TraceRoute {
            excluded,
            access_log: !rules.exclude_access_log.matches(label),
            sampling,
            kept: if excluded { None } else { template.and_then(span::route_names) },
        }
    }

    /// The span part of a request.
    #[inline]
    pub(crate) fn start<B>(
        &self,
        cx: &mut RequestContext,
        route: &TraceRoute,
        observed: bool,
        req: &Request<B>,
    ) -> Option<TracePending> {
        if !cx.claim(Parts::TRACE) || route.excluded || !observed {
            return None;
        }
        let config = &*self.config;
        let options = SpanOptions {
            propagator: config.propagator.as_deref(),
            source: &config.source,
            follow_parent_sampling: config.follow_parent_sampling,
            kept: route.kept,
            sampling: route.sampling,
            attributes: &config.attributes,
        };
        let span = span::start(req, cx, &options);
        cx.set_span_context(span.cx.span().span_context());
        if let Some(labeler) = cx.labeler() {
            labeler.set_span(&span.cx);
        }
        let capture = &config.attributes.headers;
        let unnamed_rpc = cx.rpc().is_some_and(|call| call.recognized().is_none());
        Some(TracePending {
            span,
            access_log: config.access_log.filter(|_| route.access_log),
            headers: config.headers,
            value_limit: config.attributes.value_limit,
            capture: capture.response_names(),
            unnamed_rpc,
        })
    }
}

/// What the span part keeps until the request is over: copies of the
/// settings the response needs (no reference count to touch per request).
#[derive(Debug)]
pub(crate) struct TracePending {
    span: RequestSpan,
    access_log: Option<Level>,
    headers: TraceHeaders,
    value_limit: usize,
    /// The headers to capture from the response, when there are any.
    capture: Option<ResponseCapture>,
    /// A gRPC call whose span started without its method's name.
    unnamed_rpc: bool,
}

impl TracePending {
    #[inline]
    pub(crate) fn in_scope<T>(this: &Option<Self>, poll: impl FnOnce() -> T) -> T {
        match this {
            Some(pending) => pending.span.in_scope(poll),
            None => poll(),
        }
    }

    /// Writes the trace headers, and the cache outcome an inner part left in
    /// the response extensions on the span.
    #[inline]
    pub(crate) fn respond<B>(this: &mut Option<Self>, cx: &RequestContext, res: &mut Response<B>) {
        let Some(pending) = this else { return };
        if pending.unnamed_rpc
            && let Some(method) = cx.rpc().and_then(|call| call.recognized())
        {
            rpc::recognized(&pending.span, method);
            pending.unnamed_rpc = false;
        }
        pending.headers.write(res.headers_mut(), &pending.span.cx);
        if !pending.span.recording {
            return;
        }
        let span = pending.span.cx.span();
        if let Some(status) = res.extensions().get::<CacheStatus>() {
            span.set_attribute(KeyValue::new(CACHE_RESULT, status.as_str()));
        }
        // A caught panic is a 500: no lookup for the other statuses.
        if res.status() == http::StatusCode::INTERNAL_SERVER_ERROR
            && let Some(caught) = res.extensions().get::<CaughtPanic>()
        {
            pending.span.record_panic(caught, pending.value_limit);
        }
        if let Some(capture) = &pending.capture {
            span.set_attributes(attributes::response_headers(capture, res.headers(), pending.value_limit));
        }
    }

    /// Logs the request and ends its span.
    #[inline]
    pub(crate) fn finish(this: Option<Self>, cx: &RequestContext, finished: &Finished) {
        let Some(pending) = this else { return };
        if let Some(level) = pending.access_log.filter(|_| finished.observed) {
            access_log::log(level, &pending.span.span, cx, finished);
        }
        // Ends the OTel span now, at the body's end; the SDK hands it to
        // the span processors.
        match (cx.rpc(), &finished.rpc) {
            (Some(call), Some(end)) => rpc::end(&pending.span, call, end, finished.error),
            _ => pending.span.end(finished.status, finished.error),
        }
    }
}

impl Default for HttpTraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("source", &self.source)
            .field("rules", &self.rules)
            .field("access_log", &self.access_log)
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for HttpTraceLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTraceLayer")
            .field("source", &self.config.source)
            .field("access_log", &self.config.access_log)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for HttpTraceLayer {
    type Service = HttpTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe::new(inner, self.clone())
    }
}

impl Stage for HttpTraceLayer {
    type Route = TraceRoute;
    type Held<T: Send + 'static> = Box<T>;
    type Pending = Option<TracePending>;

    #[inline]
    fn route(&self, template: Option<&str>) -> Arc<Routed<TraceRoute>> {
        route_in(&self.routes, template, |label| self.make_route(label, &TraceRules::default()))
    }

    fn classifier(&self) -> StatusClassifier {
        self.config.classifier.unwrap_or_default()
    }

    #[inline]
    fn proxies(&self) -> Option<&TrustedProxies> {
        HttpTraceLayer::proxies(self)
    }

    #[inline]
    fn on_request<B: http_body::Body + 'static>(
        &mut self,
        cx: &mut RequestContext,
        route: &TraceRoute,
        observed: bool,
        req: &mut Request<B>,
    ) -> Self::Pending {
        self.start(cx, route, observed, req)
    }

    #[inline]
    fn in_scope<T>(pending: &Self::Pending, poll: impl FnOnce() -> T) -> T {
        TracePending::in_scope(pending, poll)
    }

    #[inline]
    fn on_response<B>(
        pending: &mut Self::Pending,
        _route: &TraceRoute,
        cx: &RequestContext,
        res: &mut Response<B>,
    ) {
        TracePending::respond(pending, cx, res);
    }

    #[inline]
    fn on_end(pending: Self::Pending, _route: &TraceRoute, cx: &RequestContext, finished: &Finished) {
        TracePending::finish(pending, cx, finished);
    }
}

#[cfg(test)]
mod tests {
    use http::Request;
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use tower_layer::Layer as _;

    use super::*;

    /// A propagator of headers other than W3C's is asked on every request
    /// (not only when W3C headers are present), and its parent is used.
    #[tokio::test]
    async fn a_custom_propagator_parents_the_server_span() {
        use opentelemetry::{
            propagation::{Extractor, Injector},
            trace::{SpanId, TraceId, TracerProvider as _},
        };
        use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
        use tower::ServiceExt as _;

        /// Reads `x-test-parent: {trace id}-{span id}`, sampled.
        #[derive(Debug)]
        struct TestPropagator;
        impl TextMapPropagator for TestPropagator {
            fn inject_context(&self, _: &opentelemetry::Context, _: &mut dyn Injector) {}
            fn extract_with_context(
                &self,
                cx: &opentelemetry::Context,
                extractor: &dyn Extractor,
            ) -> opentelemetry::Context {
                let Some((trace, span)) = extractor.get("x-test-parent").and_then(|v| v.split_once('-'))
                else {
                    return cx.clone();
                };
                let (Ok(trace), Ok(span)) = (TraceId::from_hex(trace), SpanId::from_hex(span)) else {
                    return cx.clone();
                };
                let sc = SpanContext::new(trace, span, TraceFlags::SAMPLED, true, TraceState::default());
                cx.with_remote_span_context(sc)
            }
            fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
                opentelemetry::propagation::text_map_propagator::FieldIter::new(&[])
            }
        }

        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
        let layer = HttpTraceLayer::new().tracer(provider.tracer("test")).propagator(TestPropagator);
        let svc = layer.layer(tower::service_fn(|_: Request<String>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
        }));
        let req = Request::builder()
            .header("x-test-parent", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7")
            .body(String::new())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        http_body_util::BodyExt::collect(res.into_body()).await.unwrap();
        let finished = spans.get_finished_spans().unwrap();
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(finished[0].parent_span_id.to_string(), "00f067aa0ba902b7");
        assert!(finished[0].parent_span_is_remote);
    }

    /// Without spans (`OTEL_SDK_DISABLED=true`), the handler runs in its
    /// caller's context, passed on as it came, and nothing records.
    #[tokio::test]
    async fn without_spans_the_callers_context_is_current() {
        use tower::ServiceExt as _;

        let svc =
            HttpTraceLayer::new().without_spans().layer(tower::service_fn(|_: Request<String>| async {
                let cx = opentelemetry::Context::current();
                let seen = (cx.span().span_context().clone(), cx.span().is_recording());
                Ok::<_, std::convert::Infallible>(Response::new(format!("{seen:?}")))
            }));
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let req = Request::builder().header("traceparent", tp).body(String::new()).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{body}");
        assert!(body.contains("00f067aa0ba902b7"), "the caller's span, passed on: {body}");
        assert!(body.ends_with("false)"), "nothing records: {body}");
    }
}
