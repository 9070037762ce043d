//! What a request was, and how it went: the shared vocabulary of every layer.
//!
//! Method and route normalisation and the error taxonomy live here, once, so
//! that the `error_type` metric label, the span's `error.type` attribute and
//! status all say the same thing about a request (OTel HTTP semantic
//! conventions v1.26+, `error.type`).

use std::fmt;

use http::{Extensions, Method};

/// The route label given to requests that matched no route (404 fallbacks).
///
/// A fixed value keeps metric cardinality bounded whatever paths clients send.
pub const UNMATCHED_ROUTE: &str = "_unmatched";

/// A route template set by hand, for services that are not axum routers.
///
/// Axum's `MatchedPath` is read first (with the `axum` feature); otherwise a
/// service can insert `HttpRoute` into request extensions, before the
/// observability layers run, to label its metrics and spans.
///
/// The value must be a low-cardinality template (`/users/{id}`), never a raw
/// path.
///
/// # Example
///
/// ```
/// use tower_observability::HttpRoute;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(HttpRoute::new("/users/{id}"));
/// assert_eq!(req.extensions().get::<HttpRoute>().unwrap().as_str(), "/users/{id}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpRoute(std::sync::Arc<str>);

impl HttpRoute {
    /// A route template such as `/users/{id}`.
    pub fn new(template: impl Into<std::sync::Arc<str>>) -> Self {
        Self(template.into())
    }

    /// The template.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Reads the route template of a request: axum's `MatchedPath`, then
/// [`HttpRoute`]; `None` when the request matched no route.
#[inline]
pub(crate) fn route_of(extensions: &Extensions) -> Option<&str> {
    #[cfg(feature = "axum")]
    if let Some(path) = extensions.get::<axum::extract::MatchedPath>() {
        return Some(path.as_str());
    }
    extensions.get::<HttpRoute>().map(HttpRoute::as_str)
}

/// The route template of a request, held without copying it.
#[derive(Debug, Clone)]
pub(crate) enum OwnedRoute {
    #[cfg(feature = "axum")]
    Axum(axum::extract::MatchedPath),
    Manual(crate::HttpRoute),
}

impl OwnedRoute {
    #[inline]
    pub(crate) fn of(extensions: &http::Extensions) -> Option<Self> {
        #[cfg(feature = "axum")]
        if let Some(path) = extensions.get::<axum::extract::MatchedPath>() {
            return Some(Self::Axum(path.clone()));
        }
        extensions.get::<crate::HttpRoute>().cloned().map(Self::Manual)
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            #[cfg(feature = "axum")]
            Self::Axum(path) => path.as_str(),
            Self::Manual(route) => route.as_str(),
        }
    }
}

/// Route templates a layer leaves alone (the monitoring endpoints, by
/// default, when the layer comes from [`Observability`](crate::Observability)).
#[derive(Debug, Clone)]
pub(crate) enum RouteFilter {
    /// These templates are excluded.
    Routes(Option<std::sync::Arc<[Box<str>]>>),
    /// Every request that matched a route is excluded: only the fallback is
    /// observed (the monitoring fragment's own copy of the layer).
    #[cfg_attr(not(feature = "monitoring"), allow(dead_code))]
    AllMatched,
}

impl Default for RouteFilter {
    fn default() -> Self {
        Self::Routes(None)
    }
}

impl RouteFilter {
    pub(crate) fn new<I, T>(routes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        let routes: std::sync::Arc<[Box<str>]> = routes.into_iter().map(Into::into).collect();
        Self::Routes((!routes.is_empty()).then_some(routes))
    }

    /// Whether `route` is excluded; requests that matched no route never are.
    #[inline]
    pub(crate) fn excludes(&self, route: Option<&str>) -> bool {
        match (self, route) {
            (_, None) => false,
            (Self::AllMatched, Some(_)) => true,
            (Self::Routes(Some(excluded)), Some(route)) => excluded.iter().any(|r| &**r == route),
            (Self::Routes(None), Some(_)) => false,
        }
    }
}

/// The request method, normalised per OTel HTTP semconv: the nine methods of
/// RFC 9110 and PATCH keep their name, any other becomes `_OTHER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KnownMethod(u8);

const METHOD_NAMES: [&str; 10] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER"];

impl KnownMethod {
    pub(crate) const COUNT: usize = METHOD_NAMES.len();

    #[inline]
    pub(crate) fn of(method: &Method) -> Self {
        let index = match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::CONNECT => 5,
            Method::OPTIONS => 6,
            Method::TRACE => 7,
            Method::PATCH => 8,
            _ => 9,
        };
        Self(index)
    }

    #[inline]
    pub(crate) fn as_str(self) -> &'static str {
        METHOD_NAMES[self.0 as usize]
    }

    #[inline]
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }

    #[inline]
    pub(crate) fn is_other(self) -> bool {
        self.0 as usize == METHOD_NAMES.len() - 1
    }
}

/// `url.scheme` of a server request: the URI's scheme when it has one
/// (absolute-form), else `http`. The value is one of two static strings.
#[inline]
pub(crate) fn scheme_of(uri: &http::Uri) -> &'static str {
    scheme_name(is_https(uri))
}

/// Whether the request URI says `https` (see [`scheme_of`]).
#[inline]
pub(crate) fn is_https(uri: &http::Uri) -> bool {
    uri.scheme() == Some(&http::uri::Scheme::HTTPS)
}

/// The `url.scheme` value: `https` or `http`.
#[inline]
pub(crate) fn scheme_name(https: bool) -> &'static str {
    if https { "https" } else { "http" }
}

/// Why a request counts as failed; the value of `error_type` / `error.type`.
///
/// One taxonomy feeds the metric label, the span's `error.type` and status,
/// and the access log. By default (OTel HTTP semconv v1.26, "Status") a
/// response is an error when its status is 5xx; see [`StatusClassifier`] to
/// change that. Precedence, first match wins:
///
/// 1. an `ErrorType` the handler or an inner layer put in the *response*
///    extensions (the crate's panic catcher puts [`ErrorType::Panic`]);
/// 2. an error status (`"500"`);
/// 3. how the body ended: [`ErrorType::Body`] or [`ErrorType::ClientAbort`].
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
    /// The inner service returned `Err`; the label is the error's Rust type
    /// name (OTel: "the fully-qualified class name").
    Service(&'static str),
    /// The handler panicked and the panic was turned into a 500: `panic`.
    Panic,
    /// The request timed out in the server (tower's `Elapsed`, or marked by
    /// the application): `timeout`.
    Timeout,
    /// The response body yielded an error mid-stream: `body_error`.
    Body,
    /// The client went away before the response ended: `client_abort`.
    ClientAbort,
}

impl ErrorType {
    /// Classifies a response status with the OTel default: 5xx is an error.
    #[inline]
    pub fn from_status(status: http::StatusCode) -> Option<Self> {
        StatusClassifier::default().classify(status)
    }

    /// The error type of a service error `E`: [`ErrorType::Timeout`] for
    /// tower's `Elapsed`, else its Rust type name.
    #[inline]
    pub fn service<E>() -> Self {
        let name = std::any::type_name::<E>();
        if name.ends_with("::Elapsed") { Self::Timeout } else { Self::Service(name) }
    }

    /// The label value: the status code (`"500"`), the error's type name,
    /// `panic`, `timeout`, `body_error` or `client_abort`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Status(status) => status.as_str(),
            Self::Service(name) => name,
            Self::Panic => "panic",
            Self::Timeout => "timeout",
            Self::Body => "body_error",
            Self::ClientAbort => "client_abort",
        }
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

/// The error of a response that began with `status` (and `marked` in its
/// extensions) and whose body ended with `end`; see [`ErrorType`] for the
/// precedence.
#[inline]
pub(crate) fn response_error(
    classifier: StatusClassifier,
    status: http::StatusCode,
    marked: Option<ErrorType>,
    end: crate::body::BodyEnd,
) -> Option<ErrorType> {
    use crate::body::BodyEnd;
    marked.or_else(|| classifier.classify(status)).or(match end {
        BodyEnd::Complete => None,
        BodyEnd::Error => Some(ErrorType::Body),
        BodyEnd::Aborted => Some(ErrorType::ClientAbort),
    })
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_normalised() {
        assert_eq!(KnownMethod::of(&Method::GET).as_str(), "GET");
        assert_eq!(KnownMethod::of(&Method::PATCH).as_str(), "PATCH");
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(KnownMethod::of(&custom).as_str(), "_OTHER");
        assert!(KnownMethod::of(&custom).is_other());
        assert!(!KnownMethod::of(&Method::GET).is_other());
    }

    #[test]
    fn only_5xx_is_an_error_by_default() {
        assert_eq!(ErrorType::from_status(http::StatusCode::NOT_FOUND), None);
        assert_eq!(ErrorType::from_status(http::StatusCode::TOO_MANY_REQUESTS), None);
        let e = ErrorType::from_status(http::StatusCode::BAD_GATEWAY).unwrap();
        assert_eq!(e.as_str(), "502");
        assert_eq!(ErrorType::Body.to_string(), "body_error");
        assert_eq!(ErrorType::ClientAbort.to_string(), "client_abort");
        assert!(ErrorType::service::<std::io::Error>().as_str().contains("io::error::Error"));
        assert_eq!(ErrorType::Panic.as_str(), "panic");
        assert_eq!(ErrorType::Timeout.as_str(), "timeout");
    }

    #[test]
    fn precedence_is_mark_then_status_then_body() {
        use crate::body::BodyEnd;
        let c = StatusClassifier::default();
        let s500 = http::StatusCode::INTERNAL_SERVER_ERROR;
        let s200 = http::StatusCode::OK;
        assert_eq!(
            response_error(c, s500, Some(ErrorType::Panic), BodyEnd::Complete),
            Some(ErrorType::Panic)
        );
        assert_eq!(response_error(c, s500, None, BodyEnd::Aborted), Some(ErrorType::Status(s500)));
        assert_eq!(response_error(c, s200, None, BodyEnd::Aborted), Some(ErrorType::ClientAbort));
        assert_eq!(response_error(c, s200, None, BodyEnd::Error), Some(ErrorType::Body));
        assert_eq!(response_error(c, s200, None, BodyEnd::Complete), None);
        let strict = StatusClassifier::new(|s| s.as_u16() >= 429);
        let s429 = http::StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(response_error(strict, s429, None, BodyEnd::Complete).unwrap().as_str(), "429");
    }

    #[test]
    fn route_filter_excludes_only_listed_templates() {
        let filter = RouteFilter::new(["/metrics", "/health/live"]);
        assert!(filter.excludes(Some("/metrics")));
        assert!(!filter.excludes(Some("/metrics/x")));
        assert!(!filter.excludes(None), "unmatched requests are always observed");
        assert!(!RouteFilter::default().excludes(Some("/metrics")));
        assert!(!RouteFilter::new(Vec::<String>::new()).excludes(Some("/metrics")));
        assert!(RouteFilter::AllMatched.excludes(Some("/ops/monitoring/overview")));
        assert!(!RouteFilter::AllMatched.excludes(None));
    }

    #[test]
    fn route_prefers_matched_path_then_http_route() {
        let mut ext = Extensions::new();
        assert_eq!(route_of(&ext), None);
        ext.insert(HttpRoute::new("/manual"));
        assert_eq!(route_of(&ext), Some("/manual"));
    }
}
