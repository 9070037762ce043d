//! A `metrics` recorder that records into OpenTelemetry instruments, with
//! the names, units, buckets and attribute keys of
//! [`otel_names`](super::otel_names).
//!
//! Counters and gauges are atomics read by observable instruments when the
//! periodic reader collects: on the hot path a counter increment is one
//! atomic add, a gauge change one compare-and-swap, with no lock and no
//! allocation. Histograms are the SDK's synchronous histograms (the SDK
//! has no observable one), each handle bound once to its series'
//! attributes (the SDK's `experimental_metrics_bound_instruments`), so that
//! a sample takes the bucket's lock but no attribute lookup.
//! Handles of the same key share one state, as the Prometheus recorder's
//! do, so two `counter!` calls for one series add up.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use opentelemetry::{KeyValue, metrics::Meter};

use super::otel_names::{self, Instrument, OtelMetric};

/// One series of a counter or gauge: its attributes and its value (a `u64`
/// for counters, `f64` bits for gauges).
struct Cell {
    attributes: Vec<KeyValue>,
    value: AtomicU64,
}

/// The series of one observable instrument, read by its callback.
type Cells = Arc<Mutex<Vec<Arc<Cell>>>>;

/// What was built for one recorded name.
enum Built {
    /// An observable counter, up-down counter or gauge and its series.
    Observed(Cells),
    /// A synchronous histogram.
    Histogram(opentelemetry::metrics::Histogram<f64>),
}

#[derive(Default)]
struct State {
    /// Units and descriptions given to `describe_*!`, by recorded name.
    descriptions: HashMap<String, (Option<Unit>, SharedString)>,
    /// The instrument of each recorded name.
    built: HashMap<String, Built>,
    /// The series of each key, so that every handle of a key shares one.
    cells: HashMap<Key, Arc<Cell>>,
    histograms: HashMap<Key, Arc<HistogramHandle>>,
}

/// The OTel side of the fan-out recorder; see the [module](self).
#[derive(Clone)]
pub(crate) struct OtelRecorder {
    meter: Meter,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for OtelRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelRecorder").finish_non_exhaustive()
    }
}

impl OtelRecorder {
    /// A recorder making its instruments with `meter`.
    pub(crate) fn new(meter: Meter) -> Self {
        Self { meter, state: Arc::default() }
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.descriptions.insert(key.as_str().to_owned(), (unit, description));
    }

    /// The cell of `key` for a facade `kind` (counter or gauge), building
    /// the instrument of its name on first use.
    fn cell(&self, key: &Key, kind: Instrument) -> Arc<Cell> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cell) = state.cells.get(key) {
            return Arc::clone(cell);
        }
        let name = key.name();
        let cell = Arc::new(Cell { attributes: attributes(key), value: AtomicU64::new(0) });
        if !state.built.contains_key(name) {
            let metric = Self::otel_metric(&state, name, kind);
            let description = state.descriptions.get(name).map(|(_, d)| d.to_string());
            let built = self.observe(metric, description);
            state.built.insert(name.to_owned(), built);
        }
        if let Some(Built::Observed(cells)) = state.built.get(name) {
            cells.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&cell));
        }
        // A name recorded both as a histogram and as a counter or gauge
        // has one instrument, the first: the other series stay unexported.
        state.cells.insert(key.clone(), Arc::clone(&cell));
        cell
    }

    fn otel_metric(state: &State, name: &str, kind: Instrument) -> OtelMetric {
        let described = state.descriptions.get(name);
        let mut metric = otel_names::metric(name, kind, described.and_then(|(unit, _)| *unit));
        if kind != Instrument::Gauge {
            // A facade counter is monotonic and a histogram a histogram,
            // whatever the table says; a gauge may become an up-down counter.
            metric.instrument = kind;
        }
        metric
    }

    /// Builds the observable instrument of `metric`, reading its cells.
    fn observe(&self, metric: OtelMetric, description: Option<String>) -> Built {
        let cells: Cells = Arc::default();
        let read = Arc::clone(&cells);
        macro_rules! build {
            ($builder:ident, $observe:expr) => {{
                let mut builder = self.meter.$builder(metric.name.clone());
                if let Some(unit) = metric.unit.clone() {
                    builder = builder.with_unit(unit);
                }
                if let Some(description) = description {
                    builder = builder.with_description(description);
                }
                let _ = builder
                    .with_callback(move |observer| {
                        for cell in read.lock().unwrap_or_else(PoisonError::into_inner).iter() {
                            observer.observe($observe(cell.value.load(Ordering::Relaxed)), &cell.attributes);
                        }
                    })
                    .build();
            }};
        }
        match metric.instrument {
            Instrument::Counter => build!(u64_observable_counter, |v: u64| v),
            Instrument::UpDownCounter => build!(f64_observable_up_down_counter, f64::from_bits),
            Instrument::Gauge | Instrument::Histogram => build!(f64_observable_gauge, f64::from_bits),
        }
        Built::Observed(cells)
    }

    fn histogram(&self, key: &Key) -> Arc<HistogramHandle> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = state.histograms.get(key) {
            return Arc::clone(handle);
        }
        let name = key.name();
        if !state.built.contains_key(name) {
            let metric = Self::otel_metric(&state, name, Instrument::Histogram);
            let mut builder =
                self.meter.f64_histogram(metric.name.clone()).with_boundaries(metric.boundaries.to_vec());
            if let Some(unit) = metric.unit {
                builder = builder.with_unit(unit);
            }
            if let Some((_, description)) = state.descriptions.get(name) {
                builder = builder.with_description(description.to_string());
            }
            state.built.insert(name.to_owned(), Built::Histogram(builder.build()));
        }
        // Bound once to the series' attributes: a sample is then recorded
        // without hashing them (the SDK's unbound `record` hashes every
        // attribute with SipHash, some 1 900 instructions a sample here).
        let histogram = match state.built.get(name) {
            Some(Built::Histogram(histogram)) => Some(histogram.bind(&attributes(key))),
            _ => None,
        };
        let handle = Arc::new(HistogramHandle { histogram });
        state.histograms.insert(key.clone(), Arc::clone(&handle));
        handle
    }
}

/// The OTel attributes of a key's labels.
fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels().map(|label| otel_names::attribute(key.name(), label.key(), label.value())).collect()
}

impl Recorder for OtelRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(CounterHandle(self.cell(key, Instrument::Counter))))
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(GaugeHandle(self.cell(key, Instrument::Gauge))))
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.histogram(key))
    }
}

struct CounterHandle(Arc<Cell>);

impl CounterFn for CounterHandle {
    #[inline]
    fn increment(&self, value: u64) {
        self.0.value.fetch_add(value, Ordering::Relaxed);
    }

    #[inline]
    fn absolute(&self, value: u64) {
        self.0.value.fetch_max(value, Ordering::Relaxed);
    }
}

struct GaugeHandle(Arc<Cell>);

impl GaugeHandle {
    #[inline]
    fn add(&self, delta: f64) {
        let _ = self.0.value.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + delta).to_bits())
        });
    }
}

impl GaugeFn for GaugeHandle {
    #[inline]
    fn increment(&self, value: f64) {
        self.add(value);
    }

    #[inline]
    fn decrement(&self, value: f64) {
        self.add(-value);
    }

    #[inline]
    fn set(&self, value: f64) {
        self.0.value.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// A histogram series, bound to its attributes: `None` when its name was
/// first recorded as a counter or gauge (then the samples are not
/// exported).
struct HistogramHandle {
    histogram: Option<opentelemetry::metrics::BoundHistogram<f64>>,
}

impl HistogramFn for HistogramHandle {
    #[inline]
    fn record(&self, value: f64) {
        if let Some(histogram) = &self.histogram {
            histogram.record(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{
        InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
        data::{AggregatedMetrics, MetricData},
    };

    use super::*;

    fn provider() -> (SdkMeterProvider, InMemoryMetricExporter) {
        let exporter = InMemoryMetricExporter::default();
        let reader = PeriodicReader::builder(exporter.clone()).build();
        (SdkMeterProvider::builder().with_reader(reader).build(), exporter)
    }

    #[test]
    fn one_recording_gets_the_otel_names_units_and_buckets() {
        let (provider, exporter) = provider();
        let recorder = OtelRecorder::new(provider.meter("test"));
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_histogram!("http_server_request_duration_seconds", Unit::Seconds, "Duration.");
            let labels = [
                ("http_request_method", "GET"),
                ("http_route", "/users/{id}"),
                ("http_response_status_code", "200"),
            ];
            let h = metrics::histogram!("http_server_request_duration_seconds", &labels);
            h.record(0.02);
            metrics::histogram!("http_server_request_duration_seconds", &labels).record(0.3);
            metrics::counter!("orders_total", "kind" => "a").increment(2);
            metrics::counter!("orders_total", "kind" => "a").increment(3);
            let active = metrics::gauge!("http_server_active_requests");
            active.increment(2.0);
            active.decrement(1.0);
        });
        provider.force_flush().unwrap();
        let exported = exporter.get_finished_metrics().unwrap();
        let metrics: Vec<_> =
            exported.iter().flat_map(|r| r.scope_metrics()).flat_map(|s| s.metrics()).collect();
        let find = |name: &str| {
            *metrics.iter().find(|m| m.name() == name).unwrap_or_else(|| panic!("{name} missing"))
        };

        let duration = find("http.server.request.duration");
        assert_eq!(duration.unit(), "s");
        let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = duration.data() else {
            panic!("not a histogram")
        };
        let point = histogram.data_points().next().unwrap();
        assert_eq!(point.count(), 2, "two handles of one series add up");
        assert_eq!(point.bounds().collect::<Vec<_>>(), crate::metrics::DURATION_BUCKETS.to_vec());
        let keys: Vec<_> = point.attributes().map(|kv| kv.key.as_str().to_owned()).collect();
        assert!(
            keys.contains(&"http.route".to_owned()) && keys.contains(&"http.response.status_code".to_owned()),
            "{keys:?}"
        );

        let AggregatedMetrics::U64(MetricData::Sum(orders)) = find("orders").data() else {
            panic!("not a u64 sum")
        };
        assert_eq!(orders.data_points().next().unwrap().value(), 5);
        assert!(orders.is_monotonic());

        let AggregatedMetrics::F64(MetricData::Sum(active)) = find("http.server.active_requests").data()
        else {
            panic!("not an f64 sum")
        };
        assert!(!active.is_monotonic(), "an up-down counter");
        assert_eq!(active.data_points().next().unwrap().value(), 1.0);
    }
}
