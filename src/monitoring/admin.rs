//! The routes that change state, served only with a write token (see
//! [`MonitoringRouter::write_token`](super::MonitoringRouter::write_token)):
//! silences, rule changes, the on/off settings and the test notification;
//! and the parsing of their bodies.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, post, put},
};
use serde::Deserialize;

use super::{SETTINGS_ROUTE, state::MonitoringState, status::settings_of};
use crate::alerts::{
    AlertEngine, RULES_ROUTE, RuleChange, RuleEntry, SILENCES_ROUTE, SilenceEntry, SilenceError,
    SilenceMatcher,
    http::{ApiError, severity_param, with_status},
};

/// The route of the test notification: `/monitoring/alerts/test`.
pub const TEST_ROUTE: &str = "/monitoring/alerts/test";

/// The write routes, for a state that has a write token.
pub(super) fn router<S: Clone + Send + Sync + 'static>(state: &Arc<MonitoringState>) -> Router<S> {
    Router::new()
        .route(SILENCES_ROUTE, post(add_silence))
        .route(&format!("{SILENCES_ROUTE}/{{id}}"), delete(remove_silence))
        .route(&format!("{RULES_ROUTE}/{{name}}"), put(update_rule))
        .route(SETTINGS_ROUTE, put(update_settings))
        .route(TEST_ROUTE, post(test_notification))
        .with_state(Arc::clone(state))
}

/// `body` as JSON of `T`: `400` when it is not JSON, `422` with the reason
/// when it is JSON of another shape (an unknown field, a wrong type).
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => ApiError::unprocessable(err),
        _ => ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not JSON: {err}")),
    })
}

/// A duration as JSON gives it: seconds, or a humantime string (`"30m"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonDuration {
    Seconds(f64),
    Text(String),
}

impl JsonDuration {
    fn get(&self, field: &str) -> Result<Duration, ApiError> {
        let invalid = |why: String| ApiError::unprocessable(format!("{field}: {why}"));
        match self {
            Self::Seconds(s) if s.is_finite() && *s >= 0.0 && *s < 1e12 => Ok(Duration::from_secs_f64(*s)),
            Self::Seconds(s) => Err(invalid(format!("{s} is not a number of seconds"))),
            Self::Text(t) => humantime::parse_duration(t).map_err(|e| invalid(format!("{t:?}: {e}"))),
        }
    }
}

/// The engine, or `404` when the router evaluates none.
fn engine(state: &MonitoringState) -> Result<&AlertEngine, ApiError> {
    state
        .engine
        .as_ref()
        .map(|(engine, _)| engine)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no alert engine is configured"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    rule: Option<String>,
    #[serde(default)]
    all: bool,
    reason: String,
    duration: Option<JsonDuration>,
    expires_at: Option<String>,
}

async fn add_silence(State(state): State<Arc<MonitoringState>>, body: Bytes) -> Response {
    let result = async {
        let engine = engine(&state)?;
        let new: NewSilence = parse(&body)?;
        let unprocessable = |why: &str| ApiError::unprocessable(why);
        let matcher = match (new.rule, new.all) {
            (Some(rule), false) => SilenceMatcher::Rule(rule),
            (None, true) => SilenceMatcher::All,
            _ => return Err(unprocessable("give either \"rule\": \"<name>\" or \"all\": true")),
        };
        let duration = match (new.duration, new.expires_at) {
            (Some(d), None) => d.get("duration")?,
            (None, Some(at)) => {
                let at = humantime::parse_rfc3339_weak(&at)
                    .map_err(|e| unprocessable(&format!("expires_at: {e}")))?;
                at.duration_since(std::time::SystemTime::now())
                    .map_err(|_| unprocessable("expires_at is in the past"))?
            }
            _ => return Err(unprocessable("give either \"duration\" or \"expires_at\"")),
        };
        let silence = engine.silence(matcher, new.reason, duration).map_err(|err| {
            let status = match err {
                SilenceError::TooMany => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiError::new(status, err)
        })?;
        tracing::info!(id = silence.id, "silence created through the monitoring api");
        let entry = engine.silence_entries().into_iter().find(|s| s.id == silence.id);
        Ok::<Option<SilenceEntry>, ApiError>(entry)
    }
    .await;
    match result {
        Ok(entry) => with_status(StatusCode::CREATED, entry),
        Err(err) => err.into_response(),
    }
}

async fn remove_silence(State(state): State<Arc<MonitoringState>>, Path(id): Path<String>) -> Response {
    let engine = match engine(&state) {
        Ok(engine) => engine,
        Err(err) => return err.into_response(),
    };
    match id.parse::<u64>() {
        Ok(id) if engine.expire_silence(id) => {
            tracing::info!(id, "silence ended through the monitoring api");
            StatusCode::NO_CONTENT.into_response()
        }
        _ => ApiError::new(StatusCode::NOT_FOUND, "no such silence").into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    threshold: Option<f64>,
    #[serde(rename = "for")]
    for_: Option<JsonDuration>,
    severity: Option<crate::alerts::Severity>,
}

async fn update_rule(
    State(state): State<Arc<MonitoringState>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let result = (|| {
        let engine = engine(&state)?;
        let severity = severity_param(&query)?;
        let change: Change = parse(&body)?;
        let rule_change = RuleChange {
            threshold: change.threshold,
            for_: change.for_.as_ref().map(|d| d.get("for")).transpose()?,
            severity: change.severity,
        };
        if rule_change.is_empty() {
            return Err(ApiError::unprocessable(
                "the body changes nothing: give \"threshold\", \"for\" or \"severity\"",
            ));
        }
        engine.update_rule(&name, severity, &rule_change).map_err(|err| ApiError::rule(&err))
    })();
    match result {
        Ok(rule) => with_status(StatusCode::OK, RuleEntry::from(&rule)),
        Err(err) => err.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    window_stats: Option<bool>,
    alert_evaluation: Option<bool>,
}

async fn update_settings(State(state): State<Arc<MonitoringState>>, body: Bytes) -> Response {
    let settings: Settings = match parse(&body) {
        Ok(settings) => settings,
        Err(err) => return err.into_response(),
    };
    if let Some(on) = settings.window_stats {
        state.http.set_recording(on);
        tracing::info!(on, "window stats switched through the monitoring api");
    }
    if let Some(on) = settings.alert_evaluation {
        match &state.engine {
            Some((engine, _)) => engine.set_enabled(on),
            None => return ApiError::unprocessable("no alert engine is configured").into_response(),
        }
    }
    with_status(StatusCode::OK, settings_of(&state))
}

async fn test_notification(State(state): State<Arc<MonitoringState>>) -> Response {
    let engine = match engine(&state) {
        Ok(engine) => engine.clone(),
        Err(err) => return err.into_response(),
    };
    #[cfg(feature = "notify")]
    if let Some(notifier) = engine.notifier() {
        let results = notifier.send_test().await;
        tracing::info!(
            targets = results.len(),
            failed = results.iter().filter(|r| !r.ok).count(),
            "test notification sent through the monitoring api"
        );
        return with_status(StatusCode::OK, serde_json::json!({ "targets": results }));
    }
    drop(engine);
    ApiError::new(StatusCode::CONFLICT, "no notification target is configured").into_response()
}
