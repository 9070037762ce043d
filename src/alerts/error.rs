//! [`RuleError`]: why the engine refused its rules.

/// An error in the rules given to [`AlertEngineBuilder`](super::AlertEngineBuilder).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// A rule has an empty name.
    #[error("an alert rule has an empty name")]
    EmptyName,
    /// A rule's threshold or resolve threshold is NaN or infinite.
    #[error("alert rule {0:?} has a threshold that is not a finite number")]
    NonFiniteThreshold(String),
    /// Two rules have the same name and severity, so their alerts could not
    /// be told apart (in the gauge, in Alertmanager).
    #[error("two alert rules are named {0:?} with the same severity")]
    Duplicate(String),
}
