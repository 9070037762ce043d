//! Standard output for log lines, off the request's thread.
//!
//! A request's thread appends its formatted line to the buffer of its
//! shard (one per thread, as far as the shards go: an uncontended lock, a
//! copy into a buffer that is reused, no allocation once warm); a thread of
//! its own (`log-lines`) swaps each shard's buffer for an empty one every
//! 20 ms, or as soon as one is half full, and writes it with one `write(2)`.
//! The request's thread makes no system call but, once per half-full buffer
//! or after a second without lines, the writer's wake-up. A line that finds
//! its shard full is dropped and counted in [`LOG_LINES_DROPPED`]: a stalled
//! standard output costs lines, never a blocked request nor unbounded
//! memory. Once the [`StdoutGuard`] is dropped, lines are written directly.
//!
//! Measured under wrk (2 cores, one JSON access-log line per request to a
//! file): tracing-appender's non-blocking writer, whose worker blocks on its
//! channel, made the request's thread wake it (a `futex` call and a context
//! switch) for most lines and copied each line into an allocation freed on
//! the other thread; the batches here cost neither (see BENCHMARKS.md).

use std::{
    fmt,
    io::{self, Write as _},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

use crate::shard::{self, Padded, lock};

/// The name of the counter of log lines dropped because their buffer to
/// standard output was full, or standard output failed.
pub(crate) const LOG_LINES_DROPPED: &str = "tower_observability_log_lines_dropped_total";

/// How often the writer thread writes what has been buffered.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// How long the writer sleeps once a pass found nothing to write; the next
/// line wakes it. (A minute in the tests: a line that came without waking
/// the writer would make them wait for it.)
const IDLE_INTERVAL: Duration = Duration::from_secs(if cfg!(test) { 60 } else { 1 });

/// How long dropping the [`StdoutGuard`] waits for the last write.
const FLUSH_ON_DROP: Duration = Duration::from_secs(1);

/// The smallest buffer of one shard: a line longer than this is written
/// directly, by the thread that logs it.
const MIN_SHARD_BYTES: usize = 64 * 1024;

/// The most shards.
const MAX_SHARDS: usize = 64;

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

/// The shards, where they are written, and what the writer thread is told.
pub(crate) struct Shared {
    shards: Box<[Padded<Mutex<Vec<u8>>>]>,
    /// The most bytes one shard holds.
    shard_bytes: usize,
    /// Standard output (a test's writer in the tests).
    out: Mutex<Box<dyn io::Write + Send>>,
    dropped: ::metrics::Counter,
    /// A shard passed half its size: write now.
    early: AtomicBool,
    /// The writer sleeps until a line comes.
    idle: AtomicBool,
    /// The guard is dropped: the writer has written its last, lines go
    /// directly to `out`.
    stop: AtomicBool,
    writer: OnceLock<thread::Thread>,
}

/// Writes what is buffered when dropped, waiting at most a second; lines
/// logged afterwards are written directly.
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
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
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
        let shards = shard::count_up_to(MAX_SHARDS);
        let (stdout, guard) = Self::to(Box::new(io::stdout()), shards, bytes, dropped)?;
        Ok((stdout, Some(guard)))
    }

    /// `shards` buffers (a power of two) of `bytes` in all, written to
    /// `out`.
    fn to(
        out: Box<dyn io::Write + Send>,
        shards: usize,
        bytes: usize,
        dropped: ::metrics::Counter,
    ) -> io::Result<(Self, StdoutGuard)> {
        let shared = Arc::new(Shared {
            shards: (0..shards).map(|_| Padded(Mutex::new(Vec::new()))).collect(),
            shard_bytes: (bytes / shards).max(MIN_SHARD_BYTES),
            out: Mutex::new(out),
            dropped,
            early: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            writer: OnceLock::new(),
        });
        let (done_tx, done) = mpsc::channel();
        let writing = shared.clone();
        let handle = thread::Builder::new().name("log-lines".to_owned()).spawn(move || {
            let mut spare = Vec::new();
            let mut wrote = true;
            loop {
                if wrote {
                    thread::park_timeout(FLUSH_INTERVAL);
                } else {
                    // Nothing came during a whole pass: sleep until a line
                    // does, unless one came in the meantime.
                    writing.idle.store(true, Ordering::SeqCst);
                    if writing.is_empty() && !writing.stop.load(Ordering::SeqCst) {
                        thread::park_timeout(IDLE_INTERVAL);
                    }
                    writing.idle.store(false, Ordering::SeqCst);
                }
                let stop = writing.stop.load(Ordering::SeqCst);
                writing.early.store(false, Ordering::Relaxed);
                wrote = writing.write_all_shards(&mut spare);
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
        if line.len() > self.shard_bytes || self.stop.load(Ordering::SeqCst) {
            return self.write_directly(line);
        }
        let shard = shard::mine(&self.shards);
        let mut buffer = lock(shard);
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
        if self.stop.load(Ordering::SeqCst) {
            // The writer may have made its last pass before this line came.
            self.write_shard(shard, &mut Vec::new());
        } else if (half && !self.early.load(Ordering::Relaxed) && !self.early.swap(true, Ordering::Relaxed))
            || (self.idle.load(Ordering::SeqCst) && self.idle.swap(false, Ordering::SeqCst))
        {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(writer) = self.writer.get() {
            writer.unpark();
        }
    }

    /// Whether every shard is empty.
    fn is_empty(&self) -> bool {
        self.shards.iter().all(|shard| lock(shard).is_empty())
    }

    /// Writes every shard's lines; whether there were any.
    fn write_all_shards(&self, spare: &mut Vec<u8>) -> bool {
        let mut wrote = false;
        for shard in &self.shards {
            wrote |= self.write_shard(shard, spare);
        }
        let _ = lock(&self.out).flush();
        wrote
    }

    /// Swaps `shard`'s buffer for `spare` and writes it; whether it held
    /// anything. `spare` gets the emptied buffer back.
    fn write_shard(&self, shard: &Mutex<Vec<u8>>, spare: &mut Vec<u8>) -> bool {
        let mut taken = {
            let mut buffer = lock(shard);
            if buffer.is_empty() {
                return false;
            }
            std::mem::replace(&mut *buffer, std::mem::take(spare))
        };
        if lock(&self.out).write_all(&taken).is_err() {
            // Standard output is closed or failing: the batch is lost.
            self.dropped.increment(taken.iter().filter(|b| **b == b'\n').count() as u64);
        }
        taken.clear();
        *spare = taken;
        true
    }

    /// Writes one line by the calling thread.
    fn write_directly(&self, line: &[u8]) {
        let mut out = lock(&self.out);
        if out.write_all(line).and_then(|()| out.flush()).is_err() {
            self.dropped.increment(1);
        }
    }
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

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Buffered(shared) => {
                shared.push(buf);
                Ok(())
            }
            // Under one lock: a long line is not interleaved with another's.
            Self::Direct(stdout) => stdout.lock().write_all(buf),
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
        let (stdout, guard) = Stdout::to(Box::new(out.clone()), 4, 64 << 20, dropped).unwrap();
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
        let (stdout, guard) = Stdout::to(Box::new(out.clone()), 1, 0, dropped).unwrap();
        let line = [b'x'; 1023].iter().copied().chain([b'\n']).collect::<Vec<_>>();
        // Far more than the shards hold while the writer is stuck in a write.
        let lines = 4 * MIN_SHARD_BYTES / line.len();
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

    fn lines_of(out: &Collect) -> Vec<String> {
        String::from_utf8(out.written.lock().unwrap().clone()).unwrap().lines().map(str::to_owned).collect()
    }

    #[test]
    fn an_idle_writer_wakes_for_the_next_line() {
        let out = Collect::default();
        let (dropped, _) = counter();
        let (stdout, _guard) = Stdout::to(Box::new(out.clone()), 2, 1 << 20, dropped).unwrap();
        let Stdout::Buffered(shared) = &stdout else { unreachable!() };
        // Two empty passes put the writer to sleep for a minute (in tests).
        while !shared.idle.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(5));
        }
        stdout.make_writer().write_all(b"after a quiet spell\n").unwrap();
        let waited = std::time::Instant::now();
        while lines_of(&out).is_empty() {
            assert!(waited.elapsed() < Duration::from_secs(30), "the line woke no one");
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(lines_of(&out), ["after a quiet spell"]);
    }

    #[test]
    fn lines_after_the_guard_and_longer_than_a_shard_are_written_directly() {
        let out = Collect::default();
        let (dropped, count) = counter();
        let (stdout, guard) = Stdout::to(Box::new(out.clone()), 2, 0, dropped).unwrap();
        let long = format!("{}\n", "y".repeat(MIN_SHARD_BYTES + 1));
        stdout.make_writer().write_all(long.as_bytes()).unwrap();
        assert_eq!(lines_of(&out).len(), 1, "written before write_all returned");
        stdout.make_writer().write_all(b"before\n").unwrap();
        drop(guard);
        stdout.make_writer().write_all(b"after\n").unwrap();
        let lines = lines_of(&out);
        assert_eq!(lines[1..], ["before", "after"]);
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }
}
