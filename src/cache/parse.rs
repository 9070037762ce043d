//! Reading a [`CacheStatus`] from response headers: RFC 9211 `Cache-Status`,
//! then `X-Cache`, then `CF-Cache-Status`.
//!
//! `Cache-Status` is a Structured Field List (RFC 8941 section 3.1; the
//! additions of RFC 9651, dates and display strings, are accepted too). The
//! parser follows RFC 8941 section 4.2: a value that does not parse is
//! ignored as a whole, here as [`CacheStatus::Unknown`]. It never panics,
//! never allocates, and does bounded work: values longer than
//! [`MAX_FIELD_LEN`] bytes or with more than [`MAX_MEMBERS`] members are
//! `Unknown` without further reading.

use http::HeaderMap;

use super::{
    CacheStatus,
    sfv::{Bare, Invalid, Parsed, Parser, each_member, identifies, integer},
};

/// The longest header value read, in bytes (all `Cache-Status` field lines
/// together); longer values are [`CacheStatus::Unknown`].
pub const MAX_FIELD_LEN: usize = 4096;

/// The most `Cache-Status` list members read; more are [`CacheStatus::Unknown`].
pub const MAX_MEMBERS: usize = 32;

impl CacheStatus {
    /// The outcome a response's headers report; `None` when they carry none
    /// of `Cache-Status`, `X-Cache` and `CF-Cache-Status`.
    ///
    /// - `Cache-Status` (RFC 9211) wins when present: the member whose cache
    ///   identifier equals `member` (case-sensitive, as identifiers are), or
    ///   else the last member, the cache closest to the user (RFC 9211
    ///   section 2). Several field lines form one list (RFC 9110 section
    ///   5.3). See [`parse_cache_status`].
    /// - Else the last `X-Cache` entry: see [`parse_x_cache`].
    /// - Else `CF-Cache-Status`: see [`parse_cf_cache_status`].
    ///
    /// # Example
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tower_observability::cache::CacheStatus;
    ///
    /// let mut headers = HeaderMap::new();
    /// assert_eq!(CacheStatus::from_headers(&headers, None), None);
    /// headers.insert("cache-status", r#"OriginCache; hit; ttl=1100, "CDN Company Here"; fwd=uri-miss"#.parse().unwrap());
    /// assert_eq!(CacheStatus::from_headers(&headers, None), Some(CacheStatus::Miss));
    /// assert_eq!(CacheStatus::from_headers(&headers, Some("OriginCache")), Some(CacheStatus::Hit));
    /// ```
    #[must_use]
    pub fn from_headers(headers: &HeaderMap, member: Option<&str>) -> Option<Self> {
        // Most responses carry none of the three and a few headers: one pass
        // over their names (an enum comparison for a standard one) costs
        // less than three hashed lookups (`x-cache` and `cf-cache-status`
        // are custom names, hashed byte by byte).
        if headers.keys_len() <= FEW_HEADERS
            && !headers.keys().any(|name| name == CACHE_STATUS || name == X_CACHE || name == CF_CACHE_STATUS)
        {
            return None;
        }
        let mut lines = headers.get_all(&CACHE_STATUS).iter().peekable();
        if lines.peek().is_some() {
            let mut selection = Selection::new(member);
            let mut len = 0usize;
            for line in lines {
                len = len.saturating_add(line.len());
                if len > MAX_FIELD_LEN || selection.feed(line.as_bytes()).is_err() {
                    return Some(Self::Unknown);
                }
            }
            return Some(selection.outcome());
        }
        if let Some(value) = headers.get_all(&X_CACHE).iter().next_back() {
            return Some(parse_x_cache(value.as_bytes()));
        }
        headers.get(&CF_CACHE_STATUS).map(|value| parse_cf_cache_status(value.as_bytes()))
    }
}

// Looked up as `HeaderName`s: a `&str` key is parsed at every lookup.
const CACHE_STATUS: http::HeaderName = http::HeaderName::from_static("cache-status");
const X_CACHE: http::HeaderName = http::HeaderName::from_static("x-cache");
const CF_CACHE_STATUS: http::HeaderName = http::HeaderName::from_static("cf-cache-status");
/// Up to this many header names, [`CacheStatus::from_headers`] looks for its
/// three by comparing names rather than by three hashed lookups.
const FEW_HEADERS: usize = 12;

/// Parses one RFC 9211 `Cache-Status` field value.
///
/// The member whose identifier equals `member`, else the last member,
/// decides (the last one named `member` if several are). Its parameters
/// give the outcome:
///
/// | parameters | outcome |
/// |---|---|
/// | `hit` (true), `ttl` absent or `>= 0` | [`Hit`](CacheStatus::Hit) |
/// | `hit` (true), `ttl < 0` | [`StaleHit`](CacheStatus::StaleHit) |
/// | `fwd=uri-miss`, `vary-miss`, `miss`, `partial` | [`Miss`](CacheStatus::Miss) |
/// | `fwd=stale; fwd-status=304` | [`Revalidated`](CacheStatus::Revalidated) |
/// | `fwd=stale`, other or no `fwd-status` | [`Miss`](CacheStatus::Miss) |
/// | `fwd=bypass`, `method`, `request` | [`Bypass`](CacheStatus::Bypass) |
/// | anything else, no member, or a value that does not parse | [`Unknown`](CacheStatus::Unknown) |
///
/// Other parameters (`stored`, `collapsed`, `key`, `detail`, unknown
/// ones) are checked for syntax and otherwise ignored.
///
/// # Example
///
/// ```
/// use tower_observability::cache::{CacheStatus, parse_cache_status};
///
/// assert_eq!(parse_cache_status(b"ExampleCache; hit; ttl=-412", None), CacheStatus::StaleHit);
/// assert_eq!(parse_cache_status(b"ExampleCache; fwd=stale; fwd-status=304", None), CacheStatus::Revalidated);
/// assert_eq!(parse_cache_status(b"ExampleCache; hit;;", None), CacheStatus::Unknown);
/// ```
#[must_use]
pub fn parse_cache_status(value: &[u8], member: Option<&str>) -> CacheStatus {
    if value.len() > MAX_FIELD_LEN {
        return CacheStatus::Unknown;
    }
    let mut selection = Selection::new(member);
    match selection.feed(value) {
        Ok(()) => selection.outcome(),
        Err(Invalid) => CacheStatus::Unknown,
    }
}

/// Parses an `X-Cache` value: the de facto header of Squid, Varnish,
/// Fastly, CloudFront and Akamai.
///
/// A comma-separated list is read from its *last* entry: with Fastly
/// shielding (`X-Cache: MISS, HIT`) the first entry is the shield and the
/// last the edge that served the client, the same order as RFC 9211's
/// members, so both headers report the cache closest to the user. The
/// entry's first word, case-insensitive, decides (`Hit from cloudfront`,
/// `TCP_MEM_HIT from a23-1-2-3`):
///
/// | word | outcome |
/// |---|---|
/// | `HIT`, `TCP_HIT`, `TCP_MEM_HIT`, `TCP_IMS_HIT`, `TCP_INM_HIT`, `TCP_NEGATIVE_HIT`, `TCP_OFFLINE_HIT` | Hit |
/// | `STALE`, `UPDATING`, `HIT-STALE`, `TCP_STALE_HIT`, `TCP_REFRESH_FAIL_OLD` | StaleHit |
/// | `REVALIDATED`, `RefreshHit` (CloudFront), `TCP_REFRESH_HIT`, `TCP_REFRESH_UNMODIFIED` | Revalidated |
/// | `MISS`, `EXPIRED`, `TCP_MISS`, `TCP_REFRESH_MISS`, `TCP_REFRESH_MODIFIED`, `TCP_CLIENT_REFRESH_MISS` | Miss |
/// | `BYPASS`, `DYNAMIC`, `PASS` | Bypass |
/// | anything else (`Error from cloudfront`, `TCP_DENIED`, empty) | Unknown |
///
/// # Example
///
/// ```
/// use tower_observability::cache::{CacheStatus, parse_x_cache};
///
/// assert_eq!(parse_x_cache(b"Hit from cloudfront"), CacheStatus::Hit);
/// assert_eq!(parse_x_cache(b"HIT, MISS"), CacheStatus::Miss);
/// assert_eq!(parse_x_cache(b"TCP_REFRESH_HIT from a23-1-2-3.deploy.akamaitechnologies.com"), CacheStatus::Revalidated);
/// ```
#[must_use]
pub fn parse_x_cache(value: &[u8]) -> CacheStatus {
    if value.len() > MAX_FIELD_LEN {
        return CacheStatus::Unknown;
    }
    let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
    classify_word(last)
}

/// Parses a Cloudflare `CF-Cache-Status` value, with the table of
/// [`parse_x_cache`]: `HIT`; `MISS` and `EXPIRED` (fetched from the origin)
/// are misses; `STALE` and `UPDATING` are stale hits; `REVALIDATED`;
/// `BYPASS` and `DYNAMIC` (not eligible for caching) are bypasses; `NONE`,
/// `UNKNOWN` and anything else are unknown.
///
/// # Example
///
/// ```
/// use tower_observability::cache::{CacheStatus, parse_cf_cache_status};
///
/// assert_eq!(parse_cf_cache_status(b"EXPIRED"), CacheStatus::Miss);
/// assert_eq!(parse_cf_cache_status(b"DYNAMIC"), CacheStatus::Bypass);
/// ```
#[must_use]
pub fn parse_cf_cache_status(value: &[u8]) -> CacheStatus {
    if value.len() > MAX_FIELD_LEN {
        return CacheStatus::Unknown;
    }
    classify_word(value)
}

/// The outcome named by the first word of `entry`.
fn classify_word(entry: &[u8]) -> CacheStatus {
    let word = entry.split(|b| b.is_ascii_whitespace()).find(|w| !w.is_empty()).unwrap_or_default();
    const TABLE: &[(&[u8], CacheStatus)] = &[
        (b"hit", CacheStatus::Hit),
        (b"tcp_hit", CacheStatus::Hit),
        (b"tcp_mem_hit", CacheStatus::Hit),
        (b"tcp_ims_hit", CacheStatus::Hit),
        (b"tcp_inm_hit", CacheStatus::Hit),
        (b"tcp_negative_hit", CacheStatus::Hit),
        (b"tcp_offline_hit", CacheStatus::Hit),
        (b"stale", CacheStatus::StaleHit),
        (b"updating", CacheStatus::StaleHit),
        (b"hit-stale", CacheStatus::StaleHit),
        (b"tcp_stale_hit", CacheStatus::StaleHit),
        (b"tcp_refresh_fail_old", CacheStatus::StaleHit),
        (b"revalidated", CacheStatus::Revalidated),
        (b"refreshhit", CacheStatus::Revalidated),
        (b"tcp_refresh_hit", CacheStatus::Revalidated),
        (b"tcp_refresh_unmodified", CacheStatus::Revalidated),
        (b"miss", CacheStatus::Miss),
        (b"expired", CacheStatus::Miss),
        (b"tcp_miss", CacheStatus::Miss),
        (b"tcp_refresh_miss", CacheStatus::Miss),
        (b"tcp_refresh_modified", CacheStatus::Miss),
        (b"tcp_client_refresh_miss", CacheStatus::Miss),
        (b"bypass", CacheStatus::Bypass),
        (b"dynamic", CacheStatus::Bypass),
        (b"pass", CacheStatus::Bypass),
    ];
    TABLE
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map_or(CacheStatus::Unknown, |&(_, status)| status)
}

/// The member chosen so far, across the field lines of one header.
#[derive(Debug)]
struct Selection<'n> {
    member: Option<&'n [u8]>,
    named: Option<CacheStatus>,
    last: Option<CacheStatus>,
    members: usize,
}

impl<'n> Selection<'n> {
    fn new(member: Option<&'n str>) -> Self {
        Self { member: member.map(str::as_bytes), named: None, last: None, members: 0 }
    }

    /// Parses one field line, a List, and keeps the members it chooses.
    fn feed(&mut self, line: &[u8]) -> Parsed<()> {
        each_member(line, |p| {
            self.members += 1;
            if self.members > MAX_MEMBERS {
                return Err(Invalid);
            }
            let (named, status) = member(p, self.member)?;
            if named {
                self.named = Some(status);
            }
            self.last = Some(status);
            Ok(())
        })
    }

    fn outcome(&self) -> CacheStatus {
        self.named.or(self.last).unwrap_or(CacheStatus::Unknown)
    }
}

/// What the parameters of one member say.
#[derive(Debug, Default)]
struct Params<'a> {
    hit: bool,
    fwd: Option<Bare<'a>>,
    fwd_status: Option<i64>,
    ttl: Option<i64>,
}

impl Params<'_> {
    /// The outcome of RFC 9211's parameters; see [`parse_cache_status`].
    fn outcome(&self) -> CacheStatus {
        if self.hit {
            return if self.ttl.is_some_and(|ttl| ttl < 0) {
                CacheStatus::StaleHit
            } else {
                CacheStatus::Hit
            };
        }
        let Some(Bare::Token(fwd)) = self.fwd else {
            return CacheStatus::Unknown;
        };
        match fwd {
            b"uri-miss" | b"vary-miss" | b"miss" | b"partial" => CacheStatus::Miss,
            b"stale" if self.fwd_status == Some(304) => CacheStatus::Revalidated,
            b"stale" => CacheStatus::Miss,
            b"bypass" | b"method" | b"request" => CacheStatus::Bypass,
            _ => CacheStatus::Unknown,
        }
    }
}

/// One list member: an item or an inner list, with its parameters.
/// Returns whether its identifier is `name`, and its outcome.
fn member(p: &mut Parser<'_>, name: Option<&[u8]>) -> Parsed<(bool, CacheStatus)> {
    let named = if p.peek() == Some(b'(') {
        // RFC 9211 identifiers are strings or tokens; an inner list is
        // valid syntax but identifies no cache.
        p.inner_list()?;
        false
    } else {
        let id = p.bare_item()?;
        name.is_some_and(|name| identifies(id, name))
    };
    let params = parameters(p)?;
    Ok((named, params.outcome()))
}

/// `*( ";" *SP key [ "=" bare-item ] )`; a repeated key overrides.
fn parameters<'a>(p: &mut Parser<'a>) -> Parsed<Params<'a>> {
    let mut params = Params::default();
    p.each_parameter(|key, value| match key {
        b"hit" => params.hit = value == Bare::Boolean(true),
        b"fwd" => params.fwd = Some(value),
        b"fwd-status" => params.fwd_status = integer(value),
        b"ttl" => params.ttl = integer(value),
        _ => {}
    })?;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use self::structure::Value;
    use super::*;

    /// The members of a `Cache-Status` value as this parser reads them, for
    /// the differential test against the `sfv` crate: each member's
    /// identifier and its parameters (later keys override earlier ones, in
    /// the first one's place, as RFC 9651 says).
    mod structure {
        use super::super::{Bare, Invalid, MAX_MEMBERS, each_member};

        /// A bare item, compared by kind and, where the parser keeps it, value.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) enum Value {
            Integer(i64),
            /// Unescaped.
            String(Vec<u8>),
            Token(Vec<u8>),
            Boolean(bool),
            /// A decimal, byte sequence, date or display string.
            Other,
            /// An inner list (as a member's identifier).
            InnerList,
        }

        impl From<Bare<'_>> for Value {
            fn from(bare: Bare<'_>) -> Self {
                match bare {
                    Bare::Integer(n) => Self::Integer(n),
                    Bare::String(raw) => {
                        let mut out = Vec::new();
                        let mut escaped = false;
                        for &c in raw {
                            if !escaped && c == b'\\' {
                                escaped = true;
                            } else {
                                out.push(c);
                                escaped = false;
                            }
                        }
                        Self::String(out)
                    }
                    Bare::Token(t) => Self::Token(t.to_vec()),
                    Bare::Boolean(b) => Self::Boolean(b),
                    Bare::Other => Self::Other,
                }
            }
        }

        /// One member: identifier, then parameters.
        pub(crate) type Member = (Value, Vec<(Vec<u8>, Value)>);

        /// The members of `line`, `None` when it is not a valid List (or has
        /// more than the parser's cap of members).
        pub(crate) fn members(line: &[u8]) -> Option<Vec<Member>> {
            let mut out = Vec::new();
            each_member(line, |p| {
                if out.len() == MAX_MEMBERS {
                    return Err(Invalid);
                }
                let id = if p.peek() == Some(b'(') {
                    p.inner_list()?;
                    Value::InnerList
                } else {
                    p.bare_item()?.into()
                };
                let mut params: Vec<(Vec<u8>, Value)> = Vec::new();
                p.each_parameter(|key, value| match params.iter_mut().find(|(k, _)| k == key) {
                    Some((_, v)) => *v = value.into(),
                    None => params.push((key.to_vec(), value.into())),
                })?;
                out.push((id, params));
                Ok(())
            })
            .ok()?;
            Some(out)
        }
    }

    /// The members of `input` as the `sfv` crate (RFC 9651) reads them;
    /// `None` for an invalid List.
    fn sfv_members(input: &[u8]) -> Option<Vec<structure::Member>> {
        fn value(item: &sfv::BareItem) -> Value {
            match item {
                sfv::BareItem::Integer(n) => Value::Integer(i64::from(*n)),
                sfv::BareItem::String(s) => Value::String(s.as_str().as_bytes().to_vec()),
                sfv::BareItem::Token(t) => Value::Token(t.as_str().as_bytes().to_vec()),
                sfv::BareItem::Boolean(b) => Value::Boolean(*b),
                _ => Value::Other,
            }
        }
        fn params(params: &sfv::Parameters) -> Vec<(Vec<u8>, Value)> {
            params.iter().map(|(k, v)| (k.as_str().as_bytes().to_vec(), value(v))).collect()
        }
        let list: sfv::List = sfv::Parser::new(input).parse().ok()?;
        Some(
            list.iter()
                .map(|entry| match entry {
                    sfv::ListEntry::Item(item) => (value(&item.bare_item), params(&item.params)),
                    sfv::ListEntry::InnerList(inner) => (Value::InnerList, params(&inner.params)),
                })
                .collect(),
        )
    }

    /// Agreement of the crate's parser with `sfv` on `input`, within the
    /// crate's cap on members.
    fn agree(input: &[u8]) -> Result<(), TestCaseError> {
        let ours = structure::members(input);
        let theirs = sfv_members(input).filter(|m| m.len() <= MAX_MEMBERS);
        prop_assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(input));
        Ok(())
    }

    proptest! {
        /// Any input from the alphabet of Structured Fields.
        #[test]
        fn the_parser_agrees_with_sfv_on_any_input(input in r#"[a-zA-Z0-9;=,?:"\\ ()*%@./_\t+-]{0,48}"#) {
            agree(input.as_bytes())?;
        }

        /// Lists built from valid members, and then one byte changed.
        #[test]
        fn the_parser_agrees_with_sfv_on_lists(
            members in proptest::collection::vec(
                (
                    prop_oneof![
                        "[a-zA-Z*][a-zA-Z0-9:/!#$%&'*+.^_`|~-]{0,8}",
                        r#""[ a-zA-Z0-9!#-\[\]-~]{0,8}""#,
                        "\\([a-z]{1,3}( [a-z]{1,3}){0,2}\\)",
                        "-?[0-9]{1,16}(\\.[0-9]{1,4})?",
                    ],
                    proptest::collection::vec(
                        (
                            "[a-z*][a-z0-9_.*-]{0,6}",
                            prop_oneof![
                                Just(String::new()),
                                "=-?[0-9]{1,16}",
                                "=[a-z][a-z0-9]{0,4}",
                                "=\\?[01]",
                                r#"="[a-z\\"]{0,4}""#,
                                "=:[a-zA-Z0-9+/=]{0,8}:",
                                "=@-?[0-9]{1,11}",
                            ],
                        ),
                        0..4,
                    ),
                ),
                0..5,
            ),
            separator in prop_oneof![Just(", "), Just(","), Just(" ,\t "), Just(",,")],
            flip in proptest::option::of((0usize..200, any::<u8>())),
        ) {
            let text: Vec<String> = members
                .iter()
                .map(|(id, params)| {
                    let params: String = params.iter().map(|(k, v)| format!(";{k}{v}")).collect();
                    format!("{id}{params}")
                })
                .collect();
            let mut input = text.join(separator).into_bytes();
            agree(&input)?;
            if let Some((at, byte)) = flip.filter(|_| !input.is_empty()) {
                let at = at % input.len();
                input[at] = byte;
                agree(&input)?;
            }
        }
    }

    use crate::cache::CacheStatus::{Bypass, Hit, Miss, Revalidated, StaleHit, Unknown};

    #[test]
    fn rfc_9211_examples_and_more() {
        let long_detail = format!("ExampleCache; hit; detail={}", "a".repeat(3000));
        let too_long = format!("ExampleCache; hit; detail={}", "a".repeat(10_000));
        let too_many = vec!["C; hit"; MAX_MEMBERS + 1].join(", ");
        let just_enough = [vec!["C; hit"; MAX_MEMBERS - 1], vec!["C; fwd=miss"]].concat().join(", ");
        let cases: &[(&str, Option<&str>, CacheStatus)] = &[
            // RFC 9211 section 3, in order.
            ("ExampleCache; hit", None, Hit),
            ("ExampleCache; hit; ttl=376", None, Hit),
            ("ExampleCache; hit; ttl=-412", None, StaleHit),
            ("ExampleCache; fwd=uri-miss", None, Miss),
            ("ExampleCache; fwd=stale; fwd-status=304", None, Revalidated),
            ("ExampleCache; fwd=uri-miss; collapsed", None, Miss),
            ("ExampleCache; fwd=uri-miss; collapsed=?0", None, Miss),
            ("OriginCache; hit; ttl=1100, \"CDN Company Here\"; hit; ttl=545", None, Hit),
            // Section 2 parameters.
            ("ExampleCache; fwd=uri-miss; stored", None, Miss),
            ("ExampleCache; fwd=vary-miss", None, Miss),
            ("ExampleCache; fwd=miss; fwd-status=200", None, Miss),
            ("ExampleCache; fwd=partial", None, Miss),
            ("ExampleCache; fwd=stale; fwd-status=200", None, Miss),
            ("ExampleCache; fwd=stale", None, Miss),
            ("ExampleCache; fwd=bypass", None, Bypass),
            ("ExampleCache; fwd=method", None, Bypass),
            ("ExampleCache; fwd=request; detail=\"client no-cache\"", None, Bypass),
            ("ExampleCache; fwd=request; detail=no-cache", None, Bypass),
            ("ExampleCache; hit; key=\"/users/1\"; detail=memory", None, Hit),
            ("ExampleCache; hit; ttl=0", None, Hit),
            ("ExampleCache; hit=?0; fwd=uri-miss", None, Miss),
            ("ExampleCache; hit=?0", None, Unknown),
            ("ExampleCache; hit=1", None, Unknown),
            ("ExampleCache; fwd=teleported", None, Unknown),
            ("ExampleCache; fwd=\"uri-miss\"", None, Unknown),
            ("ExampleCache", None, Unknown),
            ("ExampleCache; stored", None, Unknown),
            // Member choice: the named one, else the last one.
            ("OriginCache; hit; ttl=1100, \"CDN Company Here\"; fwd=uri-miss", None, Miss),
            ("OriginCache; hit; ttl=1100, \"CDN Company Here\"; fwd=uri-miss", Some("OriginCache"), Hit),
            ("OriginCache; fwd=uri-miss, \"CDN Company Here\"; hit", Some("CDN Company Here"), Hit),
            ("OriginCache; hit, \"CDN Company Here\"; fwd=bypass", Some("Elsewhere"), Bypass),
            ("a; hit, b; fwd=miss, a; fwd=bypass", Some("a"), Bypass),
            ("originCache; hit, b; fwd=miss", Some("OriginCache"), Miss),
            ("\"Say \\\"hi\\\"\"; hit, b; fwd=miss", Some("Say \"hi\""), Hit),
            ("\"back\\\\slash\"; hit, b; fwd=miss", Some("back\\slash"), Hit),
            ("\"Say \\\"hi\\\"\"; hit, b; fwd=miss", Some("Say \\\"hi\\\""), Miss),
            // Syntax: whitespace, escapes, every bare item type, unknown params.
            ("  ExampleCache;hit  ", None, Hit),
            ("a; fwd=miss ,\tb;  hit", None, Hit),
            (
                "ExampleCache; hit; extra=:aGVsbG8=:; when=@1659578233; x=1.5; y=%\"caf%c3%a9\"; z=?1; *w",
                None,
                Hit,
            ),
            ("\"quoted, with; punctuation\"; fwd=uri-miss", None, Miss),
            ("cache-3.example.com:443/edge; hit", None, Hit),
            ("(inner list); hit", None, Hit),
            ("(a b;x=1);p=1, Last; fwd=miss", None, Miss),
            ("*star; hit", None, Hit),
            ("12345; hit", None, Hit),
            ("ExampleCache; hit; ttl=-412; ttl=5", None, Hit),
            (&long_detail, None, Hit),
            (&just_enough, None, Miss),
            // Garbage and bounds.
            ("", None, Unknown),
            (";;;", None, Unknown),
            ("ExampleCache; hit;;", None, Unknown),
            ("\"unterminated; hit", None, Unknown),
            ("\"bad \\escape\"; hit", None, Unknown),
            ("ExampleCache; HIT", None, Unknown),
            ("ExampleCache; hit,", None, Unknown),
            ("ExampleCache; hit, , other; hit", None, Unknown),
            ("ExampleCache hit", None, Unknown),
            ("ExampleCache; ttl=1234567890123456; hit", None, Unknown),
            ("ExampleCache; x=1.2345; hit", None, Unknown),
            ("ExampleCache; x=?2; hit", None, Unknown),
            ("ExampleCache; x=:not base64!:; hit", None, Unknown),
            ("ExampleCache; x=%\"%ZZ\"; hit", None, Unknown),
            ("(unterminated; hit", None, Unknown),
            ("é; hit", None, Unknown),
            (&too_long, None, Unknown),
            (&too_many, None, Unknown),
        ];
        for (value, member, expected) in cases {
            assert_eq!(
                parse_cache_status(value.as_bytes(), *member),
                *expected,
                "Cache-Status: {value:?} (member {member:?})"
            );
        }
    }

    #[test]
    fn x_cache_and_cf_cache_status_forms() {
        let cases: &[(&str, CacheStatus)] = &[
            ("HIT", Hit),
            ("hit", Hit),
            ("MISS", Miss),
            ("Hit from cloudfront", Hit),
            ("Miss from cloudfront", Miss),
            ("RefreshHit from cloudfront", Revalidated),
            ("Error from cloudfront", Unknown),
            ("HIT from squid.example.com", Hit),
            ("TCP_HIT", Hit),
            ("TCP_MEM_HIT from a23-1-2-3.deploy.akamaitechnologies.com (AkamaiGHost/10)", Hit),
            ("TCP_MISS from a23-1-2-3", Miss),
            ("TCP_REFRESH_MISS", Miss),
            ("TCP_STALE_HIT", StaleHit),
            ("TCP_DENIED", Unknown),
            ("HIT, MISS", Miss),
            ("MISS, HIT", Hit),
            ("MISS,HIT", Hit),
            ("  HIT  ", Hit),
            ("PASS", Bypass),
            ("HIT-STALE", StaleHit),
            ("", Unknown),
            (",", Unknown),
            ("HIT,", Unknown),
            ("HITS", Unknown),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_x_cache(value.as_bytes()), *expected, "X-Cache: {value:?}");
        }
        assert_eq!(parse_x_cache("HIT".repeat(2000).as_bytes()), Unknown);
        let cf: &[(&str, CacheStatus)] = &[
            ("HIT", Hit),
            ("MISS", Miss),
            ("EXPIRED", Miss),
            ("STALE", StaleHit),
            ("UPDATING", StaleHit),
            ("REVALIDATED", Revalidated),
            ("BYPASS", Bypass),
            ("DYNAMIC", Bypass),
            ("NONE", Unknown),
            ("UNKNOWN", Unknown),
            ("\u{1F600}", Unknown),
        ];
        for (value, expected) in cf {
            assert_eq!(parse_cf_cache_status(value.as_bytes()), *expected, "CF-Cache-Status: {value:?}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        map
    }

    #[test]
    fn headers_are_read_in_order_of_precedence() {
        assert_eq!(CacheStatus::from_headers(&headers(&[]), None), None);
        assert_eq!(CacheStatus::from_headers(&headers(&[("x-other", "HIT")]), None), None);
        let all = headers(&[("cf-cache-status", "BYPASS"), ("x-cache", "MISS"), ("cache-status", "C; hit")]);
        assert_eq!(CacheStatus::from_headers(&all, None), Some(Hit));
        let fallback = headers(&[("cf-cache-status", "BYPASS"), ("x-cache", "MISS")]);
        assert_eq!(CacheStatus::from_headers(&fallback, None), Some(Miss));
        let cf = headers(&[("cf-cache-status", "BYPASS")]);
        assert_eq!(CacheStatus::from_headers(&cf, None), Some(Bypass));
        let garbage = headers(&[("cache-status", ";;;"), ("x-cache", "HIT")]);
        assert_eq!(CacheStatus::from_headers(&garbage, None), Some(Unknown), "no fallback past a bad value");
        let non_ascii = http::HeaderValue::from_bytes(b"C; hit; detail=\"\xff\"").map(|v| {
            let mut map = HeaderMap::new();
            map.insert("cache-status", v);
            map
        });
        assert_eq!(CacheStatus::from_headers(&non_ascii.unwrap(), None), Some(Unknown));
    }

    #[test]
    fn many_headers_are_looked_up_and_few_scanned_alike() {
        // Maps of `total` header names, either side of FEW_HEADERS: each of
        // the three is found wherever it sits, and a map without them gives
        // None.
        for total in [1, FEW_HEADERS - 1, FEW_HEADERS, FEW_HEADERS + 1, 40] {
            let names: Vec<String> = (0..total).map(|i| format!("x-other-{i}")).collect();
            let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "HIT")).collect();
            let without = headers(&pairs);
            assert_eq!(without.keys_len(), total);
            assert_eq!(CacheStatus::from_headers(&without, None), None, "{total} names");
            for (name, value, want) in [
                ("cache-status", "C; hit", Hit),
                ("x-cache", "MISS", Miss),
                ("cf-cache-status", "BYPASS", Bypass),
            ] {
                for at in [0, total - 1] {
                    let mut with = pairs.clone();
                    with[at] = (name, value);
                    let with = headers(&with);
                    assert_eq!(with.keys_len(), total);
                    assert_eq!(
                        CacheStatus::from_headers(&with, None),
                        Some(want),
                        "{name} at {at} of {total} names"
                    );
                }
            }
        }
    }

    #[test]
    fn field_lines_form_one_list() {
        // RFC 9211 section 3, the three-layer example, one line per cache.
        let three = headers(&[
            ("cache-status", "ReverseProxyCache; hit"),
            ("cache-status", "ForwardProxyCache; fwd=uri-miss; collapsed; stored"),
            ("cache-status", "BrowserCache; fwd=uri-miss"),
        ]);
        assert_eq!(CacheStatus::from_headers(&three, None), Some(Miss));
        assert_eq!(CacheStatus::from_headers(&three, Some("ReverseProxyCache")), Some(Hit));
        let over = vec![("cache-status", "C; hit"); MAX_MEMBERS + 1];
        assert_eq!(CacheStatus::from_headers(&headers(&over), None), Some(Unknown));
        let long = "C; hit; detail=".to_owned() + &"a".repeat(1500);
        let too_long = headers(&[("cache-status", &long), ("cache-status", &long), ("cache-status", &long)]);
        assert_eq!(CacheStatus::from_headers(&too_long, None), Some(Unknown));
        let lines = headers(&[("x-cache", "HIT"), ("x-cache", "MISS")]);
        assert_eq!(CacheStatus::from_headers(&lines, None), Some(Miss));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
            let _ = parse_cache_status(&bytes, None);
            let _ = parse_cache_status(&bytes, Some("C"));
            let _ = parse_x_cache(&bytes);
            let _ = parse_cf_cache_status(&bytes);
        }

        #[test]
        fn never_panics_on_near_valid_values(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("C".to_owned()), Just("\"C\\\"D\"".to_owned()), Just("; hit".to_owned()),
                    Just("; fwd=stale".to_owned()), Just("; fwd-status=304".to_owned()),
                    Just("; ttl=-1".to_owned()), Just(", ".to_owned()), Just("(".to_owned()),
                    Just(")".to_owned()), Just(";".to_owned()), Just("=".to_owned()),
                    Just("\"".to_owned()), Just("\\".to_owned()), Just("?1".to_owned()),
                    Just(":YQ==:".to_owned()), Just("@".to_owned()), Just("%\"".to_owned()),
                    Just("-".to_owned()), Just("1.".to_owned()), Just(" ".to_owned()),
                    "[ -~]{0,8}",
                ],
                0..80,
            ),
        ) {
            let value = parts.concat();
            let _ = parse_cache_status(value.as_bytes(), Some("C\"D"));
            let _ = parse_x_cache(value.as_bytes());
        }

        /// Well-formed lists of RFC 9211 members choose the last member,
        /// or the named one.
        #[test]
        fn chooses_the_named_or_last_member(
            members in proptest::collection::vec((0usize..3, 0usize..6), 1..MAX_MEMBERS),
            wanted in 0usize..4,
        ) {
            const PARAMS: [(&str, CacheStatus); 6] = [
                ("; hit; ttl=10", Hit), ("; hit; ttl=-3", StaleHit), ("; fwd=uri-miss; stored", Miss),
                ("; fwd=stale; fwd-status=304", Revalidated), ("; fwd=method", Bypass), ("; detail=x", Unknown),
            ];
            const NAMES: [&str; 4] = ["A", "\"B b\"", "c-1", "Z"];
            const PLAIN: [&str; 4] = ["A", "B b", "c-1", "Z"];
            let value = members
                .iter()
                .map(|&(name, param)| format!("{}{}", NAMES[name], PARAMS[param].0))
                .collect::<Vec<_>>()
                .join(", ");
            let expected = members
                .iter()
                .rev()
                .find(|(name, _)| *name == wanted)
                .or(members.last())
                .map(|&(_, param)| PARAMS[param].1)
                .unwrap();
            prop_assert_eq!(parse_cache_status(value.as_bytes(), Some(PLAIN[wanted])), expected, "{}", value);
        }
    }
}
