//! The error taxonomy: why a request counts as failed, decided once per
//! request and read by every signal, so that the `error_type` metric label,
//! the span's `error.type` attribute and status, and the access log all say
//! the same thing (OTel HTTP semconv v1.38, `error.type`).

use std::{any::Any, error::Error as StdError, fmt};

use crate::grpc::Code;

/// Why a request counts as failed; the value of `error_type` / `error.type`.
///
/// One taxonomy feeds the metric label, the span's `error.type` and status,
/// and the access log. By default (OTel HTTP semconv, "Status") a response
/// is an error when its status is 5xx; see [`StatusClassifier`] to change
/// that. Precedence, first match wins:
///
/// 1. an `ErrorType` the handler or an inner layer put in the *response*
///    extensions (the crate's panic catcher puts [`ErrorType::Panic`]), or
///    one the handler gave its [`Labeler`](crate::labeler::Labeler);
/// 2. an error status (`"500"`);
/// 3. how the body ended: [`ErrorType::Body`] or [`ErrorType::ClientAbort`].
///
/// An inner service that returns `Err` gives [`ErrorType::of_service_error`].
///
/// # Example
///
/// ```
/// use axum::{http::StatusCode, response::IntoResponse};
/// use tower_observability::ErrorType;
///
/// // A handler that gave up waiting on a dependency marks its answer.
/// async fn handler() -> axum::response::Response {
///     let mut res = (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response();
///     res.extensions_mut().insert(ErrorType::Timeout);
///     res
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorType {
    /// The response status counts as an error (5xx by default); the label is
    /// the code, e.g. `"503"`.
    Status(http::StatusCode),
    /// The inner service returned `Err`; the label is a bounded name of the
    /// error (see [`ErrorType::of_service_error`]).
    Service(&'static str),
    /// The application named the failure itself, with
    /// [`Labeler::error_type`](crate::labeler::Labeler::error_type) or by
    /// putting this in the response extensions: a low-cardinality name
    /// from the code (`payment_declined`).
    Application(&'static str),
    /// The handler panicked and the panic was turned into a 500: `panic`.
    Panic,
    /// The request timed out in the server (tower's `Elapsed`, an I/O
    /// timeout, or marked by the application): `timeout`.
    Timeout,
    /// The response body yielded an error mid-stream: `body_error`.
    Body,
    /// The client went away before the response ended: `client_abort`.
    ClientAbort,
    /// A gRPC call ended with a status code a server counts as an error
    /// ([`Code::is_server_error`]); the label is the code's name, e.g.
    /// `"UNAVAILABLE"` (OTel RPC semconv v1.44.0, `error.type`).
    Grpc(Code),
}

/// The `error.type` of an error the crate cannot name (OTel semconv's
/// fallback value).
pub const OTHER_ERROR: &str = "_OTHER";

impl ErrorType {
    /// Classifies a response status with the OTel default: 5xx is an error.
    #[inline]
    pub fn from_status(status: http::StatusCode) -> Option<Self> {
        StatusClassifier::default().classify(status)
    }

    /// The error type of an error an inner service returned.
    ///
    /// A boxed error (`tower::BoxError`, as tower's timeout, load-shed and
    /// buffer middlewares return) is opened and its `source()` chain walked:
    /// tower's `Elapsed` and an I/O error of kind `TimedOut` give
    /// [`ErrorType::Timeout`]; tower's `Overloaded` and an I/O error give
    /// their type name (`tower::load_shed::error::Overloaded`,
    /// `std::io::Error`). Another error's label is its Rust type name when
    /// that names a type without generic parameters (OTel: "the
    /// fully-qualified class name"), else [`OTHER_ERROR`]: the label set
    /// stays bounded and never holds a message or a parameter list.
    ///
    /// ```
    /// use tower_observability::ErrorType;
    ///
    /// let elapsed: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
    /// assert_eq!(ErrorType::of_service_error(&elapsed), ErrorType::Timeout);
    /// let io = std::io::Error::other("boom");
    /// assert_eq!(ErrorType::of_service_error(&io).as_str(), "std::io::Error");
    /// let opaque: tower::BoxError = "some text".into();
    /// assert_eq!(ErrorType::of_service_error(&opaque).as_str(), "_OTHER");
    /// ```
    pub fn of_service_error<E: 'static>(error: &E) -> Self {
        let any = error as &dyn Any;
        if let Some(boxed) = any.downcast_ref::<Box<dyn StdError + Send + Sync>>() {
            return Self::of_dyn(&**boxed);
        }
        if let Some(boxed) = any.downcast_ref::<Box<dyn StdError + Send>>() {
            return Self::of_dyn(&**boxed);
        }
        if let Some(known) = known(any) {
            return known;
        }
        let name = std::any::type_name::<E>();
        Self::Service(if name.contains(['<', '(', '[', '&', ' ']) { OTHER_ERROR } else { name })
    }

    /// The error type of a dynamic error: the first error of its `source()`
    /// chain the crate knows, else [`OTHER_ERROR`].
    fn of_dyn(error: &(dyn StdError + 'static)) -> Self {
        let mut next = Some(error);
        while let Some(error) = next {
            let any: &dyn Any = if let Some(e) = error.downcast_ref::<tower::timeout::error::Elapsed>() {
                e
            } else if let Some(e) = error.downcast_ref::<tower::load_shed::error::Overloaded>() {
                e
            } else if let Some(e) = error.downcast_ref::<std::io::Error>() {
                e
            } else {
                next = error.source();
                continue;
            };
            return known(any).unwrap_or(Self::Service(OTHER_ERROR));
        }
        Self::Service(OTHER_ERROR)
    }

    /// The label value: the status code (`"500"`), the error's name,
    /// `panic`, `timeout`, `body_error` or `client_abort`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Status(status) => status.as_str(),
            Self::Service(name) | Self::Application(name) => name,
            Self::Panic => "panic",
            Self::Timeout => "timeout",
            Self::Body => "body_error",
            Self::ClientAbort => "client_abort",
            Self::Grpc(code) => code.as_str(),
        }
    }
}

/// The error type of an error of a type the crate knows.
fn known(error: &dyn Any) -> Option<ErrorType> {
    if error.is::<tower::timeout::error::Elapsed>() {
        return Some(ErrorType::Timeout);
    }
    if error.is::<tower::load_shed::error::Overloaded>() {
        return Some(ErrorType::Service("tower::load_shed::error::Overloaded"));
    }
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        return Some(if io.kind() == std::io::ErrorKind::TimedOut {
            ErrorType::Timeout
        } else {
            ErrorType::Service("std::io::Error")
        });
    }
    None
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides which response statuses are errors.
///
/// The default follows OTel HTTP semconv for servers: 5xx only (a 4xx is the
/// client's mistake, not the server's). To make 429 an error as well:
///
/// ```
/// use http::StatusCode;
/// use tower_observability::StatusClassifier;
///
/// let classifier =
///     StatusClassifier::new(|s| s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS);
/// assert!(classifier.is_error(StatusCode::TOO_MANY_REQUESTS));
/// assert!(!StatusClassifier::default().is_error(StatusCode::TOO_MANY_REQUESTS));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StatusClassifier(fn(http::StatusCode) -> bool);

impl StatusClassifier {
    /// Errors are the statuses for which `is_error` returns `true`.
    pub const fn new(is_error: fn(http::StatusCode) -> bool) -> Self {
        Self(is_error)
    }

    /// Whether `status` is an error.
    #[inline]
    pub fn is_error(&self, status: http::StatusCode) -> bool {
        (self.0)(status)
    }

    /// [`ErrorType::Status`] when `status` is an error.
    #[inline]
    pub fn classify(&self, status: http::StatusCode) -> Option<ErrorType> {
        self.is_error(status).then_some(ErrorType::Status(status))
    }
}

impl Default for StatusClassifier {
    fn default() -> Self {
        Self(|status| status.is_server_error())
    }
}

/// How a request ended, as the crate's layers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum End {
    /// The response body yielded its last frame (end of stream or
    /// trailers), or the response has no body on the wire.
    Complete,
    /// The response body yielded an error: the response is cut short.
    BodyError,
    /// The response body was dropped before its end: the client went away
    /// (or the connection failed) while the response streamed.
    BodyAborted,
    /// The response future was dropped before the response was ready: the
    /// client went away while the handler ran.
    Cancelled,
    /// The inner service returned `Err`, classified as given.
    ServiceError(ErrorType),
}

impl End {
    /// The error of a request that ended this way with `status` (when a
    /// response was given) and `marked` (an [`ErrorType`] in its
    /// extensions), under `classifier`; see [`ErrorType`] for the precedence.
    #[inline]
    pub(crate) fn error(
        self,
        classifier: StatusClassifier,
        status: Option<http::StatusCode>,
        marked: Option<ErrorType>,
    ) -> Option<ErrorType> {
        if let Self::ServiceError(error) = self {
            return Some(error);
        }
        marked.or_else(|| status.and_then(|s| classifier.classify(s))).or(match self {
            Self::Complete | Self::ServiceError(_) => None,
            Self::BodyError => Some(ErrorType::Body),
            Self::BodyAborted | Self::Cancelled => Some(ErrorType::ClientAbort),
        })
    }
}

impl End {
    /// The status code and error of a gRPC call that ended this way, with
    /// `status` (from its trailers, or the headers of a trailers-only
    /// response), `http` (the response's status, when one was given) and
    /// `marked` (an [`ErrorType`] in its extensions); `deadline_passed`
    /// tells whether the client's `grpc-timeout` ran out (see
    /// [`crate::grpc`] for the rules).
    #[inline]
    pub(crate) fn rpc(
        self,
        status: Option<Code>,
        http: Option<http::StatusCode>,
        marked: Option<ErrorType>,
        deadline_passed: bool,
    ) -> (Code, Option<ErrorType>) {
        let unanswered = if deadline_passed { Code::DeadlineExceeded } else { Code::Cancelled };
        let code = match self {
            Self::ServiceError(_) => Code::Unknown,
            Self::Complete => status.unwrap_or_else(|| http.map_or(Code::Unknown, Code::from_http_status)),
            Self::BodyError => status.unwrap_or(Code::Unknown),
            Self::BodyAborted | Self::Cancelled => status.unwrap_or(unanswered),
        };
        let error = match self {
            Self::ServiceError(error) => Some(error),
            _ => marked.or_else(|| code.is_server_error().then_some(ErrorType::Grpc(code))),
        };
        (code, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_5xx_is_an_error_by_default() {
        assert_eq!(ErrorType::from_status(http::StatusCode::NOT_FOUND), None);
        assert_eq!(ErrorType::from_status(http::StatusCode::TOO_MANY_REQUESTS), None);
        let e = ErrorType::from_status(http::StatusCode::BAD_GATEWAY).unwrap();
        assert_eq!(e.as_str(), "502");
        assert_eq!(ErrorType::Body.to_string(), "body_error");
        assert_eq!(ErrorType::ClientAbort.to_string(), "client_abort");
        assert_eq!(ErrorType::Panic.as_str(), "panic");
        assert_eq!(ErrorType::Timeout.as_str(), "timeout");
    }

    #[test]
    fn service_errors_get_bounded_names() {
        use tower::{BoxError, load_shed::error::Overloaded, timeout::error::Elapsed};

        #[derive(Debug)]
        struct Wrapper(BoxError);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&*self.0)
            }
        }
        #[derive(Debug)]
        struct Generic<T>(T);

        let cases: Vec<(BoxError, &str)> = vec![
            (Box::new(Elapsed::new()), "timeout"),
            (Box::new(Overloaded::new()), "tower::load_shed::error::Overloaded"),
            (Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)), "timeout"),
            (Box::new(std::io::Error::other("x")), "std::io::Error"),
            (Box::new(Wrapper(Box::new(Elapsed::new()))), "timeout"),
            ("a message, never a label".into(), OTHER_ERROR),
        ];
        for (error, label) in cases {
            assert_eq!(ErrorType::of_service_error(&error).as_str(), label, "{error:?}");
        }
        assert_eq!(ErrorType::of_service_error(&Elapsed::new()), ErrorType::Timeout);
        assert_eq!(ErrorType::of_service_error(&std::fmt::Error).as_str(), "core::fmt::Error");
        assert_eq!(ErrorType::of_service_error(&Generic(1u8)).as_str(), OTHER_ERROR);
    }

    #[test]
    fn precedence_is_service_error_then_mark_then_status_then_body() {
        let c = StatusClassifier::default();
        let s500 = Some(http::StatusCode::INTERNAL_SERVER_ERROR);
        let s200 = Some(http::StatusCode::OK);
        assert_eq!(End::Complete.error(c, s500, Some(ErrorType::Panic)), Some(ErrorType::Panic));
        assert_eq!(
            End::BodyAborted.error(c, s500, None),
            Some(ErrorType::Status(http::StatusCode::INTERNAL_SERVER_ERROR))
        );
        assert_eq!(End::BodyAborted.error(c, s200, None), Some(ErrorType::ClientAbort));
        assert_eq!(End::Cancelled.error(c, None, None), Some(ErrorType::ClientAbort));
        assert_eq!(End::BodyError.error(c, s200, None), Some(ErrorType::Body));
        assert_eq!(End::Complete.error(c, s200, None), None);
        assert_eq!(End::ServiceError(ErrorType::Timeout).error(c, None, None), Some(ErrorType::Timeout));
        let strict = StatusClassifier::new(|s| s.as_u16() >= 429);
        let rpc = |end: End, status, http, deadline| end.rpc(status, http, None, deadline);
        assert_eq!(rpc(End::Complete, Some(Code::NotFound), s200, false), (Code::NotFound, None));
        let internal = (Code::Internal, Some(ErrorType::Grpc(Code::Internal)));
        assert_eq!(rpc(End::Complete, Some(Code::Internal), s200, false), internal);
        assert_eq!(rpc(End::Complete, None, s200, false).0, Code::Unknown, "ended without a status");
        let s503 = Some(http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(rpc(End::Complete, None, s503, false).0, Code::Unavailable);
        assert_eq!(rpc(End::Cancelled, None, None, false), (Code::Cancelled, None));
        let deadline = (Code::DeadlineExceeded, Some(ErrorType::Grpc(Code::DeadlineExceeded)));
        assert_eq!(rpc(End::Cancelled, None, None, true), deadline);
        assert_eq!(rpc(End::BodyAborted, None, s200, true), deadline);
        assert_eq!(rpc(End::BodyError, None, s200, false).0, Code::Unknown);
        let marked = End::Complete.rpc(Some(Code::Ok), s200, Some(ErrorType::Panic), false);
        assert_eq!(marked, (Code::Ok, Some(ErrorType::Panic)));
        let failed = End::ServiceError(ErrorType::Timeout).rpc(None, None, None, false);
        assert_eq!(failed, (Code::Unknown, Some(ErrorType::Timeout)));
        assert_eq!(ErrorType::Grpc(Code::DataLoss).as_str(), "DATA_LOSS");
        let s429 = Some(http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(End::Complete.error(strict, s429, None).unwrap().as_str(), "429");
    }
}
