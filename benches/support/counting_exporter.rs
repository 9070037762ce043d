//! A span exporter that exports nothing and counts what it was given: the
//! benches, the load server and the allocation test measure the layers and
//! the span pipeline, not a collector. Include with
//! `#[path = ".../benches/support/counting_exporter.rs"] mod counting_exporter;`.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{SpanData, SpanExporter},
};

/// Exports nothing, counts the spans it was given in its `AtomicU64`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CountingExporter(pub(crate) Arc<AtomicU64>);

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
