//! [`AlertEngine`]: the state machine of every rule, its gauge and its
//! notifications.

use std::{
    collections::{BTreeMap, HashMap, VecDeque, hash_map::Entry},
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use ::metrics::Label;
use serde::Serialize;

use super::{
    ALERTS, AlertInputs, AlertMetric, AlertNotifier, AlertRule, Comparison, Severity, clock::WallClock,
    notify::Notification,
};
use crate::{time::rfc3339, window::Window};

/// How long a resolved alert stays listed by default: 15 minutes.
pub const DEFAULT_RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);
/// How many resolved alerts stay listed at most by default: 100.
pub const DEFAULT_MAX_RESOLVED: usize = 100;
/// The most alerts one cache rule ([`AlertMetric::CacheHitRatio`] with no
/// cache name) tracks at once: one per cache, up to 64 caches (the bound
/// of [`CacheHitRatios`](crate::cache::CacheHitRatios)).
pub const MAX_CACHE_ALERTS: usize = 64;

/// The state of an alert.
///
/// *Inactive* is no state: an alert whose condition does not hold is not
/// listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, not yet for the rule's `for_`.
    Pending,
    /// The condition has held for `for_`; notified.
    Firing,
    /// It fired, then its value came back past the resolve threshold (or
    /// its data went away); listed for a while.
    Resolved,
}

impl AlertState {
    /// `pending`, `firing` or `resolved` (the `alertstate` label).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert of a rule (and of a cache, for cache rules), as listed by
/// [`AlertEngine::active`] and [`AlertEngine::resolved`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Alert {
    /// The rule's name (`alertname`).
    pub name: String,
    /// The rule's severity.
    pub severity: Severity,
    /// Pending, firing or resolved.
    pub state: AlertState,
    /// The rule's figure.
    pub metric: AlertMetric,
    /// The cache, for a cache rule.
    pub cache: Option<String>,
    /// The latest value seen; for a resolved alert, the value that resolved
    /// it, or the last one seen when its data went away.
    pub value: Option<f64>,
    /// The rule's firing threshold.
    pub threshold: f64,
    /// The rule's comparison.
    pub comparison: Comparison,
    /// The rule's window.
    pub window: Window,
    /// When the condition started to hold (the start of *pending*).
    pub active_at: Instant,
    /// When the current state began: pending, firing or resolved.
    pub since: Instant,
    /// The summary, with its placeholders filled.
    pub summary: String,
    /// The description, with its placeholders filled.
    pub description: String,
}

/// The number of active alerts (pending and firing) of each severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AlertCounts {
    /// Active critical alerts.
    pub critical: usize,
    /// Active warnings.
    pub warning: usize,
    /// Active infos.
    pub info: usize,
}

impl AlertCounts {
    /// The count of `severity`.
    #[must_use]
    pub const fn get(&self, severity: Severity) -> usize {
        match severity {
            Severity::Critical => self.critical,
            Severity::Warning => self.warning,
            Severity::Info => self.info,
        }
    }

    /// All active alerts.
    #[must_use]
    pub const fn total(&self) -> usize {
        self.critical + self.warning + self.info
    }
}

/// An error in the rules given to [`AlertEngineBuilder`].
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

/// Evaluates [`AlertRule`]s over [`AlertInputs`] and keeps each alert's
/// state; a cheap handle to share (an `Arc` inside).
///
/// See the [module docs](super) for the state machine, the gauge and the
/// JSON. [`evaluate`](Self::evaluate) is synchronous and short (it takes
/// one lock, and queues notifications without waiting);
/// [`spawn_evaluator`](Self::spawn_evaluator) runs it periodically.
///
/// # Example
///
/// ```
/// use std::time::{Duration, Instant};
/// use tower_observability::{
///     alerts::{AlertEngine, AlertInputs, AlertRule, AlertState, WindowFigures},
///     window::Window,
/// };
///
/// let engine = AlertEngine::builder().rule(AlertRule::high_error_ratio()).build()?;
/// let failing = AlertInputs::default().with_window(WindowFigures::from_counts(Window::FiveMinutes, 400, 40));
/// let t0 = Instant::now();
/// engine.evaluate(&failing, t0);
/// assert_eq!(engine.active()[0].state, AlertState::Pending);
/// engine.evaluate(&failing, t0 + Duration::from_secs(60));
/// assert_eq!(engine.active()[0].state, AlertState::Firing);
/// assert_eq!(engine.counts().critical, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AlertEngine {
    inner: Arc<Inner>,
}

struct Inner {
    rules: Vec<AlertRule>,
    resolved_retention: Duration,
    max_resolved: usize,
    notifier: Option<AlertNotifier>,
    clock: WallClock,
    state: Mutex<State>,
}

/// A rule's index and, for a cache rule, the cache.
type Key = (usize, Option<Arc<str>>);

#[derive(Default)]
struct State {
    active: HashMap<Key, Tracked>,
    /// Oldest first.
    resolved: VecDeque<Alert>,
}

/// A pending or firing alert.
struct Tracked {
    firing: bool,
    active_at: Instant,
    since: Instant,
    value: f64,
    /// When it was last handed to the notifier (firing only).
    notified: Option<Instant>,
}

impl AlertEngine {
    /// A builder with no rules.
    pub fn builder() -> AlertEngineBuilder {
        AlertEngineBuilder::new()
    }

    /// An engine with [`AlertRule::defaults`] and no notifier.
    ///
    /// ```
    /// let engine = tower_observability::alerts::AlertEngine::with_default_rules();
    /// assert_eq!(engine.rules().len(), 4);
    /// ```
    #[must_use]
    pub fn with_default_rules() -> Self {
        AlertEngineBuilder::new().rules(AlertRule::defaults()).build_unchecked()
    }

    /// The rules, in the order given.
    pub fn rules(&self) -> &[AlertRule] {
        &self.inner.rules
    }

    /// The notifier, if any.
    #[must_use]
    pub fn notifier(&self) -> Option<&AlertNotifier> {
        self.inner.notifier.as_ref()
    }

    /// Evaluates every rule on `inputs` at `now`, a reading of the
    /// monotonic clock (pass `Instant::now()`; tests pass a simulated
    /// time), and moves each alert through its states.
    ///
    /// Updates the `tower_observability_alerts` gauge and queues the
    /// notifications without waiting. `now` should not go back; an earlier
    /// `now` counts as no time elapsed.
    pub fn evaluate(&self, inputs: &AlertInputs, now: Instant) {
        let inner = &*self.inner;
        let mut state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (index, rule) in inner.rules.iter().enumerate() {
            match &rule.metric {
                AlertMetric::CacheHitRatio { cache: None } => {
                    let mut seen: Vec<Arc<str>> = Vec::new();
                    for figures in inputs.caches.iter().filter(|c| c.window == rule.window) {
                        if seen.iter().any(|s| **s == *figures.cache) {
                            continue;
                        }
                        let cache: Arc<str> = Arc::from(figures.cache.as_str());
                        seen.push(Arc::clone(&cache));
                        let key = (index, Some(cache));
                        let tracked = state.active.keys().filter(|(i, _)| *i == index).count();
                        if tracked >= MAX_CACHE_ALERTS && !state.active.contains_key(&key) {
                            continue;
                        }
                        let value = observe(rule, inputs, Some(&figures.cache));
                        state.step(inner, key, value, now, &mut out);
                    }
                    // Caches gone from the inputs have no data.
                    let gone: Vec<Key> = state
                        .active
                        .keys()
                        .filter(|(i, c)| *i == index && c.as_ref().is_some_and(|c| !seen.contains(c)))
                        .cloned()
                        .collect();
                    for key in gone {
                        state.step(inner, key, None, now, &mut out);
                    }
                }
                AlertMetric::CacheHitRatio { cache: Some(name) } => {
                    let value = observe(rule, inputs, Some(name));
                    state.step(inner, (index, Some(Arc::from(name.as_str()))), value, now, &mut out);
                }
                _ => {
                    let value = observe(rule, inputs, None);
                    state.step(inner, (index, None), value, now, &mut out);
                }
            }
        }
        while state.resolved.len() > inner.max_resolved
            || state
                .resolved
                .front()
                .is_some_and(|a| now.saturating_duration_since(a.since) > inner.resolved_retention)
        {
            state.resolved.pop_front();
        }
        drop(state);
        if let Some(notifier) = &inner.notifier {
            for n in out {
                notifier.notify(n);
            }
        }
    }

    /// The pending and firing alerts, most severe first, then by name and
    /// cache.
    #[must_use]
    pub fn active(&self) -> Vec<Alert> {
        let inner = &*self.inner;
        let state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut alerts: Vec<Alert> = state
            .active
            .iter()
            .map(|((index, cache), t)| {
                let state = if t.firing { AlertState::Firing } else { AlertState::Pending };
                alert(&inner.rules[*index], cache.as_deref(), state, Some(t.value), t.active_at, t.since)
            })
            .collect();
        drop(state);
        alerts.sort_by(|a, b| {
            (a.severity, &a.name, &a.cache, a.state).cmp(&(b.severity, &b.name, &b.cache, b.state))
        });
        alerts
    }

    /// The resolved alerts still listed, the latest first: those resolved
    /// within the retention, at most the maximum.
    #[must_use]
    pub fn resolved(&self) -> Vec<Alert> {
        let state = self.inner.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.resolved.iter().rev().cloned().collect()
    }

    /// The number of active alerts of each severity.
    #[must_use]
    pub fn counts(&self) -> AlertCounts {
        counts(&self.active())
    }

    /// The body of `GET /monitoring/alerts`.
    ///
    /// ```
    /// let engine = tower_observability::alerts::AlertEngine::with_default_rules();
    /// let report = engine.report();
    /// assert!(report.active.is_empty());
    /// assert_eq!(report.counts.total(), 0);
    /// ```
    #[must_use]
    pub fn report(&self) -> AlertsReport {
        let active = self.active();
        let counts = counts(&active);
        let entry = |a: &Alert| AlertEntry::new(a, &self.inner.clock);
        AlertsReport {
            active: active.iter().map(entry).collect(),
            counts,
            resolved: self.resolved().iter().map(entry).collect(),
        }
    }
}

impl fmt::Debug for AlertEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.inner.rules.iter().map(|r| r.name.as_str()).collect();
        f.debug_struct("AlertEngine")
            .field("rules", &names)
            .field("notifier", &self.inner.notifier)
            .finish_non_exhaustive()
    }
}

fn counts(active: &[Alert]) -> AlertCounts {
    let mut counts = AlertCounts::default();
    for a in active {
        match a.severity {
            Severity::Critical => counts.critical += 1,
            Severity::Warning => counts.warning += 1,
            Severity::Info => counts.info += 1,
        }
    }
    counts
}

/// The rule's figure in `inputs`, if present, finite and with enough
/// samples.
fn observe(rule: &AlertRule, inputs: &AlertInputs, cache: Option<&str>) -> Option<f64> {
    let http = |pick: fn(&super::WindowFigures) -> Option<f64>| {
        inputs.window(rule.window).and_then(|w| Some((pick(w)?, w.requests)))
    };
    let (value, samples) = match &rule.metric {
        AlertMetric::ErrorRatio => http(|w| w.error_ratio)?,
        AlertMetric::LatencyP50 => http(|w| w.p50)?,
        AlertMetric::LatencyP95 => http(|w| w.p95)?,
        AlertMetric::LatencyP99 => http(|w| w.p99)?,
        AlertMetric::RequestRate => http(|w| Some(w.request_rate))?,
        AlertMetric::CacheHitRatio { .. } => {
            let c = inputs.cache(cache?, rule.window)?;
            (c.ratio?, c.samples)
        }
        AlertMetric::Readiness => (inputs.readiness?.gauge_value(), u64::MAX),
    };
    (value.is_finite() && samples >= rule.min_samples).then_some(value)
}

fn alert(
    rule: &AlertRule,
    cache: Option<&str>,
    state: AlertState,
    value: Option<f64>,
    active_at: Instant,
    since: Instant,
) -> Alert {
    Alert {
        name: rule.name.clone(),
        severity: rule.severity,
        state,
        metric: rule.metric.clone(),
        cache: cache.map(str::to_owned),
        value,
        threshold: rule.threshold,
        comparison: rule.comparison,
        window: rule.window,
        active_at,
        since,
        summary: rule.render(&rule.summary, value, cache),
        description: rule.render(&rule.description, value, cache),
    }
}

/// Sets `tower_observability_alerts{alertname, severity, alertstate[, cache]}`.
fn gauge(rule: &AlertRule, cache: Option<&str>, state: AlertState, value: f64) {
    let mut labels = vec![
        Label::new("alertname", rule.name.clone()),
        Label::new("severity", rule.severity.as_str()),
        Label::new("alertstate", state.as_str()),
    ];
    if let Some(cache) = cache {
        labels.push(Label::new("cache", cache.to_owned()));
    }
    ::metrics::gauge!(ALERTS, labels).set(value);
}

impl State {
    /// Moves the alert `key` one evaluation on, given its figure.
    fn step(
        &mut self,
        inner: &Inner,
        key: Key,
        value: Option<f64>,
        now: Instant,
        out: &mut Vec<Notification>,
    ) {
        let rule = &inner.rules[key.0];
        let cache = key.1.clone();
        let cache = cache.as_deref();
        let fires = value.is_some_and(|v| rule.comparison.holds(v, rule.threshold));
        let notifier = inner.notifier.as_ref();
        match self.active.entry(key) {
            Entry::Vacant(entry) => {
                let Some(v) = value.filter(|_| fires) else { return };
                gauge(rule, cache, AlertState::Pending, 1.0);
                let t = entry.insert(Tracked {
                    firing: false,
                    active_at: now,
                    since: now,
                    value: v,
                    notified: None,
                });
                if rule.for_.is_zero() {
                    fire(inner, rule, cache, t, now, out);
                }
            }
            Entry::Occupied(mut entry) if !entry.get().firing => {
                if !fires {
                    gauge(rule, cache, AlertState::Pending, 0.0);
                    entry.remove();
                    return;
                }
                let t = entry.get_mut();
                t.value = value.unwrap_or(t.value);
                if now.saturating_duration_since(t.active_at) >= rule.for_ {
                    fire(inner, rule, cache, t, now, out);
                }
            }
            Entry::Occupied(mut entry) => {
                let holds = value.is_some_and(|v| rule.comparison.holds(v, rule.resolves_at()));
                if holds {
                    let t = entry.get_mut();
                    t.value = value.unwrap_or(t.value);
                    if let Some(n) = notifier
                        && t.notified
                            .is_none_or(|at| now.saturating_duration_since(at) >= n.resend_interval())
                    {
                        t.notified = Some(now);
                        out.push(notification(inner, rule, cache, t, AlertState::Firing, None));
                    }
                    return;
                }
                let t = entry.remove();
                gauge(rule, cache, AlertState::Firing, 0.0);
                let last = value.or(Some(t.value));
                let resolved = alert(rule, cache, AlertState::Resolved, last, t.active_at, now);
                tracing::info!(
                    alertname = %rule.name,
                    severity = rule.severity.as_str(),
                    cache,
                    value = last,
                    "alert resolved"
                );
                if notifier.is_some() {
                    let t = Tracked { value: last.unwrap_or(t.value), ..t };
                    out.push(notification(inner, rule, cache, &t, AlertState::Resolved, Some(now)));
                }
                self.resolved.push_back(resolved);
            }
        }
    }
}

/// Moves a pending alert to firing.
fn fire(
    inner: &Inner,
    rule: &AlertRule,
    cache: Option<&str>,
    t: &mut Tracked,
    now: Instant,
    out: &mut Vec<Notification>,
) {
    t.firing = true;
    t.since = now;
    gauge(rule, cache, AlertState::Pending, 0.0);
    gauge(rule, cache, AlertState::Firing, 1.0);
    tracing::warn!(
        alertname = %rule.name,
        severity = rule.severity.as_str(),
        cache,
        value = t.value,
        threshold = rule.threshold,
        "alert firing"
    );
    if inner.notifier.is_some() {
        t.notified = Some(now);
        out.push(notification(inner, rule, cache, t, AlertState::Firing, None));
    }
}

fn notification(
    inner: &Inner,
    rule: &AlertRule,
    cache: Option<&str>,
    t: &Tracked,
    status: AlertState,
    resolved_at: Option<Instant>,
) -> Notification {
    let mut labels = rule.labels.clone();
    labels.insert("alertname".to_owned(), rule.name.clone());
    labels.insert("severity".to_owned(), rule.severity.as_str().to_owned());
    if let Some(cache) = cache {
        labels.insert("cache".to_owned(), cache.to_owned());
    }
    let mut annotations = BTreeMap::new();
    annotations.insert("summary", rule.render(&rule.summary, Some(t.value), cache));
    if !rule.description.is_empty() {
        annotations.insert("description", rule.render(&rule.description, Some(t.value), cache));
    }
    Notification {
        status,
        labels,
        annotations,
        starts_at: inner.clock.at(t.active_at),
        ends_at: resolved_at.map(|at| inner.clock.at(at)),
        value: Some(t.value),
        threshold: rule.threshold,
    }
}

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

    fn build_unchecked(self) -> AlertEngine {
        super::describe();
        AlertEngine {
            inner: Arc::new(Inner {
                rules: self.rules,
                resolved_retention: self.resolved_retention,
                max_resolved: self.max_resolved,
                notifier: self.notifier,
                clock: WallClock::now(),
                state: Mutex::new(State::default()),
            }),
        }
    }
}

/// The body of `GET /monitoring/alerts`: the active alerts (most severe
/// first), their counts by severity, and the recently resolved alerts
/// (latest first).
///
/// ```json
/// {
///   "active": [{"name": "HighErrorRatio", "severity": "critical", "state": "firing",
///               "value": 0.0734, "threshold": 0.05, "window": "5m",
///               "since": "2025-06-01T12:00:00.000Z",
///               "summary": "7.34% of requests failed over the last 5m (threshold 5%)"}],
///   "counts": {"critical": 1, "warning": 0, "info": 0},
///   "resolved": []
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AlertsReport {
    /// Pending and firing alerts, most severe first.
    pub active: Vec<AlertEntry>,
    /// The active alerts by severity.
    pub counts: AlertCounts,
    /// Resolved alerts still listed, latest first.
    pub resolved: Vec<AlertEntry>,
}

/// One alert in an [`AlertsReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AlertEntry {
    /// The rule's name.
    pub name: String,
    /// The severity.
    pub severity: Severity,
    /// `pending`, `firing` or `resolved`.
    pub state: AlertState,
    /// The latest value, `null` when unknown.
    pub value: Option<f64>,
    /// The firing threshold.
    pub threshold: f64,
    /// `above` or `below`.
    pub comparison: Comparison,
    /// The rule's figure (`error_ratio`, `latency_p95_seconds`, ...).
    pub metric: &'static str,
    /// The window, `1m`, `5m` or `15m`.
    pub window: &'static str,
    /// The cache, for a cache rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// When the current state began, RFC 3339 UTC.
    pub since: String,
    /// When the condition started to hold, RFC 3339 UTC.
    pub active_at: String,
    /// The summary.
    pub summary: String,
}

impl AlertEntry {
    fn new(a: &Alert, clock: &WallClock) -> Self {
        Self {
            name: a.name.clone(),
            severity: a.severity,
            state: a.state,
            value: a.value,
            threshold: a.threshold,
            comparison: a.comparison,
            metric: a.metric.as_str(),
            window: a.window.as_str(),
            cache: a.cache.clone(),
            since: rfc3339(clock.at(a.since)),
            active_at: rfc3339(clock.at(a.active_at)),
            summary: a.summary.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::{
        CompositeKey, MetricKind,
        debugging::{DebugValue, DebuggingRecorder},
    };

    use super::*;
    use crate::{
        alerts::{CacheFigures, WindowFigures},
        health::HealthStatus,
    };

    const S: Duration = Duration::from_secs(1);

    fn errors(requests: u64, errors: u64) -> AlertInputs {
        AlertInputs::default().with_window(WindowFigures::from_counts(Window::FiveMinutes, requests, errors))
    }

    fn engine(rules: impl IntoIterator<Item = AlertRule>) -> AlertEngine {
        AlertEngine::builder().rules(rules).build().unwrap()
    }

    fn states(engine: &AlertEngine) -> Vec<(String, AlertState)> {
        engine.active().into_iter().map(|a| (a.name, a.state)).collect()
    }

    #[test]
    fn pending_then_firing_after_for() {
        let e = engine([AlertRule::high_error_ratio()]);
        let t0 = Instant::now();
        e.evaluate(&errors(1000, 60), t0); // 6 %
        let a = &e.active()[0];
        assert_eq!((a.state, a.value, a.since), (AlertState::Pending, Some(0.06), t0));
        e.evaluate(&errors(1000, 70), t0 + 59 * S);
        assert_eq!(e.active()[0].state, AlertState::Pending, "59 s < for 60 s");
        assert_eq!(e.active()[0].value, Some(0.07));
        e.evaluate(&errors(1000, 70), t0 + 60 * S);
        let a = &e.active()[0];
        assert_eq!((a.state, a.active_at, a.since), (AlertState::Firing, t0, t0 + 60 * S));
        assert_eq!(a.summary, "7% of requests failed over the last 5m (threshold 5%)");
    }

    #[test]
    fn pending_that_stops_holding_goes_back_to_inactive() {
        let e = engine([AlertRule::high_error_ratio()]);
        let t0 = Instant::now();
        e.evaluate(&errors(1000, 60), t0);
        e.evaluate(&errors(1000, 50), t0 + 30 * S); // exactly 5 %: not above
        assert!(e.active().is_empty());
        assert!(e.resolved().is_empty(), "a pending alert never resolves");
        // The clock of `for` restarts.
        e.evaluate(&errors(1000, 60), t0 + 40 * S);
        e.evaluate(&errors(1000, 60), t0 + 90 * S);
        assert_eq!(e.active()[0].state, AlertState::Pending);
        e.evaluate(&errors(1000, 60), t0 + 100 * S);
        assert_eq!(e.active()[0].state, AlertState::Firing);
    }

    #[test]
    fn firing_resolves_only_past_the_resolve_threshold() {
        let e = engine([AlertRule::high_error_ratio().for_duration(Duration::ZERO)]);
        let t0 = Instant::now();
        e.evaluate(&errors(1000, 80), t0);
        assert_eq!(e.active()[0].state, AlertState::Firing, "for 0 fires at once");
        // Between 4.5 % and 5 %: below the threshold, above the resolve threshold.
        e.evaluate(&errors(1000, 48), t0 + 15 * S);
        e.evaluate(&errors(1000, 46), t0 + 30 * S);
        assert_eq!(e.active()[0].state, AlertState::Firing);
        assert_eq!(e.active()[0].value, Some(0.046));
        e.evaluate(&errors(1000, 45), t0 + 45 * S); // 4.5 %: at the resolve threshold
        assert!(e.active().is_empty());
        let r = &e.resolved()[0];
        assert_eq!(
            (r.state, r.value, r.since, r.active_at),
            (AlertState::Resolved, Some(0.045), t0 + 45 * S, t0)
        );
    }

    #[test]
    fn no_data_or_too_few_samples_never_fire_and_resolve_a_firing_alert() {
        let e = engine([AlertRule::high_error_ratio().for_duration(Duration::ZERO)]);
        let t0 = Instant::now();
        e.evaluate(&errors(19, 19), t0); // 100 % of 19 requests: under the 20 floor
        e.evaluate(&AlertInputs::default(), t0 + S);
        e.evaluate(&errors(0, 0), t0 + 2 * S);
        assert!(e.active().is_empty());
        e.evaluate(&errors(20, 2), t0 + 3 * S);
        assert_eq!(e.active()[0].state, AlertState::Firing);
        e.evaluate(&errors(10, 5), t0 + 4 * S);
        assert!(e.active().is_empty());
        assert_eq!(e.resolved()[0].value, Some(0.1), "the last value seen");
    }

    #[test]
    fn sorted_by_severity_then_name_with_counts() {
        let rules = [
            AlertRule::new("B", AlertMetric::RequestRate, Comparison::Above, 0.0).severity(Severity::Info),
            AlertRule::new("Z", AlertMetric::RequestRate, Comparison::Above, 0.0)
                .severity(Severity::Critical),
            AlertRule::new("A", AlertMetric::RequestRate, Comparison::Above, 0.0).severity(Severity::Warning),
            AlertRule::new("C", AlertMetric::RequestRate, Comparison::Above, 0.0).severity(Severity::Warning),
        ];
        let e = engine(rules);
        e.evaluate(&errors(100, 0), Instant::now());
        let order: Vec<_> = e.active().into_iter().map(|a| (a.severity, a.name)).collect();
        assert_eq!(
            order,
            [
                (Severity::Critical, "Z".to_owned()),
                (Severity::Warning, "A".to_owned()),
                (Severity::Warning, "C".to_owned()),
                (Severity::Info, "B".to_owned()),
            ]
        );
        let counts = e.counts();
        assert_eq!((counts.critical, counts.warning, counts.info, counts.total()), (1, 2, 1, 4));
        assert_eq!(counts.get(Severity::Warning), 2);
    }

    #[test]
    fn one_cache_rule_tracks_each_cache_with_its_floor() {
        let e = engine([AlertRule::low_cache_hit_ratio().for_duration(Duration::ZERO)]);
        let w = Window::FifteenMinutes;
        let t0 = Instant::now();
        let inputs = AlertInputs::default()
            .with_cache(CacheFigures::new("users", w, 10, 30)) // 25 % of 40
            .with_cache(CacheFigures::new("orders", w, 1, 9)) // 10 % of 10: too few
            .with_cache(CacheFigures::new("sessions", w, 90, 10)) // 90 %
            .with_cache(CacheFigures::new("carts", Window::OneMinute, 0, 100)); // other window
        e.evaluate(&inputs, t0);
        let active = e.active();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].cache.as_deref(), Some("users"));
        assert_eq!(active[0].summary, "cache users hit ratio is 25% over the last 15m (threshold 70%)");
        // 75 %: above the threshold, below the resolve threshold (77 %).
        e.evaluate(&AlertInputs::default().with_cache(CacheFigures::new("users", w, 75, 25)), t0 + S);
        assert_eq!(e.active().len(), 1);
        // The cache goes away from the inputs: no data resolves it.
        e.evaluate(&AlertInputs::default(), t0 + 2 * S);
        assert!(e.active().is_empty());
        assert_eq!(e.resolved()[0].cache.as_deref(), Some("users"));
    }

    #[test]
    fn cache_rules_are_bounded() {
        let e = engine([AlertRule::low_cache_hit_ratio().min_samples(0)]);
        let mut inputs = AlertInputs::default();
        for i in 0..200 {
            inputs.caches.push(CacheFigures::new(format!("c{i}"), Window::FifteenMinutes, 0, 1));
        }
        e.evaluate(&inputs, Instant::now());
        assert_eq!(e.active().len(), MAX_CACHE_ALERTS);
    }

    #[test]
    fn readiness_unhealthy_fires_and_degraded_resolves() {
        let e = engine([AlertRule::readiness_unhealthy()]);
        let t0 = Instant::now();
        let ready = |s| AlertInputs::default().with_readiness(s);
        e.evaluate(&ready(HealthStatus::Degraded), t0);
        assert!(e.active().is_empty(), "degraded is not unhealthy");
        e.evaluate(&ready(HealthStatus::Unhealthy), t0 + S);
        e.evaluate(&ready(HealthStatus::Unhealthy), t0 + 61 * S);
        assert_eq!(states(&e), [("ReadinessUnhealthy".to_owned(), AlertState::Firing)]);
        assert_eq!(e.active()[0].summary, "readiness checks report unhealthy");
        e.evaluate(&ready(HealthStatus::Degraded), t0 + 62 * S);
        assert!(e.active().is_empty());
    }

    #[test]
    fn latency_and_rate_rules_read_their_window() {
        let rules = [
            AlertRule::high_latency_p95().for_duration(Duration::ZERO),
            AlertRule::new("SlowP99", AlertMetric::LatencyP99, Comparison::Above, 5.0)
                .window(Window::OneMinute),
            AlertRule::new("NoTraffic", AlertMetric::RequestRate, Comparison::Below, 1.0)
                .window(Window::OneMinute)
                .for_duration(Duration::ZERO),
        ];
        let e = engine(rules);
        let inputs = AlertInputs::default()
            .with_window(WindowFigures::from_counts(Window::FiveMinutes, 100, 0).with_p95(2.5).with_p50(0.1))
            .with_window(WindowFigures::from_counts(Window::OneMinute, 30, 0).with_p99(9.0));
        e.evaluate(&inputs, Instant::now());
        let got: Vec<_> = e.active().into_iter().map(|a| (a.name, a.state, a.value)).collect();
        assert_eq!(
            got,
            [
                ("HighLatencyP95".to_owned(), AlertState::Firing, Some(2.5)),
                ("NoTraffic".to_owned(), AlertState::Firing, Some(0.5)),
                ("SlowP99".to_owned(), AlertState::Pending, Some(9.0)),
            ]
        );
    }

    #[test]
    fn resolved_alerts_are_kept_for_a_bounded_time_and_number() {
        let rule = AlertRule::high_error_ratio().for_duration(Duration::ZERO).min_samples(0);
        let e = AlertEngine::builder()
            .rule(rule)
            .resolved_retention(Duration::from_secs(600))
            .max_resolved(3)
            .build()
            .unwrap();
        let t0 = Instant::now();
        for i in 0..5u32 {
            e.evaluate(&errors(10, 10), t0 + 2 * i * S);
            e.evaluate(&errors(10, 0), t0 + (2 * i + 1) * S);
        }
        let resolved = e.resolved();
        assert_eq!(resolved.len(), 3);
        assert_eq!(resolved[0].since, t0 + 9 * S, "latest first");
        e.evaluate(&errors(10, 0), t0 + 9 * S + Duration::from_secs(601));
        assert!(e.resolved().is_empty());
    }

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

    #[test]
    fn the_gauge_follows_the_states() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // A snapshot swaps the values out: read both states from one.
        let gauges = || {
            let snapshot = snapshotter.snapshot().into_hashmap();
            let of = |state: &str| {
                snapshot.iter().find_map(|(key, (_, _, value)): (&CompositeKey, _)| {
                    let labels: Vec<_> = key.key().labels().map(|l| (l.key(), l.value())).collect();
                    let matches = key.kind() == MetricKind::Gauge
                        && key.key().name() == ALERTS
                        && labels.contains(&("alertname", "HighErrorRatio"))
                        && labels.contains(&("severity", "critical"))
                        && labels.contains(&("alertstate", state));
                    match value {
                        DebugValue::Gauge(v) if matches => Some(v.into_inner()),
                        _ => None,
                    }
                })
            };
            (of("pending"), of("firing"))
        };
        let e = engine([AlertRule::high_error_ratio()]);
        let t0 = Instant::now();
        ::metrics::with_local_recorder(&recorder, || e.evaluate(&errors(100, 10), t0));
        assert_eq!(gauges(), (Some(1.0), None));
        ::metrics::with_local_recorder(&recorder, || e.evaluate(&errors(100, 10), t0 + 60 * S));
        assert_eq!(gauges(), (Some(0.0), Some(1.0)));
        ::metrics::with_local_recorder(&recorder, || e.evaluate(&errors(100, 0), t0 + 75 * S));
        assert_eq!(gauges(), (Some(0.0), Some(0.0)));
    }

    #[test]
    fn report_serializes_as_documented() {
        let e = engine([AlertRule::high_error_ratio().for_duration(Duration::ZERO)]);
        let t0 = Instant::now();
        e.evaluate(&errors(1000, 73), t0);
        let json = serde_json::to_value(e.report()).unwrap();
        let a = &json["active"][0];
        assert_eq!(a["name"], "HighErrorRatio");
        assert_eq!(a["severity"], "critical");
        assert_eq!(a["state"], "firing");
        assert_eq!(a["value"], 0.073);
        assert_eq!(a["threshold"], 0.05);
        assert_eq!(a["window"], "5m");
        assert_eq!(a["comparison"], "above");
        assert_eq!(a["metric"], "error_ratio");
        assert!(a.get("cache").is_none());
        assert!(a["since"].as_str().unwrap().ends_with('Z'));
        assert_eq!(json["counts"], serde_json::json!({"critical": 1, "warning": 0, "info": 0}));
        assert_eq!(json["resolved"], serde_json::json!([]));
    }

    #[test]
    fn traits() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<AlertEngine>();
        assert_send_sync::<AlertRule>();
        assert_send_sync::<AlertInputs>();
        assert_send_sync::<AlertNotifier>();
    }
}
