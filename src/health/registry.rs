//! [`HealthRegistry`]: named checks, their options, the per-check cache and
//! the runs.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use futures_util::future::{BoxFuture, FutureExt as _, Shared, join_all};
use tokio::time::Instant;

use super::{
    CheckHistory, CheckReport, HealthCheck, HealthCheckResult, HealthReport, HealthStatus,
    check::ErasedCheck,
    describe,
    history::{CheckRun, Runs},
    record,
};

/// A set of checks served by one health endpoint.
///
/// A check can belong to several groups; a check in two groups still runs
/// once per cache TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HealthGroup {
    /// Liveness (`GET /health/live`): is the process itself working, or
    /// should it be restarted? Only checks of the process's own state belong
    /// here (a deadlocked worker, an exhausted internal queue), never an
    /// external dependency: a database outage must not restart every
    /// instance.
    Live,
    /// Readiness (`GET /health/ready`): can the instance take traffic now?
    /// Checks of the dependencies it needs (database, broker). The default
    /// group of a check.
    Ready,
}

impl HealthGroup {
    /// The lowercase name: `live` or `ready`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Ready => "ready",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Live => 1,
            Self::Ready => 2,
        }
    }
}

impl fmt::Display for HealthGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who sees the checks of a health endpoint's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ShowDetails {
    /// Only the aggregate status: `{"status": "healthy"}`.
    Never,
    /// The aggregate status, every check's status, duration, message and
    /// details, and the time of the report. The default.
    #[default]
    Always,
}

/// Options of one registered check: timeout, failure status and groups.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_observability::health::{CheckOptions, HealthGroup, HealthRegistry, HealthStatus};
///
/// let registry = HealthRegistry::builder()
///     // A cache the service can run without: its failure only degrades.
///     .check_with(
///         "redis",
///         || async { Ok::<(), std::io::Error>(()) },
///         CheckOptions::new()
///             .timeout(Duration::from_millis(500))
///             .failure_status(HealthStatus::Degraded),
///     )
///     // The process's own state: in both groups.
///     .check_with(
///         "worker",
///         || async { HealthStatus::Healthy },
///         CheckOptions::new().groups([HealthGroup::Live, HealthGroup::Ready]),
///     )
///     .build();
/// # let _ = registry;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct CheckOptions {
    timeout: Duration,
    failure_status: HealthStatus,
    groups: u8,
}

impl CheckOptions {
    /// The default timeout of a check: 5 seconds.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Timeout [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT), failure status
    /// [`HealthStatus::Unhealthy`], group [`HealthGroup::Ready`].
    pub const fn new() -> Self {
        Self {
            timeout: Self::DEFAULT_TIMEOUT,
            failure_status: HealthStatus::Unhealthy,
            groups: HealthGroup::Ready.bit(),
        }
    }

    /// How long one run may take; a run still pending then is dropped and
    /// reported as failed with the message `timed out after {timeout} s`.
    /// Defaults to 5 seconds. Keep it below the probe's own timeout (a
    /// Kubernetes probe's `timeoutSeconds` defaults to 1 second).
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The status reported when the check fails: when it returns
    /// [`HealthStatus::Unhealthy`], times out or panics. Defaults to
    /// `Unhealthy`; [`HealthStatus::Degraded`] suits a dependency the
    /// service can work without (its failure shows, the endpoint still
    /// answers `200`). `Healthy` makes the check informational.
    pub const fn failure_status(mut self, status: HealthStatus) -> Self {
        self.failure_status = status;
        self
    }

    /// The groups the check belongs to, replacing the default
    /// ([`HealthGroup::Ready`]).
    pub fn groups(mut self, groups: impl IntoIterator<Item = HealthGroup>) -> Self {
        self.groups = groups.into_iter().fold(0, |bits, group| bits | group.bit());
        self
    }

    const fn in_group(&self, group: HealthGroup) -> bool {
        self.groups & group.bit() != 0
    }
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Builder of [`HealthRegistry`]; start with [`HealthRegistry::builder`].
#[must_use]
pub struct HealthRegistryBuilder {
    checks: Vec<Arc<Entry>>,
    cache_ttl: Duration,
    show_details: ShowDetails,
}

impl HealthRegistryBuilder {
    /// Registers `check` under `name` with the default [`CheckOptions`]:
    /// group ready, 5 s timeout, unhealthy on failure.
    ///
    /// # Panics
    ///
    /// As [`check_with`](Self::check_with).
    pub fn check(self, name: impl Into<String>, check: impl HealthCheck) -> Self {
        self.check_with(name, check, CheckOptions::new())
    }

    /// Registers `check` under `name` with `options`.
    ///
    /// `name` is the check's key in the JSON body and the `check` label of
    /// its metrics: a fixed, short identifier (`db`, `disk`), never input.
    ///
    /// # Panics
    ///
    /// When `name` is empty or already registered, or when `options` put
    /// the check in no group: each is a mistake in the code that builds
    /// the registry.
    pub fn check_with(
        mut self,
        name: impl Into<String>,
        check: impl HealthCheck,
        options: CheckOptions,
    ) -> Self {
        let name: Arc<str> = name.into().into();
        assert!(!name.is_empty(), "a health check needs a name");
        assert!(
            self.checks.iter().all(|entry| entry.name != name),
            "a health check named {name:?} is already registered"
        );
        assert!(options.groups != 0, "the health check {name:?} is in no group");
        self.checks.push(Arc::new(Entry {
            name,
            check: Arc::new(check),
            options,
            slot: Mutex::new(Slot::default()),
        }));
        self
    }

    /// How long a check's result is served before the check runs again;
    /// defaults to [`HealthRegistry::DEFAULT_CACHE_TTL`] (1 second). The
    /// TTL counts from the end of a run. With a TTL of zero every request
    /// runs the checks, yet concurrent requests still share one run.
    pub const fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Who sees the checks in the endpoints' answers; defaults to
    /// [`ShowDetails::Always`].
    pub const fn show_details(mut self, show: ShowDetails) -> Self {
        self.show_details = show;
        self
    }

    /// The registry. Also describes the health metrics to the `metrics`
    /// recorder installed now (see [`describe`](super::describe)).
    pub fn build(self) -> HealthRegistry {
        describe();
        HealthRegistry {
            inner: Arc::new(Inner {
                checks: self.checks,
                cache_ttl: self.cache_ttl,
                show_details: self.show_details,
            }),
        }
    }
}

impl fmt::Debug for HealthRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistryBuilder")
            .field("checks", &self.checks)
            .field("cache_ttl", &self.cache_ttl)
            .field("show_details", &self.show_details)
            .finish()
    }
}

/// Named async health checks, grouped for liveness and readiness, run with
/// timeouts, isolated from panics, and cached.
///
/// Cheap to clone: clones share the checks and their cached results.
///
/// - **Concurrency.** The checks of a group run concurrently, each on a
///   tokio task of its own: a slow check delays the answer by at most its
///   timeout, and a check that panics is reported as failed with the
///   message `check panicked` (the process must unwind on panic, Cargo's
///   default).
/// - **Cache and single flight.** A check's result is served for the cache
///   TTL after its run ended. When it is stale, the first caller starts one
///   run and every caller until it ends awaits that same run, so probe
///   traffic runs each check at most once per TTL plus run time, however
///   many requests arrive. A run continues when the request that started it
///   is cancelled.
/// - **Metrics.** Each run records `health_check_status{check}` and
///   `health_check_duration_seconds{check}` (see [`describe`](super::describe)).
/// - **Logs.** A check whose status changes logs one event: a warning when
///   it leaves healthy, an info when it comes back.
///
/// [`report`](Self::report) needs a tokio runtime with a timer (the
/// `time` driver), as `#[tokio::main]` has.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_observability::health::{HealthCheckResult, HealthGroup, HealthRegistry, HealthStatus};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = HealthRegistry::builder()
///     .check("db", || async {
///         // sqlx::query("SELECT 1").execute(&pool).await.map(drop)
///         Ok::<(), std::io::Error>(())
///     })
///     .check("queue", || async { HealthCheckResult::degraded("backlog above 10000") })
///     .cache_ttl(Duration::from_secs(2))
///     .build();
///
/// let ready = registry.report(HealthGroup::Ready).await;
/// assert_eq!(ready.status(), HealthStatus::Degraded);
/// // Liveness depends on no check registered with the defaults.
/// let live = registry.report(HealthGroup::Live).await;
/// assert_eq!(live.status(), HealthStatus::Healthy);
/// assert_eq!(live.checks().len(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    checks: Vec<Arc<Entry>>,
    cache_ttl: Duration,
    show_details: ShowDetails,
}

impl HealthRegistry {
    /// The default cache TTL: 1 second.
    pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);

    /// A builder with no checks, a cache TTL of 1 second and
    /// [`ShowDetails::Always`].
    pub fn builder() -> HealthRegistryBuilder {
        HealthRegistryBuilder {
            checks: Vec::new(),
            cache_ttl: Self::DEFAULT_CACHE_TTL,
            show_details: ShowDetails::default(),
        }
    }

    /// A registry without checks: every group is healthy.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Runs, or reads from the cache, the checks of `group`, concurrently,
    /// and aggregates them: the worst status wins, an empty group is
    /// healthy.
    ///
    /// Returns within the longest timeout of the group's checks (plus
    /// scheduling). Cancelling the returned future does not cancel runs it
    /// started: their results are cached for the next caller.
    ///
    /// # Panics
    ///
    /// When a check must run outside a tokio runtime, or in one without the
    /// time driver.
    pub async fn report(&self, group: HealthGroup) -> HealthReport {
        let ttl = self.inner.cache_ttl;
        let runs = self
            .inner
            .checks
            .iter()
            .filter(|entry| entry.options.in_group(group))
            .map(|entry| async move { (Arc::clone(&entry.name), entry.report(ttl).await) });
        let checks = join_all(runs).await;
        HealthReport {
            status: HealthStatus::aggregate(checks.iter().map(|(_, report)| report.status())),
            checks,
            timestamp: SystemTime::now(),
        }
    }

    /// Who sees the checks in the endpoints' answers.
    pub fn show_details(&self) -> ShowDetails {
        self.inner.show_details
    }

    /// How long a check's result is served before the check runs again.
    pub fn cache_ttl(&self) -> Duration {
        self.inner.cache_ttl
    }

    /// The names of the registered checks, in registration order.
    pub fn check_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.inner.checks.iter().map(|entry| &*entry.name)
    }

    /// The last runs of the check `name` and whether it is flapping (see
    /// [`CheckHistory`]); `None` when no check has that name. Reading it
    /// runs nothing.
    pub fn history(&self, name: &str) -> Option<CheckHistory> {
        let entry = self.inner.checks.iter().find(|entry| &*entry.name == name)?;
        Some(entry.lock().runs.history(SystemTime::now()))
    }

    /// Each check's name, groups and [`CheckHistory`], in registration
    /// order.
    pub fn histories(&self) -> Vec<(&str, Vec<HealthGroup>, CheckHistory)> {
        let now = SystemTime::now();
        self.inner
            .checks
            .iter()
            .map(|entry| {
                let groups = [HealthGroup::Live, HealthGroup::Ready]
                    .into_iter()
                    .filter(|g| entry.options.in_group(*g))
                    .collect();
                (&*entry.name, groups, entry.lock().runs.history(now))
            })
            .collect()
    }

    /// An estimate of the heap bytes of the checks' histories.
    pub fn memory_bytes(&self) -> usize {
        self.inner.checks.iter().map(|entry| entry.lock().runs.heap_bytes()).sum()
    }
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistry")
            .field("checks", &self.inner.checks)
            .field("cache_ttl", &self.inner.cache_ttl)
            .field("show_details", &self.inner.show_details)
            .finish()
    }
}

/// A run in flight, awaited by every caller that found the cache stale.
type Run = Shared<BoxFuture<'static, Arc<CheckReport>>>;

/// One registered check and its cache.
struct Entry {
    name: Arc<str>,
    check: Arc<dyn ErasedCheck>,
    options: CheckOptions,
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    /// The latest report and when its run ended.
    last: Option<(Instant, Arc<CheckReport>)>,
    /// The run in flight, if any.
    running: Option<Run>,
    /// The last runs.
    runs: Runs,
}

impl Entry {
    /// The cached report while fresh, else the result of the run in flight,
    /// else of a new run.
    async fn report(self: &Arc<Self>, ttl: Duration) -> Arc<CheckReport> {
        let run = {
            let mut slot = self.lock();
            if let Some((ended, report)) = &slot.last
                && ended.elapsed() < ttl
            {
                return Arc::clone(report);
            }
            slot.running.get_or_insert_with(|| self.start()).clone()
        };
        run.await
    }

    /// Spawns a run that stores its report when it ends, whoever awaits it.
    fn start(self: &Arc<Self>) -> Run {
        let entry = Arc::clone(self);
        let task = tokio::spawn(async move {
            let report = Arc::new(entry.run().await);
            entry.finish(&report);
            report
        });
        let entry = Arc::clone(self);
        async move {
            task.await.unwrap_or_else(|_| {
                // The runtime shut down before the run ended: let the next
                // caller start over.
                entry.lock().running = None;
                Arc::new(CheckReport::new(
                    HealthCheckResult::unhealthy("check was cancelled"),
                    entry.options.failure_status,
                    Duration::ZERO,
                ))
            })
        }
        .boxed()
        .shared()
    }

    /// One run of the check on a task of its own, bounded by the timeout.
    async fn run(&self) -> CheckReport {
        let started = Instant::now();
        let mut task = tokio::spawn(Arc::clone(&self.check).run());
        let result = match tokio::time::timeout(self.options.timeout, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(err)) if err.is_panic() => HealthCheckResult::unhealthy("check panicked"),
            Ok(Err(_)) => HealthCheckResult::unhealthy("check was cancelled"),
            Err(_elapsed) => {
                task.abort();
                HealthCheckResult::unhealthy(format!(
                    "timed out after {} s",
                    self.options.timeout.as_secs_f64()
                ))
            }
        };
        CheckReport::new(result, self.options.failure_status, started.elapsed())
    }

    /// Caches `report`, records its metrics, logs a change of status.
    fn finish(&self, report: &Arc<CheckReport>) {
        record(&self.name, report);
        let previous = {
            let mut slot = self.lock();
            slot.running = None;
            slot.runs.push(CheckRun {
                at: SystemTime::now(),
                status: report.status(),
                duration: report.duration(),
            });
            slot.last.replace((Instant::now(), Arc::clone(report))).map(|(_, last)| last.status())
        };
        let status = report.status();
        if previous.unwrap_or(HealthStatus::Healthy) == status {
            return;
        }
        let message = report.message().unwrap_or_default();
        if status == HealthStatus::Healthy {
            tracing::info!(check = %self.name, %status, "health check recovered");
        } else {
            tracing::warn!(check = %self.name, %status, message, "health check failed");
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check").field("name", &self.name).field("options", &self.options).finish()
    }
}
