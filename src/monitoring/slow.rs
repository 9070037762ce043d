//! The overview's `slow_requests`: per route, the slowest recent requests
//! whose traces were sampled, read from the exemplar slots that `/metrics`
//! shows (one per series and bucket: the highest buckets hold the slowest).

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use crate::metrics::Exemplars;

/// How far back the slow requests go: the dashboard's longest window.
pub const SLOW_REQUESTS_WITHIN: Duration = Duration::from_secs(15 * 60);
/// The most requests listed per route, slowest first.
pub const SLOW_REQUESTS_PER_ROUTE: usize = 3;
/// The most routes listed, those of the slowest requests first.
pub const SLOW_REQUESTS_ROUTES: usize = 10;

/// The overview's `slow_requests`: for the routes (HTTP route templates and
/// gRPC methods) with sampled requests in the last
/// [`SLOW_REQUESTS_WITHIN`], their slowest, with trace ids and, given a
/// template ([`MonitoringRouter::trace_link`](super::MonitoringRouter::trace_link)),
/// a link to each trace.
///
/// ```json
/// {"routes": [{"route": "/users/{id}", "requests": [
///   {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
///    "seconds": 0.734, "status": "200", "ended_at": "2025-06-01T12:00:00.123Z",
///    "link": "http://localhost:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"}]}]}
/// ```
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct SlowRequests {
    /// Routes, the one with the slowest request first; at most
    /// [`SLOW_REQUESTS_ROUTES`].
    pub routes: Vec<RouteSlowRequests>,
}

/// The slowest recent sampled requests of one route.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RouteSlowRequests {
    /// The `http_route` template, or the gRPC `rpc_method`.
    pub route: String,
    /// Slowest first; at most [`SLOW_REQUESTS_PER_ROUTE`].
    pub requests: Vec<SlowRequest>,
}

/// One sampled request.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SlowRequest {
    /// W3C trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// Span id of its server span, 16 lowercase hex digits.
    pub span_id: String,
    /// Duration, in seconds.
    pub seconds: f64,
    /// `http_response_status_code` or `rpc_response_status_code`, when the
    /// series has one.
    pub status: Option<String>,
    /// When it ended, RFC 3339 UTC.
    pub ended_at: String,
    /// The trace link template with the trace id in it; `None` without a
    /// template.
    pub link: Option<String>,
}

/// A link template refused by
/// [`MonitoringRouter::trace_link`](super::MonitoringRouter::trace_link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLinkError {
    template: String,
}

impl fmt::Display for TraceLinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trace link template {:?} must start with http://, https:// or / and contain {{trace_id}}",
            self.template
        )
    }
}

impl std::error::Error for TraceLinkError {}

/// Checks a trace link template: an `http`, `https` or same-origin
/// address holding `{trace_id}`, so that a page never gets a
/// `javascript:` link.
pub(super) fn check_template(template: &str) -> Result<(), TraceLinkError> {
    let scheme_ok = ["http://", "https://"]
        .iter()
        .any(|s| template.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)))
        || (template.starts_with('/') && !template.starts_with("//"));
    if scheme_ok && template.contains("{trace_id}") {
        Ok(())
    } else {
        Err(TraceLinkError { template: template.to_owned() })
    }
}

/// The slow requests held by `exemplars` that ended after `now -`
/// [`SLOW_REQUESTS_WITHIN`].
pub(super) fn build(exemplars: &Exemplars, link: Option<&str>, now: SystemTime) -> SlowRequests {
    let since = now.checked_sub(SLOW_REQUESTS_WITHIN).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut routes: Vec<RouteSlowRequests> = Vec::new();
    for series in exemplars.series() {
        let Some(route) = series.label("http_route").or_else(|| series.label("rpc_method")) else { continue };
        let status =
            series.label("http_response_status_code").or_else(|| series.label("rpc_response_status_code"));
        let recent = series.read().into_iter().filter(|e| e.timestamp >= since);
        let requests = recent.map(|e| {
            let trace_id = e.trace_id.to_string();
            SlowRequest {
                link: link
                    .map(|t| t.replace("{trace_id}", &trace_id).replace("{span_id}", &e.span_id.to_string())),
                trace_id,
                span_id: e.span_id.to_string(),
                seconds: e.value,
                status: status.map(str::to_owned),
                ended_at: crate::time::rfc3339(e.timestamp),
            }
        });
        match routes.iter_mut().find(|r| r.route == route) {
            Some(found) => found.requests.extend(requests),
            None => routes.push(RouteSlowRequests { route: route.to_owned(), requests: requests.collect() }),
        }
    }
    routes.retain(|r| !r.requests.is_empty());
    for route in &mut routes {
        route.requests.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        route.requests.truncate(SLOW_REQUESTS_PER_ROUTE);
    }
    routes
        .sort_by(|a, b| b.requests[0].seconds.total_cmp(&a.requests[0].seconds).then(a.route.cmp(&b.route)));
    routes.truncate(SLOW_REQUESTS_ROUTES);
    SlowRequests { routes }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use metrics::Label;
    use opentelemetry::trace::{SpanId, TraceId};

    use super::*;
    use crate::metrics::{HTTP_SERVER_REQUEST_DURATION, RPC_SERVER_CALL_DURATION, SampledIds};

    fn ids(n: u8) -> SampledIds {
        SampledIds { trace_id: TraceId::from_bytes([n; 16]), span_id: SpanId::from_bytes([n; 8]) }
    }

    #[test]
    fn templates_must_be_web_links_with_the_trace_id() {
        for ok in [
            "http://localhost:16686/trace/{trace_id}",
            "HTTPS://jaeger/trace/{trace_id}?s={span_id}",
            "/jaeger/trace/{trace_id}",
        ] {
            assert_eq!(check_template(ok), Ok(()), "{ok}");
        }
        for bad in [
            "javascript:alert('{trace_id}')",
            "//evil/{trace_id}",
            "http://jaeger/trace/",
            "ftp://x/{trace_id}",
            "",
        ] {
            let err = check_template(bad).unwrap_err();
            assert!(err.to_string().starts_with("trace link template"), "{err}");
        }
    }

    #[test]
    fn routes_list_their_slowest_recent_sampled_requests() {
        let registry = Exemplars::new();
        let http = |route: &'static str, status: &'static str| {
            let labels = [Label::new("http_route", route), Label::new("http_response_status_code", status)];
            registry.series_of(HTTP_SERVER_REQUEST_DURATION, &labels).unwrap()
        };
        let at = Instant::now();
        let (users_ok, users_err) = (http("/users/{id}", "200"), http("/users/{id}", "500"));
        users_ok.record(0.004, ids(1), at);
        users_ok.record(0.3, ids(2), at);
        users_ok.record(0.08, ids(3), at);
        users_err.record(2.0, ids(4), at);
        http("/quiet", "200");
        http("/fast", "200").record(0.001, ids(5), at);
        let rpc =
            [Label::new("rpc_method", "demo.Greeter/SayHello"), Label::new("rpc_response_status_code", "OK")];
        registry.series_of(RPC_SERVER_CALL_DURATION, &rpc).unwrap().record(0.5, ids(6), at);

        let slow = build(&registry, Some("http://jaeger:16686/trace/{trace_id}"), SystemTime::now());
        let routes: Vec<&str> = slow.routes.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(
            routes,
            ["/users/{id}", "demo.Greeter/SayHello", "/fast"],
            "no route without sampled requests"
        );
        let users = &slow.routes[0].requests;
        let seen: Vec<(f64, Option<&str>)> = users.iter().map(|r| (r.seconds, r.status.as_deref())).collect();
        assert_eq!(seen, [(2.0, Some("500")), (0.3, Some("200")), (0.08, Some("200"))], "three slowest");
        assert_eq!(users[0].trace_id, ids(4).trace_id.to_string());
        assert_eq!(users[0].span_id, ids(4).span_id.to_string());
        assert_eq!(
            users[0].link.as_deref(),
            Some(format!("http://jaeger:16686/trace/{}", ids(4).trace_id).as_str())
        );
        assert!(users[0].ended_at.ends_with('Z'));
        assert_eq!(slow.routes[1].requests[0].status.as_deref(), Some("OK"));

        let later = build(&registry, None, SystemTime::now() + SLOW_REQUESTS_WITHIN + Duration::from_secs(1));
        assert!(later.routes.is_empty(), "older than the window");
        assert!(build(&registry, None, SystemTime::now()).routes[0].requests[0].link.is_none());
    }
}
