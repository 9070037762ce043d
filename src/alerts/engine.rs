//! [`AlertEngine`]: the handle that evaluates the rules, keeps each alert's
//! state and lists the alerts; its run-time controls (rule changes,
//! silences, on/off) and its history.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

#[cfg(feature = "notify")]
use super::AlertNotifier;
use super::{
    Alert, AlertCounts, AlertEngineBuilder, AlertEntry, AlertInputs, AlertMetric, AlertRule, AlertState,
    AlertsReport, HistoryFilter, HistoryReport, RuleChange, RuleError, Severity, Silence, SilenceEntry,
    SilenceError, SilenceMatcher, Transition, TransitionKind,
    change::validate,
    clock::WallClock,
    report::{alert, counts},
    silences,
    state::{Key, State, observe, transition},
};

/// The most alerts one cache rule ([`AlertMetric::CacheHitRatio`] with no
/// cache name) tracks at once: one per cache, up to 64 caches (the bound
/// of [`CacheHitRatios`](crate::cache::CacheHitRatios)).
pub const MAX_CACHE_ALERTS: usize = 64;

/// Evaluates [`AlertRule`]s over [`AlertInputs`] and keeps each alert's
/// state; a cheap handle to share (an `Arc` inside).
///
/// See the [module docs](super) for the state machine, the gauge and the
/// JSON. [`evaluate`](Self::evaluate) is synchronous and short (it takes
/// one lock, and queues notifications without waiting);
/// [`spawn_evaluator`](Self::spawn_evaluator) runs it periodically.
///
/// At run time, [`update_rule`](Self::update_rule) changes a rule's
/// threshold, `for` and severity, [`silence`](Self::silence) holds back
/// notifications, [`set_enabled`](Self::set_enabled) pauses evaluation,
/// and [`history`](Self::history) tells what happened.
///
/// # Example
///
/// ```
/// use std::time::{Duration, Instant};
/// use tower_observability::{
///     alerts::{AlertEngine, AlertInputs, AlertRule, AlertState},
///     metrics::HttpWindowStats,
///     window::Window,
/// };
///
/// let engine = AlertEngine::builder().rule(AlertRule::high_error_ratio()).build()?;
/// let failing = AlertInputs::default().with_window(HttpWindowStats::from_counts(Window::FiveMinutes, 400, 40));
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
    pub(super) inner: Arc<Inner>,
}

/// What the handles of one engine share.
pub(super) struct Inner {
    pub(super) resolved_retention: Duration,
    pub(super) max_resolved: usize,
    #[cfg(feature = "notify")]
    pub(super) notifier: Option<AlertNotifier>,
    pub(super) clock: WallClock,
    pub(super) state: Mutex<State>,
}

impl Inner {
    /// How often a firing alert is sent again; `None` without a notifier.
    #[inline]
    pub(super) fn resend_interval(&self) -> Option<Duration> {
        #[cfg(feature = "notify")]
        return self.notifier.as_ref().map(AlertNotifier::resend_interval);
        #[cfg(not(feature = "notify"))]
        None
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
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

    /// The rules in effect, in the order given (with the changes made by
    /// [`update_rule`](Self::update_rule)).
    #[must_use]
    pub fn rules(&self) -> Vec<AlertRule> {
        self.inner.lock().rules.clone()
    }

    /// The notifier, if any.
    #[cfg(feature = "notify")]
    #[must_use]
    pub fn notifier(&self) -> Option<&AlertNotifier> {
        self.inner.notifier.as_ref()
    }

    /// Evaluates every rule on `inputs` at `now`, a reading of the
    /// monotonic clock (pass `Instant::now()`; tests pass a simulated
    /// time), and moves each alert through its states, recording each
    /// transition in the history. Does nothing while evaluation is off
    /// ([`set_enabled`](Self::set_enabled)).
    ///
    /// Updates the `tower_observability_alerts` gauge and queues the
    /// notifications of the alerts no silence covers, without waiting.
    /// `now` should not go back; an earlier `now` counts as no time
    /// elapsed.
    pub fn evaluate(&self, inputs: &AlertInputs, now: Instant) {
        let inner = &*self.inner;
        let mut state = inner.lock();
        if !state.enabled {
            return;
        }
        state.evaluations += 1;
        state.last_evaluated = Some(now);
        state.silences.expire(now);
        let mut out = Vec::new();
        for index in 0..state.rules.len() {
            let metric = state.rules[index].metric.clone();
            match &metric {
                AlertMetric::CacheHitRatio { cache: None } => {
                    let window = state.rules[index].window;
                    let mut seen: Vec<Arc<str>> = Vec::new();
                    for figures in inputs.caches.iter().filter(|c| c.window == window) {
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
                        let value = observe(&state.rules[index], inputs, Some(&figures.cache));
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
                    let value = observe(&state.rules[index], inputs, Some(name));
                    state.step(inner, (index, Some(Arc::from(name.as_str()))), value, now, &mut out);
                }
                _ => {
                    let value = observe(&state.rules[index], inputs, None);
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
        #[cfg(feature = "notify")]
        if let Some(notifier) = &inner.notifier {
            for n in out {
                notifier.notify(n);
            }
        }
        #[cfg(not(feature = "notify"))]
        drop(out);
    }

    /// The pending and firing alerts, most severe first, then by name and
    /// cache.
    #[must_use]
    pub fn active(&self) -> Vec<Alert> {
        let inner = &*self.inner;
        let state = inner.lock();
        let now = state.last_evaluated.unwrap_or_else(Instant::now);
        let mut alerts: Vec<Alert> = state
            .active
            .iter()
            .map(|((index, cache), t)| {
                let rule = &state.rules[*index];
                let st = if t.firing { AlertState::Firing } else { AlertState::Pending };
                let mut a = alert(rule, cache.as_deref(), st, Some(t.value), t.active_at, t.since);
                a.silenced = state.silences.covers(&rule.name, now);
                a
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
        self.inner.lock().resolved.iter().rev().cloned().collect()
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
    /// assert!(report.evaluating);
    /// ```
    #[must_use]
    pub fn report(&self) -> AlertsReport {
        let active = self.active();
        let counts = counts(&active);
        let entry = |a: &Alert| AlertEntry::new(a, &self.inner.clock);
        let state = self.inner.lock();
        let (evaluating, silences) = (state.enabled, state.silences.active(Instant::now()).len());
        drop(state);
        AlertsReport {
            active: active.iter().map(entry).collect(),
            counts,
            resolved: self.resolved().iter().map(entry).collect(),
            evaluating,
            silences,
        }
    }

    /// The recorded transitions `filter` selects, newest first, with their
    /// counts per rule: the body of `GET /monitoring/alerts/history`. The
    /// history is a ring of
    /// [`history_capacity`](AlertEngineBuilder::history_capacity)
    /// transitions.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tower_observability::alerts::{AlertEngine, AlertInputs, AlertRule, HistoryFilter};
    /// use tower_observability::health::HealthStatus;
    ///
    /// let engine = AlertEngine::builder()
    ///     .rule(AlertRule::readiness_unhealthy().for_duration(Duration::ZERO))
    ///     .build()?;
    /// engine.evaluate(&AlertInputs::default().with_readiness(HealthStatus::Unhealthy), Instant::now());
    /// let history = engine.history(&HistoryFilter::default());
    /// let states: Vec<_> = history.transitions.iter().map(|t| t.state.as_str()).collect();
    /// assert_eq!(states, ["firing", "pending"]);
    /// assert_eq!(history.counts["ReadinessUnhealthy"]["firing"], 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn history(&self, filter: &HistoryFilter) -> HistoryReport {
        let state = self.inner.lock();
        let selected = state.history.select(filter, &self.inner.clock);
        HistoryReport::new(&selected, &state.history, &self.inner.clock)
    }

    /// The recorded transitions `filter` selects, newest first, as values
    /// (with their [`Instant`]s).
    #[must_use]
    pub fn transitions(&self, filter: &HistoryFilter) -> Vec<Transition> {
        self.inner.lock().history.select(filter, &self.inner.clock)
    }

    /// The rule named `name` (of `severity`, when given).
    ///
    /// # Errors
    ///
    /// [`RuleError::UnknownRule`] when none matches,
    /// [`RuleError::Ambiguous`] when several do (severity tiers of one
    /// name, and no severity given).
    pub fn rule(&self, name: &str, severity: Option<Severity>) -> Result<AlertRule, RuleError> {
        let state = self.inner.lock();
        find(&state.rules, name, severity).map(|i| state.rules[i].clone())
    }

    /// Changes the threshold, `for` and severity of the rule named `name`
    /// (of `severity`, when given) at run time, validated as the builder
    /// validates its rules, and records the change in the history. The
    /// next evaluation uses the new values; the rule's active alerts keep
    /// their state (a firing alert above its new resolve threshold stays
    /// firing). Returns the rule as changed.
    ///
    /// # Errors
    ///
    /// As [`rule`](Self::rule); [`RuleError`] when the changed rule would
    /// not be valid (nothing is changed then).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::alerts::{AlertEngine, RuleChange};
    ///
    /// let engine = AlertEngine::with_default_rules();
    /// let rule = engine.update_rule("HighErrorRatio", None, &RuleChange::default().threshold(0.01))?;
    /// assert_eq!(rule.threshold, 0.01);
    /// assert!(engine.update_rule("HighErrorRatio", None, &RuleChange::default().threshold(2.0)).is_err());
    /// assert_eq!(engine.rule("HighErrorRatio", None)?.threshold, 0.01);
    /// # Ok::<(), tower_observability::alerts::RuleError>(())
    /// ```
    pub fn update_rule(
        &self,
        name: &str,
        severity: Option<Severity>,
        change: &RuleChange,
    ) -> Result<AlertRule, RuleError> {
        let mut state = self.inner.lock();
        let index = find(&state.rules, name, severity)?;
        let old = state.rules[index].clone();
        let new = change.apply(&old);
        let mut rules = state.rules.clone();
        rules[index] = new.clone();
        validate(&rules)?;
        state.rules = rules;
        if old.severity != new.severity {
            state.relabel(index, &old);
        }
        let now = state.last_evaluated.map_or_else(Instant::now, |at| at.max(Instant::now()));
        let mut record = transition(&new, None, TransitionKind::RuleChanged, None, now);
        record.note = Some(RuleChange::describe(&old, &new));
        state.history.push(record);
        drop(state);
        tracing::info!(alertname = %name, change = %RuleChange::describe(&old, &new), "alert rule changed");
        Ok(new)
    }

    /// Adds `rules` whose name and severity no rule of the engine has yet
    /// (the others are skipped), validated as the builder validates its
    /// rules; returns how many were added. The monitoring router adds the
    /// burn-rate rules of its SLOs this way.
    ///
    /// # Errors
    ///
    /// [`RuleError`] when a new rule is not valid (none is added then).
    ///
    /// ```
    /// use tower_observability::alerts::{AlertEngine, AlertRule};
    ///
    /// let engine = AlertEngine::builder().build()?;
    /// assert_eq!(engine.add_rules(AlertRule::defaults())?, 4);
    /// assert_eq!(engine.add_rules(AlertRule::defaults())?, 0, "already there");
    /// # Ok::<(), tower_observability::alerts::RuleError>(())
    /// ```
    pub fn add_rules(&self, rules: impl IntoIterator<Item = AlertRule>) -> Result<usize, RuleError> {
        let mut state = self.inner.lock();
        let mut all = state.rules.clone();
        let before = all.len();
        for rule in rules {
            if !all.iter().any(|r| r.name == rule.name && r.severity == rule.severity) {
                all.push(rule);
            }
        }
        validate(&all)?;
        let added = all.len() - before;
        state.rules = all;
        Ok(added)
    }

    /// Silences the alerts `matcher` covers for `duration` from now: they
    /// are still evaluated, listed (marked silenced) and recorded, but send
    /// no notification until the silence expires or is
    /// [expired](Self::expire_silence). Returns the silence.
    ///
    /// # Errors
    ///
    /// [`SilenceError`] for a duration of zero or over 7 days, an empty or
    /// overlong reason, a rule the engine does not have, or when 100
    /// silences are active.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_observability::alerts::{AlertEngine, SilenceMatcher};
    ///
    /// let engine = AlertEngine::with_default_rules();
    /// let silence = engine.silence(SilenceMatcher::All, "deploy 1.4.0", Duration::from_secs(600))?;
    /// assert_eq!(engine.silences().len(), 1);
    /// assert!(engine.expire_silence(silence.id));
    /// assert!(engine.silences().is_empty());
    /// # Ok::<(), tower_observability::alerts::SilenceError>(())
    /// ```
    pub fn silence(
        &self,
        matcher: SilenceMatcher,
        reason: impl Into<String>,
        duration: Duration,
    ) -> Result<Silence, SilenceError> {
        let reason = reason.into();
        silences::validate(&reason, duration)?;
        let mut state = self.inner.lock();
        if let SilenceMatcher::Rule(name) = &matcher
            && !state.rules.iter().any(|r| r.name == *name)
        {
            return Err(SilenceError::UnknownRule(name.clone()));
        }
        let now = Instant::now().max(state.last_evaluated.unwrap_or_else(Instant::now));
        let silence = state.silences.add(matcher, reason, now, duration)?;
        drop(state);
        tracing::info!(id = silence.id, reason = %silence.reason, "alerts silenced");
        Ok(silence)
    }

    /// The silences active now, oldest first.
    #[must_use]
    pub fn silences(&self) -> Vec<Silence> {
        self.inner.lock().silences.active(Instant::now())
    }

    /// The active silences as `GET /monitoring/silences` lists them.
    #[must_use]
    pub fn silence_entries(&self) -> Vec<SilenceEntry> {
        self.silences().iter().map(|s| SilenceEntry::new(s, &self.inner.clock)).collect()
    }

    /// Ends silence `id` now; `false` when there is none. Notifications of
    /// its alerts resume at the next evaluation.
    pub fn expire_silence(&self, id: u64) -> bool {
        self.inner.lock().silences.remove(id)
    }

    /// Turns evaluation on or off at run time. Off, [`evaluate`](Self::evaluate)
    /// does nothing: alerts keep the state they had, and no notification
    /// is sent; on again, evaluation resumes where it was.
    pub fn set_enabled(&self, enabled: bool) {
        self.inner.lock().enabled = enabled;
        tracing::info!(enabled, "alert evaluation switched");
    }

    /// Whether evaluation is on (it is by default).
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.inner.lock().enabled
    }

    /// How many evaluations ran, and the `now` of the latest.
    #[must_use]
    pub fn evaluations(&self) -> (u64, Option<Instant>) {
        let state = self.inner.lock();
        (state.evaluations, state.last_evaluated)
    }

    /// An estimate of the heap bytes the engine holds: its rules, alerts,
    /// resolved list, history and silences, computed from their sizes.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        let state = self.inner.lock();
        state.rules.capacity() * size_of::<AlertRule>()
            + state.active.capacity() * (size_of::<Key>() + size_of::<super::state::Tracked>())
            + state.resolved.capacity() * size_of::<Alert>()
            + state.history.heap_bytes()
            + state.silences.heap_bytes()
    }
}

/// The index of the rule named `name` (of `severity`, when given).
fn find(rules: &[AlertRule], name: &str, severity: Option<Severity>) -> Result<usize, RuleError> {
    let mut found =
        rules.iter().enumerate().filter(|(_, r)| r.name == name && severity.is_none_or(|s| s == r.severity));
    match (found.next(), found.next()) {
        (Some((i, _)), None) => Ok(i),
        (Some(_), Some(_)) => Err(RuleError::Ambiguous(name.to_owned())),
        (None, _) => Err(RuleError::UnknownRule(name.to_owned())),
    }
}

impl fmt::Debug for AlertEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.rules().into_iter().map(|r| r.name).collect();
        f.debug_struct("AlertEngine")
            .field("rules", &names)
            .field("notifies", &self.inner.resend_interval().is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{
        CacheFigures, Comparison,
        fixtures::{S, engine, errors},
    };
    use crate::window::Window;

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
    fn history_records_pending_firing_resolved_at_their_instants() {
        let e = engine([AlertRule::high_error_ratio()]);
        let t0 = Instant::now();
        e.evaluate(&errors(1000, 60), t0); // pending
        e.evaluate(&errors(1000, 60), t0 + 30 * S);
        e.evaluate(&errors(1000, 60), t0 + 60 * S); // firing after `for`
        e.evaluate(&errors(1000, 10), t0 + 90 * S); // resolved
        let t: Vec<_> = e.transitions(&HistoryFilter::default()).into_iter().rev().collect();
        let got: Vec<_> = t.iter().map(|t| (t.kind, t.at, t.value, t.threshold)).collect();
        assert_eq!(
            got,
            [
                (TransitionKind::Pending, t0, Some(0.06), 0.05),
                (TransitionKind::Firing, t0 + 60 * S, Some(0.06), 0.05),
                (TransitionKind::Resolved, t0 + 90 * S, Some(0.01), 0.05),
            ]
        );
        let report = e.history(&HistoryFilter::default());
        assert_eq!(report.transitions[0].state, TransitionKind::Resolved);
        let at = |i: usize| humantime::parse_rfc3339(&report.transitions[i].at).unwrap();
        assert_eq!(at(0).duration_since(at(2)).unwrap(), 90 * S, "wall-clock times keep the spacing");
        assert_eq!(at(1).duration_since(at(2)).unwrap(), 60 * S);
        let counts = &report.counts["HighErrorRatio"];
        assert_eq!((counts["pending"], counts["firing"], counts["resolved"]), (1, 1, 1));
    }

    #[test]
    fn history_stays_bounded_after_100_000_transitions() {
        let rule = AlertRule::high_error_ratio().for_duration(Duration::ZERO).min_samples(0);
        let e = AlertEngine::builder().rule(rule).history_capacity(1000).build().unwrap();
        let t0 = Instant::now();
        // Each pair of evaluations records pending, firing and resolved.
        let pairs = 34_000u32;
        for i in 0..pairs {
            e.evaluate(&errors(10, 10), t0 + 2 * i * S);
            e.evaluate(&errors(10, 0), t0 + (2 * i + 1) * S);
        }
        let i = pairs;
        let report = e.history(&HistoryFilter::default());
        assert_eq!((report.retained, report.capacity), (1000, 1000));
        assert_eq!(report.recorded_total, 3 * u64::from(pairs), "more than 100 000");
        let newest = &e.transitions(&HistoryFilter::default())[0];
        assert_eq!((newest.kind, newest.at), (TransitionKind::Resolved, t0 + (2 * i - 1) * S));
        let bytes = e.memory_bytes();
        assert!(bytes < 1000 * 400, "{bytes} bytes for 1000 transitions");
    }

    #[test]
    fn a_silenced_alert_is_evaluated_listed_and_recorded_until_its_silence_ends() {
        let e = engine([AlertRule::high_error_ratio().for_duration(Duration::ZERO)]);
        let t0 = Instant::now();
        let silence =
            e.silence(SilenceMatcher::Rule("HighErrorRatio".to_owned()), "deploy", 600 * S).unwrap();
        e.evaluate(&errors(100, 50), t0 + S);
        let a = &e.active()[0];
        assert_eq!((a.state, a.silenced), (AlertState::Firing, true));
        assert!(e.report().active[0].silenced);
        assert!(e.expire_silence(silence.id));
        e.evaluate(&errors(100, 50), t0 + 2 * S);
        assert!(!e.active()[0].silenced);
        let kinds: Vec<_> = e.transitions(&HistoryFilter::default()).iter().rev().map(|t| t.kind).collect();
        use TransitionKind::{Firing, Pending, Silenced, Unsilenced};
        assert_eq!(kinds, [Pending, Firing, Silenced, Unsilenced]);
        let unknown = e.silence(SilenceMatcher::Rule("Nope".to_owned()), "x", S);
        assert_eq!(unknown.unwrap_err(), SilenceError::UnknownRule("Nope".to_owned()));
    }

    #[test]
    fn a_rule_change_changes_evaluation_and_is_recorded() {
        let e = engine([AlertRule::high_error_ratio().for_duration(Duration::ZERO)]);
        let t0 = Instant::now();
        e.evaluate(&errors(1000, 30), t0); // 3 %: under 5 %
        assert!(e.active().is_empty());
        let change = RuleChange::default().threshold(0.02).severity(Severity::Warning);
        let rule = e.update_rule("HighErrorRatio", None, &change).unwrap();
        assert_eq!((rule.threshold, rule.severity), (0.02, Severity::Warning));
        e.evaluate(&errors(1000, 30), t0 + S);
        let a = &e.active()[0];
        assert_eq!((a.state, a.severity, a.threshold), (AlertState::Firing, Severity::Warning, 0.02));
        let bad = e.update_rule("HighErrorRatio", None, &RuleChange::default().threshold(f64::NAN));
        assert!(matches!(bad, Err(RuleError::NonFiniteThreshold(_))));
        assert_eq!(e.rule("HighErrorRatio", None).unwrap().threshold, 0.02, "nothing changed");
        assert!(matches!(e.rule("Nope", None), Err(RuleError::UnknownRule(_))));
        let changed = e.transitions(&HistoryFilter::default().rule("HighErrorRatio"));
        let note = changed.iter().find(|t| t.kind == TransitionKind::RuleChanged).unwrap();
        assert_eq!(note.note.as_deref(), Some("threshold 0.05 -> 0.02, severity critical -> warning"));
    }

    #[test]
    fn tiers_of_one_name_need_a_severity_and_evaluation_can_be_paused() {
        let e = engine([
            AlertRule::high_error_ratio().for_duration(Duration::ZERO),
            AlertRule::high_error_ratio().threshold(0.01).severity(Severity::Warning),
        ]);
        assert!(matches!(e.rule("HighErrorRatio", None), Err(RuleError::Ambiguous(_))));
        assert_eq!(e.rule("HighErrorRatio", Some(Severity::Warning)).unwrap().threshold, 0.01);
        e.set_enabled(false);
        e.evaluate(&errors(100, 100), Instant::now());
        assert!(e.active().is_empty() && !e.is_enabled());
        assert_eq!(e.evaluations().0, 0);
        assert!(!e.report().evaluating);
        e.set_enabled(true);
        e.evaluate(&errors(100, 100), Instant::now());
        assert_eq!(e.active().len(), 2);
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
