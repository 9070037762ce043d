use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{Held, ResponseBody, ResponseFuture, Stage, future::State};
use crate::{context::RequestContext, recorder::MetricsRecorder, route::Untemplated};

/// The service of every layer of the crate: runs the layer's part (or, for
/// [`ObservabilityLayer`](crate::ObservabilityLayer), all of them) around
/// `S`; see the [module docs](super).
///
/// The request is passed on with a [`RequestContext`] in its extensions;
/// the response with its body wrapped once, so that the end of the body
/// (its last frame, an error, or its drop) ends the request.
#[derive(Debug, Clone)]
pub struct Observe<S, St> {
    inner: S,
    stage: St,
    /// One per `Layer::layer` call, which axum makes once per route.
    untemplated: Untemplated,
}

#[allow(private_bounds)]
impl<S, St: Stage> Observe<S, St> {
    pub(crate) fn new(inner: S, stage: St) -> Self {
        Self { inner, stage, untemplated: Untemplated::default() }
    }
}

impl<S, St> Observe<S, St> {
    define_inner_service_accessors!();
}

#[allow(private_bounds)]
impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for Observe<S, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: 'static,
    St: Stage,
    ReqBody: http_body::Body + 'static,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody, St>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, St>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let sampled = super::overhead::sample(super::overhead::Side::Request);
        let mut cx = RequestContext::of(&req, &self.untemplated, self.stage.proxies());
        if let Some(labeler) = self.stage.labeler()
            && cx.set_labeler(labeler.clone())
        {
            req.extensions_mut().insert(labeler);
        }
        let route = self.stage.route(cx.route_name().template());
        let observed = route.observed();
        let classifier = self.stage.classifier();
        let first_byte = self.stage.wants_first_byte();
        let recorder = self.stage.recorder().cloned();
        let pending = MetricsRecorder::scope(recorder.as_ref(), || {
            self.stage.on_request(&mut cx, &route.state, observed, &mut req)
        });
        if St::PASSES_CONTEXT {
            req.extensions_mut().insert(cx.clone());
        }
        let state = State { cx, route, pending, classifier, first_byte, observed, recorder };
        if let Some(started) = sampled {
            super::overhead::record_request(started);
        }
        ResponseFuture::new(self.inner.call(req), St::Held::new(state))
    }
}
