use std::{
    borrow::Cow,
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, LazyLock, OnceLock, PoisonError, RwLock},
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{Request, Response, StatusCode, Version};
use opentelemetry::{
    InstrumentationScope, Key, KeyValue, StringValue,
    global::BoxedTracer,
    propagation::TextMapPropagator,
    trace::{SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState, Tracer},
};
use opentelemetry_sdk::{
    propagation::BaggagePropagator,
    trace::{IdGenerator, RandomIdGenerator, SdkTracer},
};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Level, Span};

use super::{
    HeaderExtractor, correlation,
    propagation::{BAGGAGE, CheckedExtractor, TRACEPARENT, TRACESTATE, parse_traceparent},
};
use crate::{
    body::{self, BodyEnd, BodyObserver, ResponseBody},
    classify::{
        ErrorType, KnownMethod, OwnedRoute, RouteFilter, StatusClassifier, response_error, route_of,
        scheme_of,
    },
    request_id::RequestId,
    stack::{self, StackId},
};

/// Layer that opens an OTel HTTP server span for every request.
///
/// See the [module docs](super): the span is made through the OTel API
/// with [`tracer`](Self::tracer) (the global tracer provider's by default),
/// current in `opentelemetry::Context` while the inner service runs, and a
/// `tracing` span carries the request's correlation for log lines. The parent comes from the request's W3C
/// `traceparent`/`tracestate` (and `baggage`) headers; invalid headers are
/// ignored and a new trace starts (W3C Trace Context, section 4).
#[derive(Clone)]
#[must_use]
pub struct HttpTraceLayer {
    /// `None`: W3C Trace Context and Baggage, read by the layer itself.
    propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>,
    source: SpanSource,
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
            source: SpanSource::global(),
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

    /// Makes server spans with `tracer` instead of the global tracer
    /// provider's (`opentelemetry::global::tracer_provider`, asked once, on
    /// the first request traced). [`Observability::layer`](crate::Observability::layer)
    /// passes the tracer of the provider it built.
    ///
    /// ```
    /// use opentelemetry::trace::TracerProvider as _;
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    /// use tower_observability::trace::HttpTraceLayer;
    ///
    /// let provider = SdkTracerProvider::builder().build();
    /// let layer = HttpTraceLayer::new().tracer(provider.tracer("my-service"));
    /// ```
    pub fn tracer(mut self, tracer: SdkTracer) -> Self {
        self.source = SpanSource::Sdk(tracer);
        self
    }

    /// Builds no OTel span (crate use: `Observability` with
    /// `OTEL_SDK_DISABLED=true`); requests keep their correlation and pass
    /// their caller's trace context on.
    #[cfg_attr(not(feature = "telemetry"), expect(dead_code, reason = "used by Observability only"))]
    pub(crate) fn without_spans(mut self) -> Self {
        self.source = SpanSource::Disabled;
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
            source: self.source.clone(),
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
    source: SpanSource,
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

/// The instrumentation scope of the spans this crate makes.
pub(crate) fn instrumentation_scope() -> InstrumentationScope {
    InstrumentationScope::builder("tower-observability").with_version(env!("CARGO_PKG_VERSION")).build()
}

/// Where a layer's server spans are made.
#[derive(Clone)]
enum SpanSource {
    /// The global tracer provider's tracer, asked for on the first request
    /// traced (shared by every service of one layer).
    Global(Arc<OnceLock<BoxedTracer>>),
    /// A tracer of the SDK: its spans are not boxed twice.
    Sdk(SdkTracer),
    /// No tracer (`OTEL_SDK_DISABLED=true`): no span is built; the request
    /// runs in its caller's context, which propagation passes on.
    Disabled,
}

impl SpanSource {
    fn global() -> Self {
        Self::Global(Arc::new(OnceLock::new()))
    }

    /// Starts a span in `parent`; the context returned holds it (and the
    /// parent's other entries, such as baggage).
    fn start(&self, builder: SpanBuilder, parent: &opentelemetry::Context) -> opentelemetry::Context {
        match self {
            Self::Sdk(tracer) => parent.with_span(tracer.build_with_context(builder, parent)),
            Self::Global(tracer) => {
                let tracer =
                    tracer.get_or_init(|| opentelemetry::global::tracer_with_scope(instrumentation_scope()));
                parent.with_span(tracer.build_with_context(builder, parent))
            }
            Self::Disabled => parent.clone(),
        }
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
        match self.route {
            Some(route) => write!(f, "{} {route}", method_name(self.method)),
            None => f.write_str(method_name(self.method)),
        }
    }
}

fn method_name(method: KnownMethod) -> &'static str {
    if method.is_other() { "HTTP" } else { method.as_str() }
}

/// A route template kept for the life of the process, with its span names,
/// one per method, formatted on first use.
struct RouteNames {
    route: &'static str,
    names: [OnceLock<&'static str>; KnownMethod::COUNT],
}

/// How many route templates keep their span names for the life of the
/// process (all of them, in any real router); past it, names are formatted
/// per request.
const MAX_SPAN_NAME_ROUTES: usize = 1024;

/// The longest route template kept: with at most
/// [`MAX_SPAN_NAME_ROUTES`] of them, the table stays under 3 MiB whatever
/// a misconfigured `HttpRoute` holds.
const MAX_SPAN_NAME_ROUTE_LEN: usize = 256;

type Interned = RwLock<HashMap<&'static str, &'static RouteNames, foldhash::fast::RandomState>>;

/// Route templates and their span names, shared by every layer: a route
/// template comes from the code, and the cap bounds the memory whatever
/// `HttpRoute` a misconfigured layer inserts.
static SPAN_NAMES: LazyLock<Interned> = LazyLock::new(RwLock::default);

/// The kept names of `route`; `None` past the caps.
#[inline]
fn route_names(route: &str) -> Option<&'static RouteNames> {
    if let Some(names) = SPAN_NAMES.read().unwrap_or_else(PoisonError::into_inner).get(route) {
        return Some(names);
    }
    let mut all = SPAN_NAMES.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(names) = all.get(route) {
        return Some(names);
    }
    if all.len() >= MAX_SPAN_NAME_ROUTES || route.len() > MAX_SPAN_NAME_ROUTE_LEN {
        return None;
    }
    let route: &'static str = Box::leak(route.into());
    let names: &'static RouteNames = Box::leak(Box::new(RouteNames { route, names: Default::default() }));
    all.insert(route, names);
    Some(names)
}

/// The span name and `http.route` value of a request: without a copy for
/// a kept route.
#[inline]
fn name_and_route(method: KnownMethod, route: Option<&str>) -> (Cow<'static, str>, Option<StringValue>) {
    let Some(route) = route else { return (Cow::Borrowed(method_name(method)), None) };
    match route_names(route) {
        Some(kept) => {
            let name = kept.names[method.index()]
                .get_or_init(|| Box::leak(SpanName { method, route: Some(route) }.to_string().into()));
            (Cow::Borrowed(*name), Some(StringValue::from(kept.route)))
        }
        None => (
            Cow::Owned(SpanName { method, route: Some(route) }.to_string()),
            Some(StringValue::from(route.to_owned())),
        ),
    }
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

// Attribute keys, OTel HTTP semconv v1.26.
const HTTP_REQUEST_METHOD: Key = Key::from_static_str("http.request.method");
const HTTP_REQUEST_METHOD_ORIGINAL: Key = Key::from_static_str("http.request.method_original");
const HTTP_ROUTE: Key = Key::from_static_str("http.route");
const URL_PATH: Key = Key::from_static_str("url.path");
const URL_SCHEME: Key = Key::from_static_str("url.scheme");
const NETWORK_PROTOCOL_VERSION: Key = Key::from_static_str("network.protocol.version");
const USER_AGENT_ORIGINAL: Key = Key::from_static_str("user_agent.original");
const HTTP_RESPONSE_STATUS_CODE: Key = Key::from_static_str("http.response.status_code");
const ERROR_TYPE: Key = Key::from_static_str("error.type");
/// Not a semconv name: the request id of [`RequestIdLayer`](crate::request_id::RequestIdLayer).
const REQUEST_ID: Key = Key::from_static_str("request_id");

/// The request's span: the OTel context it runs in (holding the server
/// span, or for a parent that is not sampled, a non-recording span that
/// stands for this server) and a `tracing` span carrying its
/// [`Correlation`](super::Correlation), for log lines.
pub(crate) struct RequestSpan {
    span: Span,
    /// `None`: the request is not traced by this layer.
    cx: Option<opentelemetry::Context>,
}

/// Opens the span of `req`, its parent set from the request headers.
///
/// With the default (W3C) propagator, `traceparent` is parsed once, here:
/// the same reading decides sampling and parents the span.
fn make_span<B>(
    req: &Request<B>,
    method: KnownMethod,
    route: Option<&str>,
    propagator: Option<&(dyn TextMapPropagator + Send + Sync)>,
    source: &SpanSource,
    options: Options,
) -> RequestSpan {
    let req = RequestInfo { req, method, route };
    if let Some(propagator) = propagator {
        // Asked every time: the headers it reads are its own (B3, Jaeger...).
        let parent = propagator.extract(&CheckedExtractor::new(req.req.headers()));
        return server_span(req, source, Some(parent));
    }
    let parent = w3c_parent(req.req.headers());
    if options.follow_parent_sampling
        && let Some(parent) = parent.as_ref().filter(|p| !p.is_sampled())
    {
        return unsampled_span(req, parent);
    }
    server_span(req, source, w3c_context(req.req.headers(), parent))
}

/// What the span functions read of a request: its method and route looked
/// up once, in `call`.
struct RequestInfo<'a, B> {
    req: &'a Request<B>,
    method: KnownMethod,
    route: Option<&'a str>,
}

// By hand: derived impls would ask `B: Copy`.
impl<B> Clone for RequestInfo<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B> Copy for RequestInfo<'_, B> {}

/// The span context of a valid, single W3C `traceparent`, with its
/// `tracestate` (an invalid one is dropped, as W3C Trace Context says); a
/// `traceparent` that is invalid or repeated is ignored and a new trace
/// starts (W3C Trace Context, section 3.2.2).
#[inline]
fn w3c_parent(headers: &http::HeaderMap) -> Option<SpanContext> {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    // Absent, or several: ignore them all.
    let (Some(value), None) = (values.next(), values.next()) else { return None };
    let (trace_id, span_id, flags) = parse_traceparent(value.as_bytes())?;
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
    // On the current context, as the SDK's propagators extract.
    let mut cx = opentelemetry::Context::current();
    if baggage {
        cx = BaggagePropagator::new().extract_with_context(&cx, &HeaderExtractor(headers));
    }
    Some(match span {
        Some(span) => cx.with_remote_span_context(span),
        None => cx,
    })
}

/// The request span of a request whose parent is not sampled: no OTel span
/// is built, no attribute either.
fn unsampled_span<B>(req: RequestInfo<'_, B>, parent: &SpanContext) -> RequestSpan {
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
    let cx = w3c_context(req.req.headers(), Some(own)).expect("a span context was given");
    RequestSpan::new(req, cx)
}

/// Starts the OTel server span of `req` under `parent` (the current OTel
/// context when the request carries none), with every attribute known
/// before the response, so that samplers see them.
fn server_span<B>(
    info: RequestInfo<'_, B>,
    source: &SpanSource,
    parent: Option<opentelemetry::Context>,
) -> RequestSpan {
    if matches!(source, SpanSource::Disabled) {
        // No span to describe: no attribute is built.
        let cx = parent.unwrap_or_else(opentelemetry::Context::current);
        return RequestSpan::new(info, cx);
    }
    let RequestInfo { req, method, .. } = info;
    let (name, route) = name_and_route(method, info.route);
    let mut attributes = Vec::with_capacity(8);
    attributes.push(KeyValue::new(HTTP_REQUEST_METHOD, method.as_str()));
    if method.is_other() {
        attributes.push(KeyValue::new(HTTP_REQUEST_METHOD_ORIGINAL, req.method().as_str().to_owned()));
    }
    if let Some(route) = route {
        attributes.push(KeyValue::new(HTTP_ROUTE, route));
    }
    attributes.push(KeyValue::new(URL_PATH, req.uri().path().to_owned()));
    attributes.push(KeyValue::new(URL_SCHEME, scheme_of(req.uri())));
    attributes.push(KeyValue::new(NETWORK_PROTOCOL_VERSION, protocol_version(req.version())));
    if let Some(agent) = req.headers().get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        attributes.push(KeyValue::new(USER_AGENT_ORIGINAL, agent.to_owned()));
    }
    if let Some(id) = req.extensions().get::<RequestId>() {
        attributes.push(KeyValue::new(REQUEST_ID, id.as_str().to_owned()));
    }
    let builder = SpanBuilder {
        span_kind: Some(SpanKind::Server),
        attributes: Some(attributes),
        ..SpanBuilder::from_name(name)
    };
    let cx = match parent {
        Some(parent) => source.start(builder, &parent),
        // A clone, not `map_current`: the sampler and span processors may
        // attach contexts of their own while the span starts.
        None => source.start(builder, &opentelemetry::Context::current()),
    };
    RequestSpan::new(info, cx)
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
    ($level:expr, $parent:expr, $($field:tt)*) => {
        match $level {
            Level::ERROR => tracing::event!(target: "tower_observability::access", parent: $parent, Level::ERROR, $($field)*),
            Level::WARN => tracing::event!(target: "tower_observability::access", parent: $parent, Level::WARN, $($field)*),
            Level::INFO => tracing::event!(target: "tower_observability::access", parent: $parent, Level::INFO, $($field)*),
            Level::DEBUG => tracing::event!(target: "tower_observability::access", parent: $parent, Level::DEBUG, $($field)*),
            Level::TRACE => tracing::event!(target: "tower_observability::access", parent: $parent, Level::TRACE, $($field)*),
        }
    };
}

impl Access {
    /// Emits the access log event inside the request's span: given as its
    /// parent, not entered (an entry costs a registry lookup per layer).
    fn log(&self, span: &RequestSpan, status: Option<StatusCode>, error: Option<ErrorType>) {
        let route = self.route.as_ref().map_or(crate::UNMATCHED_ROUTE, OwnedRoute::as_str);
        access_event!(
            self.level,
            &span.span,
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
    /// The request span running in `cx`, with the `tracing` span (target
    /// `tower_observability::request`) that carries its correlation.
    fn new<B>(info: RequestInfo<'_, B>, cx: opentelemetry::Context) -> Self {
        let request_id = info.req.extensions().get::<RequestId>();
        // Made inside `cx`: a `tracing-opentelemetry` layer that does not
        // leave the target out makes it a child of the server span (or
        // drops it, unsampled), never a trace of its own, and nothing a
        // handler records under it leaves the trace.
        let span = {
            let _cx = cx.clone().attach();
            tracing::info_span!(
                target: "tower_observability::request",
                "HTTP request",
                http.request.method = info.method.as_str(),
                http.route = info.route,
                request_id = request_id.map(RequestId::as_str),
            )
        };
        correlation::attach(&span, request_id, &cx);
        Self { span, cx: Some(cx) }
    }

    /// No span: the request is not traced by this layer.
    fn none() -> Self {
        Self { span: Span::none(), cx: None }
    }

    /// The OTel context of the request.
    fn otel_context(&self) -> opentelemetry::Context {
        self.cx.clone().unwrap_or_default()
    }

    /// Records how the request ended on the OTel span (a no-op on a span
    /// that is not recording) and ends it now.
    fn end(&self, status: Option<StatusCode>, error: Option<ErrorType>) {
        let Some(cx) = &self.cx else { return };
        let span = cx.span();
        if let Some(status) = status {
            span.set_attribute(KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status.as_u16())));
        }
        if let Some(error) = error {
            span.set_attribute(KeyValue::new(ERROR_TYPE, error.as_str().to_owned()));
            span.set_status(Status::error(""));
        }
        span.end();
    }

    /// Runs `f` inside the `tracing` span, with the OTel context attached.
    #[inline]
    fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        let _entered = super::bridge::enter_attached(&self.span);
        let _cx = self.cx.as_ref().map(|cx| cx.clone().attach());
        f()
    }
}

impl fmt::Debug for RequestSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSpan").field("span", &self.span).field("traced", &self.cx.is_some()).finish()
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
        let route = route_of(req.extensions());
        let (span, access) = if self.exclude.excludes(route) || stack::foreign(req.extensions(), self.stack) {
            (RequestSpan::none(), None)
        } else {
            let method = KnownMethod::of(req.method());
            // The clock is read only when the access log needs it.
            let access = self.options.access_log.map(|level| Access {
                start: Instant::now(),
                method,
                route: OwnedRoute::of(req.extensions()),
                level,
            });
            let span = make_span(&req, method, route, self.propagator.as_deref(), &self.source, self.options);
            (span, access)
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
                if let Some(access) = this.access.take() {
                    access.log(&span, None, Some(ErrorType::ClientAbort));
                }
                span.end(None, Some(ErrorType::ClientAbort));
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
                if let Some(access) = this.access.take() {
                    access.log(&span, None, error);
                }
                span.end(None, error);
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
        if let Some(access) = &self.access {
            access.log(&self.span, Some(self.status), error);
        }
        // Ends the OTel span now, at the body's end; the SDK hands it to
        // the span processors.
        self.span.end(Some(self.status), error);
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
            let theirs = sdk.extract(&CheckedExtractor::new(&map));
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
        let svc = layer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
        }));
        let req = Request::builder()
            .header("x-test-parent", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7")
            .body(())
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

        let svc = HttpTraceLayer::new().without_spans().layer(tower::service_fn(|_: Request<()>| async {
            let cx = opentelemetry::Context::current();
            let seen = (cx.span().span_context().clone(), cx.span().is_recording());
            Ok::<_, std::convert::Infallible>(Response::new(format!("{seen:?}")))
        }));
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let req = Request::builder().header("traceparent", tp).body(()).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{body}");
        assert!(body.contains("00f067aa0ba902b7"), "the caller's span, passed on: {body}");
        assert!(body.ends_with("false)"), "nothing records: {body}");
    }

    #[test]
    fn span_names_are_formatted_once_per_route_and_method() {
        let get = KnownMethod::of(&http::Method::GET);
        let post = KnownMethod::of(&http::Method::POST);
        fn name(method: KnownMethod, route: Option<&str>) -> Cow<'static, str> {
            name_and_route(method, route).0
        }
        let first = name(get, Some("/names/{id}"));
        assert!(matches!(first, Cow::Borrowed("GET /names/{id}")), "{first:?}");
        let again = name(get, Some("/names/{id}"));
        assert_eq!(again.as_ptr(), first.as_ptr(), "formatted once, then reused");
        assert_eq!(name(post, Some("/names/{id}")), "POST /names/{id}");
        assert_eq!(name(get, None), "GET");
        let route = name_and_route(get, Some("/names/{id}")).1.expect("a route");
        assert_eq!(route.as_str(), "/names/{id}");
        // A template too long to keep is formatted per request (the table
        // is far from full here: only this test fills it).
        let long = format!("/{}", "x".repeat(MAX_SPAN_NAME_ROUTE_LEN));
        assert_eq!(name(get, Some(&long)), format!("GET {long}"));
        assert!(route_names(&long).is_none());
        assert!(route_names(&long[..MAX_SPAN_NAME_ROUTE_LEN]).is_some(), "the longest kept");
        // Past the cap (other tests share the table), names are still right,
        // formatted per request.
        for i in 0..MAX_SPAN_NAME_ROUTES + 5 {
            let route = format!("/cap/{i}");
            assert_eq!(name(get, Some(&route)), format!("GET {route}"), "past the cap too");
        }
        assert!(SPAN_NAMES.read().unwrap().len() <= MAX_SPAN_NAME_ROUTES, "bounded");
        assert!(matches!(name(get, Some("/cap/unseen-past-the-cap")), Cow::Owned(_)));
    }
}
