//! [`Slo`]: one service level objective, its burn-rate windows and the
//! alert rules that watch them.

use std::time::Duration;

use crate::alerts::{AlertMetric, AlertRule, Comparison, Severity};

/// The period of an SLO unless set: 30 days.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest period an SLO may have: 1 hour.
pub const MIN_PERIOD: Duration = Duration::from_secs(3600);
/// The longest period an SLO may have: 90 days.
pub const MAX_PERIOD: Duration = Duration::from_secs(90 * 24 * 3600);

/// The SRE workbook's multi-window, multi-burn-rate pairs for a 30-day
/// SLO (chapter 5, "Alerting on SLOs", table 5-8): the long window, the
/// short window, the burn rate that pages, and the share of the budget a
/// full long window at that rate spends (2 % in 1 h, 5 % in 6 h).
pub const WORKBOOK_PAIRS: [(Duration, Duration, f64); 2] = [
    (Duration::from_secs(3600), Duration::from_secs(300), 14.4),
    (Duration::from_secs(6 * 3600), Duration::from_secs(1800), 6.0),
];

/// What an SLO counts as a good request.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum SloKind {
    /// Good: the request did not fail (no `error_type`: not a 5xx, panic,
    /// timeout, body error or abort).
    Availability,
    /// Good: the request did not fail and took at most `threshold`, to the
    /// end of its response body.
    Latency {
        /// The most a good request takes.
        threshold: Duration,
    },
}

/// Why an SLO was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SloError {
    /// An empty name, or one that is not `[A-Za-z0-9_-]`.
    #[error("an SLO name must be 1 to 64 of [A-Za-z0-9_-]: {0:?}")]
    Name(String),
    /// An objective not strictly between 0 and 1.
    #[error("SLO {0:?}: the objective must be strictly between 0 and 1 (0.999 for 99.9 %)")]
    Objective(String),
    /// A period shorter than [`MIN_PERIOD`] or longer than [`MAX_PERIOD`].
    #[error("SLO {0:?}: the period must be from 1 hour to 90 days")]
    Period(String),
    /// A latency threshold of zero.
    #[error("SLO {0:?}: the latency threshold must be more than 0")]
    Threshold(String),
    /// Two SLOs share a name.
    #[error("two SLOs are named {0:?}")]
    Duplicate(String),
    /// For Prometheus rules, a latency threshold that is not one of the
    /// histogram's bucket boundaries ([`DURATION_BUCKETS`](crate::metrics::DURATION_BUCKETS)).
    #[error(
        "SLO {name:?}: Prometheus can count requests under {threshold} s only at a bucket boundary: one of {buckets}"
    )]
    NotABucket {
        /// The SLO's name.
        name: String,
        /// Its threshold, in seconds.
        threshold: f64,
        /// The bucket boundaries.
        buckets: String,
    },
}

/// A service level objective over the requests of one route or of the
/// whole service: e.g. "99.9 % of `/users/{id}` requests succeed over 30
/// days", or "99 % of requests finish within 250 ms".
///
/// The monitoring router
/// ([`MonitoringRouter::slo`](crate::monitoring::MonitoringRouter::slo))
/// counts its good and bad requests in process, shows the error budget
/// left in the overview and dashboard, and evaluates its
/// [`alert_rules`](Self::alert_rules): the SRE workbook's multi-window,
/// multi-burn-rate alerts. [`prometheus_rules`](crate::slo::prometheus_rules)
/// writes the same as Prometheus recording and alerting rules, for a fleet.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_observability::slo::Slo;
///
/// let availability = Slo::availability("users-availability", 0.999).route("/users/{id}");
/// let latency = Slo::latency("api-latency", 0.99, Duration::from_millis(250));
/// assert!((availability.budget() - 0.001).abs() < 1e-12);
/// assert_eq!(latency.windows(), [Duration::from_secs(3600), Duration::from_secs(300),
///                                Duration::from_secs(21600), Duration::from_secs(1800)]);
/// assert_eq!(availability.alert_rules()[0].name, "users-availability:burn-rate-fast");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Slo {
    pub(crate) name: String,
    pub(crate) route: Option<String>,
    pub(crate) kind: SloKind,
    pub(crate) objective: f64,
    pub(crate) period: Duration,
}

impl Slo {
    /// `objective` (e.g. `0.999`) of the requests succeed, over 30 days,
    /// for the whole service.
    pub fn availability(name: impl Into<String>, objective: f64) -> Self {
        Self {
            name: name.into(),
            route: None,
            kind: SloKind::Availability,
            objective,
            period: DEFAULT_PERIOD,
        }
    }

    /// `objective` of the requests succeed within `threshold`, over 30
    /// days, for the whole service.
    pub fn latency(name: impl Into<String>, objective: f64, threshold: Duration) -> Self {
        Self {
            name: name.into(),
            route: None,
            kind: SloKind::Latency { threshold },
            objective,
            period: DEFAULT_PERIOD,
        }
    }

    /// Counts only the requests of the route template `route`
    /// (`/users/{id}`), as the metrics label it.
    pub fn route(mut self, route: impl Into<String>) -> Self {
        self.route = Some(route.into());
        self
    }

    /// Sets the period the objective holds over (30 days by default); the
    /// burn-rate windows scale with it.
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The route, or `None` for the whole service.
    #[must_use]
    pub fn route_template(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// What counts as good.
    #[must_use]
    pub fn kind(&self) -> SloKind {
        self.kind
    }

    /// The objective, from 0 to 1.
    #[must_use]
    pub fn objective(&self) -> f64 {
        self.objective
    }

    /// The period.
    #[must_use]
    pub fn period_duration(&self) -> Duration {
        self.period
    }

    /// The error budget: the share of requests that may be bad, `1 - objective`.
    #[must_use]
    pub fn budget(&self) -> f64 {
        1.0 - self.objective
    }

    /// The workbook's windows scaled to the period (`period / 30 days`):
    /// long and short of the fast pair, long and short of the slow pair.
    /// For 30 days: 1 h, 5 m, 6 h, 30 m.
    #[must_use]
    pub fn windows(&self) -> [Duration; 4] {
        let [(l1, s1, _), (l2, s2, _)] = WORKBOOK_PAIRS.map(|(l, s, f)| (self.scale(l), self.scale(s), f));
        [l1, s1, l2, s2]
    }

    /// `window` scaled by `period / 30 days`, rounded to whole seconds (at
    /// least 1 s).
    fn scale(&self, window: Duration) -> Duration {
        let factor = self.period.as_secs_f64() / DEFAULT_PERIOD.as_secs_f64();
        Duration::from_secs((window.as_secs_f64() * factor).round().max(1.0) as u64)
    }

    /// Whether a request of route label `route`, taking `seconds`, failed
    /// or not, is counted, and whether it is good.
    #[inline]
    pub(crate) fn judge(&self, route: &str, seconds: f64, error: bool) -> Option<bool> {
        if self.route.as_deref().is_some_and(|r| r != route) {
            return None;
        }
        Some(match self.kind {
            SloKind::Availability => !error,
            SloKind::Latency { threshold } => !error && seconds <= threshold.as_secs_f64(),
        })
    }

    /// Checks the name, objective, period and threshold.
    ///
    /// # Errors
    ///
    /// The [`SloError`] of the first value refused.
    pub fn validate(&self) -> Result<(), SloError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(SloError::Name(self.name.clone()));
        }
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return Err(SloError::Objective(self.name.clone()));
        }
        if !(MIN_PERIOD..=MAX_PERIOD).contains(&self.period) {
            return Err(SloError::Period(self.name.clone()));
        }
        if let SloKind::Latency { threshold } = self.kind
            && threshold.is_zero()
        {
            return Err(SloError::Threshold(self.name.clone()));
        }
        Ok(())
    }

    /// The two burn-rate alert rules of the SRE workbook, windows scaled
    /// to the period, both critical (they page), `for` zero (the short
    /// window resets them quickly once the burn stops):
    ///
    /// | rule | fires when both burn faster than | windows (30 days) |
    /// |---|---|---|
    /// | `{name}:burn-rate-fast` | 14.4 × (2 % of the budget in 1 h) | 1 h and 5 m |
    /// | `{name}:burn-rate-slow` | 6 × (5 % of the budget in 6 h) | 6 h and 30 m |
    ///
    /// Each needs 20 requests in its short window.
    pub fn alert_rules(&self) -> Vec<AlertRule> {
        let [l1, s1, l2, s2] = self.windows();
        [("fast", l1, s1, WORKBOOK_PAIRS[0].2), ("slow", l2, s2, WORKBOOK_PAIRS[1].2)]
            .into_iter()
            .map(|(speed, long, short, factor)| {
                let metric = AlertMetric::BurnRate { slo: self.name.clone(), long, short };
                AlertRule::new(format!("{}:burn-rate-{speed}", self.name), metric, Comparison::Above, factor)
                    .for_duration(Duration::ZERO)
                    .severity(Severity::Critical)
                    .min_samples(20)
                    .label("slo", self.name.clone())
                    .summary(format!(
                        "SLO {} burns its error budget {{value}} as fast as it may (threshold {{threshold}})",
                        self.name
                    ))
                    .description(format!(
                        "Over both the last {} and the last {}, bad requests spent the error budget of {} \
                         more than {factor} times faster than the objective allows.",
                        super::rules::duration(long),
                        super::rules::duration(short),
                        self.name
                    ))
            })
            .collect()
    }
}

/// Checks each SLO and that their names differ.
pub(crate) fn validate_all(slos: &[Slo]) -> Result<(), SloError> {
    for (i, slo) in slos.iter().enumerate() {
        slo.validate()?;
        if slos[..i].iter().any(|s| s.name == slo.name) {
            return Err(SloError::Duplicate(slo.name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_scale_with_the_period() {
        let week = Slo::availability("a", 0.99).period(Duration::from_secs(7 * 24 * 3600));
        let w = week.windows();
        assert_eq!(w[0], Duration::from_secs(840), "1 h × 7/30");
        assert_eq!(w[1], Duration::from_secs(70));
        assert_eq!(w[2], Duration::from_secs(5040));
        assert_eq!(w[3], Duration::from_secs(420));
    }

    #[test]
    fn requests_are_judged_by_route_kind_and_threshold() {
        let avail = Slo::availability("a", 0.99).route("/a");
        assert_eq!(avail.judge("/b", 0.1, false), None);
        assert_eq!(avail.judge("/a", 9.0, false), Some(true));
        assert_eq!(avail.judge("/a", 0.1, true), Some(false));
        let fast = Slo::latency("l", 0.99, Duration::from_millis(250));
        assert_eq!(fast.judge("/x", 0.25, false), Some(true));
        assert_eq!(fast.judge("/x", 0.251, false), Some(false));
        assert_eq!(fast.judge("/x", 0.01, true), Some(false), "an error is never good");
    }

    #[test]
    fn bad_declarations_are_refused() {
        assert!(matches!(Slo::availability("", 0.9).validate(), Err(SloError::Name(_))));
        assert!(matches!(Slo::availability("a b", 0.9).validate(), Err(SloError::Name(_))));
        assert!(matches!(Slo::availability("a", 1.0).validate(), Err(SloError::Objective(_))));
        assert!(matches!(Slo::availability("a", f64::NAN).validate(), Err(SloError::Objective(_))));
        let short = Slo::availability("a", 0.9).period(Duration::from_secs(60));
        assert!(matches!(short.validate(), Err(SloError::Period(_))));
        assert!(matches!(Slo::latency("a", 0.9, Duration::ZERO).validate(), Err(SloError::Threshold(_))));
        let twice = [Slo::availability("a", 0.9), Slo::availability("a", 0.99)];
        assert!(matches!(validate_all(&twice), Err(SloError::Duplicate(_))));
    }
}
