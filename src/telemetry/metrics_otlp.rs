//! The OTLP metrics pipeline: a meter provider with a periodic reader that
//! pushes what the `metrics` facade records (through the
//! [`OtelRecorder`](super::metrics_bridge::OtelRecorder) half of the
//! fan-out recorder) to the collector, counting what it sends, what fails
//! and what the collector rejects.
//!
//! Recording never waits for the collector: the instruments aggregate in
//! memory (bounded: the series are those of the `metrics` calls, whose
//! labels the crate bounds, and the SDK caps each instrument at 2000
//! attribute sets), and the reader exports from a thread of its own every
//! interval (`OTEL_METRIC_EXPORT_INTERVAL`, 60 s by default). A failed
//! export loses nothing with cumulative temporality (the default): the
//! next one sends the totals again.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{
        PeriodicReader, SdkMeterProvider, Temporality,
        data::{AggregatedMetrics, MetricData, ResourceMetrics},
        exporter::PushMetricExporter,
    },
};

use super::{
    pipeline::{METRIC_POINTS, Pipeline},
    sdk_events,
};

/// Where the metric pipeline's counts go, once the recorder that holds
/// them is installed ([`start_counting`]): the meter provider, which the
/// recorder needs, is built before it.
pub(crate) type Counting = Arc<OnceLock<Arc<Pipeline>>>;

/// Counts the data points of each export, and the partial successes.
#[derive(Debug)]
pub(crate) struct CountingMetricExporter<E> {
    inner: E,
    pipeline: Counting,
}

/// The number of data points in `metrics`.
fn data_points(metrics: &ResourceMetrics) -> usize {
    fn count<T>(data: &MetricData<T>) -> usize {
        match data {
            MetricData::Gauge(g) => g.data_points().count(),
            MetricData::Sum(s) => s.data_points().count(),
            MetricData::Histogram(h) => h.data_points().count(),
            MetricData::ExponentialHistogram(h) => h.data_points().count(),
        }
    }
    metrics
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .map(|metric| match metric.data() {
            AggregatedMetrics::F64(data) => count(data),
            AggregatedMetrics::U64(data) => count(data),
            AggregatedMetrics::I64(data) => count(data),
        })
        .sum()
}

impl<E: PushMetricExporter> PushMetricExporter for CountingMetricExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let points = data_points(metrics);
        let (result, rejected) = sdk_events::watch_partial_success(self.inner.export(metrics)).await;
        if let Some(pipeline) = self.pipeline.get() {
            pipeline.on_export(points, &result, rejected);
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// The meter provider pushing to `exporter` every `interval`, with
/// `resource` (the spans' resource); set as the global meter provider.
pub(crate) fn meter_provider<E: PushMetricExporter>(
    resource: Resource,
    exporter: E,
    interval: Duration,
) -> (SdkMeterProvider, Counting) {
    let counting = Counting::default();
    let exporter = CountingMetricExporter { inner: exporter, pipeline: Arc::clone(&counting) };
    let reader = PeriodicReader::builder(exporter).with_interval(interval).build();
    let provider = SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
    opentelemetry::global::set_meter_provider(provider.clone());
    (provider, counting)
}

/// Starts counting exports, in the recorder installed by now.
pub(crate) fn start_counting(counting: &Counting) {
    // No queue: the reader collects, then exports, one at a time.
    let _ = counting.set(Pipeline::new(&METRIC_POINTS, 1));
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::InMemoryMetricExporter;

    use super::*;

    #[test]
    fn data_points_are_counted() {
        let exporter = InMemoryMetricExporter::default();
        let reader = PeriodicReader::builder(exporter.clone()).build();
        let provider = SdkMeterProvider::builder().with_reader(reader).build();
        let counter = provider.meter("t").u64_counter("c").build();
        counter.add(1, &[opentelemetry::KeyValue::new("k", "a")]);
        counter.add(1, &[opentelemetry::KeyValue::new("k", "b")]);
        provider.meter("t").f64_histogram("h").build().record(1.0, &[]);
        provider.force_flush().unwrap();
        let exported = exporter.get_finished_metrics().unwrap();
        assert_eq!(exported.iter().map(data_points).sum::<usize>(), 3);
    }
}
