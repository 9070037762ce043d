//! `GET /monitoring/overview`: the service at a glance, as JSON.
//!
//! Built by [`MonitoringRouter::overview`](super::MonitoringRouter::overview)
//! from the in-process windows ([`HttpStats`], [`CacheHitRatios`]), the
//! health registry, the process's figures and, when one is plugged in, an
//! [`AlertsSource`](crate::alerts::AlertsSource).

use std::time::Instant;

use serde::{Serialize, Serializer, ser::SerializeStruct};

use super::{slow, slow::SlowRequests, state::MonitoringState};
use crate::{
    alerts::AlertsSummary,
    cache::{CacheWindowStats, HitRatioSnapshot, HitRatioWarning},
    health::{CheckHistory, HealthGroup, HealthReport, HealthStatus, ShowDetails},
    metrics::{HttpStats, HttpWindowStats},
    slo::SloReport,
    window::Window,
};

/// The most routes the overview lists, busiest first over the last 15
/// minutes.
pub const OVERVIEW_TOP_ROUTES: usize = 20;

/// The answer of `GET /monitoring/overview`.
///
/// Every figure is read when the overview is built; windows are the last
/// 1, 5 and 15 minutes. Durations are in seconds, rates in requests per
/// second, ratios from 0 to 1, sizes in bytes. A figure that cannot be
/// known (a ratio without requests, a process figure the platform does not
/// give) is `None`, `null` in JSON.
///
/// # Example
///
/// ```
/// use tower_observability::monitoring::MonitoringRouter;
///
/// # #[tokio::main]
/// # async fn main() {
/// let overview = MonitoringRouter::standalone().overview().await;
/// assert_eq!(overview.service.name, "unknown_service");
/// assert_eq!(overview.http.windows.one_minute.requests, 0);
/// assert!(overview.alerts.active.is_empty());
/// let json = serde_json::to_value(&overview).unwrap();
/// assert_eq!(json["http"]["windows"]["1m"]["requests"], 0);
/// # }
/// ```
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Overview {
    /// Name, version and uptime.
    pub service: ServiceOverview,
    /// Request rate, error ratio and latency, overall and per route.
    pub http: HttpOverview,
    /// Cache hit ratios and the windows below the warning threshold.
    pub cache: CacheOverview,
    /// The status of the liveness and readiness checks; `None` when the
    /// router was given no [`HealthRegistry`](crate::health::HealthRegistry).
    pub health: Option<HealthOverview>,
    /// Memory, CPU and file descriptors of the process.
    pub process: ProcessOverview,
    /// Active alerts, from the [`AlertsSource`](crate::alerts::AlertsSource) given to
    /// [`MonitoringRouter::alerts`](super::MonitoringRouter::alerts); empty
    /// without one.
    pub alerts: AlertsSummary,
    /// The service level objectives with their error budget left and burn
    /// rates (see [`MonitoringRouter::slo`](super::MonitoringRouter::slo));
    /// empty without any.
    pub slos: Vec<SloReport>,
    /// The OTLP export pipelines that run, one per signal; empty when none
    /// does (or without [`Observability`](crate::Observability)).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exporters: Vec<ExporterOverview>,
    /// Per route, the slowest recent requests whose traces were sampled,
    /// from the exemplar slots; see [`SlowRequests`].
    pub slow_requests: SlowRequests,
}

/// What one OTLP export pipeline has done since the start: the same counts
/// as `/metrics`' `otlp_exporter_*` series.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ExporterOverview {
    /// `spans`, `metric_points` or `log_records`.
    pub signal: &'static str,
    /// Items the collector accepted.
    pub exported: u64,
    /// Items lost to failed exports (collector down, slow, refusing).
    pub failed: u64,
    /// Items dropped at a full export queue (never for metric points).
    pub dropped: u64,
    /// Items the collector rejected in a partial success.
    pub rejected: u64,
    /// Items waiting in the queue or being sent now.
    pub queued: u64,
    /// How many items the queue holds at most (`OTEL_BSP_MAX_QUEUE_SIZE`,
    /// `OTEL_BLRP_MAX_QUEUE_SIZE`); `None` (left out of the JSON) for metric
    /// points, which have no queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
}

/// The service's identity and uptime.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ServiceOverview {
    /// `service.name`.
    pub name: String,
    /// `service.version`; empty when unknown (then left out of the JSON).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Seconds since the pipeline was set up.
    pub uptime_seconds: f64,
}

/// One value per standard window, serialized as `{"1m": .., "5m": ..,
/// "15m": ..}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PerWindow<T> {
    /// The last minute.
    #[serde(rename = "1m")]
    pub one_minute: T,
    /// The last 5 minutes.
    #[serde(rename = "5m")]
    pub five_minutes: T,
    /// The last 15 minutes.
    #[serde(rename = "15m")]
    pub fifteen_minutes: T,
}

impl<T> PerWindow<T> {
    /// From the values of [`Window::ALL`], in its order.
    pub fn from_array([one_minute, five_minutes, fifteen_minutes]: [T; 3]) -> Self {
        Self { one_minute, five_minutes, fifteen_minutes }
    }

    /// The value of `window`.
    pub fn get(&self, window: Window) -> &T {
        match window {
            Window::OneMinute => &self.one_minute,
            Window::FiveMinutes => &self.five_minutes,
            Window::FifteenMinutes => &self.fifteen_minutes,
        }
    }
}

/// The HTTP figures: all requests, and the busiest routes.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HttpOverview {
    /// Requests whose response has not ended.
    pub active_requests: u64,
    /// All requests, per window.
    pub windows: PerWindow<HttpWindowStats>,
    /// The busiest routes over the last 15 minutes, at most
    /// [`OVERVIEW_TOP_ROUTES`], busiest first.
    pub routes: Vec<RouteOverview>,
    /// Routes with requests over the last 15 minutes left out of `routes`.
    pub routes_omitted: usize,
}

/// The figures of one route label.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RouteOverview {
    /// The route template, `_unmatched` or `_overflow`.
    pub route: String,
    /// The route's requests, per window.
    pub windows: PerWindow<HttpWindowStats>,
}

/// `{"requests": 100, "errors": 10, "request_rate": 1.6, "error_ratio": 0.1,
/// "latency_seconds": {"p50": 0.01, "p95": 0.2, "p99": 0.2}}`.
impl Serialize for HttpWindowStats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Latency {
            p50: Option<f64>,
            p95: Option<f64>,
            p99: Option<f64>,
        }
        let mut s = serializer.serialize_struct("HttpWindowStats", 5)?;
        s.serialize_field("requests", &self.requests)?;
        s.serialize_field("errors", &self.errors)?;
        s.serialize_field("request_rate", &self.request_rate)?;
        s.serialize_field("error_ratio", &self.error_ratio)?;
        s.serialize_field("latency_seconds", &Latency { p50: self.p50, p95: self.p95, p99: self.p99 })?;
        s.end()
    }
}

/// In-process cache hit ratios, from a
/// [`CacheHitRatios`](crate::cache::CacheHitRatios) registry.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CacheOverview {
    /// A window warns when its ratio is below this…
    pub warn_below: f64,
    /// …with at least this many hits and misses.
    pub min_samples: u64,
    /// Every cache as a whole (`route` null) and per route, sorted by
    /// cache then route: `{"cache": "users", "route": null, "windows":
    /// {"1m": {"hits": 3, "misses": 1, "ratio": 0.75}, ..}}`.
    #[serde(serialize_with = "caches")]
    pub caches: Vec<HitRatioSnapshot>,
    /// The windows below the threshold: `{"cache": "users", "route":
    /// "/users/{id}", "window": "5m", "hits": 5, "misses": 20, "ratio": 0.2}`.
    #[serde(serialize_with = "warnings")]
    pub warnings: Vec<HitRatioWarning>,
}

#[derive(Serialize)]
struct CacheWindow {
    hits: u64,
    misses: u64,
    ratio: Option<f64>,
}

impl From<&CacheWindowStats> for CacheWindow {
    fn from(stats: &CacheWindowStats) -> Self {
        Self { hits: stats.hits, misses: stats.misses, ratio: stats.ratio }
    }
}

fn caches<S: Serializer>(caches: &[HitRatioSnapshot], serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry<'a> {
        cache: &'a str,
        route: Option<&'a str>,
        windows: PerWindow<CacheWindow>,
    }
    serializer.collect_seq(caches.iter().map(|c| Entry {
        cache: &c.cache,
        route: c.route.as_deref(),
        windows: PerWindow::from_array(c.windows.each_ref().map(CacheWindow::from)),
    }))
}

fn warnings<S: Serializer>(warnings: &[HitRatioWarning], serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry<'a> {
        cache: &'a str,
        route: Option<&'a str>,
        window: &'static str,
        #[serde(flatten)]
        stats: CacheWindow,
    }
    serializer.collect_seq(warnings.iter().map(|w| Entry {
        cache: &w.cache,
        route: w.route.as_deref(),
        window: w.stats.window.as_str(),
        stats: CacheWindow::from(&w.stats),
    }))
}

/// The status of each health group, and each check's history.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HealthOverview {
    /// The [`HealthGroup::Live`] checks.
    pub live: GroupHealth,
    /// The [`HealthGroup::Ready`] checks.
    pub ready: GroupHealth,
    /// Each check's groups, last runs and flapping, in registration order;
    /// empty when the registry hides details ([`ShowDetails::Never`]):
    /// `{"name": "db", "groups": ["ready"], "flapping": false, "changes": 0,
    /// "runs": [{"at": "...", "status": "healthy", "duration_seconds": 0.002}]}`.
    pub checks: Vec<CheckOverview>,
}

/// One check of a [`HealthOverview`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CheckOverview {
    /// The check's name.
    pub name: String,
    /// Its groups: `live`, `ready`.
    pub groups: Vec<&'static str>,
    /// Its last runs and whether it flaps.
    #[serde(flatten)]
    pub history: CheckHistory,
}

/// The aggregate status of one health group.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct GroupHealth {
    /// The worst status of the group's checks.
    pub status: HealthStatus,
    /// The checks that are not healthy, by name; empty when the registry
    /// hides details ([`ShowDetails::Never`]).
    pub failing: Vec<String>,
}

impl GroupHealth {
    fn new(report: &HealthReport, show: ShowDetails) -> Self {
        let failing = match show {
            ShowDetails::Never => Vec::new(),
            _ => report
                .checks()
                .filter(|(_, check)| check.status() != HealthStatus::Healthy)
                .map(|(name, _)| name.to_owned())
                .collect(),
        };
        Self { status: report.status(), failing }
    }
}

/// The standard Prometheus process figures, the same that `/metrics`
/// exports as `process_*` (read with `metrics-process`: on Linux from
/// `/proc/self/stat`, `/proc/self/limits` and `/proc/self/fd`). A figure
/// the platform does not give is `None`; every figure is `None` without the
/// `process-metrics` feature.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProcessOverview {
    /// Resident memory, in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory, in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// User and system CPU time, in seconds.
    pub cpu_seconds_total: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The limit of open file descriptors (0: unlimited).
    pub max_fds: Option<u64>,
    /// OS threads.
    pub threads: Option<u64>,
    /// Start of the process, in seconds since the Unix epoch.
    pub start_time_seconds: Option<u64>,
}

impl ProcessOverview {
    /// The figures of the running process, now.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::monitoring::ProcessOverview;
    ///
    /// let process = ProcessOverview::collect();
    /// # #[cfg(all(target_os = "linux", feature = "process-metrics"))]
    /// assert!(process.resident_memory_bytes.unwrap() > 0);
    /// ```
    #[must_use]
    pub fn collect() -> Self {
        #[cfg(not(feature = "process-metrics"))]
        return Self::default();
        #[cfg(feature = "process-metrics")]
        let m = metrics_process::collector::collect();
        #[cfg(feature = "process-metrics")]
        Self {
            resident_memory_bytes: m.resident_memory_bytes,
            virtual_memory_bytes: m.virtual_memory_bytes,
            cpu_seconds_total: m.cpu_seconds_total,
            open_fds: m.open_fds,
            max_fds: m.max_fds,
            threads: m.threads,
            start_time_seconds: m.start_time_seconds,
        }
    }
}

/// The HTTP section: the overall windows and the busiest routes, read
/// after one flush of the layers' buffers.
fn http(stats: &HttpStats, now: Instant) -> HttpOverview {
    crate::metrics::settled(|| http_settled(stats, now))
}

fn http_settled(stats: &HttpStats, now: Instant) -> HttpOverview {
    let windows = PerWindow::from_array(Window::ALL.map(|w| stats.window_at(w, now)));
    let mut ranked = stats.top_routes_at(Window::FifteenMinutes, usize::MAX, now);
    let routes_omitted = ranked.len().saturating_sub(OVERVIEW_TOP_ROUTES);
    ranked.truncate(OVERVIEW_TOP_ROUTES);
    let routes = ranked
        .iter()
        .map(|route| RouteOverview {
            route: route.route().to_owned(),
            windows: PerWindow::from_array(route.windows_at(now)),
        })
        .collect();
    HttpOverview { active_requests: stats.active_requests(), windows, routes, routes_omitted }
}

/// Builds the overview from the router's state.
pub(super) async fn build(state: &MonitoringState) -> Overview {
    let health = if state.health_set {
        let (live, ready) =
            tokio::join!(state.health.report(HealthGroup::Live), state.health.report(HealthGroup::Ready));
        let show = state.health.show_details();
        let checks = match show {
            ShowDetails::Never => Vec::new(),
            _ => state
                .health
                .histories()
                .into_iter()
                .map(|(name, groups, history)| CheckOverview {
                    name: name.to_owned(),
                    groups: groups.into_iter().map(HealthGroup::as_str).collect(),
                    history,
                })
                .collect(),
        };
        Some(HealthOverview {
            live: GroupHealth::new(&live, show),
            ready: GroupHealth::new(&ready, show),
            checks,
        })
    } else {
        None
    };
    // One instant for every window, after the (possibly slow) health checks.
    let now = Instant::now();
    let cache = CacheOverview {
        warn_below: state.cache.warn_below(),
        min_samples: state.cache.min_samples(),
        caches: state.cache.snapshot_at(now),
        warnings: state.cache.below_threshold_at(now),
    };
    Overview {
        service: ServiceOverview {
            name: state.info.name.clone(),
            version: state.info.version.clone(),
            uptime_seconds: now.saturating_duration_since(state.info.started).as_secs_f64(),
        },
        http: http(&state.http, now),
        cache,
        health,
        process: ProcessOverview::collect(),
        alerts: state.alerts.as_ref().map(|a| a.0.alerts_summary()).unwrap_or_default(),
        exporters: state.exporters.as_ref().map(|source| source()).unwrap_or_default(),
        slos: state.slos.as_ref().map(|s| s.report_at(now)).unwrap_or_default(),
        slow_requests: slow::build(
            &state.exemplars,
            state.trace_link.as_deref(),
            std::time::SystemTime::now(),
        ),
    }
}
