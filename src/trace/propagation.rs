//! W3C Trace Context and Baggage: every reading of the propagation headers
//! the crate does, in one place.

use std::iter;

use http::HeaderMap;
use opentelemetry::{
    baggage::{BaggageExt as _, KeyValueMetadata},
    propagation::{Extractor, Injector, TextMapPropagator, text_map_propagator::FieldIter},
    trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState},
};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

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

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self.0.get_all(key).iter().filter_map(|v| v.to_str().ok()).collect();
        (!values.is_empty()).then_some(values)
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
    parse_traceparent(value.as_bytes()).is_some()
}

/// The trace id, parent id and flags of a `traceparent` that
/// [`is_valid_traceparent`] accepts; one pass over at most 56 bytes. Read
/// from the header's bytes: every byte kept is checked as hex or `-`, so
/// no UTF-8 or visible-ASCII check is needed first.
#[inline]
pub(crate) fn parse_traceparent(b: &[u8]) -> Option<(TraceId, SpanId, TraceFlags)> {
    #[inline]
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    #[inline]
    fn hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(out)
    }
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let [version] = hex::<1>(&b[0..2])?;
    let trace_id = hex::<16>(&b[3..35])?;
    let parent_id = hex::<8>(&b[36..52])?;
    let [flags] = hex::<1>(&b[53..55])?;
    if version == 0xff || trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    // Version 00 is exactly 55 characters; later versions may append fields.
    let length_ok = if version == 0 { b.len() == 55 } else { b.len() == 55 || b[55] == b'-' };
    length_ok.then(|| (TraceId::from_bytes(trace_id), SpanId::from_bytes(parent_id), TraceFlags::new(flags)))
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
pub(crate) const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");
pub(crate) const BAGGAGE: http::HeaderName = http::HeaderName::from_static("baggage");

/// The span context of a valid, single W3C `traceparent`, with its
/// `tracestate` (an invalid one is dropped, as W3C Trace Context says); a
/// `traceparent` that is invalid or repeated is ignored and a new trace
/// starts (W3C Trace Context, section 3.2.2).
#[inline]
pub(crate) fn w3c_parent(headers: &HeaderMap) -> Option<SpanContext> {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    // Absent, or several: ignore them all.
    let (Some(value), None) = (values.next(), values.next()) else { return None };
    let (trace_id, span_id, flags) = parse_traceparent(value.as_bytes())?;
    let state = headers
        .get(&TRACESTATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<TraceState>().ok())
        .unwrap_or_default();
    // Flags other than `sampled` are zeroed (W3C Trace Context, "other
    // flags"), as the SDK's propagator does.
    Some(SpanContext::new(trace_id, span_id, flags & TraceFlags::SAMPLED, true, state))
}

/// The OTel context holding `span` (when given) and the request's W3C
/// baggage (when the header is present); `None` when there is neither.
pub(crate) fn w3c_context(headers: &HeaderMap, span: Option<SpanContext>) -> Option<opentelemetry::Context> {
    let baggage = headers.get(&BAGGAGE);
    if span.is_none() && baggage.is_none() {
        return None;
    }
    // On the current context, as the SDK's propagators extract.
    let mut cx = opentelemetry::Context::current();
    if let Some(baggage) = baggage.and_then(|v| v.to_str().ok()) {
        cx = with_baggage(&cx, baggage);
    }
    Some(match span {
        Some(span) => cx.with_remote_span_context(span),
        None => cx,
    })
}

/// The characters percent-encoded in baggage keys and values (W3C Baggage,
/// section 3.3.1), as the OpenTelemetry SDK's propagator encodes them.
const BAGGAGE_FRAGMENT: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b';').add(b',').add(b'=');
/// The longest `baggage` header read, in bytes (W3C Baggage, section 3.3.2).
const MAX_BAGGAGE_LENGTH: usize = 8192;
/// The most baggage members read (W3C Baggage, section 3.3.2).
const MAX_BAGGAGE_ITEMS: usize = 64;

/// `cx` with the members of the W3C `baggage` header `value`; a header
/// over [`MAX_BAGGAGE_LENGTH`] is ignored, members past
/// [`MAX_BAGGAGE_ITEMS`] and malformed ones are dropped. The reading of the
/// OpenTelemetry SDK's `BaggagePropagator`.
fn with_baggage(cx: &opentelemetry::Context, value: &str) -> opentelemetry::Context {
    if value.len() > MAX_BAGGAGE_LENGTH {
        return cx.clone();
    }
    let members = value.split(',').take(MAX_BAGGAGE_ITEMS).filter_map(|member| {
        let mut parts = member.split(';');
        let mut pair = parts.next()?.split('=');
        let (name, value) = (pair.next()?, pair.next()?);
        let name = percent_decode_str(name).decode_utf8().ok()?;
        let value = percent_decode_str(value).decode_utf8().ok()?;
        let properties: Vec<String> =
            parts.flat_map(|p| percent_decode_str(p).decode_utf8()).map(|p| p.trim().to_owned()).collect();
        Some(KeyValueMetadata::new(name.trim().to_owned(), value.trim().to_owned(), properties.join(";")))
    });
    cx.with_baggage(members)
}

/// The W3C `baggage` header of `cx`'s baggage; `None` without baggage.
fn baggage_header(cx: &opentelemetry::Context) -> Option<String> {
    let baggage = cx.baggage();
    if baggage.is_empty() {
        return None;
    }
    let members: Vec<String> = baggage
        .iter()
        .map(|(name, (value, metadata))| {
            let metadata = metadata.as_str().trim();
            utf8_percent_encode(name.as_str().trim(), BAGGAGE_FRAGMENT)
                .chain(iter::once("="))
                .chain(utf8_percent_encode(value.as_str().trim(), BAGGAGE_FRAGMENT))
                .chain(iter::once(if metadata.is_empty() { "" } else { ";" }))
                .chain(iter::once(metadata))
                .collect()
        })
        .collect();
    Some(members.join(","))
}

/// W3C Trace Context (Level 1) and W3C Baggage, read and written by the
/// crate itself: the propagator of [`HttpTraceLayer`](super::HttpTraceLayer)
/// and [`PropagateContextLayer`](super::PropagateContextLayer) by default.
///
/// Extraction follows the checks of [`is_valid_traceparent`] (an invalid or
/// repeated `traceparent` is ignored, with its `tracestate`; flags other
/// than sampled are zeroed) and reads at most 64 baggage members of an
/// 8 KiB header; injection writes `traceparent` (version 00), `tracestate`
/// and `baggage`. The same readings and writings as the OpenTelemetry SDK's
/// `TraceContextPropagator` and `BaggagePropagator` composed, without the
/// SDK.
///
/// ```
/// use opentelemetry::{propagation::TextMapPropagator, trace::TraceContextExt};
/// use tower_observability::trace::{HeaderExtractor, HeaderInjector, W3cPropagator};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
/// let cx = W3cPropagator::new().extract(&HeaderExtractor(&headers));
/// assert!(cx.span().span_context().is_sampled());
///
/// let mut out = http::HeaderMap::new();
/// W3cPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut out));
/// assert_eq!(out["traceparent"], headers["traceparent"]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct W3cPropagator {}

impl W3cPropagator {
    /// A new propagator.
    pub const fn new() -> Self {
        Self {}
    }
}

impl TextMapPropagator for W3cPropagator {
    fn inject_context(&self, cx: &opentelemetry::Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            let flags = sc.trace_flags() & TraceFlags::SAMPLED;
            injector
                .set("traceparent", format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), flags.to_u8()));
            injector.set("tracestate", sc.trace_state().header());
        }
        if let Some(baggage) = baggage_header(cx) {
            injector.set("baggage", baggage);
        }
    }

    fn extract_with_context(
        &self,
        cx: &opentelemetry::Context,
        extractor: &dyn Extractor,
    ) -> opentelemetry::Context {
        let traceparent = extractor.get_all("traceparent").unwrap_or_default();
        let span = match traceparent[..] {
            [value] => parse_traceparent(value.as_bytes()).map(|(trace_id, span_id, flags)| {
                let state = extractor.get("tracestate").and_then(|v| v.parse().ok()).unwrap_or_default();
                SpanContext::new(trace_id, span_id, flags & TraceFlags::SAMPLED, true, state)
            }),
            _ => None,
        };
        let cx = match extractor.get("baggage") {
            Some(baggage) => with_baggage(cx, baggage),
            None => cx.clone(),
        };
        match span {
            Some(span) => cx.with_remote_span_context(span),
            None => cx,
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        static FIELDS: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| {
            ["traceparent".to_owned(), "tracestate".to_owned(), "baggage".to_owned()]
        });
        FieldIter::new(&*FIELDS)
    }
}

/// The W3C `traceparent` of a span context (version 00); `None` for an
/// invalid one.
pub(crate) fn traceparent_of(sc: &SpanContext) -> Option<http::HeaderValue> {
    if !sc.is_valid() {
        return None;
    }
    let value = format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8());
    http::HeaderValue::from_str(&value).ok()
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
            let (t, s, f) = parse_traceparent(value.as_bytes()).unwrap();
            proptest::prop_assert_eq!(
                (t.to_string(), s.to_string(), format!("{:02x}", f.to_u8())),
                (trace.clone(), span.clone(), flags.clone())
            );
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

    /// The layer's own W3C reading gives the context the SDK's propagators
    /// give behind the checked extractor, for well-formed and hostile headers.
    #[test]
    fn w3c_reading_matches_the_sdk_propagators() {
        use opentelemetry::{
            baggage::BaggageExt,
            propagation::{TextMapCompositePropagator, TextMapPropagator},
            trace::TraceContextExt,
        };
        use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

        let sdk = TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]);
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[("traceparent", &format!("{tp}-01"))],
            &[("traceparent", &format!("{tp}-00"))],
            &[("traceparent", &format!("{tp}-03")), ("tracestate", "a=1,b=2")],
            &[("traceparent", &format!("{tp}-01")), ("tracestate", "not a tracestate")],
            &[("traceparent", &format!("{tp}-01")), ("baggage", "user=ada,tier=gold")],
            &[("traceparent", "00-4bf92f35-00f067aa0ba902b7-01"), ("baggage", "user=ada")],
            &[("traceparent", &format!("{tp}-01")), ("traceparent", &format!("{tp}-01"))],
            &[("baggage", "user=ada")],
            &[("baggage", "a%20b=c%2Cd;prop=1, bad, k=v=w, =x")],
        ];
        for headers in cases {
            let mut map = http::HeaderMap::new();
            for (k, v) in headers.iter() {
                map.append(http::HeaderName::from_static(k), v.parse().unwrap());
            }
            let ours = w3c_context(&map, w3c_parent(&map)).unwrap_or_default();
            let theirs = sdk.extract(&CheckedExtractor::new(&map));
            let (a, b) = (ours.span().span_context().clone(), theirs.span().span_context().clone());
            assert_eq!(
                (a.trace_id(), a.span_id(), a.trace_flags(), a.is_remote(), a.trace_state().header()),
                (b.trace_id(), b.span_id(), b.trace_flags(), b.is_remote(), b.trace_state().header()),
                "{headers:?}"
            );
            let baggage = |cx: &opentelemetry::Context| {
                let mut all: Vec<String> =
                    cx.baggage().iter().map(|(k, (v, _))| format!("{k}={v}")).collect();
                all.sort();
                all
            };
            assert_eq!(baggage(&ours), baggage(&theirs), "{headers:?}");

            // The propagator reads as the SDK's, and writes what they write.
            let read = W3cPropagator::new().extract(&HeaderExtractor(&map));
            let c = read.span().span_context().clone();
            assert_eq!(
                (c.trace_id(), c.span_id(), c.trace_flags(), c.trace_state().header()),
                (b.trace_id(), b.span_id(), b.trace_flags(), b.trace_state().header()),
                "{headers:?}"
            );
            assert_eq!(baggage(&read), baggage(&theirs), "{headers:?}");
            let (mut mine, mut sdks) = (std::collections::HashMap::new(), std::collections::HashMap::new());
            W3cPropagator::new().inject_context(&theirs, &mut mine);
            sdk.inject_context(&theirs, &mut sdks);
            assert_eq!(mine, sdks, "{headers:?}");
        }
    }
}
