//! Who sent a request and to which server: the OTel `client.*`,
//! `network.peer.*` and `server.*` attributes (OTel HTTP semconv v1.44,
//! "HTTP server span" and "Setting `server.address` and `server.port`").
//!
//! - The socket peer is axum's `ConnectInfo<SocketAddr>` when the server
//!   was started with `into_make_service_with_connect_info::<SocketAddr>()`
//!   (with the `axum` feature), or a [`PeerAddr`] another server put in the
//!   request extensions.
//! - `client.address`/`client.port`: the peer, unless the peer is one of the
//!   user's [`TrustedProxies`]; then the original client named by RFC 7239
//!   `Forwarded: for=`, else `X-Forwarded-For`, read right to left past
//!   the trusted hops (the left part of those headers is whatever the
//!   client wrote, so it is never believed). Without a known peer, the
//!   headers are not believed at all.
//! - `server.address`/`server.port`: the original host a trusted proxy
//!   passed (`Forwarded: host=`, `X-Forwarded-Host`), else the HTTP/2
//!   `:authority` (the request URI's authority), else `Host`.
//! - `url.scheme`: `Forwarded: proto=` or `X-Forwarded-Proto` of a trusted
//!   proxy, else the request URI's.
//!
//! Every value is parsed, never copied as sent: an address is an IP address
//! (or, for a host, a bounded RFC 3986 reg-name), a port a `u16`.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use http::{HeaderMap, HeaderName, Request, header};
pub use ipnet::IpNet;

/// The socket address of the peer of a request, for servers other than
/// axum's (whose `ConnectInfo<SocketAddr>` is read directly): put it in the
/// request extensions before the crate's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The proxies whose `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Host` and
/// `X-Forwarded-Proto` headers are believed: a list of networks. Empty by
/// default: no proxy header is believed.
///
/// A request counts as forwarded only when its socket peer is in the list
/// (see the [module docs](self)); the original client is then the
/// rightmost hop of the proxy header that is not in the list.
///
/// # Example
///
/// ```
/// use tower_observability::address::TrustedProxies;
///
/// // The load balancers of a VPC, and a sidecar on loopback.
/// let proxies = TrustedProxies::new(["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()]);
/// assert!(proxies.contains("10.1.2.3".parse().unwrap()));
/// assert!(!proxies.contains("203.0.113.9".parse().unwrap()));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Option<Arc<[IpNet]>>);

impl TrustedProxies {
    /// Trusts the peers in `networks`.
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> Self {
        let networks: Arc<[IpNet]> = networks.into_iter().collect();
        Self((!networks.is_empty()).then_some(networks))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Whether `ip` is a trusted proxy. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`) is checked as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let Some(networks) = &self.0 else { return false };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        networks.iter().any(|net| net.contains(&ip))
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().flat_map(|n| n.iter())).finish()
    }
}

/// The socket peer of `req`, when the server told.
#[inline]
pub(crate) fn peer<B>(req: &Request<B>) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    req.extensions().get::<PeerAddr>().map(|p| p.0)
}

/// A client endpoint: an IP address and, when known, a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) ip: IpAddr,
    pub(crate) port: Option<u16>,
}

/// Where a request came from: the socket peer and the original client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Client {
    /// `network.peer.address` and `network.peer.port`.
    pub(crate) peer: SocketAddr,
    /// `client.address` and `client.port`.
    pub(crate) client: Endpoint,
}

/// The peer and client of `req`; `None` without a known peer.
pub(crate) fn client<B>(req: &Request<B>, trusted: &TrustedProxies) -> Option<Client> {
    let peer = peer(req)?;
    let direct = || Endpoint { ip: peer.ip(), port: Some(peer.port()) };
    let client = if trusted.contains(peer.ip()) {
        forwarded_client(req.headers(), trusted).unwrap_or_else(direct)
    } else {
        direct()
    };
    Some(Client { peer, client })
}

/// Whether the proxy headers of `req` are believed: its peer is trusted.
#[inline]
pub(crate) fn is_forwarded<B>(req: &Request<B>, trusted: &TrustedProxies) -> bool {
    !trusted.is_empty() && peer(req).is_some_and(|p| trusted.contains(p.ip()))
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The most hops of proxy headers read: a longer chain is a forgery or a
/// loop, and its client is taken as unknown.
const MAX_HOPS: usize = 32;

/// The original client behind trusted proxies: the rightmost hop of
/// `Forwarded` (else `X-Forwarded-For`) that is not trusted; `None` when
/// the headers are absent, malformed or name no usable address.
fn forwarded_client(headers: &HeaderMap, trusted: &TrustedProxies) -> Option<Endpoint> {
    let hops: Vec<Node> = if headers.contains_key(header::FORWARDED) {
        let mut hops = Vec::new();
        for element in elements(headers, &header::FORWARDED)? {
            hops.push(pair(element, "for").map_or(Node::Unknown, Node::parse));
            if hops.len() > MAX_HOPS {
                return None;
            }
        }
        hops
    } else {
        let hops: Vec<Node> = elements(headers, &X_FORWARDED_FOR)?.map(Node::parse).collect();
        if hops.len() > MAX_HOPS {
            return None;
        }
        hops
    };
    // Right to left, past the trusted hops; the leftmost when all are.
    let client = hops.iter().rev().find(|hop| !matches!(hop, Node::Ip(ip, _) if trusted.contains(*ip)));
    match client.or(hops.first())? {
        Node::Ip(ip, port) => Some(Endpoint { ip: *ip, port: *port }),
        // An obfuscated or unknown hop (RFC 7239, 6.2, 6.3): no address to
        // report, and none to the right of it can stand in.
        Node::Unknown => None,
    }
}

/// The original host and scheme a trusted proxy passed on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForwardedServer<'a> {
    pub(crate) host: Option<&'a str>,
    pub(crate) https: Option<bool>,
}

/// The `host` and `proto` of the last hop of `Forwarded` (the one the
/// trusted peer wrote), else `X-Forwarded-Host` and `X-Forwarded-Proto`.
pub(crate) fn forwarded_server(headers: &HeaderMap) -> ForwardedServer<'_> {
    if headers.contains_key(header::FORWARDED) {
        let last = elements(headers, &header::FORWARDED).and_then(Iterator::last);
        return ForwardedServer {
            host: last.and_then(|e| pair(e, "host")),
            https: last.and_then(|e| pair(e, "proto")).and_then(scheme_is_https),
        };
    }
    let last = |name| elements(headers, name).and_then(Iterator::last);
    ForwardedServer {
        host: last(&X_FORWARDED_HOST),
        https: last(&X_FORWARDED_PROTO).and_then(scheme_is_https),
    }
}

fn scheme_is_https(scheme: &str) -> Option<bool> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(true)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(false)
    } else {
        None
    }
}

/// The `server.address` and `server.port` of `req`: the host a trusted
/// proxy passed on (`forwarded`), else the URI's authority (HTTP/2
/// `:authority`, or an absolute-form target), else `Host`. `None` when
/// none is there or the value is not a valid host.
pub(crate) fn server<'a, B>(
    req: &'a Request<B>,
    forwarded: Option<&'a str>,
) -> Option<(&'a str, Option<u16>)> {
    let raw = forwarded
        .or_else(|| req.uri().authority().map(http::uri::Authority::as_str))
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())?;
    host_and_port(raw)
}

/// The longest host kept (RFC 1035 caps a DNS name at 253 octets).
pub(crate) const MAX_HOST_LEN: usize = 253;

/// Splits `host[:port]` (with `[v6]` brackets) into a valid host and port:
/// an IP address or an RFC 3986 reg-name of at most [`MAX_HOST_LEN`]
/// bytes, as sent (callers compare hosts case-insensitively).
pub(crate) fn host_and_port(raw: &str) -> Option<(&str, Option<u16>)> {
    let raw = raw.trim();
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        return Some((v6, port));
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse().ok()?)),
            None => (raw, None),
        }
    };
    let valid = !host.is_empty() && host.len() <= MAX_HOST_LEN && host.bytes().all(|b| HOST_BYTE[b as usize]);
    valid.then_some((host, port))
}

/// The bytes of a host kept: RFC 3986 unreserved characters.
static HOST_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        b += 1;
    }
    table
};

/// The comma-separated elements of every `name` header, in order; `None`
/// when a value is not visible ASCII.
fn elements<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<impl Iterator<Item = &'a str>> {
    let values: Vec<&str> = headers.get_all(name).iter().map(|v| v.to_str().ok()).collect::<Option<_>>()?;
    Some(values.into_iter().flat_map(|v| v.split(',')).map(str::trim).filter(|e| !e.is_empty()))
}

/// The value of parameter `key` in one `Forwarded` element
/// (`for=..;proto=..;host=..`), unquoted (RFC 7239, 4).
fn pair<'a>(element: &'a str, key: &str) -> Option<&'a str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| {
            let v = v.trim();
            v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)
        })
    })
}

/// One hop of a proxy header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Ip(IpAddr, Option<u16>),
    /// `unknown`, an obfuscated identifier, or anything unparseable.
    Unknown,
}

impl Node {
    /// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`
    /// or a bare IPv6 address (as `X-Forwarded-For` writes it).
    fn parse(node: &str) -> Self {
        if let Ok(ip) = node.parse::<IpAddr>() {
            return Self::Ip(ip, None);
        }
        if let Ok(addr) = node.parse::<SocketAddr>() {
            return Self::Ip(addr.ip(), Some(addr.port()));
        }
        if let Some(v6) = node.strip_prefix('[').and_then(|n| n.strip_suffix(']'))
            && let Ok(ip) = v6.parse()
        {
            return Self::Ip(ip, None);
        }
        Self::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::new(());
        for (name, value) in headers {
            req.headers_mut()
                .append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        req
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(["10.0.0.0/8".parse().unwrap(), "2001:db8::/32".parse().unwrap()])
    }

    fn client_of(peer: &str, headers: &[(&str, &str)]) -> (String, Option<u16>) {
        let c = client(&req(peer, headers), &proxies()).unwrap().client;
        (c.ip.to_string(), c.port)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_writes() {
        let forged = [("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")];
        assert_eq!(client_of("203.0.113.9:5000", &forged), ("203.0.113.9".into(), Some(5000)));
        // No proxy trusted: the same.
        let c = client(&req("10.0.0.1:1", &forged), &TrustedProxies::default()).unwrap();
        assert_eq!(c.client.ip.to_string(), "10.0.0.1");
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let xff = [("x-forwarded-for", "9.9.9.9, 198.51.100.7, 10.0.0.2")];
        assert_eq!(
            client_of("10.0.0.1:80", &xff),
            ("198.51.100.7".into(), None),
            "9.9.9.9 is the client's own claim"
        );
        let fwd = [("forwarded", "for=192.0.2.60;proto=https, for=\"[2001:db8:cafe::17]:4711\"")];
        assert_eq!(client_of("10.0.0.1:80", &fwd), ("192.0.2.60".into(), None), "2001:db8::/32 is trusted");
        let fwd = [("forwarded", "for=\"198.51.100.1:4711\"")];
        assert_eq!(client_of("10.0.0.1:80", &fwd), ("198.51.100.1".into(), Some(4711)));
        // Forwarded wins over X-Forwarded-For; repeated headers are one list.
        let both =
            [("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2"), ("forwarded", "for=10.9.9.9")];
        assert_eq!(client_of("10.0.0.1:80", &both), ("2.2.2.2".into(), None));
        // All hops trusted: the leftmost.
        assert_eq!(client_of("10.0.0.1:80", &[("x-forwarded-for", "10.0.0.5, 10.0.0.6")]).0, "10.0.0.5");
    }

    #[test]
    fn unusable_proxy_headers_fall_back_to_the_peer() {
        for headers in [
            &[("forwarded", "for=unknown")][..],
            &[("forwarded", "for=_hidden")],
            &[("x-forwarded-for", "not-an-ip")],
            &[("x-forwarded-for", "")],
        ] {
            assert_eq!(client_of("10.0.0.1:80", headers), ("10.0.0.1".into(), Some(80)), "{headers:?}");
        }
        let long = vec!["10.0.0.7"; MAX_HOPS + 1].join(",");
        assert_eq!(client_of("10.0.0.1:80", &[("x-forwarded-for", &long)]).0, "10.0.0.1");
        // An IPv4-mapped peer is checked as IPv4.
        assert_eq!(client_of("[::ffff:10.0.0.1]:80", &[("x-forwarded-for", "3.3.3.3")]).0, "3.3.3.3");
    }

    #[test]
    fn no_peer_no_client() {
        let mut req = Request::new(());
        req.headers_mut().insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        assert!(client(&req, &proxies()).is_none());
        assert!(!is_forwarded(&req, &proxies()));
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(host_and_port("example.com"), Some(("example.com", None)));
        assert_eq!(host_and_port("example.com:8080"), Some(("example.com", Some(8080))));
        assert_eq!(host_and_port("[2001:db8::1]:443"), Some(("2001:db8::1", Some(443))));
        assert_eq!(host_and_port("[2001:db8::1]"), Some(("2001:db8::1", None)));
        for bad in ["", ":80", "a b", "host:99999", "host:", "[zz]", "[::1]x", "exa/mple", "ex\"ample"] {
            assert_eq!(host_and_port(bad), None, "{bad:?}");
        }
        assert_eq!(host_and_port(&"a".repeat(MAX_HOST_LEN + 1)), None);
    }

    fn header_value() -> impl proptest::strategy::Strategy<Value = http::HeaderValue> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..300),
            "[0-9a-f:.\\[\\], ;=\"a-z_]{0,80}".prop_map(String::into_bytes),
        ]
        .prop_map(|bytes| http::HeaderValue::from_bytes(&bytes).expect("visible ASCII, obs-text, SP or HTAB"))
    }

    proptest::proptest! {
        /// Hostile proxy and host headers: no panic, and what comes out is
        /// an IP address, a port, or a host within its cap and charset.
        #[test]
        fn hostile_headers_give_addresses_or_nothing(
            forwarded in header_value(),
            xff in header_value(),
            host in header_value(),
            xfh in header_value(),
            proto in header_value(),
        ) {
            let mut req = Request::new(());
            let headers = req.headers_mut();
            headers.insert(header::FORWARDED, forwarded);
            headers.insert(X_FORWARDED_FOR, xff.clone());
            headers.insert(header::HOST, host);
            headers.insert(X_FORWARDED_HOST, xfh);
            headers.insert(X_FORWARDED_PROTO, proto);
            req.extensions_mut().insert(PeerAddr("10.0.0.1:9".parse().unwrap()));
            // The client is the peer or a hop the headers name, parsed as
            // an address: never text copied from them.
            let hops = |name: &HeaderName, req: &Request<()>| -> Vec<IpAddr> {
                elements(req.headers(), name).into_iter().flatten().filter_map(|e| match Node::parse(pair(e, "for").unwrap_or(e)) {
                    Node::Ip(ip, _) => Some(ip),
                    Node::Unknown => None,
                }).collect()
            };
            let c = client(&req, &proxies()).unwrap();
            proptest::prop_assert!(c.client.ip == c.peer.ip() || hops(&header::FORWARDED, &req).contains(&c.client.ip));
            req.headers_mut().remove(header::FORWARDED);
            let c = client(&req, &proxies()).unwrap();
            proptest::prop_assert!(c.client.ip == c.peer.ip() || hops(&X_FORWARDED_FOR, &req).contains(&c.client.ip));
            let forwarded = forwarded_server(req.headers());
            for host in [server(&req, forwarded.host), server(&req, None)].into_iter().flatten() {
                proptest::prop_assert!(host.0.len() <= MAX_HOST_LEN);
                proptest::prop_assert!(host.0.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~:".contains(&b)), "{:?}", host);
            }
        }
    }

    #[test]
    fn server_prefers_forwarded_then_authority_then_host() {
        let mut r = req("10.0.0.1:1", &[("host", "internal:8080")]);
        assert_eq!(server(&r, None), Some(("internal", Some(8080))));
        assert_eq!(server(&r, Some("api.example.com")), Some(("api.example.com", None)));
        *r.uri_mut() = "http://h2.example.com:8443/x".parse().unwrap();
        assert_eq!(server(&r, None), Some(("h2.example.com", Some(8443))));
        let f = req("10.0.0.1:1", &[("forwarded", "for=1.2.3.4;host=a.example;proto=https")]);
        assert_eq!(
            forwarded_server(f.headers()),
            ForwardedServer { host: Some("a.example"), https: Some(true) }
        );
        let x = req("10.0.0.1:1", &[("x-forwarded-host", "b.example"), ("x-forwarded-proto", "http")]);
        assert_eq!(
            forwarded_server(x.headers()),
            ForwardedServer { host: Some("b.example"), https: Some(false) }
        );
        let bad = req("10.0.0.1:1", &[("x-forwarded-proto", "gopher")]);
        assert_eq!(forwarded_server(bad.headers()).https, None);
    }
}
