//! The crate's [`HealthRegistry`] served as the standard gRPC health
//! service, `grpc.health.v1.Health` (gRPC "Health Checking Protocol"),
//! through tonic-health's generated server: Kubernetes gRPC probes and
//! `grpc_health_probe` read the checks `/health/*` serves.

use std::{pin::Pin, time::Duration};

use futures_util::{Stream, StreamExt as _, stream};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus,
    health_server::{Health, HealthServer},
};

use crate::health::{HealthGroup, HealthRegistry, HealthStatus};

/// `grpc.health.v1.Health` over a [`HealthRegistry`] (feature `grpc`).
///
/// The `service` of a request names what is checked:
///
/// | `service` | answer |
/// |---|---|
/// | `""` (the server as a whole; Kubernetes' default), `readiness`, `ready` | the readiness group ([`HealthGroup::Ready`]) |
/// | `liveness`, `live` | the liveness group ([`HealthGroup::Live`]) |
/// | the name of a check | that check |
/// | anything else | `NOT_FOUND` (`Check`), `SERVICE_UNKNOWN` (`Watch`) |
///
/// Healthy and degraded are `SERVING`, unhealthy is `NOT_SERVING` (as
/// `/health/*` answer `200` and `503`). Checks run as for `/health/*`:
/// with their timeouts, cached for the registry's TTL. `Watch` sends the
/// status at once, then each change, checking every
/// [`watch_interval`](Self::watch_interval).
///
/// # Example
///
/// ```no_run
/// use tower_observability::{grpc::HealthService, health::HealthRegistry};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = HealthRegistry::builder().check("db", || async { Ok::<(), std::io::Error>(()) }).build();
/// tonic::transport::Server::builder()
///     .add_service(HealthService::new(registry).into_server())
///     .serve("127.0.0.1:50051".parse()?)
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct HealthService {
    registry: HealthRegistry,
    watch_interval: Duration,
}

impl HealthService {
    /// Serves `registry`; `Watch` checks every 5 seconds.
    pub fn new(registry: HealthRegistry) -> Self {
        Self { registry, watch_interval: Duration::from_secs(5) }
    }

    /// How often a `Watch` stream checks for a change.
    pub fn watch_interval(mut self, interval: Duration) -> Self {
        self.watch_interval = interval;
        self
    }

    /// The tonic service, for `Server::builder().add_service(..)` or
    /// `Routes::add_service`.
    pub fn into_server(self) -> HealthServer<Self> {
        HealthServer::new(self)
    }

    /// The status of `service`; `None` when it names nothing.
    async fn status(&self, service: &str) -> Option<ServingStatus> {
        let serving = |status: HealthStatus| match status {
            HealthStatus::Healthy | HealthStatus::Degraded => ServingStatus::Serving,
            HealthStatus::Unhealthy => ServingStatus::NotServing,
        };
        let group = match service {
            "" | "readiness" | "ready" => Some(HealthGroup::Ready),
            "liveness" | "live" => Some(HealthGroup::Live),
            _ => None,
        };
        if let Some(group) = group {
            return Some(serving(self.registry.report(group).await.status()));
        }
        if !self.registry.check_names().any(|name| name == service) {
            return None;
        }
        for group in [HealthGroup::Ready, HealthGroup::Live] {
            if let Some(check) = self.registry.report(group).await.check(service) {
                return Some(serving(check.status()));
            }
        }
        None
    }
}

/// The stream of a `Watch` call.
type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send>>;

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: status as i32 }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        match self.status(&request.get_ref().service).await {
            Some(status) => Ok(tonic::Response::new(response(status))),
            None => Err(tonic::Status::not_found("unknown service")),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<WatchStream>, tonic::Status> {
        let service = request.into_inner().service;
        let this = self.clone();
        // State: the last status sent, `None` before the first.
        let updates = stream::unfold((this, service, None), |(this, service, last)| async move {
            loop {
                if last.is_some() {
                    tokio::time::sleep(this.watch_interval).await;
                }
                let status = this.status(&service).await.unwrap_or(ServingStatus::ServiceUnknown);
                if last != Some(status) {
                    return Some((Ok(response(status)), (this, service, Some(status))));
                }
            }
        });
        Ok(tonic::Response::new(updates.boxed()))
    }
}
