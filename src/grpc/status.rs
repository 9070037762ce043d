//! gRPC status codes: parsed from `grpc-status`, named, classified.
//!
//! Sources: gRPC "Status codes and their use in gRPC" (the codes and their
//! names), "gRPC over HTTP2" (`grpc-status`, `grpc-message`, `grpc-timeout`)
//! and "HTTP to gRPC Status Code Mapping"; OpenTelemetry semantic
//! conventions v1.44.0, "Semantic conventions for gRPC" (which codes a
//! server counts as errors).

use std::{borrow::Cow, fmt, time::Duration};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// `grpc-status`: the status code of a call, in the trailers (or in the
/// headers of a trailers-only response).
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`: the status message, percent-encoded UTF-8.
pub(crate) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-timeout`: the client's deadline, as a duration from now.
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The longest status message kept for a span's status description, in
/// bytes (after percent-decoding).
pub(crate) const MAX_MESSAGE_LEN: usize = 256;

/// A gRPC status code (gRPC "Status codes and their use in gRPC").
///
/// Its [name](Self::as_str) is the value of the `rpc.response.status_code`
/// attribute and `rpc_response_status_code` label, and of `error.type` for
/// the codes a server counts as errors (see
/// [`is_server_error`](Self::is_server_error)).
///
/// ```
/// use tower_observability::grpc::Code;
///
/// assert_eq!(Code::from_bytes(b"5"), Code::NotFound);
/// assert_eq!(Code::NotFound.as_str(), "NOT_FOUND");
/// assert!(!Code::NotFound.is_server_error());
/// assert!(Code::Unavailable.is_server_error());
/// // Anything that is not one of the 17 codes is UNKNOWN: labels stay bounded.
/// assert_eq!(Code::from_bytes(b"99"), Code::Unknown);
/// assert_eq!(Code::from_bytes(b"\xff oops"), Code::Unknown);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Code {
    /// `0`: not an error.
    Ok = 0,
    /// `1`: cancelled, typically by the caller.
    Cancelled = 1,
    /// `2`: an unknown error.
    Unknown = 2,
    /// `3`: the client gave an invalid argument.
    InvalidArgument = 3,
    /// `4`: the deadline expired before the call completed.
    DeadlineExceeded = 4,
    /// `5`: a requested entity was not found.
    NotFound = 5,
    /// `6`: the entity a client tried to create exists.
    AlreadyExists = 6,
    /// `7`: the caller may not run the operation.
    PermissionDenied = 7,
    /// `8`: a resource (quota, space) is exhausted.
    ResourceExhausted = 8,
    /// `9`: the system is not in a state the operation needs.
    FailedPrecondition = 9,
    /// `10`: aborted, typically by a concurrency conflict.
    Aborted = 10,
    /// `11`: attempted past the valid range.
    OutOfRange = 11,
    /// `12`: not implemented or not supported by this server.
    Unimplemented = 12,
    /// `13`: an internal error.
    Internal = 13,
    /// `14`: the service is unavailable now (transient).
    Unavailable = 14,
    /// `15`: unrecoverable data loss or corruption.
    DataLoss = 15,
    /// `16`: the request has no valid credentials.
    Unauthenticated = 16,
}

const CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl Code {
    /// The code of a number; `UNKNOWN` for a number that is not a code
    /// (gRPC: a status outside the defined range is treated as `UNKNOWN`).
    #[inline]
    pub fn from_i32(code: i32) -> Self {
        usize::try_from(code).ok().and_then(|i| CODES.get(i)).copied().unwrap_or(Self::Unknown)
    }

    /// The code of a `grpc-status` value: one to two ASCII digits naming a
    /// code; anything else (empty, signs, spaces, other bytes, numbers past
    /// 16) is `UNKNOWN`. Reads at most 2 bytes; never panics.
    #[inline]
    pub fn from_bytes(value: &[u8]) -> Self {
        let digit = |b: u8| b.is_ascii_digit().then(|| i32::from(b - b'0'));
        let code = match *value {
            [a] => digit(a),
            [a, b] if a != b'0' => digit(a).zip(digit(b)).map(|(a, b)| a * 10 + b),
            _ => None,
        };
        code.map_or(Self::Unknown, Self::from_i32)
    }

    /// The name: `OK`, `NOT_FOUND`, `DEADLINE_EXCEEDED`... (the value of
    /// `rpc.response.status_code`).
    #[inline]
    pub fn as_str(self) -> &'static str {
        NAMES[self as usize]
    }

    /// Whether a server counts the code as an error: `UNKNOWN`,
    /// `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE` and
    /// `DATA_LOSS` (OTel semconv v1.44.0, gRPC server spans, note on
    /// `rpc.response.status_code`). The others (`NOT_FOUND`,
    /// `INVALID_ARGUMENT`, `CANCELLED`...) are the client's doing.
    #[inline]
    pub fn is_server_error(self) -> bool {
        matches!(
            self,
            Self::Unknown
                | Self::DeadlineExceeded
                | Self::Unimplemented
                | Self::Internal
                | Self::Unavailable
                | Self::DataLoss
        )
    }

    /// The code a gRPC client infers from the HTTP status of a response
    /// without `grpc-status` (gRPC "HTTP to gRPC Status Code Mapping"):
    /// 400 `INTERNAL`, 401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404
    /// `UNIMPLEMENTED`, 429, 502, 503 and 504 `UNAVAILABLE`, any other
    /// `UNKNOWN` (200 too: a response that ends without a status).
    pub fn from_http_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::Internal,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::Unimplemented,
            429 | 502 | 503 | 504 => Self::Unavailable,
            _ => Self::Unknown,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status a response carries in `headers` (its trailers, or the
/// headers of a trailers-only response), with its raw `grpc-message`.
#[inline]
pub(crate) fn status_of(headers: &HeaderMap) -> Option<(Code, Option<HeaderValue>)> {
    let code = Code::from_bytes(headers.get(&GRPC_STATUS)?.as_bytes());
    let message = if code == Code::Ok { None } else { headers.get(&GRPC_MESSAGE).cloned() };
    Some((code, message))
}

/// A `grpc-message` value, percent-decoded (invalid UTF-8 replaced) and cut
/// to at most [`MAX_MESSAGE_LEN`] bytes on a character boundary.
pub(crate) fn decode_message(value: &[u8]) -> Cow<'_, str> {
    let decoded = percent_encoding::percent_decode(value).decode_utf8_lossy();
    if decoded.len() <= MAX_MESSAGE_LEN {
        return decoded;
    }
    let mut end = MAX_MESSAGE_LEN;
    while !decoded.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(decoded[..end].to_owned())
}

/// The duration of a `grpc-timeout` value (gRPC over HTTP2: at most 8 ASCII
/// digits, then a unit, `H` `M` `S` `m` `u` or `n`); `None` for anything
/// else. Reads at most 9 bytes; never panics.
pub(crate) fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn codes_round_trip_through_their_numbers() {
        for (i, code) in CODES.iter().enumerate() {
            assert_eq!(*code as usize, i);
            assert_eq!(Code::from_bytes(i.to_string().as_bytes()), *code);
            assert_eq!(Code::from_i32(i as i32), *code);
        }
        for bad in [&b""[..], b"-1", b"+1", b" 1", b"1 ", b"17", b"05", b"123", b"x"] {
            assert_eq!(Code::from_bytes(bad), Code::Unknown, "{bad:?}");
        }
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::DeadlineExceeded.to_string(), "DEADLINE_EXCEEDED");
    }

    #[test]
    fn server_errors_are_the_six_of_the_conventions() {
        let errors: Vec<_> = CODES.iter().filter(|c| c.is_server_error()).map(|c| c.as_str()).collect();
        assert_eq!(
            errors,
            ["UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"]
        );
    }

    #[test]
    fn http_statuses_map_as_grpc_clients_do() {
        let map = |s: u16| Code::from_http_status(StatusCode::from_u16(s).unwrap());
        assert_eq!(map(400), Code::Internal);
        assert_eq!(map(401), Code::Unauthenticated);
        assert_eq!(map(403), Code::PermissionDenied);
        assert_eq!(map(404), Code::Unimplemented);
        assert_eq!(map(503), Code::Unavailable);
        assert_eq!(map(500), Code::Unknown);
        assert_eq!(map(200), Code::Unknown);
    }

    #[test]
    fn timeouts_parse_per_the_spec() {
        assert_eq!(parse_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout(b"1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_timeout(b"5n"), Some(Duration::from_nanos(5)));
        for bad in [&b""[..], b"m", b"100", b"100x", b"123456789m", b"-1m", b"1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn messages_are_decoded_and_bounded() {
        assert_eq!(decode_message(b"not%20found"), "not found");
        assert_eq!(decode_message(b"caf%C3%A9"), "café");
        assert_eq!(decode_message(b"%FF"), "\u{fffd}");
        let long = "é".repeat(MAX_MESSAGE_LEN);
        let cut = decode_message(long.as_bytes());
        assert!(cut.len() <= MAX_MESSAGE_LEN && cut.chars().all(|c| c == 'é'));
    }

    proptest! {
        /// Any bytes in `grpc-status`, `grpc-message` and `grpc-timeout`:
        /// no panic, a status among the 17 names, a message of bounded size.
        #[test]
        fn any_bytes_parse_to_bounded_values(
            status in proptest::collection::vec(any::<u8>(), 0..12),
            message in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let code = Code::from_bytes(&status);
            prop_assert!(NAMES.contains(&code.as_str()));
            prop_assert!(decode_message(&message).len() <= MAX_MESSAGE_LEN);
            let _ = parse_timeout(&status);
            let _ = parse_timeout(&message);
            if let (Ok(status), Ok(message)) =
                (HeaderValue::from_bytes(&status), HeaderValue::from_bytes(&message))
            {
                let mut headers = HeaderMap::new();
                headers.insert(GRPC_STATUS, status);
                headers.insert(GRPC_MESSAGE, message);
                let (parsed, kept) = status_of(&headers).expect("a status header");
                prop_assert_eq!(parsed, code);
                prop_assert_eq!(kept.is_some(), code != Code::Ok);
            }
        }
    }
}
