//! A tonic gRPC server observed by the crate: `demo.Greeter` (a unary call
//! and a server stream), its health checks as `grpc.health.v1.Health`, and
//! `/metrics` and the rest of the monitoring routes on an HTTP port.
//!
//! ```text
//! cargo run --example grpc
//! grpcurl -plaintext -import-path . -proto greeter.proto -d '{"name":"ada"}' 127.0.0.1:50051 demo.Greeter/SayHello
//! grpc_health_probe -addr 127.0.0.1:50051
//! curl -s 127.0.0.1:3000/metrics | grep rpc_server
//! ```
//!
//! Calls are recorded as `rpc_server_call_duration_seconds{rpc_method="demo.Greeter/SayHello",
//! rpc_response_status_code="OK",...}` and exported as spans named
//! `demo.Greeter/SayHello` over OTLP (to `OTEL_EXPORTER_OTLP_ENDPOINT`,
//! Jaeger's `http://localhost:4317` by default). `SayHello` with the name
//! `nobody` answers `NOT_FOUND` (not an error for the conventions); with
//! `crash`, `INTERNAL`, and with `busy`, `UNAVAILABLE` (errors); with
//! `slow:500`, after 500 ms. `GRPC_PORT` (50051) and `PORT` (3000) set the
//! ports, 0 for any free one.

#[path = "../tests/support/greeter.rs"]
mod greeter;

use std::time::Duration;

use greeter::{BoxStream, CountReply, CountRequest, Greeter, GreeterServer, HelloReply, HelloRequest};
use tonic::{Request, Response, Status};
use tower_observability::{Observability, grpc::HealthService, health::HealthRegistry};

struct MyGreeter;

impl Greeter for MyGreeter {
    type CountStream = BoxStream<CountReply>;

    async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        if let Some(ms) = name.strip_prefix("slow:").and_then(|ms| ms.parse().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        match name.as_str() {
            "nobody" => Err(Status::not_found("no such person")),
            "crash" => Err(Status::internal("the greeter fell over")),
            "busy" => Err(Status::unavailable("try again later")),
            name => Ok(Response::new(HelloReply { message: format!("Hello, {name}!") })),
        }
    }

    async fn count(&self, request: Request<CountRequest>) -> Result<Response<Self::CountStream>, Status> {
        let CountRequest { n, interval_ms } = request.into_inner();
        let replies = futures_util::stream::unfold(0, move |i| async move {
            if i >= n {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(interval_ms)).await;
            Some((Ok(CountReply { i }), i + 1))
        });
        Ok(Response::new(Box::pin(replies)))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let obs = Observability::builder().service_name("greeter").init()?;
    let health = HealthRegistry::builder().check("self", || async { Ok::<(), std::io::Error>(()) }).build();

    let port =
        |name: &str, default: u16| std::env::var(name).ok().and_then(|p| p.parse().ok()).unwrap_or(default);

    // The monitoring routes (/metrics, /health/*, /monitoring/*) on HTTP.
    let monitoring = axum::Router::from(obs.monitoring_router().health(health.clone()));
    let http = tokio::net::TcpListener::bind(("127.0.0.1", port("PORT", 3000))).await?;
    tracing::info!(address = %http.local_addr()?, "monitoring listening");
    tokio::spawn(async move { axum::serve(http, monitoring).await });

    let grpc = tokio::net::TcpListener::bind(("127.0.0.1", port("GRPC_PORT", 50051))).await?;
    tracing::info!(address = %grpc.local_addr()?, "listening");

    // The gRPC server: one layer observes every call.
    tonic::transport::Server::builder()
        .layer(obs.layer())
        .add_service(GreeterServer::new(MyGreeter))
        .add_service(HealthService::new(health).into_server())
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(grpc), async {
            tokio::signal::ctrl_c().await.unwrap_or(())
        })
        .await?;
    obs.shutdown();
    Ok(())
}
