//! The bearer token guard (RFC 6750) and its constant-time comparison.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{handlers::no_store, state::MonitoringState};

/// Whether `headers` carry the bearer token of `state`, when it has one.
pub(super) fn authorized(state: &MonitoringState, headers: &axum::http::HeaderMap) -> bool {
    let Some(token) = &state.token else { return true };
    let Some(sent) = headers.get(header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    !token.is_empty() && constant_time_eq(sent, token.as_bytes())
}

/// Compares two byte strings in a time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses guarded routes without the bearer token: `401`, nothing else.
pub(super) async fn guard(
    State(state): State<Arc<MonitoringState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if authorized(&state, req.headers()) {
        return next.run(req).await;
    }
    let mut res = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    no_store(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_bytes_and_lengths() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(constant_time_eq(b"", b""));
    }
}
