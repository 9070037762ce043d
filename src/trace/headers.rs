//! The opt-in response headers that tell a client its trace: W3C
//! `traceparent` and `Server-Timing`.

use opentelemetry::trace::TraceContextExt as _;

use super::propagation::{TRACEPARENT, traceparent_of};

/// Which trace headers a layer writes on responses.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TraceHeaders {
    pub(super) traceparent: bool,
    pub(super) server_timing: bool,
}

impl TraceHeaders {
    /// Writes the headers asked for, for the span of `cx`.
    #[inline]
    pub(super) fn write(self, headers: &mut http::HeaderMap, cx: &opentelemetry::Context) {
        if !(self.traceparent || self.server_timing) {
            return;
        }
        let Some(traceparent) = traceparent_of(cx.span().span_context()) else { return };
        if self.server_timing {
            let timing = format!("traceparent;desc=\"{}\"", traceparent.to_str().unwrap_or_default());
            if let Ok(timing) = http::HeaderValue::from_str(&timing) {
                headers.append(http::header::HeaderName::from_static("server-timing"), timing);
            }
        }
        if self.traceparent {
            headers.insert(TRACEPARENT, traceparent);
        }
    }
}
