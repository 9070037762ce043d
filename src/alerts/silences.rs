//! [`Silence`]s: maintenance windows during which matching alerts are
//! still evaluated and listed, but not notified.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::clock::WallClock;
use crate::time::rfc3339;

/// The most silences an engine holds at once: 100.
pub const MAX_SILENCES: usize = 100;
/// The longest a silence may last: 7 days.
pub const MAX_SILENCE_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest reason a silence may give: 1024 bytes.
pub const MAX_SILENCE_REASON: usize = 1024;

/// Which alerts a silence covers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SilenceMatcher {
    /// Every alert of the engine (a deploy, a maintenance window).
    All,
    /// The alerts of the rule with this name (every severity tier).
    Rule(String),
}

impl SilenceMatcher {
    fn matches(&self, rule: &str) -> bool {
        match self {
            Self::All => true,
            Self::Rule(name) => name == rule,
        }
    }
}

/// A silence: from its creation until `expires_at`, the alerts it matches
/// send no notification (neither firing, re-sent nor resolved). They are
/// still evaluated, listed (marked `silenced`) and recorded in the history.
/// An expiry always ends it; so does
/// [`AlertEngine::expire_silence`](super::AlertEngine::expire_silence).
///
/// Alertmanager's silences are the fleet-scale equivalent: they silence
/// the alerts of every instance by label matchers, at the Alertmanager,
/// whereas these silence one process before it notifies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Silence {
    /// Its id, unique within the engine, from 1.
    pub id: u64,
    /// What it covers.
    pub matcher: SilenceMatcher,
    /// Why, for the operators (at most [`MAX_SILENCE_REASON`] bytes).
    pub reason: String,
    /// When it was created.
    pub created_at: Instant,
    /// When it ends.
    pub expires_at: Instant,
}

/// Why a silence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SilenceError {
    /// A duration of zero or longer than [`MAX_SILENCE_DURATION`].
    #[error("a silence must last more than 0 s and at most 7 days")]
    Duration,
    /// An empty reason, or one longer than [`MAX_SILENCE_REASON`] bytes.
    #[error("a silence needs a reason of 1 to 1024 bytes")]
    Reason,
    /// A matcher naming a rule the engine does not have.
    #[error("no alert rule is named {0:?}")]
    UnknownRule(String),
    /// [`MAX_SILENCES`] silences are active already.
    #[error("100 silences are active already")]
    TooMany,
}

/// The silences of one engine, in creation order.
#[derive(Debug, Clone, Default)]
pub(super) struct Silences {
    list: Vec<Silence>,
    next_id: u64,
}

impl Silences {
    /// Adds a silence; validated by the caller but for the count.
    pub(super) fn add(
        &mut self,
        matcher: SilenceMatcher,
        reason: String,
        now: Instant,
        duration: Duration,
    ) -> Result<Silence, SilenceError> {
        self.expire(now);
        if self.list.len() >= MAX_SILENCES {
            return Err(SilenceError::TooMany);
        }
        self.next_id += 1;
        let silence =
            Silence { id: self.next_id, matcher, reason, created_at: now, expires_at: now + duration };
        self.list.push(silence.clone());
        Ok(silence)
    }

    /// Ends silence `id` now; `false` when there is none.
    pub(super) fn remove(&mut self, id: u64) -> bool {
        let before = self.list.len();
        self.list.retain(|s| s.id != id);
        self.list.len() != before
    }

    /// Drops the silences expired at `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        self.list.retain(|s| now < s.expires_at);
    }

    /// Whether an active silence at `now` covers the rule `rule`.
    pub(super) fn covers(&self, rule: &str, now: Instant) -> bool {
        self.list.iter().any(|s| now < s.expires_at && s.matcher.matches(rule))
    }

    /// The silences active at `now`.
    pub(super) fn active(&self, now: Instant) -> Vec<Silence> {
        self.list.iter().filter(|s| now < s.expires_at).cloned().collect()
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.list.capacity() * size_of::<Silence>()
            + self.list.iter().map(|s| s.reason.capacity()).sum::<usize>()
    }
}

/// Checks a silence request as [`AlertEngine::silence`](super::AlertEngine::silence) does.
pub(super) fn validate(reason: &str, duration: Duration) -> Result<(), SilenceError> {
    if duration.is_zero() || duration > MAX_SILENCE_DURATION {
        return Err(SilenceError::Duration);
    }
    if reason.trim().is_empty() || reason.len() > MAX_SILENCE_REASON {
        return Err(SilenceError::Reason);
    }
    Ok(())
}

/// A silence as `GET /monitoring/silences` lists it:
/// `{"id": 1, "matcher": {"rule": "HighErrorRatio"}, "reason": "deploy",
/// "created_at": "...", "expires_at": "..."}` (`{"all": true}` for every alert).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SilenceEntry {
    /// The silence's id.
    pub id: u64,
    /// `{"all": true}` or `{"rule": "<name>"}`.
    pub matcher: serde_json::Value,
    /// Why.
    pub reason: String,
    /// When it was created, RFC 3339 UTC.
    pub created_at: String,
    /// When it ends, RFC 3339 UTC.
    pub expires_at: String,
}

impl SilenceEntry {
    pub(super) fn new(s: &Silence, clock: &WallClock) -> Self {
        let matcher = match &s.matcher {
            SilenceMatcher::All => serde_json::json!({"all": true}),
            SilenceMatcher::Rule(rule) => serde_json::json!({"rule": rule}),
        };
        Self {
            id: s.id,
            matcher,
            reason: s.reason.clone(),
            created_at: rfc3339(clock.at(s.created_at)),
            expires_at: rfc3339(clock.at(s.expires_at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_cover_their_rule_until_they_expire() {
        let t0 = Instant::now();
        let mut s = Silences::default();
        let one =
            s.add(SilenceMatcher::Rule("A".to_owned()), "deploy".to_owned(), t0, Duration::from_secs(60));
        assert_eq!(one.unwrap().id, 1);
        assert!(s.covers("A", t0 + Duration::from_secs(59)));
        assert!(!s.covers("B", t0));
        assert!(!s.covers("A", t0 + Duration::from_secs(60)), "an expiry always ends it");
        let all = s.add(SilenceMatcher::All, "maintenance".to_owned(), t0, Duration::from_secs(10)).unwrap();
        assert!(s.covers("B", t0));
        assert!(s.remove(all.id));
        assert!(!s.remove(all.id));
        assert!(!s.covers("B", t0));
        s.expire(t0 + Duration::from_secs(61));
        assert!(s.active(t0).is_empty());
    }

    #[test]
    fn requests_are_validated_and_bounded() {
        assert_eq!(validate("x", Duration::ZERO), Err(SilenceError::Duration));
        assert_eq!(validate("x", MAX_SILENCE_DURATION + Duration::from_secs(1)), Err(SilenceError::Duration));
        assert_eq!(validate("  ", Duration::from_secs(1)), Err(SilenceError::Reason));
        assert_eq!(validate(&"x".repeat(1025), Duration::from_secs(1)), Err(SilenceError::Reason));
        let t0 = Instant::now();
        let mut s = Silences::default();
        for _ in 0..MAX_SILENCES {
            s.add(SilenceMatcher::All, "r".to_owned(), t0, Duration::from_secs(60)).unwrap();
        }
        let err = s.add(SilenceMatcher::All, "r".to_owned(), t0, Duration::from_secs(60));
        assert_eq!(err, Err(SilenceError::TooMany));
        // Expired ones make room.
        assert!(
            s.add(SilenceMatcher::All, "r".to_owned(), t0 + Duration::from_secs(60), Duration::from_secs(1))
                .is_ok()
        );
    }
}
