//! The OpenTelemetry SDK's own log events (its `internal-logs` feature):
//! where they go.
//!
//! The SDK and the OTLP exporter report through `tracing` (targets
//! `opentelemetry_sdk`, `opentelemetry-otlp`...). Three things happen to
//! those events here:
//!
//! - an OTLP partial success (`*.PartialSuccess`, the collector accepted
//!   the request but rejected some of its items) is handed to the
//!   pipeline whose export is running on this thread, which counts the
//!   rejected items and logs the collector's message once per episode
//!   ([`watch_partial_success`], [`SdkEventsLayer`]);
//! - the events the crate's pipelines already account for (an export
//!   error, a partial success, a full queue) are kept off the log lines
//!   ([`accounted_for`]): the pipeline logs one warning, then summaries,
//!   then a recovery line, where the SDK would log every batch;
//! - the events of the SDK's setup, which runs in `init` before the
//!   subscriber exists, are held ([`Deferred`]) and logged once it does.

use std::{
    cell::RefCell,
    fmt,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};

use opentelemetry_sdk::error::OTelSdkResult;
use tracing::{
    Event, Level, Metadata, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{Layer, layer::Context};

thread_local! {
    /// The partial success reported during the export running on this
    /// thread: rejected items and the collector's message.
    static PARTIAL: RefCell<Option<(u64, String)>> = const { RefCell::new(None) };
}

/// Whether `meta` is an event of the SDK or its exporter.
fn is_sdk(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with("opentelemetry")
}

/// Whether an SDK event reports what a pipeline of the crate counts and
/// logs itself: an export error, a partial success, dropped items.
pub(crate) fn accounted_for(meta: &Metadata<'_>) -> bool {
    if !is_sdk(meta) || !meta.is_event() {
        return false;
    }
    let name = meta.name();
    name.ends_with(".PartialSuccess")
        || name.contains("ExportError")
        || name.contains("Export.Error")
        || name.starts_with("Export.Failed")
        || name.contains("Dropping")
        || name.ends_with("Dropped")
}

/// Runs one export, returning its result and the partial success the
/// exporter reported while it ran, if any.
///
/// The OTLP exporter reports a partial success only as a log event, from
/// inside its `export` (on the thread that polls it: a batch processor's or
/// the metric reader's own thread, one export at a time), and answers `Ok`;
/// [`SdkEventsLayer`] catches the event and leaves it here.
pub(crate) async fn watch_partial_success(
    export: impl Future<Output = OTelSdkResult>,
) -> (OTelSdkResult, Option<(u64, String)>) {
    PARTIAL.with(|p| p.borrow_mut().take());
    let result = export.await;
    (result, PARTIAL.with(|p| p.borrow_mut().take()))
}

/// The fields of a partial-success event.
#[derive(Default)]
struct PartialFields {
    rejected: u64,
    message: String,
}

impl Visit for PartialFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name().starts_with("rejected_") {
            self.rejected = value;
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name().starts_with("rejected_") {
            self.rejected = u64::try_from(value).unwrap_or(0);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "error_message" {
            // Bounded: the collector's text goes into a log line.
            self.message = value.chars().take(512).collect();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "error_message" {
            self.message = format!("{value:?}").chars().take(512).collect();
        }
    }
}

/// Catches the OTLP exporter's partial-success events for the pipelines.
/// Part of [`Observability::otel_layer`](crate::Observability::otel_layer).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SdkEventsLayer;

/// Whether `meta` is the OTLP exporter's partial-success event.
fn is_partial_success(meta: &Metadata<'_>) -> bool {
    is_sdk(meta) && meta.name().ends_with(".PartialSuccess")
}

/// [`SdkEventsLayer`] with the per-layer filter that lets only the
/// partial-success events through (whatever `RUST_LOG` says).
pub(crate) fn sdk_events_layer<S>() -> impl Layer<S> + use<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    SdkEventsLayer.with_filter(tracing_subscriber::filter::filter_fn(is_partial_success))
}

impl<S: Subscriber> Layer<S> for SdkEventsLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = PartialFields::default();
        event.record(&mut fields);
        PARTIAL.with(|p| *p.borrow_mut() = Some((fields.rejected, fields.message)));
    }
}

/// One event held during `init`.
#[derive(Debug, Clone)]
struct Held {
    level: Level,
    target: String,
    name: String,
    message: String,
}

#[derive(Default)]
struct MessageFields(String);

impl Visit for MessageFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use fmt::Write as _;
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{}={value:?}", field.name());
    }
}

/// Holds the `WARN` and `ERROR` events emitted while the pipelines are
/// built, before the subscriber exists; [`Deferred::replay`] logs them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deferred {
    held: Arc<Mutex<Vec<Held>>>,
}

impl Deferred {
    /// Runs `build` with the events of this thread held.
    pub(crate) fn hold<T>(&self, build: impl FnOnce() -> T) -> T {
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::with_default(subscriber, build)
    }

    /// Logs the held events, at their level, under the crate's target with
    /// the SDK's target and event name as fields.
    pub(crate) fn replay(&self) {
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner));
        for Held { level, target, name, message } in held {
            if level == Level::ERROR {
                tracing::error!(target: "tower_observability::telemetry", source = %target, event = %name, "{message}");
            } else {
                tracing::warn!(target: "tower_observability::telemetry", source = %target, event = %name, "{message}");
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for Deferred {
    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        *meta.level() <= Level::WARN
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = MessageFields::default();
        event.record(&mut fields);
        self.held.lock().unwrap_or_else(PoisonError::into_inner).push(Held {
            level: *meta.level(),
            target: meta.target().to_owned(),
            name: meta.name().to_owned(),
            message: fields.0,
        });
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn a_partial_success_reaches_the_export_that_saw_it() {
        let subscriber = tracing_subscriber::registry().with(sdk_events_layer());
        let (result, partial) = tracing::subscriber::with_default(subscriber, || {
            futures_executor_block_on(watch_partial_success(async {
                tracing::warn!(
                    name: "TonicTracesClient.PartialSuccess",
                    target: "opentelemetry-otlp",
                    rejected_spans = 3_i64,
                    error_message = "quota exceeded",
                );
                Ok(())
            }))
        });
        assert!(result.is_ok());
        assert_eq!(partial, Some((3, "quota exceeded".to_owned())));
        // The next export starts clean.
        let (_, partial) = futures_executor_block_on(watch_partial_success(async { Ok(()) }));
        assert_eq!(partial, None);
    }

    #[test]
    fn deferred_events_are_held_until_replayed() {
        let deferred = Deferred::default();
        deferred.hold(|| tracing::warn!(name: "X.Y", target: "opentelemetry_sdk", "careful"));
        assert_eq!(deferred.held.lock().unwrap().len(), 1);
        deferred.replay();
        assert!(deferred.held.lock().unwrap().is_empty());
    }

    /// Polls a future that never waits.
    fn futures_executor_block_on<T>(f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the future waited"),
        }
    }
}
