use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{CacheStatusLayer, ResponseFuture, future::Pending, layer::Shared};
use crate::classify::OwnedRoute;

/// Service made by [`CacheStatusLayer`]: records the cache outcome of each
/// response of `S`.
#[derive(Debug, Clone)]
pub struct CacheStatusService<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
    pub(super) stack: Option<crate::stack::StackId>,
}

impl<S> CacheStatusService<S> {
    /// Wraps `inner` with a new [`CacheStatusLayer`].
    pub fn new(inner: S) -> Self {
        CacheStatusLayer::new().layer(inner)
    }

    /// A new [`CacheStatusLayer`].
    pub fn layer() -> CacheStatusLayer {
        CacheStatusLayer::new()
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheStatusService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if crate::stack::foreign(req.extensions(), self.stack) {
            return ResponseFuture { inner: self.inner.call(req), pending: None };
        }
        let pending = Pending { shared: self.shared.clone(), route: OwnedRoute::of(req.extensions()) };
        ResponseFuture { inner: self.inner.call(req), pending: Some(pending) }
    }
}
