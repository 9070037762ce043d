//! [`HealthCheck`], its [`HealthCheckResult`] and the [`HealthStatus`] scale.

use std::{fmt, future::Future, sync::Arc};

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::{Map, Value};

/// The state of a check, or of a group of checks, from best to worst.
///
/// The order is the aggregation rule: the worst status wins, so the status
/// of a group is the [`max`](Ord::max) of its checks' statuses, and an empty
/// group is [`Healthy`](Self::Healthy). It serializes in lowercase
/// (`"healthy"`, `"degraded"`, `"unhealthy"`).
///
/// # Example
///
/// ```
/// use tower_observability::health::HealthStatus;
///
/// let group = [HealthStatus::Healthy, HealthStatus::Degraded];
/// assert_eq!(HealthStatus::aggregate(group), HealthStatus::Degraded);
/// assert_eq!(HealthStatus::aggregate([]), HealthStatus::Healthy);
/// assert_eq!(HealthStatus::Degraded.http_status(), http::StatusCode::OK);
/// assert_eq!(HealthStatus::Unhealthy.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Works as expected.
    #[default]
    Healthy,
    /// Works, with reduced function or performance (a non-critical
    /// dependency is down, a pool is near exhaustion). Still serves traffic:
    /// answered with `200`.
    Degraded,
    /// Does not work. Answered with `503` so that a load balancer or
    /// Kubernetes stops sending traffic (readiness) or restarts the process
    /// (liveness).
    Unhealthy,
}

impl HealthStatus {
    /// The lowercase name: `healthy`, `degraded` or `unhealthy`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }

    /// The worst of `statuses`; [`Healthy`](Self::Healthy) when there is none.
    pub fn aggregate(statuses: impl IntoIterator<Item = HealthStatus>) -> Self {
        statuses.into_iter().max().unwrap_or(Self::Healthy)
    }

    /// The HTTP status code of a health endpoint answering with this
    /// status: `200 OK` for healthy and degraded, `503 Service Unavailable`
    /// for unhealthy.
    pub const fn http_status(self) -> http::StatusCode {
        match self {
            Self::Healthy | Self::Degraded => http::StatusCode::OK,
            Self::Unhealthy => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The value of the `health_check_status` gauge: `1` healthy, `0.5`
    /// degraded, `0` unhealthy, so that `min` over checks or instances is
    /// the worst status and `avg` the share of good health.
    pub const fn gauge_value(self) -> f64 {
        match self {
            Self::Healthy => 1.0,
            Self::Degraded => 0.5,
            Self::Unhealthy => 0.0,
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one run of a [`HealthCheck`] found: a status, an optional message
/// for humans and optional machine-readable details.
///
/// Checks usually return one of the constructors; a check written as a
/// closure may also return a [`HealthStatus`], a `Result<(), E>` or a
/// `Result<HealthCheckResult, E>`, where `Err(e)` becomes
/// [`unhealthy`](Self::unhealthy)`(e.to_string())`.
///
/// The message and details are shown to whoever may read the health
/// endpoints' details (see [`ShowDetails`](super::ShowDetails)): keep
/// secrets such as connection strings out of them.
///
/// # Example
///
/// ```
/// use tower_observability::health::{HealthCheckResult, HealthStatus};
///
/// let result = HealthCheckResult::degraded("replica lag above 5 s")
///     .with_detail("lag_seconds", 7.5)
///     .with_detail("replica", "db-2");
/// assert_eq!(result.status, HealthStatus::Degraded);
/// assert_eq!(result.details["lag_seconds"], 7.5);
///
/// let failed: HealthCheckResult = Err::<(), _>("connection refused").into();
/// assert_eq!(failed.status, HealthStatus::Unhealthy);
/// assert_eq!(failed.message.as_deref(), Some("connection refused"));
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[non_exhaustive]
#[must_use]
pub struct HealthCheckResult {
    /// The status found.
    pub status: HealthStatus,
    /// Why, for humans (`"connection refused"`); `None` when there is
    /// nothing to say.
    pub message: Option<String>,
    /// Machine-readable facts (`{"free_bytes": 1073741824}`), shown as the
    /// check's `details` object; empty by default.
    pub details: Map<String, Value>,
}

impl HealthCheckResult {
    /// A result with `status`, no message and no details.
    pub fn new(status: HealthStatus) -> Self {
        Self { status, message: None, details: Map::new() }
    }

    /// [`HealthStatus::Healthy`], no message.
    pub fn healthy() -> Self {
        Self::new(HealthStatus::Healthy)
    }

    /// [`HealthStatus::Degraded`] with a message.
    pub fn degraded(message: impl Into<String>) -> Self {
        Self::new(HealthStatus::Degraded).with_message(message)
    }

    /// [`HealthStatus::Unhealthy`] with a message.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self::new(HealthStatus::Unhealthy).with_message(message)
    }

    /// Sets the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Adds one detail (replacing a detail of the same key).
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

impl From<HealthStatus> for HealthCheckResult {
    fn from(status: HealthStatus) -> Self {
        Self::new(status)
    }
}

impl<E: fmt::Display> From<Result<(), E>> for HealthCheckResult {
    /// `Ok(())` is healthy; `Err(e)` is unhealthy with the message `e`.
    fn from(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Self::healthy(),
            Err(err) => Self::unhealthy(err.to_string()),
        }
    }
}

impl<E: fmt::Display> From<Result<HealthCheckResult, E>> for HealthCheckResult {
    /// `Ok(result)` is `result`; `Err(e)` is unhealthy with the message `e`.
    fn from(result: Result<HealthCheckResult, E>) -> Self {
        result.unwrap_or_else(|err| Self::unhealthy(err.to_string()))
    }
}

/// One named check of a dependency or of the process itself, run by a
/// [`HealthRegistry`](super::HealthRegistry).
///
/// Implemented for async closures `Fn() -> impl Future<Output = R>` where `R`
/// converts into a [`HealthCheckResult`] (a result, a [`HealthStatus`], a
/// `Result<(), E: Display>`), so most checks need no type of their own.
///
/// The registry runs each check on a task of its own, bounded by its
/// timeout, and drops the future when the timeout expires: a check must
/// reach an `.await` to be cancelled, so blocking work (file system calls,
/// blocking drivers) belongs in [`tokio::task::spawn_blocking`]. A panic in
/// a check is caught and reported as unhealthy.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tower_observability::health::{HealthCheck, HealthCheckResult};
///
/// /// A pool that knows how many connections it has.
/// struct Pool { idle: usize, max: usize }
///
/// struct PoolCheck(Arc<Pool>);
///
/// impl HealthCheck for PoolCheck {
///     async fn check(&self) -> HealthCheckResult {
///         let Pool { idle, max } = *self.0;
///         let result = if idle == 0 {
///             HealthCheckResult::degraded("no idle connection")
///         } else {
///             HealthCheckResult::healthy()
///         };
///         result.with_detail("idle", idle).with_detail("max", max)
///     }
/// }
/// # let _ = PoolCheck(Arc::new(Pool { idle: 1, max: 10 }));
/// ```
pub trait HealthCheck: Send + Sync + 'static {
    /// Runs the check once and reports what it found.
    fn check(&self) -> impl Future<Output = HealthCheckResult> + Send;
}

impl<F, Fut, R> HealthCheck for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
    R: Into<HealthCheckResult>,
{
    fn check(&self) -> impl Future<Output = HealthCheckResult> + Send {
        let fut = self();
        async move { fut.await.into() }
    }
}

/// The object-safe form of [`HealthCheck`] the registry stores.
pub(super) trait ErasedCheck: Send + Sync + 'static {
    /// One run, as a boxed future that owns the check.
    fn run(self: Arc<Self>) -> BoxFuture<'static, HealthCheckResult>;
}

impl<C: HealthCheck> ErasedCheck for C {
    fn run(self: Arc<Self>) -> BoxFuture<'static, HealthCheckResult> {
        Box::pin(async move { self.check().await })
    }
}
