//! Two services, one trace: a storefront calls an inventory service through
//! `PropagateContextLayer`, so the inventory's span is a child of the
//! storefront's, and both log the same request id.
//!
//! ```text
//! # one process, both services (service name "chain"):
//! cargo run --example chain
//! curl -i -H 'x-request-id: order-42' localhost:3000/checkout/sku-1
//!
//! # or two processes, two service names, as in production:
//! ROLE=inventory PORT=3001 cargo run --example chain
//! ROLE=storefront PORT=3000 INVENTORY_URL=http://127.0.0.1:3001 cargo run --example chain
//! ```
//!
//! Environment: `ROLE` (`storefront`, `inventory`, or unset for both),
//! `PORT` (storefront, or the single role's; default 3000, `0` picks one),
//! `INVENTORY_URL`, `LOG_FORMAT` (`json` or `text`), and the `OTEL_*`
//! variables. The storefront also answers with `traceparent` and
//! `Server-Timing` headers so a caller can find the trace.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State},
    http::{Request, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
};
use http_body_util::BodyExt;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_observability::{
    LogFormat, Observability,
    trace::{HttpTraceLayer, PropagateContext, PropagateContextLayer},
};

/// The storefront's HTTP client: hyper's, with context propagation.
type InventoryClient = PropagateContext<Client<HttpConnector, Body>>;

#[derive(Clone)]
struct Storefront {
    client: InventoryClient,
    inventory: String,
}

/// `GET /checkout/{sku}`: asks the inventory, answers with its verdict.
async fn checkout(State(shop): State<Storefront>, Path(sku): Path<String>) -> Response {
    tracing::info!(%sku, "calling inventory");
    let Ok(uri) = format!("{}/stock/{sku}", shop.inventory).parse::<Uri>() else {
        return (StatusCode::BAD_REQUEST, "bad sku\n").into_response();
    };
    let request = Request::get(uri).body(Body::empty()).expect("a GET request");
    let mut client = shop.client.clone();
    let answer = match client.ready().await {
        Ok(ready) => tokio::time::timeout(Duration::from_secs(5), ready.call(request)).await,
        Err(err) => Ok(Err(err)),
    };
    match answer {
        Ok(Ok(res)) if res.status().is_success() => {
            let body = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let stock: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            tracing::info!(%sku, "inventory answered");
            Json(serde_json::json!({ "sku": sku, "ordered": true, "stock": stock })).into_response()
        }
        other => {
            tracing::error!(%sku, outcome = ?other.map(|r| r.map(|res| res.status())), "inventory failed");
            (StatusCode::BAD_GATEWAY, "inventory unavailable\n").into_response()
        }
    }
}

/// `GET /stock/{sku}`: the inventory's answer.
async fn stock(Path(sku): Path<String>) -> Json<serde_json::Value> {
    tracing::info!(%sku, "checked stock");
    Json(serde_json::json!({ "sku": sku, "available": 3 }))
}

fn storefront(obs: &Observability, inventory: String) -> Router {
    let client = ServiceBuilder::new()
        .layer(PropagateContextLayer::new())
        .service(Client::builder(TokioExecutor::new()).build_http());
    let trace = HttpTraceLayer::new().traceparent_response_header(true).server_timing_header(true);
    Router::new()
        .route("/checkout/{sku}", get(checkout))
        .with_state(Storefront { client, inventory })
        .layer(obs.layer().trace(trace))
        .merge(obs.monitoring_router())
}

fn inventory(obs: &Observability) -> Router {
    Router::new().route("/stock/{sku}", get(stock)).layer(obs.layer()).merge(obs.monitoring_router())
}

async fn listen(port: u16) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let address = listener.local_addr()?;
    Ok((listener, address))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let role = std::env::var("ROLE").unwrap_or_default();
    let log_format = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("text") => LogFormat::Text,
        _ => LogFormat::Json,
    };
    let service_name = if role.is_empty() { "chain" } else { role.as_str() };
    let obs = Observability::builder().service_name(service_name).log_format(log_format).init()?;
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);

    let app = match role.as_str() {
        "inventory" => inventory(&obs),
        "storefront" => {
            let url = std::env::var("INVENTORY_URL").unwrap_or_else(|_| "http://127.0.0.1:3001".to_owned());
            storefront(&obs, url)
        }
        _ => {
            // Both in one process: the inventory on a port of its own.
            let (listener, address) = listen(0).await?;
            let inventory = inventory(&obs);
            tokio::spawn(async move { axum::serve(listener, inventory).await });
            storefront(&obs, format!("http://{address}"))
        }
    };
    let (listener, address) = listen(port).await?;
    tracing::info!(%address, role = service_name, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            #[cfg(unix)]
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
                return;
            }
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    obs.shutdown();
    Ok(())
}
