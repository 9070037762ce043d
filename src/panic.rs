//! Turn a panicking handler into a `500 Internal Server Error`, marked
//! [`crate::ErrorType::Panic`], and keep serving.
//!
//! Without it a panic unwinds into the server's connection task: the client
//! sees a dropped connection and every observer sees a "client abort". With
//! it the panic is logged (inside the request's span), the client gets a 500
//! and the metrics and span say `error_type="panic"`. Same role as
//! tower-http's `CatchPanic`, without boxing the response body.
//!
//! Panics in `Service::call` and while polling the response future are
//! caught. A panic while the response *body* streams is not: the headers are
//! gone by then, and the connection is dropped.
//!
//! A caught panic is logged at `ERROR` (target `tower_observability::panic`,
//! inside the request's span, so the line carries its request and trace
//! ids) with `exception.type = "panic"` and `exception.message`, and
//! recorded on the server span as an `exception` event with the same
//! attributes (OTel semconv v1.44, "Exceptions"). When backtraces are on
//! (`RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` set to anything but `0`, as
//! for std's own panic message), both also carry `exception.stacktrace`:
//! the first `CatchPanic` made then chains a panic hook that captures the
//! backtrace of panics inside a `CatchPanic`, and calls the hook it found.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_observability::{ErrorType, panic::CatchPanicLayer};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let svc = ServiceBuilder::new().layer(CatchPanicLayer::new()).service_fn(|_req: Request<()>| async {
//!     if true {
//!         panic!("oops");
//!     }
//!     Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//! });
//! let res = svc.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
//! assert_eq!(res.extensions().get::<ErrorType>(), Some(&ErrorType::Panic));
//! # });
//! ```

use std::{
    any::Any,
    cell::{Cell, RefCell},
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    sync::{Arc, Once},
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::classify::ErrorType;

const PANIC_BODY: &[u8] = b"Internal Server Error";

/// Layer that turns panics of the inner service into 500 responses.
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct CatchPanicLayer {
    _priv: (),
}

impl CatchPanicLayer {
    /// A new layer.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic::new(inner)
    }
}

/// Service made by [`CatchPanicLayer`].
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S> CatchPanic<S> {
    /// Wraps `inner`. When backtraces are on, installs the crate's panic
    /// hook (once per process; see the [module docs](self)).
    pub fn new(inner: S) -> Self {
        install_backtrace_hook();
        Self { inner }
    }

    /// A [`CatchPanicLayer`].
    pub const fn layer() -> CatchPanicLayer {
        CatchPanicLayer::new()
    }

    define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CatchPanic<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes>,
{
    type Response = Response<CatchPanicBody<ResBody>>;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match catching(|| self.inner.call(req)) {
            Ok(inner) => CatchPanicFuture { state: FutureState::Pending { inner } },
            Err(payload) => {
                CatchPanicFuture { state: FutureState::Panicked { caught: Some(CaughtPanic::of(&*payload)) } }
            }
        }
    }
}

pin_project! {
    /// Response future of [`CatchPanic`].
    pub struct CatchPanicFuture<F> {
        #[pin]
        state: FutureState<F>,
    }
}

pin_project! {
    #[project = FutureProj]
    enum FutureState<F> {
        Pending { #[pin] inner: F },
        Panicked { caught: Option<CaughtPanic> },
    }
}

impl<F> std::fmt::Debug for CatchPanicFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatchPanicFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Data: From<Bytes>,
{
    type Output = Result<Response<CatchPanicBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let caught = match state.as_mut().project() {
            FutureProj::Pending { inner } => match catching(|| inner.poll(cx)) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(result)) => {
                    return Poll::Ready(result.map(|res| res.map(CatchPanicBody::inner)));
                }
                Err(payload) => CaughtPanic::of(&*payload),
            },
            FutureProj::Panicked { caught } => {
                caught.take().expect("CatchPanicFuture polled after completion")
            }
        };
        // The inner future is poisoned: never poll it again.
        state.set(FutureState::Panicked { caught: None });
        Poll::Ready(Ok(panic_response(caught)))
    }
}

/// The text of a panic payload (`&str` or `String`), else a placeholder.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

fn panic_response<B>(caught: CaughtPanic) -> Response<CatchPanicBody<B>> {
    // `?` (Debug) quotes and escapes the message: no log line injection.
    tracing::error!(
        exception.r#type = "panic",
        exception.message = ?caught.message,
        exception.stacktrace = caught.stacktrace.as_deref(),
        "the handler panicked; answering 500"
    );
    let mut res = Response::new(CatchPanicBody {
        state: BodyState::Panic { body: Some(Bytes::from_static(PANIC_BODY)) },
    });
    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res.extensions_mut().insert(ErrorType::Panic);
    res.extensions_mut().insert(caught);
    res
}

/// What a caught panic said: put in the extensions of the 500 it became,
/// where the trace layer records it on the server span.
#[derive(Debug, Clone)]
pub(crate) struct CaughtPanic {
    /// The panic's message (`exception.message`).
    pub(crate) message: Arc<str>,
    /// Its backtrace (`exception.stacktrace`), when backtraces are on.
    pub(crate) stacktrace: Option<Arc<str>>,
}

impl CaughtPanic {
    /// The panic of `payload`, just caught on this thread.
    fn of(payload: &(dyn Any + Send)) -> Self {
        Self { message: panic_message(payload).into(), stacktrace: BACKTRACE.take().map(Into::into) }
    }
}

thread_local! {
    /// Set while a `CatchPanic` runs its inner service on this thread.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// The backtrace of the last panic caught on this thread.
    static BACKTRACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, catching a panic, with this thread marked as catching for the
/// panic hook.
#[inline]
fn catching<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    let outer = CATCHING.replace(true);
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.set(outer);
    result
}

/// Whether std prints backtraces: `RUST_LIB_BACKTRACE`, else
/// `RUST_BACKTRACE`, set to anything but `0`.
fn backtraces_on() -> bool {
    let set = |name| std::env::var_os(name).map(|v| v != "0");
    set("RUST_LIB_BACKTRACE").or_else(|| set("RUST_BACKTRACE")).unwrap_or(false)
}

/// Chains a panic hook that keeps the backtrace of a panic inside a
/// `CatchPanic`, when backtraces are on; once per process.
fn install_backtrace_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        if !backtraces_on() {
            return;
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.get() {
                BACKTRACE.set(Some(std::backtrace::Backtrace::force_capture().to_string()));
            }
            previous(info);
        }));
    });
}

pin_project! {
    /// Response body of [`CatchPanic`]: the inner body, or the 500's text.
    pub struct CatchPanicBody<B> {
        #[pin]
        state: BodyState<B>,
    }
}

pin_project! {
    #[project = BodyProj]
    enum BodyState<B> {
        Inner { #[pin] body: B },
        Panic { body: Option<Bytes> },
    }
}

impl<B> CatchPanicBody<B> {
    fn inner(body: B) -> Self {
        Self { state: BodyState::Inner { body } }
    }
}

impl<B> std::fmt::Debug for CatchPanicBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.state {
            BodyState::Inner { .. } => f.write_str("CatchPanicBody::Inner"),
            BodyState::Panic { .. } => f.write_str("CatchPanicBody::Panic"),
        }
    }
}

impl<B> Body for CatchPanicBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().state.project() {
            BodyProj::Inner { body } => body.poll_frame(cx),
            BodyProj::Panic { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b.into())))),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.state {
            BodyState::Inner { body } => body.is_end_stream(),
            BodyState::Panic { body } => body.is_none(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.state {
            BodyState::Inner { body } => body.size_hint(),
            BodyState::Panic { body } => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::{BodyExt, Full};
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;

    #[tokio::test]
    async fn panic_in_call_and_in_poll_become_500() {
        let in_call = ServiceBuilder::new().layer(CatchPanicLayer::new()).service_fn(|_req: Request<()>| {
            panic!("panicked synchronously");
            #[allow(unreachable_code)]
            async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }
        });
        let res = in_call.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.extensions().get::<ErrorType>(), Some(&ErrorType::Panic));
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], PANIC_BODY);

        let in_poll =
            ServiceBuilder::new().layer(CatchPanicLayer::new()).service_fn(|_req: Request<()>| async {
                tokio::task::yield_now().await;
                panic!("{}", String::from("panicked in poll"));
                #[allow(unreachable_code)]
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            });
        let res = in_poll.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn normal_responses_pass_untouched() {
        let svc = ServiceBuilder::new().layer(CatchPanicLayer::new()).service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"fine"))))
        });
        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.extensions().get::<ErrorType>().is_none());
        assert_eq!(res.body().size_hint().exact(), Some(4));
        assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"fine");
    }

    #[test]
    fn panic_messages_are_read_from_str_and_string() {
        let s: Box<dyn Any + Send> = Box::new("static");
        assert_eq!(panic_message(s.as_ref()), "static");
        let s: Box<dyn Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(s.as_ref()), "owned");
        let s: Box<dyn Any + Send> = Box::new(42u8);
        assert_eq!(panic_message(s.as_ref()), "non-string panic payload");
    }
}
