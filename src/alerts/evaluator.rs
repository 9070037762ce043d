//! The one evaluation loop of an [`AlertEngine`], and the two ways to
//! spawn it: [`AlertEngine::spawn_evaluator`] for a closure of one's own,
//! and the monitoring router's, fed by its windows and health registry.

use std::{
    future::ready,
    time::{Duration, Instant},
};

use tokio::{task::JoinHandle, time::MissedTickBehavior};

use super::{AlertEngine, AlertInputs};

impl AlertEngine {
    /// Spawns a task on the current tokio runtime that evaluates the rules
    /// every `interval` on `source()`, at `Instant::now()`. The first
    /// evaluation happens at once; a late tick is delayed, not bunched.
    ///
    /// The task runs until aborted (through the handle) or until its
    /// runtime shuts down; `source` runs on the runtime, so it should be
    /// quick (read in-process windows, not call out).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_observability::alerts::{AlertEngine, AlertInputs};
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let engine = AlertEngine::with_default_rules();
    /// let task = engine.clone().spawn_evaluator(Duration::from_secs(15), AlertInputs::default);
    /// # task.abort();
    /// # }
    /// ```
    pub fn spawn_evaluator<F>(self, interval: Duration, source: F) -> JoinHandle<()>
    where
        F: Fn() -> AlertInputs + Send + Sync + 'static,
    {
        let period = interval.max(Duration::from_millis(1));
        tokio::spawn(self.evaluate_every(period, MissedTickBehavior::Delay, move |_| ready(source())))
    }

    /// Spawns the loop on the current tokio runtime, if there is one, to
    /// evaluate the rules every `every` on the inputs `source` reads for
    /// the tick's instant; a late tick is skipped. Without a runtime, logs a
    /// warning and evaluates nothing. The monitoring router's evaluator.
    #[cfg(feature = "monitoring")]
    pub(crate) fn spawn_evaluator_on_current_runtime<F, Fut>(self, every: Duration, source: F)
    where
        F: FnMut(Instant) -> Fut + Send + 'static,
        Fut: Future<Output = AlertInputs> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: the alert rules will not be evaluated");
            return;
        };
        runtime.spawn(self.evaluate_every(every, MissedTickBehavior::Skip, source));
    }

    /// The loop: at each tick of `period` (the first at once; late ticks as
    /// `missed` says), reads `source` for the tick's instant and evaluates
    /// the rules at that instant. Runs until its task is aborted or its
    /// runtime shuts down.
    async fn evaluate_every<F, Fut>(self, period: Duration, missed: MissedTickBehavior, mut source: F)
    where
        F: FnMut(Instant) -> Fut,
        Fut: Future<Output = AlertInputs>,
    {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(missed);
        loop {
            ticks.tick().await;
            let now = Instant::now();
            let inputs = source(now).await;
            self.evaluate(&inputs, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        future::Ready,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use super::*;

    /// A source of empty inputs, and how many times it was read.
    fn counted() -> (Arc<AtomicUsize>, impl FnMut(Instant) -> Ready<AlertInputs> + Send + 'static) {
        let reads = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&reads);
        let source = move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
            ready(AlertInputs::default())
        };
        (reads, source)
    }

    #[test]
    fn without_a_runtime_nothing_runs() {
        let (reads, source) = counted();
        AlertEngine::with_default_rules()
            .spawn_evaluator_on_current_runtime(Duration::from_millis(1), source);
        assert_eq!(reads.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn the_router_loop_reads_its_source_every_period() {
        let (reads, source) = counted();
        AlertEngine::with_default_rules()
            .spawn_evaluator_on_current_runtime(Duration::from_millis(10), source);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(reads.load(Ordering::Relaxed) >= 3);
    }
}
