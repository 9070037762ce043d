//! Exemplar slots: for each series of the crate's duration histograms
//! (`http_server_request_duration_seconds`, `rpc_server_call_duration_seconds`)
//! and each of its buckets, the latest request whose span was sampled: its
//! trace id, span id, duration and end time.
//!
//! The `metrics` facade has no exemplar API, so the slots live beside the
//! facade's histogram handle, in the crate's own series: the two are made
//! together, from one label list, when a label set is first seen. The
//! Prometheus recorder keeps every count and sum; the slots keep only
//! exemplars, which it cannot hold. `/metrics` joins them when it renders
//! OpenMetrics (see [`crate::monitoring`]).
//!
//! Fixed memory: one slot of 64 bytes per bucket and `+Inf`
//! (`DURATION_BUCKETS.len() + 1` = 15 slots, 960 bytes a series), allocated
//! when the series is made, for at most [`MAX_EXEMPLAR_SERIES`] series.
//! Recording is a seqlock write without waiting: a bucket search, two
//! atomic read-modify-writes and five plain stores; a writer that finds the
//! slot being written by another request leaves it to that one (both are as
//! recent).
//! Nothing is recorded for a request that is not sampled.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering, fence},
    },
    time::{Duration, Instant, SystemTime},
};

use ::metrics::{Key, Label};
use opentelemetry::trace::{SpanId, TraceId};

use crate::semconv::DURATION_BUCKETS;

/// The most series one [`Exemplars`] registry keeps slots for (about
/// 3.8 MiB at most); series beyond it record no exemplar.
pub const MAX_EXEMPLAR_SERIES: usize = 4096;

/// The slots of a series: one per bucket of [`DURATION_BUCKETS`], and one
/// for `+Inf`.
const SLOTS: usize = DURATION_BUCKETS.len() + 1;

/// How many times a reader retries a slot that is being written before it
/// leaves it out of this reading.
const READ_ATTEMPTS: usize = 64;

/// One request of a histogram's bucket, as an OpenMetrics exemplar shows
/// it (OpenMetrics 1.0, "Exemplars"): the ids of its server span, the value
/// it recorded and when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    /// The W3C trace id of the request's sampled server span.
    pub trace_id: TraceId,
    /// The span id of that span.
    pub span_id: SpanId,
    /// The value recorded in the histogram: the request's duration, in
    /// seconds.
    pub value: f64,
    /// When the request ended (the wall clock, read through the monotonic
    /// clock from an instant taken when the registry was made).
    pub timestamp: SystemTime,
}

/// The trace and span id of a sampled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SampledIds {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
}

/// A seqlock slot: `seq` is odd while a writer is at work, even otherwise,
/// and 0 until the first write. Aligned to a cache line, so that requests
/// writing neighbouring buckets do not share one.
#[repr(align(64))]
#[derive(Default)]
struct Slot {
    seq: AtomicU64,
    trace_hi: AtomicU64,
    trace_lo: AtomicU64,
    span: AtomicU64,
    value: AtomicU64,
    /// Nanoseconds from the registry's anchor to the end of the request.
    nanos: AtomicU64,
}

/// What a slot holds, read whole.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Read {
    trace: u128,
    span: u64,
    value: f64,
    nanos: u64,
}

impl Slot {
    /// Writes unless another writer is at work (its request is as recent):
    /// setting the low bit of `seq` takes the slot (one atomic
    /// instruction), adding one more releases it, even again.
    #[inline]
    fn write(&self, trace: u128, span: u64, value: f64, nanos: u64) {
        if self.seq.fetch_or(1, Ordering::Acquire) & 1 == 1 {
            return;
        }
        // The data stores below cannot be seen before the odd sequence.
        fence(Ordering::Release);
        self.trace_hi.store((trace >> 64) as u64, Ordering::Relaxed);
        self.trace_lo.store(trace as u64, Ordering::Relaxed);
        self.span.store(span, Ordering::Relaxed);
        self.value.store(value.to_bits(), Ordering::Relaxed);
        self.nanos.store(nanos, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// The slot's content, read whole: `None` when never written, or when
    /// writers kept it busy for [`READ_ATTEMPTS`] tries.
    fn read(&self) -> Option<Read> {
        for _ in 0..READ_ATTEMPTS {
            let before = self.seq.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before & 1 == 0 {
                let read = Read {
                    trace: (u128::from(self.trace_hi.load(Ordering::Relaxed)) << 64)
                        | u128::from(self.trace_lo.load(Ordering::Relaxed)),
                    span: self.span.load(Ordering::Relaxed),
                    value: f64::from_bits(self.value.load(Ordering::Relaxed)),
                    nanos: self.nanos.load(Ordering::Relaxed),
                };
                // The data loads above cannot be seen after the check.
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return Some(read);
                }
            }
            std::hint::spin_loop();
        }
        None
    }
}

/// The exemplar slots of one series of a duration histogram.
pub(crate) struct SeriesExemplars {
    name: &'static str,
    labels: Box<[Label]>,
    anchor: Anchor,
    slots: Box<[Slot; SLOTS]>,
}

impl fmt::Debug for SeriesExemplars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeriesExemplars").field("name", &self.name).field("labels", &self.labels).finish()
    }
}

impl SeriesExemplars {
    /// Records a sampled request of `seconds` that ended `at` in the slot
    /// of its bucket: the first bound it does not exceed, else `+Inf`.
    #[inline]
    pub(crate) fn record(&self, seconds: f64, ids: SampledIds, at: Instant) {
        // A scan from the first bound: most requests end in the first
        // buckets, found in a comparison or two.
        let bucket =
            DURATION_BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(DURATION_BUCKETS.len());
        let since = at.saturating_duration_since(self.anchor.instant);
        let nanos = since.as_secs() * 1_000_000_000 + u64::from(since.subsec_nanos());
        let trace = u128::from_be_bytes(ids.trace_id.to_bytes());
        let span = u64::from_be_bytes(ids.span_id.to_bytes());
        self.slots[bucket].write(trace, span, seconds, nanos);
    }

    /// The metric name.
    #[cfg(feature = "monitoring")]
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The series' labels, in the order the histogram was registered with.
    #[cfg(feature = "monitoring")]
    pub(crate) fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// The value of label `key`.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|l| l.key() == key).map(Label::value)
    }

    /// The exemplars held now, one per bucket at most, in bucket order.
    pub(crate) fn read(&self) -> Vec<Exemplar> {
        self.slots
            .iter()
            .filter_map(Slot::read)
            .map(|read| Exemplar {
                trace_id: TraceId::from_bytes(read.trace.to_be_bytes()),
                span_id: SpanId::from_bytes(read.span.to_be_bytes()),
                value: read.value,
                timestamp: self.anchor.system + Duration::from_nanos(read.nanos),
            })
            .collect()
    }
}

/// The same moment on both clocks: exemplar times are kept as monotonic
/// offsets from it (no wall-clock reading per request) and shown as wall
/// clock.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    instant: Instant,
    system: SystemTime,
}

/// A registry of exemplar slots, one set per series of the duration
/// histograms, shared by the metrics layers that record into it and read by
/// `/metrics` and the dashboard.
///
/// A series is the metric name and its labels, as the `metrics` facade
/// keys it: two layers recording the same label set share its slots, as
/// they share the Prometheus recorder's series. At most
/// [`MAX_EXEMPLAR_SERIES`] series are kept.
///
/// # Example
///
/// ```
/// use tower_observability::metrics::{Exemplars, HttpMetricsLayer};
///
/// // `HttpMetricsLayer::new()` records into the global registry, which
/// // `/metrics` and the dashboard read; this one keeps its own.
/// let registry = Exemplars::new();
/// let layer = HttpMetricsLayer::new().exemplar_registry(registry.clone());
/// assert!(registry.is_empty(), "no request yet");
/// // A layer that records no exemplar:
/// let off = HttpMetricsLayer::new().exemplars(false);
/// # drop((layer, off));
/// ```
#[derive(Clone)]
pub struct Exemplars {
    inner: Arc<Registry>,
}

struct Registry {
    anchor: Anchor,
    max: usize,
    series: Mutex<HashMap<Key, Arc<SeriesExemplars>>>,
    /// Whether the cap was reported.
    warned: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Exemplars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exemplars").field("series", &self.len()).finish_non_exhaustive()
    }
}

impl Default for Exemplars {
    fn default() -> Self {
        Self::new()
    }
}

impl Exemplars {
    /// An empty registry of its own (for tests, or several applications in
    /// one process).
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(MAX_EXEMPLAR_SERIES)
    }

    fn with_capacity(max: usize) -> Self {
        Self {
            inner: Arc::new(Registry {
                anchor: Anchor { instant: Instant::now(), system: SystemTime::now() },
                max,
                series: Mutex::default(),
                warned: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The process-wide registry, made on first use, that
    /// [`HttpMetricsLayer::new`](super::HttpMetricsLayer::new) records into
    /// and the monitoring routes read, as the `metrics` recorder is
    /// process-wide.
    #[must_use]
    pub fn global() -> Self {
        static GLOBAL: OnceLock<Exemplars> = OnceLock::new();
        GLOBAL.get_or_init(Self::new).clone()
    }

    /// The number of series that have slots.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.series.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no series has slots yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latest exemplars of the histogram `name` (the Prometheus name,
    /// e.g. `http_server_request_duration_seconds`) for the series whose
    /// labels include all of `labels`: one per series and bucket, the
    /// newest first.
    ///
    /// ```
    /// use tower_observability::metrics::Exemplars;
    ///
    /// let slow = Exemplars::global()
    ///     .latest("http_server_request_duration_seconds", &[("http_route", "/users/{id}")]);
    /// for exemplar in slow {
    ///     println!("{} took {} s", exemplar.trace_id, exemplar.value);
    /// }
    /// ```
    #[must_use]
    pub fn latest(&self, name: &str, labels: &[(&str, &str)]) -> Vec<Exemplar> {
        let mut found: Vec<Exemplar> = self
            .series()
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .flat_map(|s| s.read())
            .collect();
        found.sort_by_key(|e| std::cmp::Reverse(e.timestamp));
        found
    }

    /// The slots of the series `name` with `labels`, made on first use;
    /// `None` past the cap.
    pub(crate) fn series_of(&self, name: &'static str, labels: &[Label]) -> Option<Arc<SeriesExemplars>> {
        let key = Key::from_parts(name, labels.to_vec());
        let mut series = self.inner.series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = series.get(&key) {
            return Some(Arc::clone(found));
        }
        if series.len() >= self.inner.max {
            if !self.inner.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(max = self.inner.max, "exemplar slots full: new series record no exemplar");
            }
            return None;
        }
        let made = Arc::new(SeriesExemplars {
            name,
            labels: labels.into(),
            anchor: self.inner.anchor,
            slots: Box::default(),
        });
        series.insert(key, Arc::clone(&made));
        Some(made)
    }

    /// Every series that has slots (whether written or not).
    pub(crate) fn series(&self) -> Vec<Arc<SeriesExemplars>> {
        self.inner.series.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicBool, AtomicUsize},
        thread,
    };

    use proptest::prelude::*;

    use super::*;

    const NAME: &str = "http_server_request_duration_seconds";

    fn ids(n: u64) -> SampledIds {
        SampledIds {
            trace_id: TraceId::from_bytes(((u128::from(n) << 64) | u128::from(!n)).to_be_bytes()),
            span_id: SpanId::from_bytes((n ^ 0x5a5a_5a5a_5a5a_5a5a).to_be_bytes()),
        }
    }

    fn series(registry: &Exemplars, route: &'static str) -> Arc<SeriesExemplars> {
        registry.series_of(NAME, &[Label::new("http_route", route)]).expect("below the cap")
    }

    /// The bucket bounds `(lower, upper]` of slot `i`.
    fn bounds_of(i: usize) -> (f64, f64) {
        let lower = if i == 0 { f64::NEG_INFINITY } else { DURATION_BUCKETS[i - 1] };
        (lower, DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY))
    }

    #[test]
    fn an_empty_series_has_no_exemplar() {
        let registry = Exemplars::new();
        assert!(series(&registry, "/a").read().is_empty());
        assert!(registry.latest(NAME, &[]).is_empty());
    }

    #[test]
    fn the_latest_request_of_a_bucket_wins_and_others_keep_theirs() {
        let registry = Exemplars::new();
        let s = series(&registry, "/a");
        let start = Instant::now();
        s.record(0.02, ids(1), start);
        s.record(0.021, ids(2), start + Duration::from_millis(5));
        s.record(3.0, ids(3), start + Duration::from_millis(6));
        let read = s.read();
        assert_eq!(read.len(), 2, "{read:?}");
        assert_eq!(
            (read[0].trace_id, read[0].span_id, read[0].value),
            (ids(2).trace_id, ids(2).span_id, 0.021)
        );
        assert_eq!((read[1].trace_id, read[1].value), (ids(3).trace_id, 3.0));
        let age = read[1].timestamp.duration_since(read[0].timestamp).unwrap();
        assert_eq!(age, Duration::from_millis(1), "times kept on the monotonic clock");
        let latest = registry.latest(NAME, &[("http_route", "/a")]);
        assert_eq!(latest[0].trace_id, ids(3).trace_id, "newest first");
        assert!(registry.latest(NAME, &[("http_route", "/b")]).is_empty());
    }

    #[test]
    fn one_label_set_has_one_set_of_slots() {
        let registry = Exemplars::new();
        let a = series(&registry, "/a");
        let again = series(&registry, "/a");
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &series(&registry, "/b")));
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn series_past_the_cap_get_no_slots() {
        let registry = Exemplars::with_capacity(2);
        series(&registry, "/a");
        series(&registry, "/b");
        assert!(registry.series_of(NAME, &[Label::new("http_route", "/c")]).is_none());
        assert!(registry.series_of(NAME, &[Label::new("http_route", "/a")]).is_some(), "known ones stay");
    }

    proptest! {
        #[test]
        fn a_value_lands_in_the_slot_of_its_bucket(value in prop_oneof![
            0.0f64..12.0,
            prop::sample::select(DURATION_BUCKETS.to_vec()),
            Just(1e9),
        ]) {
            let s = series(&Exemplars::new(), "/p");
            s.record(value, ids(7), Instant::now());
            let slot = s.slots.iter().position(|slot| slot.read().is_some()).expect("one slot written");
            let (lower, upper) = bounds_of(slot);
            prop_assert!(lower < value && value <= upper, "{} in slot {} ({}, {}]", value, slot, lower, upper);
            prop_assert_eq!(s.read().len(), 1);
        }
    }

    /// Writers on every core write ids derived from one number; a reader
    /// checks that every id it reads was written whole.
    #[test]
    fn concurrent_writers_never_tear_an_exemplar() {
        let s = series(&Exemplars::new(), "/stress");
        let done = AtomicBool::new(false);
        let (reads, whole) = (AtomicUsize::new(0), AtomicUsize::new(0));
        // The series' own anchor: a time is kept as nanoseconds from it.
        let anchor = s.anchor.instant;
        thread::scope(|scope| {
            let writers: Vec<_> = (0..4u64)
                .map(|w| {
                    let s = &s;
                    scope.spawn(move || {
                        for i in 0..200_000u64 {
                            let n = (w << 32) | i;
                            // Two buckets, shared by all writers: 0.02 and 0.3.
                            let value = if n.is_multiple_of(2) { 0.02 } else { 0.3 };
                            s.record(value, ids(n), anchor + Duration::from_nanos(n));
                        }
                    })
                })
                .collect();
            scope.spawn(|| {
                loop {
                    // One more pass after the writers are done.
                    let last = done.load(Ordering::Acquire);
                    for slot in s.slots.iter() {
                        let Some(read) = slot.read() else { continue };
                        reads.fetch_add(1, Ordering::Relaxed);
                        let n = (read.trace >> 64) as u64;
                        let expected = ids(n);
                        assert_eq!(
                            read.trace,
                            u128::from_be_bytes(expected.trace_id.to_bytes()),
                            "torn trace id"
                        );
                        assert_eq!(
                            read.span,
                            u64::from_be_bytes(expected.span_id.to_bytes()),
                            "torn span id"
                        );
                        assert_eq!(read.value, if n.is_multiple_of(2) { 0.02 } else { 0.3 }, "torn value");
                        assert_eq!(read.nanos, n, "torn time");
                        whole.fetch_add(1, Ordering::Relaxed);
                    }
                    if last {
                        break;
                    }
                }
            });
            for writer in writers {
                writer.join().unwrap();
            }
            done.store(true, Ordering::Release);
        });
        assert!(reads.load(Ordering::Relaxed) > 0, "the reader read something");
        assert_eq!(reads.load(Ordering::Relaxed), whole.load(Ordering::Relaxed));
        assert_eq!(s.read().len(), 2, "both buckets hold an exemplar at the end");
    }
}
