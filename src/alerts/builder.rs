//! [`AlertEngineBuilder`]: the rules, their validation, and how long
//! resolved alerts stay listed.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

#[cfg(feature = "notify")]
use super::AlertNotifier;
use super::{
    AlertEngine, AlertRule, DEFAULT_HISTORY_CAPACITY, RuleError, change::validate, clock::WallClock,
    engine::Inner, state::State,
};

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
    history_capacity: usize,
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
            history_capacity: DEFAULT_HISTORY_CAPACITY,
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

    /// Sets how many state transitions the history keeps (at least 1;
    /// [`DEFAULT_HISTORY_CAPACITY`] by default), the oldest dropped first.
    pub fn history_capacity(mut self, capacity: usize) -> Self {
        self.history_capacity = capacity.max(1);
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
    /// [`RuleError`] when a rule has an empty name, a threshold that is not
    /// finite or out of its figure's range (a ratio outside 0 to 1, a
    /// negative latency or rate), a `for` over a day, or when two rules
    /// share a name and a severity. Run-time changes are checked the same
    /// way.
    pub fn build(self) -> Result<AlertEngine, RuleError> {
        validate(&self.rules)?;
        Ok(self.build_unchecked())
    }

    pub(super) fn build_unchecked(self) -> AlertEngine {
        super::describe();
        AlertEngine {
            inner: Arc::new(Inner {
                resolved_retention: self.resolved_retention,
                max_resolved: self.max_resolved,
                #[cfg(feature = "notify")]
                notifier: self.notifier,
                clock: WallClock::now(),
                state: Mutex::new(State::new(self.rules, self.history_capacity)),
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
