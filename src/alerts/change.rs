//! What may change in a rule at run time ([`RuleChange`]), and the
//! validation the builder and run-time changes share.

use std::time::Duration;

use super::{AlertMetric, AlertRule, RuleError, Severity};

/// The longest `for` a rule may have: 1 day.
pub const MAX_FOR: Duration = Duration::from_secs(24 * 3600);

/// A change of a rule's threshold, `for` and severity, made at run time
/// with [`AlertEngine::update_rule`](super::AlertEngine::update_rule) (or
/// `PUT /monitoring/alerts/rules/{name}`). Fields left `None` keep their
/// value.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_observability::alerts::{RuleChange, Severity};
///
/// let change = RuleChange::default().threshold(0.01).for_duration(Duration::from_secs(120));
/// assert_eq!(change.severity, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
#[must_use]
pub struct RuleChange {
    /// The new firing threshold.
    pub threshold: Option<f64>,
    /// The new `for`.
    pub for_: Option<Duration>,
    /// The new severity.
    pub severity: Option<Severity>,
}

impl RuleChange {
    /// Sets the new threshold.
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = Some(threshold);
        self
    }

    /// Sets the new `for`.
    pub fn for_duration(mut self, for_: Duration) -> Self {
        self.for_ = Some(for_);
        self
    }

    /// Sets the new severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }

    /// Whether it changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.threshold.is_none() && self.for_.is_none() && self.severity.is_none()
    }

    /// `rule` with the change made.
    pub(super) fn apply(&self, rule: &AlertRule) -> AlertRule {
        let mut changed = rule.clone();
        if let Some(threshold) = self.threshold {
            changed.threshold = threshold;
        }
        if let Some(for_) = self.for_ {
            changed.for_ = for_;
        }
        if let Some(severity) = self.severity {
            changed.severity = severity;
        }
        changed
    }

    /// What changed from `old` to `new`, for the history:
    /// `threshold 0.05 -> 0.01, for 60s -> 120s`.
    pub(super) fn describe(old: &AlertRule, new: &AlertRule) -> String {
        let mut parts = Vec::new();
        if old.threshold.to_bits() != new.threshold.to_bits() {
            parts.push(format!("threshold {} -> {}", old.threshold, new.threshold));
        }
        if old.for_ != new.for_ {
            parts.push(format!("for {}s -> {}s", old.for_.as_secs_f64(), new.for_.as_secs_f64()));
        }
        if old.severity != new.severity {
            parts.push(format!("severity {} -> {}", old.severity, new.severity));
        }
        if parts.is_empty() { "no change".to_owned() } else { parts.join(", ") }
    }
}

/// Checks `rules` as [`AlertEngineBuilder::build`](super::AlertEngineBuilder::build)
/// and run-time changes do: names not empty and distinct per severity,
/// thresholds finite and in the range of their figure, `for` at most
/// [`MAX_FOR`].
pub(super) fn validate(rules: &[AlertRule]) -> Result<(), RuleError> {
    for (i, rule) in rules.iter().enumerate() {
        if rule.name.is_empty() {
            return Err(RuleError::EmptyName);
        }
        if rules[..i].iter().any(|r| r.name == rule.name && r.severity == rule.severity) {
            return Err(RuleError::Duplicate(rule.name.clone()));
        }
        if !rule.threshold.is_finite() || !rule.resolves_at().is_finite() {
            return Err(RuleError::NonFiniteThreshold(rule.name.clone()));
        }
        let range = match rule.metric {
            AlertMetric::ErrorRatio | AlertMetric::CacheHitRatio { .. } | AlertMetric::Readiness => {
                Some((0.0, 1.0, "a ratio from 0 to 1"))
            }
            AlertMetric::LatencyP50
            | AlertMetric::LatencyP95
            | AlertMetric::LatencyP99
            | AlertMetric::RequestRate
            | AlertMetric::BurnRate { .. } => Some((0.0, f64::MAX, "not negative")),
        };
        if let Some((low, high, what)) = range
            && !(low..=high).contains(&rule.threshold)
        {
            return Err(RuleError::OutOfRange {
                rule: rule.name.clone(),
                reason: format!("the threshold of {} must be {what}", rule.metric.as_str()),
            });
        }
        if rule.for_ > MAX_FOR {
            return Err(RuleError::OutOfRange {
                rule: rule.name.clone(),
                reason: "`for` must be at most 1 day".to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_and_describe_themselves() {
        let old = AlertRule::high_error_ratio();
        let change = RuleChange::default().threshold(0.01).severity(Severity::Warning);
        let new = change.apply(&old);
        assert_eq!((new.threshold, new.severity, new.for_), (0.01, Severity::Warning, old.for_));
        assert_eq!(RuleChange::describe(&old, &new), "threshold 0.05 -> 0.01, severity critical -> warning");
        assert!(RuleChange::default().is_empty());
    }

    #[test]
    fn thresholds_are_checked_against_their_figure() {
        let ratio = RuleChange::default().threshold(1.5).apply(&AlertRule::high_error_ratio());
        let err = validate(&[ratio]).unwrap_err();
        assert!(err.to_string().contains("from 0 to 1"), "{err}");
        let latency = RuleChange::default().threshold(-1.0).apply(&AlertRule::high_latency_p95());
        assert!(matches!(validate(&[latency]), Err(RuleError::OutOfRange { .. })));
        let long = RuleChange::default().for_duration(MAX_FOR * 2).apply(&AlertRule::high_latency_p95());
        assert!(validate(&[long]).unwrap_err().to_string().contains("at most 1 day"));
        assert!(validate(&AlertRule::defaults()).is_ok());
    }
}
