//! Several threads doing one thing at once, for the benches that show
//! contention (`scaling`, `grpc`'s `GRPC_SCALING`). Include with
//! `#[path = "support/workers.rs"] mod workers;`.

use std::{
    future::Future,
    sync::{
        Arc, Barrier,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// Operations per second of `workers` threads, each a tokio current-thread
/// runtime awaiting `op()` in a loop, started together and stopped after
/// `run`.
pub(crate) fn per_second<F, Fut>(workers: usize, run: Duration, op: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(workers + 1));
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (op, stop, start) = (op.clone(), stop.clone(), start.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    start.wait();
                    let mut done = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        op().await;
                        done += 1;
                    }
                    done
                })
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    let done: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    done as f64 / began.elapsed().as_secs_f64()
}
