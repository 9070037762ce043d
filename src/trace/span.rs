//! Building the server span of a request: its source (tracer), name,
//! attributes and parent, and the `tracing` span that carries its
//! correlation for log lines.

use std::{
    borrow::Cow,
    collections::HashMap,
    fmt,
    sync::{Arc, LazyLock, OnceLock, PoisonError, RwLock},
};

use http::{Request, StatusCode};
use opentelemetry::{
    InstrumentationScope, KeyValue, StringValue,
    global::BoxedTracer,
    propagation::TextMapPropagator,
    trace::{SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceId, Tracer},
};
#[cfg(feature = "telemetry")]
use opentelemetry_sdk::trace::SdkTracer;
use tracing::Span;

use super::{
    attributes::AttributeConfig,
    correlation,
    propagation::{CheckedExtractor, w3c_context, w3c_parent},
    sampling::{RouteSampling, force_sampled},
};
use crate::{
    classify::ErrorType,
    context::RequestContext,
    panic::CaughtPanic,
    request_id::RequestId,
    semconv::{
        self, ERROR_TYPE, EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE, EXCEPTION_TYPE, HTTP_REQUEST_METHOD,
        HTTP_REQUEST_METHOD_ORIGINAL, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, KnownMethod,
        NETWORK_PROTOCOL_VERSION, REQUEST_ID, URL_SCHEME,
    },
};

/// The instrumentation scope of the spans this crate makes.
pub(crate) fn instrumentation_scope() -> InstrumentationScope {
    InstrumentationScope::builder("tower-observability").with_version(env!("CARGO_PKG_VERSION")).build()
}

/// Where a layer's server spans are made.
#[derive(Clone)]
pub(super) enum SpanSource {
    /// The global tracer provider's tracer, asked for on the first request
    /// traced (shared by every service of one layer).
    Global(Arc<OnceLock<BoxedTracer>>),
    /// A tracer given to the layer, boxed.
    Boxed(Arc<BoxedTracer>),
    /// A tracer of the SDK: its spans are not boxed.
    #[cfg(feature = "telemetry")]
    Sdk(SdkTracer),
    /// No tracer (`OTEL_SDK_DISABLED=true`): no span is built; the request
    /// runs in its caller's context, which propagation passes on.
    Disabled,
}

impl SpanSource {
    pub(super) fn global() -> Self {
        Self::Global(Arc::new(OnceLock::new()))
    }

    /// The source of `tracer`'s spans: without a box for the SDK's tracer.
    pub(super) fn of<T>(tracer: T) -> Self
    where
        T: Tracer + Send + Sync + 'static,
        T::Span: Send + Sync + 'static,
    {
        #[cfg(feature = "telemetry")]
        let tracer = match (Box::new(tracer) as Box<dyn std::any::Any>).downcast::<SdkTracer>() {
            Ok(sdk) => return Self::Sdk(*sdk),
            Err(other) => *other.downcast::<T>().expect("the type it was made from"),
        };
        Self::Boxed(Arc::new(BoxedTracer::new(Box::new(tracer))))
    }

    /// Starts a span in `parent`; the context returned holds it (and the
    /// parent's other entries, such as baggage).
    fn start(&self, builder: SpanBuilder, parent: &opentelemetry::Context) -> opentelemetry::Context {
        match self {
            #[cfg(feature = "telemetry")]
            Self::Sdk(tracer) => parent.with_span(tracer.build_with_context(builder, parent)),
            Self::Boxed(tracer) => parent.with_span(tracer.build_with_context(builder, parent)),
            Self::Global(tracer) => {
                let tracer =
                    tracer.get_or_init(|| opentelemetry::global::tracer_with_scope(instrumentation_scope()));
                parent.with_span(tracer.build_with_context(builder, parent))
            }
            Self::Disabled => parent.clone(),
        }
    }
}

impl fmt::Debug for SpanSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Global(_) => "Global",
            Self::Boxed(_) => "Boxed",
            #[cfg(feature = "telemetry")]
            Self::Sdk(_) => "Sdk",
            Self::Disabled => "Disabled",
        })
    }
}

/// `{method} {route}`, or `{method}` without a route; `HTTP` stands for an
/// unknown method (OTel HTTP semconv, span name).
struct SpanName<'a> {
    method: KnownMethod,
    route: Option<&'a str>,
}

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.route {
            Some(route) => write!(f, "{} {route}", self.method.span_name()),
            None => f.write_str(self.method.span_name()),
        }
    }
}

/// A route template kept for the life of the process, with its span names,
/// one per method, formatted on first use.
#[derive(Debug)]
pub(super) struct RouteNames {
    route: &'static str,
    names: [OnceLock<&'static str>; KnownMethod::COUNT],
}

/// How many route templates keep their span names for the life of the
/// process (all of them, in any real router); past it, names are formatted
/// per request.
pub(super) const MAX_SPAN_NAME_ROUTES: usize = 1024;

/// The longest route template kept: with at most
/// [`MAX_SPAN_NAME_ROUTES`] of them, the table stays under 3 MiB whatever
/// a misconfigured `HttpRoute` holds.
pub(super) const MAX_SPAN_NAME_ROUTE_LEN: usize = 256;

type Interned = RwLock<HashMap<&'static str, &'static RouteNames, foldhash::fast::RandomState>>;

/// Route templates and their span names, shared by every layer: a span
/// name must be `'static` to go into a span without a copy, and a template
/// comes from the code; the caps bound the memory whatever `HttpRoute` a
/// misconfigured layer inserts. Read once per route of a layer, when the
/// layer first sees the route.
static SPAN_NAMES: LazyLock<Interned> = LazyLock::new(RwLock::default);

/// The kept names of `route`; `None` past the caps.
pub(super) fn route_names(route: &str) -> Option<&'static RouteNames> {
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
pub(super) fn name_and_route(
    method: KnownMethod,
    route: Option<&str>,
    kept: Option<&'static RouteNames>,
) -> (Cow<'static, str>, Option<StringValue>) {
    let Some(route) = route else { return (Cow::Borrowed(method.span_name()), None) };
    match kept {
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

/// The request's span: the OTel context it runs in (holding the server
/// span, or for a parent that is not sampled, a non-recording span that
/// stands for this server) and a `tracing` span carrying its
/// [`Correlation`](super::Correlation), for log lines.
pub(super) struct RequestSpan {
    pub(super) span: Span,
    pub(super) cx: opentelemetry::Context,
    /// Whether the OTel span records: read once, as the SDK's span answers
    /// it under a lock.
    pub(super) recording: bool,
}

/// What [`start`] needs of the layer.
pub(super) struct SpanOptions<'a> {
    pub(super) propagator: Option<&'a (dyn TextMapPropagator + Send + Sync)>,
    pub(super) source: &'a SpanSource,
    pub(super) follow_parent_sampling: bool,
    pub(super) kept: Option<&'static RouteNames>,
    pub(super) sampling: Option<RouteSampling>,
    pub(super) attributes: &'a AttributeConfig,
}

/// Opens the span of `req`, its parent set from the request headers.
///
/// With the default (W3C) propagator, `traceparent` is parsed once, here:
/// the same reading decides sampling and parents the span.
pub(super) fn start<B>(req: &Request<B>, cx: &RequestContext, options: &SpanOptions<'_>) -> RequestSpan {
    if let Some(propagator) = options.propagator {
        // Asked every time: the headers it reads are its own (B3, Jaeger...).
        let parent = propagator.extract(&CheckedExtractor::new(req.headers()));
        if options.sampling == Some(RouteSampling::Never) {
            let parent = parent.has_active_span().then(|| parent.span().span_context().clone());
            return unsampled_span(req, cx, parent.as_ref());
        }
        return server_span(req, cx, options, Some(parent));
    }
    let parent = w3c_parent(req.headers());
    let unsampled = match options.sampling {
        Some(RouteSampling::Never) => true,
        Some(RouteSampling::Always) => false,
        None => options.follow_parent_sampling && parent.as_ref().is_some_and(|p| !p.is_sampled()),
    };
    if unsampled {
        return unsampled_span(req, cx, parent.as_ref());
    }
    server_span(req, cx, options, w3c_context(req.headers(), parent))
}

/// The request span of a request that is not sampled (its parent is not,
/// or its route never is): no OTel span is built, no attribute either.
fn unsampled_span<B>(req: &Request<B>, cx: &RequestContext, parent: Option<&SpanContext>) -> RequestSpan {
    // The non-recording span that stands for this server: the caller's
    // trace (or a new one), a span id of its own, not sampled (what the SDK
    // makes when a sampler drops a span).
    let own = match parent {
        Some(parent) => SpanContext::new(
            parent.trace_id(),
            random_span_id(),
            parent.trace_flags().with_sampled(false),
            false,
            parent.trace_state().clone(),
        ),
        None => SpanContext::new(
            random_trace_id(),
            random_span_id(),
            opentelemetry::trace::TraceFlags::default(),
            false,
            opentelemetry::trace::TraceState::default(),
        ),
    };
    let otel = w3c_context(req.headers(), Some(own)).expect("a span context was given");
    RequestSpan::new(req, cx, otel, false)
}

/// A random, valid span id (W3C Trace Context: not all zeros), from the
/// thread-local generator the request ids use.
fn random_span_id() -> SpanId {
    loop {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let id: [u8; 8] = bytes[..8].try_into().expect("8 of 16 bytes");
        if id != [0; 8] {
            return SpanId::from_bytes(id);
        }
    }
}

/// A random, valid trace id, as [`random_span_id`].
fn random_trace_id() -> TraceId {
    loop {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        if bytes != [0; 16] {
            return TraceId::from_bytes(bytes);
        }
    }
}

/// Starts the OTel server span of `req` under `parent` (the current OTel
/// context when the request carries none), with every attribute known
/// before the response, so that samplers see them.
fn server_span<B>(
    req: &Request<B>,
    cx: &RequestContext,
    options: &SpanOptions<'_>,
    parent: Option<opentelemetry::Context>,
) -> RequestSpan {
    if matches!(options.source, SpanSource::Disabled) {
        // No span to describe: no attribute is built.
        let otel = parent.unwrap_or_else(opentelemetry::Context::current);
        return RequestSpan::new(req, cx, otel, false);
    }
    if let Some(call) = cx.rpc() {
        let parent = parent.unwrap_or_else(opentelemetry::Context::current);
        let otel = options.source.start(super::rpc::builder(req, call), &parent);
        let recording = otel.span().is_recording();
        return RequestSpan::new(req, cx, otel, recording);
    }
    let method = cx.known_method();
    let (name, route) = name_and_route(method, cx.route_name().template(), options.kept);
    let limit = options.attributes.value_limit;
    let mut attributes = Vec::with_capacity(16);
    attributes.push(KeyValue::new(HTTP_REQUEST_METHOD, method.as_str()));
    if method.as_str() != req.method().as_str() {
        let original = semconv::capped(req.method().as_str(), limit);
        attributes.push(KeyValue::new(HTTP_REQUEST_METHOD_ORIGINAL, original.to_owned()));
    }
    if let Some(route) = route {
        attributes.push(KeyValue::new(HTTP_ROUTE, route));
    }
    attributes.push(KeyValue::new(URL_SCHEME, cx.scheme()));
    attributes.push(KeyValue::new(NETWORK_PROTOCOL_VERSION, semconv::protocol_version(req.version())));
    options.attributes.request(req, &mut attributes);
    if let Some(id) = req.extensions().get::<RequestId>() {
        attributes.push(KeyValue::new(REQUEST_ID, id.as_str().to_owned()));
    }
    let builder = SpanBuilder {
        span_kind: Some(SpanKind::Server),
        attributes: Some(attributes),
        ..SpanBuilder::from_name(name)
    };
    // A clone, not `map_current`: the sampler and span processors may
    // attach contexts of their own while the span starts.
    let parent = parent.unwrap_or_else(opentelemetry::Context::current);
    let otel = if options.sampling == Some(RouteSampling::Always) {
        // The mark stays in the context the handler runs in: its own spans
        // are children of a sampled span, sampled by their parent anyway.
        options.source.start(builder, &force_sampled(&parent))
    } else {
        options.source.start(builder, &parent)
    };
    let recording = otel.span().is_recording();
    RequestSpan::new(req, cx, otel, recording)
}

impl RequestSpan {
    /// The request span running in `otel`, with the `tracing` span (target
    /// `tower_observability::request`) that carries its correlation.
    fn new<B>(req: &Request<B>, cx: &RequestContext, otel: opentelemetry::Context, recording: bool) -> Self {
        let request_id = req.extensions().get::<RequestId>();
        // Made inside `otel`: a `tracing-opentelemetry` layer that does not
        // leave the target out makes it a child of the server span (or
        // drops it, unsampled), never a trace of its own, and nothing a
        // handler records under it leaves the trace.
        let span = {
            let _cx = otel.clone().attach();
            tracing::info_span!(
                target: "tower_observability::request",
                "HTTP request",
                http.request.method = cx.method(),
                http.route = cx.route_name().template(),
                request_id = request_id.map(RequestId::as_str),
            )
        };
        correlation::attach(&span, request_id, &otel);
        Self { span, cx: otel, recording }
    }

    /// Records a panic the response says was caught as an `exception` event
    /// (OTel semconv v1.44, "Exceptions").
    pub(super) fn record_panic(&self, caught: &CaughtPanic, limit: usize) {
        let mut attributes = vec![
            KeyValue::new(EXCEPTION_TYPE, "panic"),
            KeyValue::new(EXCEPTION_MESSAGE, semconv::capped(&caught.message, limit).to_owned()),
        ];
        if let Some(stacktrace) = &caught.stacktrace {
            attributes.push(KeyValue::new(EXCEPTION_STACKTRACE, stacktrace.clone()));
        }
        self.cx.span().add_event("exception", attributes);
    }

    /// Records how the request ended on the OTel span (a no-op on a span
    /// that is not recording) and ends it now.
    pub(super) fn end(&self, status: Option<StatusCode>, error: Option<ErrorType>) {
        let span = self.cx.span();
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
    pub(super) fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        let _entered = super::bridge::enter_attached(&self.span);
        let _cx = self.cx.clone().attach();
        f()
    }
}

impl fmt::Debug for RequestSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSpan").field("span", &self.span).finish_non_exhaustive()
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

    #[test]
    fn span_names_are_formatted_once_per_route_and_method() {
        let get = KnownMethod::of(&http::Method::GET);
        let post = KnownMethod::of(&http::Method::POST);
        fn name(method: KnownMethod, route: Option<&str>) -> Cow<'static, str> {
            name_and_route(method, route, route.and_then(route_names)).0
        }
        let first = name(get, Some("/names/{id}"));
        assert!(matches!(first, Cow::Borrowed("GET /names/{id}")), "{first:?}");
        let again = name(get, Some("/names/{id}"));
        assert_eq!(again.as_ptr(), first.as_ptr(), "formatted once, then reused");
        assert_eq!(name(post, Some("/names/{id}")), "POST /names/{id}");
        assert_eq!(name(get, None), "GET");
        let route = name_and_route(get, Some("/names/{id}"), route_names("/names/{id}")).1.expect("a route");
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
