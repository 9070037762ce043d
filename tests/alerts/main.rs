//! The alert engine end to end: real requests through the crate's layers
//! with a known error ratio, over simulated time; the push to a real
//! Prometheus Alertmanager on loopback; and a push target that is down.
#![cfg(feature = "monitoring")]

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};
use http_body_util::BodyExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::Value;
use tower::ServiceExt;
use tower_observability::{
    ErrorType, ObservabilityLayer,
    alerts::{self, AlertEngine, AlertInputs, AlertMetric, AlertNotifier, AlertRule, AlertState, Comparison},
    health::HealthStatus,
    metrics::HttpWindowStats,
    window::{Window, WindowedCounter},
};

const SEC: Duration = Duration::from_secs(1);

/// A clock the test moves by hand.
struct SimClock {
    base: Instant,
    offset_ms: AtomicU64,
}

impl SimClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    fn set(&self, at: Duration) {
        self.offset_ms.store(at.as_millis() as u64, Ordering::SeqCst);
    }
}

/// What the test's middleware counts, at the simulated time: the windows
/// glue code would read from the in-process stats.
struct Traffic {
    clock: SimClock,
    requests: WindowedCounter,
    errors: WindowedCounter,
    /// Requests answered 500 out of each 10.
    failing_per_10: AtomicU64,
    served: AtomicU64,
}

impl Traffic {
    fn inputs(&self) -> AlertInputs {
        let now = self.clock.now();
        let window = Window::FiveMinutes.duration();
        let (requests, errors) = (self.requests.sum_at(window, now), self.errors.sum_at(window, now));
        AlertInputs::default().with_window(HttpWindowStats::from_counts(
            Window::FiveMinutes,
            requests,
            errors,
        ))
    }
}

async fn handler(State(traffic): State<Arc<Traffic>>) -> StatusCode {
    let n = traffic.served.fetch_add(1, Ordering::SeqCst);
    if n % 10 < traffic.failing_per_10.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// Counts each response at the simulated time, classified as the crate
/// classifies it.
async fn count(State(traffic): State<Arc<Traffic>>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let now = traffic.clock.now();
    traffic.requests.add_at(1, now);
    if ErrorType::from_status(res.status()).is_some() {
        traffic.errors.add_at(1, now);
    }
    res
}

/// (a) 10 requests a second through `ObservabilityLayer`: no errors for a
/// minute, then 30 % for 3 minutes, then none. HighErrorRatio (5 m window,
/// > 5 %, for 1 m, resolves at 4.5 %) goes pending at 75 s (6.3 %), firing
/// at 135 s, stays firing at 492 s (4.7 %, under 5 % but over 4.5 %:
/// hysteresis) and resolves at 495 s (4.4 %); the same rule without
/// hysteresis resolves at 492 s.
#[tokio::test]
async fn a_known_error_ratio_goes_pending_firing_and_resolved() {
    let traffic = Arc::new(Traffic {
        clock: SimClock { base: Instant::now(), offset_ms: AtomicU64::new(0) },
        requests: WindowedCounter::new(),
        errors: WindowedCounter::new(),
        failing_per_10: AtomicU64::new(0),
        served: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/work", get(handler))
        .layer(middleware::from_fn_with_state(Arc::clone(&traffic), count))
        .layer(ObservabilityLayer::new())
        .with_state(Arc::clone(&traffic));

    let engine = AlertEngine::builder().rule(AlertRule::high_error_ratio()).build().unwrap();
    let no_hysteresis =
        AlertEngine::builder().rule(AlertRule::high_error_ratio().resolve_threshold(0.05)).build().unwrap();

    let mut transitions: Vec<(u64, AlertState, f64)> = Vec::new();
    let mut resolved_without_hysteresis = None;
    let mut value_at_492 = None;
    for second in 0..520u64 {
        traffic.failing_per_10.store(if (60..240).contains(&second) { 3 } else { 0 }, Ordering::SeqCst);
        traffic.clock.set(Duration::from_secs(second));
        for _ in 0..10 {
            let req = Request::get("/work").body(Body::empty()).unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            assert!(res.status() == StatusCode::OK || res.status() == StatusCode::INTERNAL_SERVER_ERROR);
        }
        if second % 10 != 5 && second != 492 {
            continue;
        }
        traffic.clock.set(Duration::from_secs(second) + Duration::from_millis(500));
        let (inputs, now) = (traffic.inputs(), traffic.clock.now());
        let before = engine.active().first().map(|a| a.state);
        engine.evaluate(&inputs, now);
        no_hysteresis.evaluate(&inputs, now);
        let ratio = inputs.window(Window::FiveMinutes).unwrap().error_ratio.unwrap();
        let after = engine.active().first().map(|a| a.state).unwrap_or(AlertState::Resolved);
        if before.is_some_and(|b| b != after) || (before.is_none() && after != AlertState::Resolved) {
            transitions.push((second, after, ratio));
        }
        if second == 492 {
            value_at_492 = Some(ratio);
            assert_eq!(engine.active()[0].state, AlertState::Firing, "hysteresis keeps it firing at {ratio}");
        }
        if resolved_without_hysteresis.is_none() && !no_hysteresis.resolved().is_empty() {
            resolved_without_hysteresis = Some(second);
        }
        if second == 205 {
            // While firing, GET /monitoring/alerts lists it.
            let router: Router = alerts::router(engine.clone());
            let req = Request::get(alerts::ROUTE).body(Body::empty()).unwrap();
            let res = router.oneshot(req).await.unwrap();
            assert_eq!(res.headers()["cache-control"], "no-store");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let json: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["active"][0]["name"], "HighErrorRatio");
            assert_eq!(json["active"][0]["state"], "firing");
            assert_eq!(json["active"][0]["window"], "5m");
            assert_eq!(json["counts"]["critical"], 1);
        }
    }
    println!("transitions (second, state, 5m error ratio): {transitions:?}");
    let at: Vec<(u64, AlertState)> = transitions.iter().map(|(s, state, _)| (*s, *state)).collect();
    assert_eq!(
        at,
        [(75, AlertState::Pending), (135, AlertState::Firing), (495, AlertState::Resolved)],
        "{transitions:?}"
    );
    let ratio = |i: usize| transitions[i].2;
    assert!(ratio(0) > 0.05 && ratio(0) < 0.07, "pending at {}", ratio(0));
    assert!(ratio(2) <= 0.045, "resolved at {}", ratio(2));
    let v = value_at_492.unwrap();
    assert!(v > 0.045 && v < 0.05, "492 s: {v}");
    assert_eq!(resolved_without_hysteresis, Some(492));

    let resolved = &engine.resolved()[0];
    assert_eq!(resolved.state, AlertState::Resolved);
    assert_eq!(
        resolved.since - resolved.active_at,
        Duration::from_secs(420),
        "pending at 75 s, resolved at 495 s"
    );
    assert!(engine.active().is_empty());
    assert_eq!(engine.counts().total(), 0);
}

/// A `prometheus-alertmanager` on a loopback port, killed on drop.
struct Alertmanager {
    child: Child,
    address: SocketAddr,
    dir: PathBuf,
}

impl Alertmanager {
    const BINARY: &'static str = "prometheus-alertmanager";

    async fn start() -> Self {
        let found = Command::new(Self::BINARY).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{} not found: install Debian's prometheus-alertmanager (apt-get install prometheus-alertmanager)",
            Self::BINARY
        );
        let dir = std::env::temp_dir().join(format!("tower-observability-am-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("am.yml"), "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n")
            .unwrap();
        let address = free_port();
        let log = std::fs::File::create(dir.join("am.log")).unwrap();
        let child = Command::new(Self::BINARY)
            .arg(format!("--config.file={}", dir.join("am.yml").display()))
            .arg(format!("--storage.path={}", dir.display()))
            .arg(format!("--web.listen-address={address}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus-alertmanager");
        let mut am = Self { child, address, dir };
        let ready = format!("http://{address}/-/ready");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) {
                return am;
            }
            if let Ok(Some(status)) = am.child.try_wait() {
                panic!("alertmanager exited with {status}: {}", am.log());
            }
            assert!(Instant::now() < deadline, "alertmanager not ready in 20 s: {}", am.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("am.log")).unwrap_or_default()
    }

    async fn alerts(&self) -> Vec<Value> {
        let res = reqwest::get(format!("http://{}/api/v2/alerts", self.address)).await.unwrap();
        res.json().await.unwrap()
    }

    /// Polls `/api/v2/alerts` until `done` holds, for up to 20 s.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let alerts = self.alerts().await;
            if done(&alerts) {
                return alerts;
            }
            assert!(Instant::now() < deadline, "{what} within 20 s; alertmanager has {alerts:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback address nothing listens on (bound, then released).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn readiness_alert(alerts: &[Value]) -> Option<&Value> {
    alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "ReadinessUnhealthy" && a["labels"]["service"] == "alerts-test")
}

/// (b) The firing alert appears in a real Alertmanager's `/api/v2/alerts`
/// with its labels and annotations, and is gone once resolved; a webhook
/// gets both notifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_firing_and_resolved_alerts_to_a_real_alertmanager() {
    let am = Alertmanager::start().await;

    let hooks: Arc<Mutex<Vec<Value>>> = Arc::default();
    let receiver = Router::new()
        .route(
            "/hook",
            post(|State(hooks): State<Arc<Mutex<Vec<Value>>>>, Json(body): Json<Value>| async move {
                hooks.lock().unwrap().push(body);
            }),
        )
        .with_state(Arc::clone(&hooks));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let notifier = AlertNotifier::builder()
        .alertmanager(&format!("http://{}", am.address))
        .unwrap()
        .webhook(&format!("http://{hook_address}/hook"))
        .unwrap()
        .service("alerts-test")
        .generator_url("http://127.0.0.1:3000/monitoring/alerts")
        .build()
        .unwrap();
    let engine = AlertEngine::builder()
        .rule(AlertRule::readiness_unhealthy().for_duration(Duration::ZERO).label("team", "platform"))
        .notifier(notifier.clone())
        .build()
        .unwrap();

    let started = Instant::now();
    engine.evaluate(&AlertInputs::default().with_readiness(HealthStatus::Unhealthy), Instant::now());
    assert_eq!(engine.active()[0].state, AlertState::Firing);
    let alerts = am.wait_for("the firing alert", |a| readiness_alert(a).is_some()).await;
    let alert = readiness_alert(&alerts).unwrap();
    println!("firing alert in alertmanager after {:?}: {alert}", started.elapsed());
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["team"], "platform");
    assert_eq!(alert["annotations"]["summary"], "readiness checks report unhealthy");
    assert_eq!(alert["status"]["state"], "active");
    assert_eq!(alert["generatorURL"], "http://127.0.0.1:3000/monitoring/alerts");

    engine.evaluate(&AlertInputs::default().with_readiness(HealthStatus::Healthy), Instant::now());
    assert!(engine.active().is_empty());
    let resolved_at = Instant::now();
    am.wait_for("the resolved alert to leave the active list", |a| readiness_alert(a).is_none()).await;
    println!("resolved alert gone from alertmanager after {:?}", resolved_at.elapsed());

    let deadline = Instant::now() + Duration::from_secs(20);
    while notifier.stats().sent < 4 {
        assert!(Instant::now() < deadline, "4 deliveries (2 targets x 2): {:?}", notifier.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = notifier.stats();
    assert_eq!((stats.sent, stats.failed, stats.dropped), (4, 0, 0), "{stats:?}");
    // The webhook sender may have batched both notifications in one body.
    let hooks = hooks.lock().unwrap();
    assert!(hooks.iter().all(|body| body["service"] == "alerts-test"));
    let sent: Vec<&Value> = hooks.iter().flat_map(|body| body["alerts"].as_array().unwrap()).collect();
    let statuses: Vec<_> = sent.iter().map(|a| a["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["firing", "resolved"]);
    assert_eq!(sent[1]["labels"]["alertname"], "ReadinessUnhealthy");
    assert_eq!(sent[1]["value"], 1.0, "healthy");
    assert_eq!(sent[0]["threshold"], 0.25);
}

/// (c) With the Alertmanager down (a closed port), 50 firing rules re-sent
/// at each of 200 evaluations (10 000 notifications): the queue never
/// holds more than its 16, evaluation stays fast, the drops are counted in
/// the stats and in `tower_observability_alert_notifications_dropped_total`,
/// and every notification is accounted for as dropped or failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_alertmanager_keeps_the_queue_bounded_and_counts_drops() {
    let closed = free_port();
    let notifier = AlertNotifier::builder()
        .alertmanager(&format!("http://{closed}"))
        .unwrap()
        .queue_capacity(16)
        .max_attempts(3)
        .backoff(Duration::from_millis(10), Duration::from_millis(40))
        .timeout(Duration::from_millis(500))
        .resend_interval(SEC)
        .build()
        .unwrap();
    let rules = (0..50).map(|i| {
        AlertRule::new(format!("Rule{i}"), AlertMetric::RequestRate, Comparison::Above, 0.0)
            .for_duration(Duration::ZERO)
    });
    let engine = AlertEngine::builder().rules(rules).notifier(notifier.clone()).build().unwrap();
    let inputs =
        AlertInputs::default().with_window(HttpWindowStats::from_counts(Window::FiveMinutes, 600, 0));

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let t0 = Instant::now();
    let mut durations = Vec::new();
    let mut most_queued = 0;
    let all = Instant::now();
    for i in 0..200u32 {
        let started = Instant::now();
        metrics::with_local_recorder(&recorder, || engine.evaluate(&inputs, t0 + i * SEC));
        durations.push(started.elapsed());
        most_queued = most_queued.max(notifier.stats().queued);
    }
    let all = all.elapsed();
    durations.sort();
    let (median, slowest) = (durations[100], durations[199]);
    let stats = notifier.stats();
    println!(
        "200 evaluations in {all:?}: median {median:?}, slowest {slowest:?}; most queued {most_queued}; {stats:?}"
    );
    assert_eq!(engine.counts().warning, 50);
    assert!(most_queued <= 16, "queued {most_queued}");
    // Each request to the closed port is refused and retried 3 times with a
    // timeout of 500 ms: evaluation that waited on it would take far longer.
    assert!(median < Duration::from_millis(20) && all < Duration::from_secs(2), "{median:?}, {all:?}");
    assert!(stats.dropped > 9_000, "{stats:?}");
    assert_eq!(stats.sent, 0);

    let dropped_metric: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == alerts::ALERT_NOTIFICATIONS_DROPPED)
        .map(|(key, _, _, value)| {
            assert!(key.key().labels().any(|l| l.key() == "target" && l.value() == "alertmanager"));
            match value {
                DebugValue::Counter(n) => n,
                other => panic!("{other:?}"),
            }
        })
        .sum();
    assert_eq!(dropped_metric, stats.dropped);

    // The sender gives up on what it holds after 3 attempts; nothing is lost
    // unaccounted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = notifier.stats();
        if stats.queued == 0 && stats.in_flight == 0 && stats.dropped + stats.failed == 10_000 {
            assert!(stats.failed > 0, "{stats:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (d) A silence stops the notifications to a real Alertmanager: the alert,
/// no longer re-sent, expires there (its `endsAt`, 4 re-send intervals
/// ahead, passes); the silence's expiry resumes them and the alert is back.
/// The engine is evaluated every 200 ms on an unhealthy readiness, as the
/// monitoring router would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_stops_notifications_to_alertmanager_and_its_expiry_resumes_them() {
    let am = Alertmanager::start().await;
    let notifier = AlertNotifier::builder()
        .alertmanager(&format!("http://{}", am.address))
        .unwrap()
        .service("alerts-test")
        .resend_interval(SEC)
        .build()
        .unwrap();
    let engine = AlertEngine::builder()
        .rule(AlertRule::readiness_unhealthy().for_duration(Duration::ZERO))
        .notifier(notifier.clone())
        .build()
        .unwrap();
    let evaluating = engine.clone();
    let task = tokio::spawn(async move {
        loop {
            evaluating
                .evaluate(&AlertInputs::default().with_readiness(HealthStatus::Unhealthy), Instant::now());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    am.wait_for("the firing alert", |a| readiness_alert(a).is_some()).await;
    let silence_for = Duration::from_secs(9);
    let silenced_at = Instant::now();
    engine.silence(alerts::SilenceMatcher::All, "maintenance", silence_for).unwrap();
    // Wait for what was queued before the silence to be delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_at_silence = notifier.stats().sent;
    am.wait_for("the silenced alert to expire in alertmanager", |a| readiness_alert(a).is_none()).await;
    let gone_after = silenced_at.elapsed();
    println!("silenced alert gone from alertmanager after {gone_after:?}");
    assert!(gone_after < silence_for, "gone while the silence holds: {gone_after:?}");
    assert_eq!(notifier.stats().sent, sent_at_silence, "nothing sent while silenced");
    assert!(engine.active()[0].silenced, "still evaluated and listed");

    am.wait_for("the alert back after the silence expired", |a| readiness_alert(a).is_some()).await;
    let back_after = silenced_at.elapsed();
    println!("alert back in alertmanager {back_after:?} after the silence began ({silence_for:?})");
    assert!(back_after >= silence_for, "{back_after:?}");
    assert!(notifier.stats().sent > sent_at_silence);
    let kinds: Vec<_> =
        engine.transitions(&alerts::HistoryFilter::default()).iter().rev().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds, ["pending", "firing", "silenced", "unsilenced"]);
    task.abort();
}
