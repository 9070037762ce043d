use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;

use super::{CacheStatus, layer::Shared};
use crate::classify::OwnedRoute;

/// What a request needs to record its outcome.
pub(super) struct Pending {
    pub(super) shared: Arc<Shared>,
    /// Looked up in the route table only when a cache status is found.
    pub(super) route: Option<OwnedRoute>,
}

pin_project! {
    /// Response future of [`CacheStatusService`](super::CacheStatusService).
    ///
    /// Records the outcome when the inner service's response is ready; an
    /// error, or a future dropped first, records nothing.
    pub struct ResponseFuture<F> {
        #[pin]
        pub(super) inner: F,
        pub(super) pending: Option<Pending>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Ok(res), Some(pending)) = (&result, this.pending.take()) {
            let status = res
                .extensions()
                .get::<CacheStatus>()
                .copied()
                .or_else(|| CacheStatus::from_headers(res.headers(), Some(pending.shared.member())));
            if let Some(status) = status {
                let route = pending.shared.route(pending.route.as_ref().map(OwnedRoute::as_str));
                pending.shared.record(&route, status);
            }
        }
        Poll::Ready(result)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
