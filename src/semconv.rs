//! OpenTelemetry semantic-convention names and values the crate uses, in
//! one place: attribute keys, known methods, `url.scheme`,
//! `network.protocol.version`, and the histogram bucket advice.
//!
//! Source: OpenTelemetry semantic conventions v1.44, "HTTP spans" and "HTTP
//! metrics" (stable since v1.23), and "Exceptions" for the `exception.*`
//! keys. Names the conventions do not define (`request_id`, `cache.result`)
//! say so where they are declared.

use std::sync::OnceLock;

use http::{Method, Version};
use opentelemetry::Key;

/// `http.request.method`: the method, or `_OTHER` for an unknown one.
pub(crate) const HTTP_REQUEST_METHOD: Key = Key::from_static_str("http.request.method");
/// `http.request.method_original`: the method as sent, when it became `_OTHER`.
pub(crate) const HTTP_REQUEST_METHOD_ORIGINAL: Key = Key::from_static_str("http.request.method_original");
/// `http.route`: the route template.
pub(crate) const HTTP_ROUTE: Key = Key::from_static_str("http.route");
/// `url.path`.
pub(crate) const URL_PATH: Key = Key::from_static_str("url.path");
/// `url.query`: the query, its sensitive values redacted.
pub(crate) const URL_QUERY: Key = Key::from_static_str("url.query");
/// `url.scheme`.
pub(crate) const URL_SCHEME: Key = Key::from_static_str("url.scheme");
/// `client.address`: the original client, behind trusted proxies.
pub(crate) const CLIENT_ADDRESS: Key = Key::from_static_str("client.address");
/// `client.port` (opt-in).
pub(crate) const CLIENT_PORT: Key = Key::from_static_str("client.port");
/// `network.peer.address`: the socket peer.
pub(crate) const NETWORK_PEER_ADDRESS: Key = Key::from_static_str("network.peer.address");
/// `network.peer.port`.
pub(crate) const NETWORK_PEER_PORT: Key = Key::from_static_str("network.peer.port");
/// `server.address`: the host the client addressed.
pub(crate) const SERVER_ADDRESS: Key = Key::from_static_str("server.address");
/// `server.port`.
pub(crate) const SERVER_PORT: Key = Key::from_static_str("server.port");
/// `exception.type`.
pub(crate) const EXCEPTION_TYPE: Key = Key::from_static_str("exception.type");
/// `exception.message`.
pub(crate) const EXCEPTION_MESSAGE: Key = Key::from_static_str("exception.message");
/// `exception.stacktrace`.
pub(crate) const EXCEPTION_STACKTRACE: Key = Key::from_static_str("exception.stacktrace");
/// `network.protocol.version`: `1.1`, `2`...
pub(crate) const NETWORK_PROTOCOL_VERSION: Key = Key::from_static_str("network.protocol.version");
/// `user_agent.original`.
pub(crate) const USER_AGENT_ORIGINAL: Key = Key::from_static_str("user_agent.original");
/// `http.response.status_code`.
pub(crate) const HTTP_RESPONSE_STATUS_CODE: Key = Key::from_static_str("http.response.status_code");
/// `error.type`.
pub(crate) const ERROR_TYPE: Key = Key::from_static_str("error.type");
/// Not a semconv name: the request's validated id.
pub(crate) const REQUEST_ID: Key = Key::from_static_str("request_id");
/// Not a semconv name (there is none for HTTP caches): how a cache answered
/// the request, one of `CacheStatus::as_str`.
pub(crate) const CACHE_RESULT: Key = Key::from_static_str("cache.result");

/// Bucket bounds of `http.server.request.duration`, in seconds: the advice
/// of OTel HTTP semconv v1.23+ (`0.005` to `10`).
pub const DURATION_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Bucket bounds of the body-size histograms, in bytes: powers of four from
/// 64 B to 64 MiB (semconv gives no advice for sizes).
pub const SIZE_BUCKETS: [f64; 11] = [
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// The request method, normalised per OTel HTTP semconv: the nine methods of
/// RFC 9110, PATCH (RFC 5789) and QUERY (httpbis-safe-method-w-body) keep
/// their name, any other becomes `_OTHER`.
///
/// `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` (a comma-separated,
/// case-sensitive list), read once per process, replaces that list, as the
/// conventions require of an instrumentation that can turn valid methods
/// into `_OTHER`; at most [`MAX_CUSTOM_METHODS`] methods outside the
/// default list are kept (the rest become `_OTHER`, with a warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KnownMethod(u8);

const METHOD_NAMES: [&str; 12] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY", "_OTHER", ""];
const OTHER: u8 = 10;
/// The first index of a method that only the environment variable makes
/// known.
const FIRST_CUSTOM: usize = 11;

/// The most methods outside the default list that
/// `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` can add.
pub(crate) const MAX_CUSTOM_METHODS: usize = 8;

/// The methods `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` makes known.
#[derive(Debug)]
struct KnownMethods {
    /// Which default methods stay known, by index.
    defaults: [bool; OTHER as usize],
    /// Methods outside the defaults, as sent.
    custom: Vec<&'static str>,
}

/// `None`: the variable is unset, the default list holds.
static KNOWN_METHODS: OnceLock<Option<KnownMethods>> = OnceLock::new();

fn known_methods_from_env() -> Option<KnownMethods> {
    let raw = std::env::var("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS").ok()?;
    let mut known = KnownMethods { defaults: [false; OTHER as usize], custom: Vec::new() };
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if let Some(i) = METHOD_NAMES[..OTHER as usize].iter().position(|&m| m == name) {
            known.defaults[i] = true;
        } else if Method::from_bytes(name.as_bytes()).is_err() {
            tracing::warn!(method = ?name, "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS: not a method token, ignored");
        } else if known.custom.len() == MAX_CUSTOM_METHODS {
            tracing::warn!(method = ?name, max = MAX_CUSTOM_METHODS, "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS: too many methods, ignored");
        } else if !known.custom.contains(&name) {
            known.custom.push(Box::leak(name.into()));
        }
    }
    Some(known)
}

impl KnownMethod {
    /// Distinct values: the defaults, `_OTHER`, and the custom methods.
    pub(crate) const COUNT: usize = FIRST_CUSTOM + MAX_CUSTOM_METHODS;

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
            _ if method.as_str() == "QUERY" => 9,
            _ => OTHER,
        };
        match KNOWN_METHODS.get_or_init(known_methods_from_env) {
            None => Self(index),
            Some(known) => Self::overridden(known, index, method),
        }
    }

    #[cold]
    fn overridden(known: &KnownMethods, index: u8, method: &Method) -> Self {
        if index != OTHER {
            return Self(if known.defaults[index as usize] { index } else { OTHER });
        }
        match known.custom.iter().position(|&m| m == method.as_str()) {
            Some(i) => Self((FIRST_CUSTOM + i) as u8),
            None => Self(OTHER),
        }
    }

    /// The `http.request.method` value.
    #[inline]
    pub(crate) fn as_str(self) -> &'static str {
        match METHOD_NAMES.get(self.0 as usize) {
            Some(name) if (self.0 as usize) < FIRST_CUSTOM => name,
            _ => KNOWN_METHODS
                .get()
                .and_then(Option::as_ref)
                .and_then(|k| k.custom.get(self.0 as usize - FIRST_CUSTOM))
                .copied()
                .unwrap_or("_OTHER"),
        }
    }

    /// The method's name in a span name: `HTTP` for an unknown method (OTel
    /// HTTP semconv, span name).
    #[inline]
    pub(crate) fn span_name(self) -> &'static str {
        if self.is_other() { "HTTP" } else { self.as_str() }
    }

    #[inline]
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }

    #[inline]
    pub(crate) fn is_other(self) -> bool {
        self.0 == OTHER
    }
}

/// `value` cut to at most `limit` bytes, at a character boundary: the cap
/// of attribute and label values taken from requests.
#[inline]
pub(crate) fn capped(value: &str, limit: usize) -> &str {
    if value.len() <= limit {
        return value;
    }
    let mut end = limit;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// `url.scheme` of a server request: the URI's scheme when it has one
/// (absolute-form), else `http`.
#[inline]
pub(crate) fn is_https(uri: &http::Uri) -> bool {
    uri.scheme() == Some(&http::uri::Scheme::HTTPS)
}

/// The `url.scheme` value: `https` or `http`.
#[inline]
pub(crate) fn scheme_name(https: bool) -> &'static str {
    if https { "https" } else { "http" }
}

/// The `network.protocol.version` value of an HTTP version.
#[inline]
pub(crate) fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

// RPC: OpenTelemetry semantic conventions v1.44.0, "Semantic conventions
// for RPC spans", "... for RPC metrics" and "... for gRPC" (release
// candidate). v1.39 renamed `rpc.system` to `rpc.system.name`, merged
// `rpc.service` into a fully qualified `rpc.method`, replaced
// `rpc.grpc.status_code` (an int) with `rpc.response.status_code` (the
// code's name), and `rpc.server.duration` (ms) with
// `rpc.server.call.duration` (s).

/// `rpc.system.name`: the RPC system, `grpc`.
pub(crate) const RPC_SYSTEM_NAME: Key = Key::from_static_str("rpc.system.name");
/// `rpc.method`: `{package.Service}/{Method}`, or `_OTHER`.
pub(crate) const RPC_METHOD: Key = Key::from_static_str("rpc.method");
/// `rpc.method_original`: the method the client named, when `rpc.method`
/// is `_OTHER`.
pub(crate) const RPC_METHOD_ORIGINAL: Key = Key::from_static_str("rpc.method_original");
/// `rpc.response.status_code`: the status code's name, `OK`, `NOT_FOUND`...
pub(crate) const RPC_RESPONSE_STATUS_CODE: Key = Key::from_static_str("rpc.response.status_code");
/// The `rpc.system.name` of gRPC.
pub(crate) const RPC_SYSTEM_GRPC: &str = "grpc";
/// The `rpc.method` of a method the server does not recognize.
pub(crate) const RPC_METHOD_OTHER: &str = "_OTHER";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_overrides_the_known_methods() {
        // The variable's parsing, without touching the process-wide list.
        let known = KnownMethods {
            defaults: {
                let mut d = [false; OTHER as usize];
                d[0] = true;
                d
            },
            custom: vec!["PURGE"],
        };
        assert_eq!(KnownMethod::overridden(&known, 0, &Method::GET).as_str(), "GET");
        assert!(KnownMethod::overridden(&known, 2, &Method::POST).is_other(), "a full override");
        let purge = Method::from_bytes(b"PURGE").unwrap();
        let m = KnownMethod::overridden(&known, OTHER, &purge);
        assert_eq!(m.index(), FIRST_CUSTOM);
        assert!(!m.is_other());
        assert!(KnownMethod::overridden(&known, OTHER, &Method::from_bytes(b"BREW").unwrap()).is_other());
    }

    #[test]
    fn methods_are_normalised() {
        assert_eq!(KnownMethod::of(&Method::GET).as_str(), "GET");
        assert_eq!(KnownMethod::of(&Method::PATCH).as_str(), "PATCH");
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(KnownMethod::of(&custom).as_str(), "_OTHER");
        assert_eq!(KnownMethod::of(&custom).span_name(), "HTTP");
        assert!(KnownMethod::of(&custom).is_other());
        assert!(!KnownMethod::of(&Method::GET).is_other());
        let query = Method::from_bytes(b"QUERY").unwrap();
        assert_eq!(KnownMethod::of(&query).as_str(), "QUERY");
        assert_eq!(KnownMethod::of(&query).span_name(), "QUERY");
    }

    #[test]
    fn schemes_and_versions() {
        assert!(is_https(&"https://example.com/x".parse().unwrap()));
        assert!(!is_https(&"/x".parse().unwrap()));
        assert_eq!(scheme_name(true), "https");
        assert_eq!(protocol_version(Version::HTTP_11), "1.1");
        assert_eq!(protocol_version(Version::HTTP_2), "2");
    }
}
