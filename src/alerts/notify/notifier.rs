//! [`AlertNotifier`]: the handle the engine queues alerts through, and its
//! delivery figures.

use std::{
    fmt,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use crate::alerts::notification::Notification;

use super::{
    AlertNotifierBuilder,
    queue::Target,
    sender::{Attempt, Sender},
};

/// Delivery figures of an [`AlertNotifier`], summed over its targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotifierStats {
    /// Alerts waiting in the queues.
    pub queued: u64,
    /// Alerts taken from a queue and being sent (or waiting for a retry).
    pub in_flight: u64,
    /// Alerts delivered (a `2xx` answer).
    pub sent: u64,
    /// Alerts given up on after the last attempt, or refused with a `4xx`.
    pub failed: u64,
    /// Alerts dropped because a queue was full: the oldest alert is dropped.
    pub dropped: u64,
}

/// Pushes firing and resolved alerts to Prometheus Alertmanagers
/// (`POST {base}/api/v2/alerts`) and to generic JSON webhooks.
///
/// Give it to [`AlertEngineBuilder::notifier`](crate::alerts::AlertEngineBuilder::notifier):
/// the engine hands it each alert that starts firing, each alert that
/// resolves, and each firing alert again every
/// [`resend_interval`](AlertNotifierBuilder::resend_interval).
///
/// # Delivery
///
/// - Each target has its own queue of
///   [`queue_capacity`](AlertNotifierBuilder::queue_capacity) alerts (1024
///   by default) and its own sender task, so a target that is down delays
///   no other. Enqueueing takes a short lock and never waits: when a queue
///   is full its *oldest* alert is dropped (a later notification of the
///   same alert supersedes it) and counted in
///   `tower_observability_alert_notifications_dropped_total{target}`.
/// - The sender posts up to [`MAX_BATCH`](super::MAX_BATCH) alerts per
///   request, each request bounded by
///   [`timeout`](AlertNotifierBuilder::timeout) (5 s). Connection errors,
///   timeouts, `408`, `429` and `5xx` are retried with exponential
///   backoff and jitter (500 ms doubling, capped at 30 s), up to
///   [`max_attempts`](AlertNotifierBuilder::max_attempts) (5); other `4xx`
///   are not retried. Delivered and abandoned alerts are counted in
///   `..._sent_total{target}` and `..._failed_total{target}`.
/// - A target that fails logs one warning, then at most one summary a
///   minute.
/// - The senders stop once every clone of the notifier (and of the engine
///   holding it) is dropped and their queues are empty.
///
/// # Payloads
///
/// Alertmanager gets its v2 `postableAlerts`: a JSON array of
/// `{labels, annotations, startsAt, endsAt, generatorURL}`. The labels are
/// `alertname`, `severity`, `service`, `cache` (cache rules) and the rule's
/// own; the annotations `summary` and `description`. A firing alert's
/// `endsAt` is 4 re-send intervals ahead (as Prometheus does), so that
/// Alertmanager resolves it if the service dies; a resolved alert's
/// `endsAt` is the time it resolved, in the past.
///
/// A webhook gets `{"service": .., "alerts": [..]}` where each alert also
/// has `status` (`firing` or `resolved`), `value` and `threshold`.
///
/// # Example
///
/// ```no_run
/// use tower_observability::alerts::{AlertEngine, AlertNotifier, AlertRule};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let notifier = AlertNotifier::builder()
///     .alertmanager("http://alertmanager:9093")?
///     .webhook("http://chatops.internal/hooks/alerts")?
///     .service("users-api")
///     .generator_url("http://users-api.internal:9000/monitoring/alerts")
///     .build()?;
/// let engine = AlertEngine::builder().rules(AlertRule::defaults()).notifier(notifier).build()?;
/// # let _ = engine;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AlertNotifier {
    pub(super) shared: Arc<Shared>,
}

/// What the clones of one notifier share; dropping it stops the senders
/// once their queues are empty.
pub(super) struct Shared {
    pub(super) targets: Vec<Arc<Target>>,
    pub(super) service: String,
    pub(super) resend_interval: Duration,
    pub(super) sender: Sender,
}

/// One target of an [`AlertNotifier`], as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TargetInfo {
    /// `alertmanager` or `webhook`.
    pub kind: &'static str,
    /// The URL, its password and query redacted.
    pub url: String,
    /// Whether its requests are signed (a webhook with a secret).
    pub signed: bool,
    /// Alerts waiting in its queue.
    pub queued: u64,
    /// Alerts delivered.
    pub sent: u64,
    /// Alerts given up on.
    pub failed: u64,
    /// Alerts dropped from its full queue.
    pub dropped: u64,
}

/// The outcome of a test notification to one target
/// ([`AlertNotifier::send_test`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TestResult {
    /// `alertmanager` or `webhook`.
    pub target: &'static str,
    /// The URL, its password and query redacted.
    pub url: String,
    /// Whether the target accepted it (a `2xx` answer).
    pub ok: bool,
    /// `answered 200 OK`, or why it failed.
    pub detail: String,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for target in &self.targets {
            target.closed.store(true, Ordering::Release);
            target.wake.notify_one();
        }
    }
}

impl AlertNotifier {
    /// A builder with no target and the defaults above.
    pub fn builder() -> AlertNotifierBuilder {
        AlertNotifierBuilder::new()
    }

    /// How often the engine re-sends a firing alert.
    #[must_use]
    pub fn resend_interval(&self) -> Duration {
        self.shared.resend_interval
    }

    /// The delivery figures so far, summed over the targets.
    ///
    /// ```
    /// use tower_observability::alerts::AlertNotifier;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let notifier = AlertNotifier::builder().alertmanager("http://127.0.0.1:9093")?.build()?;
    /// assert_eq!(notifier.stats().sent, 0);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn stats(&self) -> NotifierStats {
        let mut stats = NotifierStats::default();
        for t in &self.shared.targets {
            stats.queued += t.queued() as u64;
            stats.in_flight += t.in_flight.load(Ordering::Relaxed);
            stats.sent += t.sent.load(Ordering::Relaxed);
            stats.failed += t.failed.load(Ordering::Relaxed);
            stats.dropped += t.dropped.load(Ordering::Relaxed);
        }
        stats
    }

    /// Each target, with its figures.
    #[must_use]
    pub fn targets(&self) -> Vec<TargetInfo> {
        self.shared
            .targets
            .iter()
            .map(|t| TargetInfo {
                kind: t.kind.as_str(),
                url: t.redacted_url(),
                signed: t.secret.is_some(),
                queued: t.queued() as u64,
                sent: t.sent.load(Ordering::Relaxed),
                failed: t.failed.load(Ordering::Relaxed),
                dropped: t.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Sends one test alert (`alertname="TestNotification"`,
    /// `severity="info"`, valid for 4 re-send intervals) to every target at once,
    /// bypassing the queues, with one attempt each bounded by the
    /// notifier's timeout, and returns each target's outcome. The targets
    /// are tried concurrently, so the answer takes at most one timeout.
    ///
    /// ```no_run
    /// use tower_observability::alerts::AlertNotifier;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let notifier = AlertNotifier::builder().webhook("http://127.0.0.1:9/hook")?.build()?;
    /// let results = notifier.send_test().await;
    /// assert!(!results[0].ok, "nothing listens on port 9");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_test(&self) -> Vec<TestResult> {
        let now = std::time::SystemTime::now();
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("alertname".to_owned(), "TestNotification".to_owned());
        labels.insert("severity".to_owned(), "info".to_owned());
        labels.insert("service".to_owned(), self.shared.service.clone());
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert("summary", "a test notification from tower-observability".to_owned());
        let test = Notification {
            status: crate::alerts::AlertState::Firing,
            labels,
            annotations,
            starts_at: now,
            ends_at: None,
            value: None,
            threshold: 0.0,
        };
        let sends = self.shared.targets.iter().map(|t| {
            let (sender, test) = (&self.shared.sender, std::slice::from_ref(&test));
            async move {
                let (ok, detail) = match sender.attempt(t, test).await {
                    Attempt::Sent => (true, "accepted".to_owned()),
                    Attempt::Retry(reason) | Attempt::GiveUp(reason) => (false, reason),
                };
                TestResult { target: t.kind.as_str(), url: t.redacted_url(), ok, detail }
            }
        });
        futures_util::future::join_all(sends).await
    }

    /// Queues `n` for every target, adding the `service` label. Never waits.
    pub(crate) fn notify(&self, mut n: Notification) {
        n.labels.insert("service".to_owned(), self.shared.service.clone());
        if let Some((last, rest)) = self.shared.targets.split_last() {
            for t in rest {
                t.push(n.clone());
            }
            last.push(n);
        }
    }
}

impl fmt::Debug for AlertNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let targets: Vec<_> = self.shared.targets.iter().map(|t| (t.kind.as_str(), t.url.as_str())).collect();
        f.debug_struct("AlertNotifier")
            .field("targets", &targets)
            .field("service", &self.shared.service)
            .field("resend_interval", &self.shared.resend_interval)
            .finish_non_exhaustive()
    }
}
