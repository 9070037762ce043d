//! [`AlertNotifier`]: pushes firing and resolved alerts to Alertmanager and
//! to JSON webhooks, from bounded queues, with retries, never blocking.
//!
//! The handle ([`notifier`]) and its builder ([`builder`]); one bounded
//! queue per target ([`queue`]), drained by one sender task per target with
//! retries ([`sender`]), which posts the JSON of its kind of target
//! ([`wire`]).

mod builder;
mod notifier;
mod queue;
mod sender;
mod wire;

pub use self::{
    builder::{
        AlertNotifierBuilder, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BACKOFF,
        DEFAULT_QUEUE_CAPACITY, DEFAULT_RESEND_INTERVAL, DEFAULT_TIMEOUT, NotifierError,
    },
    notifier::{AlertNotifier, NotifierStats, TargetInfo, TestResult},
    queue::MAX_BATCH,
    sender::SIGNATURE_HEADER,
};

/// The notification the unit tests of the queue and the wire format share.
#[cfg(test)]
mod fixtures {
    use std::{collections::BTreeMap, time::SystemTime};

    use crate::alerts::AlertState;
    use crate::alerts::notification::Notification;

    pub(super) fn notification(name: &str) -> Notification {
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
}
