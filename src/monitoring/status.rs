//! `GET /monitoring/status`: what the monitoring itself holds and costs;
//! and `GET /monitoring/settings`, its on/off switches.

use std::sync::Arc;

use axum::{extract::State, response::Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::state::MonitoringState;
use crate::{
    alerts::http::with_status,
    observe::layer_overhead,
    window::{DEFAULT_RESOLUTION, DEFAULT_SPAN},
};

/// The body of `GET /monitoring/settings` and `PUT /monitoring/settings`:
/// the non-essential parts that can be switched off at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) struct Settings {
    /// Whether finished requests are counted in the in-process windows.
    window_stats: bool,
    /// Whether the alert rules are evaluated; `null` without an engine.
    alert_evaluation: Option<bool>,
}

pub(super) fn settings_of(state: &MonitoringState) -> Settings {
    Settings {
        window_stats: state.http.is_recording(),
        alert_evaluation: state.engine.as_ref().map(|(engine, _)| engine.is_enabled()),
    }
}

/// `GET /monitoring/settings`.
pub(super) async fn settings(State(state): State<Arc<MonitoringState>>) -> Response {
    with_status(axum::http::StatusCode::OK, settings_of(&state))
}

/// `GET /monitoring/status`: memory, configuration (secrets redacted),
/// exporter queues (the OTLP pipelines of every signal, the alert
/// targets), dropped data and the layers' sampled time per request.
///
/// ```json
/// {
///   "memory": {"http_windows": {"routes": 3, "bytes": 190000}, "cache_windows": {"windows": 2, "bytes": 28800},
///              "alerts": {"bytes": 42000}, "health_history": {"bytes": 3000}, "total_bytes": 263800},
///   "config": {"service": "users-api", "read_token": "<redacted>", "write_token": null, ...},
///   "exporters": {"spans": {"signal": "spans", "exported": 10, "failed": 0, "dropped": 0, "rejected": 0,
///                           "queued": 0, "capacity": 2048},
///                 "metric_points": null,
///                 "log_records": {"signal": "log_records", "exported": 52, ..., "capacity": 2048},
///                 "alert_targets": [{"kind": "webhook", "url": "http://hooks/x", "queued": 0, ...}]},
///   "dropped": {"spans": 0, "metric_points": null, "log_records": 0, "alert_notifications": 0},
///   "layer_overhead": {"sample_every": 64, "sampled_requests": 12, "mean_request_seconds": 0.0000021, ...}
/// }
/// ```
pub(super) async fn status(State(state): State<Arc<MonitoringState>>) -> Response {
    with_status(axum::http::StatusCode::OK, build(&state))
}

/// The status body.
pub(super) fn build(state: &MonitoringState) -> Value {
    let (routes, http_bytes) = state.http.memory();
    // Each cache window (a cache, or a cache on a route) is two windowed
    // counters of DEFAULT_SPAN / DEFAULT_RESOLUTION one-word slots.
    let cache_windows = state.cache.snapshot().len();
    let slots = (DEFAULT_SPAN.as_secs() / DEFAULT_RESOLUTION.as_secs()) as usize;
    let cache_bytes = cache_windows * 2 * slots * size_of::<u64>();
    let alert_bytes = state.engine.as_ref().map_or(0, |(engine, _)| engine.memory_bytes());
    let health_bytes = state.health.memory_bytes();
    let slo_bytes = state.slos.as_ref().map_or(0, crate::slo::SloSet::memory_bytes);
    let total = http_bytes + cache_bytes + alert_bytes + health_bytes + slo_bytes;

    let redacted = |token: &Option<Arc<str>>| token.as_ref().map(|_| "<redacted>");
    #[cfg(feature = "notify")]
    let targets = state
        .engine
        .as_ref()
        .and_then(|(engine, _)| engine.notifier())
        .map(crate::alerts::AlertNotifier::targets)
        .unwrap_or_default();
    #[cfg(not(feature = "notify"))]
    let targets: Vec<Value> = Vec::new();
    #[cfg(feature = "notify")]
    let notifications_dropped: u64 = targets.iter().map(|t| t.dropped).sum();
    #[cfg(not(feature = "notify"))]
    let notifications_dropped = 0u64;
    // The OTLP pipelines that run (spans, metric points, log records), as
    // the overview counts them; `null` for a signal that is not exported.
    let pipelines = state.exporters.as_ref().map(|source| source()).unwrap_or_default();
    let mut exporters = serde_json::Map::new();
    let mut dropped = serde_json::Map::new();
    for signal in ["spans", "metric_points", "log_records"] {
        let pipeline = pipelines.iter().find(|p| p.signal == signal);
        exporters.insert(signal.to_owned(), json!(pipeline));
        dropped.insert(signal.to_owned(), json!(pipeline.map(|p| p.dropped)));
    }
    exporters.insert("alert_targets".to_owned(), json!(targets));
    dropped.insert("alert_notifications".to_owned(), json!(notifications_dropped));
    let rules = state.engine.as_ref().map(|(engine, every)| {
        json!({
            "rules": engine.rules().len(),
            "evaluation_interval_seconds": every.as_secs_f64(),
            "evaluations": engine.evaluations().0,
            "silences": engine.silences().len(),
        })
    });
    let overhead = layer_overhead();
    json!({
        "memory": {
            "http_windows": {"routes": routes, "bytes": http_bytes},
            "cache_windows": {"windows": cache_windows, "bytes": cache_bytes},
            "alerts": {"bytes": alert_bytes},
            "health_history": {"bytes": health_bytes},
            "slos": {"bytes": slo_bytes},
            "total_bytes": total,
        },
        "config": {
            "service": state.info.name,
            "version": state.info.version,
            "prometheus": state.prometheus.is_some(),
            "read_token": redacted(&state.token),
            "write_token": redacted(&state.write_token),
            "health_checks": state.health.check_names().collect::<Vec<_>>(),
            "alerts": rules,
            "slos": state.slos.as_ref().map(|s| s.slos().map(crate::slo::Slo::name).collect::<Vec<_>>()),
            "cache_warn_below": state.cache.warn_below(),
            "settings": settings_of(state),
        },
        "exporters": exporters,
        "dropped": dropped,
        "layer_overhead": {
            "sample_every": overhead.sample_every,
            "sampled_requests": overhead.sampled_requests,
            "mean_request_seconds": overhead.mean_request_seconds,
            "sampled_ends": overhead.sampled_ends,
            "mean_end_seconds": overhead.mean_end_seconds,
        },
    })
}
