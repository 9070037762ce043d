//! gRPC calls: detection, status, deadline, and the method a call names.
//!
//! The layers of the crate observe a gRPC server (tonic's, or any
//! `Service<http::Request<B>>` that speaks gRPC) with the OpenTelemetry RPC
//! semantic conventions, **v1.44.0** ("Semantic conventions for RPC spans",
//! "... for RPC metrics", "... for gRPC"), instead of the HTTP ones:
//!
//! - **Detection.** A request is a gRPC call when its `content-type` is
//!   `application/grpc`, alone or followed by `+` (`+proto`, `+json`) or
//!   `;` (gRPC over HTTP2). gRPC-Web (`application/grpc-web...`) is not: its
//!   status travels inside the response body, which the crate does not
//!   parse, so it is observed as HTTP. The check is one header lookup:
//!   plain HTTP requests pay nothing else.
//! - **Status.** `grpc-status` is read from the trailers, or from the
//!   headers of a trailers-only response (how tonic answers an error or an
//!   unknown method). A response that ends without one gets the code a gRPC
//!   client infers from its HTTP status ([`Code::from_http_status`]:
//!   `UNKNOWN` for a `200`); a response body dropped before its end, or a
//!   call dropped before its response, is `CANCELLED`, or
//!   `DEADLINE_EXCEEDED` once the client's `grpc-timeout` has run out (see
//!   below); a body that fails mid-stream is `UNKNOWN`, and an inner service
//!   that returns `Err` gives `UNKNOWN` with the error's
//!   [`ErrorType`](crate::ErrorType).
//! - **Errors.** `error.type` is the status name for the codes the
//!   conventions count as server errors ([`Code::is_server_error`]:
//!   `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`,
//!   `UNAVAILABLE`, `DATA_LOSS`), and absent for the others (`OK`,
//!   `NOT_FOUND`, `CANCELLED`...); an [`ErrorType`](crate::ErrorType) the
//!   handler puts in the response extensions (or the panic catcher's
//!   `panic`) wins, as for HTTP. A panic caught by
//!   [`CatchPanic`](crate::panic::CatchPanic) is answered with an HTTP
//!   `500` without `grpc-status`, which the client and the crate read as
//!   `UNKNOWN` (`error_type="panic"`).
//! - **Not covered.** Message counts per call (OTel semconv v1.44.0
//!   deprecated `rpc.server.requests_per_rpc` and `responses_per_rpc`
//!   without a replacement; counting would mean parsing the frames of both
//!   bodies), `server.address`/`server.port` and `network.peer.*` on the
//!   span, and gRPC-Web.
//! - **Method.** `rpc.method` is the path without its leading `/`,
//!   `{package.Service}/{Method}`, for a method the server serves, and
//!   `_OTHER` for any other path (semconv: "MUST be set to `_OTHER`" when the
//!   method is not recognized), so that a client sending random paths adds
//!   no label. A method is recognized once a call to it was answered with
//!   anything but tonic's answer to an unknown method (a trailers-only
//!   `UNIMPLEMENTED` without message, or a non-`200` status), or when
//!   declared with [`recognize_method`]. At most
//!   [`MAX_RPC_METHODS`](crate::route::MAX_RPC_METHODS) are kept per
//!   process. The first call of a method, before any was answered, gets its
//!   name when its response head comes: its span is renamed then (a sampler
//!   saw `grpc`, without `rpc.method`), and its active-call count moves from
//!   `_OTHER` to the method.
//! - **Deadline.** tonic applies `grpc-timeout` outside the layers a user
//!   adds: on a deadline it drops the layer's future (and the client sees
//!   `CANCELLED`, "Timeout expired", or its own `DEADLINE_EXCEEDED`). The
//!   crate reads `grpc-timeout` itself: a call that ends unanswered (future
//!   or body dropped) once at least the timeout less a slack has passed
//!   (1/20 of the timeout, plus 20 ms, for the client's timer, which starts
//!   first) is `DEADLINE_EXCEEDED`, not `CANCELLED`. A deadline set with
//!   tonic's `Server::timeout` is not seen (it is not on the request).
//!
//! What each signal shows for a gRPC call:
//!
//! | signal | for a gRPC call |
//! |---|---|
//! | span | kind server, named `{rpc.method}` (`grpc` for `_OTHER`); `rpc.system.name`, `rpc.method`, `rpc.method_original` (for `_OTHER`), `rpc.response.status_code`, `error.type`; status error with the `grpc-message` as description on server errors |
//! | `rpc_server_call_duration_seconds` | histogram, labels `rpc_system_name`, `rpc_method`, `rpc_response_status_code`, `error_type` on errors; timed to the end of the response stream (its trailers) |
//! | `rpc_server_active_calls` | gauge, labels `rpc_system_name`, `rpc_method` (not a semconv metric) |
//! | `http_server_*` | nothing: a gRPC call is recorded in the RPC series only, so that no HTTP series counts a failed call (always a `200`) as a success |
//! | in-process windows ([`HttpStats`](crate::metrics::HttpStats)) | the call, under its `rpc.method` label, failed when it has an `error.type` |
//! | access log | `rpc.method`, `rpc.response.status_code`, `duration_seconds`, `error.type` |
//!
//! W3C Trace Context, baggage and the request id travel in gRPC metadata,
//! which is HTTP/2 headers: the layers read them from a gRPC call as from
//! an HTTP request, and [`PropagateContextLayer`](crate::trace::PropagateContextLayer)
//! around a tonic `Channel` writes them, so one trace crosses HTTP and gRPC
//! services.
//!
//! # Example
//!
//! ```no_run
//! use tower_observability::ObservabilityLayer;
//!
//! # async fn run(routes: tonic::service::Routes) -> Result<(), Box<dyn std::error::Error>> {
//! tonic::transport::Server::builder()
//!     .layer(ObservabilityLayer::new())
//!     .add_routes(routes)
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "grpc")]
mod health;
mod status;

use std::time::Duration;

use http::{HeaderMap, Request, header::CONTENT_TYPE, uri::PathAndQuery};

#[cfg(feature = "grpc")]
pub use self::health::HealthService;
pub use self::status::Code;
pub(crate) use self::status::{decode_message, status_of};
use crate::route;
pub use crate::route::recognize_method;

/// Whether `headers` announce a gRPC request or response: `content-type`
/// `application/grpc`, alone or followed by `+` or `;` (gRPC over HTTP2),
/// case-insensitive. gRPC-Web is not matched.
///
/// ```
/// use tower_observability::grpc::is_grpc;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("content-type", "application/grpc+proto".parse().unwrap());
/// assert!(is_grpc(&headers));
/// headers.insert("content-type", "application/grpc-web".parse().unwrap());
/// assert!(!is_grpc(&headers));
/// ```
#[inline]
pub fn is_grpc(headers: &HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let Some(value) = headers.get(CONTENT_TYPE) else { return false };
    let value = value.as_bytes();
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// The facts of one gRPC call, found once with the request's context.
#[derive(Debug, Clone)]
pub(crate) struct RpcCall {
    method: RpcMethod,
    /// The client's `grpc-timeout`.
    timeout: Option<Duration>,
}

/// The method a call names.
#[derive(Debug, Clone)]
enum RpcMethod {
    /// A method the server serves: `pkg.Service/Method`.
    Recognized(&'static str),
    /// Any other path, kept to learn the method from the answer and for
    /// `rpc.method_original`.
    Unrecognized(Option<PathAndQuery>),
}

impl RpcCall {
    /// The call `req` makes, `None` when it is not a gRPC request.
    #[inline]
    pub(crate) fn of<B>(req: &Request<B>) -> Option<Self> {
        if !is_grpc(req.headers()) {
            return None;
        }
        let method = match route::rpc_method(req.uri().path()) {
            Some(name) => RpcMethod::Recognized(name),
            None => RpcMethod::Unrecognized(req.uri().path_and_query().cloned()),
        };
        let timeout =
            req.headers().get(&status::GRPC_TIMEOUT).and_then(|v| status::parse_timeout(v.as_bytes()));
        Some(Self { method, timeout })
    }

    /// `rpc.method`: `pkg.Service/Method`, or `_OTHER` for a method not
    /// (yet) recognized.
    #[inline]
    pub(crate) fn method(&self) -> &'static str {
        self.recognized().unwrap_or(crate::semconv::RPC_METHOD_OTHER)
    }

    /// The method's name, when recognized.
    #[inline]
    pub(crate) fn recognized(&self) -> Option<&'static str> {
        match self.method {
            RpcMethod::Recognized(name) => Some(name),
            RpcMethod::Unrecognized(_) => None,
        }
    }

    /// `rpc.method_original`: the path without its leading `/`, for a
    /// method not recognized; at most 256 bytes of it.
    pub(crate) fn original(&self) -> Option<&str> {
        let RpcMethod::Unrecognized(Some(path)) = &self.method else { return None };
        let path = path.path();
        let path = path.strip_prefix('/').unwrap_or(path);
        Some(&path[..path.len().min(route::MAX_RPC_METHOD_LEN)])
    }

    /// Learns the method of a call not yet recognized from the head of its
    /// response: `true` when the method became recognized now.
    pub(crate) fn learn(
        &mut self,
        status: http::StatusCode,
        trailers_only: Option<&(Code, Option<http::HeaderValue>)>,
    ) {
        let RpcMethod::Unrecognized(Some(path)) = &self.method else { return };
        let unknown_method = status != http::StatusCode::OK
            || matches!(trailers_only, Some((Code::Unimplemented, message)) if message.as_ref().is_none_or(|m| m.is_empty()));
        if unknown_method {
            return;
        }
        if let Some(name) = route::learn_rpc_method(path.path()) {
            self.method = RpcMethod::Recognized(name);
        }
    }

    /// Whether the client's deadline has run out, `elapsed` into the call
    /// (with the slack of the [module docs](self)).
    #[inline]
    pub(crate) fn deadline_passed(&self, elapsed: Duration) -> bool {
        self.timeout.is_some_and(|timeout| elapsed + timeout / 20 + Duration::from_millis(20) >= timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(content_type: &str, path: &str) -> Option<RpcCall> {
        let req = Request::post(path).header("content-type", content_type).body(()).unwrap();
        RpcCall::of(&req)
    }

    #[test]
    fn grpc_is_detected_by_content_type() {
        for ct in ["application/grpc", "application/grpc+proto", "Application/GRPC;charset=utf-8"] {
            assert!(call(ct, "/a.B/C").is_some(), "{ct}");
        }
        for ct in ["application/grpc-web", "application/grpc-web+proto", "application/json", "application/gr"]
        {
            assert!(call(ct, "/a.B/C").is_none(), "{ct}");
        }
        assert!(RpcCall::of(&Request::post("/a.B/C").body(()).unwrap()).is_none());
    }

    #[test]
    fn deadline_has_slack_for_the_clients_timer() {
        let mut req = Request::post("/a.B/C").header("content-type", "application/grpc");
        req = req.header("grpc-timeout", "1000m");
        let timed = RpcCall::of(&req.body(()).unwrap()).unwrap();
        assert!(!timed.deadline_passed(Duration::from_millis(900)));
        assert!(timed.deadline_passed(Duration::from_millis(940)));
        assert!(timed.deadline_passed(Duration::from_secs(2)));
        let none = call("application/grpc", "/a.B/C").unwrap();
        assert!(!none.deadline_passed(Duration::from_secs(3600)));
    }

    #[test]
    fn unknown_methods_are_other_until_answered() {
        let mut c = call("application/grpc", "/mod.tests.Learn/Method").unwrap();
        assert_eq!(c.method(), "_OTHER");
        assert_eq!(c.original(), Some("mod.tests.Learn/Method"));
        let unimplemented = (Code::Unimplemented, None);
        c.learn(http::StatusCode::OK, Some(&unimplemented));
        assert_eq!(c.method(), "_OTHER", "tonic's answer to an unknown method");
        c.learn(http::StatusCode::NOT_FOUND, None);
        assert_eq!(c.method(), "_OTHER");
        c.learn(http::StatusCode::OK, Some(&(Code::NotFound, None)));
        assert_eq!(c.method(), "mod.tests.Learn/Method");
        assert_eq!(c.original(), None);
        let again = call("application/grpc", "/mod.tests.Learn/Method").unwrap();
        assert_eq!(again.recognized(), Some("mod.tests.Learn/Method"), "recognized from now on");
    }
}
