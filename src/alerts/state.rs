//! The state machine of an alert: inactive, pending, firing, resolved (see
//! the [module docs](super#states)), with its gauge and the notifications
//! of its transitions.

use std::{
    collections::{BTreeMap, HashMap, VecDeque, hash_map::Entry},
    fmt,
    sync::Arc,
    time::Instant,
};

use ::metrics::Label;
use serde::Serialize;

use super::{
    ALERTS, Alert, AlertInputs, AlertMetric, AlertRule,
    engine::Inner,
    history::{History, Transition, TransitionKind},
    notification::Notification,
    report::alert,
    silences::Silences,
};
use crate::metrics::HttpWindowStats;

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

/// A rule's index and, for a cache rule, the cache.
pub(super) type Key = (usize, Option<Arc<str>>);

/// The rules, every pending and firing alert, the resolved ones still
/// listed, the history, the silences, and whether evaluation is on.
pub(super) struct State {
    /// The rules in effect, changed at run time by `update_rule`.
    pub(super) rules: Vec<AlertRule>,
    pub(super) active: HashMap<Key, Tracked>,
    /// Oldest first.
    pub(super) resolved: VecDeque<Alert>,
    pub(super) history: History,
    pub(super) silences: Silences,
    /// Off: `evaluate` does nothing.
    pub(super) enabled: bool,
    /// Evaluations done.
    pub(super) evaluations: u64,
    pub(super) last_evaluated: Option<Instant>,
}

/// A pending or firing alert.
pub(super) struct Tracked {
    pub(super) firing: bool,
    pub(super) active_at: Instant,
    pub(super) since: Instant,
    pub(super) value: f64,
    /// When it was last handed to the notifier (firing only).
    pub(super) notified: Option<Instant>,
    /// Whether a silence covered it at the last evaluation (firing only).
    pub(super) silenced: bool,
}

/// The rule's figure in `inputs`, if present, finite and with enough
/// samples.
pub(super) fn observe(rule: &AlertRule, inputs: &AlertInputs, cache: Option<&str>) -> Option<f64> {
    let http = |pick: fn(&HttpWindowStats) -> Option<f64>| {
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
        AlertMetric::BurnRate { slo, long, short } => {
            let (l, s) = (inputs.burn_rate(slo, *long)?, inputs.burn_rate(slo, *short)?);
            (l.rate.min(s.rate), l.requests.min(s.requests))
        }
    };
    (value.is_finite() && samples >= rule.min_samples).then_some(value)
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
    /// An engine's state before its first evaluation.
    pub(super) fn new(rules: Vec<AlertRule>, history_capacity: usize) -> Self {
        Self {
            rules,
            active: HashMap::new(),
            resolved: VecDeque::new(),
            history: History::new(history_capacity),
            silences: Silences::default(),
            enabled: true,
            evaluations: 0,
            last_evaluated: None,
        }
    }

    /// Moves the alert `key` one evaluation on, given its figure.
    pub(super) fn step(
        &mut self,
        inner: &Inner,
        key: Key,
        value: Option<f64>,
        now: Instant,
        out: &mut Vec<Notification>,
    ) {
        let rule = &self.rules[key.0];
        let history = &mut self.history;
        let cache = key.1.clone();
        let cache = cache.as_deref();
        let fires = value.is_some_and(|v| rule.comparison.holds(v, rule.threshold));
        let silenced = self.silences.covers(&rule.name, now);
        let resend = inner.resend_interval();
        let mut record = |kind, value| history.push(transition(rule, cache, kind, value, now));
        match self.active.entry(key) {
            Entry::Vacant(entry) => {
                let Some(v) = value.filter(|_| fires) else { return };
                gauge(rule, cache, AlertState::Pending, 1.0);
                record(TransitionKind::Pending, Some(v));
                let t = entry.insert(Tracked {
                    firing: false,
                    active_at: now,
                    since: now,
                    value: v,
                    notified: None,
                    silenced: false,
                });
                if rule.for_.is_zero() {
                    fire(inner, rule, cache, t, now, silenced, &mut record, out);
                }
            }
            Entry::Occupied(mut entry) if !entry.get().firing => {
                if !fires {
                    gauge(rule, cache, AlertState::Pending, 0.0);
                    record(TransitionKind::Inactive, value);
                    entry.remove();
                    return;
                }
                let t = entry.get_mut();
                t.value = value.unwrap_or(t.value);
                if now.saturating_duration_since(t.active_at) >= rule.for_ {
                    fire(inner, rule, cache, t, now, silenced, &mut record, out);
                }
            }
            Entry::Occupied(mut entry) => {
                let holds = value.is_some_and(|v| rule.comparison.holds(v, rule.resolves_at()));
                if holds {
                    let t = entry.get_mut();
                    t.value = value.unwrap_or(t.value);
                    if silenced != t.silenced {
                        t.silenced = silenced;
                        let kind =
                            if silenced { TransitionKind::Silenced } else { TransitionKind::Unsilenced };
                        record(kind, Some(t.value));
                    }
                    if let Some(resend) = resend
                        && !silenced
                        && t.notified.is_none_or(|at| now.saturating_duration_since(at) >= resend)
                    {
                        t.notified = Some(now);
                        out.push(notification(inner, rule, cache, t, AlertState::Firing, None));
                    }
                    return;
                }
                let t = entry.remove();
                gauge(rule, cache, AlertState::Firing, 0.0);
                let last = value.or(Some(t.value));
                record(TransitionKind::Resolved, last);
                let mut resolved = alert(rule, cache, AlertState::Resolved, last, t.active_at, now);
                resolved.silenced = silenced;
                tracing::info!(
                    alertname = %rule.name,
                    severity = rule.severity.as_str(),
                    cache,
                    value = last,
                    "alert resolved"
                );
                if resend.is_some() && !silenced {
                    let t = Tracked { value: last.unwrap_or(t.value), ..t };
                    out.push(notification(inner, rule, cache, &t, AlertState::Resolved, Some(now)));
                }
                self.resolved.push_back(resolved);
            }
        }
    }

    /// Sets the gauges of the active alerts of rule `index` from the
    /// severity `from` to the rule's current one, after a rule change.
    pub(super) fn relabel(&self, index: usize, from: &AlertRule) {
        let rule = &self.rules[index];
        for ((i, cache), t) in &self.active {
            if *i != index {
                continue;
            }
            let state = if t.firing { AlertState::Firing } else { AlertState::Pending };
            gauge(from, cache.as_deref(), state, 0.0);
            gauge(rule, cache.as_deref(), state, 1.0);
        }
    }
}

/// The history's record of `kind` happening to the alert of `rule` (and
/// `cache`) at `at`.
pub(super) fn transition(
    rule: &AlertRule,
    cache: Option<&str>,
    kind: TransitionKind,
    value: Option<f64>,
    at: Instant,
) -> Transition {
    Transition {
        at,
        rule: rule.name.clone(),
        severity: rule.severity,
        cache: cache.map(str::to_owned),
        kind,
        value,
        threshold: rule.threshold,
        note: None,
    }
}

/// Moves a pending alert to firing; notifies unless `silenced`.
#[allow(clippy::too_many_arguments, reason = "one step of the state machine, split out")]
fn fire(
    inner: &Inner,
    rule: &AlertRule,
    cache: Option<&str>,
    t: &mut Tracked,
    now: Instant,
    silenced: bool,
    record: &mut impl FnMut(TransitionKind, Option<f64>),
    out: &mut Vec<Notification>,
) {
    t.firing = true;
    t.since = now;
    gauge(rule, cache, AlertState::Pending, 0.0);
    gauge(rule, cache, AlertState::Firing, 1.0);
    record(TransitionKind::Firing, Some(t.value));
    tracing::warn!(
        alertname = %rule.name,
        severity = rule.severity.as_str(),
        cache,
        value = t.value,
        threshold = rule.threshold,
        silenced,
        "alert firing"
    );
    if silenced {
        t.silenced = true;
        record(TransitionKind::Silenced, Some(t.value));
    } else if inner.resend_interval().is_some() {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use metrics_util::{
        CompositeKey, MetricKind,
        debugging::{DebugValue, DebuggingRecorder},
    };

    use super::*;
    use crate::{
        alerts::{
            AlertEngine, CacheFigures, Comparison,
            fixtures::{S, engine, errors},
        },
        health::HealthStatus,
        window::Window,
    };

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
            .with_window(
                HttpWindowStats::from_counts(Window::FiveMinutes, 100, 0).with_p95(2.5).with_p50(0.1),
            )
            .with_window(HttpWindowStats::from_counts(Window::OneMinute, 30, 0).with_p99(9.0));
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
}
