//! The sender task of each target: takes batches from its queue, posts
//! them with retries and backoff, counts and logs the outcome.

use std::{
    hash::{BuildHasher, RandomState},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use crate::alerts::notification::Notification;

use super::{
    queue::{Target, TargetKind},
    wire::WebhookBody,
};
use crate::alerts::{ALERT_NOTIFICATIONS_FAILED, ALERT_NOTIFICATIONS_SENT};

/// How often a target that keeps failing logs a summary warning.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What a sender task needs besides its target.
#[derive(Clone)]
pub(super) struct Sender {
    pub(super) client: reqwest::Client,
    pub(super) service: Arc<str>,
    pub(super) generator_url: Arc<str>,
    /// How far ahead a firing alert's `endsAt` is set.
    pub(super) validity: Duration,
    pub(super) max_attempts: u32,
    pub(super) initial_backoff: Duration,
    pub(super) max_backoff: Duration,
}

/// The header of a signed webhook request: `X-Signature-256`, GitHub's
/// name for the HMAC-SHA256 of the body, `sha256=<lowercase hex>`.
pub const SIGNATURE_HEADER: &str = "x-signature-256";

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret` (RFC 2104).
pub(super) fn signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 2 * digest.len());
    out.push_str("sha256=");
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The outcome of one attempt.
pub(super) enum Attempt {
    Sent,
    Retry(String),
    GiveUp(String),
}

impl Sender {
    pub(super) async fn run(self, target: Arc<Target>) {
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

    pub(super) async fn attempt(&self, target: &Target, batch: &[Notification]) -> Attempt {
        let now = SystemTime::now();
        let alerts: Vec<_> = batch.iter().map(|n| self.wire(n, now, target.kind)).collect();
        let body = match target.kind {
            TargetKind::Alertmanager => serde_json::to_vec(&alerts),
            TargetKind::Webhook => serde_json::to_vec(&WebhookBody { service: &self.service, alerts }),
        };
        let body = match body {
            Ok(body) => body,
            Err(err) => return Attempt::GiveUp(format!("cannot serialize the alerts: {err}")),
        };
        let mut request =
            self.client.post(&target.url).header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &target.secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, &body));
        }
        match request.body(body).send().await {
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

    #[test]
    fn signatures_are_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn jitter_stays_in_half_to_full_delay() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(5) && d < Duration::from_secs(10), "{d:?}");
        }
    }
}
