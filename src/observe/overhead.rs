//! The layers' own time per request, measured on a sample: the request
//! side (context, route lookup, every part's start) and the end side
//! (classification and every part's end), on 1 request in
//! [`SAMPLE_EVERY`] per thread, so that the measurement itself costs one
//! thread-local increment on the other requests.

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// One request in this many is timed, on each thread.
pub const SAMPLE_EVERY: u32 = 64;

static REQUEST_SAMPLES: AtomicU64 = AtomicU64::new(0);
static REQUEST_NANOS: AtomicU64 = AtomicU64::new(0);
static END_SAMPLES: AtomicU64 = AtomicU64::new(0);
static END_NANOS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Request sides and end sides seen on this thread: two counters, so
    /// that each side is sampled whatever the other does.
    static COUNTERS: [Cell<u32>; 2] = const { [Cell::new(0), Cell::new(0)] };
}

/// The side of a request a sample times.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Request = 0,
    End = 1,
}

/// `Some(now)` on 1 call in [`SAMPLE_EVERY`] for `side` on this thread.
#[inline]
pub(crate) fn sample(side: Side) -> Option<Instant> {
    let due = COUNTERS.with(|c| {
        let c = &c[side as usize];
        let n = c.get().wrapping_add(1);
        c.set(n);
        n.is_multiple_of(SAMPLE_EVERY)
    });
    due.then(Instant::now)
}

/// Adds one sampled request side that began at `started`.
#[inline]
pub(crate) fn record_request(started: Instant) {
    add(&REQUEST_SAMPLES, &REQUEST_NANOS, started.elapsed());
}

/// Adds one sampled end side that began at `started`.
#[inline]
pub(crate) fn record_end(started: Instant) {
    add(&END_SAMPLES, &END_NANOS, started.elapsed());
}

fn add(samples: &AtomicU64, nanos: &AtomicU64, took: Duration) {
    samples.fetch_add(1, Ordering::Relaxed);
    nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// The layers' own time per request, measured in this process on 1
/// request in [`SAMPLE_EVERY`] (per thread) by every layer of the crate:
/// the work before the inner service is called, and the work when the
/// response body ends. The application's handler and the body's transfer
/// are not in it.
///
/// # Example
///
/// ```
/// let overhead = tower_observability::observe::layer_overhead();
/// assert_eq!(overhead.sample_every, 64);
/// if overhead.sampled_requests == 0 {
///     assert_eq!(overhead.mean_request_seconds, None);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LayerOverhead {
    /// One request in this many is timed.
    pub sample_every: u32,
    /// Requests whose request side was timed.
    pub sampled_requests: u64,
    /// The mean time of the request side, in seconds; `None` before the
    /// first sample.
    pub mean_request_seconds: Option<f64>,
    /// Request ends timed.
    pub sampled_ends: u64,
    /// The mean time of the end side, in seconds; `None` before the first
    /// sample.
    pub mean_end_seconds: Option<f64>,
}

/// The sampled time of the crate's layers so far, process-wide.
#[must_use]
pub fn layer_overhead() -> LayerOverhead {
    let mean = |samples: u64, nanos: &AtomicU64| {
        (samples > 0).then(|| nanos.load(Ordering::Relaxed) as f64 / samples as f64 / 1e9)
    };
    let requests = REQUEST_SAMPLES.load(Ordering::Relaxed);
    let ends = END_SAMPLES.load(Ordering::Relaxed);
    LayerOverhead {
        sample_every: SAMPLE_EVERY,
        sampled_requests: requests,
        mean_request_seconds: mean(requests, &REQUEST_NANOS),
        sampled_ends: ends,
        mean_end_seconds: mean(ends, &END_NANOS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_in_sample_every_is_timed_per_side_and_thread() {
        std::thread::spawn(|| {
            // Interleaved as requests are: each side gets its samples.
            let (mut requests, mut ends) = (0, 0);
            for _ in 0..SAMPLE_EVERY * 10 {
                requests += usize::from(sample(Side::Request).is_some());
                ends += usize::from(sample(Side::End).is_some());
            }
            assert_eq!((requests, ends), (10, 10));
        })
        .join()
        .unwrap();
        let before = layer_overhead().sampled_requests;
        record_request(Instant::now());
        assert!(layer_overhead().sampled_requests > before);
        assert!(layer_overhead().mean_request_seconds.is_some());
    }
}
