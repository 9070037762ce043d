//! The batch span processor of the crate's span pipeline: finished spans
//! wait in per-thread shards, and a thread of its own exports them in
//! batches.
//!
//! The OTel SDK's `BatchSpanProcessor` sends each finished span through one
//! bounded channel that every worker writes (its tail, its slot stamps)
//! and counts it in an atomic the export thread also writes: under load
//! from two workers, each span moved cache lines between the cores (issue
//! 19; BENCHMARKS.md, "The span pipeline"). Here a worker appends the span
//! to the `Vec` of its own shard under an uncontended lock; the export
//! thread swaps each shard's `Vec` for an empty one (in constant time,
//! holding the lock for no longer), gathers them and exports them, at most
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans per call, every
//! `OTEL_BSP_SCHEDULE_DELAY`, or as soon as a batch is queued, on a
//! [`force_flush`](SpanProcessor::force_flush) and at shutdown, as the
//! SDK's processor does. The exporter runs on that thread, its future
//! driven by `futures_executor::block_on`, in a telemetry-suppressed
//! context (as the SDK's thread).
//!
//! How many spans wait is bounded by the pipeline's queue
//! ([`Pipeline::reserve`]): past it spans are dropped and counted, never
//! waited for. An exporter that panics fails its batch (counted as
//! failed, its slots freed) and the thread goes on; after a slow export
//! the thread still waits a whole delay before the next pass, so a failing
//! collector is not retried back to back. A span that ends after shutdown
//! is not exported (as with the SDK's processor) and holds no slot.

use std::{
    fmt,
    panic::{self, AssertUnwindSafe},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use opentelemetry::Context;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{Span, SpanData, SpanExporter, SpanProcessor},
};

use super::pipeline::Pipeline;
use crate::shard::{self, Padded, lock};

/// `OTEL_BSP_SCHEDULE_DELAY`'s default (OTel SDK environment variables).
const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_millis(5000);
/// The shortest pause between two passes (`OTEL_BSP_SCHEDULE_DELAY=0`
/// would make the thread spin).
const MIN_SCHEDULE_DELAY: Duration = Duration::from_millis(1);
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`'s default.
const DEFAULT_BATCH: usize = 512;
/// How long [`SpanProcessor::force_flush`] waits for the export thread (the
/// SDK's processor waits as long).
const FORCE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the export thread is told.
enum Control {
    /// A batch is queued: export now.
    Export,
    /// Export what is queued and reply with the last failed export's
    /// error, or `Ok`.
    Flush(mpsc::SyncSender<OTelSdkResult>),
    /// Export what is queued, shut the exporter down, reply, and end.
    Shutdown(mpsc::SyncSender<OTelSdkResult>),
    SetResource(Resource),
}

/// What the workers and the export thread share.
struct Shared {
    shards: Box<[Padded<Mutex<Vec<SpanData>>>]>,
    pipeline: Arc<Pipeline>,
    /// Spans per export call.
    batch: usize,
    /// An [`Control::Export`] was sent and not yet taken.
    export_sent: AtomicBool,
    shut_down: AtomicBool,
}

/// The batch span processor: see the [module](self).
pub(crate) struct ShardedBatchProcessor {
    shared: Arc<Shared>,
    control: mpsc::Sender<Control>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl fmt::Debug for ShardedBatchProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedBatchProcessor")
            .field("shards", &self.shared.shards.len())
            .field("batch", &self.shared.batch)
            .field("pipeline", &self.shared.pipeline)
            .finish_non_exhaustive()
    }
}

/// The schedule delay and the batch size, from `OTEL_BSP_SCHEDULE_DELAY`
/// (milliseconds, at least [`MIN_SCHEDULE_DELAY`]) and
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (at least 1, at most `queue`) as `var`
/// reads them. A value that does not parse gives the default, as in the
/// SDK (`Observability::init` refuses it first, see `env`).
fn settings(queue: usize, var: impl Fn(&str) -> Option<String>) -> (Duration, usize) {
    let delay = var("OTEL_BSP_SCHEDULE_DELAY")
        .and_then(|v| v.trim().parse().ok())
        .map_or(DEFAULT_SCHEDULE_DELAY, Duration::from_millis);
    let batch = var("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_BATCH);
    (delay.max(MIN_SCHEDULE_DELAY), batch.min(queue.max(1)))
}

impl ShardedBatchProcessor {
    /// A processor exporting through `exporter` (which frees the pipeline's
    /// slots once a batch is sent, see `CountingExporter`), the schedule
    /// delay and batch size from `OTEL_BSP_SCHEDULE_DELAY` and
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (at most the queue), or the SDK's
    /// defaults.
    ///
    /// # Panics
    ///
    /// When the export thread cannot be spawned (as the SDK's processor).
    pub(crate) fn new<E: SpanExporter + 'static>(exporter: E, pipeline: Arc<Pipeline>) -> Self {
        let (delay, batch) = settings(pipeline.capacity(), super::env);
        Self::with(exporter, pipeline, delay, batch)
    }

    fn with<E: SpanExporter + 'static>(
        mut exporter: E,
        pipeline: Arc<Pipeline>,
        delay: Duration,
        batch: usize,
    ) -> Self {
        let shared = Arc::new(Shared {
            shards: shard::shards(|| Mutex::new(Vec::new())),
            pipeline,
            batch: batch.max(1),
            export_sent: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
        });
        let (control, received) = mpsc::channel();
        let exporting = shared.clone();
        let thread = thread::Builder::new()
            .name("span-export".to_owned())
            .spawn(move || {
                let _suppressed = Context::enter_telemetry_suppressed_scope();
                let mut export = Exporting { shared: exporting, spans: Vec::new(), spare: Vec::new() };
                let mut last = Instant::now();
                loop {
                    // After an export longer than the delay, a whole delay
                    // (as the SDK's thread): a failing collector is not
                    // retried back to back.
                    let wait = delay.checked_sub(last.elapsed()).unwrap_or(delay);
                    let message = match received.recv_timeout(wait) {
                        Ok(message) => Some(message),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    };
                    match message {
                        None => {
                            last = Instant::now();
                            let _ = export.all(&exporter);
                        }
                        Some(Control::Export) => {
                            export.shared.export_sent.store(false, Ordering::Relaxed);
                            last = Instant::now();
                            let _ = export.all(&exporter);
                        }
                        Some(Control::Flush(reply)) => {
                            let _ = reply.send(export.all(&exporter));
                        }
                        Some(Control::Shutdown(reply)) => {
                            // A failed last export is counted and logged by
                            // the pipeline; the shutdown's result is the
                            // exporter's (as the SDK's processor).
                            let _ = export.all(&exporter);
                            let _ = reply.send(exporter.shutdown());
                            return;
                        }
                        Some(Control::SetResource(resource)) => exporter.set_resource(&resource),
                    }
                }
            })
            .expect("could not spawn the span export thread");
        Self { shared, control, thread: Mutex::new(Some(thread)) }
    }

    /// Sends `make(reply)` to the export thread and waits for its reply at
    /// most `timeout`.
    fn ask(
        &self,
        make: impl FnOnce(mpsc::SyncSender<OTelSdkResult>) -> Control,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (reply, answer) = mpsc::sync_channel(1);
        self.control.send(make(reply)).map_err(|_| OTelSdkError::AlreadyShutdown)?;
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(OTelSdkError::AlreadyShutdown),
        }
    }
}

/// The export thread's state: the spans gathered from the shards, and an
/// empty `Vec` to swap into the next shard (so a shard gets its capacity
/// back and a worker does not grow it again).
struct Exporting {
    shared: Arc<Shared>,
    spans: Vec<SpanData>,
    spare: Vec<SpanData>,
}

impl Exporting {
    /// Exports every queued span, `batch` at a time; the last failed
    /// export's error, if any. An exporter that panics fails its batch,
    /// which is counted and its queue slots freed here (the counting
    /// exporter around it could not), and the thread goes on.
    fn all<E: SpanExporter>(&mut self, exporter: &E) -> OTelSdkResult {
        for shard in &self.shared.shards {
            {
                let mut queued = lock(shard);
                if queued.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *queued, &mut self.spare);
            }
            self.spans.append(&mut self.spare);
        }
        let mut result = Ok(());
        while !self.spans.is_empty() {
            let n = self.spans.len().min(self.shared.batch);
            let batch: Vec<SpanData> = self.spans.drain(..n).collect();
            let exported =
                panic::catch_unwind(AssertUnwindSafe(|| futures_executor::block_on(exporter.export(batch))));
            match exported {
                Ok(Ok(())) => {}
                Ok(Err(err)) => result = Err(err),
                Err(_) => {
                    let panicked =
                        || Err(OTelSdkError::InternalFailure("the span exporter panicked".to_owned()));
                    let pipeline = &self.shared.pipeline;
                    pipeline.release(n);
                    pipeline.on_export(n, &panicked(), None);
                    result = panicked();
                }
            }
        }
        result
    }
}

impl SpanProcessor for ShardedBatchProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let shared = &*self.shared;
        if shared.shut_down.load(Ordering::Relaxed) {
            // As the SDK's processor: what ends after shutdown is not exported.
            return;
        }
        let Some(queued) = shared.pipeline.reserve() else {
            shared.pipeline.on_dropped();
            return;
        };
        {
            let mut shard = lock(shard::mine(&shared.shards));
            // Read under the shard's lock: the thread's last pass locks
            // every shard after `shut_down` is set, so a span pushed after
            // that pass sees it, and is not left queued forever.
            if shared.shut_down.load(Ordering::Relaxed) {
                drop(shard);
                shared.pipeline.release(1);
                return;
            }
            shard.push(span);
        }
        if queued >= shared.batch
            && !shared.export_sent.load(Ordering::Relaxed)
            && !shared.export_sent.swap(true, Ordering::Relaxed)
            && self.control.send(Control::Export).is_err()
        {
            shared.export_sent.store(false, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Control::Flush, FORCE_FLUSH_TIMEOUT)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.shared.shut_down.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let result = self.ask(Control::Shutdown, timeout);
        // The thread has replied (and returns) unless the wait timed out.
        if !matches!(result, Err(OTelSdkError::Timeout(_)))
            && let Some(thread) = lock(&self.thread).take()
        {
            let _ = thread.join();
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        let _ = self.control.send(Control::SetResource(resource.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::{borrow::Cow, sync::Condvar, time::SystemTime};

    use opentelemetry::{
        InstrumentationScope,
        trace::{SpanContext, SpanId, SpanKind, Status},
    };
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;
    use crate::telemetry::pipeline::{CountingExporter, SPANS};

    fn span(name: String) -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Owned(name),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    /// What the exporter was given, batch by batch; exports wait while the
    /// gate is closed, and panic while `panics` is set.
    #[derive(Debug, Default)]
    struct Seen {
        batches: Mutex<Vec<Vec<String>>>,
        resource: Mutex<Option<Resource>>,
        shut_down: AtomicBool,
        panics: AtomicBool,
        closed: Mutex<bool>,
        opened: Condvar,
    }

    #[derive(Debug, Clone, Default)]
    struct Recording(Arc<Seen>);

    impl Recording {
        fn closed() -> Self {
            let recording = Self::default();
            *recording.0.closed.lock().unwrap() = true;
            recording
        }

        fn open(&self) {
            *self.0.closed.lock().unwrap() = false;
            self.0.opened.notify_all();
        }

        fn batch_sizes(&self) -> Vec<usize> {
            self.0.batches.lock().unwrap().iter().map(Vec::len).collect()
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = self.0.batches.lock().unwrap().concat();
            names.sort();
            names
        }

        /// Waits up to `limit` for `spans` exported spans; whether they came.
        fn wait_for(&self, spans: usize, limit: Duration) -> bool {
            let deadline = Instant::now() + limit;
            while self.batch_sizes().iter().sum::<usize>() < spans {
                if Instant::now() > deadline {
                    return false;
                }
                thread::sleep(Duration::from_millis(2));
            }
            true
        }
    }

    impl SpanExporter for Recording {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let seen = &*self.0;
            drop(seen.opened.wait_while(seen.closed.lock().unwrap(), |closed| *closed).unwrap());
            assert!(!seen.panics.load(Ordering::SeqCst), "the exporter panics");
            seen.batches.lock().unwrap().push(batch.iter().map(|s| s.name.to_string()).collect());
            Ok(())
        }

        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            self.0.shut_down.store(true, Ordering::SeqCst);
            Ok(())
        }

        fn set_resource(&mut self, resource: &Resource) {
            *self.0.resource.lock().unwrap() = Some(resource.clone());
        }
    }

    /// A processor exporting to `exporter` (counted) every `delay`, or at
    /// `batch` queued spans, holding `queue` at most.
    fn processor(
        exporter: Recording,
        queue: usize,
        batch: usize,
        delay: Duration,
    ) -> (ShardedBatchProcessor, Arc<Pipeline>) {
        let pipeline = Pipeline::new(&SPANS, queue);
        let counting = CountingExporter::new(exporter, pipeline.clone());
        (ShardedBatchProcessor::with(counting, pipeline.clone(), delay, batch), pipeline)
    }

    fn end(processor: &ShardedBatchProcessor, names: impl IntoIterator<Item = String>) {
        for name in names {
            processor.on_end(span(name));
        }
    }

    fn names(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
        range.map(|i| i.to_string())
    }

    const HOUR: Duration = Duration::from_secs(3600);
    /// Generous: what a loaded machine may take to run the export thread.
    const PATIENCE: Duration = Duration::from_secs(10);

    #[test]
    fn spans_of_many_threads_are_all_exported_in_batches_of_at_most_the_batch_size() {
        let exporter = Recording::default();
        let (processor, pipeline) = processor(exporter.clone(), 10_000, 64, HOUR);
        thread::scope(|scope| {
            for t in 0..4 {
                let processor = &processor;
                scope.spawn(move || end(processor, (0..500).map(|i| format!("{t}-{i:03}"))));
            }
        });
        processor.force_flush().unwrap();
        let mut expected: Vec<String> =
            (0..4).flat_map(|t| (0..500).map(move |i| format!("{t}-{i:03}"))).collect();
        expected.sort();
        assert_eq!(exporter.names(), expected, "every span once");
        assert!(exporter.batch_sizes().iter().all(|n| (1..=64).contains(n)), "{:?}", exporter.batch_sizes());
        assert_eq!(pipeline.pending(), 0);
        assert_eq!(pipeline.totals().exported, 2000);
        assert_eq!(pipeline.totals().dropped, 0);
    }

    #[test]
    fn each_queued_batch_is_exported_without_waiting_for_the_delay() {
        let exporter = Recording::default();
        let (processor, _pipeline) = processor(exporter.clone(), 100, 4, HOUR);
        end(&processor, names(0..3));
        thread::sleep(Duration::from_millis(50));
        assert!(exporter.batch_sizes().is_empty(), "3 spans of a batch of 4 wait for the delay");
        end(&processor, names(3..4));
        assert!(exporter.wait_for(4, PATIENCE), "the fourth span completes a batch");
        // And again: the thread took the first signal and waits for the next.
        end(&processor, names(4..8));
        assert!(exporter.wait_for(8, PATIENCE), "a second batch");
    }

    #[test]
    fn spans_are_exported_on_the_schedule_delay() {
        let exporter = Recording::default();
        let (processor, _pipeline) = processor(exporter.clone(), 100, 512, Duration::from_millis(20));
        end(&processor, names(0..1));
        // 100 times the delay, far less than the SDK's default of 5 s.
        assert!(exporter.wait_for(1, Duration::from_secs(2)), "exported within the delay, unflushed");
        end(&processor, names(1..2));
        assert!(exporter.wait_for(2, Duration::from_secs(2)), "and on the next one");
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        // Queue 2, batch 2: the first two spans make a batch, held at the
        // gate with their slots, so the next three are dropped.
        let exporter = Recording::closed();
        let (processor, pipeline) = processor(exporter.clone(), 2, 2, HOUR);
        end(&processor, names(0..5));
        assert_eq!(pipeline.pending(), 2, "two slots, three drops");
        assert_eq!(pipeline.totals().dropped, 3);
        exporter.open();
        processor.force_flush().unwrap();
        assert_eq!(exporter.names(), ["0", "1"]);
        assert_eq!(pipeline.pending(), 0);
    }

    #[test]
    fn shutdown_exports_what_is_queued_shuts_the_exporter_down_and_ends() {
        let exporter = Recording::default();
        let (processor, pipeline) = processor(exporter.clone(), 100, 512, HOUR);
        end(&processor, ["queued".to_owned()]);
        processor.shutdown().unwrap();
        assert_eq!(exporter.names(), ["queued"]);
        assert!(exporter.0.shut_down.load(Ordering::SeqCst));
        end(&processor, ["late".to_owned()]);
        assert!(matches!(processor.shutdown(), Err(OTelSdkError::AlreadyShutdown)), "twice");
        assert!(processor.force_flush().is_err(), "the thread has ended");
        assert_eq!(exporter.names(), ["queued"], "nothing exported after shutdown");
        assert_eq!(pipeline.pending(), 0, "the late span holds no slot");
    }

    #[test]
    fn a_hung_exporter_makes_shutdown_time_out_not_hang() {
        let exporter = Recording::closed();
        let (processor, _pipeline) = processor(exporter.clone(), 100, 512, HOUR);
        end(&processor, ["held".to_owned()]);
        let started = Instant::now();
        let result = processor.shutdown_with_timeout(Duration::from_millis(100));
        assert!(matches!(result, Err(OTelSdkError::Timeout(_))), "{result:?}");
        assert!(started.elapsed() < PATIENCE);
        exporter.open();
    }

    #[test]
    fn a_panicking_exporter_fails_its_batch_frees_its_slots_and_the_thread_goes_on() {
        let exporter = Recording::default();
        // No batch fills (512): the flush exports, and reports.
        let (processor, pipeline) = processor(exporter.clone(), 2, 512, HOUR);
        exporter.0.panics.store(true, Ordering::SeqCst);
        end(&processor, names(0..2));
        assert!(processor.force_flush().is_err(), "the panic is the flush's error");
        assert_eq!((pipeline.pending(), pipeline.totals().failed), (0, 2));
        exporter.0.panics.store(false, Ordering::SeqCst);
        end(&processor, names(2..4));
        processor.force_flush().unwrap();
        assert_eq!(exporter.names(), ["2", "3"], "the queue has room again");
        assert_eq!(pipeline.totals().dropped, 0);
    }

    #[test]
    fn the_resource_reaches_the_exporter() {
        let exporter = Recording::default();
        let (mut processor, _pipeline) = processor(exporter.clone(), 100, 512, HOUR);
        processor.set_resource(&Resource::builder_empty().with_service_name("checkout").build());
        processor.force_flush().unwrap();
        let resource = exporter.0.resource.lock().unwrap().clone().expect("set before the flush replies");
        assert_eq!(
            resource.get(&opentelemetry::Key::new("service.name")),
            Some(opentelemetry::Value::from("checkout"))
        );
    }

    #[test]
    fn settings_come_from_the_environment_within_bounds() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(settings(2048, vars(&[])), (DEFAULT_SCHEDULE_DELAY, DEFAULT_BATCH));
        assert_eq!(
            settings(
                2048,
                vars(&[("OTEL_BSP_SCHEDULE_DELAY", "250"), ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100")])
            ),
            (Duration::from_millis(250), 100)
        );
        // The batch is at most the queue; a delay of 0 would spin.
        assert_eq!(settings(64, vars(&[])).1, 64);
        assert_eq!(settings(2048, vars(&[("OTEL_BSP_SCHEDULE_DELAY", "0")])).0, MIN_SCHEDULE_DELAY);
        assert_eq!(
            settings(
                2048,
                vars(&[("OTEL_BSP_SCHEDULE_DELAY", "soon"), ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0")])
            ),
            (DEFAULT_SCHEDULE_DELAY, DEFAULT_BATCH)
        );
    }
}
