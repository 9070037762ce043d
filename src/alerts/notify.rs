//! [`AlertNotifier`]: pushes firing and resolved alerts to Alertmanager and
//! to JSON webhooks, from bounded queues, with retries, never blocking.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use tokio::sync::Notify;

use super::{ALERT_NOTIFICATIONS_DROPPED, ALERT_NOTIFICATIONS_FAILED, ALERT_NOTIFICATIONS_SENT, AlertState};
use crate::time::rfc3339;

/// The default capacity of each target's queue: 1024 alerts.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// The default timeout of one HTTP request to a target: 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default number of attempts to deliver one batch: 5.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// The default first retry delay: 500 ms, doubled at each retry.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// The default cap of the retry delay: 30 seconds.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The default interval between re-sends of a firing alert: 1 minute, as
/// Prometheus' `--rules.alert.resend-delay`.
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(60);
/// The most alerts sent in one request.
pub const MAX_BATCH: usize = 64;
/// How often a target that keeps failing logs a summary warning.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// An error building an [`AlertNotifier`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifierError {
    /// A target URL does not parse, or is not `http` or `https`.
    #[error("invalid alert target url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// [`AlertNotifierBuilder::build`] was called outside a tokio runtime,
    /// where it cannot spawn its senders.
    #[error("the alert notifier must be built inside a tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be built.
    #[error("cannot build the alert notifier's http client")]
    Client(#[source] reqwest::Error),
}

/// Where a target sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetKind {
    Alertmanager,
    Webhook,
}

impl TargetKind {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Webhook => "webhook",
        }
    }
}

/// One alert to send: built by the engine on a transition or a re-send.
#[derive(Debug, Clone)]
pub(crate) struct Notification {
    /// [`AlertState::Firing`] or [`AlertState::Resolved`].
    pub(crate) status: AlertState,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<&'static str, String>,
    pub(crate) starts_at: SystemTime,
    /// When it resolved; `None` while firing.
    pub(crate) ends_at: Option<SystemTime>,
    pub(crate) value: Option<f64>,
    pub(crate) threshold: f64,
}

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
/// Give it to [`AlertEngineBuilder::notifier`](super::AlertEngineBuilder::notifier):
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
/// - The sender posts up to [`MAX_BATCH`] alerts per request, each request
///   bounded by [`timeout`](AlertNotifierBuilder::timeout) (5 s). Connection
///   errors, timeouts, `408`, `429` and `5xx` are retried with exponential
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
    shared: Arc<Shared>,
}

struct Shared {
    targets: Vec<Arc<Target>>,
    service: String,
    resend_interval: Duration,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for target in &self.targets {
            target.closed.store(true, Ordering::Release);
            target.wake.notify_one();
        }
    }
}

struct Target {
    kind: TargetKind,
    url: String,
    capacity: usize,
    queue: Mutex<VecDeque<Notification>>,
    wake: Notify,
    closed: AtomicBool,
    in_flight: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Target {
    /// An idle target whose queue holds at most `capacity` notifications.
    fn new(kind: TargetKind, url: String, capacity: usize) -> Self {
        Self {
            kind,
            url,
            capacity,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Target {
    /// Queues `n`, dropping the oldest alert when full. Never waits.
    fn push(&self, n: Notification) {
        let dropped = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let dropped = if queue.len() >= self.capacity { queue.pop_front().is_some() } else { false };
            queue.push_back(n);
            dropped
        };
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            ::metrics::counter!(ALERT_NOTIFICATIONS_DROPPED, "target" => self.kind.as_str()).increment(1);
        }
        self.wake.notify_one();
    }

    fn take_batch(&self) -> Vec<Notification> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let n = queue.len().min(MAX_BATCH);
        let batch: Vec<_> = queue.drain(..n).collect();
        self.in_flight.store(batch.len() as u64, Ordering::Relaxed);
        batch
    }

    fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).len()
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

/// Builds an [`AlertNotifier`]; see its docs for the defaults.
#[derive(Debug, Clone)]
#[must_use]
pub struct AlertNotifierBuilder {
    targets: Vec<(TargetKind, String)>,
    service: String,
    generator_url: String,
    queue_capacity: usize,
    timeout: Duration,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    resend_interval: Duration,
}

impl Default for AlertNotifierBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl AlertNotifierBuilder {
    /// No target, service `unknown_service`, and the defaults.
    pub fn new() -> Self {
        Self {
            targets: Vec::new(),
            service: "unknown_service".to_owned(),
            generator_url: String::new(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            resend_interval: DEFAULT_RESEND_INTERVAL,
        }
    }

    /// Adds an Alertmanager by its base URL (`http://alertmanager:9093`);
    /// alerts are posted to `{base}/api/v2/alerts`. Add each replica of an
    /// Alertmanager cluster: they deduplicate.
    ///
    /// An `https` URL needs a TLS feature of `reqwest` enabled in the
    /// application; without one, its requests fail and are counted.
    ///
    /// # Errors
    ///
    /// [`NotifierError::InvalidUrl`] when `base` does not parse or is not
    /// `http(s)`.
    pub fn alertmanager(mut self, base: &str) -> Result<Self, NotifierError> {
        let url = parse(base)?;
        let trimmed = url.as_str().trim_end_matches('/');
        let endpoint = if trimmed.ends_with("/api/v2/alerts") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/api/v2/alerts")
        };
        self.targets.push((TargetKind::Alertmanager, endpoint));
        Ok(self)
    }

    /// Adds a JSON webhook: alerts are posted to `url` as is.
    ///
    /// # Errors
    ///
    /// [`NotifierError::InvalidUrl`] when `url` does not parse or is not
    /// `http(s)`.
    pub fn webhook(mut self, url: &str) -> Result<Self, NotifierError> {
        let url = parse(url)?;
        self.targets.push((TargetKind::Webhook, url.to_string()));
        Ok(self)
    }

    /// Sets the `service` label of every alert (default `unknown_service`).
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Sets the `generatorURL` of every alert, e.g. the service's
    /// `/monitoring/alerts` (default none).
    pub fn generator_url(mut self, url: impl Into<String>) -> Self {
        self.generator_url = url.into();
        self
    }

    /// Sets the capacity of each target's queue, at least 1.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Sets the timeout of one request, connection included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the attempts per batch, at least 1.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first retry delay and the cap of the doubling delays.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets how often a firing alert is re-sent, at least 1 second
    /// (Alertmanager resolves an alert that is not re-sent before its
    /// `endsAt`).
    pub fn resend_interval(mut self, interval: Duration) -> Self {
        self.resend_interval = interval.max(Duration::from_secs(1));
        self
    }

    /// Builds the notifier and spawns one sender task per target.
    ///
    /// # Errors
    ///
    /// [`NotifierError::NoRuntime`] outside a tokio runtime;
    /// [`NotifierError::Client`] when the HTTP client cannot be built.
    pub fn build(self) -> Result<AlertNotifier, NotifierError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NotifierError::NoRuntime)?;
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .user_agent(concat!("tower-observability/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(NotifierError::Client)?;
        super::describe();
        let targets: Vec<_> = self
            .targets
            .into_iter()
            .map(|(kind, url)| Arc::new(Target::new(kind, url, self.queue_capacity)))
            .collect();
        let sender = Sender {
            client,
            service: Arc::from(self.service.as_str()),
            generator_url: Arc::from(self.generator_url.as_str()),
            validity: self.resend_interval * 4,
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
        };
        for target in &targets {
            runtime.spawn(sender.clone().run(Arc::clone(target)));
        }
        Ok(AlertNotifier {
            shared: Arc::new(Shared {
                targets,
                service: self.service,
                resend_interval: self.resend_interval,
            }),
        })
    }
}

fn parse(url: &str) -> Result<reqwest::Url, NotifierError> {
    let invalid = |reason: String| NotifierError::InvalidUrl { url: url.to_owned(), reason };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(invalid(format!("scheme {other:?} is not http or https"))),
    }
}

/// What a sender task needs besides its target.
#[derive(Clone)]
struct Sender {
    client: reqwest::Client,
    service: Arc<str>,
    generator_url: Arc<str>,
    /// How far ahead a firing alert's `endsAt` is set.
    validity: Duration,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

/// The outcome of one attempt.
enum Attempt {
    Sent,
    Retry(String),
    GiveUp(String),
}

/// An alert in the JSON of both targets.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireAlert<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<&'static str, String>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
}

/// The body of a webhook request.
#[derive(Serialize)]
struct WebhookBody<'a> {
    service: &'a str,
    alerts: Vec<WireAlert<'a>>,
}

impl Sender {
    async fn run(self, target: Arc<Target>) {
        let mut warned: Option<Instant> = None;
        let mut reported = (0u64, 0u64); // failed, dropped at the last warning
        loop {
            let batch = target.take_batch();
            if batch.is_empty() {
                if target.closed.load(Ordering::Acquire) {
                    return;
                }
                target.wake.notified().await;
                continue;
            }
            let n = batch.len() as u64;
            let result = self.deliver(&target, &batch).await;
            let counter = match result {
                Ok(()) => {
                    target.sent.fetch_add(n, Ordering::Relaxed);
                    ALERT_NOTIFICATIONS_SENT
                }
                Err(reason) => {
                    target.failed.fetch_add(n, Ordering::Relaxed);
                    let failed = target.failed.load(Ordering::Relaxed);
                    let dropped = target.dropped.load(Ordering::Relaxed);
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        if warned.is_none() {
                            tracing::warn!(
                                target_kind = target.kind.as_str(),
                                url = %target.url,
                                %reason,
                                alerts = n,
                                "cannot deliver alerts; dropping them (further failures are summarized once a minute)"
                            );
                        } else {
                            tracing::warn!(
                                target_kind = target.kind.as_str(),
                                url = %target.url,
                                %reason,
                                failed = failed - reported.0,
                                dropped = dropped - reported.1,
                                "alert deliveries still failing"
                            );
                        }
                        warned = Some(Instant::now());
                        reported = (failed, dropped);
                    }
                    ALERT_NOTIFICATIONS_FAILED
                }
            };
            // After the count, so that the stats never miss a batch.
            target.in_flight.store(0, Ordering::Relaxed);
            ::metrics::counter!(counter, "target" => target.kind.as_str()).increment(n);
        }
    }

    /// Sends `batch` with retries; `Err` with the last reason on giving up.
    async fn deliver(&self, target: &Target, batch: &[Notification]) -> Result<(), String> {
        let mut delay = self.initial_backoff;
        let mut attempt = 1;
        loop {
            let reason = match self.attempt(target, batch).await {
                Attempt::Sent => return Ok(()),
                Attempt::GiveUp(reason) => return Err(reason),
                Attempt::Retry(reason) => reason,
            };
            if attempt >= self.max_attempts {
                return Err(format!("{reason} (after {attempt} attempts)"));
            }
            attempt += 1;
            tokio::time::sleep(jitter(delay)).await;
            delay = (delay * 2).min(self.max_backoff);
        }
    }

    async fn attempt(&self, target: &Target, batch: &[Notification]) -> Attempt {
        let now = SystemTime::now();
        let alerts: Vec<_> = batch.iter().map(|n| self.wire(n, now, target.kind)).collect();
        let request = self.client.post(&target.url);
        let request = match target.kind {
            TargetKind::Alertmanager => request.json(&alerts),
            TargetKind::Webhook => request.json(&WebhookBody { service: &self.service, alerts }),
        };
        match request.send().await {
            Ok(res) if res.status().is_success() => Attempt::Sent,
            Ok(res) => {
                let status = res.status();
                let reason = format!("answered {status}");
                if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                    Attempt::Retry(reason)
                } else {
                    Attempt::GiveUp(reason)
                }
            }
            Err(err) => Attempt::Retry(error_chain(&err)),
        }
    }

    fn wire<'a>(&'a self, n: &'a Notification, now: SystemTime, kind: TargetKind) -> WireAlert<'a> {
        // A resolved alert ends in the past; a firing one `validity` ahead.
        let ends_at = n.ends_at.map_or(now + self.validity, |t| t.min(now));
        let starts_at = n.starts_at.min(ends_at);
        let webhook = kind == TargetKind::Webhook;
        WireAlert {
            status: webhook.then(|| n.status.as_str()),
            labels: &n.labels,
            annotations: &n.annotations,
            starts_at: rfc3339(starts_at),
            ends_at: rfc3339(ends_at),
            generator_url: &self.generator_url,
            value: if webhook { n.value } else { None },
            threshold: webhook.then_some(n.threshold),
        }
    }
}

/// `err` and its sources, `: `-separated (reqwest's `Display` alone says
/// only "error sending request").
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// `delay` scaled by a random factor in [0.5, 1) ("equal jitter"), so that
/// a fleet of instances does not retry in step.
fn jitter(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let fraction = 0.5 + (random % 1024) as f64 / 2048.0;
    delay.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(name: &str) -> Notification {
        Notification {
            status: AlertState::Firing,
            labels: BTreeMap::from([("alertname".to_owned(), name.to_owned())]),
            annotations: BTreeMap::from([("summary", "s".to_owned())]),
            starts_at: SystemTime::UNIX_EPOCH,
            ends_at: None,
            value: Some(1.0),
            threshold: 0.5,
        }
    }

    fn target(capacity: usize) -> Target {
        Target::new(TargetKind::Webhook, String::new(), capacity)
    }

    #[test]
    fn a_full_queue_drops_its_oldest_alert_and_counts_it() {
        let t = target(2);
        for name in ["a", "b", "c", "d"] {
            t.push(notification(name));
        }
        assert_eq!(t.dropped.load(Ordering::Relaxed), 2);
        let names: Vec<_> = t.take_batch().into_iter().map(|n| n.labels["alertname"].clone()).collect();
        assert_eq!(names, ["c", "d"]);
        assert_eq!(t.in_flight.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn batches_are_bounded() {
        let t = target(1000);
        for _ in 0..100 {
            t.push(notification("a"));
        }
        assert_eq!(t.take_batch().len(), MAX_BATCH);
        assert_eq!(t.queued(), 100 - MAX_BATCH);
    }

    #[test]
    fn urls_are_validated_and_alertmanager_gets_its_api_path() {
        let b = AlertNotifierBuilder::new()
            .alertmanager("http://am:9093/")
            .unwrap()
            .alertmanager("http://am:9093/api/v2/alerts")
            .unwrap();
        assert_eq!(b.targets[0].1, "http://am:9093/api/v2/alerts");
        assert_eq!(b.targets[1].1, "http://am:9093/api/v2/alerts");
        let err = AlertNotifierBuilder::new().webhook("ftp://x").unwrap_err();
        assert!(err.to_string().contains("not http"), "{err}");
        assert!(AlertNotifierBuilder::new().webhook("no url").is_err());
    }

    #[test]
    fn build_needs_a_runtime() {
        let err = AlertNotifier::builder().build().unwrap_err();
        assert!(matches!(err, NotifierError::NoRuntime));
    }

    #[test]
    fn jitter_stays_in_half_to_full_delay() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(5) && d < Duration::from_secs(10), "{d:?}");
        }
    }

    #[tokio::test]
    async fn wire_formats_follow_the_target() {
        let sender = Sender {
            client: reqwest::Client::new(),
            service: Arc::from("svc"),
            generator_url: Arc::from(""),
            validity: Duration::from_secs(240),
            max_attempts: 1,
            initial_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let firing = notification("a");
        let am = serde_json::to_value(sender.wire(&firing, now, TargetKind::Alertmanager)).unwrap();
        assert_eq!(
            am,
            serde_json::json!({
                "labels": {"alertname": "a"},
                "annotations": {"summary": "s"},
                "startsAt": "1970-01-01T00:00:00.000Z",
                "endsAt": "1970-01-01T00:20:40.000Z",
            })
        );
        let mut resolved = notification("a");
        resolved.status = AlertState::Resolved;
        resolved.ends_at = Some(now + Duration::from_secs(60)); // clamped to now
        let hook = serde_json::to_value(sender.wire(&resolved, now, TargetKind::Webhook)).unwrap();
        assert_eq!(hook["status"], "resolved");
        assert_eq!(hook["endsAt"], "1970-01-01T00:16:40.000Z");
        assert_eq!((hook["value"].as_f64(), hook["threshold"].as_f64()), (Some(1.0), Some(0.5)));
    }
}
