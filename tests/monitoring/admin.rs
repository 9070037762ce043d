//! The operator's routes over real loopback HTTP: the default rules of
//! `Observability::monitoring_router`, the history, silences, run-time
//! thresholds and switches, the write token, the status page and the test
//! notification to a signed webhook.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use serde_json::{Value, json};
use tower_observability::{
    Observability, ObservabilityLayer,
    alerts::{AlertEngine, AlertMetric, AlertNotifier, AlertRule, Comparison, SIGNATURE_HEADER, Severity},
    health::{HealthRegistry, HealthStatus},
    monitoring::MonitoringRouter,
    window::Window,
};

const WRITE: &str = "w-token";

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// A client for one server, sending the write token or not.
struct Client {
    http: reqwest::Client,
    address: SocketAddr,
}

impl Client {
    async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
        let url = format!("http://{}{path}", self.address);
        let mut req = self.http.request(method.parse().unwrap(), url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body.to_owned());
        }
        let res = req.send().await.unwrap();
        let code = res.status().as_u16();
        let text = res.text().await.unwrap();
        (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str) -> Value {
        let (code, body) = self.send("GET", path, None, None).await;
        assert_eq!(code, 200, "GET {path}: {body}");
        body
    }
}

/// The application: `/ok` and `/fail` under `layer`.
fn app(layer: &ObservabilityLayer) -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .layer(layer.clone())
}

/// A rule on the 1-minute error ratio that fires at once above 50 %.
fn error_rule() -> AlertRule {
    AlertRule::new("Errors", AlertMetric::ErrorRatio, Comparison::Above, 0.5)
        .window(Window::OneMinute)
        .for_duration(Duration::ZERO)
        .min_samples(10)
        .severity(Severity::Critical)
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observability_serves_the_default_rules_its_docs_list() {
    let obs = Observability::builder()
        .service_name("defaults-test")
        .install_subscriber(false)
        .install_metrics_recorder(false)
        .sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
        .init()
        .unwrap();
    let router = obs.monitoring_router();
    let engine = router.engine().expect("monitoring_router() evaluates the default rules").clone();
    let address = serve(app(&obs.layer()).merge(router)).await;
    let client = Client { http: reqwest::Client::new(), address };

    let rules = client.get("/monitoring/alerts/rules").await;
    let names: Vec<&str> =
        rules["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["HighErrorRatio", "HighLatencyP95", "LowCacheHitRatio", "ReadinessUnhealthy"]);
    // As documented on `Observability::monitoring_router`.
    let documented = [
        ("HighErrorRatio", 0.05, 60.0, "critical"),
        ("HighLatencyP95", 2.0, 300.0, "warning"),
        ("LowCacheHitRatio", 0.7, 300.0, "warning"),
        ("ReadinessUnhealthy", 0.25, 60.0, "critical"),
    ];
    for (rule, (name, threshold, for_seconds, severity)) in
        rules["rules"].as_array().unwrap().iter().zip(documented)
    {
        assert_eq!(rule["name"], name);
        assert_eq!(rule["threshold"], threshold, "{name}");
        assert_eq!(rule["for_seconds"], for_seconds, "{name}");
        assert_eq!(rule["severity"], severity, "{name}");
    }
    // They are evaluated (the first evaluation runs at once), and served.
    wait_for("a first evaluation", async || engine.evaluations().0 > 0).await;
    let alerts = client.get("/monitoring/alerts").await;
    assert_eq!(alerts["evaluating"], true);
    let status = client.get("/monitoring/status").await;
    assert_eq!(status["config"]["alerts"]["rules"], 4);
    assert_eq!(status["config"]["alerts"]["evaluation_interval_seconds"], 15.0);
    assert!(status["exporters"]["spans"]["capacity"].as_u64().unwrap() > 0, "{status}");
    // Turned off, nothing is served.
    let off: Router = obs.monitoring_router().without_alerts().into();
    let address = serve(off).await;
    let (code, _) =
        Client { http: reqwest::Client::new(), address }.send("GET", "/monitoring/alerts", None, None).await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_write_token_the_write_routes_do_not_exist() {
    let engine = AlertEngine::builder().rule(error_rule()).build().unwrap();
    let router = MonitoringRouter::standalone().alert_engine(engine, Duration::from_secs(3600));
    let client = Client { http: reqwest::Client::new(), address: serve(router.into()).await };
    for (method, path, expected) in [
        ("POST", "/monitoring/silences", 405),
        ("DELETE", "/monitoring/silences/1", 404),
        ("PUT", "/monitoring/alerts/rules/Errors", 405),
        ("PUT", "/monitoring/settings", 405),
        ("POST", "/monitoring/alerts/test", 404),
    ] {
        let (code, _) = client.send(method, path, Some("anything"), Some("{}")).await;
        assert_eq!(code, expected, "{method} {path}");
    }
    // The read side is there.
    assert_eq!(client.get("/monitoring/silences").await, json!({"silences": []}));
    assert_eq!(client.get("/monitoring/alerts/rules/Errors").await["threshold"], 0.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_change_through_the_api_changes_evaluation_and_bad_bodies_change_nothing() {
    let layer = ObservabilityLayer::new();
    let engine = AlertEngine::builder().rule(error_rule()).build().unwrap();
    let monitoring = MonitoringRouter::standalone()
        .observability_layer(layer.clone())
        .alert_engine(engine.clone(), Duration::from_millis(100))
        .write_token(WRITE);
    let client = Client { http: reqwest::Client::new(), address: serve(app(&layer).merge(monitoring)).await };

    // 20 % errors: under the 50 % threshold.
    for i in 0..30 {
        client.send("GET", if i % 5 == 0 { "/fail" } else { "/ok" }, None, None).await;
    }
    wait_for("an evaluation of the traffic", async || engine.evaluations().0 >= 3).await;
    assert!(client.get("/monitoring/alerts").await["active"].as_array().unwrap().is_empty());

    let put = |token: Option<&'static str>, body: &'static str| {
        let client = &client;
        async move { client.send("PUT", "/monitoring/alerts/rules/Errors", token, Some(body)).await }
    };
    // Without the token, or with another: 401, nothing else.
    for token in [None, Some("wrong"), Some("")] {
        let (code, body) = put(token, r#"{"threshold": 0.1}"#).await;
        assert_eq!((code, body), (401, Value::String("unauthorized\n".to_owned())), "{token:?}");
    }
    // Invalid bodies: 422 with a reason, or 400 for what is not JSON.
    for (body, code, reason) in [
        (r#"{"threshold": 1.5}"#, 422, "must be a ratio from 0 to 1"),
        (r#"{"threshold": -1}"#, 422, "must be a ratio from 0 to 1"),
        (r#"{"threshold": "high"}"#, 422, "invalid type"),
        (r#"{"treshold": 0.1}"#, 422, "unknown field `treshold`"),
        (r#"{"for": "soon"}"#, 422, "for: \"soon\""),
        (r#"{"for": "2d"}"#, 422, "`for` must be at most 1 day"),
        (r#"{"severity": "page"}"#, 422, "unknown variant `page`"),
        (r#"{}"#, 422, "changes nothing"),
        ("threshold=0.1", 400, "not JSON"),
        (r#"{"threshold": 0.1"#, 400, "not JSON"),
    ] {
        let (got, json) = put(Some(WRITE), body).await;
        assert_eq!(got, code, "{body}: {json}");
        let error = json["error"].as_str().unwrap_or_else(|| panic!("{body}: {json}"));
        assert!(error.contains(reason), "{body}: {error}");
    }
    let (code, _) =
        client.send("PUT", "/monitoring/alerts/rules/Nope", Some(WRITE), Some(r#"{"threshold": 0.1}"#)).await;
    assert_eq!(code, 404);
    assert_eq!(client.get("/monitoring/alerts/rules/Errors").await["threshold"], 0.5, "nothing changed");

    // A valid change: the next evaluations fire on the same traffic.
    let (code, rule) = put(Some(WRITE), r#"{"threshold": 0.1, "for": "0s", "severity": "warning"}"#).await;
    assert_eq!(code, 200, "{rule}");
    assert_eq!((rule["threshold"].as_f64(), rule["severity"].as_str()), (Some(0.1), Some("warning")));
    wait_for("the alert to fire at the new threshold", async || {
        let alerts = client.get("/monitoring/alerts").await;
        alerts["active"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["state"] == "firing" && a["severity"] == "warning")
    })
    .await;
    // Recorded in the history, which filters by rule, severity and time.
    let history = client.get("/monitoring/alerts/history?rule=Errors").await;
    let states: Vec<&str> =
        history["transitions"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["firing", "pending", "rule_changed"], "{history}");
    assert_eq!(history["transitions"][2]["note"], "threshold 0.5 -> 0.1, severity critical -> warning");
    assert_eq!(history["counts"]["Errors"]["firing"], 1);
    let critical = client.get("/monitoring/alerts/history?severity=critical").await;
    assert!(critical["transitions"].as_array().unwrap().is_empty(), "{critical}");
    let future = client.get("/monitoring/alerts/history?since=2999-01-01T00:00:00Z").await;
    assert!(future["transitions"].as_array().unwrap().is_empty());
    let (code, json) = client.send("GET", "/monitoring/alerts/history?since=yesterday", None, None).await;
    assert_eq!(code, 400, "{json}");

    // Switches: evaluation and window stats off and on again.
    let (code, settings) = client
        .send(
            "PUT",
            "/monitoring/settings",
            Some(WRITE),
            Some(r#"{"alert_evaluation": false, "window_stats": false}"#),
        )
        .await;
    assert_eq!(
        (code, settings.clone()),
        (200, json!({"window_stats": false, "alert_evaluation": false})),
        "{settings}"
    );
    let before = engine.evaluations().0;
    client.send("GET", "/ok", None, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(engine.evaluations().0, before, "no evaluation while off");
    let overview = client.get("/monitoring/overview").await;
    assert_eq!(overview["http"]["windows"]["1m"]["requests"], 30, "the request was not counted");
    let (code, _) = client
        .send(
            "PUT",
            "/monitoring/settings",
            Some(WRITE),
            Some(r#"{"alert_evaluation": true, "window_stats": true}"#),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        client.get("/monitoring/settings").await,
        json!({"window_stats": true, "alert_evaluation": true})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_are_created_listed_and_ended_through_the_api() {
    let engine = AlertEngine::builder().rule(error_rule()).build().unwrap();
    let monitoring = MonitoringRouter::standalone()
        .alert_engine(engine.clone(), Duration::from_secs(3600))
        .write_token(WRITE);
    let client = Client { http: reqwest::Client::new(), address: serve(monitoring.into()).await };

    let (code, _) = client
        .send("POST", "/monitoring/silences", None, Some(r#"{"all": true, "reason": "x", "duration": 60}"#))
        .await;
    assert_eq!(code, 401);
    for (body, reason) in [
        (r#"{"reason": "deploy", "duration": "10m"}"#, "either \"rule\""),
        (r#"{"rule": "Errors", "all": true, "reason": "deploy", "duration": "10m"}"#, "either \"rule\""),
        (r#"{"rule": "Nope", "reason": "deploy", "duration": "10m"}"#, "no alert rule is named \"Nope\""),
        (r#"{"all": true, "reason": "", "duration": "10m"}"#, "reason"),
        (r#"{"all": true, "reason": "deploy", "duration": "30d"}"#, "at most 7 days"),
        (r#"{"all": true, "reason": "deploy"}"#, "either \"duration\""),
        (r#"{"all": true, "reason": "deploy", "expires_at": "2000-01-01T00:00:00Z"}"#, "in the past"),
    ] {
        let (code, json) = client.send("POST", "/monitoring/silences", Some(WRITE), Some(body)).await;
        assert_eq!(code, 422, "{body}: {json}");
        assert!(json["error"].as_str().unwrap().contains(reason), "{body}: {json}");
    }
    assert!(engine.silences().is_empty(), "nothing was created");

    let (code, silence) = client
        .send(
            "POST",
            "/monitoring/silences",
            Some(WRITE),
            Some(r#"{"rule": "Errors", "reason": "deploy 1.4", "duration": "10m"}"#),
        )
        .await;
    assert_eq!(code, 201, "{silence}");
    assert_eq!(
        (silence["matcher"].clone(), silence["reason"].clone()),
        (json!({"rule": "Errors"}), json!("deploy 1.4"))
    );
    let listed = client.get("/monitoring/silences").await;
    assert_eq!(listed["silences"][0]["id"], silence["id"]);
    assert_eq!(client.get("/monitoring/alerts").await["silences"], 1);
    let path = format!("/monitoring/silences/{}", silence["id"]);
    assert_eq!(client.send("DELETE", &path, Some(WRITE), None).await.0, 204);
    assert_eq!(client.send("DELETE", &path, Some(WRITE), None).await.0, 404);
    assert_eq!(client.get("/monitoring/silences").await, json!({"silences": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_details_show_each_checks_history_and_flapping() {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let registry = HealthRegistry::builder()
        .check("flappy", move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { if n.is_multiple_of(2) { HealthStatus::Healthy } else { HealthStatus::Unhealthy } }
        })
        .cache_ttl(Duration::ZERO)
        .build();
    let client = Client {
        http: reqwest::Client::new(),
        address: serve(MonitoringRouter::standalone().health(registry).into()).await,
    };
    for _ in 0..4 {
        client.send("GET", "/health/ready", None, None).await;
    }
    let (_, plain) = client.send("GET", "/health/ready", None, None).await;
    assert!(plain.get("history").is_none(), "only with ?details: {plain}");
    let (_, details) = client.send("GET", "/health/ready?details", None, None).await;
    let flappy = &details["history"]["flappy"];
    assert_eq!(flappy["flapping"], true, "{details}");
    assert!(flappy["changes"].as_u64().unwrap() >= 3);
    let statuses: Vec<&str> =
        flappy["runs"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses[..4], ["healthy", "unhealthy", "healthy", "unhealthy"]);
    assert!(flappy["runs"][0]["duration_seconds"].is_f64());
    let overview = client.get("/monitoring/overview").await;
    assert_eq!(overview["health"]["checks"][0]["name"], "flappy");
    assert_eq!(overview["health"]["checks"][0]["flapping"], true);
}

/// What the webhook receiver got: each body and its signature header.
type Received = Arc<Mutex<Vec<(Bytes, Option<String>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_notification_reaches_every_target_signed_and_reports_each() {
    let received: Received = Arc::default();
    let hook = Router::new()
        .route(
            "/hook",
            post(|State(received): State<Received>, headers: HeaderMap, body: Bytes| async move {
                let signature = headers.get(SIGNATURE_HEADER).map(|v| v.to_str().unwrap().to_owned());
                received.lock().unwrap().push((body, signature));
            }),
        )
        .with_state(received.clone());
    let hook_address = serve(hook).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let notifier = AlertNotifier::builder()
        .signed_webhook(&format!("http://{hook_address}/hook?key=abc"), "s3cret")
        .unwrap()
        .webhook(&format!("http://{closed}/down"))
        .unwrap()
        .timeout(Duration::from_secs(2))
        .service("test-service")
        .build()
        .unwrap();
    let engine = AlertEngine::builder().rule(error_rule()).notifier(notifier).build().unwrap();
    let registry = HealthRegistry::builder().check("db", || async { HealthStatus::Healthy }).build();
    let monitoring = MonitoringRouter::standalone()
        .health(registry)
        .alert_engine(engine, Duration::from_secs(3600))
        .write_token(WRITE);
    let client = Client { http: reqwest::Client::new(), address: serve(monitoring.into()).await };

    assert_eq!(client.send("POST", "/monitoring/alerts/test", None, None).await.0, 401);
    let (code, results) = client.send("POST", "/monitoring/alerts/test", Some(WRITE), None).await;
    assert_eq!(code, 200, "{results}");
    let targets = results["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0]["ok"], true, "{results}");
    assert_eq!(targets[0]["url"], format!("http://{hook_address}/hook?redacted"), "the query is redacted");
    assert_eq!(targets[1]["ok"], false);
    assert!(targets[1]["detail"].as_str().unwrap().contains("error sending request"), "{results}");

    let (body, signature) = received.lock().unwrap()[0].clone();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["alerts"][0]["labels"]["alertname"], "TestNotification");
    assert_eq!(json["service"], "test-service");
    // The receiver's check: HMAC-SHA256 of the raw body under the secret.
    let expected = {
        use hmac_check::sign;
        sign(b"s3cret", &body)
    };
    assert_eq!(signature.as_deref(), Some(expected.as_str()));

    // The status shows the targets (redacted), the memory and the sampled layer time.
    let status = client.get("/monitoring/status").await;
    let shown = &status["exporters"]["alert_targets"];
    assert_eq!(shown[0]["signed"], true);
    assert!(!status.to_string().contains("s3cret") && !status.to_string().contains("key=abc"), "{status}");
    assert!(status["memory"]["alerts"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(status["layer_overhead"]["sample_every"], 64);
    assert_eq!(status["config"]["write_token"], "<redacted>");
    assert_eq!(status["config"]["health_checks"], json!(["db"]));
}

/// An HMAC-SHA256 written from its definition (RFC 2104) over a SHA-256
/// from the `sha2` crate the test shares with the crate, so that the check
/// does not reuse the crate's own signing code.
mod hmac_check {
    use sha2::{Digest, Sha256};

    pub(super) fn sign(key: &[u8], message: &[u8]) -> String {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| block.map(|b| b ^ byte);
        let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
        let outer = Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
        let hex: String = outer.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256={hex}")
    }
}
