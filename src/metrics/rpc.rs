//! RPC server metrics for gRPC calls, in the OpenTelemetry RPC semantic
//! conventions v1.44.0 ("Semantic conventions for RPC metrics"): handles
//! built once per method and status, and the per-method active count.
//!
//! As the HTTP routes' (see [`buffer`](super::buffer)), a method's finished
//! calls wait in a buffer of the worker's thread and are written into the
//! histograms and windows in batches (by the call that fills the buffer,
//! by the flushing thread every 100 ms, before every read), and its active
//! count is a per-thread count given to the gauge on each flush: the
//! workers serving one method do not write the same cache lines per call.
//! The handles are still made (registered with the recorder in scope) by
//! the call that needs them first.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak},
    time::Instant,
};

use ::metrics::{Gauge, Histogram, Label, SharedString};

use super::{
    buffer::Batches,
    exemplar::{Exemplars, SampledIds, SeriesExemplars},
    flush::{self, Flush},
    series::publish,
    stats::{HttpStats, RouteWindows},
};
use crate::{
    classify::ErrorType,
    grpc::Code,
    route::{OVERFLOW_ROUTE, RouteTable, UNMATCHED_ROUTE},
    semconv::{RPC_METHOD_OTHER, RPC_SYSTEM_GRPC},
    shard::{ShardedCount, lock},
};

/// `rpc.server.call.duration`: seconds from the call to the end of its
/// response stream (its trailers), or to its cancellation (histogram;
/// semconv buckets, as `http.server.request.duration`). Labels
/// `rpc_system_name`, `rpc_method`, `rpc_response_status_code`, and
/// `error_type` for the calls that failed (see [`crate::grpc`]).
pub const RPC_SERVER_CALL_DURATION: &str = "rpc_server_call_duration_seconds";

/// Calls under way: from the call to the end of its response stream
/// (gauge; labels `rpc_system_name`, `rpc_method`). Not an OTel semconv
/// metric (v1.44.0 defines none for RPC): the counterpart of
/// `http_server_active_requests`, for streams held open.
pub const RPC_SERVER_ACTIVE_CALLS: &str = "rpc_server_active_calls";

/// Registers the `# HELP` text and unit of the RPC metrics with the
/// installed recorder.
pub(super) fn describe() {
    use ::metrics::{Unit, describe_gauge, describe_histogram};
    describe_histogram!(
        RPC_SERVER_CALL_DURATION,
        Unit::Seconds,
        "CallDuration of incoming RPCs, to the end of the response stream."
    );
    describe_gauge!(RPC_SERVER_ACTIVE_CALLS, Unit::Count, "Number of incoming RPCs under way.");
}

/// The RPC metrics of one layer, per method: at most the layer's route cap
/// of methods, and `_OTHER`.
pub(crate) type RpcMethods = RouteTable<RpcMethod>;

/// A new table of at most `max` methods, flushed by [`flush`](super::flush)
/// while it lives.
pub(crate) fn methods(max: usize, stats: &HttpStats, exemplars: Option<Exemplars>) -> Arc<RpcMethods> {
    let table =
        Arc::new(RouteTable::new(max, |label| RpcMethod::new(label, stats.clone(), exemplars.clone())));
    let weak: Weak<dyn Flush> = Arc::downgrade(&table) as Weak<dyn Flush>;
    flush::register(weak);
    table
}

impl Flush for RpcMethods {
    fn flush(&self) {
        for method in self.all() {
            method.flush();
        }
    }
}

/// A finished call waiting in a buffer: what its series and windows get.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seconds: f64,
    /// Its status code (the index of its histogram in `by_code`).
    code: Code,
    error: bool,
    /// When it ended.
    at: Instant,
    /// Its span's ids, when sampled and its series keeps exemplars.
    exemplar: Option<SampledIds>,
}

/// The duration histogram of one label set, and its exemplar slots.
#[derive(Debug)]
struct CallDuration {
    histogram: Histogram,
    exemplars: Option<Arc<SeriesExemplars>>,
}

impl CallDuration {
    /// Records a call, and its exemplar when `sampled` gives its span's ids
    /// (asked only when the series keeps exemplars).
    #[inline]
    fn record(&self, seconds: f64, at: Instant, sampled: impl Fn() -> Option<SampledIds>) {
        self.histogram.record(seconds);
        if let Some(exemplars) = &self.exemplars
            && let Some(ids) = sampled()
        {
            exemplars.record(seconds, ids, at);
        }
    }
}

/// The metrics of one method (`rpc_method` label).
#[derive(Debug)]
pub(crate) struct RpcMethod {
    method: SharedString,
    active: OnceLock<Gauge>,
    /// Calls under way, per thread; given to `active` on each flush.
    under_way: ShardedCount,
    /// What `active` was given so far.
    published: Mutex<i64>,
    /// The finished calls waiting to be written.
    batches: Batches<Entry>,
    /// The duration of calls whose error is the one their code gives,
    /// one per code.
    by_code: [OnceLock<CallDuration>; 17],
    /// Calls with another error (a mark, a service error): rare.
    marked: RwLock<HashMap<(Code, ErrorType), CallDuration>>,
    windows: OnceLock<Arc<RouteWindows>>,
    stats: HttpStats,
    exemplars: Option<Exemplars>,
}

impl RpcMethod {
    pub(crate) fn new(label: &str, stats: HttpStats, exemplars: Option<Exemplars>) -> Self {
        let label =
            if label == UNMATCHED_ROUTE || label == OVERFLOW_ROUTE { RPC_METHOD_OTHER } else { label };
        Self {
            method: SharedString::from(label.to_owned()),
            active: OnceLock::new(),
            under_way: ShardedCount::new(),
            published: Mutex::new(0),
            batches: Batches::new(),
            by_code: Default::default(),
            marked: RwLock::default(),
            windows: OnceLock::new(),
            stats,
            exemplars,
        }
    }

    /// The `rpc_method` label.
    #[inline]
    pub(crate) fn label(&self) -> &str {
        &self.method
    }

    #[inline]
    fn windows(&self) -> &RouteWindows {
        self.windows.get_or_init(|| self.stats.windows_of(&self.method))
    }

    #[inline]
    fn active(&self) -> &Gauge {
        self.active.get_or_init(|| {
            ::metrics::gauge!(
                RPC_SERVER_ACTIVE_CALLS,
                "rpc_system_name" => RPC_SYSTEM_GRPC,
                "rpc_method" => self.method.clone(),
            )
        })
    }

    /// Counts a call of the method as under way: registers its gauge
    /// (with the recorder in scope) on first use.
    #[inline]
    pub(crate) fn start(&self) {
        self.active();
        self.under_way.add(1);
        self.stats.start_request();
    }

    /// Counts a call as over; pairs with [`start`](Self::start).
    #[inline]
    pub(crate) fn end(&self) {
        self.under_way.add(-1);
        self.stats.end_request();
    }

    /// Records a finished call of `seconds` that ended `at` with `code` and
    /// `error`, in its series and windows, and its exemplar when `sampled`.
    #[inline]
    pub(crate) fn record(
        &self,
        seconds: f64,
        code: Code,
        error: Option<ErrorType>,
        at: Instant,
        sampled: impl Fn() -> Option<SampledIds>,
    ) {
        let by_code = code.is_server_error().then_some(ErrorType::Grpc(code));
        match error {
            marked @ Some(mark) if marked != by_code => {
                // Rare (a mark, a service error): at once.
                self.windows().stats.record_at(seconds, true, at);
                self.record_marked(seconds, code, mark, at, sampled);
            }
            _ => {
                let duration = self.by_code[code as usize].get_or_init(|| self.histogram(code, by_code));
                let exemplar = if duration.exemplars.is_some() { sampled() } else { None };
                self.windows();
                let entry = Entry { seconds, code, error: error.is_some(), at, exemplar };
                self.batches.push(entry, |entries| self.write(entries));
            }
        }
    }

    /// Writes `entries` into the histograms and windows (with the shard's
    /// lock held, see [`Batches`]).
    fn write(&self, entries: &[Entry]) {
        let windows = self.windows();
        for entry in entries.iter() {
            // Made by the call, before it was buffered.
            if let Some(duration) = self.by_code[entry.code as usize].get() {
                duration.record(entry.seconds, entry.at, || entry.exemplar);
            }
            windows.stats.record_at(entry.seconds, entry.error, entry.at);
        }
    }

    /// Writes the buffered calls, and gives the gauge the calls under way.
    fn flush(&self) {
        self.batches.drain(|entries| self.write(entries));
        if let Some(gauge) = self.active.get() {
            publish(gauge, self.under_way.sum(), &mut lock(&self.published));
        }
    }

    #[cold]
    fn record_marked(
        &self,
        seconds: f64,
        code: Code,
        error: ErrorType,
        at: Instant,
        sampled: impl Fn() -> Option<SampledIds>,
    ) {
        if let Some(duration) = self.marked.read().unwrap_or_else(PoisonError::into_inner).get(&(code, error))
        {
            return duration.record(seconds, at, sampled);
        }
        let mut marked = self.marked.write().unwrap_or_else(PoisonError::into_inner);
        marked
            .entry((code, error))
            .or_insert_with(|| self.histogram(code, Some(error)))
            .record(seconds, at, sampled);
    }

    fn histogram(&self, code: Code, error: Option<ErrorType>) -> CallDuration {
        let mut labels = vec![
            Label::new("rpc_system_name", RPC_SYSTEM_GRPC),
            Label::new("rpc_method", self.method.clone()),
            Label::new("rpc_response_status_code", code.as_str()),
        ];
        if let Some(error) = error {
            labels.push(Label::new("error_type", error.as_str().to_owned()));
        }
        CallDuration {
            exemplars: self.exemplars.as_ref().and_then(|e| e.series_of(RPC_SERVER_CALL_DURATION, &labels)),
            histogram: ::metrics::histogram!(RPC_SERVER_CALL_DURATION, labels),
        }
    }
}

impl Drop for RpcMethod {
    /// Writes what waits, so that a dropped layer leaves a shared
    /// recorder's series and gauges right.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;
    use crate::metrics::buffer::BUFFERED_REQUESTS;

    fn ids(n: u8) -> SampledIds {
        SampledIds {
            trace_id: opentelemetry::trace::TraceId::from_bytes([n; 16]),
            span_id: opentelemetry::trace::SpanId::from_bytes([n; 8]),
        }
    }

    #[test]
    fn calls_are_recorded_by_method_status_and_error() {
        let registry = Exemplars::new();
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || {
            let table = methods(4, &HttpStats::new(), Some(registry.clone()));
            let say = table.get(Some("demo.Greeter/SayHello"), |l| {
                RpcMethod::new(l, HttpStats::new(), Some(registry.clone()))
            });
            let other = table.get(None, |_| unreachable!("fixed"));
            let now = Instant::now();
            say.start();
            say.record(0.5, Code::NotFound, None, now, || None);
            say.end();
            say.record(0.5, Code::Unavailable, Some(ErrorType::Grpc(Code::Unavailable)), now, || {
                Some(ids(1))
            });
            say.record(0.5, Code::Internal, Some(ErrorType::Panic), now, || Some(ids(2)));
            other.record(0.1, Code::Unimplemented, Some(ErrorType::Grpc(Code::Unimplemented)), now, || None);
            // What waits in the thread's buffers.
            table.flush();
        });
        let exemplar_of = |status: &str| {
            let found = registry.latest(RPC_SERVER_CALL_DURATION, &[("rpc_response_status_code", status)]);
            found.iter().map(|e| (e.trace_id, e.span_id, e.value)).collect::<Vec<_>>()
        };
        assert_eq!(exemplar_of("UNAVAILABLE"), [(ids(1).trace_id, ids(1).span_id, 0.5)]);
        assert_eq!(exemplar_of("INTERNAL"), [(ids(2).trace_id, ids(2).span_id, 0.5)], "a marked error too");
        assert!(exemplar_of("NOT_FOUND").is_empty(), "not sampled");
        assert!(exemplar_of("UNIMPLEMENTED").is_empty(), "not sampled");
        let mut seen: Vec<(String, String)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let (kind, name) = (key.kind(), key.key().name().to_owned());
                let mut labels: Vec<String> =
                    key.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
                labels.sort();
                let value = match value {
                    DebugValue::Histogram(v) => format!("{kind:?} n={}", v.len()),
                    DebugValue::Gauge(v) => format!("{kind:?} {}", v.into_inner()),
                    DebugValue::Counter(v) => format!("{kind:?} {v}"),
                };
                (format!("{name}{{{}}}", labels.join(",")), value)
            })
            .collect();
        seen.sort();
        let expected = [
            ("rpc_server_active_calls{rpc_method=demo.Greeter/SayHello,rpc_system_name=grpc}", "Gauge 0"),
            (
                "rpc_server_call_duration_seconds{error_type=UNAVAILABLE,rpc_method=demo.Greeter/SayHello,rpc_response_status_code=UNAVAILABLE,rpc_system_name=grpc}",
                "Histogram n=1",
            ),
            (
                "rpc_server_call_duration_seconds{error_type=UNIMPLEMENTED,rpc_method=_OTHER,rpc_response_status_code=UNIMPLEMENTED,rpc_system_name=grpc}",
                "Histogram n=1",
            ),
            (
                "rpc_server_call_duration_seconds{error_type=panic,rpc_method=demo.Greeter/SayHello,rpc_response_status_code=INTERNAL,rpc_system_name=grpc}",
                "Histogram n=1",
            ),
            (
                "rpc_server_call_duration_seconds{rpc_method=demo.Greeter/SayHello,rpc_response_status_code=NOT_FOUND,rpc_system_name=grpc}",
                "Histogram n=1",
            ),
        ];
        let expected: Vec<(String, String)> =
            expected.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert_eq!(seen, expected);
    }

    /// The `rpc_server_call_duration_seconds` values recorded since the last
    /// snapshot, and the active gauge, in a snapshot of the recorder.
    fn counted(snapshotter: &metrics_util::debugging::Snapshotter) -> (usize, f64) {
        let (mut calls, mut active) = (0, f64::NAN);
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            match value {
                DebugValue::Histogram(v) if key.key().name() == RPC_SERVER_CALL_DURATION => calls += v.len(),
                DebugValue::Gauge(v) if key.key().name() == RPC_SERVER_ACTIVE_CALLS => {
                    active = v.into_inner()
                }
                _ => {}
            }
        }
        (calls, active)
    }

    #[test]
    fn calls_wait_in_the_thread_buffer_until_one_fills_it_or_a_flush() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || {
            // Not registered with the flushing thread, whose tick would
            // write the buffers at any moment of the test.
            let table: RpcMethods = RouteTable::new(4, |l| RpcMethod::new(l, HttpStats::new(), None));
            let say = table.get(Some("demo.Greeter/SayHello"), |l| RpcMethod::new(l, HttpStats::new(), None));
            let now = Instant::now();
            for _ in 0..BUFFERED_REQUESTS - 1 {
                say.start();
                say.record(0.01, Code::Ok, None, now, || None);
            }
            // The calls' histogram and gauge are registered, at zero.
            assert_eq!(counted(&snapshotter), (0, 0.0), "buffered, not written");
            say.start();
            say.record(0.01, Code::Ok, None, now, || None);
            assert_eq!(
                counted(&snapshotter).0,
                BUFFERED_REQUESTS,
                "the call that fills the buffer writes it"
            );
            say.record(0.01, Code::Ok, None, now, || None);
            table.flush();
            // (A snapshot of this recorder takes the histograms' values and
            // the gauges': one call since the last, the gauge at 32.)
            assert_eq!(counted(&snapshotter), (1, BUFFERED_REQUESTS as f64));
            for _ in 0..BUFFERED_REQUESTS {
                say.end();
            }
            table.flush();
            // The snapshot took the gauge's value (32): the flush gives it
            // the change since, all calls over.
            assert_eq!(
                counted(&snapshotter).1,
                -(BUFFERED_REQUESTS as f64),
                "the gauge follows the calls under way"
            );
        });
    }

    #[test]
    fn every_call_of_many_threads_is_written_once() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let stats = HttpStats::new();
        ::metrics::with_local_recorder(&recorder, || {
            let table = methods(4, &stats, None);
            let say = table.get(Some("demo.Greeter/SayHello"), |l| RpcMethod::new(l, stats.clone(), None));
            // The handles, made with the recorder in scope (the threads'
            // calls would make theirs in no recorder).
            say.start();
            say.record(0.01, Code::Ok, None, Instant::now(), || None);
            say.record(
                0.01,
                Code::Unavailable,
                Some(ErrorType::Grpc(Code::Unavailable)),
                Instant::now(),
                || None,
            );
            say.end();
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    let say = &say;
                    scope.spawn(move || {
                        for i in 0..1000 {
                            say.start();
                            // One call in ten fails (with its code's error: buffered too).
                            let (code, error) = if i % 10 == 0 {
                                (Code::Unavailable, Some(ErrorType::Grpc(Code::Unavailable)))
                            } else {
                                (Code::Ok, None)
                            };
                            say.record(0.01, code, error, Instant::now(), || None);
                            say.end();
                        }
                    });
                }
            });
            table.flush();
        });
        assert_eq!(counted(&snapshotter), (4002, 0.0));
        let window = stats.window(crate::window::Window::OneMinute);
        assert_eq!(
            (window.requests, window.errors),
            (4002, 401),
            "the windows count every call, and the failed"
        );
    }

    #[test]
    fn a_dropped_table_writes_what_waits() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || {
            let table = methods(4, &HttpStats::new(), None);
            let say = table.get(Some("demo.Greeter/SayHello"), |l| RpcMethod::new(l, HttpStats::new(), None));
            say.start();
            say.record(0.01, Code::Ok, None, Instant::now(), || None);
            drop((say, table));
        });
        assert_eq!(counted(&snapshotter), (1, 1.0));
    }
}
