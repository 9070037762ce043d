//! Standard output for log lines, off the request's thread.
//!
//! A request's thread appends its formatted line to the buffer of its
//! shard (one per thread, as far as the shards go: an uncontended lock, a
//! copy into a buffer that is reused, no allocation once warm, no system
//! call, no wake-up); a thread of its own (`log-lines`) swaps each shard's
//! buffer for an empty one every 20 ms, or as soon as one is half full, and
//! writes it with one `write(2)`. A line that finds its shard full is
//! dropped and counted in [`LOG_LINES_DROPPED`]: a stalled standard output
//! costs lines, never a blocked request nor unbounded memory.
//!
//! Measured under wrk (2 cores, one JSON access-log line per request to a
//! file): tracing-appender's non-blocking writer, whose worker blocks on its
//! channel, made the request's thread wake it (a `futex` call and a context
//! switch) for most lines and copied each line into an allocation freed on
//! the other thread; the batches here cost neither (see BENCHMARKS.md).

use std::{
    cell::Cell,
    fmt, io,
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

/// The name of the counter of log lines dropped because their buffer to
/// standard output was full.
pub(crate) const LOG_LINES_DROPPED: &str = "tower_observability_log_lines_dropped_total";

/// How often the writer thread writes what has been buffered.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// How long dropping the [`StdoutGuard`] waits for the last write.
const FLUSH_ON_DROP: Duration = Duration::from_secs(1);

/// The smallest buffer of one shard: a line longer than this is dropped.
const MIN_SHARD_BYTES: usize = 64 * 1024;

/// How log lines reach standard output: see the module's documentation.
/// `Direct`: each line is written by the thread that logs it, blocking while
/// standard output is.
#[derive(Clone)]
pub(crate) enum Stdout {
    Buffered(Arc<Shared>),
    Direct,
}

impl fmt::Debug for Stdout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Buffered(shared) => f
                .debug_struct("Buffered")
                .field("shards", &shared.shards.len())
                .field("shard_bytes", &shared.shard_bytes)
                .finish(),
            Self::Direct => f.write_str("Direct"),
        }
    }
}

/// The shards and what the writer thread is told.
pub(crate) struct Shared {
    shards: Box<[Shard]>,
    /// The most bytes one shard holds.
    shard_bytes: usize,
    dropped: ::metrics::Counter,
    /// A shard passed half its size: write now.
    early: AtomicBool,
    stop: AtomicBool,
    writer: OnceLock<thread::Thread>,
}

/// One shard's buffer, on a cache line of its own.
#[repr(align(128))]
struct Shard(Mutex<Vec<u8>>);

/// Writes what is buffered when dropped, waiting at most a second.
pub(crate) struct StdoutGuard {
    shared: Arc<Shared>,
    done: mpsc::Receiver<()>,
}

impl fmt::Debug for StdoutGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdoutGuard").finish_non_exhaustive()
    }
}

impl Drop for StdoutGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(writer) = self.shared.writer.get() {
            writer.unpark();
        }
        let _ = self.done.recv_timeout(FLUSH_ON_DROP);
    }
}

impl Stdout {
    /// Buffers of `bytes` in all (`0`: [`Stdout::Direct`]) to standard
    /// output, drops counted in `dropped`; and the guard that writes what is
    /// left when dropped.
    ///
    /// # Errors
    ///
    /// The writer thread could not be spawned.
    pub(crate) fn buffered(
        bytes: usize,
        dropped: ::metrics::Counter,
    ) -> io::Result<(Self, Option<StdoutGuard>)> {
        if bytes == 0 {
            return Ok((Self::Direct, None));
        }
        let (stdout, guard) = Self::to(io::stdout(), bytes, dropped)?;
        Ok((stdout, Some(guard)))
    }

    /// Buffers of `bytes` in all, written to `out`.
    fn to(
        mut out: impl io::Write + Send + 'static,
        bytes: usize,
        dropped: ::metrics::Counter,
    ) -> io::Result<(Self, StdoutGuard)> {
        let shards = thread::available_parallelism().map_or(4, |n| n.get() * 2).clamp(2, 64);
        let shard_bytes = (bytes / shards).max(MIN_SHARD_BYTES);
        let shared = Arc::new(Shared {
            shards: (0..shards).map(|_| Shard(Mutex::new(Vec::new()))).collect(),
            shard_bytes,
            dropped,
            early: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            writer: OnceLock::new(),
        });
        let (done_tx, done) = mpsc::channel();
        let writing = shared.clone();
        let handle = thread::Builder::new().name("log-lines".to_owned()).spawn(move || {
            let mut spare = Vec::new();
            loop {
                thread::park_timeout(FLUSH_INTERVAL);
                let stop = writing.stop.load(Ordering::Acquire);
                writing.early.store(false, Ordering::Relaxed);
                for shard in &writing.shards {
                    let mut taken = {
                        let mut buffer = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
                        if buffer.is_empty() {
                            continue;
                        }
                        std::mem::replace(&mut *buffer, spare)
                    };
                    if out.write_all(&taken).is_err() {
                        // Standard output is closed or failing: the lines are lost.
                        writing.dropped.increment(taken.iter().filter(|b| **b == b'\n').count() as u64);
                    }
                    taken.clear();
                    spare = taken;
                }
                let _ = out.flush();
                if stop {
                    let _ = done_tx.send(());
                    return;
                }
            }
        })?;
        let _ = shared.writer.set(handle.thread().clone());
        Ok((Self::Buffered(shared.clone()), StdoutGuard { shared, done }))
    }
}

impl Shared {
    /// Appends `line` to the calling thread's shard, or drops and counts it.
    fn push(&self, line: &[u8]) {
        let shard = &self.shards[shard_of_thread() % self.shards.len()];
        let mut buffer = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
        if buffer.len() + line.len() > self.shard_bytes {
            drop(buffer);
            self.dropped.increment(1);
            return;
        }
        if buffer.capacity() == 0 {
            buffer.reserve(self.shard_bytes);
        }
        buffer.extend_from_slice(line);
        let half = buffer.len() > self.shard_bytes / 2;
        drop(buffer);
        if half
            && !self.early.load(Ordering::Relaxed)
            && !self.early.swap(true, Ordering::Relaxed)
            && let Some(writer) = self.writer.get()
        {
            writer.unpark();
        }
    }
}

/// The shard of the calling thread: threads take the next one in turn.
fn shard_of_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|shard| {
        if shard.get() == usize::MAX {
            shard.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        shard.get()
    })
}

/// The writer of one line.
pub(crate) enum Line<'a> {
    Buffered(&'a Shared),
    Direct(io::Stdout),
}

impl io::Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // One call per line: the line is never split between writes.
            Self::Buffered(shared) => {
                shared.push(buf);
                Ok(buf.len())
            }
            Self::Direct(stdout) => stdout.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Buffered(_) => Ok(()),
            Self::Direct(stdout) => stdout.flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for Stdout {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        match self {
            Self::Buffered(shared) => Line::Buffered(shared),
            Self::Direct => Line::Direct(io::stdout()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write as _,
        sync::atomic::{AtomicU64, Ordering},
    };

    use super::*;

    /// Collects what is written; blocks every write while `gate` is held.
    #[derive(Clone, Default)]
    struct Collect {
        written: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl io::Write for Collect {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn counter() -> (::metrics::Counter, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (::metrics::Counter::from_arc(count.clone()), count)
    }

    #[test]
    fn every_line_of_every_thread_arrives_whole_and_in_order() {
        let out = Collect::default();
        let (dropped, count) = counter();
        let (stdout, guard) = Stdout::to(out.clone(), 8 << 20, dropped).unwrap();
        thread::scope(|scope| {
            for t in 0..4 {
                let stdout = &stdout;
                scope.spawn(move || {
                    for n in 0..5_000 {
                        let line =
                            format!("{{\"thread\":{t},\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(n % 50));
                        stdout.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        assert_eq!(count.load(Ordering::Relaxed), 0);
        let written = String::from_utf8(out.written.lock().unwrap().clone()).unwrap();
        let mut next = [0; 4];
        for line in written.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let t = v["thread"].as_u64().unwrap() as usize;
            assert_eq!(v["n"].as_u64().unwrap() as usize, next[t], "thread {t} in order");
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4], "every line written once, at the guard's drop at the latest");
    }

    #[test]
    fn a_stalled_stdout_drops_and_counts_without_blocking() {
        let out = Collect::default();
        let held = out.gate.lock().unwrap();
        let (dropped, count) = counter();
        let (stdout, guard) = Stdout::to(out.clone(), 0, dropped).unwrap();
        let line = [b'x'; 1023].iter().copied().chain([b'\n']).collect::<Vec<_>>();
        // Far more than the shards hold while the writer is stuck in a write.
        let lines = 64 * MIN_SHARD_BYTES / line.len();
        for _ in 0..lines {
            stdout.make_writer().write_all(&line).unwrap();
        }
        let lost = count.load(Ordering::Relaxed);
        assert!(lost > 0, "a full buffer drops");
        assert!(lost < lines as u64, "what fits is kept: {lost} of {lines}");
        drop(held);
        drop(guard);
        let written = out.written.lock().unwrap().iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(written + lost, lines as u64, "each line written or counted");
    }
}
