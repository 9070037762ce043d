//! [`AlertEngineBuilder`]: the rules, their validation, and how long
//! resolved alerts stay listed.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

#[cfg(feature = "notify")]
use super::AlertNotifier;
use super::{AlertEngine, AlertRule, RuleError, clock::WallClock, engine::Inner, state::State};

/// How long a resolved alert stays listed by default: 15 minutes.
pub const DEFAULT_RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);
/// How many resolved alerts stay listed at most by default: 100.
pub const DEFAULT_MAX_RESOLVED: usize = 100;

/// Builds an [`AlertEngine`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_observability::alerts::{AlertEngine, AlertRule, Severity};
///
/// let engine = AlertEngine::builder()
///     .rules(AlertRule::defaults())
///     .rule(AlertRule::high_error_ratio().threshold(0.01).severity(Severity::Warning))
///     .resolved_retention(Duration::from_secs(3600))
///     .build()?;
/// assert_eq!(engine.rules().len(), 5);
/// # Ok::<(), tower_observability::alerts::RuleError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AlertEngineBuilder {
    rules: Vec<AlertRule>,
    resolved_retention: Duration,
    max_resolved: usize,
    #[cfg(feature = "notify")]
    notifier: Option<AlertNotifier>,
}

impl Default for AlertEngineBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl AlertEngineBuilder {
    /// No rules, no notifier, resolved alerts kept 15 minutes (100 at most).
    pub fn new() -> Self {
        Self {
            rules: Vec::new(),
            resolved_retention: DEFAULT_RESOLVED_RETENTION,
            max_resolved: DEFAULT_MAX_RESOLVED,
            #[cfg(feature = "notify")]
            notifier: None,
        }
    }

    /// Adds a rule. Rules may share a name (a warning and a critical
    /// threshold of one figure) as long as their severities differ; see
    /// [`build`](Self::build).
    pub fn rule(mut self, rule: AlertRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds rules.
    pub fn rules(mut self, rules: impl IntoIterator<Item = AlertRule>) -> Self {
        self.rules.extend(rules);
        self
    }

    /// Sets how long resolved alerts stay listed.
    pub fn resolved_retention(mut self, retention: Duration) -> Self {
        self.resolved_retention = retention;
        self
    }

    /// Sets how many resolved alerts stay listed at most.
    pub fn max_resolved(mut self, max: usize) -> Self {
        self.max_resolved = max;
        self
    }

    /// Sends firing and resolved alerts through `notifier`.
    #[cfg(feature = "notify")]
    pub fn notifier(mut self, notifier: AlertNotifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Builds the engine and describes its metrics to the recorder.
    ///
    /// # Errors
    ///
    /// [`RuleError`] when a rule has an empty name or a threshold that is
    /// not finite, or when two rules share a name and a severity.
    pub fn build(self) -> Result<AlertEngine, RuleError> {
        for (i, rule) in self.rules.iter().enumerate() {
            if self.rules[..i].iter().any(|r| r.name == rule.name && r.severity == rule.severity) {
                return Err(RuleError::Duplicate(rule.name.clone()));
            }
            if rule.name.is_empty() {
                return Err(RuleError::EmptyName);
            }
            if !rule.threshold.is_finite() || !rule.resolves_at().is_finite() {
                return Err(RuleError::NonFiniteThreshold(rule.name.clone()));
            }
        }
        Ok(self.build_unchecked())
    }

    pub(super) fn build_unchecked(self) -> AlertEngine {
        super::describe();
        AlertEngine {
            inner: Arc::new(Inner {
                rules: self.rules,
                resolved_retention: self.resolved_retention,
                max_resolved: self.max_resolved,
                #[cfg(feature = "notify")]
                notifier: self.notifier,
                clock: WallClock::now(),
                state: Mutex::new(State::default()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertMetric, Comparison, Severity};

    #[test]
    fn rules_are_validated() {
        let nan = AlertRule::new("X", AlertMetric::ErrorRatio, Comparison::Above, f64::NAN);
        assert_eq!(engine_err(nan), RuleError::NonFiniteThreshold("X".to_owned()));
        let empty = AlertRule::new("", AlertMetric::ErrorRatio, Comparison::Above, 0.1);
        assert_eq!(engine_err(empty), RuleError::EmptyName);
        let twice = AlertEngine::builder()
            .rule(AlertRule::high_error_ratio())
            .rule(AlertRule::high_error_ratio().threshold(0.2))
            .build()
            .unwrap_err();
        assert_eq!(twice, RuleError::Duplicate("HighErrorRatio".to_owned()));
        let tiers = AlertEngine::builder()
            .rule(AlertRule::high_error_ratio())
            .rule(AlertRule::high_error_ratio().threshold(0.01).severity(Severity::Warning))
            .build();
        assert!(tiers.is_ok(), "a warning and a critical tier of one figure");
    }

    fn engine_err(rule: AlertRule) -> RuleError {
        AlertEngine::builder().rule(rule).build().unwrap_err()
    }
}
