use http::HeaderMap;
use opentelemetry::propagation::Extractor;

/// Reads OTel propagation fields (`traceparent`, `tracestate`, `baggage`)
/// from an [`http::HeaderMap`].
///
/// Values that are not visible ASCII are skipped, as if absent.
///
/// ```
/// use opentelemetry::propagation::Extractor;
/// use tower_observability::trace::HeaderExtractor;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
/// let extractor = HeaderExtractor(&headers);
/// assert!(extractor.get("traceparent").unwrap().starts_with("00-0af7"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Whether `value` is a `traceparent` of W3C Trace Context Level 1 (section
/// 3.2): `version-traceid-parentid-flags`, lowercase hex, a version other
/// than `ff`, ids not all zero, and for version `00` exactly 55 characters
/// (later versions may append `-` and more fields).
///
/// [`HttpTraceLayer`](super::HttpTraceLayer) ignores a `traceparent` that
/// fails this check, and starts a new trace. It reads at most 56 bytes.
///
/// ```
/// use tower_observability::trace::is_valid_traceparent;
///
/// assert!(is_valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent("00-4bf92f35-00f067aa0ba902b7-01"));
/// ```
pub fn is_valid_traceparent(value: &str) -> bool {
    fn hex(s: &[u8]) -> bool {
        s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
    fn zero(s: &[u8]) -> bool {
        s.iter().all(|&b| b == b'0')
    }
    let b = value.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return false;
    }
    let (version, trace_id, parent_id, flags) = (&b[0..2], &b[3..35], &b[36..52], &b[53..55]);
    if !(hex(version) && hex(trace_id) && hex(parent_id) && hex(flags)) || version == b"ff" {
        return false;
    }
    if zero(trace_id) || zero(parent_id) {
        return false;
    }
    if version == b"00" { b.len() == 55 } else { b.len() == 55 || b[55] == b'-' }
}

/// An [`Extractor`] that hides `traceparent` and `tracestate` when the
/// `traceparent` is invalid, so that a fresh trace starts (W3C Trace Context,
/// section 3.2.2: "the vendor MUST ignore the traceparent") while baggage is
/// still read.
pub(crate) struct CheckedExtractor<'a> {
    headers: &'a HeaderMap,
    trace_context: bool,
}

impl<'a> CheckedExtractor<'a> {
    pub(crate) fn new(headers: &'a HeaderMap) -> Self {
        let mut values = headers.get_all(&TRACEPARENT).iter();
        let trace_context = match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().is_ok_and(is_valid_traceparent),
            // Absent, or several: ignore them all.
            _ => false,
        };
        Self { headers, trace_context }
    }
}

impl Extractor for CheckedExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if !self.trace_context
            && (key.eq_ignore_ascii_case("traceparent") || key.eq_ignore_ascii_case("tracestate"))
        {
            return None;
        }
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.keys().map(http::HeaderName::as_str).collect()
    }
}

// Looked up as `HeaderName`s: a `&str` key is parsed at every lookup.
pub(crate) const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub(crate) const BAGGAGE: http::HeaderName = http::HeaderName::from_static("baggage");

/// Whether `headers` carry anything a W3C propagator would read; most
/// requests from outside carry none, and skip extraction entirely.
#[inline]
pub(crate) fn has_context(headers: &HeaderMap) -> bool {
    headers.contains_key(&TRACEPARENT) || headers.contains_key(&BAGGAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_validation_follows_w3c() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_valid_traceparent(ok));
        assert!(is_valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future"));
        for bad in [
            "",
            "garbage",
            "00-4bf92f35-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad:?} must be refused");
        }
    }

    proptest::proptest! {
        /// Any text: never panics, and what is accepted has the Level 1 shape.
        #[test]
        fn traceparent_validation_never_panics(value in "\\PC{0,80}") {
            if is_valid_traceparent(&value) {
                let parts: Vec<&str> = value.splitn(5, '-').collect();
                proptest::prop_assert!(parts.len() >= 4);
                proptest::prop_assert_eq!((parts[1].len(), parts[2].len()), (32, 16));
            }
        }

        /// Every well-formed traceparent with non-zero ids is accepted.
        #[test]
        fn well_formed_traceparents_are_accepted(
            trace in "[0-9a-f]{32}", span in "[0-9a-f]{16}", flags in "[0-9a-f]{2}", version in "[0-9a-e][0-9a-f]"
        ) {
            proptest::prop_assume!(trace.bytes().any(|b| b != b'0') && span.bytes().any(|b| b != b'0'));
            let value = format!("{version}-{trace}-{span}-{flags}");
            proptest::prop_assert!(is_valid_traceparent(&value), "{}", value);
            let no_flags = format!("{version}-{trace}-{span}");
            proptest::prop_assert!(!is_valid_traceparent(&no_flags), "missing flags");
            let upper = format!("{version}-{}-{span}-{flags}", trace.to_uppercase());
            if upper != value {
                proptest::prop_assert!(!is_valid_traceparent(&upper), "uppercase hex");
            }
        }
    }

    #[test]
    fn invalid_or_repeated_traceparent_is_hidden_but_baggage_is_not() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", "00-4bf92f35-00f067aa0ba902b7-01".parse().unwrap());
        headers.insert("tracestate", "k=v".parse().unwrap());
        headers.insert("baggage", "user=1".parse().unwrap());
        let extractor = CheckedExtractor::new(&headers);
        assert_eq!(extractor.get("traceparent"), None);
        assert_eq!(extractor.get("tracestate"), None);
        assert_eq!(extractor.get("baggage"), Some("user=1"));

        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", ok.parse().unwrap());
        assert_eq!(CheckedExtractor::new(&headers).get("traceparent"), Some(ok));
        headers.append("traceparent", ok.parse().unwrap());
        assert_eq!(CheckedExtractor::new(&headers).get("traceparent"), None);
    }
}
