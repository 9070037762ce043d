//! Service level objectives: availability and latency objectives per route
//! or for the whole service, counted in process, with the SRE workbook's
//! multi-window, multi-burn-rate alerts and the error budget left; and the
//! same as Prometheus rules for a fleet.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_observability::{Observability, slo::Slo};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let obs = Observability::builder().service_name("users-api").init()?;
//! let monitoring = obs
//!     .monitoring_router()
//!     // 99.9 % of /users/{id} requests succeed over 30 days.
//!     .slo(Slo::availability("users-availability", 0.999).route("/users/{id}"))?
//!     // 99 % of all requests finish within 250 ms.
//!     .slo(Slo::latency("api-latency", 0.99, Duration::from_millis(250)))?;
//! # let _ = monitoring;
//! # Ok(())
//! # }
//! ```
//!
//! # Burn rates
//!
//! An objective of 99.9 % leaves an error budget of 0.1 % of the requests
//! over its period (30 days by default). The *burn rate* is how fast the
//! budget goes: the error ratio over a window divided by the budget's
//! ratio; at 1 it lasts exactly the period. Following the SRE workbook
//! (chapter 5, "Alerting on SLOs"), each SLO has two alerts
//! ([`Slo::alert_rules`]), each firing only while both its windows burn
//! too fast, so that it fires quickly on a real burn and resets quickly
//! once it stops:
//!
//! | alert | long window | short window | burn rate | budget spent in the long window |
//! |---|---|---|---|---|
//! | `<name>:burn-rate-fast` | 1 h | 5 m | 14.4 | 2 % |
//! | `<name>:burn-rate-slow` | 6 h | 30 m | 6 | 5 % |
//!
//! The windows scale with the period (`period / 30 days`).
//!
//! # In process and in Prometheus
//!
//! In process, [`SloSet`] counts each finished request in counters of the
//! longest window (10-second slots) and of the period (`period / 720`
//! slots): bounded memory, about 45 KB per SLO. Its budget is this
//! process's since it started. [`prometheus_rules`] writes the same
//! objectives as recording and alerting rules over
//! `http_server_request_duration_seconds`, for the whole fleet;
//! `deploy/prometheus/slo.yml` holds the quickstart's, tested with
//! `promtool test rules`.

mod objective;
mod rules;
mod tracker;

pub use self::{
    objective::{DEFAULT_PERIOD, MAX_PERIOD, MIN_PERIOD, Slo, SloError, SloKind, WORKBOOK_PAIRS},
    rules::prometheus_rules,
    tracker::{BurnRate, SloReport, SloSet},
};
