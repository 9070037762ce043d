//! Visibility into the span pipeline: what was exported, what failed, what
//! was dropped, and logs that say so once, then in periodic summaries.
//!
//! The SDK's batch processor drops spans when its queue is full and keeps
//! the count to itself. [`GuardedProcessor`] reserves a queue slot for each
//! span before handing it over and refuses (and counts) the span when none
//! is left, so the batch processor's own queue never overflows and every
//! drop is counted here. [`CountingExporter`] frees the slots when a batch
//! has been sent, or has failed.

use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use opentelemetry::Context;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{Span, SpanData, SpanExporter, SpanProcessor},
};

/// Spans sent to the collector (counter).
pub const OTLP_EXPORTER_SPANS_EXPORTED: &str = "otlp_exporter_spans_exported_total";
/// Spans whose export failed: collector down, slow or refusing (counter).
pub const OTLP_EXPORTER_SPANS_FAILED: &str = "otlp_exporter_spans_failed_total";
/// Spans dropped because the export queue was full (counter).
pub const OTLP_EXPORTER_SPANS_DROPPED: &str = "otlp_exporter_spans_dropped_total";
/// Spans waiting in the export queue or being sent (gauge).
pub const OTLP_EXPORTER_QUEUE_SPANS: &str = "otlp_exporter_queue_spans";

/// How often repeated failures or drops are summarised in the logs.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Registers the `# HELP` text of the pipeline metrics.
pub(crate) fn describe() {
    use ::metrics::{describe_counter, describe_gauge};
    describe_counter!(OTLP_EXPORTER_SPANS_EXPORTED, "Spans sent to the OTLP collector.");
    describe_counter!(OTLP_EXPORTER_SPANS_FAILED, "Spans whose export to the OTLP collector failed.");
    describe_counter!(OTLP_EXPORTER_SPANS_DROPPED, "Spans dropped because the OTLP export queue was full.");
    describe_gauge!(OTLP_EXPORTER_QUEUE_SPANS, "Spans waiting in the OTLP export queue or being sent.");
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

/// State shared by the processor guard and the exporter wrapper.
pub(crate) struct Pipeline {
    pending: AtomicUsize,
    capacity: usize,
    exported: ::metrics::Counter,
    failed: ::metrics::Counter,
    dropped: ::metrics::Counter,
    queue: ::metrics::Gauge,
    failures: Mutex<Episode>,
    drops: Mutex<Episode>,
    exported_total: AtomicU64,
    failed_total: AtomicU64,
    dropped_total: AtomicU64,
}

/// The figures of the span export pipeline, for the monitoring status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpanExportStats {
    /// Spans waiting in the export queue or being sent.
    pub queued: u64,
    /// The queue's capacity (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048 by default).
    pub capacity: u64,
    /// Spans sent.
    pub exported: u64,
    /// Spans whose export failed.
    pub failed: u64,
    /// Spans dropped because the queue was full.
    pub dropped: u64,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline whose queue holds `capacity` spans (the batch processor's
    /// `max_queue_size`). Call after the metrics recorder is installed.
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        describe();
        Arc::new(Self {
            pending: AtomicUsize::new(0),
            capacity: capacity.max(1),
            exported: ::metrics::counter!(OTLP_EXPORTER_SPANS_EXPORTED),
            failed: ::metrics::counter!(OTLP_EXPORTER_SPANS_FAILED),
            dropped: ::metrics::counter!(OTLP_EXPORTER_SPANS_DROPPED),
            queue: ::metrics::gauge!(OTLP_EXPORTER_QUEUE_SPANS),
            failures: Mutex::default(),
            drops: Mutex::default(),
            exported_total: AtomicU64::new(0),
            failed_total: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
        })
    }

    /// The pipeline's figures now.
    pub(crate) fn stats(&self) -> SpanExportStats {
        SpanExportStats {
            queued: self.pending.load(Ordering::Relaxed) as u64,
            capacity: self.capacity as u64,
            exported: self.exported_total.load(Ordering::Relaxed),
            failed: self.failed_total.load(Ordering::Relaxed),
            dropped: self.dropped_total.load(Ordering::Relaxed),
        }
    }

    /// Takes a queue slot; `false` when the queue is full.
    fn reserve(&self) -> bool {
        let reserved = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1))
            .is_ok();
        if reserved {
            self.queue.increment(1.0);
        }
        reserved
    }

    fn release(&self, spans: usize) {
        // Never below zero, even if the SDK hands back more than we counted.
        let _ =
            self.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(spans)));
        self.queue.decrement(spans as f64);
    }

    fn on_dropped(&self) {
        self.dropped.increment(1);
        self.dropped_total.fetch_add(1, Ordering::Relaxed);
        let report = self.drops.lock().unwrap_or_else(PoisonError::into_inner).record(1, Instant::now());
        if let Some((_, spans, first)) = report {
            if first {
                tracing::warn!(
                    target: "tower_observability::telemetry",
                    capacity = self.capacity,
                    "the span export queue is full: dropping spans (counted in {OTLP_EXPORTER_SPANS_DROPPED}); \
                     further drops are summarised every 60 s"
                );
            } else {
                tracing::warn!(target: "tower_observability::telemetry", spans, "spans dropped in the last 60 s: the export queue is full");
            }
        }
    }

    fn on_exported(&self, spans: usize) {
        self.exported.increment(spans as u64);
        self.exported_total.fetch_add(spans as u64, Ordering::Relaxed);
        if let Some(failures) = self.failures.lock().unwrap_or_else(PoisonError::into_inner).recover() {
            tracing::info!(target: "tower_observability::telemetry", failures, "span export recovered");
        }
        // Drops go on while exports succeed (the queue is full, not the
        // collector down): they are summarised every 60 s, never restarted
        // by a success, which would log the first-drop warning over again.
    }

    fn on_failed(&self, spans: usize, error: &dyn fmt::Display) {
        self.failed.increment(spans as u64);
        self.failed_total.fetch_add(spans as u64, Ordering::Relaxed);
        let report =
            self.failures.lock().unwrap_or_else(PoisonError::into_inner).record(spans as u64, Instant::now());
        if let Some((batches, spans, first)) = report {
            if first {
                tracing::warn!(
                    target: "tower_observability::telemetry",
                    %error,
                    spans,
                    "span export failed; spans are lost while the collector is unreachable \
                     (counted in {OTLP_EXPORTER_SPANS_FAILED}); further failures are summarised every 60 s"
                );
            } else {
                tracing::warn!(target: "tower_observability::telemetry", %error, batches, spans, "span exports failed in the last 60 s");
            }
        }
    }
}

/// Refuses spans beyond the export queue's capacity, counting them, and
/// hands the rest to the batch processor.
#[derive(Debug)]
pub(crate) struct GuardedProcessor<P> {
    inner: P,
    pipeline: Arc<Pipeline>,
}

impl<P> GuardedProcessor<P> {
    pub(crate) fn new(inner: P, pipeline: Arc<Pipeline>) -> Self {
        Self { inner, pipeline }
    }
}

impl<P: SpanProcessor> SpanProcessor for GuardedProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pipeline.reserve() {
            self.inner.on_end(span);
        } else {
            self.pipeline.on_dropped();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
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
        let result = self.inner.export(batch).await;
        self.pipeline.release(spans);
        match &result {
            Ok(()) => self.pipeline.on_exported(spans),
            Err(error) => self.pipeline.on_failed(spans, error),
        }
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
        let pipeline = Pipeline::new(3);
        assert!((0..3).all(|_| pipeline.reserve()));
        assert!(!pipeline.reserve(), "a fourth span has no slot");
        pipeline.release(2);
        assert!(pipeline.reserve());
        pipeline.release(100);
        assert_eq!(pipeline.pending.load(Ordering::Relaxed), 0);
    }
}
