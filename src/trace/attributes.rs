//! The attributes a server span takes from its request and its response,
//! beyond method, route and scheme: client and server addresses, the
//! redacted query, captured headers, and the length cap every value taken
//! from the request obeys (OTel HTTP semconv v1.44, "HTTP server span").

use std::{borrow::Cow, error::Error, fmt, sync::Arc};

use http::{HeaderMap, HeaderName, Request, header};
use opentelemetry::{Array, Key, KeyValue, StringValue, Value};

use crate::{
    address::{self, TrustedProxies},
    semconv::{
        CLIENT_ADDRESS, CLIENT_PORT, NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT, SERVER_ADDRESS, SERVER_PORT,
        URL_PATH, URL_QUERY, USER_AGENT_ORIGINAL, capped,
    },
};

/// The length cap of attribute values taken from a request, in bytes, when
/// neither `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT` nor
/// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` sets one.
pub const DEFAULT_VALUE_LENGTH_LIMIT: usize = 4096;

/// The query parameters whose values are replaced by `REDACTED` in
/// `url.query`: the list of OTel HTTP semconv v1.44 (`X-Amz-Signature`,
/// `X-Amz-Credential`, `X-Amz-Security-Token`, `sig`, `X-Goog-Signature`),
/// and `AWSAccessKeyId` and `Signature` of the older AWS signed URLs that
/// earlier versions listed. Keys are matched case-sensitively, as the
/// conventions say.
pub const SENSITIVE_QUERY_PARAMETERS: [&str; 7] = [
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "sig",
    "X-Goog-Signature",
    "AWSAccessKeyId",
    "Signature",
];

/// The value a sensitive query parameter is given.
const REDACTED: &str = "REDACTED";

/// The headers never captured unless [`HeaderCapture::allow_sensitive`]
/// says so: credentials and session state.
pub const SENSITIVE_HEADERS: [HeaderName; 4] =
    [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::COOKIE, header::SET_COOKIE];

/// The most values a captured header records (a header sent more often is
/// cut there).
const MAX_HEADER_VALUES: usize = 16;

/// Which request and response headers become span attributes:
/// `http.request.header.<name>` and `http.response.header.<name>`, each a
/// string array of the header's values (OTel HTTP semconv, opt-in). Given to
/// [`HttpTraceLayer::capture_headers`](super::HttpTraceLayer::capture_headers).
///
/// Values are capped like every value taken from a request, at most 16 per
/// header; captured headers never become metric labels. `Authorization`,
/// `Proxy-Authorization`, `Cookie` and `Set-Cookie` are refused unless
/// [`allow_sensitive`](Self::allow_sensitive) is set.
///
/// # Example
///
/// ```
/// use http::{HeaderName, header::CONTENT_TYPE};
/// use tower_observability::trace::{HeaderCapture, HttpTraceLayer};
///
/// let capture = HeaderCapture::new()
///     .request_headers([HeaderName::from_static("x-tenant")])
///     .response_headers([CONTENT_TYPE]);
/// let layer = HttpTraceLayer::new().capture_headers(capture).expect("no sensitive header");
///
/// let refused = HttpTraceLayer::new()
///     .capture_headers(HeaderCapture::new().request_headers([http::header::COOKIE]));
/// assert_eq!(refused.unwrap_err().to_string(), "refused to capture the sensitive header `cookie`");
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct HeaderCapture {
    request: Vec<HeaderName>,
    response: Vec<HeaderName>,
    allow_sensitive: bool,
}

impl HeaderCapture {
    /// Captures no header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Captures these request headers, adding to those given before.
    pub fn request_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.request.extend(names);
        self
    }

    /// Captures these response headers, adding to those given before.
    pub fn response_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.response.extend(names);
        self
    }

    /// Lets the sensitive headers be captured too. Their values then reach
    /// your trace backend: do it for debugging, not in production.
    pub fn allow_sensitive(mut self) -> Self {
        self.allow_sensitive = true;
        self
    }

    /// The capture, checked: refuses a sensitive header unless allowed.
    pub(super) fn checked(self) -> Result<CapturedHeaders, CaptureError> {
        if !self.allow_sensitive
            && let Some(name) =
                self.request.iter().chain(&self.response).find(|n| SENSITIVE_HEADERS.contains(n))
        {
            return Err(CaptureError { name: name.clone() });
        }
        let keys = |prefix: &str, names: Vec<HeaderName>| -> Arc<[(HeaderName, Key)]> {
            let mut names = names;
            names.dedup();
            names.into_iter().map(|n| (n.clone(), Key::from(format!("{prefix}{}", n.as_str())))).collect()
        };
        Ok(CapturedHeaders {
            request: keys("http.request.header.", self.request),
            response: keys("http.response.header.", self.response),
        })
    }
}

/// The error of [`HttpTraceLayer::capture_headers`](super::HttpTraceLayer::capture_headers):
/// a sensitive header was listed without [`HeaderCapture::allow_sensitive`].
#[derive(Debug, Clone)]
pub struct CaptureError {
    name: HeaderName,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused to capture the sensitive header `{}`", self.name)
    }
}

impl Error for CaptureError {}

/// The headers a layer captures, with their attribute keys made once.
#[derive(Debug, Clone, Default)]
pub(crate) struct CapturedHeaders {
    request: Arc<[(HeaderName, Key)]>,
    response: Arc<[(HeaderName, Key)]>,
}

/// The response headers a layer captures, with their attribute keys.
pub(super) type ResponseCapture = Arc<[(HeaderName, Key)]>;

impl CapturedHeaders {
    /// The response headers captured, when there are any.
    #[inline]
    pub(super) fn response_names(&self) -> Option<ResponseCapture> {
        (!self.response.is_empty()).then(|| self.response.clone())
    }
}

/// The captured headers of a response's `headers`, capped at `limit`.
pub(super) fn response_headers(
    names: &[(HeaderName, Key)],
    headers: &HeaderMap,
    limit: usize,
) -> Vec<KeyValue> {
    let mut out = Vec::new();
    captured(headers, names, limit, &mut out);
    out
}

/// What the trace part reads from requests beyond method, route and scheme.
#[derive(Debug, Clone)]
pub(super) struct AttributeConfig {
    pub(super) trusted_proxies: TrustedProxies,
    /// The cap of every value taken from the request, in bytes.
    pub(super) value_limit: usize,
    /// `url.query` keys whose values are redacted.
    pub(super) sensitive_query: Arc<[Box<str>]>,
    pub(super) headers: CapturedHeaders,
    /// `client.port` (opt-in in the conventions).
    pub(super) client_port: bool,
}

impl AttributeConfig {
    pub(super) fn new() -> Self {
        Self {
            trusted_proxies: TrustedProxies::default(),
            value_limit: value_length_limit_from_env(),
            sensitive_query: SENSITIVE_QUERY_PARAMETERS.iter().map(|&k| k.into()).collect(),
            headers: CapturedHeaders::default(),
            client_port: false,
        }
    }

    /// Pushes the attributes `req` gives: `url.path` and `url.query`,
    /// `user_agent.original`, the client, peer and server addresses, and the
    /// captured request headers.
    pub(super) fn request<B>(&self, req: &Request<B>, out: &mut Vec<KeyValue>) {
        let limit = self.value_limit;
        let forwarded_host = address::is_forwarded(req, &self.trusted_proxies)
            .then(|| address::forwarded_server(req.headers()).host)
            .flatten();
        out.push(KeyValue::new(URL_PATH, capped(req.uri().path(), limit).to_owned()));
        if let Some(query) = req.uri().query() {
            out.push(KeyValue::new(
                URL_QUERY,
                redact_query(query, &self.sensitive_query, limit).into_owned(),
            ));
        }
        if let Some(agent) = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
            out.push(KeyValue::new(USER_AGENT_ORIGINAL, capped(agent, limit).to_owned()));
        }
        if let Some(client) = address::client(req, &self.trusted_proxies) {
            let peer = recent::ip(client.peer.ip());
            let address = if client.client.ip == client.peer.ip() {
                peer.clone()
            } else {
                recent::ip(client.client.ip)
            };
            out.push(KeyValue::new(CLIENT_ADDRESS, address));
            if let Some(port) = client.client.port.filter(|_| self.client_port) {
                out.push(KeyValue::new(CLIENT_PORT, i64::from(port)));
            }
            out.push(KeyValue::new(NETWORK_PEER_ADDRESS, peer));
            out.push(KeyValue::new(NETWORK_PEER_PORT, i64::from(client.peer.port())));
        }
        if let Some((host, port)) = address::server(req, forwarded_host) {
            out.push(KeyValue::new(SERVER_ADDRESS, recent::host(host)));
            if let Some(port) = port {
                out.push(KeyValue::new(SERVER_PORT, i64::from(port)));
            }
        }
        captured(req.headers(), &self.headers.request, limit, out);
    }
}

/// The attribute values of recent addresses and hosts, per thread: a
/// peer's requests share its connection, a service answers to few host
/// names, so their values are found again (a reference count) instead of
/// formatted and allocated per request. Direct-mapped, 16 entries per
/// thread each: bounded whatever the traffic.
mod recent {
    use std::{
        cell::RefCell,
        hash::{BuildHasher, Hash},
        net::IpAddr,
        sync::{Arc, LazyLock},
    };

    use opentelemetry::StringValue;

    const SLOTS: usize = 16;

    type Slots<T> = RefCell<[Option<T>; SLOTS]>;

    thread_local! {
        static IPS: Slots<(IpAddr, Arc<str>)> = RefCell::default();
        static HOSTS: Slots<Arc<str>> = RefCell::default();
    }

    static HASHER: LazyLock<foldhash::fast::RandomState> = LazyLock::new(Default::default);

    fn slot(key: impl Hash) -> usize {
        (HASHER.hash_one(key) as usize) % SLOTS
    }

    /// The text of `ip` (`client.address`, `network.peer.address`).
    pub(super) fn ip(ip: IpAddr) -> StringValue {
        IPS.with_borrow_mut(|slots| {
            let entry = &mut slots[slot(ip)];
            match entry {
                Some((seen, text)) if *seen == ip => StringValue::from(text.clone()),
                _ => {
                    let text: Arc<str> = ip.to_string().into();
                    *entry = Some((ip, text.clone()));
                    StringValue::from(text)
                }
            }
        })
    }

    /// `host` in lowercase (`server.address`).
    pub(super) fn host(host: &str) -> StringValue {
        HOSTS.with_borrow_mut(|slots| {
            let entry = &mut slots[slot(host.as_bytes())];
            match entry {
                Some(text) if text.eq_ignore_ascii_case(host) => StringValue::from(text.clone()),
                _ => {
                    let text: Arc<str> = host.to_ascii_lowercase().into();
                    *entry = Some(text.clone());
                    StringValue::from(text)
                }
            }
        })
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn values_are_shared_and_right() {
            let a = super::ip("10.0.0.1".parse().unwrap());
            assert_eq!(a.as_str(), "10.0.0.1");
            assert_eq!(super::ip("10.0.0.1".parse().unwrap()).as_str().as_ptr(), a.as_str().as_ptr());
            assert_eq!(super::ip("::1".parse().unwrap()).as_str(), "::1");
            assert_eq!(super::host("API.example.com").as_str(), "api.example.com");
            // A host that differs in case only hashes elsewhere: still right.
            assert_eq!(super::host("api.example.com").as_str(), "api.example.com");
            for i in 0..100 {
                let host = format!("h{i}.example");
                assert_eq!(super::host(&host).as_str(), host);
            }
        }
    }
}

/// Pushes `http.*.header.<name>` for each of `names` present in `headers`.
fn captured(headers: &HeaderMap, names: &[(HeaderName, Key)], limit: usize, out: &mut Vec<KeyValue>) {
    for (name, key) in names {
        let values: Vec<StringValue> = headers
            .get_all(name)
            .iter()
            .take(MAX_HEADER_VALUES)
            .map(|v| StringValue::from(capped(&String::from_utf8_lossy(v.as_bytes()), limit).to_owned()))
            .collect();
        if !values.is_empty() {
            out.push(KeyValue::new(key.clone(), Value::Array(Array::String(values))));
        }
    }
}

/// `query` with the values of `sensitive` keys replaced by `REDACTED`
/// (keys kept: `q=OpenTelemetry&sig=REDACTED`), then capped at `limit`
/// bytes. Borrowed when nothing is redacted. One pass; a key is compared
/// only when some sensitive key has its length.
pub(crate) fn redact_query<'a>(query: &'a str, sensitive: &[Box<str>], limit: usize) -> Cow<'a, str> {
    let lengths = sensitive.iter().fold(0u64, |mask, k| mask | 1u64.checked_shl(k.len() as u32).unwrap_or(0));
    let mut out: Option<String> = None;
    // `query[..copied]` is in `out` already.
    let mut copied = 0;
    let mut start = 0;
    for pair in query.split('&') {
        if let Some(eq) = pair.find('=')
            && 1u64.checked_shl(eq as u32).is_some_and(|bit| lengths & bit != 0)
            && sensitive.iter().any(|k| **k == pair[..eq])
        {
            let out =
                out.get_or_insert_with(|| String::with_capacity(query.len().min(limit) + REDACTED.len()));
            out.push_str(&query[copied..start + eq + 1]);
            out.push_str(REDACTED);
            copied = start + pair.len();
        }
        start += pair.len() + 1;
    }
    match out {
        None => Cow::Borrowed(capped(query, limit)),
        Some(mut out) => {
            out.push_str(&query[copied..]);
            let end = capped(&out, limit).len();
            out.truncate(end);
            Cow::Owned(out)
        }
    }
}

/// The cap the OpenTelemetry environment variables set: the span one, else
/// the general one, else [`DEFAULT_VALUE_LENGTH_LIMIT`]. A value that is
/// not a non-negative integer is ignored with a warning (OTel SDK
/// environment-variable spec: "invalid values ... SHOULD be ignored").
fn value_length_limit_from_env() -> usize {
    for name in ["OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"] {
        let Ok(raw) = std::env::var(name) else { continue };
        match raw.trim().parse::<usize>() {
            Ok(limit) => return limit,
            Err(_) => tracing::warn!(variable = name, value = ?raw, "ignored: not a non-negative integer"),
        }
    }
    DEFAULT_VALUE_LENGTH_LIMIT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensitive() -> Vec<Box<str>> {
        SENSITIVE_QUERY_PARAMETERS.iter().map(|&k| k.into()).collect()
    }

    #[test]
    fn sensitive_query_values_are_redacted_keys_kept() {
        let s = sensitive();
        assert_eq!(redact_query("q=OpenTelemetry&sig=abc", &s, 4096), "q=OpenTelemetry&sig=REDACTED");
        assert_eq!(
            redact_query("X-Amz-Signature=1&X-Amz-Credential=2&a=3", &s, 4096),
            "X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&a=3"
        );
        assert!(matches!(redact_query("q=1&SIG=2", &s, 4096), Cow::Borrowed(_)), "case-sensitive");
        assert_eq!(redact_query("sig&sig=", &s, 4096), "sig&sig=REDACTED", "a bare key has no value");
        assert_eq!(redact_query("a=1&&b", &s, 4096), "a=1&&b");
    }

    #[test]
    fn values_are_capped_at_a_char_boundary() {
        assert_eq!(capped("héllo", 2), "h");
        assert_eq!(capped("héllo", 3), "hé");
        assert_eq!(capped("abc", 10), "abc");
        assert_eq!(capped("abc", 0), "");
        let long = format!("sig=1&q={}", "x".repeat(100));
        let r = redact_query(&long, &sensitive(), 20);
        assert_eq!(r, "sig=REDACTED&q=xxxxx");
        assert!(redact_query(&"y".repeat(50), &sensitive(), 7).len() == 7);
    }

    proptest::proptest! {
        /// Any query: no panic, within the cap, and no value of a sensitive
        /// key left.
        #[test]
        fn queries_are_capped_and_redacted(query in "[a-zA-Z0-9=&%_.~-]{0,200}", limit in 0usize..64) {
            let redacted = redact_query(&query, &sensitive(), limit);
            proptest::prop_assert!(redacted.len() <= limit);
            for pair in redacted.split('&') {
                if let Some((key, value)) = pair.split_once('=')
                    && SENSITIVE_QUERY_PARAMETERS.contains(&key)
                {
                    proptest::prop_assert!(REDACTED.starts_with(value), "{:?}", redacted);
                }
            }
        }

        /// Any header bytes: captured values are within the cap.
        #[test]
        fn captured_values_are_capped(bytes in proptest::collection::vec(proptest::prop_oneof![0x20u8..0x7f, 0x80u8..=0xff], 0..600), limit in 0usize..100) {
            let capture = HeaderCapture::new().request_headers([HeaderName::from_static("x-h")]).checked().unwrap();
            let mut headers = HeaderMap::new();
            headers.insert("x-h", http::HeaderValue::from_bytes(&bytes).unwrap());
            let mut out = Vec::new();
            captured(&headers, &capture.request, limit, &mut out);
            let Value::Array(Array::String(values)) = &out[0].value else { panic!() };
            proptest::prop_assert!(values.iter().all(|v| v.as_str().len() <= limit));
        }
    }

    #[test]
    fn sensitive_headers_need_consent() {
        for name in SENSITIVE_HEADERS {
            let err = HeaderCapture::new().response_headers([name.clone()]).checked().unwrap_err();
            assert!(err.to_string().contains(name.as_str()));
            assert!(HeaderCapture::new().request_headers([name]).allow_sensitive().checked().is_ok());
        }
    }

    #[test]
    fn captured_headers_are_arrays_of_capped_values() {
        let capture = HeaderCapture::new()
            .request_headers([HeaderName::from_static("x-tenant"), HeaderName::from_static("x-absent")])
            .checked()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.append("x-tenant", "acme".parse().unwrap());
        headers.append("x-tenant", "b".repeat(10).parse().unwrap());
        headers.append("x-tenant", http::HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let mut out = Vec::new();
        captured(&headers, &capture.request, 4, &mut out);
        assert_eq!(out.len(), 1, "absent headers add nothing");
        assert_eq!(out[0].key.as_str(), "http.request.header.x-tenant");
        let Value::Array(Array::String(values)) = &out[0].value else { panic!("{:?}", out[0].value) };
        let values: Vec<&str> = values.iter().map(StringValue::as_str).collect();
        assert_eq!(values, ["acme", "bbbb", "caf"], "capped; invalid UTF-8 replaced then capped");
    }
}
