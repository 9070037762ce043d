//! A small users API, observable in three lines, with everything an
//! operator sees: health checks, alert rules, SLOs, notifications.
//!
//! ```text
//! cargo run --example quickstart
//! curl -i localhost:3000/users/42
//! open http://localhost:3000/monitoring      # the dashboard
//! ./scripts/demo-traffic.sh                   # errors, an alert firing, then resolving
//! ```
//!
//! What it serves:
//!
//! - `GET /users/{id}`: a user through a moka cache (first request a miss);
//!   ids above 1000 do not exist (404).
//! - `GET /orders/{id}`: an order, confirmed by a simulated payments
//!   service called with a timeout of 1 s: 502 when it fails, 504 when it
//!   is too slow; every fifth order (ids divisible by 5) fails with 500.
//! - `GET /report`: a CSV report streamed in 5 chunks, 100 ms apart.
//! - `PUT /demo/payments/{mode}`: makes the simulated payments service
//!   `ok`, `slow` (1.5 s) or `failing` (an error at once), as
//!   `PAYMENTS_MODE` does at start. A demo control, not a monitoring route.
//! - The monitoring routes: `/metrics`, `/health/live`, `/health/ready`
//!   (`?details` for each check's history), `/monitoring` (the dashboard),
//!   `/monitoring/overview`, `/monitoring/alerts` (and `/history`,
//!   `/rules`), `/monitoring/silences`, `/monitoring/status`; with a write
//!   token, the write routes (silences, thresholds, switches, test
//!   notification), on the internal listener only.
//!
//! Health checks: `cache` (the users cache answers a probe; degraded when
//! nearly full) and `payments` (the payments service answers within
//! 500 ms) for readiness; `heartbeat` (a background task ticked in the last
//! 5 s) for liveness only.
//!
//! Alert rules, evaluated every 5 s over the last minute (short, so that
//! the demo shows an alert firing and resolving within two minutes):
//! `HighErrorRatio` (> 5 % for 20 s, critical), `HighLatencyP95` (> 1 s for
//! 30 s, warning), `LowCacheHitRatio` (< 50 % for 30 s, warning),
//! `ReadinessUnhealthy` (for 15 s, critical), and the burn-rate alerts of
//! two SLOs: 99.9 % of requests succeed, 99 % of `/users/{id}` requests
//! take at most 250 ms (30 days).
//!
//! Environment:
//!
//! | variable | effect | default |
//! |---|---|---|
//! | `PORT`, `HOST` | the public listener (`PORT=0`: any free port) | `3000`, `127.0.0.1` |
//! | `LOG_FORMAT` | `json` or `text` | `json` |
//! | `MONITORING_PORT` | serve the monitoring routes on that port, not the public one | merged |
//! | `MONITORING_TOKEN` | require `Authorization: Bearer <token>` on the monitoring routes | none |
//! | `MONITORING_WRITE_TOKEN` | serve the write routes, guarded by this token (needs `MONITORING_PORT`) | none: no write routes |
//! | `ALERTMANAGER_URL` | push alerts to this Alertmanager (`http://localhost:9093`) | none |
//! | `ALERT_WEBHOOK_URL` | push alerts to this JSON webhook | none |
//! | `ALERT_WEBHOOK_SECRET` | sign the webhook's requests (`X-Signature-256`, HMAC-SHA256) | unsigned |
//! | `PAYMENTS_MODE` | `ok`, `slow` or `failing` at start | `ok` |
//! | `TRACE_LINK` | how the dashboard links a trace id | `http://localhost:16686/trace/{trace_id}` (Jaeger) |
//! | `PUSHGATEWAY_URL` | also push the metrics to this Pushgateway group (`http://localhost:9091/metrics/job/quickstart`) every 15 s and at shutdown | none |
//! | `OTEL_*` | the standard variables; traces go to `http://localhost:4317` | |
//!
//! Stops gracefully on Ctrl-C or SIGTERM, flushing pending spans.
//! `--prometheus-slo-rules` prints the SLOs as Prometheus rules instead of
//! serving (`deploy/prometheus/slo.yml`).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Extension, Json, Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, put},
};
use serde::Serialize;
use tower_observability::{
    LogFormat, Observability,
    alerts::{AlertEngine, AlertMetric, AlertNotifier, AlertRule, Comparison, Severity},
    cache::InstrumentedCache,
    health::{CheckOptions, HealthCheckResult, HealthGroup, HealthRegistry, HealthStatus},
    slo::Slo,
    window::Window,
};

#[derive(Clone, Serialize)]
struct User {
    id: u64,
    name: String,
}

/// Users by id, cached in memory (moka); its gets, puts, evictions and size
/// show on `/metrics` as `cache_*{cache="users"}`.
type Users = InstrumentedCache<u64, User>;

/// The capacity of the users cache.
const USERS_CAPACITY: u64 = 10_000;

/// The simulated payments service: its mode, switched at run time.
#[derive(Clone, Default)]
struct Payments(Arc<AtomicU8>);

impl Payments {
    const OK: u8 = 0;
    const SLOW: u8 = 1;
    const FAILING: u8 = 2;

    fn set(&self, mode: &str) -> bool {
        let mode = match mode {
            "ok" => Self::OK,
            "slow" => Self::SLOW,
            "failing" => Self::FAILING,
            _ => return false,
        };
        self.0.store(mode, Ordering::Relaxed);
        true
    }

    fn mode(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            Self::SLOW => "slow",
            Self::FAILING => "failing",
            _ => "ok",
        }
    }

    /// One call to the service: 5 ms when ok, 1.5 s when slow, an error at
    /// once when failing.
    async fn call(&self) -> Result<(), &'static str> {
        match self.0.load(Ordering::Relaxed) {
            Self::FAILING => Err("payments service refused the request"),
            Self::SLOW => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok(())
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(())
            }
        }
    }
}

#[derive(Clone)]
struct AppState {
    users: Users,
    payments: Payments,
}

/// `GET /users/{id}`: a user as JSON, through the cache: the first request
/// for an id is a miss (the user is "loaded" in 20 ms), repeats are hits.
/// The outcome is set as a `CacheStatus` response extension, so it is
/// counted in `http_server_cache_requests_total{result="hit|miss"}` and on
/// the span. Ids above 1000 do not exist.
async fn get_user(State(state): State<AppState>, Path(id): Path<u64>) -> Response {
    if id > 1000 {
        return (StatusCode::NOT_FOUND, "no such user\n").into_response();
    }
    let (user, cache_status) = state
        .users
        .get_or_insert_with_status(id, async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tracing::info!(user.id = id, "loaded user");
            User { id, name: format!("user-{id}") }
        })
        .await;
    (Extension(cache_status), Json(user)).into_response()
}

/// `GET /orders/{id}`: fails with 500 for every fifth order (a flaky
/// order store); confirms the others with the payments service, with a
/// timeout of 1 s.
async fn get_order(State(state): State<AppState>, Path(id): Path<u64>) -> Response {
    if id % 5 == 0 {
        tracing::error!(order.id = id, "order store timed out");
        return (StatusCode::INTERNAL_SERVER_ERROR, "order store timed out\n").into_response();
    }
    match tokio::time::timeout(Duration::from_secs(1), state.payments.call()).await {
        Ok(Ok(())) => Json(serde_json::json!({ "id": id, "status": "paid" })).into_response(),
        Ok(Err(reason)) => {
            tracing::error!(order.id = id, reason, "payment failed");
            (StatusCode::BAD_GATEWAY, "payments service failed\n").into_response()
        }
        Err(_) => {
            tracing::error!(order.id = id, "payments service timed out");
            (StatusCode::GATEWAY_TIMEOUT, "payments service timed out\n").into_response()
        }
    }
}

/// `PUT /demo/payments/{mode}`: `ok`, `slow` or `failing`.
async fn set_payments(State(state): State<AppState>, Path(mode): Path<String>) -> Response {
    if state.payments.set(&mode) {
        tracing::warn!(mode, "payments service switched");
        (StatusCode::OK, format!("payments: {mode}\n")).into_response()
    } else {
        (StatusCode::UNPROCESSABLE_ENTITY, "mode must be ok, slow or failing\n").into_response()
    }
}

/// `GET /report`: a CSV report streamed in 5 chunks, 100 ms apart.
async fn report() -> Response {
    let rows = futures_util::stream::unfold(0u32, |row| async move {
        if row == 5 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, Infallible>(Bytes::from(format!("{row},value-{row}\n"))), row + 1))
    });
    ([("content-type", "text/csv")], Body::from_stream(rows)).into_response()
}

/// The health checks: the cache and the payments service for readiness,
/// a heartbeat of the process for liveness.
fn health(users: &Users, payments: &Payments, heartbeat: &Arc<AtomicU64>) -> HealthRegistry {
    let cache = users.cache().clone();
    let payments = payments.clone();
    let heartbeat = Arc::clone(heartbeat);
    HealthRegistry::builder()
        // The cache answers a probe (outside the metrics), and has room.
        .check_with(
            "cache",
            move || {
                let cache = cache.clone();
                async move {
                    let probe = u64::MAX;
                    cache.insert(probe, User { id: probe, name: "probe".to_owned() }).await;
                    let answered = cache.get(&probe).await.is_some();
                    cache.invalidate(&probe).await;
                    let entries = cache.entry_count();
                    let result = if !answered {
                        HealthCheckResult::unhealthy("the cache lost a probe entry")
                    } else if entries * 100 >= USERS_CAPACITY * 95 {
                        HealthCheckResult::degraded("the cache is over 95 % full: expect evictions")
                    } else {
                        HealthCheckResult::healthy()
                    };
                    result.with_detail("entries", entries).with_detail("capacity", USERS_CAPACITY)
                }
            },
            CheckOptions::new().timeout(Duration::from_millis(200)).failure_status(HealthStatus::Degraded),
        )
        // The dependency orders need, with a timeout of its own.
        .check_with(
            "payments",
            move || {
                let payments = payments.clone();
                async move {
                    payments
                        .call()
                        .await
                        .map(|()| HealthCheckResult::healthy().with_detail("mode", payments.mode()))
                }
            },
            CheckOptions::new().timeout(Duration::from_millis(500)),
        )
        // The process itself: its background task still runs.
        .check_with(
            "heartbeat",
            move || {
                let heartbeat = Arc::clone(&heartbeat);
                async move {
                    let age = now_secs().saturating_sub(heartbeat.load(Ordering::Relaxed));
                    let result = if age <= 5 {
                        HealthCheckResult::healthy()
                    } else {
                        HealthCheckResult::unhealthy(format!("no heartbeat for {age} s"))
                    };
                    result.with_detail("age_seconds", age)
                }
            },
            CheckOptions::new().groups([HealthGroup::Live]),
        )
        .build()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The quickstart's rules: the default figures over the last minute, with
/// short `for`s, so that the demo fires and resolves within two minutes.
fn rules() -> Vec<AlertRule> {
    vec![
        AlertRule::high_error_ratio().window(Window::OneMinute).for_duration(Duration::from_secs(20)),
        AlertRule::new("HighLatencyP95", AlertMetric::LatencyP95, Comparison::Above, 1.0)
            .window(Window::OneMinute)
            .for_duration(Duration::from_secs(30))
            .min_samples(20)
            .summary("p95 latency is {value} over the last {window} (threshold {threshold})"),
        AlertRule::low_cache_hit_ratio()
            .window(Window::OneMinute)
            .threshold(0.5)
            .for_duration(Duration::from_secs(30)),
        AlertRule::readiness_unhealthy().for_duration(Duration::from_secs(15)).severity(Severity::Critical),
    ]
}

/// The SLOs: 99.9 % of requests succeed; 99 % of `/users/{id}` requests
/// succeed within 250 ms (a bucket boundary of the duration histogram, so
/// that Prometheus can count them too). Over 30 days.
fn slos() -> Vec<Slo> {
    vec![
        Slo::availability("availability", 0.999),
        Slo::latency("users-latency", 0.99, Duration::from_millis(250)).route("/users/{id}"),
    ]
}

/// The notifier of `ALERTMANAGER_URL` and `ALERT_WEBHOOK_URL` (signed with
/// `ALERT_WEBHOOK_SECRET`), if either is set.
fn notifier() -> Result<Option<AlertNotifier>, Box<dyn std::error::Error>> {
    let alertmanager = std::env::var("ALERTMANAGER_URL").ok().filter(|v| !v.is_empty());
    let webhook = std::env::var("ALERT_WEBHOOK_URL").ok().filter(|v| !v.is_empty());
    if alertmanager.is_none() && webhook.is_none() {
        return Ok(None);
    }
    let mut builder = AlertNotifier::builder().service("quickstart");
    if let Some(url) = alertmanager {
        builder = builder.alertmanager(&url)?;
    }
    if let Some(url) = webhook {
        builder = match std::env::var("ALERT_WEBHOOK_SECRET").ok().filter(|v| !v.is_empty()) {
            Some(secret) => builder.signed_webhook(&url, secret)?,
            None => builder.webhook(&url)?,
        };
    }
    Ok(Some(builder.build()?))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `--prometheus-slo-rules`: print the SLOs as Prometheus rules (what
    // deploy/prometheus/slo.yml holds) and exit.
    if std::env::args().any(|a| a == "--prometheus-slo-rules") {
        print!("{}", tower_observability::slo::prometheus_rules(&slos())?);
        return Ok(());
    }
    let log_format = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("text") => LogFormat::Text,
        _ => LogFormat::Json,
    };
    let mut builder = Observability::builder()
        .service_name("quickstart")
        .service_version(env!("CARGO_PKG_VERSION"))
        .log_format(log_format);
    if let Ok(url) = std::env::var("PUSHGATEWAY_URL")
        && !url.is_empty()
    {
        builder = builder.push_gateway(url, Duration::from_secs(15));
    }
    let obs = builder.init()?;

    let users: Users =
        InstrumentedCache::new("users", moka::future::Cache::builder().max_capacity(USERS_CAPACITY));
    let payments = Payments::default();
    if let Ok(mode) = std::env::var("PAYMENTS_MODE")
        && !payments.set(&mode)
    {
        return Err(format!("PAYMENTS_MODE must be ok, slow or failing, not {mode:?}").into());
    }
    let heartbeat = Arc::new(AtomicU64::new(now_secs()));
    let beat = Arc::clone(&heartbeat);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticks.tick().await;
            beat.store(now_secs(), Ordering::Relaxed);
        }
    });

    let mut engine = AlertEngine::builder().rules(rules());
    if let Some(notifier) = notifier()? {
        tracing::info!(?notifier, "alerts are pushed");
        engine = engine.notifier(notifier);
    }
    let trace_link =
        std::env::var("TRACE_LINK").unwrap_or_else(|_| "http://localhost:16686/trace/{trace_id}".to_owned());
    let mut monitoring = obs
        .monitoring_router()
        .trace_link(trace_link)?
        .health(health(&users, &payments, &heartbeat))
        .alert_engine(engine.build()?, Duration::from_secs(5));
    for slo in slos() {
        monitoring = monitoring.slo(slo)?;
    }
    if let Ok(token) = std::env::var("MONITORING_TOKEN") {
        monitoring = monitoring.bearer_token(token);
    }
    let internal_port = std::env::var("MONITORING_PORT").ok().and_then(|p| p.parse::<u16>().ok());
    if let Ok(token) = std::env::var("MONITORING_WRITE_TOKEN") {
        // The routes that change state are never served on the public listener.
        if internal_port.is_none() {
            return Err("MONITORING_WRITE_TOKEN needs MONITORING_PORT: the write routes are served on \
                        the internal listener only"
                .into());
        }
        monitoring = monitoring.write_token(token);
    }
    let app = Router::new()
        .route("/users/{id}", get(get_user))
        .route("/orders/{id}", get(get_order))
        .route("/report", get(report))
        .route("/demo/payments/{mode}", put(set_payments))
        .with_state(AppState { users, payments })
        .layer(obs.layer());

    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    // The monitoring routes on an internal port of their own, or merged.
    let app = match internal_port {
        Some(port) => {
            let internal = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
            tracing::info!(
                address = %internal.local_addr()?,
                dashboard = %format!("http://{}/monitoring", internal.local_addr()?),
                "monitoring listening"
            );
            tokio::spawn(monitoring.serve(internal));
            app
        }
        None => app.merge(monitoring),
    };

    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    let address: SocketAddr = listener.local_addr()?;
    let started = Instant::now();
    tracing::info!(
        %address,
        metrics = %format!("http://{address}/metrics"),
        dashboard = %format!("http://{address}/monitoring"),
        traces = obs.otlp_endpoint().unwrap_or("off (OTEL_SDK_DISABLED)"),
        "listening"
    );

    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!(uptime_seconds = started.elapsed().as_secs(), "shutting down, flushing spans");
    obs.shutdown();
    Ok(())
}
