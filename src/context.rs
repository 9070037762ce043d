//! [`RequestContext`]: the facts of one request, found once and read by
//! every signal.

use std::time::Instant;

use http::{Request, Version};
use opentelemetry::trace::{SpanContext, SpanId, TraceId};

use crate::{
    address::{self, TrustedProxies},
    grpc::RpcCall,
    labeler::Labeler,
    route::{self, RouteName, Untemplated},
    semconv::{self, KnownMethod},
};

/// The facts of one request: when it started, its method, route, scheme and
/// protocol, and its trace and span ids once the trace layer made its span.
///
/// The outermost of the crate's layers computes them once, before calling
/// the inner service, and every signal reads them from there: metrics, span,
/// access log, in-process windows and cache outcome agree because they read
/// one value. A copy travels in the request extensions, where inner layers
/// of the crate stacked by hand find it (so that they time and label the
/// request as the outer ones do) and where a handler can read it.
///
/// Each layer of the crate runs its part at most once per request: a layer
/// that finds its part already done by an outer layer passes the request on
/// untouched. Applying [`ObservabilityLayer`](crate::ObservabilityLayer)
/// twice around the same route observes its requests once.
///
/// # Example
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use tower_observability::{ObservabilityLayer, RequestContext};
///
/// async fn handler(Extension(cx): Extension<RequestContext>) -> String {
///     format!("{} {}", cx.method(), cx.route())
/// }
///
/// let app: Router = Router::new().route("/users/{id}", get(handler)).layer(ObservabilityLayer::new());
/// ```
#[derive(Debug, Clone)]
pub struct RequestContext {
    start: Instant,
    method: KnownMethod,
    https: bool,
    version: Version,
    is_head: bool,
    route: RouteName,
    span: Option<SpanIds>,
    labeler: Option<Labeler>,
    done: Parts,
    /// The gRPC call, for a gRPC request (see [`crate::grpc`]).
    /// Boxed: plain HTTP requests carry a pointer, not the call's 64 bytes,
    /// through every move of the request's state.
    rpc: Option<Box<RpcCall>>,
}

/// The ids of a request's server span, and whether it is sampled.
#[derive(Debug, Clone, Copy)]
struct SpanIds {
    trace_id: TraceId,
    span_id: SpanId,
    sampled: bool,
}

/// Which parts of the per-request pass already ran for a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Parts(u8);

impl Parts {
    pub(crate) const REQUEST_ID: Self = Self(1);
    pub(crate) const TRACE: Self = Self(1 << 1);
    pub(crate) const METRICS: Self = Self(1 << 2);
    pub(crate) const CACHE: Self = Self(1 << 3);
}

impl RequestContext {
    /// The context of `req`: the copy an outer layer of the crate left in its
    /// extensions, or a new one read from the request now.
    #[inline]
    pub(crate) fn of<B>(
        req: &Request<B>,
        untemplated: &Untemplated,
        proxies: Option<&TrustedProxies>,
    ) -> Self {
        if let Some(cx) = req.extensions().get::<Self>() {
            return cx.clone();
        }
        Self {
            start: Instant::now(),
            method: KnownMethod::of(req.method()),
            https: match proxies {
                Some(proxies) if address::is_forwarded(req, proxies) => {
                    address::forwarded_server(req.headers())
                        .https
                        .unwrap_or_else(|| semconv::is_https(req.uri()))
                }
                _ => semconv::is_https(req.uri()),
            },
            version: req.version(),
            is_head: req.method() == http::Method::HEAD,
            route: route::resolve(req.extensions(), untemplated),
            span: None,
            labeler: None,
            done: Parts::default(),
            rpc: RpcCall::of(req).map(Box::new),
        }
    }

    /// The context of a request's extensions, when a layer of the crate saw
    /// it.
    pub fn get(extensions: &http::Extensions) -> Option<&Self> {
        extensions.get::<Self>()
    }

    /// When the first layer of the crate saw the request: durations run
    /// from here.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// `http.request.method`: the method, `_OTHER` for one that RFC 9110 and
    /// RFC 5789 do not define (OTel HTTP semconv).
    pub fn method(&self) -> &'static str {
        self.method.as_str()
    }

    /// `http.route`: the route template (`/users/{id}`), `_unmatched` for a
    /// request that matched no route; see [`crate::route`] for how it is
    /// found.
    pub fn route(&self) -> &str {
        self.route.label()
    }

    /// `url.scheme`: the scheme a trusted proxy says the client used
    /// (`Forwarded: proto=`, `X-Forwarded-Proto`), else `https` for an
    /// absolute-form `https` URI, else `http`.
    pub fn scheme(&self) -> &'static str {
        semconv::scheme_name(self.https)
    }

    /// `network.protocol.version`: `1.1`, `2`...
    pub fn protocol_version(&self) -> &'static str {
        semconv::protocol_version(self.version)
    }

    /// The W3C trace id of the request's server span (or of the
    /// non-recording span that stands for this server when the caller's
    /// trace is not sampled); `None` before the trace layer ran, or without
    /// one.
    pub fn trace_id(&self) -> Option<TraceId> {
        self.span.map(|ids| ids.trace_id)
    }

    /// The span id of the request's server span, as
    /// [`trace_id`](Self::trace_id).
    pub fn span_id(&self) -> Option<SpanId> {
        self.span.map(|ids| ids.span_id)
    }

    /// Whether the request's span is sampled (exported); `false` without
    /// one.
    pub fn is_sampled(&self) -> bool {
        self.span.is_some_and(|ids| ids.sampled)
    }

    /// The request's [`Labeler`], when a layer of the crate gave it one.
    pub fn labeler(&self) -> Option<&Labeler> {
        self.labeler.as_ref()
    }

    /// Gives the request `labeler`, unless an outer layer gave it one.
    #[inline]
    pub(crate) fn set_labeler(&mut self, labeler: Labeler) -> bool {
        if self.labeler.is_some() {
            return false;
        }
        self.labeler = Some(labeler);
        true
    }

    #[inline]
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    #[inline]
    pub(crate) fn known_method(&self) -> KnownMethod {
        self.method
    }

    #[inline]
    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    #[inline]
    pub(crate) fn is_head(&self) -> bool {
        self.is_head
    }

    #[inline]
    pub(crate) fn route_name(&self) -> &RouteName {
        &self.route
    }

    #[inline]
    pub(crate) fn set_span_context(&mut self, span: &SpanContext) {
        self.span =
            Some(SpanIds { trace_id: span.trace_id(), span_id: span.span_id(), sampled: span.is_sampled() });
    }

    /// The gRPC call the request makes, `None` for an HTTP request.
    #[inline]
    pub(crate) fn rpc(&self) -> Option<&RpcCall> {
        self.rpc.as_deref()
    }

    #[inline]
    pub(crate) fn rpc_mut(&mut self) -> Option<&mut RpcCall> {
        self.rpc.as_deref_mut()
    }

    /// Marks `part` as done; `false` when an outer layer did it already.
    #[inline]
    pub(crate) fn claim(&mut self, part: Parts) -> bool {
        if self.done.0 & part.0 != 0 {
            return false;
        }
        self.done.0 |= part.0;
        true
    }
}
