//! Visibility into the export pipelines: what was exported, what failed,
//! what was dropped, what the collector rejected (an OTLP partial success),
//! and logs that say so once, then in periodic summaries, then a recovery
//! line.
//!
//! The SDK's batch processors drop spans and log records when their queue
//! is full and keep the count to themselves. The crate's span processor
//! ([`span_batch`](super::span_batch)) and [`logs_otlp`](super::logs_otlp)'s
//! processor reserve a queue slot for each item before queueing it and
//! refuse (and count) it when none is left, so no queue overflows and every
//! drop is counted here. The counting exporters free the slots when a batch has
//! been sent, or has failed. One [`Pipeline`] per signal; the metrics
//! pipeline has no queue (the periodic reader collects), only exports.

use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{SpanData, SpanExporter},
};

/// Spans sent to the collector (counter).
pub const OTLP_EXPORTER_SPANS_EXPORTED: &str = "otlp_exporter_spans_exported_total";
/// Spans whose export failed: collector down, slow or refusing (counter).
pub const OTLP_EXPORTER_SPANS_FAILED: &str = "otlp_exporter_spans_failed_total";
/// Spans dropped because the export queue was full (counter).
pub const OTLP_EXPORTER_SPANS_DROPPED: &str = "otlp_exporter_spans_dropped_total";
/// Spans waiting in the export queue or being sent (gauge).
pub const OTLP_EXPORTER_QUEUE_SPANS: &str = "otlp_exporter_queue_spans";
/// Spans the collector received and rejected: the `rejected_spans` of an
/// OTLP partial success (counter).
pub const OTLP_EXPORTER_SPANS_REJECTED: &str = "otlp_exporter_spans_rejected_total";

/// Log records sent to the collector (counter).
pub const OTLP_EXPORTER_LOG_RECORDS_EXPORTED: &str = "otlp_exporter_log_records_exported_total";
/// Log records whose export failed (counter).
pub const OTLP_EXPORTER_LOG_RECORDS_FAILED: &str = "otlp_exporter_log_records_failed_total";
/// Log records dropped because the export queue was full (counter).
pub const OTLP_EXPORTER_LOG_RECORDS_DROPPED: &str = "otlp_exporter_log_records_dropped_total";
/// Log records the collector rejected (OTLP partial success) (counter).
pub const OTLP_EXPORTER_LOG_RECORDS_REJECTED: &str = "otlp_exporter_log_records_rejected_total";
/// Log records waiting in the export queue or being sent (gauge).
pub const OTLP_EXPORTER_QUEUE_LOG_RECORDS: &str = "otlp_exporter_queue_log_records";

/// Metric data points sent to the collector (counter).
pub const OTLP_EXPORTER_METRIC_POINTS_EXPORTED: &str = "otlp_exporter_metric_points_exported_total";
/// Metric data points whose export failed (counter). With cumulative
/// temporality the next export sends the totals again; with delta, these
/// increments are lost.
pub const OTLP_EXPORTER_METRIC_POINTS_FAILED: &str = "otlp_exporter_metric_points_failed_total";
/// Metric data points the collector rejected (OTLP partial success) (counter).
pub const OTLP_EXPORTER_METRIC_POINTS_REJECTED: &str = "otlp_exporter_metric_points_rejected_total";

/// The names one signal's pipeline counts under, and how its logs call
/// what it carries.
#[derive(Debug)]
pub(crate) struct Signal {
    exported: &'static str,
    failed: &'static str,
    dropped: Option<&'static str>,
    rejected: &'static str,
    queue: Option<&'static str>,
    /// What one item is called in log lines: `span`, `log record`, `metric point`.
    pub(crate) noun: &'static str,
    /// The signal's name in the overview: `spans`, `log_records`, `metric_points`.
    #[cfg_attr(not(feature = "monitoring"), allow(dead_code))]
    pub(crate) name: &'static str,
}

/// The span pipeline's names.
pub(crate) const SPANS: Signal = Signal {
    exported: OTLP_EXPORTER_SPANS_EXPORTED,
    failed: OTLP_EXPORTER_SPANS_FAILED,
    dropped: Some(OTLP_EXPORTER_SPANS_DROPPED),
    rejected: OTLP_EXPORTER_SPANS_REJECTED,
    queue: Some(OTLP_EXPORTER_QUEUE_SPANS),
    noun: "span",
    name: "spans",
};

/// The log pipeline's names.
pub(crate) const LOG_RECORDS: Signal = Signal {
    exported: OTLP_EXPORTER_LOG_RECORDS_EXPORTED,
    failed: OTLP_EXPORTER_LOG_RECORDS_FAILED,
    dropped: Some(OTLP_EXPORTER_LOG_RECORDS_DROPPED),
    rejected: OTLP_EXPORTER_LOG_RECORDS_REJECTED,
    queue: Some(OTLP_EXPORTER_QUEUE_LOG_RECORDS),
    noun: "log record",
    name: "log_records",
};

/// The metric pipeline's names: no queue, no drops.
pub(crate) const METRIC_POINTS: Signal = Signal {
    exported: OTLP_EXPORTER_METRIC_POINTS_EXPORTED,
    failed: OTLP_EXPORTER_METRIC_POINTS_FAILED,
    dropped: None,
    rejected: OTLP_EXPORTER_METRIC_POINTS_REJECTED,
    queue: None,
    noun: "metric point",
    name: "metric_points",
};

/// How often repeated failures or drops are summarised in the logs.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Registers the `# HELP` text of a signal's pipeline metrics.
fn describe(signal: &Signal) {
    use ::metrics::{describe_counter, describe_gauge};
    let noun = signal.noun;
    describe_counter!(signal.exported, format!("OTLP {noun}s sent to the collector."));
    describe_counter!(signal.failed, format!("OTLP {noun}s whose export to the collector failed."));
    describe_counter!(signal.rejected, format!("OTLP {noun}s the collector rejected in a partial success."));
    if let Some(dropped) = signal.dropped {
        describe_counter!(dropped, format!("OTLP {noun}s dropped because the export queue was full."));
    }
    if let Some(queue) = signal.queue {
        describe_gauge!(queue, format!("OTLP {noun}s waiting in the export queue or being sent."));
    }
}

/// A problem that is logged once, then summarised.
#[derive(Debug, Default)]
struct Episode {
    /// Events since the last log line.
    unreported: u64,
    /// Spans concerned since the last log line.
    spans: u64,
    /// When the last log line was written; `None` while all is well.
    last_logged: Option<Instant>,
    /// Events in the whole episode.
    total: u64,
}

impl Episode {
    /// Records `spans` more; returns what to log now, if anything: the
    /// first event, then a summary at most every `SUMMARY_INTERVAL`.
    fn record(&mut self, spans: u64, now: Instant) -> Option<(u64, u64, bool)> {
        self.unreported += 1;
        self.spans += spans;
        self.total += 1;
        match self.last_logged {
            Some(at) if now.duration_since(at) < SUMMARY_INTERVAL => None,
            previous => {
                let report = (self.unreported, self.spans, previous.is_none());
                self.unreported = 0;
                self.spans = 0;
                self.last_logged = Some(now);
                Some(report)
            }
        }
    }

    /// Ends the episode; returns how many events it had, if it had any.
    fn recover(&mut self) -> Option<u64> {
        self.last_logged?;
        let total = self.total;
        *self = Self::default();
        Some(total)
    }
}

/// State shared by a signal's processor (which reserves queue slots) and
/// its counting exporter (which frees them).
pub(crate) struct Pipeline {
    signal: &'static Signal,
    pending: AtomicUsize,
    capacity: usize,
    exported: ::metrics::Counter,
    failed: ::metrics::Counter,
    dropped: ::metrics::Counter,
    rejected: ::metrics::Counter,
    queue: ::metrics::Gauge,
    failures: Mutex<Episode>,
    drops: Mutex<Episode>,
    rejections: Mutex<Episode>,
    /// The same counts, readable: exported, failed, dropped, rejected.
    totals: [AtomicU64; 4],
}

/// A pipeline's counts since the start, for the overview and the
/// monitoring status.
#[cfg_attr(not(feature = "monitoring"), allow(dead_code))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PipelineTotals {
    pub(crate) signal: &'static str,
    pub(crate) exported: u64,
    pub(crate) failed: u64,
    pub(crate) dropped: u64,
    pub(crate) rejected: u64,
    pub(crate) queued: u64,
    /// The queue's size (`OTEL_BSP_MAX_QUEUE_SIZE`,
    /// `OTEL_BLRP_MAX_QUEUE_SIZE`); `None` for a signal without a queue.
    pub(crate) capacity: Option<u64>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("signal", &self.signal.noun)
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

const TARGET: &str = "tower_observability::telemetry";

impl Pipeline {
    /// A pipeline for `signal` whose queue holds `capacity` items
    /// (`OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BLRP_MAX_QUEUE_SIZE`; at least 1: a
    /// size of 0 is refused when the settings are read). Call after the
    /// metrics recorder is installed.
    pub(crate) fn new(signal: &'static Signal, capacity: usize) -> Arc<Self> {
        describe(signal);
        let counter = |name: Option<&'static str>| {
            name.map_or_else(::metrics::Counter::noop, |n| ::metrics::counter!(n))
        };
        Arc::new(Self {
            signal,
            pending: AtomicUsize::new(0),
            capacity,
            exported: ::metrics::counter!(signal.exported),
            failed: ::metrics::counter!(signal.failed),
            dropped: counter(signal.dropped),
            rejected: ::metrics::counter!(signal.rejected),
            queue: signal.queue.map_or_else(::metrics::Gauge::noop, |n| ::metrics::gauge!(n)),
            failures: Mutex::default(),
            drops: Mutex::default(),
            rejections: Mutex::default(),
            totals: Default::default(),
        })
    }

    /// The counts since the start.
    #[cfg_attr(not(feature = "monitoring"), allow(dead_code))]
    pub(crate) fn totals(&self) -> PipelineTotals {
        let [exported, failed, dropped, rejected] = self.totals.each_ref().map(|t| t.load(Ordering::Relaxed));
        PipelineTotals {
            signal: self.signal.name,
            exported,
            failed,
            dropped,
            rejected,
            queued: self.pending() as u64,
            capacity: self.signal.queue.map(|_| self.capacity as u64),
        }
    }

    fn add(&self, index: usize, n: u64) {
        self.totals[index].fetch_add(n, Ordering::Relaxed);
    }

    /// Items waiting in the queue or being sent: what a shutdown that
    /// times out abandons.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes a queue slot; how many are taken with it, `None` when the
    /// queue is full.
    pub(crate) fn reserve(&self) -> Option<usize> {
        let previous = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1))
            .ok()?;
        self.queue.increment(1.0);
        Some(previous + 1)
    }

    /// How many items the queue holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn release(&self, items: usize) {
        // Never below zero, even if the SDK hands back more than we counted.
        let _ =
            self.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(items)));
        self.queue.decrement(items as f64);
    }

    pub(crate) fn on_dropped(&self) {
        self.dropped.increment(1);
        self.add(2, 1);
        let report = self.drops.lock().unwrap_or_else(PoisonError::into_inner).record(1, Instant::now());
        let noun = self.signal.noun;
        if let Some((_, items, first)) = report {
            if first {
                tracing::warn!(
                    target: TARGET,
                    capacity = self.capacity,
                    "the {noun} export queue is full: dropping {noun}s (counted in {}); \
                     further drops are summarised every 60 s",
                    self.signal.dropped.unwrap_or_default(),
                );
            } else {
                tracing::warn!(target: TARGET, items, "{noun}s dropped in the last 60 s: the export queue is full");
            }
        }
    }

    /// Counts the outcome of one export of `items`, as the exporter
    /// answered it; a partial success (`rejected`, the collector's
    /// `rejected_*` count and message) is an answered export.
    pub(crate) fn on_export(&self, items: usize, result: &OTelSdkResult, rejected: Option<(u64, String)>) {
        match result {
            Ok(()) => self.on_exported(items, rejected),
            Err(error) => self.on_failed(items, error),
        }
    }

    fn on_exported(&self, items: usize, rejected: Option<(u64, String)>) {
        let noun = self.signal.noun;
        let rejected_items = rejected.as_ref().map_or(0, |(n, _)| *n);
        self.exported.increment((items as u64).saturating_sub(rejected_items));
        self.add(0, (items as u64).saturating_sub(rejected_items));
        if let Some(failures) = self.failures.lock().unwrap_or_else(PoisonError::into_inner).recover() {
            tracing::info!(target: TARGET, failures, "{noun} export recovered");
        }
        let mut rejections = self.rejections.lock().unwrap_or_else(PoisonError::into_inner);
        match rejected {
            Some((count, message)) => {
                self.rejected.increment(count);
                self.add(3, count);
                if let Some((exports, total, first)) = rejections.record(count, Instant::now()) {
                    if first {
                        tracing::warn!(
                            target: TARGET,
                            rejected = count,
                            collector_message = %message,
                            "the collector rejected {noun}s (an OTLP partial success; counted in {}); \
                             further rejections are summarised every 60 s",
                            self.signal.rejected,
                        );
                    } else {
                        tracing::warn!(target: TARGET, exports, rejected = total, collector_message = %message, "{noun}s rejected by the collector in the last 60 s");
                    }
                }
            }
            None => {
                if let Some(exports) = rejections.recover() {
                    tracing::info!(target: TARGET, exports, "the collector accepts every {noun} again");
                }
            }
        }
        // Drops go on while exports succeed (the queue is full, not the
        // collector down): they are summarised every 60 s, never restarted
        // by a success, which would log the first-drop warning over again.
    }

    fn on_failed(&self, items: usize, error: &dyn fmt::Display) {
        self.failed.increment(items as u64);
        self.add(1, items as u64);
        let noun = self.signal.noun;
        let report =
            self.failures.lock().unwrap_or_else(PoisonError::into_inner).record(items as u64, Instant::now());
        if let Some((batches, items, first)) = report {
            if first {
                tracing::warn!(
                    target: TARGET,
                    %error,
                    items,
                    "{noun} export failed; {noun}s are lost while the collector is unreachable \
                     (counted in {}); further failures are summarised every 60 s",
                    self.signal.failed,
                );
            } else {
                tracing::warn!(target: TARGET, %error, batches, items, "{noun} exports failed in the last 60 s");
            }
        }
    }
}

/// Counts what the inner exporter sends and fails, freeing queue slots.
#[derive(Debug)]
pub(crate) struct CountingExporter<E> {
    inner: E,
    pipeline: Arc<Pipeline>,
}

impl<E> CountingExporter<E> {
    pub(crate) fn new(inner: E, pipeline: Arc<Pipeline>) -> Self {
        Self { inner, pipeline }
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let (result, rejected) = super::sdk_events::watch_partial_success(self.inner.export(batch)).await;
        self.pipeline.release(spans);
        self.pipeline.on_export(spans, &result, rejected);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_log_once_then_summarise() {
        let mut episode = Episode::default();
        let t0 = Instant::now();
        assert_eq!(episode.record(5, t0), Some((1, 5, true)));
        assert_eq!(episode.record(5, t0 + Duration::from_secs(1)), None);
        assert_eq!(episode.record(5, t0 + Duration::from_secs(30)), None);
        assert_eq!(episode.record(2, t0 + Duration::from_secs(61)), Some((3, 12, false)));
        assert_eq!(episode.recover(), Some(4));
        assert_eq!(episode.recover(), None, "nothing to report when all is well");
        assert_eq!(episode.record(1, t0 + Duration::from_secs(62)), Some((1, 1, true)));
    }

    #[test]
    fn the_queue_is_bounded() {
        let pipeline = Pipeline::new(&SPANS, 3);
        assert!((0..3).all(|_| pipeline.reserve().is_some()));
        assert!(pipeline.reserve().is_none(), "a fourth span has no slot");
        pipeline.release(2);
        assert!(pipeline.reserve().is_some());
        pipeline.release(100);
        assert_eq!(pipeline.pending.load(Ordering::Relaxed), 0);
    }
}
