//! The JSON of each kind of target: Alertmanager's v2 `postableAlerts`, and
//! the webhook body that adds `status`, `value` and `threshold`.

use std::{collections::BTreeMap, time::SystemTime};

use serde::Serialize;

use crate::alerts::notification::Notification;

use super::{queue::TargetKind, sender::Sender};
use crate::time::rfc3339;

/// An alert in the JSON of both targets.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireAlert<'a> {
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
pub(super) struct WebhookBody<'a> {
    pub(super) service: &'a str,
    pub(super) alerts: Vec<WireAlert<'a>>,
}

impl Sender {
    /// `n` as `kind` wants it, for a request sent at `now`.
    pub(super) fn wire<'a>(
        &'a self,
        n: &'a Notification,
        now: SystemTime,
        kind: TargetKind,
    ) -> WireAlert<'a> {
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

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::alerts::{AlertState, notify::fixtures::notification};

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
