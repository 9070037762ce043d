//! Health checks: a [`HealthRegistry`] of named async checks, grouped for
//! liveness and readiness, each bounded by a timeout, isolated from panics,
//! cached for a TTL and run by one caller at a time, with metrics.
//!
//! The monitoring router serves a registry at `GET /health/live` and
//! `GET /health/ready` (see `MonitoringRouter::health` in the `monitoring`
//! module): `200` when the group is healthy or degraded, `503` when it is
//! unhealthy, with the [`HealthReport`] as JSON.
//!
//! # Example
//!
//! A database ping (simulated here), and a data-directory check that runs
//! its blocking file system calls off the runtime's workers.
//!
//! ```
//! use std::{path::PathBuf, time::Duration};
//!
//! use tower_observability::health::{
//!     CheckOptions, HealthCheck, HealthCheckResult, HealthGroup, HealthRegistry, HealthStatus,
//! };
//!
//! /// Stands for a connection pool, e.g. `sqlx::PgPool`.
//! #[derive(Clone)]
//! struct Pool;
//!
//! impl Pool {
//!     /// `sqlx::query("SELECT 1").execute(&pool)` with a real pool.
//!     async fn ping(&self) -> Result<(), std::io::Error> {
//!         tokio::time::sleep(Duration::from_millis(2)).await;
//!         Ok(())
//!     }
//! }
//!
//! /// Checks that the service can write to its data directory.
//! ///
//! /// A free-space check would also read `statvfs(2)` (`f_bavail * f_frsize`,
//! /// e.g. through `rustix::fs::statvfs` or `fs4::available_space`) and
//! /// report degraded below a threshold; the standard library has no such
//! /// call.
//! struct DataDir(PathBuf);
//!
//! impl HealthCheck for DataDir {
//!     async fn check(&self) -> HealthCheckResult {
//!         let dir = self.0.clone();
//!         let written = tokio::task::spawn_blocking(move || {
//!             let probe = dir.join(format!(".health-probe-{}", std::process::id()));
//!             std::fs::write(&probe, b"ok")?;
//!             std::fs::remove_file(&probe)
//!         })
//!         .await;
//!         let path = self.0.display().to_string();
//!         match written {
//!             Ok(Ok(())) => HealthCheckResult::healthy().with_detail("path", path),
//!             Ok(Err(err)) => HealthCheckResult::unhealthy(format!("cannot write: {err}"))
//!                 .with_detail("path", path),
//!             Err(_) => HealthCheckResult::unhealthy("probe task failed"),
//!         }
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() {
//! let pool = Pool;
//! let registry = HealthRegistry::builder()
//!     // Readiness only (the default group): a database outage takes the
//!     // instance out of the load balancer, it does not restart it.
//!     .check("db", move || {
//!         let pool = pool.clone();
//!         async move { pool.ping().await }
//!     })
//!     // A full disk degrades the service without stopping it.
//!     .check_with(
//!         "data_dir",
//!         DataDir(std::env::temp_dir()),
//!         CheckOptions::new()
//!             .timeout(Duration::from_secs(2))
//!             .failure_status(HealthStatus::Degraded),
//!     )
//!     .build();
//!
//! let report = registry.report(HealthGroup::Ready).await;
//! assert_eq!(report.status(), HealthStatus::Healthy);
//! assert_eq!(report.checks().map(|(name, _)| name).collect::<Vec<_>>(), ["db", "data_dir"]);
//! # }
//! ```
//!
//! Serving it next to `/metrics`:
//!
//! ```no_run
//! # #[cfg(feature = "monitoring")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::Router;
//! use tower_observability::{Observability, health::HealthRegistry};
//!
//! let obs = Observability::builder().service_name("users-api").init()?;
//! let registry = HealthRegistry::builder()
//!     .check("db", || async { Ok::<(), std::io::Error>(()) })
//!     .build();
//! let app: Router = Router::new()
//!     .layer(obs.layer())
//!     .merge(obs.monitoring_router().health(registry));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "monitoring"))]
//! # fn main() {}
//! ```
//!
//! # Metrics
//!
//! Each run records, through the `metrics` facade:
//!
//! | name | type | labels | value |
//! |---|---|---|---|
//! | `health_check_status` | gauge | `check` | `1` healthy, `0.5` degraded, `0` unhealthy |
//! | `health_check_duration_seconds` | histogram | `check` | duration of the run, in seconds |
//!
//! The `check` label is the registered name, so the series are bounded by
//! the number of checks.

mod check;
mod history;
mod registry;
mod report;

use std::sync::Arc;

pub use self::{
    check::{HealthCheck, HealthCheckResult, HealthStatus},
    history::{CheckHistory, CheckRun, FLAP_CHANGES, FLAP_WINDOW, HISTORY_RUNS},
    registry::{CheckOptions, HealthGroup, HealthRegistry, HealthRegistryBuilder, ShowDetails},
    report::{CheckReport, HealthReport},
};

/// `health_check_status{check}`: the status of a check's latest run (gauge),
/// encoded as `1` healthy, `0.5` degraded, `0` unhealthy (see
/// [`HealthStatus::gauge_value`]). `min by (check)` is the worst instance.
pub const HEALTH_CHECK_STATUS: &str = "health_check_status";

/// `health_check_duration_seconds{check}`: the duration of each run of a
/// check, in seconds, up to its timeout (histogram).
pub const HEALTH_CHECK_DURATION: &str = "health_check_duration_seconds";

/// Describes the health metrics (`# HELP` lines and units) to the global
/// `metrics` recorder.
///
/// [`HealthRegistryBuilder::build`] calls it, and so does the monitoring
/// router when given a registry; call it yourself when you install a
/// recorder after both.
///
/// # Example
///
/// ```
/// tower_observability::health::describe();
/// ```
pub fn describe() {
    use ::metrics::{Unit, describe_gauge, describe_histogram};
    describe_gauge!(
        HEALTH_CHECK_STATUS,
        "Status of the latest run of a health check: 1 healthy, 0.5 degraded, 0 unhealthy."
    );
    describe_histogram!(HEALTH_CHECK_DURATION, Unit::Seconds, "Duration of health check runs.");
}

/// Records the metrics of one run of the check `name`.
fn record(name: &Arc<str>, report: &CheckReport) {
    ::metrics::gauge!(HEALTH_CHECK_STATUS, "check" => Arc::clone(name)).set(report.status().gauge_value());
    ::metrics::histogram!(HEALTH_CHECK_DURATION, "check" => Arc::clone(name))
        .record(report.duration().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        time::Duration,
    };

    use serde_json::json;
    use tokio::time::Instant;

    use super::*;
    use crate::time::rfc3339;

    const LIVE: HealthGroup = HealthGroup::Live;
    const READY: HealthGroup = HealthGroup::Ready;

    /// A check returning `status` after `delay`, counting its runs.
    fn counted(calls: &Arc<AtomicUsize>, delay: Duration, status: HealthStatus) -> impl HealthCheck {
        let calls = Arc::clone(calls);
        move || {
            calls.fetch_add(1, SeqCst);
            async move {
                tokio::time::sleep(delay).await;
                status
            }
        }
    }

    fn fixed(status: HealthStatus) -> impl HealthCheck {
        move || async move { status }
    }

    struct SetOnDrop(Arc<AtomicBool>);

    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, SeqCst);
        }
    }

    #[tokio::test]
    async fn a_flapping_check_reports_each_run_and_the_latest_wins() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let registry =
            HealthRegistry::builder()
                .check("flappy", move || {
                    let run = counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if run.is_multiple_of(2) { HealthStatus::Healthy } else { HealthStatus::Unhealthy }
                    }
                })
                .cache_ttl(Duration::ZERO)
                .build();
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(registry.report(READY).await.status());
        }
        use HealthStatus::{Healthy, Unhealthy};
        assert_eq!(seen, [Healthy, Unhealthy, Healthy, Unhealthy, Healthy, Unhealthy]);
        assert_eq!(runs.load(Ordering::SeqCst), 6, "each report ran the check once");
    }

    #[tokio::test]
    async fn a_hung_check_is_reported_timed_out_and_dropped() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&dropped);
        let registry = HealthRegistry::builder()
            .check_with(
                "hung",
                move || {
                    let guard = SetOnDrop(Arc::clone(&flag));
                    async move {
                        let _guard = guard;
                        std::future::pending::<HealthStatus>().await
                    }
                },
                CheckOptions::new().timeout(Duration::from_millis(250)),
            )
            .build();

        let started = Instant::now();
        let report = registry.report(READY).await;
        let elapsed = started.elapsed();

        assert!(elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(500), "{elapsed:?}");
        assert_eq!(report.status(), HealthStatus::Unhealthy);
        let hung = report.check("hung").unwrap();
        assert_eq!(hung.message(), Some("timed out after 0.25 s"));
        assert!(hung.duration() >= Duration::from_millis(250) && hung.duration() <= elapsed);
        // The hung future was aborted, not leaked.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !dropped.load(SeqCst) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(dropped.load(SeqCst), "the timed-out check was not dropped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_check_is_answered_within_its_timeout_in_real_time() {
        let timeout = Duration::from_millis(200);
        let registry = HealthRegistry::builder()
            .check_with("hung", counted(&Arc::default(), Duration::from_secs(3600), HealthStatus::Healthy), {
                CheckOptions::new().timeout(timeout)
            })
            .build();
        let started = std::time::Instant::now();
        let report = registry.report(READY).await;
        let elapsed = started.elapsed();
        assert_eq!(report.status(), HealthStatus::Unhealthy);
        assert!(elapsed >= timeout && elapsed < timeout + Duration::from_millis(250), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_panicking_check_is_unhealthy_and_the_registry_keeps_working() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let registry = HealthRegistry::builder()
            .check("flaky", move || {
                let n = counter.fetch_add(1, SeqCst);
                async move {
                    assert!(n != 0, "first run panics");
                    HealthStatus::Healthy
                }
            })
            .check("steady", fixed(HealthStatus::Healthy))
            .cache_ttl(Duration::ZERO)
            .build();

        let first = registry.report(READY).await;
        assert_eq!(first.status(), HealthStatus::Unhealthy);
        assert_eq!(first.check("flaky").unwrap().message(), Some("check panicked"));
        assert_eq!(first.check("steady").unwrap().status(), HealthStatus::Healthy);

        let second = registry.report(READY).await;
        assert_eq!(second.status(), HealthStatus::Healthy);
        assert_eq!(calls.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_run_per_ttl() {
        let calls = Arc::new(AtomicUsize::new(0));
        let registry = HealthRegistry::builder()
            .check("db", counted(&calls, Duration::from_millis(50), HealthStatus::Healthy))
            .cache_ttl(Duration::from_millis(500))
            .build();
        let burst = || async {
            let tasks: Vec<_> = (0..100)
                .map(|_| {
                    let registry = registry.clone();
                    tokio::spawn(async move { registry.report(READY).await })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap().status(), HealthStatus::Healthy);
            }
        };

        burst().await; // the run ends at about 50 ms, fresh until about 550 ms
        assert_eq!(calls.load(SeqCst), 1);
        burst().await;
        assert_eq!(calls.load(SeqCst), 1, "within the TTL");
        tokio::time::sleep(Duration::from_millis(600)).await;
        burst().await;
        assert_eq!(calls.load(SeqCst), 2, "after the TTL");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_on_threads_share_one_run() {
        let calls = Arc::new(AtomicUsize::new(0));
        let registry = HealthRegistry::builder()
            .check("db", counted(&calls, Duration::from_millis(100), HealthStatus::Degraded))
            .cache_ttl(Duration::from_secs(60))
            .build();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let registry = registry.clone();
                tokio::spawn(async move { registry.report(READY).await.status() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), HealthStatus::Degraded);
        }
        assert_eq!(calls.load(SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cancelled_caller_does_not_cancel_the_run() {
        let calls = Arc::new(AtomicUsize::new(0));
        let registry = HealthRegistry::builder()
            .check("db", counted(&calls, Duration::from_millis(100), HealthStatus::Healthy))
            .build();
        let gave_up = tokio::time::timeout(Duration::from_millis(10), registry.report(READY)).await;
        assert!(gave_up.is_err());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let report = registry.report(READY).await;
        assert_eq!(report.status(), HealthStatus::Healthy);
        assert_eq!(calls.load(SeqCst), 1, "the first run ended and was cached");
    }

    async fn aggregate(statuses: &[HealthStatus]) -> HealthReport {
        let mut builder = HealthRegistry::builder();
        for (i, status) in statuses.iter().enumerate() {
            builder = builder.check(format!("c{i}"), fixed(*status));
        }
        builder.build().report(READY).await
    }

    #[tokio::test]
    async fn the_worst_status_wins_and_degraded_still_serves() {
        use HealthStatus::{Degraded, Healthy, Unhealthy};
        let cases: [(&[HealthStatus], HealthStatus, u16); 5] = [
            (&[], Healthy, 200),
            (&[Healthy, Healthy], Healthy, 200),
            (&[Healthy, Degraded], Degraded, 200),
            (&[Degraded, Unhealthy, Healthy], Unhealthy, 503),
            (&[Unhealthy], Unhealthy, 503),
        ];
        for (statuses, expected, code) in cases {
            let report = aggregate(statuses).await;
            assert_eq!(report.status(), expected, "{statuses:?}");
            assert_eq!(report.status().http_status().as_u16(), code, "{statuses:?}");
            assert_eq!(report.checks().len(), statuses.len());
        }
        assert!(Healthy < Degraded && Degraded < Unhealthy);
        assert_eq!([Healthy, Degraded, Unhealthy].map(HealthStatus::gauge_value), [1.0, 0.5, 0.0]);
    }

    #[tokio::test]
    async fn a_non_critical_failure_degrades() {
        let degraded = CheckOptions::new().failure_status(HealthStatus::Degraded);
        let registry = HealthRegistry::builder()
            .check_with("cache", fixed(HealthStatus::Unhealthy), degraded)
            .check_with(
                "search",
                counted(&Arc::default(), Duration::from_secs(10), HealthStatus::Healthy),
                degraded.timeout(Duration::from_millis(100)),
            )
            .check_with("audit", || async { Err::<(), _>("refused") }, degraded)
            .build();
        let report = registry.report(READY).await;
        assert_eq!(report.status(), HealthStatus::Degraded);
        for (name, check) in report.checks() {
            assert_eq!(check.status(), HealthStatus::Degraded, "{name}");
        }
        assert_eq!(report.check("search").unwrap().message(), Some("timed out after 0.1 s"));
        assert_eq!(report.check("audit").unwrap().message(), Some("refused"));
    }

    #[tokio::test]
    async fn groups_select_checks_and_share_runs() {
        let (db, worker, pool) = (Arc::default(), Arc::default(), Arc::default());
        let registry = HealthRegistry::builder()
            .check("db", counted(&db, Duration::ZERO, HealthStatus::Unhealthy))
            .check_with(
                "worker",
                counted(&worker, Duration::ZERO, HealthStatus::Healthy),
                CheckOptions::new().groups([LIVE]),
            )
            .check_with(
                "pool",
                counted(&pool, Duration::ZERO, HealthStatus::Degraded),
                CheckOptions::new().groups([LIVE, READY]),
            )
            .build();
        let names = |report: &HealthReport| report.checks().map(|(n, _)| n.to_owned()).collect::<Vec<_>>();

        let live = registry.report(LIVE).await;
        assert_eq!(names(&live), ["worker", "pool"]);
        assert_eq!(live.status(), HealthStatus::Degraded, "the failing db is not in live");
        let ready = registry.report(READY).await;
        assert_eq!(names(&ready), ["db", "pool"]);
        assert_eq!(ready.status(), HealthStatus::Unhealthy);
        let runs = [&db, &worker, &pool].map(|calls| calls.load(SeqCst));
        assert_eq!(runs, [1, 1, 1], "pool ran once for both groups");
    }

    #[tokio::test]
    async fn an_empty_group_is_healthy() {
        let report = HealthRegistry::new().report(LIVE).await;
        assert_eq!(report.status(), HealthStatus::Healthy);
        assert_eq!(report.checks().len(), 0);
    }

    #[test]
    fn details_visibility_is_configured_on_the_registry() {
        assert_eq!(HealthRegistry::new().show_details(), ShowDetails::Always);
        let hidden = HealthRegistry::builder().show_details(ShowDetails::Never).build();
        assert_eq!(hidden.clone().show_details(), ShowDetails::Never);
        assert_eq!(hidden.cache_ttl(), HealthRegistry::DEFAULT_CACHE_TTL);
    }

    #[tokio::test]
    async fn the_report_serializes_to_the_documented_shape() {
        let registry = HealthRegistry::builder()
            .check("db", || async {
                tokio::time::sleep(Duration::from_millis(12)).await;
                HealthCheckResult::healthy()
            })
            .check("disk", || async {
                HealthCheckResult::degraded("92% used").with_detail("free_bytes", 1_u64 << 30)
            })
            .build();
        let report = registry.report(READY).await;
        let mut json = serde_json::to_value(&report).unwrap();
        let timestamp = json.as_object_mut().unwrap().remove("timestamp").unwrap();
        let db_seconds = json["checks"]["db"]["duration_seconds"].take().as_f64().unwrap();
        assert!((0.012..1.0).contains(&db_seconds), "{db_seconds}");
        assert_eq!(
            json,
            json!({
                "status": "degraded",
                "checks": {
                    "db": {"status": "healthy", "duration_seconds": null},
                    "disk": {
                        "status": "degraded",
                        "duration_seconds": report.check("disk").unwrap().duration().as_secs_f64(),
                        "message": "92% used",
                        "details": {"free_bytes": 1_u64 << 30},
                    },
                },
            })
        );
        assert_eq!(timestamp, rfc3339(report.timestamp()));
    }

    #[test]
    fn runs_record_status_and_duration_metrics() {
        use metrics_util::{
            MetricKind,
            debugging::{DebugValue, DebuggingRecorder},
        };
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || {
            describe();
            let report = CheckReport::new(
                HealthCheckResult::degraded("slow"),
                HealthStatus::Unhealthy,
                Duration::from_millis(12),
            );
            record(&Arc::from("db"), &report);
        });
        let metrics = snapshotter.snapshot().into_vec();
        let find = |kind: MetricKind, name: &str| {
            let (key, unit, help, value) = metrics
                .iter()
                .find(|(key, ..)| key.kind() == kind && key.key().name() == name)
                .unwrap_or_else(|| panic!("{name} not recorded"));
            let labels: Vec<_> =
                key.key().labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            assert_eq!(labels, [("check".to_owned(), "db".to_owned())]);
            assert!(help.is_some(), "{name} has no HELP");
            (*unit, value)
        };
        let (_, status) = find(MetricKind::Gauge, HEALTH_CHECK_STATUS);
        assert!(matches!(status, DebugValue::Gauge(v) if v.0 == 0.5));
        let (unit, duration) = find(MetricKind::Histogram, HEALTH_CHECK_DURATION);
        assert_eq!(unit, Some(::metrics::Unit::Seconds));
        assert!(matches!(duration, DebugValue::Histogram(v) if v.len() == 1 && v[0].0 == 0.012));
    }

    #[test]
    #[should_panic(expected = "already registered")]
    fn duplicate_names_are_refused() {
        let _ = HealthRegistry::builder()
            .check("db", fixed(HealthStatus::Healthy))
            .check("db", fixed(HealthStatus::Healthy));
    }

    #[test]
    #[should_panic(expected = "in no group")]
    fn a_check_in_no_group_is_refused() {
        let _ = HealthRegistry::builder().check_with(
            "db",
            fixed(HealthStatus::Healthy),
            CheckOptions::new().groups([]),
        );
    }

    #[test]
    fn traits() {
        fn assert_send<T: Send>(_: &T) {}
        fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
        assert_send_sync::<HealthRegistry>();
        assert_send_sync::<HealthReport>();
        assert_send_sync::<CheckReport>();
        assert_send_sync::<HealthCheckResult>();
        assert_send_sync::<CheckOptions>();
        let registry = HealthRegistry::new();
        assert_send(&registry.report(READY));
    }
}
