//! [`SloSet`]: the in-process counts of each SLO's good and bad requests,
//! its burn rates and its error budget.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{Slo, SloError, SloKind, objective::validate_all};
use crate::{alerts::BurnRateFigures, window::WindowedCounter};

/// The slots of the counters over the period: the budget is counted in
/// `period / 720` steps (1 hour for 30 days).
const PERIOD_SLOTS: u32 = 720;
/// The slot length of the burn-rate counters: 10 s, or less for short
/// periods (a thirtieth of the shortest window).
const WINDOW_RESOLUTION: Duration = Duration::from_secs(10);

/// The counters of one SLO.
struct Tracked {
    slo: Slo,
    /// Requests and bad requests over the longest burn-rate window.
    requests: WindowedCounter,
    bad: WindowedCounter,
    /// The same over the whole period, coarser.
    period_requests: WindowedCounter,
    period_bad: WindowedCounter,
}

impl Tracked {
    fn new(slo: Slo) -> Self {
        let windows = slo.windows();
        let longest = windows.iter().max().copied().unwrap_or(Duration::from_secs(3600));
        let shortest = windows.iter().min().copied().unwrap_or(Duration::from_secs(300));
        let resolution = WINDOW_RESOLUTION.min(shortest / 30).max(Duration::from_millis(100));
        let period_resolution = slo.period / PERIOD_SLOTS;
        Self {
            requests: WindowedCounter::with_resolution(longest, resolution),
            bad: WindowedCounter::with_resolution(longest, resolution),
            period_requests: WindowedCounter::with_resolution(slo.period, period_resolution),
            period_bad: WindowedCounter::with_resolution(slo.period, period_resolution),
            slo,
        }
    }

    #[inline]
    fn record(&self, route: &str, seconds: f64, error: bool, at: Instant) {
        let Some(good) = self.slo.judge(route, seconds, error) else { return };
        self.requests.add_at(1, at);
        self.period_requests.add_at(1, at);
        if !good {
            self.bad.add_at(1, at);
            self.period_bad.add_at(1, at);
        }
    }

    fn heap_bytes(&self) -> usize {
        [&self.requests, &self.bad, &self.period_requests, &self.period_bad]
            .iter()
            .map(|c| c.slots() * size_of::<u64>())
            .sum()
    }
}

/// The SLOs of a service and their in-process counts: fed with each
/// finished request (by the monitoring router, through the layer's
/// windows), read for burn rates and error budgets. A cheap handle.
///
/// Each SLO holds four windowed counters: requests and bad requests over
/// its longest burn-rate window (6 h for 30 days, in 10-second slots,
/// 2 × 17 KB) and over its period (in `period / 720` slots, 2 × 5.6 KB).
/// The budget is that of this process since it started, at most the
/// period: Prometheus' rules (see [`prometheus_rules`](super::prometheus_rules))
/// give the fleet's.
///
/// # Example
///
/// ```
/// use std::time::{Duration, Instant};
/// use tower_observability::slo::{Slo, SloSet};
///
/// let slos = SloSet::new(vec![Slo::availability("api", 0.99)])?;
/// let t0 = Instant::now();
/// for i in 0..100 {
///     slos.record("/users/{id}", 0.01, i < 3, t0); // 3 % fail
/// }
/// let report = &slos.report_at(t0)[0];
/// assert_eq!((report.requests, report.bad), (100, 3));
/// assert!((report.budget_remaining - (1.0 - 3.0)).abs() < 1e-9, "3 % spent of a 1 % budget: 2 budgets over");
/// # Ok::<(), tower_observability::slo::SloError>(())
/// ```
#[derive(Clone)]
pub struct SloSet {
    tracked: Arc<[Tracked]>,
}

impl SloSet {
    /// The set of `slos`.
    ///
    /// # Errors
    ///
    /// [`SloError`] when an SLO is invalid ([`Slo::validate`]) or two share
    /// a name.
    pub fn new(slos: Vec<Slo>) -> Result<Self, SloError> {
        validate_all(&slos)?;
        Ok(Self { tracked: slos.into_iter().map(Tracked::new).collect() })
    }

    /// The SLOs.
    pub fn slos(&self) -> impl ExactSizeIterator<Item = &Slo> {
        self.tracked.iter().map(|t| &t.slo)
    }

    /// Counts one finished request of route label `route` that took
    /// `seconds` and failed or not, ended at `at`, in every SLO it belongs
    /// to: a few atomic additions, no lock, no allocation.
    #[inline]
    pub fn record(&self, route: &str, seconds: f64, error: bool, at: Instant) {
        for t in self.tracked.iter() {
            t.record(route, seconds, error, at);
        }
    }

    /// The burn rate of each SLO over each of its windows at `now`, as the
    /// alert rules read them.
    #[must_use]
    pub fn burn_rates_at(&self, now: Instant) -> Vec<BurnRateFigures> {
        let mut out = Vec::new();
        for t in self.tracked.iter() {
            for window in t.slo.windows() {
                let requests = t.requests.sum_at(window, now);
                let bad = t.bad.sum_at(window, now);
                out.push(BurnRateFigures::new(t.slo.name.clone(), window, t.slo.objective, requests, bad));
            }
        }
        out
    }

    /// Each SLO's figures at `now`: its error budget over the period and
    /// its burn rates.
    #[must_use]
    pub fn report_at(&self, now: Instant) -> Vec<SloReport> {
        self.tracked
            .iter()
            .map(|t| {
                let slo = &t.slo;
                let requests = t.period_requests.sum_at(slo.period, now);
                let bad = t.period_bad.sum_at(slo.period, now);
                let spent = if requests == 0 { 0.0 } else { bad as f64 / requests as f64 / slo.budget() };
                let burn_rates = slo
                    .windows()
                    .into_iter()
                    .map(|window| {
                        let figures = BurnRateFigures::new(
                            slo.name.clone(),
                            window,
                            slo.objective,
                            t.requests.sum_at(window, now),
                            t.bad.sum_at(window, now),
                        );
                        BurnRate { window: super::rules::duration(window), rate: figures.rate }
                    })
                    .collect();
                SloReport {
                    name: slo.name.clone(),
                    route: slo.route.clone(),
                    kind: match slo.kind {
                        SloKind::Availability => "availability",
                        SloKind::Latency { .. } => "latency",
                    },
                    latency_threshold_seconds: match slo.kind {
                        SloKind::Latency { threshold } => Some(threshold.as_secs_f64()),
                        SloKind::Availability => None,
                    },
                    objective: slo.objective,
                    period_seconds: slo.period.as_secs_f64(),
                    requests,
                    bad,
                    sli: (requests > 0).then(|| 1.0 - bad as f64 / requests as f64),
                    budget_remaining: 1.0 - spent,
                    burn_rates,
                }
            })
            .collect()
    }

    /// The heap bytes of the counters.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        self.tracked.iter().map(Tracked::heap_bytes).sum()
    }
}

impl fmt::Debug for SloSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.slos().map(|s| &s.name)).finish()
    }
}

/// One SLO's figures, as the overview and the dashboard show them:
///
/// ```json
/// {"name": "api-availability", "route": null, "kind": "availability", "objective": 0.999,
///  "period_seconds": 2592000.0, "requests": 1200, "bad": 3, "sli": 0.9975,
///  "budget_remaining": -1.5, "burn_rates": [{"window": "1h", "rate": 2.5}, ...]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SloReport {
    /// The SLO's name.
    pub name: String,
    /// Its route, `null` for the whole service.
    pub route: Option<String>,
    /// `availability` or `latency`.
    pub kind: &'static str,
    /// For a latency SLO, its threshold in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_threshold_seconds: Option<f64>,
    /// The objective, 0 to 1.
    pub objective: f64,
    /// The period, in seconds.
    pub period_seconds: f64,
    /// Requests counted in the period (since the process started, at most
    /// the period).
    pub requests: u64,
    /// Bad requests among them.
    pub bad: u64,
    /// The share of good requests, `null` without requests.
    pub sli: Option<f64>,
    /// The error budget left: 1 untouched, 0 spent, below 0 overspent.
    pub budget_remaining: f64,
    /// The burn rate over each window (fast pair, then slow pair).
    pub burn_rates: Vec<BurnRate>,
}

/// A burn rate over one window, in a [`SloReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BurnRate {
    /// The window, in Prometheus' notation (`1h`, `5m`).
    pub window: String,
    /// The burn rate: 1 spends the budget in exactly the period.
    pub rate: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_rates_follow_the_windows() {
        let slos = SloSet::new(vec![
            Slo::availability("api", 0.999),
            Slo::latency("fast", 0.99, Duration::from_millis(100)).route("/a"),
        ])
        .unwrap();
        let t0 = Instant::now();
        // An hour ago: 1000 good requests; now: 100 requests, 10 failed.
        for _ in 0..1000 {
            slos.record("/a", 0.01, false, t0);
        }
        let now = t0 + Duration::from_secs(3000);
        for i in 0..100 {
            slos.record("/b", 0.5, i < 10, now);
        }
        let rates = slos.burn_rates_at(now);
        let rate = |slo: &str, secs: u64| {
            rates.iter().find(|b| b.slo == slo && b.window == Duration::from_secs(secs)).unwrap().rate
        };
        assert!((rate("api", 300) - 100.0).abs() < 1e-6, "10 % over 5 m against 0.1 %");
        assert!((rate("api", 3600) - 10.0 / 1100.0 / 0.001).abs() < 1e-6);
        assert_eq!(rate("fast", 300), 0.0, "/b is not the latency SLO's route");
        let report = slos.report_at(now);
        assert_eq!((report[0].requests, report[0].bad), (1100, 10));
        assert_eq!(report[1].requests, 1000);
        assert_eq!(report[1].budget_remaining, 1.0);
        assert!(slos.memory_bytes() > 0);
    }

    #[test]
    fn the_workbook_alerts_fire_only_while_both_windows_burn() {
        use crate::alerts::{AlertEngine, AlertInputs, AlertState};
        let slo = Slo::availability("api", 0.999);
        let slos = SloSet::new(vec![slo.clone()]).unwrap();
        let engine = AlertEngine::builder().rules(slo.alert_rules()).build().unwrap();
        let inputs = |now| AlertInputs { burn_rates: slos.burn_rates_at(now), ..AlertInputs::default() };
        let t0 = Instant::now();
        // 2 % errors for 10 minutes: a burn rate of 20 over 5 m and 1 h.
        for s in 0..600u64 {
            for i in 0..10 {
                slos.record("/a", 0.01, s % 5 == 0 && i == 0, t0 + Duration::from_secs(s));
            }
        }
        let now = t0 + Duration::from_secs(600);
        engine.evaluate(&inputs(now), now);
        let firing: Vec<_> = engine.active().into_iter().map(|a| (a.name, a.state)).collect();
        assert_eq!(
            firing,
            [
                ("api:burn-rate-fast".to_owned(), AlertState::Firing),
                ("api:burn-rate-slow".to_owned(), AlertState::Firing)
            ]
        );
        // Then 6 minutes without errors: the 5 m window is clean, so the fast
        // alert resolves although the 1 h window still burns; the slow pair
        // (6 h and 30 m) still burns.
        for s in 600..960u64 {
            for _ in 0..10 {
                slos.record("/a", 0.01, false, t0 + Duration::from_secs(s));
            }
        }
        let later = t0 + Duration::from_secs(960);
        engine.evaluate(&inputs(later), later);
        let one_hour =
            slos.burn_rates_at(later).into_iter().find(|b| b.window == Duration::from_secs(3600)).unwrap();
        assert!(one_hour.rate > 14.4 * 0.5, "{}", one_hour.rate);
        let names: Vec<_> = engine.active().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["api:burn-rate-slow"]);
    }
}
