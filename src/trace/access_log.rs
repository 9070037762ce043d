//! The access log: one event per finished request, target
//! `tower_observability::access`, inside the request's span.

use tracing::{Level, Span};

use crate::{classify::ErrorType, context::RequestContext, observe::Finished};

macro_rules! access_event {
    ($level:expr, $parent:expr, $($field:tt)*) => {
        match $level {
            Level::ERROR => tracing::event!(target: "tower_observability::access", parent: $parent, Level::ERROR, $($field)*),
            Level::WARN => tracing::event!(target: "tower_observability::access", parent: $parent, Level::WARN, $($field)*),
            Level::INFO => tracing::event!(target: "tower_observability::access", parent: $parent, Level::INFO, $($field)*),
            Level::DEBUG => tracing::event!(target: "tower_observability::access", parent: $parent, Level::DEBUG, $($field)*),
            Level::TRACE => tracing::event!(target: "tower_observability::access", parent: $parent, Level::TRACE, $($field)*),
        }
    };
}

/// Emits the access log event of a finished request at `level`, with the
/// request's span as its parent (given, not entered: an entry costs a
/// registry lookup per subscriber layer). Fields: `http.request.method`,
/// `http.route`, `http.response.status_code`, `duration_seconds` (from
/// the context's start to the end of the response body), `error.type`.
///
/// A gRPC call logs `rpc.method` and `rpc.response.status_code` instead of
/// the route and the HTTP status.
pub(super) fn log(level: Level, span: &Span, cx: &RequestContext, finished: &Finished) {
    if let (Some(call), Some(end)) = (cx.rpc(), &finished.rpc) {
        access_event!(
            level,
            span,
            rpc.method = call.method(),
            rpc.response.status_code = end.code.as_str(),
            duration_seconds = finished.at.saturating_duration_since(cx.start()).as_secs_f64(),
            error.type = finished.error.as_ref().map(ErrorType::as_str),
            "call finished"
        );
        return;
    }
    access_event!(
        level,
        span,
        http.request.method = cx.method(),
        http.route = cx.route(),
        http.response.status_code = finished.status.map(|s| s.as_u16()),
        duration_seconds = finished.at.saturating_duration_since(cx.start()).as_secs_f64(),
        error.type = finished.error.as_ref().map(ErrorType::as_str),
        "request finished"
    );
}
