//! Correlation ids: accept a valid incoming `x-request-id`, generate one
//! otherwise, and carry it through the request and back on the response.
//!
//! Unlike a plain copy of the header, an incoming id is kept only when it is
//! 1 to [`MAX_LEN`] bytes of visible ASCII from a safe set (letters, digits
//! and `-_.:+/=@`). Anything else (control characters, CR/LF, non-ASCII,
//! over-long or empty values, several conflicting values) is replaced by a
//! generated id, and the rejected value is never echoed.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_observability::request_id::{RequestId, SetRequestIdLayer, RequestIdSource};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let svc = ServiceBuilder::new()
//!     .layer(SetRequestIdLayer::new())
//!     .service_fn(|req: Request<String>| async move {
//!         let id = req.extensions().get::<RequestId>().unwrap();
//!         assert_eq!(id.as_str(), "abc-123");
//!         assert_eq!(id.source(), RequestIdSource::Client);
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     });
//!
//! let req = Request::builder().header("x-request-id", "abc-123").body(String::new()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["x-request-id"], "abc-123");
//! # });
//! ```

mod layer;

use std::fmt;

use http::{HeaderValue, Request, header::GetAll};

pub use self::layer::{HTTP_SERVER_REQUEST_ID_REJECTED, SetRequestId, SetRequestIdLayer};

/// The header read and written by default: `x-request-id`.
pub const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The longest incoming id kept, in bytes.
pub const MAX_LEN: usize = 128;

/// Where a [`RequestId`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestIdSource {
    /// Sent by the client and found valid.
    Client,
    /// Made by this service's [`MakeRequestId`].
    Generated,
}

/// A validated request id, in request extensions and echoed on the response.
///
/// Every `RequestId` holds 1 to [`MAX_LEN`] bytes from the safe set, so
/// [`as_str`](Self::as_str) is safe to write into headers and log lines.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId {
    value: HeaderValue,
    source: RequestIdSource,
}

impl RequestId {
    /// A generated id, for [`MakeRequestId`] implementations.
    ///
    /// Returns `None` when `value` is not a valid id (see [`validate`]).
    pub fn generated(value: HeaderValue) -> Option<Self> {
        validate(value.as_bytes()).ok()?;
        Some(Self { value, source: RequestIdSource::Generated })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Validated at construction: ASCII only, so UTF-8; `from_utf8`
        // checks a word at a time where `HeaderValue::to_str` checks each
        // byte (about 100 instructions for a UUID).
        std::str::from_utf8(self.value.as_bytes()).unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    /// Whether the client sent it or this service made it.
    pub fn source(&self) -> RequestIdSource {
        self.source
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestId").field("value", &self.as_str()).field("source", &self.source).finish()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an incoming id was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The header was present but empty.
    Empty,
    /// Longer than [`MAX_LEN`] bytes.
    TooLong,
    /// A byte outside the safe set (control, space, non-ASCII, quote...).
    InvalidCharacter,
    /// The header appeared several times with different values.
    Conflicting,
}

impl RejectReason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 4] = [Self::Empty, Self::TooLong, Self::InvalidCharacter, Self::Conflicting];

    /// A short snake_case name, fit for a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::InvalidCharacter => "invalid_character",
            Self::Conflicting => "conflicting",
        }
    }
}

/// Checks that `value` is a safe request id: 1 to [`MAX_LEN`] bytes of
/// ASCII letters, digits or `-_.:+/=@`.
///
/// # Errors
///
/// The [`RejectReason`] of the first rule broken.
///
/// ```
/// use tower_observability::request_id::{validate, RejectReason};
///
/// assert!(validate(b"3f2a-req:42").is_ok());
/// assert_eq!(validate(b""), Err(RejectReason::Empty));
/// assert_eq!(validate(b"a\r\nInjected: 1"), Err(RejectReason::InvalidCharacter));
/// assert_eq!(validate(&[b'a'; 129]), Err(RejectReason::TooLong));
/// ```
pub fn validate(value: &[u8]) -> Result<(), RejectReason> {
    if value.is_empty() {
        return Err(RejectReason::Empty);
    }
    if value.len() > MAX_LEN {
        return Err(RejectReason::TooLong);
    }
    if value.iter().all(|&b| is_safe(b)) { Ok(()) } else { Err(RejectReason::InvalidCharacter) }
}

#[inline]
const fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+' | b'/' | b'=' | b'@')
}

/// Picks the client's id from every value of the header.
///
/// Several identical values count as one; several different values are
/// [`RejectReason::Conflicting`].
pub(crate) fn accept(values: GetAll<'_, HeaderValue>) -> Option<Result<RequestId, RejectReason>> {
    let mut iter = values.iter();
    let first = iter.next()?;
    if iter.any(|other| other != first) {
        return Some(Err(RejectReason::Conflicting));
    }
    Some(
        validate(first.as_bytes())
            .map(|()| RequestId { value: first.clone(), source: RequestIdSource::Client }),
    )
}

/// Makes request ids for requests that came without a valid one.
///
/// The shape follows tower-http's `MakeRequestId`. An implementation that
/// returns `None`, or an id that fails [`validate`], is replaced by a UUID.
pub trait MakeRequestId {
    /// Makes an id for `request`.
    fn make_request_id<B>(&mut self, request: &Request<B>) -> Option<RequestId>;
}

/// The default [`MakeRequestId`]: a random (v4) UUID, hyphenated, from a
/// thread-local generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeRequestUuid;

impl MakeRequestId for MakeRequestUuid {
    #[inline]
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        Some(uuid_id())
    }
}

#[inline]
pub(crate) fn uuid_id() -> RequestId {
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    // One allocation, shared by every clone of the id (the request header,
    // the extension, the response header): bytes kept in a `Vec` would be
    // copied into a shared buffer again on the first clone.
    let value = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text));
    RequestId { value: value.expect("a UUID is a valid header value"), source: RequestIdSource::Generated }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn accept_values(values: &[&[u8]]) -> Option<Result<RequestId, RejectReason>> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(X_REQUEST_ID, HeaderValue::from_bytes(v).unwrap());
        }
        accept(headers.get_all(X_REQUEST_ID))
    }

    #[test]
    fn safe_set_is_accepted() {
        let ok = "AZaz09-_.:+/=@";
        assert_eq!(accept_values(&[ok.as_bytes()]).unwrap().unwrap().as_str(), ok);
        assert!(validate(&[b'x'; MAX_LEN]).is_ok());
    }

    #[test]
    fn hostile_values_are_rejected_with_a_reason() {
        let long = vec![b'a'; 10_000];
        let cases: &[(&[u8], RejectReason)] = &[
            (b"", RejectReason::Empty),
            (b"abc def", RejectReason::InvalidCharacter),
            (b"abc\tdef", RejectReason::InvalidCharacter),
            (b"\"quoted\"", RejectReason::InvalidCharacter),
            ("caf\u{e9}".as_bytes(), RejectReason::InvalidCharacter),
            (b"\xff\xfe", RejectReason::InvalidCharacter),
            (b"<script>", RejectReason::InvalidCharacter),
            (&long, RejectReason::TooLong),
        ];
        for (value, reason) in cases {
            assert_eq!(accept_values(&[value]).unwrap().unwrap_err(), *reason, "{value:?}");
        }
        // CR, LF and NUL cannot even be built as a HeaderValue; validate() still refuses them.
        assert_eq!(validate(b"a\r\nb"), Err(RejectReason::InvalidCharacter));
        assert_eq!(validate(b"a\0b"), Err(RejectReason::InvalidCharacter));
    }

    #[test]
    fn duplicates_agree_or_conflict() {
        assert_eq!(accept_values(&[b"same", b"same"]).unwrap().unwrap().as_str(), "same");
        assert_eq!(accept_values(&[b"one", b"two"]).unwrap().unwrap_err(), RejectReason::Conflicting);
        assert!(accept_values(&[]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn validate_matches_its_definition(value in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let expected = (1..=MAX_LEN).contains(&value.len())
                && value.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b));
            proptest::prop_assert_eq!(validate(&value).is_ok(), expected);
        }

        #[test]
        fn printable_ids_from_the_safe_set_round_trip(value in "[A-Za-z0-9_.:+/=@-]{1,128}") {
            proptest::prop_assert!(validate(value.as_bytes()).is_ok());
        }
    }

    #[test]
    fn uuids_are_valid_and_distinct() {
        let a = uuid_id();
        let b = uuid_id();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 36);
        assert!(validate(a.as_str().as_bytes()).is_ok());
        assert_eq!(a.source(), RequestIdSource::Generated);
    }

    #[test]
    fn generated_ids_are_validated_too() {
        assert!(RequestId::generated(HeaderValue::from_static("ok-1")).is_some());
        assert!(RequestId::generated(HeaderValue::from_static("not ok")).is_none());
    }
}
