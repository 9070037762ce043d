//! [`AlertHistory`]: a fixed-size ring of the alerts' state transitions,
//! its filter and its per-rule counts, the body of
//! `GET /monitoring/alerts/history`.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Instant, SystemTime},
};

use serde::Serialize;

use super::{Severity, clock::WallClock};
use crate::time::rfc3339;

/// How many transitions an engine keeps by default: 1000, the oldest
/// dropped first.
pub const DEFAULT_HISTORY_CAPACITY: usize = 1000;

/// What happened to an alert, as the history records it.
///
/// Serializes in snake_case (`"pending"`, `"rule_changed"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TransitionKind {
    /// The condition started to hold.
    Pending,
    /// A pending alert stopped holding before its `for`: it never fired.
    Inactive,
    /// The condition held for the rule's `for`.
    Firing,
    /// A firing alert came back past its resolve threshold, or lost its data.
    Resolved,
    /// A firing alert was covered by a silence: it is still evaluated and
    /// listed, but not notified.
    Silenced,
    /// A silence covering a firing alert ended (expired or deleted):
    /// notifications resume.
    Unsilenced,
    /// The rule's threshold, `for` or severity was changed at run time
    /// ([`AlertEngine::update_rule`](super::AlertEngine::update_rule)).
    RuleChanged,
}

impl TransitionKind {
    /// The snake_case name: `pending`, `inactive`, `firing`, `resolved`,
    /// `silenced`, `unsilenced` or `rule_changed`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Inactive => "inactive",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
            Self::Silenced => "silenced",
            Self::Unsilenced => "unsilenced",
            Self::RuleChanged => "rule_changed",
        }
    }
}

/// One state transition of one alert.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// When it happened: the `now` of the evaluation that saw it (or of the
    /// API call, for a rule change).
    pub at: Instant,
    /// The rule's name.
    pub rule: String,
    /// The rule's severity at the time.
    pub severity: Severity,
    /// The cache, for a cache rule.
    pub cache: Option<String>,
    /// What happened.
    pub kind: TransitionKind,
    /// The rule's figure at the time, when known.
    pub value: Option<f64>,
    /// The rule's firing threshold at the time.
    pub threshold: f64,
    /// For a rule change, what changed (`threshold 0.05 -> 0.01`).
    pub note: Option<String>,
}

/// A bounded ring of [`Transition`]s, oldest first; pushing past its
/// capacity drops the oldest. Memory is bounded by its capacity times the
/// size of a transition (plus its strings).
#[derive(Debug, Clone)]
pub(super) struct History {
    capacity: usize,
    ring: VecDeque<Transition>,
    /// Transitions ever recorded, dropped ones included.
    total: u64,
}

impl History {
    pub(super) fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), ring: VecDeque::new(), total: 0 }
    }

    pub(super) fn push(&mut self, transition: Transition) {
        if self.ring.len() >= self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(transition);
        self.total += 1;
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(super) fn len(&self) -> usize {
        self.ring.len()
    }

    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// The transitions `filter` selects, newest first.
    pub(super) fn select(&self, filter: &HistoryFilter, clock: &WallClock) -> Vec<Transition> {
        self.ring.iter().rev().filter(|t| filter.selects(t, clock)).cloned().collect()
    }

    /// An estimate of the heap bytes the ring holds: its slots and the
    /// strings of its transitions.
    pub(super) fn heap_bytes(&self) -> usize {
        let strings: usize = self
            .ring
            .iter()
            .map(|t| {
                t.rule.capacity()
                    + t.cache.as_ref().map_or(0, String::capacity)
                    + t.note.as_ref().map_or(0, String::capacity)
            })
            .sum();
        self.ring.capacity() * size_of::<Transition>() + strings
    }
}

/// Which transitions [`AlertEngine::history`](super::AlertEngine::history)
/// returns: all by default; each set field narrows.
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_observability::alerts::{HistoryFilter, Severity};
///
/// let filter = HistoryFilter::default()
///     .rule("HighErrorRatio")
///     .severity(Severity::Critical)
///     .since(SystemTime::now() - Duration::from_secs(3600));
/// # let _ = filter;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
#[must_use]
pub struct HistoryFilter {
    /// Only transitions at or after this wall-clock time.
    pub since: Option<SystemTime>,
    /// Only transitions of the rule of this name.
    pub rule: Option<String>,
    /// Only transitions of this severity.
    pub severity: Option<Severity>,
}

impl HistoryFilter {
    /// Only transitions at or after `since`.
    pub fn since(mut self, since: SystemTime) -> Self {
        self.since = Some(since);
        self
    }

    /// Only transitions of the rule named `rule`.
    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    /// Only transitions of `severity`.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }

    fn selects(&self, t: &Transition, clock: &WallClock) -> bool {
        self.rule.as_ref().is_none_or(|r| *r == t.rule)
            && self.severity.is_none_or(|s| s == t.severity)
            && self.since.is_none_or(|since| clock.at(t.at) >= since)
    }
}

/// The body of `GET /monitoring/alerts/history`: the selected transitions,
/// newest first, and how many of each kind each rule had among them.
///
/// ```json
/// {
///   "transitions": [
///     {"at": "2025-06-01T12:07:00.000Z", "rule": "HighErrorRatio", "severity": "critical",
///      "state": "resolved", "value": 0.044, "threshold": 0.05},
///     {"at": "2025-06-01T12:01:00.000Z", "rule": "HighErrorRatio", "severity": "critical",
///      "state": "firing", "value": 0.073, "threshold": 0.05}
///   ],
///   "counts": {"HighErrorRatio": {"firing": 1, "resolved": 1}},
///   "retained": 2, "capacity": 1000, "recorded_total": 2
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HistoryReport {
    /// The selected transitions, newest first.
    pub transitions: Vec<TransitionEntry>,
    /// Per rule, the number of each kind of transition among `transitions`.
    pub counts: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Transitions the ring holds now, before filtering.
    pub retained: usize,
    /// The most transitions the ring holds.
    pub capacity: usize,
    /// Transitions recorded since the engine was built, dropped ones
    /// included.
    pub recorded_total: u64,
}

/// One transition in a [`HistoryReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TransitionEntry {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The rule's name.
    pub rule: String,
    /// The severity.
    pub severity: Severity,
    /// The cache, for a cache rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// What happened.
    pub state: TransitionKind,
    /// The figure, `null` when unknown.
    pub value: Option<f64>,
    /// The firing threshold.
    pub threshold: f64,
    /// What changed, for a rule change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl HistoryReport {
    pub(super) fn new(selected: &[Transition], history: &History, clock: &WallClock) -> Self {
        let mut counts: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
        for t in selected {
            *counts.entry(t.rule.clone()).or_default().entry(t.kind.as_str()).or_default() += 1;
        }
        Self {
            transitions: selected
                .iter()
                .map(|t| TransitionEntry {
                    at: rfc3339(clock.at(t.at)),
                    rule: t.rule.clone(),
                    severity: t.severity,
                    cache: t.cache.clone(),
                    state: t.kind,
                    value: t.value,
                    threshold: t.threshold,
                    note: t.note.clone(),
                })
                .collect(),
            counts,
            retained: history.len(),
            capacity: history.capacity(),
            recorded_total: history.total(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn transition(at: Instant, rule: &str, kind: TransitionKind) -> Transition {
        Transition {
            at,
            rule: rule.to_owned(),
            severity: Severity::Warning,
            cache: None,
            kind,
            value: Some(1.0),
            threshold: 0.5,
            note: None,
        }
    }

    #[test]
    fn the_ring_drops_its_oldest_and_filters() {
        let clock = WallClock::now();
        let t0 = Instant::now();
        let mut history = History::new(3);
        for (i, rule) in ["a", "b", "a", "b"].into_iter().enumerate() {
            history.push(transition(t0 + Duration::from_secs(i as u64), rule, TransitionKind::Firing));
        }
        assert_eq!((history.len(), history.total()), (3, 4));
        let all = history.select(&HistoryFilter::default(), &clock);
        let order: Vec<_> = all.iter().map(|t| (t.rule.as_str(), t.at)).collect();
        assert_eq!(order, [("b", t0 + 3 * SEC), ("a", t0 + 2 * SEC), ("b", t0 + SEC)]);
        let b = history.select(&HistoryFilter::default().rule("b"), &clock);
        assert_eq!(b.len(), 2);
        let since = history.select(&HistoryFilter::default().since(clock.at(t0 + 2 * SEC)), &clock);
        assert_eq!(since.len(), 2);
        let critical = history.select(&HistoryFilter::default().severity(Severity::Critical), &clock);
        assert!(critical.is_empty());
        let report = HistoryReport::new(&all, &history, &clock);
        assert_eq!(report.counts["b"]["firing"], 2);
        assert_eq!((report.retained, report.capacity, report.recorded_total), (3, 3, 4));
        assert!(history.heap_bytes() >= 3 * size_of::<Transition>());
    }

    const SEC: Duration = Duration::from_secs(1);
}
