//! The Pushgateway push of `ObservabilityBuilder::push_gateway` against a
//! real Prometheus Pushgateway (Debian's `prometheus-pushgateway`, which
//! `scripts/test.sh` installs) on a loopback port: the metrics pushed at
//! the interval, and the last figures pushed at shutdown, visible on the
//! Pushgateway's own `/metrics`. Its own test binary: it installs the
//! process's global recorder. And the quickstart binary with OTLP metrics
//! alone (`OTEL_METRICS_EXPORTER=otlp`): `/metrics` answers 503 and the
//! Pushgateway still gets the recording.
#![cfg(feature = "pushgateway")]

#[path = "../support/app.rs"]
mod app;

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tower_observability::Observability;

/// A `prometheus-pushgateway` on a loopback port, killed on drop.
struct Pushgateway {
    child: Child,
    address: SocketAddr,
    dir: PathBuf,
}

impl Pushgateway {
    const BINARY: &'static str = "prometheus-pushgateway";

    async fn start() -> Self {
        let found = Command::new(Self::BINARY).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{} not found: install Debian's prometheus-pushgateway (scripts/test.sh does)",
            Self::BINARY
        );
        let address = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let dir = std::env::temp_dir().join(format!(
            "tower-observability-pgw-{}-{}",
            std::process::id(),
            address.port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("pgw.log")).unwrap();
        let child = Command::new(Self::BINARY)
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus-pushgateway");
        let mut pgw = Self { child, address, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = reqwest::get(format!("http://{address}/-/ready")).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return pgw;
            }
            if let Ok(Some(status)) = pgw.child.try_wait() {
                panic!("pushgateway exited with {status}: {}", pgw.log());
            }
            assert!(Instant::now() < deadline, "pushgateway not ready in 20 s: {}", pgw.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgw.log")).unwrap_or_default()
    }

    /// The value of the sample `name{job="push-test", ..}` on the
    /// Pushgateway's `/metrics`, if there is one.
    async fn value(&self, name: &str) -> Option<f64> {
        self.value_with(name, &["job=\"push-test\""]).await
    }

    /// The value of the first sample `name{..}` whose labels hold every
    /// `label="value"` of `labels`, if there is one.
    async fn value_with(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.address)).await.ok()?.text().await.ok()?;
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (found, value) = rest.split_once("} ")?;
            labels.iter().all(|l| found.contains(l)).then(|| value.trim().parse().ok())?
        })
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_pushed_at_the_interval_and_at_shutdown() {
    let pgw = Pushgateway::start().await;
    let endpoint = format!("http://{}/metrics/job/push-test", pgw.address);
    let interval = Duration::from_millis(500);
    let obs = Observability::builder()
        .service_name("push-test")
        .install_subscriber(false)
        .sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
        .push_gateway(&endpoint, interval)
        .init()
        .unwrap();
    metrics::describe_counter!("push_test_jobs_total", "Jobs done by the test.");
    metrics::counter!("push_test_jobs_total").increment(3);

    // The interval pushes.
    let started = Instant::now();
    loop {
        if pgw.value("push_test_jobs_total").await == Some(3.0) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "not pushed within 20 s: {}", pgw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("first push visible after {:?}", started.elapsed());
    // /metrics of the application serves the same recorder.
    tower_observability::metrics::flush();
    let rendered = obs.prometheus_handle().unwrap().render();
    assert!(rendered.contains("push_test_jobs_total 3"), "{rendered}");
    let pushed_at = pgw.value("push_time_seconds").await.unwrap();

    // The last figures, pushed at shutdown: visible as soon as it returns.
    metrics::counter!("push_test_jobs_total").increment(2);
    metrics::gauge!("push_test_last_run_success").set(1.0);
    let stopping = Instant::now();
    drop(obs);
    println!("shutdown with its push took {:?}", stopping.elapsed());
    assert_eq!(pgw.value("push_test_jobs_total").await, Some(5.0), "{}", pgw.log());
    assert_eq!(pgw.value("push_test_last_run_success").await, Some(1.0));
    assert!(pgw.value("push_time_seconds").await.unwrap() >= pushed_at);
}

/// `OTEL_METRICS_EXPORTER=otlp`: no scrape (`/metrics` answers 503, as
/// issue 20 says), but the Pushgateway set in code still gets the same
/// recording, at shutdown at the latest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_otlp_metrics_alone_the_push_goes_on_and_metrics_is_503() {
    let pgw = Pushgateway::start().await;
    let endpoint = format!("http://{}/metrics/job/quickstart", pgw.address);
    // A collector that is not there: the OTLP exports fail, counted.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = app::App::start(&[
        ("PUSHGATEWAY_URL", &endpoint),
        ("OTEL_METRICS_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{closed}")),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
    ]);
    let client = reqwest::Client::new();
    let metrics = client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 503, "OTEL_METRICS_EXPORTER=otlp serves no /metrics");
    for _ in 0..3 {
        let res = client.get(app.url("/users/1")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
    }
    let (status, lines) = tokio::task::spawn_blocking(move || app.terminate_with_output()).await.unwrap();
    assert!(status.success(), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("metrics pushed at shutdown")), "{lines:#?}");
    let count = pgw
        .value_with(
            "http_server_request_duration_seconds_count",
            &["job=\"quickstart\"", "http_route=\"/users/{id}\""],
        )
        .await;
    assert_eq!(count, Some(3.0), "{}", pgw.log());
}
