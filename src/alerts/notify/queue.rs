//! The queue of each target: bounded, dropping its oldest alert when full,
//! never waiting.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::sync::Notify;

use crate::alerts::{ALERT_NOTIFICATIONS_DROPPED, notification::Notification};

/// The most alerts sent in one request.
pub const MAX_BATCH: usize = 64;

/// Where a target sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TargetKind {
    Alertmanager,
    Webhook,
}

impl TargetKind {
    pub(super) const fn as_str(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Webhook => "webhook",
        }
    }
}

/// One target: its queue, the wake-up of its sender, and its figures.
pub(super) struct Target {
    pub(super) kind: TargetKind,
    pub(super) url: String,
    /// The shared secret of a signed webhook.
    pub(super) secret: Option<Arc<[u8]>>,
    capacity: usize,
    queue: Mutex<VecDeque<Notification>>,
    pub(super) wake: Notify,
    pub(super) closed: AtomicBool,
    pub(super) in_flight: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) dropped: AtomicU64,
}

impl Target {
    /// An idle target whose queue holds at most `capacity` notifications.
    pub(super) fn new(kind: TargetKind, url: String, secret: Option<Arc<[u8]>>, capacity: usize) -> Self {
        Self {
            kind,
            url,
            secret,
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
    pub(super) fn push(&self, n: Notification) {
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

    pub(super) fn take_batch(&self) -> Vec<Notification> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let n = queue.len().min(MAX_BATCH);
        let batch: Vec<_> = queue.drain(..n).collect();
        self.in_flight.store(batch.len() as u64, Ordering::Relaxed);
        batch
    }

    /// The URL without its password, query and fragment, for logs and the
    /// status page.
    pub(super) fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    pub(super) fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// `url` without its password, query and fragment.
pub(super) fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("redacted"));
            }
            if url.query().is_some() {
                url.set_query(Some("redacted"));
            }
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::notify::fixtures::notification;

    fn target(capacity: usize) -> Target {
        Target::new(TargetKind::Webhook, String::new(), None, capacity)
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
    fn urls_lose_their_secrets() {
        assert_eq!(redact("http://u:pw@h:1/p?token=x#f"), "http://u:redacted@h:1/p?redacted");
        assert_eq!(redact("http://h/hook"), "http://h/hook");
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
}
