//! [`WindowedHistogram`]: a latency distribution over the last 1, 5 and 15
//! minutes, lock-free, in constant memory, from which quantiles are estimated.

use std::{
    fmt,
    time::{Duration, Instant},
};

use super::{Window, WindowedCounter};

/// Number of buckets of a [`WindowedHistogram`]: 62 log-spaced buckets
/// between [`HISTOGRAM_MIN`] and [`HISTOGRAM_MAX`], one below, one above.
pub const HISTOGRAM_BUCKETS: usize = 64;

/// Slot length of [`WindowedHistogram::new`]: 10 seconds.
pub const HISTOGRAM_RESOLUTION: Duration = Duration::from_secs(10);

/// Time covered by [`WindowedHistogram::new`]: 15 minutes.
pub const HISTOGRAM_SPAN: Duration = Duration::from_secs(15 * 60);

/// The lower bound of the first log-spaced bucket: 2^-14 s (about 61 µs).
/// Quantiles that fall below it read as this value.
pub const HISTOGRAM_MIN: f64 = 1.0 / 16384.0;

/// The upper bound of the last log-spaced bucket: 2^(6 + 2/3) s (about
/// 101.6 s). Quantiles that fall above it read as this value.
pub const HISTOGRAM_MAX: f64 = 64.0 * CBRT_4;

/// The largest relative error of a quantile estimate for values between
/// [`HISTOGRAM_MIN`] and [`HISTOGRAM_MAX`]: `(γ - 1) / (γ + 1)` with the
/// bucket growth factor `γ = 2^(1/3)`, about 0.115 (11.5 %).
pub const QUANTILE_RELATIVE_ERROR: f64 = (CBRT_2 - 1.0) / (CBRT_2 + 1.0);

/// 2^(1/3), the growth factor of the buckets: three buckets per doubling.
const CBRT_2: f64 = 1.259_921_049_894_873_2;
/// 2^(2/3).
const CBRT_4: f64 = 1.587_401_051_968_199_4;
/// The mantissa bound of each third of an octave.
const THIRDS: [f64; 3] = [1.0, CBRT_2, CBRT_4];
/// `log2(HISTOGRAM_MIN)`.
const MIN_EXPONENT: i32 = -14;

/// A lock-free histogram of durations over a sliding window of recent time,
/// for quantiles (p50, p95, p99) over the last 1, 5 and 15 minutes.
///
/// # Buckets and error bound
///
/// Values (seconds) fall into [`HISTOGRAM_BUCKETS`] fixed buckets: below
/// [`HISTOGRAM_MIN`] (61 µs), 62 buckets growing by `γ = 2^(1/3)` (three per
/// doubling) up to [`HISTOGRAM_MAX`] (101.6 s), and above. The `q`-quantile
/// is the `ceil(q·n)`-th smallest of the `n` values in the window; the
/// estimate is the bucket holding it, read as `2ab / (a + b)` for its
/// bounds `a` and `b = γa`. Between the bounds its relative error is at
/// most [`QUANTILE_RELATIVE_ERROR`], `(γ - 1) / (γ + 1)` = 11.5 %; below
/// and above, it reads as the bound itself.
///
/// # Time, memory and concurrency
///
/// Each bucket is a [`WindowedCounter`] of 10-second slots over 15 minutes
/// ([`HISTOGRAM_RESOLUTION`], [`HISTOGRAM_SPAN`]): 90 slots of one
/// `AtomicU64`, 64 × 744 B = 47.6 KB for the histogram, allocated once.
/// Recording a value is one compare-and-swap on one slot: no lock, no
/// allocation. A window is rounded up to whole slots the way
/// [`WindowedCounter`] rounds it: the 1-minute window holds the values of
/// the current (partial) slot and the 5 before it, that is of the last 50
/// to 60 seconds; the 5 and 15-minute windows miss at most their oldest
/// 10 seconds.
///
/// # Example
///
/// ```
/// use tower_observability::window::{Window, WindowedHistogram};
///
/// let latency = WindowedHistogram::new();
/// for ms in 1..=100 {
///     latency.record(f64::from(ms) / 1000.0);
/// }
/// let last_minute = latency.snapshot(Window::OneMinute);
/// assert_eq!(last_minute.count(), 100);
/// let p95 = last_minute.quantile(0.95).unwrap();
/// assert!((p95 - 0.095).abs() <= 0.095 * 0.115, "{p95}");
/// ```
pub struct WindowedHistogram {
    buckets: Box<[WindowedCounter]>,
}

impl WindowedHistogram {
    /// A histogram of [`HISTOGRAM_SPAN`] (15 minutes) in slots of
    /// [`HISTOGRAM_RESOLUTION`] (10 seconds).
    #[must_use]
    pub fn new() -> Self {
        Self::with_resolution(HISTOGRAM_SPAN, HISTOGRAM_RESOLUTION)
    }

    /// A histogram covering at least `span` in slots of `resolution`, as
    /// [`WindowedCounter::with_resolution`]; memory is 64 times that of one
    /// counter.
    ///
    /// # Panics
    ///
    /// As [`WindowedCounter::with_resolution`]: if `resolution` is shorter
    /// than 1 ms or `span / resolution` exceeds
    /// [`MAX_SLOTS`](crate::window::MAX_SLOTS).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_observability::window::WindowedHistogram;
    ///
    /// let h = WindowedHistogram::with_resolution(Duration::from_secs(60), Duration::from_secs(1));
    /// assert_eq!(h.resolution(), Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn with_resolution(span: Duration, resolution: Duration) -> Self {
        let buckets =
            (0..HISTOGRAM_BUCKETS).map(|_| WindowedCounter::with_resolution(span, resolution)).collect();
        Self { buckets }
    }

    /// The slot length.
    #[must_use]
    pub fn resolution(&self) -> Duration {
        self.buckets[0].resolution()
    }

    /// The longest window the histogram holds.
    #[must_use]
    pub fn span(&self) -> Duration {
        self.buckets[0].span()
    }

    /// The heap bytes of its slots: 64 buckets of one `u64` per slot
    /// (46 KB by default).
    ///
    /// ```
    /// let h = tower_observability::window::WindowedHistogram::new();
    /// assert_eq!(h.heap_bytes(), 64 * 90 * 8);
    /// ```
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.buckets.iter().map(|b| b.slots() * size_of::<u64>()).sum()
    }

    /// Records one value, in seconds, now.
    #[inline]
    pub fn record(&self, seconds: f64) {
        self.record_at(seconds, Instant::now());
    }

    /// Records one value, in seconds, at `now`, a reading of the monotonic
    /// clock. Negative and NaN values count in the lowest bucket.
    #[inline]
    pub fn record_at(&self, seconds: f64, now: Instant) {
        self.buckets[bucket_index(seconds)].add_at(1, now);
    }

    /// The values of one of the standard windows, now.
    #[must_use]
    pub fn snapshot(&self, window: Window) -> HistogramSnapshot {
        self.snapshot_at(window.duration(), Instant::now())
    }

    /// The values of the `window` that ends at `now`.
    #[must_use]
    pub fn snapshot_at(&self, window: Duration, now: Instant) -> HistogramSnapshot {
        let mut counts = [0u64; HISTOGRAM_BUCKETS];
        for (count, bucket) in counts.iter_mut().zip(self.buckets.iter()) {
            *count = bucket.sum_at(window, now);
        }
        HistogramSnapshot { counts }
    }
}

impl Default for WindowedHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for WindowedHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowedHistogram")
            .field("buckets", &self.buckets.len())
            .field("slots", &self.buckets[0].slots())
            .field("resolution", &self.resolution())
            .finish()
    }
}

/// The bucket counts of a [`WindowedHistogram`] over one window.
///
/// # Example
///
/// ```
/// use tower_observability::window::{Window, WindowedHistogram};
///
/// let h = WindowedHistogram::new();
/// assert_eq!(h.snapshot(Window::OneMinute).quantile(0.5), None, "no values");
/// h.record(0.2);
/// let p50 = h.snapshot(Window::OneMinute).quantile(0.5).unwrap();
/// assert!((p50 - 0.2).abs() / 0.2 <= tower_observability::window::QUANTILE_RELATIVE_ERROR);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    counts: [u64; HISTOGRAM_BUCKETS],
}

impl HistogramSnapshot {
    /// No values.
    pub(crate) fn empty() -> Self {
        Self { counts: [0; HISTOGRAM_BUCKETS] }
    }

    /// Adds the values of `other`: the snapshot of both histograms' values,
    /// exactly, since they share their buckets.
    pub(crate) fn merge(&mut self, other: &Self) {
        for (count, more) in self.counts.iter_mut().zip(other.counts) {
            *count = count.saturating_add(more);
        }
    }

    /// The number of values.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |n, c| n.saturating_add(*c))
    }

    /// The counts of the buckets, lowest first; see [`bucket_bounds`].
    #[must_use]
    pub fn counts(&self) -> &[u64; HISTOGRAM_BUCKETS] {
        &self.counts
    }

    /// The estimated `q`-quantile in seconds (`q` clamped to 0..=1): the
    /// `ceil(q·n)`-th smallest value (the smallest for `q = 0`), within
    /// [`QUANTILE_RELATIVE_ERROR`] between [`HISTOGRAM_MIN`] and
    /// [`HISTOGRAM_MAX`]. `None` without values or for a NaN `q`.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if q.is_nan() {
            return None;
        }
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for (index, count) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(*count);
            if seen >= rank {
                return Some(estimate(index));
            }
        }
        Some(estimate(HISTOGRAM_BUCKETS - 1))
    }
}

impl fmt::Debug for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramSnapshot")
            .field("count", &self.count())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

/// The bounds `[lower, upper)` in seconds of bucket `index` of a
/// [`WindowedHistogram`]: `[0, HISTOGRAM_MIN)` for the first,
/// `[HISTOGRAM_MAX, inf)` for the last.
///
/// # Panics
///
/// If `index` is not below [`HISTOGRAM_BUCKETS`].
///
/// # Example
///
/// ```
/// use tower_observability::window::{HISTOGRAM_MIN, bucket_bounds};
///
/// assert_eq!(bucket_bounds(0), (0.0, HISTOGRAM_MIN));
/// let (a, b) = bucket_bounds(1);
/// assert!((b / a - 2f64.cbrt()).abs() < 1e-12);
/// ```
#[must_use]
pub fn bucket_bounds(index: usize) -> (f64, f64) {
    assert!(index < HISTOGRAM_BUCKETS, "bucket {index} out of range");
    match index {
        0 => (0.0, HISTOGRAM_MIN),
        i if i == HISTOGRAM_BUCKETS - 1 => (HISTOGRAM_MAX, f64::INFINITY),
        i => (lower_bound(i), lower_bound(i + 1)),
    }
}

/// The lower bound of a log-spaced bucket, `1..=HISTOGRAM_BUCKETS - 1`:
/// `2^(e) · 2^(r/3)`, exactly the value [`bucket_index`] compares against.
fn lower_bound(index: usize) -> f64 {
    let j = index - 1;
    let exponent = (j / 3) as i32 + MIN_EXPONENT;
    2f64.powi(exponent) * THIRDS[j % 3]
}

/// The value a bucket reads as: `2ab / (a + b)`, equally far (relatively)
/// from both bounds; the bound itself for the two open buckets.
fn estimate(index: usize) -> f64 {
    match bucket_bounds(index) {
        (_, upper) if index == 0 => upper,
        (lower, _) if index == HISTOGRAM_BUCKETS - 1 => lower,
        (a, b) => 2.0 * a * b / (a + b),
    }
}

/// The bucket of a value in seconds, from its binary exponent and mantissa:
/// no logarithm, a few instructions.
#[inline]
pub(crate) fn bucket_index(seconds: f64) -> usize {
    if seconds.is_nan() || seconds < HISTOGRAM_MIN {
        return 0;
    }
    if seconds >= HISTOGRAM_MAX {
        return HISTOGRAM_BUCKETS - 1;
    }
    // `seconds` is a normal number between 2^-14 and 2^7.
    let bits = seconds.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mantissa = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    let third = if mantissa < CBRT_2 {
        0
    } else if mantissa < CBRT_4 {
        1
    } else {
        2
    };
    (1 + 3 * (exponent - MIN_EXPONENT) as usize + third).min(HISTOGRAM_BUCKETS - 2)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn constants_agree() {
        assert!((CBRT_2 - 2f64.cbrt()).abs() < 1e-15);
        assert!((CBRT_4 - 4f64.cbrt()).abs() < 1e-15);
        assert!((QUANTILE_RELATIVE_ERROR - 0.115_014).abs() < 1e-6);
        assert_eq!(lower_bound(HISTOGRAM_BUCKETS - 1), HISTOGRAM_MAX);
        assert_eq!(lower_bound(1), HISTOGRAM_MIN);
        assert!((HISTOGRAM_MAX - 101.593_667).abs() < 1e-5);
    }

    #[test]
    fn buckets_are_contiguous_and_grow_by_the_cube_root_of_two() {
        let mut previous_upper = 0.0;
        for i in 0..HISTOGRAM_BUCKETS {
            let (lower, upper) = bucket_bounds(i);
            assert_eq!(lower, previous_upper, "bucket {i}");
            if (1..HISTOGRAM_BUCKETS - 1).contains(&i) {
                assert!((upper / lower - CBRT_2).abs() < 1e-12, "bucket {i}");
                assert_eq!(bucket_index(lower), i, "lower bound of {i}");
                assert_eq!(bucket_index(upper.next_down()), i, "just below the upper bound of {i}");
                let e = estimate(i);
                assert!(lower < e && e < upper);
            }
            previous_upper = upper;
        }
        assert_eq!(previous_upper, f64::INFINITY);
    }

    #[test]
    fn out_of_range_values_go_to_the_open_buckets() {
        for v in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY, 1e-9, HISTOGRAM_MIN.next_down()] {
            assert_eq!(bucket_index(v), 0, "{v}");
        }
        for v in [HISTOGRAM_MAX, 1e9, f64::INFINITY] {
            assert_eq!(bucket_index(v), HISTOGRAM_BUCKETS - 1, "{v}");
        }
        let h = WindowedHistogram::new();
        let now = Instant::now();
        h.record_at(1e-7, now);
        assert_eq!(h.snapshot_at(SEC, now).quantile(0.5), Some(HISTOGRAM_MIN));
        h.record_at(1e6, now);
        h.record_at(1e6, now);
        assert_eq!(h.snapshot_at(SEC, now).quantile(0.99), Some(HISTOGRAM_MAX));
    }

    #[test]
    fn default_histogram_is_bounded() {
        let h = WindowedHistogram::new();
        assert_eq!((h.resolution(), h.span()), (HISTOGRAM_RESOLUTION, HISTOGRAM_SPAN));
        assert_eq!(h.buckets.len() * h.buckets[0].slots(), 64 * 90);
        let bytes = h.buckets.len() * (h.buckets[0].slots() * 8 + size_of::<WindowedCounter>());
        assert!(bytes <= 48 * 1024, "{bytes} bytes");
        assert!(format!("{h:?}").contains("slots: 90"));
    }

    #[test]
    fn quantiles_follow_ranks() {
        let h = WindowedHistogram::new();
        let now = Instant::now();
        // 90 fast (10 ms) and 10 slow (200 ms).
        for i in 0..100 {
            h.record_at(if i < 90 { 0.010 } else { 0.200 }, now);
        }
        let s = h.snapshot_at(Window::OneMinute.duration(), now);
        assert_eq!(s.count(), 100);
        let within = |got: Option<f64>, exact: f64| {
            let got = got.unwrap();
            assert!((got - exact).abs() / exact <= QUANTILE_RELATIVE_ERROR, "{got} vs {exact}");
        };
        within(s.quantile(0.5), 0.010);
        within(s.quantile(0.90), 0.010);
        within(s.quantile(0.91), 0.200);
        within(s.quantile(0.95), 0.200);
        within(s.quantile(0.0), 0.010);
        within(s.quantile(7.0), 0.200);
        assert_eq!(s.quantile(f64::NAN), None);
        assert!(format!("{s:?}").contains("count: 100"));
    }

    #[test]
    fn windows_expire_with_an_injected_clock() {
        let h = WindowedHistogram::new();
        let t0 = Instant::now();
        // Slow requests 10 minutes ago, fast ones 3 minutes ago, and now.
        for _ in 0..10 {
            h.record_at(2.0, t0);
        }
        for _ in 0..20 {
            h.record_at(0.050, t0 + 7 * 60 * SEC);
        }
        for _ in 0..30 {
            h.record_at(0.001, t0 + 10 * 60 * SEC);
        }
        let now = t0 + 10 * 60 * SEC + SEC;
        let count = |w: Window| h.snapshot_at(w.duration(), now).count();
        assert_eq!(count(Window::OneMinute), 30);
        assert_eq!(count(Window::FiveMinutes), 50);
        assert_eq!(count(Window::FifteenMinutes), 60);
        let p99 = |w: Window| h.snapshot_at(w.duration(), now).quantile(0.99).unwrap();
        assert!(p99(Window::OneMinute) < 0.0012);
        assert!((p99(Window::FiveMinutes) - 0.050).abs() / 0.050 <= QUANTILE_RELATIVE_ERROR + 1e-12);
        assert!((p99(Window::FifteenMinutes) - 2.0).abs() / 2.0 <= QUANTILE_RELATIVE_ERROR + 1e-12);
        // 16 minutes on, everything has aged out.
        let later = t0 + 26 * 60 * SEC;
        assert_eq!(h.snapshot_at(Window::FifteenMinutes.duration(), later).count(), 0);
        assert_eq!(h.snapshot_at(Window::FifteenMinutes.duration(), later).quantile(0.5), None);
    }

    #[test]
    fn one_minute_holds_the_last_fifty_to_sixty_seconds() {
        let h = WindowedHistogram::new();
        let t0 = Instant::now();
        for s in 0..120u32 {
            h.record_at(0.01, t0 + s * SEC);
        }
        let got = h.snapshot_at(Window::OneMinute.duration(), t0 + 119 * SEC).count();
        assert!((50..=60).contains(&got), "{got}");
    }

    #[test]
    fn traits() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<WindowedHistogram>();
        assert_send_sync::<HistogramSnapshot>();
    }

    proptest! {
        /// Against the exact quantile of the recorded values: the estimate
        /// of the `ceil(q·n)`-th smallest value is within the documented
        /// relative error.
        #[test]
        fn quantiles_are_within_the_documented_error(
            log_values in proptest::collection::vec(HISTOGRAM_MIN.log2()..HISTOGRAM_MAX.log2(), 1..400),
            q in prop_oneof![Just(0.5), Just(0.95), Just(0.99), 0.0..=1.0f64],
        ) {
            let h = WindowedHistogram::new();
            let now = Instant::now();
            let mut values: Vec<f64> = log_values.iter().map(|l| l.exp2()).collect();
            for v in &values {
                h.record_at(*v, now);
            }
            values.sort_by(f64::total_cmp);
            let n = values.len();
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            let exact = values[rank - 1];
            let got = h.snapshot_at(Window::OneMinute.duration(), now).quantile(q).unwrap();
            prop_assert!(
                (got - exact).abs() / exact <= QUANTILE_RELATIVE_ERROR + 1e-12,
                "q {} of {} values: got {}, exact {}", q, n, got, exact
            );
        }

        #[test]
        fn every_value_lands_in_its_bucket(v in 0.0..200.0f64) {
            let (lower, upper) = bucket_bounds(bucket_index(v));
            prop_assert!(lower <= v && v < upper, "{} not in [{}, {})", v, lower, upper);
        }
    }
}
