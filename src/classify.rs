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

/// Route templates a layer leaves alone (the monitoring endpoints, by
/// default, when the layer comes from [`Observability`](crate::Observability)).
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteFilter(Option<std::sync::Arc<[Box<str>]>>);

impl RouteFilter {
    pub(crate) fn new<I, T>(routes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        let routes: std::sync::Arc<[Box<str>]> = routes.into_iter().map(Into::into).collect();
        Self((!routes.is_empty()).then_some(routes))
    }

    /// Whether `route` is excluded; requests that matched no route never are.
    #[inline]
    pub(crate) fn excludes(&self, route: Option<&str>) -> bool {
        match (&self.0, route) {
            (Some(excluded), Some(route)) => excluded.iter().any(|r| &**r == route),
            _ => false,
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
    if uri.scheme() == Some(&http::uri::Scheme::HTTPS) { "https" } else { "http" }
}

/// Why a request counts as failed; the value of `error_type` / `error.type`.
///
/// The OTel default classification applies: a response is an error when its
/// status is 5xx, or when no complete response was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorType {
    /// The response status was a server error (5xx); the label is the code.
    Status(http::StatusCode),
    /// The inner service returned `Err`; the label is the error's type name.
    Service(&'static str),
    /// The response body yielded an error mid-stream: `body_error`.
    Body,
    /// The client went away before the response finished: `client_abort`.
    ClientAbort,
}

impl ErrorType {
    /// Classifies a response status: 5xx is an error (OTel HTTP semconv).
    #[inline]
    pub fn from_status(status: http::StatusCode) -> Option<Self> {
        status.is_server_error().then_some(Self::Status(status))
    }

    /// The error type of a service error `E`, its Rust type name.
    #[inline]
    pub fn service<E>() -> Self {
        Self::Service(std::any::type_name::<E>())
    }

    /// The label value: the status code (`"500"`), the error's type name,
    /// `body_error` or `client_abort`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Status(status) => status.as_str(),
            Self::Service(name) => name,
            Self::Body => "body_error",
            Self::ClientAbort => "client_abort",
        }
    }
}

/// The error of a response that began with `status` and whose body ended
/// with `end`: a 5xx status first, else a body error or a client abort.
#[inline]
pub(crate) fn response_error(status: http::StatusCode, end: crate::body::BodyEnd) -> Option<ErrorType> {
    use crate::body::BodyEnd;
    ErrorType::from_status(status).or(match end {
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
    }

    #[test]
    fn route_filter_excludes_only_listed_templates() {
        let filter = RouteFilter::new(["/metrics", "/health/live"]);
        assert!(filter.excludes(Some("/metrics")));
        assert!(!filter.excludes(Some("/metrics/x")));
        assert!(!filter.excludes(None), "unmatched requests are always observed");
        assert!(!RouteFilter::default().excludes(Some("/metrics")));
        assert!(!RouteFilter::new(Vec::<String>::new()).excludes(Some("/metrics")));
    }

    #[test]
    fn route_prefers_matched_path_then_http_route() {
        let mut ext = Extensions::new();
        assert_eq!(route_of(&ext), None);
        ext.insert(HttpRoute::new("/manual"));
        assert_eq!(route_of(&ext), Some("/manual"));
    }
}
