//! Per-thread shards: state that every worker writes per request is spread
//! over shards, one per thread as far as they go, each on cache lines of
//! its own, so that two workers serving at once do not write the same
//! cache line (issue 19: a line written by both cores costs a transfer
//! between them on every write).

use std::{
    cell::Cell,
    ops::Deref,
    sync::{
        Mutex, MutexGuard, OnceLock, PoisonError,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    thread,
};

/// The most shards a sharded value has: beyond it threads share shards.
const MAX_SHARDS: usize = 16;

/// The index of the calling thread: threads take the next one in turn, so
/// the workers of a pool (started together) get distinct indices. Take it
/// modulo a shard count.
#[inline]
pub(crate) fn of_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| {
        if index.get() == usize::MAX {
            index.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        index.get()
    })
}

/// How many shards a sharded value of the crate has: [`count_up_to`] 16,
/// read once.
pub(crate) fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| count_up_to(MAX_SHARDS))
}

/// Twice the cores rounded up to a power of two, from 2 to `max` (a power
/// of two): one shard per thread of a pool of one or two per core.
pub(crate) fn count_up_to(max: usize) -> usize {
    thread::available_parallelism().map_or(4, |n| n.get() * 2).next_power_of_two().clamp(2, max)
}

/// A value on cache lines of its own (128 bytes: two lines, as the
/// adjacent-line prefetcher of x86 moves them in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The shards of `T`, one per [`count`], each made by `make`.
pub(crate) fn shards<T>(make: impl FnMut() -> T) -> Box<[Padded<T>]> {
    std::iter::repeat_with(make).take(count()).map(Padded).collect()
}

/// The shard of the calling thread among `shards` (made by [`shards`]: a
/// power of two of them, so a mask, not a division, picks it).
#[inline]
pub(crate) fn mine<T>(shards: &[Padded<T>]) -> &T {
    debug_assert!(shards.len().is_power_of_two());
    &shards[of_thread() & (shards.len() - 1)]
}

/// Locks a shard, also after a thread panicked holding it (a shard's
/// buffer is whole at every step).
pub(crate) fn lock<T: ?Sized>(shard: &Mutex<T>) -> MutexGuard<'_, T> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A signed count that many threads change: each adds to its own shard,
/// a reader adds the shards up.
#[derive(Debug)]
pub(crate) struct ShardedCount(Box<[Padded<AtomicI64>]>);

impl ShardedCount {
    pub(crate) fn new() -> Self {
        Self(shards(|| AtomicI64::new(0)))
    }

    /// Adds `delta` (an uncontended atomic add on the thread's shard).
    #[inline]
    pub(crate) fn add(&self, delta: i64) {
        mine(&self.0).fetch_add(delta, Ordering::Relaxed);
    }

    /// The sum of the shards. Read while threads change it, the sum may be
    /// off by the changes made during the read (a count raised on one shard
    /// and lowered on another may be seen lowered only): exact once they
    /// settle.
    pub(crate) fn sum(&self) -> i64 {
        self.0.iter().map(|shard| shard.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_raised_and_lowered_on_many_threads_adds_up() {
        let count = ShardedCount::new();
        thread::scope(|s| {
            for t in 0..8 {
                let count = &count;
                s.spawn(move || {
                    for _ in 0..10_000 {
                        count.add(1);
                    }
                    for _ in 0..10_000 - t {
                        count.add(-1);
                    }
                });
            }
        });
        assert_eq!(count.sum(), (0..8).sum::<i64>());
    }

    #[test]
    fn threads_take_distinct_indices_and_keep_them() {
        let here = of_thread();
        assert_eq!(of_thread(), here, "a thread keeps its index");
        let there = thread::spawn(of_thread).join().unwrap();
        assert_ne!(there, here);
        assert!((2..=MAX_SHARDS).contains(&count()) && count().is_power_of_two());
        assert_eq!(size_of::<Padded<AtomicI64>>(), 128);
    }
}
