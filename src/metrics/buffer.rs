//! A route's series and windows, and the finished requests waiting to be
//! written into them: gathered per thread, written in batches (see
//! [`flush`](super::flush)), so that the workers serving one route do not
//! each write its histograms and windows per request.

use std::{
    fmt,
    sync::{Arc, Mutex, OnceLock, Weak},
    time::Instant,
};

use super::{
    exemplar::SampledIds,
    flush::{self, Flush},
    series::{Measurement, RouteSeries, SeriesKey},
    stats::{HttpStats, RouteWindows},
};
use crate::shard::{self, Padded, lock};

/// The most finished requests a thread's buffer holds: the request that
/// fills it writes them out.
pub(crate) const BUFFERED_REQUESTS: usize = 32;

/// Entries gathered per thread, one `Vec` per shard, handed to a writer in
/// batches: by the push that fills a shard's ([`BUFFERED_REQUESTS`]), and
/// by [`drain`](Self::drain). The writer runs with the shard's lock held,
/// so that a drain that finds a shard empty knows its entries are written.
/// The HTTP routes' and the gRPC methods' buffers.
#[derive(Debug)]
pub(crate) struct Batches<E>(Box<[Padded<Mutex<Vec<E>>>]>);

impl<E> Batches<E> {
    pub(crate) fn new() -> Self {
        Self(shard::shards(|| Mutex::new(Vec::new())))
    }

    /// Adds `entry` to the calling thread's shard; `write` gets the shard's
    /// entries when it is full.
    #[inline]
    pub(crate) fn push(&self, entry: E, write: impl FnOnce(&[E])) {
        let mut entries = lock(shard::mine(&self.0));
        if entries.capacity() == 0 {
            entries.reserve_exact(BUFFERED_REQUESTS);
        }
        entries.push(entry);
        if entries.len() >= BUFFERED_REQUESTS {
            write(&entries);
            entries.clear();
        }
    }

    /// Hands `write` the entries of each shard that holds any.
    pub(crate) fn drain(&self, mut write: impl FnMut(&[E])) {
        for shard in self.0.iter() {
            let mut entries = lock(shard);
            if !entries.is_empty() {
                write(&entries);
                entries.clear();
            }
        }
    }

    /// The entries waiting in all shards.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.0.iter().map(|shard| lock(shard).len()).sum()
    }
}

/// A finished request waiting in a buffer.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The slot of its series in the route's [`RouteSeries`].
    slot: u8,
    error: bool,
    m: Measurement,
    /// When it ended.
    at: Instant,
    /// Its span's ids, when sampled and its series keeps exemplars.
    exemplar: Option<SampledIds>,
}

/// The series and windows of one route label, and the buffers of its
/// finished requests, one per shard.
pub(crate) struct RouteBuffer {
    series: RouteSeries,
    stats: HttpStats,
    /// Found in the layer's [`HttpStats`] at the route's first request, so
    /// that a label shows there only once requests were given it.
    windows: OnceLock<Arc<RouteWindows>>,
    batches: Batches<Entry>,
}

impl RouteBuffer {
    /// The buffered series and windows of a route, flushed by
    /// [`flush`](super::flush) while they live.
    pub(crate) fn new(series: RouteSeries, stats: HttpStats) -> Arc<Self> {
        let buffer = Self::unregistered(series, stats);
        let weak: Weak<dyn Flush> = Arc::downgrade(&buffer) as Weak<dyn Flush>;
        flush::register(weak);
        buffer
    }

    /// A buffer that only fills and drops write out (for the tests).
    fn unregistered(series: RouteSeries, stats: HttpStats) -> Arc<Self> {
        Arc::new(Self { series, stats, windows: OnceLock::new(), batches: Batches::new() })
    }

    /// The route's series.
    #[inline]
    pub(crate) fn series(&self) -> &RouteSeries {
        &self.series
    }

    /// The route's windows.
    #[inline]
    pub(crate) fn windows(&self) -> &RouteWindows {
        self.windows.get_or_init(|| self.stats.windows_of(self.series.label()))
    }

    /// Records a finished request that took `m.seconds`, failed or not, and
    /// ended `at`, into the thread's buffer, with its exemplar (`sampled`
    /// gives its span's ids when sampled; asked only when the series keeps
    /// exemplars). Its series is found, and registered with the recorder in
    /// scope when new, here.
    #[inline]
    pub(crate) fn record(
        &self,
        key: SeriesKey,
        m: Measurement,
        error: bool,
        at: Instant,
        sampled: impl Fn() -> Option<SampledIds>,
    ) {
        let Some((slot, series)) = self.series.slot_of(&key) else {
            // Beyond the slots (rare): at once.
            self.series.record_beyond_slots(key, |series| {
                series.record(&m);
                series.exemplar(m.seconds, at, &sampled);
            });
            self.stats.record(&self.windows().stats, self.series.label(), m.seconds, error, at);
            return;
        };
        let exemplar = if series.exemplars.is_some() { sampled() } else { None };
        let windows = self.windows();
        self.batches.push(Entry { slot, error, m, at, exemplar }, |entries| self.write(windows, entries));
    }

    /// Writes `entries` into the series and windows (with the shard's lock
    /// held, see [`Batches`]).
    fn write(&self, windows: &RouteWindows, entries: &[Entry]) {
        let label = self.series.label();
        for entry in entries.iter() {
            if let Some(series) = self.series.in_slot(entry.slot) {
                series.record(&entry.m);
                series.exemplar(entry.m.seconds, entry.at, || entry.exemplar);
            }
            self.stats.record(&windows.stats, label, entry.m.seconds, entry.error, entry.at);
        }
    }
}

impl Flush for RouteBuffer {
    fn flush(&self) {
        self.batches.drain(|entries| self.write(self.windows(), entries));
    }
}

impl Drop for RouteBuffer {
    fn drop(&mut self) {
        self.flush();
    }
}

impl fmt::Debug for RouteBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteBuffer").field("route", &self.series.label()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use http::StatusCode;

    use super::*;
    use crate::{labeler::LabelValues, metrics::series::SeriesLabels, semconv::KnownMethod};

    fn key() -> SeriesKey {
        SeriesKey {
            method: KnownMethod::of(&http::Method::GET),
            https: false,
            version: http::Version::HTTP_11,
            server: None,
            status: Some(StatusCode::OK),
            error: None,
            labels: LabelValues::default(),
        }
    }

    fn m(seconds: f64) -> Measurement {
        Measurement { seconds, request_bytes: 1, response_bytes: 2, first_byte_seconds: None }
    }

    fn counted(stats: &HttpStats) -> u64 {
        stats.window(crate::window::Window::OneMinute).requests
    }

    /// A route's buffer and the figures it writes into.
    fn route(label: &str) -> (HttpStats, Arc<RouteBuffer>) {
        let stats = HttpStats::new();
        let buffer =
            RouteBuffer::new(RouteSeries::new(label, false, SeriesLabels::default(), None), stats.clone());
        (stats, buffer)
    }

    #[test]
    fn requests_wait_until_the_request_that_fills_the_buffer_writes_it_out() {
        let stats = HttpStats::new();
        // Not flushed by the thread: only filling and flushing write.
        let buffer =
            RouteBuffer::unregistered(RouteSeries::new("/b", false, SeriesLabels::default(), None), stats);
        let written = || buffer.windows().stats.requests_at(crate::window::Window::OneMinute, Instant::now());
        let waiting = || buffer.batches.waiting();
        let now = Instant::now();
        for _ in 0..BUFFERED_REQUESTS - 1 {
            buffer.record(key(), m(0.1), false, now, || None);
        }
        assert_eq!((waiting(), written()), (BUFFERED_REQUESTS - 1, 0));
        buffer.record(key(), m(0.1), false, now, || None);
        assert_eq!((waiting(), written()), (0, BUFFERED_REQUESTS as u64));
        buffer.record(key(), m(0.1), true, now, || None);
        buffer.flush();
        assert_eq!((waiting(), written()), (0, BUFFERED_REQUESTS as u64 + 1));
    }

    #[test]
    fn reading_the_figures_flushes_first() {
        let (stats, buffer) = route("/r");
        buffer.record(key(), m(0.1), true, Instant::now(), || None);
        assert_eq!(counted(&stats), 1);
    }

    #[test]
    fn every_request_of_many_threads_is_written_once() {
        let (stats, buffer) = route("/t");
        let now = Instant::now();
        thread::scope(|s| {
            for _ in 0..4 {
                let buffer = &buffer;
                s.spawn(move || {
                    for i in 0..1_001 {
                        buffer.record(key(), m(0.001), i % 10 == 0, now, || None);
                    }
                });
            }
        });
        let window = stats.window(crate::window::Window::OneMinute);
        assert_eq!((window.requests, window.errors), (4 * 1_001, 4 * 101));
    }

    #[test]
    fn a_dropped_route_writes_what_waits() {
        let (stats, buffer) = route("/d");
        buffer.record(key(), m(0.1), false, Instant::now(), || None);
        drop(buffer);
        assert_eq!(counted(&stats), 1);
    }
}
