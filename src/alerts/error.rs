//! [`RuleError`]: why the engine refused its rules, or a change of one.

/// An error in the rules given to [`AlertEngineBuilder`](super::AlertEngineBuilder),
/// or in a change of a rule at run time
/// ([`AlertEngine::update_rule`](super::AlertEngine::update_rule)).
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
    /// A threshold out of its figure's range (a ratio above 1, a negative
    /// latency) or a `for` longer than [`MAX_FOR`](super::MAX_FOR).
    #[error("alert rule {rule:?}: {reason}")]
    OutOfRange {
        /// The rule's name.
        rule: String,
        /// What is out of range.
        reason: String,
    },
    /// No rule has this name (and severity, when one was given).
    #[error("no alert rule is named {0:?}")]
    UnknownRule(String),
    /// Several rules have this name (severity tiers): give the severity.
    #[error("several alert rules are named {0:?}: say which severity")]
    Ambiguous(String),
}
