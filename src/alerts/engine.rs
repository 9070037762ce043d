//! [`AlertEngine`]: the handle that evaluates the rules, keeps each alert's
//! state and lists the alerts.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

#[cfg(feature = "notify")]
use super::AlertNotifier;
use super::{
    Alert, AlertCounts, AlertEngineBuilder, AlertEntry, AlertInputs, AlertMetric, AlertRule, AlertState,
    AlertsReport,
    clock::WallClock,
    report::{alert, counts},
    state::{Key, State, observe},
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
    pub(super) rules: Vec<AlertRule>,
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
    #[cfg(feature = "notify")]
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
            .field("notifies", &self.inner.resend_interval().is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{
        CacheFigures, Comparison, Severity,
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
    fn traits() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<AlertEngine>();
        assert_send_sync::<AlertRule>();
        assert_send_sync::<AlertInputs>();
        assert_send_sync::<AlertNotifier>();
    }
}
