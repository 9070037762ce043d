use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{Request, Response, StatusCode, Version};
use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{SpanContext, TraceContextExt, TraceFlags, TraceState},
};
use opentelemetry_sdk::{
    propagation::BaggagePropagator,
    trace::{IdGenerator, RandomIdGenerator},
};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Level, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{
    HeaderExtractor, correlation,
    propagation::{BAGGAGE, CheckedExtractor, TRACEPARENT, TRACESTATE, has_context, parse_traceparent},
};
use crate::{
    body::{self, BodyEnd, BodyObserver, ResponseBody},
    classify::{
        ErrorType, KnownMethod, OwnedRoute, RouteFilter, StatusClassifier, response_error, route_of,
        scheme_of,
    },
    request_id::RequestId,
    routes::RouteTable,
    stack::{self, StackId},
};

/// Layer that opens an OTel HTTP server span for every request.
///
/// See the [module docs](super). The parent comes from the request's W3C
/// `traceparent`/`tracestate` (and `baggage`) headers; invalid headers are
/// ignored and a new trace starts (W3C Trace Context, section 4).
#[derive(Clone)]
#[must_use]
pub struct HttpTraceLayer {
    /// `None`: W3C Trace Context and Baggage, read by the layer itself.
    propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>,
    names: SpanNames,
    exclude: RouteFilter,
    options: Options,
    stack: Option<StackId>,
}

/// The per-request settings of a layer, copied into each response future.
#[derive(Debug, Clone, Copy)]
struct Options {
    classifier: StatusClassifier,
    /// Open no OTel span for a W3C parent whose sampled flag is unset.
    follow_parent_sampling: bool,
    access_log: Option<Level>,
    traceparent_header: bool,
    server_timing_header: bool,
}

impl HttpTraceLayer {
    /// A layer extracting W3C Trace Context and Baggage.
    pub fn new() -> Self {
        Self {
            propagator: None,
            names: SpanNames::new(),
            exclude: RouteFilter::default(),
            stack: None,
            options: Options {
                classifier: StatusClassifier::default(),
                follow_parent_sampling: true,
                access_log: Some(Level::INFO),
                traceparent_header: false,
                server_timing_header: false,
            },
        }
    }

    /// Which statuses mark the span as an error; 5xx by default (OTel HTTP
    /// semconv for server spans).
    pub fn error_status(mut self, classifier: StatusClassifier) -> Self {
        self.options.classifier = classifier;
        self
    }

    /// The level of the access log, one event per finished request with
    /// target `tower_observability::access` (method, route, status,
    /// `duration_seconds`, `error.type`; request and trace ids come from the
    /// span). `Some(Level::INFO)` by default; `None` turns it off.
    pub fn access_log(mut self, level: Option<Level>) -> Self {
        self.options.access_log = level;
        self
    }

    /// Writes the server span's context on responses as a W3C `traceparent`
    /// header, so a client can find the trace. Off by default: it tells
    /// callers your trace ids.
    pub fn traceparent_response_header(mut self, enabled: bool) -> Self {
        self.options.traceparent_header = enabled;
        self
    }

    /// Writes `Server-Timing: traceparent;desc="00-{trace}-{span}-{flags}"`
    /// on responses, the form browsers expose to scripts (W3C Server Timing)
    /// and OpenTelemetry's browser instrumentation reads. Off by default.
    pub fn server_timing_header(mut self, enabled: bool) -> Self {
        self.options.server_timing_header = enabled;
        self
    }

    /// Makes the layer part of one `ObservabilityLayer` application.
    pub(crate) fn in_stack(mut self, stack: StackId) -> Self {
        self.stack = Some(stack);
        self
    }

    /// Replaces the route filter (crate use: the monitoring fragment).
    #[cfg(feature = "monitoring")]
    pub(crate) fn with_exclude(mut self, exclude: RouteFilter) -> Self {
        self.exclude = exclude;
        self
    }

    /// Opens no span for requests on these route templates (e.g. `/metrics`
    /// and health probes). Requests that matched no route are always traced.
    pub fn exclude_routes<I, T>(mut self, routes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        self.exclude = RouteFilter::new(routes);
        self
    }

    /// Extracts the parent context with `propagator` instead. The W3C
    /// shortcut of [`follow_parent_sampling`](Self::follow_parent_sampling)
    /// is then off: the propagator decides what the parent is.
    pub fn propagator(mut self, propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        self.propagator = Some(Arc::new(propagator));
        self
    }

    /// Whether a request whose valid W3C `traceparent` has the sampled flag
    /// unset (`-00`) skips the OTel span: the decision a parent-based sampler
    /// (the OpenTelemetry default, `parentbased_always_on`) would take, taken
    /// before anything is built. Such a request still gets a span in
    /// `tracing` (target `tower_observability::request`, left out of the OTel
    /// layer by [`OTEL_LAYER_EXCLUDED_TARGETS`](crate::OTEL_LAYER_EXCLUDED_TARGETS)),
    /// with its [`Correlation`](super::Correlation): the caller's trace id
    /// and a new span id, so its logs correlate and
    /// [`PropagateContextLayer`](super::PropagateContextLayer) passes the
    /// trace on, unsampled. While the handler runs, the OTel context holds
    /// that non-recording span, so spans the handler opens are not sampled
    /// either.
    ///
    /// On by default. Turn it off when the tracer's sampler decides for
    /// remote parents itself (`Observability` does, for
    /// `trust_remote_sampling(false)` or a sampler that is not parent-based).
    pub fn follow_parent_sampling(mut self, enabled: bool) -> Self {
        self.options.follow_parent_sampling = enabled;
        self
    }
}

impl Default for HttpTraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HttpTraceLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTraceLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for HttpTraceLayer {
    type Service = HttpTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpTrace {
            inner,
            propagator: self.propagator.clone(),
            names: self.names.clone(),
            exclude: self.exclude.clone(),
            options: self.options,
            stack: self.stack,
        }
    }
}

/// Service made by [`HttpTraceLayer`].
#[derive(Clone)]
pub struct HttpTrace<S> {
    inner: S,
    /// `None`: W3C Trace Context and Baggage, read by the layer itself.
    propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>,
    names: SpanNames,
    exclude: RouteFilter,
    options: Options,
    stack: Option<StackId>,
}

impl<S> HttpTrace<S> {
    /// Wraps `inner` with a new [`HttpTraceLayer`].
    pub fn new(inner: S) -> Self {
        HttpTraceLayer::new().layer(inner)
    }

    /// A new [`HttpTraceLayer`].
    pub fn layer() -> HttpTraceLayer {
        HttpTraceLayer::new()
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

impl<S: fmt::Debug> fmt::Debug for HttpTrace<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTrace").field("inner", &self.inner).finish_non_exhaustive()
    }
}

/// `{method} {route}`, or `{method}` without a route; `HTTP` stands for an
/// unknown method (OTel HTTP semconv v1.26, span name).
struct SpanName<'a> {
    method: KnownMethod,
    route: Option<&'a str>,
}

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = if self.method.is_other() { "HTTP" } else { self.method.as_str() };
        match self.route {
            Some(route) => write!(f, "{method} {route}"),
            None => f.write_str(method),
        }
    }
}

/// The span names of one route, one per method, formatted once.
struct RouteNames {
    route: Box<str>,
    names: [OnceLock<Box<str>>; KnownMethod::COUNT],
}

impl RouteNames {
    fn new(route: &str) -> Self {
        Self { route: route.into(), names: Default::default() }
    }
}

/// Span names per route template: `{method} {route}` is formatted once per
/// route and method, not per request.
#[derive(Clone)]
struct SpanNames(Arc<RouteTable<RouteNames>>);

impl SpanNames {
    fn new() -> Self {
        Self(Arc::new(RouteTable::new(MAX_SPAN_NAME_ROUTES, RouteNames::new)))
    }

    /// Calls `f` with the span name of `method` on `route`.
    #[inline]
    fn with<T>(&self, method: KnownMethod, route: Option<&str>, f: impl FnOnce(&str) -> T) -> T {
        let Some(route) = route else {
            return f(if method.is_other() { "HTTP" } else { method.as_str() });
        };
        let names = self.0.get(Some(route), RouteNames::new);
        if &*names.route != route {
            // Past the cap (a misconfigured `HttpRoute`): format it each time.
            return f(&SpanName { method, route: Some(route) }.to_string());
        }
        f(names.names[method.index()]
            .get_or_init(|| SpanName { method, route: Some(route) }.to_string().into()))
    }
}

/// How many routes keep their span names formatted.
const MAX_SPAN_NAME_ROUTES: usize = 1024;

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The request's span: the OTel server span, or, for a parent that is not
/// sampled, a `tracing` span only, with the non-recording OTel context that
/// the handler runs in.
pub(crate) struct RequestSpan {
    span: Span,
    /// `Some` for an unsampled parent: attached while the inner service runs.
    unsampled: Option<opentelemetry::Context>,
}

/// Opens the span of `req`, its parent set from the request headers.
///
/// With the default (W3C) propagator, `traceparent` is parsed once, here:
/// the same reading decides sampling and parents the span.
fn make_span<B>(
    req: &Request<B>,
    propagator: Option<&(dyn TextMapPropagator + Send + Sync)>,
    names: &SpanNames,
    options: Options,
) -> RequestSpan {
    if let Some(propagator) = propagator {
        let parent =
            || has_context(req.headers()).then(|| propagator.extract(&CheckedExtractor::new(req.headers())));
        return RequestSpan { span: server_span(req, names, parent), unsampled: None };
    }
    let parent = w3c_parent(req.headers());
    if options.follow_parent_sampling
        && let Some(parent) = parent.as_ref().filter(|p| !p.is_sampled())
    {
        return unsampled_span(req, parent);
    }
    let span = server_span(req, names, || w3c_context(req.headers(), parent));
    RequestSpan { span, unsampled: None }
}

/// The span context of a valid, single W3C `traceparent`, with its
/// `tracestate` (an invalid one is dropped, as W3C Trace Context says); a
/// `traceparent` that is invalid or repeated is ignored and a new trace
/// starts (W3C Trace Context, section 3.2.2).
#[inline]
fn w3c_parent(headers: &http::HeaderMap) -> Option<SpanContext> {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    // Absent, or several: ignore them all.
    let (Some(value), None) = (values.next(), values.next()) else { return None };
    let (trace_id, span_id, flags) = parse_traceparent(value.to_str().ok()?)?;
    let state = headers
        .get(&TRACESTATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<TraceState>().ok())
        .unwrap_or_default();
    // Flags other than `sampled` are zeroed (W3C Trace Context, "other
    // flags"), as the SDK's propagator does.
    Some(SpanContext::new(trace_id, span_id, flags & TraceFlags::SAMPLED, true, state))
}

/// The OTel context holding `span` (when given) and the request's W3C
/// baggage (when the header is present); `None` when there is neither.
fn w3c_context(headers: &http::HeaderMap, span: Option<SpanContext>) -> Option<opentelemetry::Context> {
    let baggage = headers.contains_key(&BAGGAGE);
    if span.is_none() && !baggage {
        return None;
    }
    let mut cx = opentelemetry::Context::new();
    if baggage {
        cx = BaggagePropagator::new().extract_with_context(&cx, &HeaderExtractor(headers));
    }
    Some(match span {
        Some(span) => cx.with_remote_span_context(span),
        None => cx,
    })
}

/// The `tracing`-only span of a request whose parent is not sampled.
fn unsampled_span<B>(req: &Request<B>, parent: &SpanContext) -> RequestSpan {
    // The non-recording span that stands for this server: the caller's
    // trace, a span id of its own, not sampled (what the SDK makes when a
    // sampler drops a span).
    let own = SpanContext::new(
        parent.trace_id(),
        RandomIdGenerator::default().new_span_id(),
        parent.trace_flags(),
        false,
        parent.trace_state().clone(),
    );
    let cx = w3c_context(req.headers(), Some(own.clone())).expect("a span context was given");
    let method = KnownMethod::of(req.method());
    let request_id = req.extensions().get::<RequestId>();
    // Made in the unsampled context: an OTel layer that does not leave the
    // target out parents it there, and its sampler drops it.
    let span = {
        let _cx = cx.clone().attach();
        tracing::info_span!(
            target: "tower_observability::request",
            "HTTP request",
            http.request.method = method.as_str(),
            http.route = route_of(req.extensions()),
            request_id = request_id.map(RequestId::as_str),
        )
    };
    correlation::attach_ids(&span, request_id, own.trace_id(), own.span_id(), Some(cx.clone()));
    RequestSpan { span, unsampled: Some(cx) }
}

/// Opens the server span of `req`, its parent set from the request headers.
/// `parent` gives the parent context, asked only when the span is enabled.
fn server_span<B>(
    req: &Request<B>,
    names: &SpanNames,
    parent: impl FnOnce() -> Option<opentelemetry::Context>,
) -> Span {
    let method = KnownMethod::of(req.method());
    let route = route_of(req.extensions());
    let request_id = req.extensions().get::<RequestId>();
    let span = names.with(method, route, |name| new_server_span(req, name, method, route, request_id));
    if span.is_disabled() {
        return span;
    }
    if let Some(parent) = parent()
        && (parent.span().span_context().is_valid() || parent.has_active_span())
    {
        // Fails only when no OTel layer is installed: then there is no OTel
        // span to parent either.
        let _ = span.set_parent(parent);
    }
    correlation::attach(&span, request_id);
    span
}

/// The `tracing` span that becomes the OTel server span.
#[inline]
fn new_server_span<B>(
    req: &Request<B>,
    name: &str,
    method: KnownMethod,
    route: Option<&str>,
    request_id: Option<&RequestId>,
) -> Span {
    // Every value known now is given now: a later `record` costs a call
    // through the subscriber stack each.
    tracing::info_span!(
        target: "tower_observability::trace",
        "HTTP request",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method.as_str(),
        http.request.method_original = method.is_other().then(|| req.method().as_str()),
        http.route = route,
        http.response.status_code = Empty,
        url.path = req.uri().path(),
        url.scheme = scheme_of(req.uri()),
        network.protocol.version = protocol_version(req.version()),
        user_agent.original = req.headers().get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()),
        request_id = request_id.map(RequestId::as_str),
        error.type = Empty,
        cache.result = Empty,
    )
}

/// What the access log needs of a request.
#[derive(Debug)]
struct Access {
    start: Instant,
    method: KnownMethod,
    route: Option<OwnedRoute>,
    level: Level,
}

macro_rules! access_event {
    ($level:expr, $($field:tt)*) => {
        match $level {
            Level::ERROR => tracing::event!(target: "tower_observability::access", Level::ERROR, $($field)*),
            Level::WARN => tracing::event!(target: "tower_observability::access", Level::WARN, $($field)*),
            Level::INFO => tracing::event!(target: "tower_observability::access", Level::INFO, $($field)*),
            Level::DEBUG => tracing::event!(target: "tower_observability::access", Level::DEBUG, $($field)*),
            Level::TRACE => tracing::event!(target: "tower_observability::access", Level::TRACE, $($field)*),
        }
    };
}

impl Access {
    /// Emits the access log event; the caller has entered the request's span.
    fn log(&self, status: Option<StatusCode>, error: Option<ErrorType>) {
        let route = self.route.as_ref().map_or(crate::UNMATCHED_ROUTE, OwnedRoute::as_str);
        access_event!(
            self.level,
            http.request.method = self.method.as_str(),
            http.route = route,
            http.response.status_code = status.map(|s| s.as_u16()),
            duration_seconds = self.start.elapsed().as_secs_f64(),
            error.type = error.as_ref().map(ErrorType::as_str),
            "request finished"
        );
    }
}

impl RequestSpan {
    /// No span: the request is not traced by this layer.
    fn none() -> Self {
        Self { span: Span::none(), unsampled: None }
    }

    /// The OTel context of the request's span.
    fn otel_context(&self) -> opentelemetry::Context {
        match &self.unsampled {
            Some(cx) => cx.clone(),
            None => self.span.context(),
        }
    }

    /// Records how the request ended on the OTel span, if there is one.
    fn record_end(&self, status: Option<StatusCode>, error: Option<ErrorType>) {
        if self.unsampled.is_some() {
            return;
        }
        if let Some(status) = status {
            self.span.record("http.response.status_code", status.as_u16());
        }
        if let Some(error) = error {
            self.span.record("error.type", error.as_str());
            self.span.record("otel.status_code", "ERROR");
        }
    }

    /// Runs `f` inside the span (and for an unsampled parent, with its OTel
    /// context attached).
    #[inline]
    fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        let _entered = self.span.enter();
        let _cx = self.unsampled.as_ref().map(|cx| cx.clone().attach());
        f()
    }
}

impl fmt::Debug for RequestSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSpan")
            .field("span", &self.span)
            .field("sampled", &self.unsampled.is_none())
            .finish()
    }
}

/// The W3C `traceparent` of an OTel context (version 00).
fn traceparent_of(cx: &opentelemetry::Context) -> Option<http::HeaderValue> {
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    let value = format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8());
    http::HeaderValue::from_str(&value).ok()
}

/// Writes the opt-in trace headers on a response.
fn write_trace_headers(headers: &mut http::HeaderMap, span: &RequestSpan, options: Options) {
    if !(options.traceparent_header || options.server_timing_header) {
        return;
    }
    let Some(traceparent) = traceparent_of(&span.otel_context()) else { return };
    if options.server_timing_header {
        let timing = format!("traceparent;desc=\"{}\"", traceparent.to_str().unwrap_or_default());
        if let Ok(timing) = http::HeaderValue::from_str(&timing) {
            headers.append(http::header::HeaderName::from_static("server-timing"), timing);
        }
    }
    if options.traceparent_header {
        headers.insert(TRACEPARENT, traceparent);
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpTrace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody, TraceObserver>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (span, access) = if self.exclude.excludes(route_of(req.extensions()))
            || stack::foreign(req.extensions(), self.stack)
        {
            (RequestSpan::none(), None)
        } else {
            // The clock is read only when the access log needs it.
            let access = self.options.access_log.map(|level| Access {
                start: Instant::now(),
                method: KnownMethod::of(req.method()),
                route: OwnedRoute::of(req.extensions()),
                level,
            });
            (make_span(&req, self.propagator.as_deref(), &self.names, self.options), access)
        };
        let is_head = req.method() == http::Method::HEAD;
        // Not entered here: `call` of the inner stack only builds futures;
        // the handler runs in `poll`, inside the span (one entry fewer).
        let inner = self.inner.call(req);
        ResponseFuture { inner, span: Some(span), access, is_head, options: self.options }
    }
}

pin_project! {
    /// Response future of [`HttpTrace`]: polls the inner future inside the
    /// span, then hands the span to the response body.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Option<RequestSpan>,
        access: Option<Access>,
        is_head: bool,
        options: Options,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(span) = this.span.take() {
                span.record_end(None, Some(ErrorType::ClientAbort));
                if let Some(access) = this.access.take() {
                    span.in_scope(|| access.log(None, Some(ErrorType::ClientAbort)));
                }
            }
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B, TraceObserver>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let span = this.span.as_ref().expect("ResponseFuture polled after completion");
        let result = ready!(span.in_scope(|| this.inner.as_mut().poll(cx)));
        let span = this.span.take().expect("checked above");
        Poll::Ready(match result {
            Ok(mut res) => {
                let status = res.status();
                span.record_end(Some(status), None);
                write_trace_headers(res.headers_mut(), &span, *this.options);
                let marked = res.extensions().get::<ErrorType>().copied();
                let observer = TraceObserver {
                    span,
                    status,
                    marked,
                    classifier: this.options.classifier,
                    access: this.access.take(),
                };
                Ok(res.map(|b| body::observe(b, observer, *this.is_head, status)))
            }
            Err(err) => {
                let error = Some(ErrorType::service::<E>());
                span.record_end(None, error);
                if let Some(access) = this.access.take() {
                    span.in_scope(|| access.log(None, error));
                }
                Err(err)
            }
        })
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").field("span", &self.span).finish_non_exhaustive()
    }
}

/// The [`BodyObserver`] of [`HttpTrace`]: closes the span when the body ends.
#[derive(Debug)]
pub struct TraceObserver {
    span: RequestSpan,
    status: StatusCode,
    marked: Option<ErrorType>,
    classifier: StatusClassifier,
    access: Option<Access>,
}

impl BodyObserver for TraceObserver {
    fn on_end(self, end: BodyEnd) {
        let error = response_error(self.classifier, self.status, self.marked, end);
        self.span.record_end(None, error);
        // tracing-opentelemetry (0.34) takes a span's end time from its last
        // exit, not from its close: enter and leave it now, at the body's
        // end, once (the access log is written inside that one entry).
        self.span.in_scope(|| {
            if let Some(access) = &self.access {
                access.log(Some(self.status), error);
            }
        });
        // Dropping the span here closes it and hands it to the exporter.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names_follow_semconv() {
        let get = KnownMethod::of(&http::Method::GET);
        assert_eq!(SpanName { method: get, route: Some("/users/{id}") }.to_string(), "GET /users/{id}");
        assert_eq!(SpanName { method: get, route: None }.to_string(), "GET");
        let other = KnownMethod::of(&http::Method::from_bytes(b"PURGE").unwrap());
        assert_eq!(SpanName { method: other, route: Some("/x") }.to_string(), "HTTP /x");
    }

    /// The layer's own W3C reading gives the context the SDK's propagators
    /// give behind the checked extractor, for well-formed and hostile headers.
    #[test]
    fn w3c_reading_matches_the_sdk_propagators() {
        use opentelemetry::{
            baggage::BaggageExt,
            propagation::{TextMapCompositePropagator, TextMapPropagator},
        };
        use opentelemetry_sdk::propagation::TraceContextPropagator;

        let sdk = TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]);
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[("traceparent", &format!("{tp}-01"))],
            &[("traceparent", &format!("{tp}-00"))],
            &[("traceparent", &format!("{tp}-03")), ("tracestate", "a=1,b=2")],
            &[("traceparent", &format!("{tp}-01")), ("tracestate", "not a tracestate")],
            &[("traceparent", &format!("{tp}-01")), ("baggage", "user=ada,tier=gold")],
            &[("traceparent", "00-4bf92f35-00f067aa0ba902b7-01"), ("baggage", "user=ada")],
            &[("traceparent", &format!("{tp}-01")), ("traceparent", &format!("{tp}-01"))],
            &[("baggage", "user=ada")],
        ];
        for headers in cases {
            let mut map = http::HeaderMap::new();
            for (k, v) in headers.iter() {
                map.append(http::HeaderName::from_static(k), v.parse().unwrap());
            }
            let ours = w3c_context(&map, w3c_parent(&map)).unwrap_or_default();
            let theirs = if has_context(&map) {
                sdk.extract(&CheckedExtractor::new(&map))
            } else {
                opentelemetry::Context::new()
            };
            let (a, b) = (ours.span().span_context().clone(), theirs.span().span_context().clone());
            assert_eq!(
                (a.trace_id(), a.span_id(), a.trace_flags(), a.is_remote(), a.trace_state().header()),
                (b.trace_id(), b.span_id(), b.trace_flags(), b.is_remote(), b.trace_state().header()),
                "{headers:?}"
            );
            let baggage = |cx: &opentelemetry::Context| {
                let mut all: Vec<String> =
                    cx.baggage().iter().map(|(k, (v, _))| format!("{k}={v}")).collect();
                all.sort();
                all
            };
            assert_eq!(baggage(&ours), baggage(&theirs), "{headers:?}");
        }
    }

    #[test]
    fn span_names_are_formatted_once_per_route_and_method() {
        let names = SpanNames::new();
        let get = KnownMethod::of(&http::Method::GET);
        let post = KnownMethod::of(&http::Method::POST);
        let first = names.with(get, Some("/a/{id}"), |n| n.as_ptr());
        assert_eq!(names.with(get, Some("/a/{id}"), str::to_owned), "GET /a/{id}");
        assert_eq!(names.with(get, Some("/a/{id}"), |n| n.as_ptr()), first, "reused");
        assert_eq!(names.with(post, Some("/a/{id}"), str::to_owned), "POST /a/{id}");
        assert_eq!(names.with(get, None, str::to_owned), "GET");
        for i in 0..MAX_SPAN_NAME_ROUTES + 5 {
            let route = format!("/r{i}");
            assert_eq!(
                names.with(get, Some(&route), str::to_owned),
                format!("GET {route}"),
                "past the cap too"
            );
        }
    }
}
