//! In-process windowed HTTP statistics: [`HttpStats`], fed by the metrics
//! layer, read by the overview, the alerts and the dashboard.

use std::{
    fmt,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    route::RouteTable,
    shard::ShardedCount,
    window::{HistogramSnapshot, Window, WindowedCounter, WindowedHistogram},
};

/// The most route labels one [`HttpStats`] keeps windows for: a guard; the
/// layers feeding it cap their routes first (see
/// `HttpMetricsLayer::max_routes`).
const MAX_ROUTES: usize = 4096;

/// The windows of one route label.
#[derive(Debug)]
pub(crate) struct RouteWindows {
    label: Box<str>,
    pub(crate) stats: WindowedStats,
}

/// Requests, errors and latencies of one route label, over the last 15
/// minutes: two [`WindowedCounter`]s of 1-second slots
/// (14.4 KB) and one [`WindowedHistogram`] of 10-second slots (47.6 KB),
/// 62 KB in all, allocated once.
///
/// Only routes are written: the figures of the whole layer are the sum of
/// its routes' (bucket counts add up exactly), computed when read, so that
/// requests on different routes never write to a shared cache line.
pub(crate) struct WindowedStats {
    requests: WindowedCounter,
    errors: WindowedCounter,
    latency: WindowedHistogram,
}

impl WindowedStats {
    pub(crate) fn new() -> Self {
        Self {
            requests: WindowedCounter::new(),
            errors: WindowedCounter::new(),
            latency: WindowedHistogram::new(),
        }
    }

    /// Counts one finished request that took `seconds` and ended at `now`:
    /// two compare-and-swaps (three for an error), no lock, no allocation.
    #[inline]
    pub(crate) fn record_at(&self, seconds: f64, error: bool, now: Instant) {
        self.requests.add_at(1, now);
        if error {
            self.errors.add_at(1, now);
        }
        self.latency.record_at(seconds, now);
    }

    /// The heap bytes of the windows, from their slot counts.
    fn heap_bytes(&self) -> usize {
        (self.requests.slots() + self.errors.slots()) * size_of::<AtomicU64>() + self.latency.heap_bytes()
    }

    /// Requests in `window` ending at `now`.
    pub(crate) fn requests_at(&self, window: Window, now: Instant) -> u64 {
        self.requests.sum_at(window.duration(), now)
    }

    /// Adds the figures of `window` ending at `now` to `sum`.
    fn add_to(&self, sum: &mut Sum, window: Window, now: Instant) {
        sum.requests = sum.requests.saturating_add(self.requests.sum_at(window.duration(), now));
        sum.errors = sum.errors.saturating_add(self.errors.sum_at(window.duration(), now));
        sum.latency.merge(&self.latency.snapshot_at(window.duration(), now));
    }
}

impl fmt::Debug for WindowedStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowedStats").finish_non_exhaustive()
    }
}

/// The figures of one or more routes over one window, being added up.
struct Sum {
    requests: u64,
    errors: u64,
    latency: HistogramSnapshot,
}

impl Sum {
    fn of<'a>(routes: impl IntoIterator<Item = &'a WindowedStats>, window: Window, now: Instant) -> Self {
        let mut sum = Self { requests: 0, errors: 0, latency: HistogramSnapshot::empty() };
        for route in routes {
            route.add_to(&mut sum, window, now);
        }
        sum
    }
}

/// How long a layer's figures have been counting at `now`, at least 1 s.
fn age_at(created: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(created).max(Duration::from_secs(1))
}

/// Requests, errors, rate and latency quantiles of one window.
///
/// Read from [`HttpStats`] or [`RouteStats`]. Errors are the requests the
/// metrics give an `error_type`: an error status (5xx by default, see
/// [`StatusClassifier`](crate::StatusClassifier)), a service error, a
/// panic, a timeout, a failed body or a client that went away.
///
/// # Example
///
/// ```
/// use tower_observability::{metrics::HttpMetricsLayer, window::Window};
///
/// let stats = HttpMetricsLayer::new().http_stats();
/// let last_minute = stats.window(Window::OneMinute);
/// assert_eq!((last_minute.requests, last_minute.errors), (0, 0));
/// assert_eq!(last_minute.error_ratio, None);
/// assert_eq!(last_minute.p95, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct HttpWindowStats {
    /// The window.
    pub window: Window,
    /// Finished requests in the window: the last `window` to the second
    /// (the oldest second may be missing, see [`crate::window`]).
    pub requests: u64,
    /// Finished requests that failed, in the same window.
    pub errors: u64,
    /// Requests per second: `requests` divided by the window's length, or
    /// by the time since the layer was built when that is shorter (at least
    /// 1 s), so that a fresh process does not read as an idle one.
    pub request_rate: f64,
    /// `errors / requests`, from 0 to 1; `None` without requests.
    pub error_ratio: Option<f64>,
    /// Estimated median duration, in seconds, from the request to the end
    /// of its response body; `None` without requests. Within
    /// [`QUANTILE_RELATIVE_ERROR`](crate::window::QUANTILE_RELATIVE_ERROR) (11.5 %)
    /// of the exact quantile between 61 µs and 101.6 s; over the last 50
    /// to 60 s for the 1-minute window (see [`WindowedHistogram`]).
    pub p50: Option<f64>,
    /// Estimated 95th percentile duration, in seconds, as `p50`.
    pub p95: Option<f64>,
    /// Estimated 99th percentile duration, in seconds, as `p50`.
    pub p99: Option<f64>,
}

impl HttpWindowStats {
    /// The figures of `requests` requests of which `errors` failed over the
    /// whole of `window`: the rate and the error ratio, no latency
    /// quantiles (set them with [`with_p50`](Self::with_p50) and its
    /// siblings). For alert inputs built by hand and for tests.
    ///
    /// ```
    /// use tower_observability::{metrics::HttpWindowStats, window::Window};
    ///
    /// let w = HttpWindowStats::from_counts(Window::OneMinute, 120, 6).with_p95(0.25);
    /// assert_eq!((w.request_rate, w.error_ratio, w.p95), (2.0, Some(0.05), Some(0.25)));
    /// ```
    #[must_use]
    pub fn from_counts(window: Window, requests: u64, errors: u64) -> Self {
        Self {
            window,
            requests,
            errors,
            request_rate: requests as f64 / window.duration().as_secs_f64(),
            error_ratio: (requests > 0).then(|| errors.min(requests) as f64 / requests as f64),
            p50: None,
            p95: None,
            p99: None,
        }
    }

    /// Sets the median duration, in seconds.
    #[must_use]
    pub fn with_p50(mut self, seconds: f64) -> Self {
        self.p50 = Some(seconds);
        self
    }

    /// Sets the 95th percentile duration, in seconds.
    #[must_use]
    pub fn with_p95(mut self, seconds: f64) -> Self {
        self.p95 = Some(seconds);
        self
    }

    /// Sets the 99th percentile duration, in seconds.
    #[must_use]
    pub fn with_p99(mut self, seconds: f64) -> Self {
        self.p99 = Some(seconds);
        self
    }

    fn new(window: Window, sum: &Sum, age: Duration) -> Self {
        let Sum { requests, errors, ref latency } = *sum;
        let seconds = window.duration().min(age).as_secs_f64();
        Self {
            window,
            requests,
            errors,
            request_rate: requests as f64 / seconds,
            error_ratio: (requests > 0).then(|| errors.min(requests) as f64 / requests as f64),
            p50: latency.quantile(0.50),
            p95: latency.quantile(0.95),
            p99: latency.quantile(0.99),
        }
    }
}

/// A handle on the windowed HTTP statistics of one
/// [`HttpMetricsLayer`](super::HttpMetricsLayer): request rate, error
/// ratio and latency quantiles over the last 1, 5 and 15 minutes, for the
/// whole layer and per route, and the requests under way.
///
/// Obtained with [`HttpMetricsLayer::http_stats`](super::HttpMetricsLayer::http_stats),
/// [`ObservabilityLayer::http_stats`](crate::ObservabilityLayer::http_stats)
/// or `MonitoringRouter::http_stats`; clones are cheap and read the same
/// figures. Every request the layer measures is counted, when its response
/// body ends (or is dropped, or fails), under the same route label as its
/// Prometheus series: the template, `_unmatched`, or `_overflow` beyond the
/// layer's route cap. Durations are in seconds, rates in requests per
/// second.
///
/// Per route label the windows take 62 KB, allocated when the route is
/// first seen (see [`WindowedHistogram`] for the layout); routes are capped
/// by [`HttpMetricsLayer::max_routes`](super::HttpMetricsLayer::max_routes).
/// The figures of the whole layer are the sum of its routes', computed when
/// read: exact (bucket counts add up), free for the requests, and about
/// 10 600 atomic loads per route for the three windows. The handle is the
/// layer's state, apart from its settings: a handle taken before a setter
/// (route cap, time to first byte) reads the figures of the layer after it.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use tower::ServiceExt;
/// use tower_observability::{ObservabilityLayer, window::Window};
///
/// # #[tokio::main]
/// # async fn main() {
/// let layer = ObservabilityLayer::new();
/// let stats = layer.http_stats();
/// let app = Router::new().route("/users/{id}", get(|| async { "user" })).layer(layer);
///
/// let res = app.oneshot(http::Request::get("/users/7").body(axum::body::Body::empty()).unwrap()).await.unwrap();
/// axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap(); // the request ends with its body
///
/// let overall = stats.window(Window::OneMinute);
/// assert_eq!((overall.requests, overall.errors, overall.error_ratio), (1, 0, Some(0.0)));
/// assert!(overall.p99.unwrap() < 1.0);
/// let users = stats.route("/users/{id}").unwrap();
/// assert_eq!(users.window(Window::FifteenMinutes).requests, 1);
/// assert_eq!(stats.active_requests(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct HttpStats {
    inner: Arc<Inner>,
}

struct Inner {
    routes: RouteTable<RouteWindows>,
    /// When the windows began counting.
    created: Instant,
    /// Off: finished requests are not counted in the windows.
    recording: AtomicBool,
    /// Also told of each request the windows count (the SLOs), once set.
    observer: OnceLock<RequestObserver>,
    /// Requests and calls under way, per thread: every one changes it
    /// twice.
    active: ShardedCount,
}

/// Told of each finished request the windows count: its route label, its
/// duration in seconds, whether it failed, and when it ended.
pub(crate) type RequestObserver = Arc<dyn Fn(&str, f64, bool, Instant) + Send + Sync>;

impl HttpStats {
    /// Empty figures.
    pub(crate) fn new() -> Self {
        let make = |label: &str| RouteWindows { label: label.into(), stats: WindowedStats::new() };
        Self {
            inner: Arc::new(Inner {
                routes: RouteTable::new(MAX_ROUTES, make),
                created: Instant::now(),
                recording: AtomicBool::new(true),
                observer: OnceLock::new(),
                active: ShardedCount::new(),
            }),
        }
    }

    /// Counts a request (or gRPC call) as under way.
    #[inline]
    pub(crate) fn start_request(&self) {
        self.inner.active.add(1);
    }

    /// Counts a request as over; pairs with [`start_request`](Self::start_request).
    #[inline]
    pub(crate) fn end_request(&self) {
        self.inner.active.add(-1);
    }

    /// Tells `observer` of every request the windows count from now on;
    /// `false` when an observer was set already (it stays).
    #[cfg(feature = "monitoring")]
    pub(crate) fn set_observer(&self, observer: RequestObserver) -> bool {
        self.inner.observer.set(observer).is_ok()
    }

    /// Counts a finished request of route `label` in its windows and tells
    /// the observer, while recording is on.
    #[inline]
    pub(crate) fn record(
        &self,
        windows: &WindowedStats,
        label: &str,
        seconds: f64,
        error: bool,
        at: Instant,
    ) {
        if !self.is_recording() {
            return;
        }
        windows.record_at(seconds, error, at);
        if let Some(observer) = self.inner.observer.get() {
            observer(label, seconds, error, at);
        }
    }

    /// Turns the windows on or off at run time (they are on by default).
    /// Off, finished requests are not counted in the windows (the overview,
    /// the alert rules and the dashboard see none), while the Prometheus
    /// metrics and the active-request count go on; on again, counting
    /// resumes. A non-essential part an operator can shed under load. It
    /// applies to requests as their thread's buffer is written (see
    /// [`flush`](super::flush)): those that ended in the 100 ms before the
    /// switch may be counted by the new setting.
    ///
    /// ```
    /// use tower_observability::ObservabilityLayer;
    ///
    /// let stats = ObservabilityLayer::new().http_stats();
    /// stats.set_recording(false);
    /// assert!(!stats.is_recording());
    /// ```
    pub fn set_recording(&self, on: bool) {
        self.inner.recording.store(on, Ordering::Relaxed);
    }

    /// Whether finished requests are counted in the windows.
    #[inline]
    #[must_use]
    pub fn is_recording(&self) -> bool {
        self.inner.recording.load(Ordering::Relaxed)
    }

    /// The route labels with windows, and an estimate of the heap bytes
    /// their windows hold, computed from the slots each window allocates
    /// (62 KB per route label).
    ///
    /// ```
    /// use tower_observability::ObservabilityLayer;
    ///
    /// let (routes, bytes) = ObservabilityLayer::new().http_stats().memory();
    /// assert_eq!((routes, bytes), (0, 0));
    /// ```
    #[must_use]
    pub fn memory(&self) -> (usize, usize) {
        let routes = self.all_routes();
        let bytes = routes.iter().map(|r| r.label.len() + r.stats.heap_bytes()).sum();
        (routes.len(), bytes)
    }

    /// The windows of route label `label`, made on first use.
    pub(crate) fn windows_of(&self, label: &str) -> Arc<RouteWindows> {
        let template = (label != crate::route::UNMATCHED_ROUTE).then_some(label);
        self.inner
            .routes
            .get(template, |label| RouteWindows { label: label.into(), stats: WindowedStats::new() })
    }

    /// Every route's windows, with what the layers buffered written in.
    fn all_routes(&self) -> Vec<Arc<RouteWindows>> {
        super::flush();
        self.inner.routes.all()
    }

    fn created(&self) -> Instant {
        self.inner.created
    }

    /// Requests whose response has not ended yet, now: the in-process
    /// twin of `http_server_active_requests`.
    #[must_use]
    pub fn active_requests(&self) -> u64 {
        u64::try_from(self.inner.active.sum()).unwrap_or(0)
    }

    /// The figures of all requests over `window`, now.
    #[must_use]
    pub fn window(&self, window: Window) -> HttpWindowStats {
        self.window_at(window, Instant::now())
    }

    /// The figures of all requests over the `window` that ends at `now`, a
    /// reading of the monotonic clock.
    #[must_use]
    pub fn window_at(&self, window: Window, now: Instant) -> HttpWindowStats {
        let routes = self.all_routes();
        let sum = Sum::of(routes.iter().map(|route| &route.stats), window, now);
        HttpWindowStats::new(window, &sum, age_at(self.created(), now))
    }

    /// The figures of all requests over every window of [`Window::ALL`] (1,
    /// 5, 15 minutes), now.
    #[must_use]
    pub fn windows(&self) -> [HttpWindowStats; 3] {
        self.windows_at(Instant::now())
    }

    /// The figures of all requests over every window of [`Window::ALL`],
    /// at `now`.
    #[must_use]
    pub fn windows_at(&self, now: Instant) -> [HttpWindowStats; 3] {
        let routes = self.all_routes();
        let age = age_at(self.created(), now);
        Window::ALL.map(|window| {
            let sum = Sum::of(routes.iter().map(|route| &route.stats), window, now);
            HttpWindowStats::new(window, &sum, age)
        })
    }

    /// The latency distribution of all requests over the `window` that
    /// ends at `now`, for other quantiles than p50, p95 and p99.
    #[must_use]
    pub fn latency_at(&self, window: Window, now: Instant) -> HistogramSnapshot {
        let routes = self.all_routes();
        Sum::of(routes.iter().map(|route| &route.stats), window, now).latency
    }

    /// The figures of one route label (a template, `_unmatched` or
    /// `_overflow`), or `None` when no request was given that label yet.
    #[must_use]
    pub fn route(&self, route: &str) -> Option<RouteStats> {
        super::flush();
        self.inner.routes.find(route).map(|series| RouteStats { series, stats: self.clone() })
    }

    /// Every route label measured so far, sorted by name.
    #[must_use]
    pub fn routes(&self) -> Vec<RouteStats> {
        let mut routes: Vec<RouteStats> =
            self.all_routes().into_iter().map(|series| RouteStats { series, stats: self.clone() }).collect();
        routes.sort_by(|a, b| a.route().cmp(b.route()));
        routes
    }

    /// The routes with the most requests over `window` ending at `now`,
    /// busiest first (ties by name), leaving out routes without requests in
    /// it; at most `n`.
    #[must_use]
    pub fn top_routes_at(&self, window: Window, n: usize, now: Instant) -> Vec<RouteStats> {
        let mut ranked: Vec<(u64, RouteStats)> = self
            .routes()
            .into_iter()
            .map(|route| (route.series.stats.requests_at(window, now), route))
            .filter(|(requests, _)| *requests > 0)
            .collect();
        ranked.sort_by(|(a, ra), (b, rb)| b.cmp(a).then_with(|| ra.route().cmp(rb.route())));
        ranked.into_iter().take(n).map(|(_, route)| route).collect()
    }
}

impl fmt::Debug for HttpStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStats").field("active_requests", &self.active_requests()).finish_non_exhaustive()
    }
}

/// The windowed figures of one route label, from [`HttpStats::route`].
///
/// # Example
///
/// ```
/// use tower_observability::{metrics::HttpMetricsLayer, window::Window};
///
/// let stats = HttpMetricsLayer::new().http_stats();
/// assert!(stats.route("/users/{id}").is_none(), "no request yet");
/// ```
#[derive(Clone)]
pub struct RouteStats {
    series: Arc<RouteWindows>,
    stats: HttpStats,
}

impl RouteStats {
    /// The route label: a template, `_unmatched` or `_overflow`.
    #[must_use]
    pub fn route(&self) -> &str {
        &self.series.label
    }

    /// The route's figures over `window`, now.
    #[must_use]
    pub fn window(&self, window: Window) -> HttpWindowStats {
        self.window_at(window, Instant::now())
    }

    /// The route's figures over the `window` that ends at `now`.
    #[must_use]
    pub fn window_at(&self, window: Window, now: Instant) -> HttpWindowStats {
        super::flush();
        self.flushed_window_at(window, now)
    }

    /// The route's figures over every window of [`Window::ALL`], at `now`.
    #[must_use]
    pub fn windows_at(&self, now: Instant) -> [HttpWindowStats; 3] {
        super::flush();
        Window::ALL.map(|window| self.flushed_window_at(window, now))
    }

    /// [`window_at`](Self::window_at) once the buffers are flushed.
    fn flushed_window_at(&self, window: Window, now: Instant) -> HttpWindowStats {
        let sum = Sum::of([&self.series.stats], window, now);
        HttpWindowStats::new(window, &sum, age_at(self.stats.created(), now))
    }

    /// The route's latency distribution over the `window` that ends at `now`.
    #[must_use]
    pub fn latency_at(&self, window: Window, now: Instant) -> HistogramSnapshot {
        super::flush();
        self.series.stats.latency.snapshot_at(window.duration(), now)
    }
}

impl fmt::Debug for RouteStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteStats").field("route", &self.route()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::{
        metrics::HttpMetricsLayer,
        route::{HttpRoute, OVERFLOW_ROUTE, RouteTable},
        window::QUANTILE_RELATIVE_ERROR,
    };

    const SEC: Duration = Duration::from_secs(1);

    fn record(route: &RouteWindows, seconds: f64, error: bool, at: Instant) {
        route.stats.record_at(seconds, error, at);
    }

    fn close(got: Option<f64>, exact: f64) -> bool {
        got.is_some_and(|got| (got - exact).abs() / exact <= QUANTILE_RELATIVE_ERROR)
    }

    #[test]
    fn routes_and_the_layer_are_counted_per_window() {
        let stats = HttpStats::new();
        let t0 = stats.created();
        let (a, b) = (stats.windows_of("/a"), stats.windows_of("/b"));
        // 10 minutes ago: 30 slow failures on /b. Now: 90 fast successes on
        // /a and 10 slower failures on /b.
        for _ in 0..30 {
            record(&b, 1.5, true, t0);
        }
        let now = t0 + 10 * 60 * SEC;
        for i in 0..100 {
            if i < 90 { record(&a, 0.010, false, now) } else { record(&b, 0.200, true, now) }
        }
        let read = now + Duration::from_millis(500);

        let one = stats.window_at(Window::OneMinute, read);
        assert_eq!((one.requests, one.errors, one.error_ratio), (100, 10, Some(0.1)));
        assert!((one.request_rate - 100.0 / 60.0).abs() < 1e-9);
        assert!(close(one.p50, 0.010) && close(one.p95, 0.200) && close(one.p99, 0.200), "{one:?}");
        let fifteen = stats.window_at(Window::FifteenMinutes, read);
        assert_eq!((fifteen.requests, fifteen.errors), (130, 40));
        assert!((fifteen.request_rate - 130.0 / 600.5).abs() < 1e-9, "divided by the layer's age");
        assert!(close(fifteen.p99, 1.5));
        assert_eq!(stats.window_at(Window::FiveMinutes, read).requests, 100);

        let route_b = stats.route("/b").unwrap();
        let b1 = route_b.window_at(Window::OneMinute, read);
        assert_eq!((b1.requests, b1.errors, b1.error_ratio), (10, 10, Some(1.0)));
        assert!(close(b1.p50, 0.200));
        assert_eq!(route_b.windows_at(read).map(|w| w.requests), [10, 10, 40]);
        assert_eq!(route_b.latency_at(Window::FifteenMinutes, read).count(), 40);
        assert_eq!(stats.latency_at(Window::OneMinute, read).count(), 100);

        let top: Vec<String> =
            stats.top_routes_at(Window::OneMinute, 5, read).iter().map(|r| r.route().to_owned()).collect();
        assert_eq!(top, ["/a", "/b"]);
        let top: Vec<String> = stats
            .top_routes_at(Window::FifteenMinutes, 1, read)
            .iter()
            .map(|r| r.route().to_owned())
            .collect();
        assert_eq!(top, ["/a"], "90 beats 40");

        // Sixteen minutes on, everything has aged out.
        let later = now + 16 * 60 * SEC;
        let empty = stats.window_at(Window::FifteenMinutes, later);
        assert_eq!((empty.requests, empty.error_ratio, empty.p50), (0, None, None));
        assert!(stats.top_routes_at(Window::FifteenMinutes, 5, later).is_empty());
    }

    #[test]
    fn unmatched_and_overflow_appear_once_used() {
        let stats = HttpStats {
            inner: Arc::new(Inner {
                routes: RouteTable::new(1, |label| RouteWindows {
                    label: label.into(),
                    stats: WindowedStats::new(),
                }),
                created: Instant::now(),
                recording: AtomicBool::new(true),
                observer: OnceLock::new(),
                active: ShardedCount::new(),
            }),
        };
        assert!(stats.routes().is_empty());
        assert!(stats.route(UNMATCHED_ROUTE_NAME).is_none());
        stats.windows_of("/a");
        stats.windows_of(UNMATCHED_ROUTE_NAME);
        let overflow = stats.windows_of("/b");
        record(&overflow, 0.1, false, Instant::now());
        let names: Vec<String> = stats.routes().iter().map(|r| r.route().to_owned()).collect();
        assert_eq!(names, ["/a", OVERFLOW_ROUTE, UNMATCHED_ROUTE_NAME], "by name");
        assert_eq!(stats.route(OVERFLOW_ROUTE).unwrap().window(Window::OneMinute).requests, 1);
        assert!(stats.route("/b").is_none(), "counted as _overflow");
    }

    const UNMATCHED_ROUTE_NAME: &str = crate::route::UNMATCHED_ROUTE;

    #[test]
    fn a_young_layer_rates_over_its_age() {
        let stats = HttpStats::new();
        let t0 = stats.created();
        let a = stats.windows_of("/a");
        for _ in 0..20 {
            record(&a, 0.01, false, t0 + 5 * SEC);
        }
        let w = stats.window_at(Window::FiveMinutes, t0 + 10 * SEC);
        assert!((w.request_rate - 2.0).abs() < 1e-9, "{w:?}");
        let w = stats.window_at(Window::OneMinute, t0 + Duration::from_millis(5_100));
        assert!((w.request_rate - 20.0 / 5.1).abs() < 1e-9, "{w:?}");
        // Never divided by less than a second.
        let early = HttpStats::new();
        let t = early.created();
        record(&early.windows_of("/a"), 0.01, false, t);
        assert_eq!(early.window_at(Window::OneMinute, t).request_rate, 1.0);
    }

    #[tokio::test]
    async fn the_layer_feeds_the_windows_and_counts_active_requests() {
        let layer = HttpMetricsLayer::new();
        let stats = layer.http_stats();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
        let service = ServiceBuilder::new().layer(layer).service_fn(move |req: Request<_>| {
            let released = released.clone();
            async move {
                if req.uri().path() == "/slow" {
                    let rx = released.lock().await.take().unwrap();
                    rx.await.unwrap();
                }
                let status = if req.uri().path() == "/fail" { 503 } else { 200 };
                let res =
                    Response::builder().status(status).body(Full::new(bytes::Bytes::from("ok"))).unwrap();
                Ok::<_, Infallible>(res)
            }
        });
        let request = |path: &str, route: &str| {
            let mut req = Request::get(path).body(Full::new(bytes::Bytes::new())).unwrap();
            req.extensions_mut().insert(HttpRoute::new(route));
            req
        };
        let slow = tokio::spawn(service.clone().oneshot(request("/slow", "/slow")));
        while stats.active_requests() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(stats.active_requests(), 1);
        for (path, n) in [("/ok", 3), ("/fail", 1)] {
            for _ in 0..n {
                let res = service.clone().oneshot(request(path, path)).await.unwrap();
                assert_eq!(stats.active_requests(), 2, "until the body ends");
                res.into_body().collect().await.unwrap();
            }
        }
        assert_eq!(stats.active_requests(), 1);
        release.send(()).unwrap();
        let res = slow.await.unwrap().unwrap();
        drop(res);
        assert_eq!(stats.active_requests(), 0, "a dropped body ends the request");

        let w = stats.window(Window::OneMinute);
        assert_eq!((w.requests, w.errors), (5, 2), "the failure and the dropped body");
        assert_eq!(stats.route("/fail").unwrap().window(Window::OneMinute).errors, 1);
        assert_eq!(stats.route("/ok").unwrap().window(Window::OneMinute).error_ratio, Some(0.0));
        assert!(format!("{stats:?}").contains("active_requests: 0"));
    }

    #[test]
    fn route_memory_is_bounded() {
        let counters = 2 * (900 * 8 + size_of::<WindowedCounter>());
        let histogram = crate::window::HISTOGRAM_BUCKETS * (90 * 8 + size_of::<WindowedCounter>());
        assert!(counters + histogram + size_of::<WindowedStats>() <= 64 * 1024);
    }

    #[test]
    fn traits() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<HttpStats>();
        assert_send_sync::<RouteStats>();
        assert_send_sync::<HttpWindowStats>();
    }
}
