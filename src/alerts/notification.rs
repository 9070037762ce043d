//! [`Notification`]: an alert transition as the notifier sends it.

use std::{collections::BTreeMap, time::SystemTime};

use super::AlertState;

/// One alert to send: built by the engine on a transition or a re-send.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "notify"), allow(dead_code, reason = "read by the notifier only"))]
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
