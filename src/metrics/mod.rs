//! HTTP server metrics in the OpenTelemetry HTTP semantic conventions, in
//! their Prometheus form, recorded through the `metrics` crate's facade.
//!
//! | metric | type | unit | labels |
//! |---|---|---|---|
//! | [`HTTP_SERVER_REQUEST_DURATION`] | histogram | seconds | method, route, status, scheme, protocol version, `error_type` on errors |
//! | [`HTTP_SERVER_ACTIVE_REQUESTS`] | gauge | requests | method, scheme |
//! | [`HTTP_SERVER_REQUEST_BODY_SIZE`] | histogram | bytes | as duration |
//! | [`HTTP_SERVER_RESPONSE_BODY_SIZE`] | histogram | bytes | as duration |
//! | [`HTTP_SERVER_TIME_TO_FIRST_BYTE`] (opt-in) | histogram | seconds | as duration |
//! | [`RPC_SERVER_CALL_DURATION`] | histogram | seconds | `rpc_system_name`, `rpc_method`, `rpc_response_status_code`, `error_type` on errors |
//! | [`RPC_SERVER_ACTIVE_CALLS`] | gauge | calls | `rpc_system_name`, `rpc_method` |
//!
//! A gRPC call is recorded in the two RPC metrics only (OTel RPC semconv
//! v1.44.0; see [`crate::grpc`]), not in the HTTP ones.
//!
//! Labels are `http_request_method` (unknown methods become `_OTHER`),
//! `http_route` (the route template, [`UNMATCHED_ROUTE`](crate::UNMATCHED_ROUTE)
//! for requests that matched no route), `http_response_status_code`,
//! `url_scheme`, `network_protocol_version` (`1.1`, `2`) and `error_type`
//! (see [`ErrorType`](crate::ErrorType)). Opt-in:
//! `server_address`/`server_port` among a list of known hosts
//! ([`HttpMetricsLayer::server_address`]) and the labels handlers set from
//! a declared set ([`HttpMetricsLayer::labels`], see [`crate::labeler`]).
//! No label ever holds a raw path, query, header or id.
//! Duration runs from the call to the end of the response body, or to its
//! drop. Body sizes are the bytes that flow: the response's data frames as
//! sent, and the request's `Content-Length` (which hyper enforces) or, for a
//! chunked upload, the data frames the handler read.
//!
//! Histograms must be rendered with buckets (never as summaries); the
//! [`Observability`](crate::Observability) builder sets
//! [`DURATION_BUCKETS`] and [`SIZE_BUCKETS`]. When you install a recorder
//! yourself, set them too.
//!
//! # In-process windows
//!
//! Beside the cumulative Prometheus series, every measured request is
//! counted in bounded in-process windows (DESIGN: "windowed views (last
//! 1 m, 5 m, 15 m) for the overview, alerts and dashboard are computed
//! in-process with bounded ring buffers"), per route label: requests and
//! errors in [`WindowedCounter`]s of 1-second slots, durations in a
//! [`WindowedHistogram`] of 10-second slots, 62 KB per route.
//! [`HttpMetricsLayer::http_stats`] reads them as request rates, error
//! ratios and p50/p95/p99 latencies ([`HttpStats`]), per route and for the
//! whole layer (the sum of its routes, added up when read). A finished
//! request costs two compare-and-swaps more (three when it failed) on its
//! route's windows when its buffer is written (below), and the request two
//! atomic adds and two subtracts on its thread's shards of the active
//! counts (the gauge's and the windows'): no allocation once a thread has
//! served the route, no extra clock reading, no write to memory that
//! requests on other routes share.
//!
//! # Per-thread buffers
//!
//! What a finished request writes into shared state (the histograms of its
//! series, its route's windows) waits first in a buffer of the worker's
//! thread and is written in batches, and the active-request counts are
//! kept per thread and added up when read, so that workers serving one
//! route do not write the same cache lines per request (threads take
//! shards in turn, twice as many shards as cores, at most 16: the workers
//! of a pool get their own). gRPC calls (the RPC metrics) are buffered
//! the same way, per method, but a call whose error was marked (a service
//! error, a handler's mark: rare) is written at once. What waits is
//! written when 32 requests (or calls) have gathered on a thread, every
//! 100 ms, and before the crate reads or renders the figures: see
//! [`flush`] for when, and when to call it yourself.
//!
//! # Exemplars
//!
//! Each series and bucket of [`HTTP_SERVER_REQUEST_DURATION`] and
//! [`RPC_SERVER_CALL_DURATION`] keeps the latest request whose span is
//! sampled, as an [`Exemplar`] (trace id, span id, duration, end time), in
//! an [`Exemplars`] registry: `/metrics` shows them in OpenMetrics (see
//! [`crate::monitoring`]), the dashboard lists the slowest. The slots are
//! made with the series (one per bucket and `+Inf`, 960 bytes a series),
//! written without a lock or an allocation (89 instructions for a sampled
//! request), and left alone by unsampled ones. The `metrics` facade has no
//! exemplar API: the Prometheus recorder keeps the values, the slots only
//! what it cannot hold. Over OTLP the data points carry none: the
//! OpenTelemetry SDK 0.33 makes none and accepts none.
//!
//! [`WindowedCounter`]: crate::window::WindowedCounter
//! [`WindowedHistogram`]: crate::window::WindowedHistogram
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_observability::metrics::HttpMetricsLayer;
//!
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(HttpMetricsLayer::new());
//! ```

mod buffer;
mod exemplar;
mod flush;
mod layer;
mod rpc;
mod series;
mod stats;

#[cfg(test)]
pub(crate) use self::exemplar::SampledIds;
#[cfg(feature = "monitoring")]
pub(crate) use self::flush::settled;
pub(crate) use self::layer::{MetricsPending, MetricsRoute};
pub use self::{
    exemplar::{Exemplar, Exemplars, MAX_EXEMPLAR_SERIES},
    flush::flush,
    layer::{HttpMetrics, HttpMetricsLayer},
    rpc::{RPC_SERVER_ACTIVE_CALLS, RPC_SERVER_CALL_DURATION},
    stats::{HttpStats, HttpWindowStats, RouteStats},
};
pub use crate::semconv::{DURATION_BUCKETS, SIZE_BUCKETS};

/// `http.server.request.duration`: seconds from the request to the end of
/// its response body (histogram).
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// `http.server.active_requests`: requests whose response has not ended (gauge).
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// `http.server.request.body.size`: request body bytes (histogram).
pub const HTTP_SERVER_REQUEST_BODY_SIZE: &str = "http_server_request_body_size_bytes";
/// `http.server.response.body.size`: response body bytes sent (histogram).
pub const HTTP_SERVER_RESPONSE_BODY_SIZE: &str = "http_server_response_body_size_bytes";

/// Seconds from the request to the first byte of its response body
/// (histogram; opt-in with [`HttpMetricsLayer::time_to_first_byte`]). Not an
/// OTel semconv metric: streaming services want it beside the duration.
pub const HTTP_SERVER_TIME_TO_FIRST_BYTE: &str = "http_server_time_to_first_byte_seconds";

/// Registers the `# HELP` text and unit of every metric of this module with
/// the installed recorder. [`HttpMetricsLayer::new`] calls it; calling it
/// again is harmless.
pub fn describe() {
    use ::metrics::{Unit, describe_gauge, describe_histogram};
    describe_histogram!(
        HTTP_SERVER_REQUEST_DURATION,
        Unit::Seconds,
        "Duration of HTTP server requests, to the end of the response body."
    );
    describe_gauge!(HTTP_SERVER_ACTIVE_REQUESTS, Unit::Count, "Number of active HTTP server requests.");
    describe_histogram!(HTTP_SERVER_REQUEST_BODY_SIZE, Unit::Bytes, "Size of HTTP server request bodies.");
    describe_histogram!(
        HTTP_SERVER_TIME_TO_FIRST_BYTE,
        Unit::Seconds,
        "Time from an HTTP server request to the first byte of its response body."
    );
    describe_histogram!(
        HTTP_SERVER_RESPONSE_BODY_SIZE,
        Unit::Bytes,
        "Size of HTTP server response bodies, as sent."
    );
    rpc::describe();
}
