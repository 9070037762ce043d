//! Client side: carry the current trace and request id to the next service.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use opentelemetry::propagation::{Injector, TextMapPropagator};
use tower_layer::Layer;
use tower_service::Service;

use super::{Correlation, W3cPropagator};
use crate::request_id::X_REQUEST_ID;

/// Writes OTel propagation fields into an [`http::HeaderMap`]; values that
/// are not valid header values are skipped.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

/// Layer for HTTP *clients* that propagates the current context to outgoing
/// requests: W3C `traceparent`/`tracestate` and `baggage` from the current
/// span, and the current request's id as `x-request-id`.
///
/// Wrap the client (any `Service<http::Request<B>>`, e.g. hyper-util's
/// legacy `Client`) and call it from inside a request served through
/// [`ObservabilityLayer`](crate::ObservabilityLayer): the next service's span
/// becomes a child of this one's, in the same trace, and its logs carry the
/// same request id. A request id the caller set explicitly is kept.
///
/// # Example
///
/// ```
/// use http::Request;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_observability::trace::PropagateContextLayer;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let client = ServiceBuilder::new().layer(PropagateContextLayer::new()).service_fn(|req: Request<()>| async move {
///     // A real client sends `req` here, with its propagation headers.
///     Ok::<_, std::convert::Infallible>(req.headers().len())
/// });
/// client.oneshot(Request::new(())).await.unwrap();
/// # });
/// ```
#[derive(Clone)]
#[must_use]
pub struct PropagateContextLayer {
    propagator: Arc<dyn TextMapPropagator + Send + Sync>,
    request_id_header: Option<HeaderName>,
}

impl PropagateContextLayer {
    /// W3C Trace Context and Baggage ([`W3cPropagator`]), and `x-request-id`.
    pub fn new() -> Self {
        Self { propagator: Arc::new(W3cPropagator::new()), request_id_header: Some(X_REQUEST_ID) }
    }

    /// Injects with `propagator` instead.
    pub fn propagator(mut self, propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        self.propagator = Arc::new(propagator);
        self
    }

    /// Sends the request id in `header` (`None`: not at all).
    pub fn request_id_header(mut self, header: Option<HeaderName>) -> Self {
        self.request_id_header = header;
        self
    }
}

impl Default for PropagateContextLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PropagateContextLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateContextLayer")
            .field("request_id_header", &self.request_id_header)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for PropagateContextLayer {
    type Service = PropagateContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateContext { inner, layer: self.clone() }
    }
}

/// Service made by [`PropagateContextLayer`].
#[derive(Clone, Debug)]
pub struct PropagateContext<S> {
    inner: S,
    layer: PropagateContextLayer,
}

impl<S> PropagateContext<S> {
    /// Wraps `inner` with a new [`PropagateContextLayer`].
    pub fn new(inner: S) -> Self {
        PropagateContextLayer::new().layer(inner)
    }

    define_inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for PropagateContext<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let cx = super::correlation::current_otel_context();
        self.layer.propagator.inject_context(&cx, &mut HeaderInjector(req.headers_mut()));
        if let Some(header) = &self.layer.request_id_header
            && !req.headers().contains_key(header)
            && let Some(id) = Correlation::current().and_then(|c| c.request_id)
        {
            req.headers_mut().insert(header.clone(), id.header_value().clone());
        }
        self.inner.call(req)
    }
}
