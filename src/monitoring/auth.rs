//! The bearer token guards (RFC 6750): the read token of the routes that
//! show, the write token of the routes that change state, compared in
//! constant time with `subtle`.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use subtle::ConstantTimeEq;

use super::{handlers::no_store, state::MonitoringState};

/// Whether `headers` carry the bearer token of `state`, when it has one.
pub(super) fn authorized(state: &MonitoringState, headers: &axum::http::HeaderMap) -> bool {
    state.token.as_ref().is_none_or(|token| carries(headers, token))
}

/// Whether `headers` carry `Authorization: Bearer <token>`; never for an
/// empty token. The comparison takes a time that depends on the lengths
/// only (`subtle`).
fn carries(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let Some(sent) = headers.get(header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    !token.is_empty() && bool::from(sent.ct_eq(token.as_bytes()))
}

/// `401` with `WWW-Authenticate: Bearer`, and nothing else.
fn unauthorized() -> Response {
    let mut res = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    no_store(res)
}

/// Refuses guarded routes without the read token: `401`, nothing else.
pub(super) async fn guard(
    State(state): State<Arc<MonitoringState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if authorized(&state, req.headers()) {
        return next.run(req).await;
    }
    unauthorized()
}

/// Refuses the write routes without the write token: `401`, nothing else.
/// The write routes exist only when a write token is set.
pub(super) async fn write_guard(
    State(state): State<Arc<MonitoringState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match &state.write_token {
        Some(token) if carries(req.headers(), token) => next.run(req).await,
        _ => unauthorized(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        headers
    }

    #[test]
    fn tokens_are_compared_whole_and_never_empty() {
        assert!(carries(&bearer("secret"), "secret"));
        assert!(!carries(&bearer("secreT"), "secret"));
        assert!(!carries(&bearer("secret!"), "secret"));
        assert!(!carries(&bearer("secre"), "secret"));
        assert!(!carries(&bearer(""), ""), "an empty token never matches");
        assert!(!carries(&axum::http::HeaderMap::new(), "secret"));
        let mut basic = axum::http::HeaderMap::new();
        basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic secret"));
        assert!(!carries(&basic, "secret"));
    }
}
