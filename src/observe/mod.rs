//! The one pass every layer of the crate runs: [`Observe`], a service that
//! builds the request's [`RequestContext`] once, runs its parts (request id,
//! span, metrics, cache outcome) in the order the request flows, wraps the
//! response body once, and finishes every part from one end-of-body event.
//!
//! Each public layer is a part: [`SetRequestIdLayer`], [`HttpTraceLayer`],
//! [`HttpMetricsLayer`] and [`RecordCacheStatusLayer`] make an `Observe`
//! service with their part alone; [`ObservabilityLayer`] composes them into
//! one `Observe` service that runs all of them in one pass. Stacked by hand,
//! the parts share the context the outermost one builds (it travels in the
//! request extensions), so a hand-built stack gives the signals the
//! composite gives.
//!
//! ```text
//! request ──> RequestContext (start, method, route, scheme, protocol)
//!         ──> parts, in order: request id -> span -> metrics -> cache
//!         ──> inner service
//!         ──> response head: cache outcome, error marks, response headers
//!         ──> ResponseBody (one wrapper) ──> end: complete | error | aborted
//!               └─> one classification (ErrorType), then every part ends:
//!                   metrics and windows, span, access log
//! ```
//!
//! [`SetRequestIdLayer`]: crate::request_id::SetRequestIdLayer
//! [`HttpTraceLayer`]: crate::trace::HttpTraceLayer
//! [`HttpMetricsLayer`]: crate::metrics::HttpMetricsLayer
//! [`RecordCacheStatusLayer`]: crate::cache::RecordCacheStatusLayer
//! [`ObservabilityLayer`]: crate::ObservabilityLayer

mod future;
mod overhead;
mod service;

use std::{
    ops::{Deref, DerefMut},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use http::{HeaderValue, Request, Response, StatusCode};

pub use self::overhead::{LayerOverhead, SAMPLE_EVERY, layer_overhead};
pub use self::{
    future::{Finish, ResponseFuture},
    service::Observe,
};
use crate::{
    address::TrustedProxies,
    classify::{End, ErrorType, StatusClassifier},
    context::RequestContext,
    grpc::Code,
    labeler::Labeler,
    recorder::MetricsRecorder,
    route::RouteTable,
};

/// A part's table of routes, each entry made with `make` on the route's
/// first request.
pub(crate) type Routes<T> = RouteTable<Routed<T>>;

/// The entry of the route template `template` (`None`: matched no route)
/// in `routes`.
#[inline]
pub(crate) fn route_in<T>(
    routes: &Routes<T>,
    template: Option<&str>,
    make: impl FnOnce(&str) -> T,
) -> Arc<Routed<T>> {
    routes.get(template, |label| Routed::new(make(label)))
}

/// The response body of an [`Observe`] service.
pub type ResponseBody<B, St> = crate::body::ResponseBody<B, Finish<St>>;

/// One part of the per-request pass (see the [module docs](self)).
///
/// Hooks run in this order: [`on_request`](Self::on_request) before the
/// inner service is called; [`in_scope`](Self::in_scope) around every poll
/// of its response future; [`on_response`](Self::on_response) on the
/// response head; [`on_end`](Self::on_end) once, when the response body
/// ends, fails or is dropped, the inner service fails, or the future is
/// dropped first.
pub(crate) trait Stage: Clone + Send + Sync + 'static {
    /// What the part keeps per route label, made once per label.
    type Route: Send + Sync + 'static;
    /// What the part keeps from the request to the end of its response.
    type Pending: Send + 'static;
    /// How the request's state (its context, route entry and `Pending`) is
    /// held by the response future and body: [`Inline`] for a small state
    /// (no allocation), `Box` for a large one, so that the future and the
    /// body move a pointer instead of copying the state at every move.
    type Held<T: Send + 'static>: Held<T>;

    /// Whether the layer passes the request's context on in its extensions,
    /// for the crate's layers inside it and for the handler. The metrics
    /// and cache parts used alone do not: it would be their only allocation
    /// per request. They still read a context an outer layer passed on.
    const PASSES_CONTEXT: bool = true;

    /// The entry of the route template `template` (`None`: matched no
    /// route) in the part's table (shared by the layer's clones), made on
    /// its first request.
    fn route(&self, template: Option<&str>) -> Arc<Routed<Self::Route>>;

    /// Which statuses are errors.
    fn classifier(&self) -> StatusClassifier;

    /// The proxies whose headers tell the request's original scheme (and
    /// client and host); `None` when no proxy is trusted.
    #[inline]
    fn proxies(&self) -> Option<&TrustedProxies> {
        None
    }

    /// The recorder the part registers its series with, when not the
    /// `metrics` facade's.
    #[inline]
    fn recorder(&self) -> Option<&MetricsRecorder> {
        None
    }

    /// A new [`Labeler`] for a request, when the part gives requests one.
    #[inline]
    fn labeler(&self) -> Option<Labeler> {
        None
    }

    /// Whether the end needs the instant of the first response byte.
    fn wants_first_byte(&self) -> bool {
        false
    }

    /// Reads (and adds to) the request's facts; `observed` is false for a
    /// route the crate learned to leave alone (the monitoring routes).
    fn on_request<B: http_body::Body + 'static>(
        &mut self,
        cx: &mut RequestContext,
        route: &Self::Route,
        observed: bool,
        req: &mut Request<B>,
    ) -> Self::Pending;

    /// Runs a poll of the inner future (the part's span entered).
    #[inline]
    fn in_scope<T>(pending: &Self::Pending, poll: impl FnOnce() -> T) -> T {
        let _ = pending;
        poll()
    }

    /// Reads (and adds to) the response head.
    #[inline]
    fn on_response<B>(
        pending: &mut Self::Pending,
        route: &Self::Route,
        cx: &RequestContext,
        res: &mut Response<B>,
    ) {
        let _ = (pending, route, cx, res);
    }

    /// The request is over: called exactly once per request.
    fn on_end(pending: Self::Pending, route: &Self::Route, cx: &RequestContext, finished: &Finished);
}

/// How a [`Stage`] holds its request state: [`Inline`] or `Box`.
pub(crate) trait Held<T>: Send + DerefMut<Target = T> {
    fn new(value: T) -> Self;
    fn into_inner(self) -> T;
}

impl<T: Send> Held<T> for Box<T> {
    #[inline]
    fn new(value: T) -> Self {
        Box::new(value)
    }

    #[inline]
    fn into_inner(self) -> T {
        *self
    }
}

/// A request state held in the future and the body themselves.
#[derive(Debug)]
pub(crate) struct Inline<T>(T);

impl<T> Deref for Inline<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Inline<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Send> Held<T> for Inline<T> {
    #[inline]
    fn new(value: T) -> Self {
        Self(value)
    }

    #[inline]
    fn into_inner(self) -> T {
        self.0
    }
}

/// How a request ended, classified once, as every part reads it.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    /// When it ended: one clock reading for every part.
    pub(crate) at: Instant,
    /// The status of the response, `None` without one.
    pub(crate) status: Option<StatusCode>,
    /// Why it failed, `None` when it did not.
    pub(crate) error: Option<ErrorType>,
    /// Bytes of the response body that went out.
    pub(crate) response_bytes: u64,
    /// When the first byte of the body went out, when a part asked.
    pub(crate) first_byte: Option<Instant>,
    /// False for a response of the monitoring routes: nothing is recorded.
    pub(crate) observed: bool,
    /// How a gRPC call ended; `None` for an HTTP request.
    pub(crate) rpc: Option<RpcEnd>,
}

/// How a gRPC call ended.
#[derive(Debug, Clone)]
pub(crate) struct RpcEnd {
    /// Its status code.
    pub(crate) code: Code,
    /// Its raw `grpc-message`, when it was not `OK`.
    pub(crate) message: Option<HeaderValue>,
}

impl Finished {
    /// A request of `cx` that ended without a response.
    pub(crate) fn without_response(end: End, cx: &RequestContext, observed: bool) -> Self {
        let at = Instant::now();
        let (error, rpc) = match cx.rpc() {
            None => (end.error(StatusClassifier::default(), None, None), None),
            Some(call) => {
                let deadline = call.deadline_passed(at.saturating_duration_since(cx.start()));
                let (code, error) = end.rpc(None, None, None, deadline);
                (error, Some(RpcEnd { code, message: None }))
            }
        };
        Self { at, status: None, error, response_bytes: 0, first_byte: None, observed, rpc }
    }
}

/// A route's entry in a part's table: the part's state, and whether the
/// crate learned to leave the route alone.
#[derive(Debug)]
pub(crate) struct Routed<T> {
    unobserved: AtomicBool,
    pub(crate) state: T,
}

impl<T> Routed<T> {
    pub(crate) fn new(state: T) -> Self {
        Self { unobserved: AtomicBool::new(false), state }
    }

    #[inline]
    fn observed(&self) -> bool {
        !self.unobserved.load(Ordering::Relaxed)
    }
}

/// Put in the response extensions by the routes that must never be
/// observed (the monitoring routes): the layer that sees it records
/// nothing of the request, and leaves the route alone from then on.
///
/// It covers the case where the monitoring routes sit inside an
/// application's layer under a prefix the layer was not told of (a
/// `.nest("/ops", monitoring)` before `.layer(..)`); at the root, the
/// layer of [`Observability`](crate::Observability) knows their templates
/// and leaves them alone from the first request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unobserved;
