//! Windowed counters and histograms: "how many, and how long, in the last
//! 1 m / 5 m / 15 m", lock-free and in constant memory.
//!
//! Cumulative counters go to Prometheus; the windowed figures that the
//! overview, alerts and dashboard show are computed in-process (DESIGN:
//! "windowed views ... are computed in-process with bounded ring buffers").
//! [`WindowedCounter`] is that ring buffer, for any count: requests, errors,
//! cache hits.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tower_observability::window::{Window, WindowedCounter};
//!
//! let requests = WindowedCounter::new(); // 15 minutes of 1-second slots
//! requests.add(3);
//! assert_eq!(requests.sum(Window::OneMinute.duration()), 3);
//!
//! // Tests (and callers that already read the clock) pass the time in.
//! let t0 = Instant::now();
//! requests.add_at(2, t0 + Duration::from_secs(120));
//! assert_eq!(requests.sum_at(Duration::from_secs(60), t0 + Duration::from_secs(120)), 2);
//! assert_eq!(requests.sum_at(Duration::from_secs(300), t0 + Duration::from_secs(120)), 5);
//! ```
//!
//! # Resolution and error bound
//!
//! Time is cut into slots of one *resolution* (1 s by default), counted from
//! a process-wide origin so that every counter shares slot boundaries. A
//! window of `w` is rounded up to `n = ceil(w / resolution)` slots: the
//! current slot (partly elapsed) and the `n - 1` before it. When `w` is a
//! whole number of slots, as for [`Window`], the slots cover a sub-interval
//! of the last `w` that misses at most its oldest `resolution`: the sum
//! never overcounts, and undercounts by at most the events of one slot
//! (for the 1-minute window at 1-second resolution, at most 1/60 of the
//! window's time).
//!
//! # Memory and concurrency
//!
//! A counter holds `span / resolution` slots of one `AtomicU64` each (900
//! slots, 7.2 KB, by default), allocated once. Each slot packs a 24-bit lap
//! number (which pass of the ring wrote it) with a 40-bit count, and is
//! updated with one compare-and-swap: a writer that finds a slot of an older
//! lap restarts it at its own count, so a slot is never cleared by a timer,
//! and a reader counts a slot only when its lap is the one the reader
//! expects, so stale slots read as zero. Counts saturate at 2^40 - 1 per
//! slot. A slot left untouched for exactly a multiple of 2^24 laps (478
//! years with the default span) would read as current.

mod histogram;

pub use self::histogram::{
    HISTOGRAM_BUCKETS, HISTOGRAM_MAX, HISTOGRAM_MIN, HISTOGRAM_RESOLUTION, HISTOGRAM_SPAN, HistogramSnapshot,
    QUANTILE_RELATIVE_ERROR, WindowedHistogram, bucket_bounds,
};

use std::{
    fmt,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Time covered by [`WindowedCounter::new`]: 15 minutes, the longest
/// [`Window`].
pub const DEFAULT_SPAN: Duration = Duration::from_secs(15 * 60);

/// Slot length of [`WindowedCounter::new`]: 1 second.
pub const DEFAULT_RESOLUTION: Duration = Duration::from_secs(1);

/// The largest number of slots a counter may have (65 536, 512 KiB).
pub const MAX_SLOTS: usize = 1 << 16;

/// The shortest resolution a counter may have: 1 millisecond.
pub const MIN_RESOLUTION: Duration = Duration::from_millis(1);

const COUNT_BITS: u32 = 40;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const LAP_BITS: u32 = 64 - COUNT_BITS;
const LAP_MASK: u64 = (1 << LAP_BITS) - 1;

/// The standard windows of the overview, alerts and dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// The last minute.
    OneMinute,
    /// The last 5 minutes.
    FiveMinutes,
    /// The last 15 minutes.
    FifteenMinutes,
}

impl Window {
    /// All windows, shortest first.
    pub const ALL: [Self; 3] = [Self::OneMinute, Self::FiveMinutes, Self::FifteenMinutes];

    /// The window's length.
    ///
    /// ```
    /// use tower_observability::window::Window;
    ///
    /// assert_eq!(Window::FiveMinutes.duration().as_secs(), 300);
    /// ```
    #[inline]
    #[must_use]
    pub const fn duration(self) -> Duration {
        match self {
            Self::OneMinute => Duration::from_secs(60),
            Self::FiveMinutes => Duration::from_secs(5 * 60),
            Self::FifteenMinutes => Duration::from_secs(15 * 60),
        }
    }

    /// A short label: `1m`, `5m` or `15m` (Prometheus duration notation).
    ///
    /// ```
    /// use tower_observability::window::Window;
    ///
    /// assert_eq!(Window::FifteenMinutes.as_str(), "15m");
    /// ```
    #[inline]
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OneMinute => "1m",
            Self::FiveMinutes => "5m",
            Self::FifteenMinutes => "15m",
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The instant slot numbers count from, shared by every counter of the
/// process so that counters read at one instant agree on slot boundaries.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// A lock-free count of events over a sliding window of recent time.
///
/// See the [module docs](self) for the resolution, the error bound and the
/// memory used. Every method takes `&self`; share a counter with an `Arc`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_observability::window::WindowedCounter;
///
/// // 2 minutes of 100-millisecond slots.
/// let errors = WindowedCounter::with_resolution(Duration::from_secs(120), Duration::from_millis(100));
/// errors.add(1);
/// assert_eq!(errors.sum(Duration::from_secs(10)), 1);
/// assert_eq!(errors.slots(), 1200);
/// ```
pub struct WindowedCounter {
    slots: Box<[AtomicU64]>,
    /// Slot length in nanoseconds, at least 1 ms.
    resolution_nanos: u64,
}

impl WindowedCounter {
    /// A counter of [`DEFAULT_SPAN`] (15 minutes) in slots of
    /// [`DEFAULT_RESOLUTION`] (1 second): 900 slots, 7.2 KB.
    #[must_use]
    pub fn new() -> Self {
        Self::with_resolution(DEFAULT_SPAN, DEFAULT_RESOLUTION)
    }

    /// A counter covering at least `span`, in slots of `resolution`:
    /// `ceil(span / resolution)` slots, at least one.
    ///
    /// # Panics
    ///
    /// If `resolution` is shorter than [`MIN_RESOLUTION`] (1 ms), or if
    /// `span / resolution` exceeds [`MAX_SLOTS`].
    #[must_use]
    pub fn with_resolution(span: Duration, resolution: Duration) -> Self {
        assert!(
            resolution >= MIN_RESOLUTION,
            "WindowedCounter resolution must be at least 1 ms, got {resolution:?}"
        );
        let resolution_nanos = u64::try_from(resolution.as_nanos()).unwrap_or(u64::MAX);
        let slots = span.as_nanos().div_ceil(u128::from(resolution_nanos)).max(1);
        assert!(
            slots <= MAX_SLOTS as u128,
            "WindowedCounter of {span:?} in slots of {resolution:?} needs {slots} slots, more than {MAX_SLOTS}"
        );
        let slots = (0..slots).map(|_| AtomicU64::new(0)).collect();
        Self { slots, resolution_nanos }
    }

    /// The slot length.
    #[must_use]
    pub fn resolution(&self) -> Duration {
        Duration::from_nanos(self.resolution_nanos)
    }

    /// The number of slots (constant).
    #[must_use]
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The longest window the counter can sum: slots times resolution.
    #[must_use]
    pub fn span(&self) -> Duration {
        Duration::from_nanos(self.resolution_nanos.saturating_mul(self.slots.len() as u64))
    }

    /// Adds `n` events now.
    #[inline]
    pub fn add(&self, n: u64) {
        self.add_at(n, Instant::now());
    }

    /// Adds `n` events at `now`, a reading of the monotonic clock.
    ///
    /// Times may go back a little (a caller that read the clock earlier):
    /// events older than the span relative to a later event already counted
    /// in their slot are dropped, since no window can hold them.
    #[inline]
    pub fn add_at(&self, n: u64, now: Instant) {
        if n == 0 {
            return;
        }
        let tick = self.tick(now);
        let (slot, lap) = self.locate(tick);
        let slot = &self.slots[slot];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let next = if current != 0 && lap_of(current) == lap {
                pack(lap, count_of(current).saturating_add(n))
            } else if current == 0 || is_newer(lap, lap_of(current)) {
                pack(lap, n)
            } else {
                return;
            };
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// The events of the last `window`, now. See the module docs for the
    /// rounding; windows longer than [`span`](Self::span) are cut to it.
    #[inline]
    #[must_use]
    pub fn sum(&self, window: Duration) -> u64 {
        self.sum_at(window, Instant::now())
    }

    /// The events of the `window` that ends at `now`, a reading of the
    /// monotonic clock; read several counters at one `now` to compare them.
    #[must_use]
    pub fn sum_at(&self, window: Duration, now: Instant) -> u64 {
        let tick = self.tick(now);
        let wanted = window.as_nanos().div_ceil(u128::from(self.resolution_nanos));
        let slots = wanted.min(self.slots.len() as u128) as u64;
        if slots == 0 {
            return 0;
        }
        let oldest = tick.saturating_sub(slots - 1);
        let (mut slot, mut lap) = self.locate(oldest);
        let mut total = 0u64;
        for _ in oldest..=tick {
            let word = self.slots[slot].load(Ordering::Relaxed);
            if word != 0 && lap_of(word) == lap {
                total = total.saturating_add(count_of(word));
            }
            slot += 1;
            if slot == self.slots.len() {
                slot = 0;
                lap = (lap + 1) & LAP_MASK;
            }
        }
        total
    }

    /// The slot number of `now`, counted from the process origin.
    #[inline]
    fn tick(&self, now: Instant) -> u64 {
        let nanos = u64::try_from(now.saturating_duration_since(origin()).as_nanos()).unwrap_or(u64::MAX);
        nanos / self.resolution_nanos
    }

    /// The ring index and the (masked) lap of a slot number.
    #[inline]
    fn locate(&self, tick: u64) -> (usize, u64) {
        let len = self.slots.len() as u64;
        ((tick % len) as usize, (tick / len) & LAP_MASK)
    }
}

#[inline]
fn pack(lap: u64, count: u64) -> u64 {
    (lap << COUNT_BITS) | count.min(COUNT_MAX)
}

#[inline]
fn lap_of(word: u64) -> u64 {
    word >> COUNT_BITS
}

#[inline]
fn count_of(word: u64) -> u64 {
    word & COUNT_MAX
}

/// Whether lap `a` comes after lap `b`, modulo 2^24.
#[inline]
fn is_newer(a: u64, b: u64) -> bool {
    let ahead = a.wrapping_sub(b) & LAP_MASK;
    ahead != 0 && ahead < (1 << (LAP_BITS - 1))
}

impl Default for WindowedCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for WindowedCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowedCounter")
            .field("slots", &self.slots.len())
            .field("resolution", &self.resolution())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    /// A base instant at a slot boundary, after the origin.
    fn base() -> Instant {
        let origin = origin();
        let elapsed = Instant::now().saturating_duration_since(origin).as_secs() + 1;
        origin + Duration::from_secs(elapsed)
    }

    #[test]
    fn windows_have_standard_lengths_and_labels() {
        let secs: Vec<u64> = Window::ALL.iter().map(|w| w.duration().as_secs()).collect();
        assert_eq!(secs, [60, 300, 900]);
        assert_eq!(Window::OneMinute.to_string(), "1m");
        assert_eq!(Window::FiveMinutes.as_str(), "5m");
    }

    #[test]
    fn default_counter_covers_fifteen_minutes_in_seconds() {
        let c = WindowedCounter::new();
        assert_eq!(c.slots(), 900);
        assert_eq!(c.resolution(), SEC);
        assert_eq!(c.span(), DEFAULT_SPAN);
        assert!(format!("{c:?}").contains("900"));
    }

    #[test]
    fn sums_split_by_window() {
        let c = WindowedCounter::new();
        let t0 = base();
        c.add_at(1, t0); // 10 min before the read
        c.add_at(2, t0 + 7 * 60 * SEC); // 3 min before
        c.add_at(4, t0 + 10 * 60 * SEC - SEC); // 1 s before
        c.add_at(8, t0 + 10 * 60 * SEC); // in the current slot
        let now = t0 + 10 * 60 * SEC + Duration::from_millis(500);
        assert_eq!(c.sum_at(Window::OneMinute.duration(), now), 12);
        assert_eq!(c.sum_at(Window::FiveMinutes.duration(), now), 14);
        assert_eq!(c.sum_at(Window::FifteenMinutes.duration(), now), 15);
        assert_eq!(c.sum_at(Duration::ZERO, now), 0);
        assert_eq!(c.sum_at(Duration::from_secs(3600), now), 15, "cut to the span");
    }

    #[test]
    fn stale_slots_read_as_zero_after_a_lap() {
        let c = WindowedCounter::with_resolution(10 * SEC, SEC);
        let t0 = base();
        c.add_at(5, t0);
        assert_eq!(c.sum_at(10 * SEC, t0 + 9 * SEC), 5);
        // Ten seconds later the slot index is the same but the lap is not.
        assert_eq!(c.sum_at(10 * SEC, t0 + 10 * SEC), 0);
        assert_eq!(c.sum_at(SEC, t0 + 10 * SEC), 0);
        // A write one lap later restarts the slot instead of adding to it.
        c.add_at(3, t0 + 10 * SEC);
        assert_eq!(c.sum_at(SEC, t0 + 10 * SEC), 3);
        // An event older than the span relative to that slot is dropped.
        c.add_at(7, t0);
        assert_eq!(c.sum_at(SEC, t0 + 10 * SEC), 3);
        assert_eq!(c.sum_at(SEC, t0), 0, "the old lap was overwritten");
    }

    #[test]
    fn error_is_at_most_the_oldest_slot_and_never_an_overcount() {
        let c = WindowedCounter::new();
        let t0 = base();
        // One event every 100 ms for two minutes.
        for i in 0..1200u64 {
            c.add_at(1, t0 + Duration::from_millis(100 * i));
        }
        let now = t0 + Duration::from_millis(119_950);
        let exact = (0..1200u64).filter(|i| 100 * i > 119_950 - 60_000).count() as u64;
        let got = c.sum_at(Window::OneMinute.duration(), now);
        assert!(got <= exact && exact - got <= 10, "got {got}, exact {exact}");
    }

    #[test]
    fn times_before_the_origin_count_in_the_first_slot() {
        let c = WindowedCounter::new();
        let early = origin().checked_sub(SEC).unwrap_or_else(origin);
        c.add_at(1, early);
        assert_eq!(c.sum_at(SEC, origin()), 1);
    }

    #[test]
    fn counts_saturate_per_slot() {
        let c = WindowedCounter::new();
        let t0 = base();
        c.add_at(u64::MAX, t0);
        c.add_at(u64::MAX, t0);
        assert_eq!(c.sum_at(SEC, t0), COUNT_MAX);
        c.add_at(u64::MAX, t0 + SEC);
        assert_eq!(c.sum_at(2 * SEC, t0 + SEC), 2 * COUNT_MAX);
    }

    #[test]
    fn laps_compare_modulo_their_width() {
        assert!(is_newer(1, 0));
        assert!(!is_newer(0, 1));
        assert!(!is_newer(3, 3));
        assert!(is_newer(0, LAP_MASK), "wraps around");
        assert!(!is_newer(LAP_MASK, 0));
    }

    #[test]
    #[should_panic(expected = "at least 1 ms")]
    fn zero_resolution_is_refused() {
        let _ = WindowedCounter::with_resolution(SEC, Duration::ZERO);
    }

    #[test]
    #[should_panic(expected = "more than")]
    fn too_many_slots_are_refused() {
        let _ = WindowedCounter::with_resolution(Duration::from_secs(3600), Duration::from_millis(1));
    }

    #[test]
    fn concurrent_adds_are_not_lost() {
        let c = Arc::new(WindowedCounter::new());
        let t0 = base();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        c.add_at(1, t0 + Duration::from_millis(i % 3000));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.sum_at(Window::OneMinute.duration(), t0 + 3 * SEC), 40_000);
    }

    #[test]
    fn traits() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<WindowedCounter>();
        assert_send_sync::<Window>();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add { advance_ms: u64, n: u64 },
        Sum { advance_ms: u64, window_ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..2_500u64, 1..1_000u64).prop_map(|(advance_ms, n)| Op::Add { advance_ms, n }),
            1 => (0..2_500u64, 0..30_000u64).prop_map(|(advance_ms, window_ms)| Op::Sum { advance_ms, window_ms }),
        ]
    }

    proptest! {
        /// Against a naive model that keeps every event: the sum of the
        /// events whose slot lies within the last `ceil(window / res)` slots
        /// (at most the ring's length).
        #[test]
        fn matches_a_naive_model(
            slots in 1u64..20,
            resolution_ms in prop_oneof![Just(1_000u64), Just(250), Just(7)],
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let resolution = Duration::from_millis(resolution_ms);
            let c = WindowedCounter::with_resolution(resolution * slots as u32, resolution);
            prop_assert_eq!(c.slots() as u64, slots);
            let t0 = base();
            let tick = |at: Duration| (t0 + at).saturating_duration_since(origin()).as_nanos() as u64
                / (resolution_ms * 1_000_000);
            let mut elapsed = Duration::ZERO;
            let mut events: Vec<(u64, u64)> = Vec::new();
            for op in ops {
                match op {
                    Op::Add { advance_ms, n } => {
                        elapsed += Duration::from_millis(advance_ms);
                        c.add_at(n, t0 + elapsed);
                        events.push((tick(elapsed), n));
                    }
                    Op::Sum { advance_ms, window_ms } => {
                        elapsed += Duration::from_millis(advance_ms);
                        let now = tick(elapsed);
                        let wanted = window_ms.div_ceil(resolution_ms).min(slots);
                        let expected: u64 = events
                            .iter()
                            .filter(|(t, _)| wanted > 0 && *t <= now && *t + wanted > now)
                            .map(|(_, n)| n)
                            .sum();
                        prop_assert_eq!(c.sum_at(Duration::from_millis(window_ms), t0 + elapsed), expected);
                    }
                }
            }
        }
    }
}
