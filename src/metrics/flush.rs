//! Flushing what the metrics part buffers per thread: the finished requests
//! of each route and the active-request counts, written into the `metrics`
//! recorder and the in-process windows in batches (see [`flush`]).

use std::{
    cell::Cell,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    thread,
    time::Duration,
};

/// How often the flushing thread writes what waits in the buffers.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// State whose per-thread buffers are written out by [`flush`].
pub(crate) trait Flush: Send + Sync {
    /// Writes out what is buffered, holding the lock of each part while it
    /// writes it, so that a concurrent flush waits until what it took is
    /// written. So what it writes into (the recorder's handles, the
    /// windows' observer) must never call [`flush`] (it would wait for
    /// itself).
    fn flush(&self);
}

/// The buffered state alive in the process, and whether the flushing
/// thread runs.
struct Registry {
    live: Vec<Weak<dyn Flush>>,
    thread_running: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { live: Vec::new(), thread_running: false });

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes `state` flushed by [`flush`] and, every [`FLUSH_INTERVAL`], by
/// the flushing thread (started here when it does not run) while it lives.
pub(crate) fn register(state: Weak<dyn Flush>) {
    let mut registry = registry();
    registry.live.push(state);
    if !registry.thread_running {
        let started = thread::Builder::new().name("metrics-flush".to_owned()).spawn(run);
        match started {
            Ok(_) => registry.thread_running = true,
            Err(err) => {
                // Without the thread, buffers are still written when 32
                // requests gathered on a thread, on reads and on scrapes.
                tracing::warn!(error = %err, "could not start the metrics-flush thread");
            }
        }
    }
}

/// The flushing thread: flushes every [`FLUSH_INTERVAL`], and ends once
/// no buffered state is left (it is started again by the next). Its list
/// of live state is kept from one flush to the next; what it allocates
/// while it runs is the list of a gRPC method table's methods, once a
/// flush per table.
fn run() {
    /// Marks the thread as not running when a flush panics (a recorder's
    /// handle may), so that the next registration starts another.
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            if thread::panicking() {
                registry().thread_running = false;
            }
        }
    }
    let _running = Running;
    let mut live = Vec::new();
    loop {
        thread::sleep(FLUSH_INTERVAL);
        if !flush_live(&mut live) {
            let mut registry = registry();
            registry.live.retain(|state| state.strong_count() > 0);
            if registry.live.is_empty() {
                registry.thread_running = false;
                return;
            }
        }
    }
}

/// Flushes the live state, listed in `live` (left empty); `false` when
/// there was none.
fn flush_live(live: &mut Vec<Arc<dyn Flush>>) -> bool {
    {
        let mut registry = registry();
        registry.live.retain(|state| state.strong_count() > 0);
        live.extend(registry.live.iter().filter_map(Weak::upgrade));
    }
    let any = !live.is_empty();
    for state in live.iter() {
        state.flush();
    }
    live.clear();
    any
}

/// Writes what the crate's metrics layers buffered into the `metrics`
/// recorder and the in-process windows, now.
///
/// Under load, a layer does not write each finished request into the
/// shared histograms, gauges and windows at once: each worker thread
/// gathers up to 32 requests in a buffer of its own, written out in one
/// batch, so that two workers never write the same cache line per request
/// (the recorder's histograms are the hot spot: a value pushed by two cores
/// in turn costs ten times one pushed by one). What waits in a buffer is
/// written out:
///
/// - when 32 requests have gathered on a thread;
/// - every 100 ms, by a thread named `metrics-flush` (it runs while a layer
///   lives);
/// - before the crate renders or reads the figures: `/metrics` and the
///   other authorized routes of the
///   [`MonitoringRouter`](crate::monitoring::MonitoringRouter),
///   [`render_openmetrics`](crate::monitoring::render_openmetrics), the
///   readers of [`HttpStats`](super::HttpStats), the
///   [`TestKit`](crate::testing::TestKit), and
///   [`Observability`](crate::Observability)'s shutdown (before the last
///   OTLP export and the last Pushgateway push);
/// - when a layer is dropped;
/// - when this is called.
///
/// So a Prometheus scrape of the crate's `/metrics` sees every request that
/// ended before it. What renders without the crate lags at most 100 ms: a
/// `metrics_exporter_prometheus::PrometheusHandle` you render yourself
/// (call this first in a test that asserts right after a request), the
/// periodic OTLP metrics export and the periodic Pushgateway push. Each
/// request keeps its end time (the windows count it in the second it
/// ended); the exemplar of a bucket is the request written last, which is
/// not always the one that ended last. When nothing waits, a call locks
/// the registry and each shard of each route once, and each gRPC method
/// table and each shard of its methods.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use axum::{Router, body::Body, routing::get};
/// use tower::ServiceExt;
/// use tower_observability::{ObservabilityLayer, recorder::MetricsRecorder};
///
/// let recorder = tower_observability::prometheus_builder().build_recorder();
/// let handle = recorder.handle();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .layer(ObservabilityLayer::new().recorder(MetricsRecorder::new(recorder)));
/// app.oneshot(http::Request::new(Body::empty())).await.unwrap();
///
/// tower_observability::metrics::flush();
/// assert!(handle.render().contains("http_server_request_duration_seconds_count"));
/// # });
/// ```
pub fn flush() {
    if !SETTLED.get() {
        flush_live(&mut Vec::new());
    }
}

thread_local! {
    /// Inside [`settled`]: the thread flushed already, reads skip theirs.
    static SETTLED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `read` after one [`flush`], with the flushes of the reads inside
/// it skipped: for a reader that reads many figures in one go (the
/// overview reads each of its top routes). `read` must not wait for other
/// threads' requests to end.
#[cfg(any(feature = "monitoring", test))]
pub(crate) fn settled<T>(read: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SETTLED.set(false);
        }
    }
    if SETTLED.get() {
        return read();
    }
    flush();
    SETTLED.set(true);
    let _reset = Reset;
    read()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counted(AtomicUsize);

    impl Flush for Counted {
        fn flush(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn live_state_is_flushed_by_the_call_and_by_the_thread_dead_state_is_forgotten() {
        let state = Arc::new(Counted(AtomicUsize::new(0)));
        let weak: Weak<dyn Flush> = Arc::downgrade(&(state.clone() as Arc<dyn Flush>));
        register(weak.clone());
        flush();
        assert!(state.0.load(Ordering::Relaxed) >= 1, "flushed by the call");
        let before = state.0.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while state.0.load(Ordering::Relaxed) == before {
            assert!(std::time::Instant::now() < deadline, "the thread never flushed");
            thread::sleep(Duration::from_millis(10));
        }
        drop(state);
        flush();
        assert!(!registry().live.iter().any(|live| live.ptr_eq(&weak)), "pruned at the next flush");
    }

    #[test]
    fn reads_inside_a_settled_read_skip_their_flush_and_the_mark_is_cleared() {
        assert!(!SETTLED.get());
        let nested = settled(|| {
            let outer = SETTLED.get();
            (outer, settled(|| SETTLED.get()))
        });
        assert_eq!(nested, (true, true));
        assert!(!SETTLED.get(), "cleared after the outermost read");
        let unwound = std::panic::catch_unwind(|| settled(|| panic!("a read panics")));
        assert!(unwound.is_err());
        assert!(!SETTLED.get(), "cleared when a read panics");
    }
}
