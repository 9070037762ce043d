//! The one response-body wrapper of the crate.
//!
//! Every layer that needs to know when a response is *really* over (the last
//! byte written, an error in the stream, or the body dropped by a client that
//! went away) wraps the body in [`ResponseBody`] with its own
//! [`BodyObserver`]. The wrapper forwards every frame untouched, reports the
//! size of each data frame, and fires [`BodyObserver::on_end`] exactly once.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower_observability::body::{BodyEnd, BodyObserver, ResponseBody};
//!
//! #[derive(Default)]
//! struct CountBytes(usize);
//!
//! impl BodyObserver for CountBytes {
//!     fn on_data(&mut self, len: usize) {
//!         self.0 += len;
//!     }
//!     fn on_end(self, end: BodyEnd) {
//!         assert_eq!(end, BodyEnd::Complete);
//!         assert_eq!(self.0, 5);
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let body = ResponseBody::new(Full::new(Bytes::from_static(b"hello")), CountBytes::default());
//! let bytes = body.collect().await.unwrap().to_bytes();
//! assert_eq!(&bytes[..], b"hello");
//! # });
//! ```

use std::{
    fmt,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// How a response body ended, as seen by a [`BodyObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyEnd {
    /// The body yielded its last frame (end of stream or trailers), or was
    /// empty from the start.
    Complete,
    /// The body yielded an error; the response is cut short.
    Error,
    /// The body was dropped before its end: in a server, the client went away
    /// (or the connection failed) while the response was still streaming.
    Aborted,
}

/// Hooks fired by [`ResponseBody`] while a response body streams.
///
/// `on_data` fires once per data frame with the frame's length in bytes;
/// `on_end` fires exactly once, when the body ends, fails, or is dropped.
pub trait BodyObserver {
    /// A data frame of `len` bytes went through. The default does nothing.
    #[inline]
    fn on_data(&mut self, len: usize) {
        let _ = len;
    }

    /// The body's trailers went through (a gRPC response's `grpc-status`
    /// travels there); [`on_end`](Self::on_end) follows at once, with
    /// [`BodyEnd::Complete`]. The default does nothing.
    #[inline]
    fn on_trailers(&mut self, trailers: &http::HeaderMap) {
        let _ = trailers;
    }

    /// The body ended; see [`BodyEnd`]. Called exactly once.
    fn on_end(self, end: BodyEnd);
}

impl BodyObserver for () {
    #[inline]
    fn on_end(self, _end: BodyEnd) {}
}

pin_project! {
    /// Response body that reports frames and its end to a [`BodyObserver`].
    ///
    /// All frames, [`Body::is_end_stream`] and [`Body::size_hint`] are
    /// forwarded unchanged. The end is reported on the final `None`, on a
    /// trailers frame, on the first data frame after which the inner body says
    /// [`Body::is_end_stream`], on an error, or on drop ([`BodyEnd::Aborted`]).
    pub struct ResponseBody<B, O>
    where
        O: BodyObserver,
    {
        #[pin]
        inner: B,
        observer: Option<O>,
    }

    impl<B, O> PinnedDrop for ResponseBody<B, O>
    where
        O: BodyObserver,
    {
        fn drop(this: Pin<&mut Self>) {
            if let Some(observer) = this.project().observer.take() {
                observer.on_end(BodyEnd::Aborted);
            }
        }
    }
}

impl<B, O> ResponseBody<B, O>
where
    B: Body,
    O: BodyObserver,
{
    /// Wraps `inner`, reporting to `observer`.
    ///
    /// A body that is already at its end (an empty body, which a server never
    /// polls) completes the observer here, with [`BodyEnd::Complete`].
    pub fn new(inner: B, observer: O) -> Self {
        let observer = if inner.is_end_stream() {
            observer.on_end(BodyEnd::Complete);
            None
        } else {
            Some(observer)
        };
        Self { inner, observer }
    }
}

impl<B, O> ResponseBody<B, O>
where
    O: BodyObserver,
{
    /// Wraps a body that the server will not send, ending `observer` now
    /// with [`BodyEnd::Complete`]: the answer to a `HEAD` request, and `1xx`,
    /// `204` and `304` responses (RFC 9110, section 6.4.1).
    pub fn without_content(inner: B, observer: O) -> Self {
        observer.on_end(BodyEnd::Complete);
        Self { inner, observer: None }
    }

    /// Returns a reference to the inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B, O> fmt::Debug for ResponseBody<B, O>
where
    O: BodyObserver,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody").field("ended", &self.observer.is_none()).finish_non_exhaustive()
    }
}

impl<B, O> Body for ResponseBody<B, O>
where
    B: Body,
    O: BodyObserver,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let result = ready!(this.inner.as_mut().poll_frame(cx));
        let Some(observer) = this.observer.as_mut() else {
            return Poll::Ready(result);
        };
        let end = match &result {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    observer.on_data(data.remaining());
                } else if let Some(trailers) = frame.trailers_ref() {
                    observer.on_trailers(trailers);
                }
                (frame.is_trailers() || this.inner.is_end_stream()).then_some(BodyEnd::Complete)
            }
            Some(Err(_)) => Some(BodyEnd::Error),
            None => Some(BodyEnd::Complete),
        };
        if let Some(end) = end
            && let Some(observer) = this.observer.take()
        {
            observer.on_end(end);
        }
        Poll::Ready(result)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Request body that counts the bytes read from it, for request sizes of
    /// bodies without `Content-Length` (chunked uploads).
    ///
    /// Frames, [`Body::is_end_stream`] and [`Body::size_hint`] are forwarded
    /// unchanged.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use std::sync::atomic::Ordering;
    /// use tower_observability::body::RequestBody;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (body, read) = RequestBody::counting(Full::new(Bytes::from_static(b"hello")));
    /// body.collect().await.unwrap();
    /// assert_eq!(read.load(Ordering::Relaxed), 5);
    /// # });
    /// ```
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        counter: Arc<AtomicU64>,
    }
}

impl<B> RequestBody<B> {
    /// Wraps `inner`, adding every data frame's length (bytes) to the
    /// returned count.
    pub fn counting(inner: B) -> (Self, Arc<AtomicU64>) {
        let counter = Arc::new(AtomicU64::new(0));
        (Self { inner, counter: counter.clone() }, counter)
    }

    /// Returns a reference to the inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Returns the inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("read", &self.counter.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let result = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &result
            && let Some(data) = frame.data_ref()
        {
            this.counter.fetch_add(data.remaining() as u64, Ordering::Relaxed);
        }
        Poll::Ready(result)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a response with `status` to a request (a `HEAD` one when
/// `is_head`) carries content on the wire (RFC 9110, section 6.4.1): servers
/// drop the body of the others unpolled.
#[inline]
pub(crate) fn has_content(is_head: bool, status: http::StatusCode) -> bool {
    !(is_head
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED)
}

/// Wraps `body` so that `observer` sees it end, or ends it at once when the
/// response has no content on the wire (see [`has_content`]).
#[inline]
pub(crate) fn observe<B: Body, O: BodyObserver>(
    body: B,
    observer: O,
    is_head: bool,
    status: http::StatusCode,
) -> ResponseBody<B, O> {
    if has_content(is_head, status) {
        ResponseBody::new(body, observer)
    } else {
        ResponseBody::without_content(body, observer)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full, StreamBody};

    use super::*;

    #[derive(Clone, Default)]
    struct Record(Arc<Mutex<(usize, Vec<BodyEnd>)>>);

    impl BodyObserver for Record {
        fn on_data(&mut self, len: usize) {
            self.0.lock().unwrap().0 += len;
        }
        fn on_end(self, end: BodyEnd) {
            self.0.lock().unwrap().1.push(end);
        }
    }

    impl Record {
        fn get(&self) -> (usize, Vec<BodyEnd>) {
            self.0.lock().unwrap().clone()
        }
    }

    type Chunk = Result<Frame<Bytes>, std::io::Error>;

    fn stream(chunks: Vec<Chunk>) -> StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Chunk>>> {
        StreamBody::new(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn full_body_completes_once_with_exact_size() {
        let record = Record::default();
        let body = ResponseBody::new(Full::new(Bytes::from_static(b"abcdef")), record.clone());
        assert_eq!(body.size_hint().exact(), Some(6));
        body.collect().await.unwrap();
        assert_eq!(record.get(), (6, vec![BodyEnd::Complete]));
    }

    #[tokio::test]
    async fn empty_body_completes_at_construction() {
        let record = Record::default();
        let body = ResponseBody::new(Empty::<Bytes>::new(), record.clone());
        assert_eq!(record.get(), (0, vec![BodyEnd::Complete]));
        drop(body);
        assert_eq!(record.get(), (0, vec![BodyEnd::Complete]), "drop must not fire again");
    }

    #[tokio::test]
    async fn streamed_chunks_are_counted_and_end_on_none() {
        let record = Record::default();
        let chunks = (0..5).map(|_| Ok(Frame::data(Bytes::from_static(b"0123456789")))).collect();
        let body = ResponseBody::new(stream(chunks), record.clone());
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected.len(), 50);
        assert_eq!(record.get(), (50, vec![BodyEnd::Complete]));
    }

    #[tokio::test]
    async fn trailers_reach_the_observer_before_the_end() {
        struct Trailers(Arc<Mutex<Vec<String>>>);
        impl BodyObserver for Trailers {
            fn on_trailers(&mut self, trailers: &http::HeaderMap) {
                let status = trailers["grpc-status"].to_str().unwrap();
                self.0.lock().unwrap().push(format!("trailers {status}"));
            }
            fn on_end(self, end: BodyEnd) {
                self.0.lock().unwrap().push(format!("{end:?}"));
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
        let chunks = vec![Ok(Frame::data(Bytes::from_static(b"abc"))), Ok(Frame::trailers(trailers))];
        ResponseBody::new(stream(chunks), Trailers(seen.clone())).collect().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["trailers 14", "Complete"]);
    }

    #[tokio::test]
    async fn trailers_end_the_body() {
        let record = Record::default();
        let chunks =
            vec![Ok(Frame::data(Bytes::from_static(b"abc"))), Ok(Frame::trailers(http::HeaderMap::new()))];
        let body = ResponseBody::new(stream(chunks), record.clone());
        body.collect().await.unwrap();
        assert_eq!(record.get(), (3, vec![BodyEnd::Complete]));
    }

    #[tokio::test]
    async fn error_mid_stream_is_reported_once() {
        let record = Record::default();
        let chunks = vec![Ok(Frame::data(Bytes::from_static(b"abc"))), Err(std::io::Error::other("boom"))];
        let body = ResponseBody::new(stream(chunks), record.clone());
        assert!(body.collect().await.is_err());
        assert_eq!(record.get(), (3, vec![BodyEnd::Error]));
    }

    #[test]
    fn bodiless_responses_end_at_once() {
        use http::StatusCode;
        assert!(has_content(false, StatusCode::OK));
        assert!(!has_content(true, StatusCode::OK));
        assert!(!has_content(false, StatusCode::NO_CONTENT));
        assert!(!has_content(false, StatusCode::NOT_MODIFIED));
        let record = Record::default();
        let body = observe(Full::new(Bytes::from_static(b"x")), record.clone(), true, StatusCode::OK);
        drop(body);
        assert_eq!(record.get(), (0, vec![BodyEnd::Complete]));
    }

    #[tokio::test]
    async fn request_body_counts_streamed_bytes() {
        let chunks = (0..4).map(|_| Ok(Frame::data(Bytes::from_static(b"12345")))).collect();
        let (body, count) = RequestBody::counting(stream(chunks));
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 20);
        assert_eq!(count.load(Ordering::Relaxed), 20);
        let (full, _) = RequestBody::counting(Full::new(Bytes::from_static(b"abc")));
        assert_eq!(full.size_hint().exact(), Some(3), "forwarded");
    }

    #[tokio::test]
    async fn drop_before_end_is_an_abort() {
        let record = Record::default();
        let chunks =
            vec![Ok(Frame::data(Bytes::from_static(b"abc"))), Ok(Frame::data(Bytes::from_static(b"def")))];
        let mut body = ResponseBody::new(stream(chunks), record.clone());
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), 3);
        drop(body);
        assert_eq!(record.get(), (3, vec![BodyEnd::Aborted]));
    }
}
