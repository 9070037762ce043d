//! The OTLP logs pipeline: the process's `tracing` events as OTel log
//! records (through `opentelemetry-appender-tracing`), batched and pushed
//! to the collector, every drop, failure and rejection counted.
//!
//! A record of an event inside a request (its span, or a span within it)
//! carries the trace id and span id of the request's server span, as the
//! stdout lines do, and a `request_id` attribute. Severity comes from the
//! level (`ERROR` -> 17, `WARN` -> 13, `INFO` -> 9, `DEBUG` -> 5, `TRACE`
//! -> 1, OTel logs data model), the message is the body, the other fields
//! are attributes, the target is the record's `target`.
//!
//! The batch queue is bounded (`OTEL_BLRP_MAX_QUEUE_SIZE`, 2048 records):
//! an event that finds it full is dropped and counted
//! (`otlp_exporter_log_records_dropped_total`), never waited for.

use std::{sync::Arc, time::Duration};

use opentelemetry::{
    InstrumentationScope, Key,
    logs::{AnyValue, LogRecord as _},
};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    logs::{
        BatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter, LogProcessor, SdkLogRecord,
        SdkLoggerProvider,
    },
};
use tracing::{Event, Subscriber};
use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

use super::{
    pipeline::{LOG_RECORDS, Pipeline},
    sdk_events,
};
use crate::request_id::RequestId;

/// The `request_id` attribute of a request's log records.
const REQUEST_ID: Key = Key::from_static_str("request_id");

/// The request id of the event being turned into a record, carried in the
/// OTel context attached around it.
#[derive(Debug, Clone)]
struct LogRequestId(RequestId);

/// The batch settings of the log pipeline, resolved from `OTEL_BLRP_*` and
/// the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogBatchSettings {
    pub(crate) max_queue_size: usize,
    pub(crate) max_export_batch_size: usize,
    pub(crate) scheduled_delay: Duration,
}

/// Adds the `request_id` attribute, then reserves a queue slot for the
/// record or drops it, counted.
#[derive(Debug)]
pub(crate) struct GuardedLogProcessor<P> {
    inner: P,
    pipeline: Arc<Pipeline>,
}

impl<P: LogProcessor> LogProcessor for GuardedLogProcessor<P> {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        let id = opentelemetry::Context::map_current(|cx| cx.get::<LogRequestId>().map(|id| id.0.clone()));
        if let Some(id) = id {
            record.add_attribute(REQUEST_ID, AnyValue::from(id.as_str().to_owned()));
        }
        if self.pipeline.reserve().is_some() {
            self.inner.emit(record, scope);
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

/// Counts what the inner exporter sends, fails and has rejected, freeing
/// queue slots.
#[derive(Debug)]
pub(crate) struct CountingLogExporter<E> {
    inner: E,
    pipeline: Arc<Pipeline>,
}

impl<E: LogExporter> LogExporter for CountingLogExporter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let records = batch.iter().count();
        let (result, rejected) = sdk_events::watch_partial_success(self.inner.export(batch)).await;
        self.pipeline.release(records);
        self.pipeline.on_export(records, &result, rejected);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The logger provider sending to `exporter` through the counted, bounded
/// batch pipeline, with `resource` (the spans' resource). Call after the
/// metrics recorder is installed.
pub(crate) fn logger_provider<E: LogExporter + 'static>(
    resource: Resource,
    exporter: E,
    batch: LogBatchSettings,
) -> (SdkLoggerProvider, Arc<Pipeline>) {
    let pipeline = Pipeline::new(&LOG_RECORDS, batch.max_queue_size);
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(batch.max_queue_size)
        .with_max_export_batch_size(batch.max_export_batch_size.min(batch.max_queue_size))
        .with_scheduled_delay(batch.scheduled_delay)
        .build();
    let counting = CountingLogExporter { inner: exporter, pipeline: Arc::clone(&pipeline) };
    let processor = BatchLogProcessor::builder(counting).with_batch_config(config).build();
    let guarded = GuardedLogProcessor { inner: processor, pipeline: Arc::clone(&pipeline) };
    let provider = SdkLoggerProvider::builder().with_log_processor(guarded).with_resource(resource).build();
    (provider, pipeline)
}

/// Wraps the appender's layer: an event inside a request is turned into a
/// record with the request's OTel context attached (so the SDK gives it the
/// server span's ids) and its request id at hand (for
/// [`GuardedLogProcessor`]).
#[derive(Debug)]
pub(crate) struct CorrelatedLogs<L> {
    inner: L,
}

impl<S, L> Layer<S> for CorrelatedLogs<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let scope = ctx.event_span(event).and_then(crate::trace::request_scope);
        let _attached = scope.map(|(cx, id)| match id {
            Some(id) => cx.with_value(LogRequestId(id)).attach(),
            None => cx.attach(),
        });
        self.inner.on_event(event, ctx);
    }
}

/// The `tracing` layer feeding `provider`: every event through the
/// appender, request-scoped ones correlated. The caller filters it.
pub(crate) fn otlp_logs_layer<S>(provider: &SdkLoggerProvider) -> impl Layer<S> + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    CorrelatedLogs { inner: OpenTelemetryTracingBridge::new(provider) }
}

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::logs::InMemoryLogExporter;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    fn settings(queue: usize) -> LogBatchSettings {
        LogBatchSettings {
            max_queue_size: queue,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(3600),
        }
    }

    #[test]
    fn events_become_records_with_severity_body_and_fields() {
        let exporter = InMemoryLogExporter::default();
        let (provider, _) =
            logger_provider(Resource::builder_empty().build(), exporter.clone(), settings(16));
        let subscriber = tracing_subscriber::registry().with(otlp_logs_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(user.id = 7, "careful");
        });
        provider.force_flush().unwrap();
        let logs = exporter.get_emitted_logs().unwrap();
        assert_eq!(logs.len(), 1);
        let record = &logs[0].record;
        assert_eq!(record.severity_number(), Some(opentelemetry::logs::Severity::Warn));
        assert_eq!(record.body(), Some(&AnyValue::from("careful".to_owned())));
        assert!(record.attributes_iter().any(|(k, v)| k.as_str() == "user.id" && *v == AnyValue::Int(7)));
    }

    /// An exporter that holds every export until the gate opens.
    #[derive(Debug, Clone, Default)]
    struct Gated(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

    impl Gated {
        fn open(&self) {
            *self.0.0.lock().unwrap() = true;
            self.0.1.notify_all();
        }
    }

    impl LogExporter for Gated {
        async fn export(&self, _batch: opentelemetry_sdk::logs::LogBatch<'_>) -> OTelSdkResult {
            let (open, opened) = &*self.0;
            let _open = opened.wait_while(open.lock().unwrap(), |open| !*open).unwrap();
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        // The batch is the queue's size (2): the SDK exports the first two
        // at once. Held at the gate, they keep their slots, so the next
        // three are dropped whatever the export thread's timing (it once
        // ran first 1 time in 3 and freed the slots).
        let gate = Gated::default();
        let (provider, pipeline) =
            logger_provider(Resource::builder_empty().build(), gate.clone(), settings(2));
        let subscriber = tracing_subscriber::registry().with(otlp_logs_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..5 {
                tracing::info!(i, "event");
            }
        });
        assert_eq!(pipeline.pending(), 2, "two slots, three drops");
        assert_eq!(pipeline.totals().dropped, 3);
        gate.open();
        provider.force_flush().unwrap();
        assert_eq!(pipeline.pending(), 0);
    }
}
