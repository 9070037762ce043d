// `Stage` is the crate's own: its futures and bodies are public types whose
// parts are private.
#![allow(private_bounds)]

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use super::{Finished, Held, ResponseBody, Routed, RpcEnd, Stage, Unobserved};
use crate::{
    body::{self, BodyEnd, BodyObserver},
    classify::{End, ErrorType, StatusClassifier},
    context::RequestContext,
    grpc::{self, Code},
    recorder::MetricsRecorder,
};

/// What a request keeps until its response is ready.
pub(super) struct State<St: Stage> {
    /// The recorder the parts register with, when not the facade's.
    pub(super) recorder: Option<MetricsRecorder>,
    pub(super) cx: RequestContext,
    pub(super) route: Arc<Routed<St::Route>>,
    pub(super) pending: St::Pending,
    pub(super) classifier: StatusClassifier,
    pub(super) first_byte: bool,
    pub(super) observed: bool,
}

pin_project! {
    /// Response future of [`Observe`](super::Observe): polls the inner
    /// future inside the parts' scope (the request's span), then wraps the
    /// response body.
    ///
    /// Dropped before the response is ready (the client went away while the
    /// handler ran), it ends the request with `error_type="client_abort"`.
    pub struct ResponseFuture<F, St>
    where
        St: Stage,
    {
        #[pin]
        inner: F,
        state: Option<St::Held<State<St>>>,
    }

    impl<F, St> PinnedDrop for ResponseFuture<F, St>
    where
        St: Stage,
    {
        fn drop(this: Pin<&mut Self>) {
            if let Some(state) = this.project().state.take() {
                let State { cx, route, pending, observed, recorder, .. } = state.into_inner();
                let finished = Finished::without_response(End::Cancelled, &cx, observed);
                MetricsRecorder::scope(recorder.as_ref(), || St::on_end(pending, &route.state, &cx, &finished));
            }
        }
    }
}

impl<F, St: Stage> ResponseFuture<F, St> {
    pub(super) fn new(inner: F, state: St::Held<State<St>>) -> Self {
        Self { inner, state: Some(state) }
    }
}

impl<F, St, B, E> Future for ResponseFuture<F, St>
where
    F: Future<Output = Result<Response<B>, E>>,
    St: Stage,
    B: http_body::Body,
    E: 'static,
{
    type Output = Result<Response<ResponseBody<B, St>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let state = this.state.as_ref().expect("ResponseFuture polled after completion");
        let result = ready!(St::in_scope(&state.pending, || this.inner.as_mut().poll(cx)));
        let mut state = this.state.take().expect("checked above");
        Poll::Ready(match result {
            Ok(mut res) => {
                if res.extensions().get::<Unobserved>().is_some() {
                    state.route.unobserved.store(true, std::sync::atomic::Ordering::Relaxed);
                    state.observed = false;
                }
                // A gRPC call: the status of a trailers-only response, and
                // the method, recognized from the answer.
                let grpc = state.cx.rpc_mut().and_then(|call| {
                    let status = grpc::status_of(res.headers());
                    call.learn(res.status(), status.as_ref());
                    status
                });
                let State { recorder, pending, route, cx: rcx, .. } = &mut *state;
                MetricsRecorder::scope(recorder.as_ref(), || {
                    St::on_response(pending, &route.state, rcx, &mut res);
                });
                let status = res.status();
                let is_head = rcx.is_head();
                let finish = Finish {
                    status,
                    marked: res.extensions().get::<ErrorType>().copied(),
                    response_bytes: 0,
                    first_byte: if state.first_byte { FirstByte::Waiting } else { FirstByte::NotAsked },
                    grpc,
                    state,
                };
                Ok(res.map(|body| body::observe(body, finish, is_head, status)))
            }
            Err(err) => {
                let end = End::ServiceError(ErrorType::of_service_error(&err));
                let State { cx, route, pending, observed, recorder, .. } = state.into_inner();
                let finished = Finished::without_response(end, &cx, observed);
                MetricsRecorder::scope(recorder.as_ref(), || {
                    St::on_end(pending, &route.state, &cx, &finished)
                });
                Err(err)
            }
        })
    }
}

impl<F, St: Stage> fmt::Debug for ResponseFuture<F, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").field("ready", &self.state.is_none()).finish_non_exhaustive()
    }
}

/// The one body observer of [`Observe`](super::Observe): counts the bytes
/// that go out and, at the body's end, classifies the request once and
/// ends every part.
pub struct Finish<St>
where
    St: Stage,
{
    /// Held as the stage says ([`Stage::Held`]): boxed, the future and the
    /// body move a pointer, not the parts' state.
    state: St::Held<State<St>>,
    status: StatusCode,
    marked: Option<ErrorType>,
    response_bytes: u64,
    first_byte: FirstByte,
    /// For a gRPC call, its status so far: from the response headers
    /// (trailers-only), then from the trailers.
    grpc: Option<(Code, Option<HeaderValue>)>,
}

/// The instant of the first response byte, when a part asked for it.
#[derive(Debug, Clone, Copy)]
enum FirstByte {
    NotAsked,
    Waiting,
    At(Instant),
}

impl<St: Stage> BodyObserver for Finish<St> {
    #[inline]
    fn on_data(&mut self, len: usize) {
        if matches!(self.first_byte, FirstByte::Waiting) && len > 0 {
            self.first_byte = FirstByte::At(Instant::now());
        }
        self.response_bytes += len as u64;
    }

    #[inline]
    fn on_trailers(&mut self, trailers: &http::HeaderMap) {
        if self.state.cx.rpc().is_some()
            && let Some(found) = grpc::status_of(trailers)
        {
            self.grpc = Some(found);
        }
    }

    #[inline]
    fn on_end(self, end: BodyEnd) {
        let end = match end {
            BodyEnd::Complete => End::Complete,
            BodyEnd::Error => End::BodyError,
            BodyEnd::Aborted => End::BodyAborted,
        };
        // Timed on 1 end in overhead::SAMPLE_EVERY: the clock read is the one
        // `at` needs anyway.
        let sampled = super::overhead::sample(super::overhead::Side::End);
        let at = sampled.unwrap_or_else(Instant::now);
        let marked =
            self.marked.or_else(|| self.state.cx.labeler()?.marked_error().map(ErrorType::Application));
        let (error, rpc) = match self.state.cx.rpc() {
            Some(call) => {
                let (code, message) = self.grpc.map_or((None, None), |(code, message)| (Some(code), message));
                let deadline = call.deadline_passed(at.saturating_duration_since(self.state.cx.start()));
                let (code, error) = end.rpc(code, Some(self.status), marked, deadline);
                (error, Some(RpcEnd { code, message }))
            }
            None => (end.error(self.state.classifier, Some(self.status), marked), None),
        };
        let finished = Finished {
            at,
            status: Some(self.status),
            error,
            rpc,
            response_bytes: self.response_bytes,
            first_byte: match self.first_byte {
                FirstByte::At(at) => Some(at),
                FirstByte::NotAsked | FirstByte::Waiting => None,
            },
            observed: self.state.observed,
        };
        let State { pending, route, cx, recorder, .. } = self.state.into_inner();
        MetricsRecorder::scope(recorder.as_ref(), || St::on_end(pending, &route.state, &cx, &finished));
        if let Some(started) = sampled {
            super::overhead::record_end(started);
        }
    }
}

impl<St: Stage> fmt::Debug for Finish<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finish").field("status", &self.status).finish_non_exhaustive()
    }
}
