//! A small users API, observable in three lines.
//!
//! ```text
//! cargo run --example quickstart
//! curl -i localhost:3000/users/42
//! curl localhost:3000/metrics
//! ```
//!
//! Environment: `PORT` (default 3000; `0` picks a free port), `HOST`
//! (default `127.0.0.1`), `LOG_FORMAT` (`json`, the default, or `text`),
//! `MONITORING_PORT` (serve `/metrics`, `/health/*` and `/monitoring/*` on
//! that port instead of the application's), `MONITORING_TOKEN` (require
//! `Authorization: Bearer <token>` on them), `TRACE_LINK` (how the
//! dashboard links a trace id; Jaeger's UI at
//! `http://localhost:16686/trace/{trace_id}` by default), and
//! the standard `OTEL_*` variables (traces go to `http://localhost:4317`,
//! Jaeger's OTLP gRPC port, unless `OTEL_EXPORTER_OTLP_ENDPOINT` says
//! otherwise). Stops gracefully on Ctrl-C or SIGTERM, flushing pending spans.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use axum::{
    Extension, Json, Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use tower_observability::{LogFormat, Observability, cache::InstrumentedCache};

#[derive(Clone, Serialize)]
struct User {
    id: u64,
    name: String,
}

/// Users by id, cached in memory (moka); its gets, puts, evictions and size
/// show on `/metrics` as `cache_*{cache="users"}`.
type Users = InstrumentedCache<u64, User>;

/// `GET /users/{id}`: a user as JSON, through the cache: the first request
/// for an id is a miss (the user is "loaded"), repeats are hits. The outcome
/// is set as a `CacheStatus` response extension, so it is counted in
/// `http_server_cache_requests_total{result="hit|miss"}` and on the span.
/// Ids above 1000 do not exist.
async fn get_user(State(users): State<Users>, Path(id): Path<u64>) -> Response {
    if id > 1000 {
        return (StatusCode::NOT_FOUND, "no such user\n").into_response();
    }
    let (user, cache_status) = users
        .get_or_insert_with_status(id, async move {
            tracing::info!(user.id = id, "loaded user");
            User { id, name: format!("user-{id}") }
        })
        .await;
    (Extension(cache_status), Json(user)).into_response()
}

/// `GET /orders/{id}`: fails with 500 for every fifth order, as a flaky
/// payment backend would.
async fn get_order(Path(id): Path<u64>) -> Response {
    if id % 5 == 0 {
        tracing::error!(order.id = id, "payment backend timed out");
        return (StatusCode::INTERNAL_SERVER_ERROR, "payment backend timed out\n").into_response();
    }
    Json(serde_json::json!({ "id": id, "status": "paid" })).into_response()
}

/// `GET /report`: a CSV report streamed in 5 chunks, 100 ms apart.
async fn report() -> Response {
    let rows = futures_util::stream::unfold(0u32, |row| async move {
        if row == 5 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, Infallible>(Bytes::from(format!("{row},value-{row}\n"))), row + 1))
    });
    ([("content-type", "text/csv")], Body::from_stream(rows)).into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log_format = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("text") => LogFormat::Text,
        _ => LogFormat::Json,
    };
    let obs = Observability::builder()
        .service_name("quickstart")
        .service_version(env!("CARGO_PKG_VERSION"))
        .log_format(log_format)
        .init()?;

    let users: Users = InstrumentedCache::new("users", moka::future::Cache::builder().max_capacity(10_000));

    let trace_link =
        std::env::var("TRACE_LINK").unwrap_or_else(|_| "http://localhost:16686/trace/{trace_id}".to_owned());
    let mut monitoring = obs.monitoring_router().trace_link(trace_link)?;
    if let Ok(token) = std::env::var("MONITORING_TOKEN") {
        monitoring = monitoring.bearer_token(token);
    }
    let app = Router::new()
        .route("/users/{id}", get(get_user))
        .route("/orders/{id}", get(get_order))
        .route("/report", get(report))
        .with_state(users)
        .layer(obs.layer());

    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    // The monitoring routes on an internal port of their own, or merged.
    let app = match std::env::var("MONITORING_PORT").ok().and_then(|p| p.parse::<u16>().ok()) {
        Some(port) => {
            let internal = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
            tracing::info!(address = %internal.local_addr()?, "monitoring listening");
            tokio::spawn(monitoring.serve(internal));
            app
        }
        None => app.merge(monitoring),
    };

    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    let address: SocketAddr = listener.local_addr()?;
    tracing::info!(
        %address,
        metrics = %format!("http://{address}/metrics"),
        dashboard = %format!("http://{address}/monitoring"),
        traces = obs.otlp_endpoint().unwrap_or("off (OTEL_SDK_DISABLED)"),
        "listening"
    );

    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("shutting down, flushing spans");
    obs.shutdown();
    Ok(())
}
