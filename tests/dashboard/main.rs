//! The dashboard page, `GET /monitoring`, in real headless Chromium: an
//! application with `ObservabilityLayer::new()` on `127.0.0.1:0` merged
//! with a standalone `MonitoringRouter` given the same layer and a real
//! `AlertEngine` (`MonitoringRouter::alert_engine`); traffic driven with reqwest;
//! `chromium --headless --dump-dom` renders the page after it has polled,
//! and the test reads the rendered DOM. Screenshots are saved as
//! `target/dashboard.png` (light) and `target/dashboard-dark.png` (dark).
//!
//! The last test runs the real quickstart binary through an incident (its
//! payments service failing) and saves `target/dashboard-quickstart.png`:
//! every panel with data, a firing alert, the alert timeline, the health
//! checks' history and the error budget.
//!
//! Chromium is Debian's `chromium` package at `/usr/bin/chromium` (or
//! `$CHROMIUM`), which `scripts/test.sh` installs when it is missing.
#![cfg(feature = "monitoring")]

#[path = "../support/app.rs"]
mod app;

use std::{
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Path as UrlPath, Request},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use tower_observability::{
    ObservabilityLayer,
    alerts::{AlertEngine, AlertRule},
    cache::{CacheHitRatios, CacheStatus},
    health::{HealthRegistry, HealthStatus},
    monitoring::MonitoringRouter,
};

/// Where Debian's `chromium` package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one Chromium run may take before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
/// Virtual time given to the page: it polls every 3 s, so it renders its
/// first data at once and polls twice more.
const VIRTUAL_TIME_BUDGET_MS: u32 = 8000;

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from);
    assert!(
        path.is_file(),
        "headless Chromium not found at {}: the test command (scripts/test.sh) installs Debian's \
         `chromium` package when it is missing; run `apt-get install -y chromium`, or set CHROMIUM \
         to a Chromium binary",
        path.display()
    );
    path
}

/// The target directory (`CARGO_TARGET_DIR` or `target/`), for artifacts.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("CARGO_TARGET_TMPDIR is target/tmp").to_owned()
}

/// Runs headless Chromium on `url` with `args` and a fresh profile, killing
/// it (and the processes it started) after [`CHROMIUM_TIMEOUT`]; returns
/// its standard output.
fn run_chromium(url: &str, args: &[&str]) -> String {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let profile = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "dashboard-chromium-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).unwrap();
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--mute-audio",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // It leads its own process group, so that its helpers can be ended with it.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().expect("start chromium");
    let group = child.id();
    let (out, err) = (read_all(child.stdout.take().unwrap()), read_all(child.stderr.take().unwrap()));
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Helpers still holding the pipes after the browser ended would block
    // the reads: end the run's process group then.
    let grace = Duration::from_secs(10);
    let (mut stdout, mut stderr) = (out.recv_timeout(grace).ok(), err.recv_timeout(grace).ok());
    if status.is_none() || stdout.is_none() || stderr.is_none() {
        kill_process_group(group);
        stdout = stdout.or_else(|| out.recv_timeout(grace).ok());
        stderr = stderr.or_else(|| err.recv_timeout(grace).ok());
    }
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&profile);
    let (stdout, stderr) = (stdout.unwrap_or_default(), stderr.unwrap_or_default());
    match status {
        Some(status) if status.success() => stdout,
        Some(status) => panic!("chromium exited with {status}\nstderr:\n{stderr}"),
        None => panic!("chromium took more than {CHROMIUM_TIMEOUT:?} on {url}: killed\nstderr:\n{stderr}"),
    }
}

/// Reads `pipe` to its end on a thread of its own.
fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

/// Sends SIGKILL to the process group `group`, the one a Chromium run
/// leads (see `process_group(0)` above), and to nothing else.
fn kill_process_group(group: u32) {
    assert!(group > 1, "not a process group of ours: {group}");
    // Spelled `kill -s KILL -- -GROUP`: procps 4.0.2 reads `kill -KILL -GROUP`
    // as `kill -KILL -<first digit>`, i.e. every process when it is 1.
    let _ =
        Command::new("kill").args(["-s", "KILL", "--", &format!("-{group}")]).stderr(Stdio::null()).status();
}

/// The DOM of `url` once the page has run for [`VIRTUAL_TIME_BUDGET_MS`].
async fn dump_dom(url: String) -> String {
    let dom = tokio::task::spawn_blocking(move || run_chromium(&url, &["--dump-dom"])).await.unwrap();
    assert!(dom.contains("</html>"), "not a page:\n{dom}");
    dom
}

/// Saves a screenshot of `url` (1280×900 unless `extra` sets a
/// `--window-size`) to `target/<name>` and returns its path.
async fn screenshot(url: String, name: &str, extra: &'static [&'static str]) -> PathBuf {
    let path = target_dir().join(name);
    let _ = std::fs::remove_file(&path);
    let arg = format!("--screenshot={}", path.display());
    tokio::task::spawn_blocking(move || {
        let mut args = vec!["--run-all-compositor-stages-before-draw", &arg];
        if !extra.iter().any(|a| a.starts_with("--window-size=")) {
            args.push("--window-size=1280,900");
        }
        args.extend_from_slice(extra);
        run_chromium(&url, &args)
    })
    .await
    .unwrap();
    path
}

/// The opening tag of the element with `id`.
fn open_tag<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    &dom[start..=end]
}

/// The text of the element with `id`, which has no child element.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let tag = open_tag(dom, id);
    let start = dom.find(tag).unwrap() + tag.len();
    &dom[start..start + dom[start..].find('<').unwrap()]
}

/// The opening tags of the elements that have the attribute `attr="value"`.
fn tags_with<'a>(dom: &'a str, attr: &str, value: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=\"{value}\"");
    dom.match_indices(&needle)
        .map(|(at, _)| {
            let start = dom[..at].rfind('<').unwrap();
            &dom[start..=at + dom[at..].find('>').unwrap()]
        })
        .collect()
}

/// The status banner, from its opening tag to the next sibling.
fn banner(dom: &str) -> &str {
    let start = dom.find(open_tag(dom, "status-banner")).unwrap();
    &dom[start..start + dom[start..].find("<noscript").unwrap()]
}

/// Serves `app` on an ephemeral loopback port until the test's runtime ends.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// The application's routes, under `layer`: `/users/{id}` answers after a
/// few milliseconds, `/fail` fails with 500 after 120 ms.
fn application(layer: &ObservabilityLayer) -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(|UrlPath(id): UrlPath<u64>| async move {
                tokio::time::sleep(Duration::from_millis(2 + id % 7 * 3)).await;
                format!("user {id}")
            }),
        )
        .route(
            "/fail",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(120)).await;
                (StatusCode::INTERNAL_SERVER_ERROR, "failed")
            }),
        )
        .layer(layer.clone())
}

async fn get_status(client: &reqwest::Client, address: SocketAddr, path: &str) -> u16 {
    client.get(format!("http://{address}{path}")).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_traffic_the_routes_and_the_alerts() {
    let layer = ObservabilityLayer::new();
    let registry = HealthRegistry::builder()
        .check("db", || async { HealthStatus::Healthy })
        .check("disk", || async { HealthStatus::Degraded })
        .build();
    let ratios = CacheHitRatios::new();
    let (users, sessions) = (ratios.cache("users"), ratios.cache("sessions"));
    for i in 0..50 {
        users.record(if i % 5 == 0 { CacheStatus::Miss } else { CacheStatus::Hit });
        sessions.record(if i % 5 == 0 { CacheStatus::Hit } else { CacheStatus::Miss });
    }
    // The default rules, firing at the first evaluation that sees them,
    // evaluated by the router over its windows every 100 ms and served at
    // GET /monitoring/alerts.
    let engine = AlertEngine::builder()
        .rules(AlertRule::defaults().into_iter().map(|rule| rule.for_duration(Duration::ZERO)))
        .build()
        .unwrap();
    let monitoring = MonitoringRouter::standalone()
        .observability_layer(layer.clone())
        .health(registry)
        .cache_hit_ratios(ratios)
        .alert_engine(engine.clone(), Duration::from_millis(100));
    let address = serve(application(&layer).merge(monitoring)).await;

    // 50 successes, then 20 failures.
    let client = reqwest::Client::new();
    for id in 0..50 {
        assert_eq!(get_status(&client, address, &format!("/users/{id}")).await, 200);
    }
    for _ in 0..20 {
        assert_eq!(get_status(&client, address, "/fail").await, 500);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !engine.active().iter().any(|alert| alert.name == "HighErrorRatio") {
        assert!(Instant::now() < deadline, "HighErrorRatio never fired: {:?}", engine.report());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let page = format!("http://{address}/monitoring");
    let dom = dump_dom(page.clone()).await;
    // The figures of the last minute, which the page selects by default.
    assert_eq!(text_of(&dom, "request-count"), "70", "total requests of the 1m window");
    assert_eq!(text_of(&dom, "error-ratio"), "28.6%");
    assert_eq!(text_of(&dom, "error-count"), "20 errors");
    assert_eq!(text_of(&dom, "active-requests"), "0");
    assert_eq!(text_of(&dom, "service-name"), "unknown_service");
    for id in ["latency-p50", "latency-p95", "latency-p99"] {
        assert!(text_of(&dom, id).ends_with(" ms"), "#{id}: {}", text_of(&dom, id));
    }
    assert!(text_of(&dom, "proc-rss").ends_with(" MB"), "{}", text_of(&dom, "proc-rss"));
    // The routes table, one row per route.
    let routes = &dom[dom.find("id=\"routes-body\"").unwrap()..];
    let routes = &routes[..routes.find("</tbody>").unwrap()];
    assert_eq!(tags_with(routes, "data-route", "/users/{id}").len(), 1, "{routes}");
    assert_eq!(tags_with(routes, "data-route", "/fail").len(), 1, "{routes}");
    assert!(routes.contains("<code>/users/{id}</code>"), "{routes}");
    // The alerts the engine fires after the errors, with their severities.
    let high_errors = tags_with(&dom, "data-alert-name", "HighErrorRatio");
    assert_eq!(high_errors.len(), 1, "{dom}");
    assert!(high_errors[0].contains("data-severity=\"critical\""), "{}", high_errors[0]);
    assert!(high_errors[0].contains("data-state=\"firing\""), "{}", high_errors[0]);
    let low_cache = tags_with(&dom, "data-alert-name", "LowCacheHitRatio");
    assert!(low_cache.iter().any(|tag| tag.contains("data-severity=\"warning\"")), "{low_cache:?}");
    assert_eq!(text_of(&dom, "count-critical"), "1");
    assert!(text_of(&dom, "alerts-live").contains("critical HighErrorRatio firing"), "the live region tells");
    // Health per group, cache ratios with the one below the threshold.
    assert!(open_tag(&dom, "health-ready").contains("data-status=\"degraded\""));
    assert!(dom.contains("failing: disk"));
    assert!(open_tag(&dom, "health-overall").contains("data-status=\"degraded\""));
    let sessions = tags_with(&dom, "data-cache", "sessions");
    assert!(sessions.iter().any(|tag| tag.contains("data-low=\"true\"")), "{sessions:?}");
    assert!(tags_with(&dom, "data-cache", "users").iter().all(|tag| !tag.contains("data-low")));
    // Charts drawn, no error shown.
    assert!(dom.contains("class=\"ln s0\""), "a chart line is drawn");
    assert!(
        open_tag(&dom, "status-banner").contains("hidden"),
        "no banner: {}",
        open_tag(&dom, "status-banner")
    );
    assert!(open_tag(&dom, "alerts-source").contains("hidden"), "alerts are read from monitoring/alerts");

    // Screenshots for a person to look at.
    for (name, extra) in [("dashboard.png", &[][..]), ("dashboard-dark.png", &["--force-dark-mode"][..])] {
        let path = screenshot(page.clone(), name, extra).await;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{}: {size} bytes", path.display());
        eprintln!("screenshot: {} ({size} bytes)", path.display());
    }
}

/// The requests the page made to its endpoints.
#[derive(Debug, Default)]
struct Seen {
    overview: AtomicUsize,
    alerts: AtomicUsize,
}

/// A middleware answering `503` to `GET …/monitoring/overview` once
/// `passes` requests to it have gone through.
async fn overview_fails_after(passes: usize, seen: Arc<Seen>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.ends_with("/monitoring/alerts") {
        seen.alerts.fetch_add(1, Ordering::SeqCst);
    }
    if path.ends_with("/monitoring/overview") && seen.overview.fetch_add(1, Ordering::SeqCst) >= passes {
        return (StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response();
    }
    next.run(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_banner_when_the_overview_fails() {
    let layer = ObservabilityLayer::new();
    let seen = Arc::new(Seen::default());
    let asked = seen.clone();
    let app = application(&layer).merge(MonitoringRouter::standalone().observability_layer(layer)).layer(
        middleware::from_fn(move |req: Request, next: Next| overview_fails_after(0, seen.clone(), req, next)),
    );
    let address = serve(app).await;

    let dom = dump_dom(format!("http://{address}/monitoring")).await;
    assert!(!open_tag(&dom, "status-banner").contains("hidden"), "{}", banner(&dom));
    assert!(
        banner(&dom)
            .contains("<b>overview unavailable: HTTP 503 Service Unavailable</b> — no data yet; retrying"),
        "{}",
        banner(&dom)
    );
    // Not a blank page: the layout is there, with dashes for the figures.
    assert_eq!(text_of(&dom, "service-name"), "Monitoring");
    assert_eq!(text_of(&dom, "request-count"), "—");
    assert_eq!(text_of(&dom, "updated"), "no data");
    assert!(dom.contains("<th scope=\"col\">Route</th>"));
    // GET /monitoring/alerts is not mounted: no error, the overview's section is used.
    assert!(!banner(&dom).contains("alerts unavailable"), "a 404 of the alerts is not an error");
    assert!(!open_tag(&dom, "alerts-source").contains("hidden"));
    // It polls the overview on, and does not ask for the missing alerts again.
    assert!(asked.overview.load(Ordering::SeqCst) >= 2, "{asked:?}");
    assert_eq!(asked.alerts.load(Ordering::SeqCst), 1, "{asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_keeps_its_data_when_the_overview_fails_later_and_works_when_nested() {
    let layer = ObservabilityLayer::new();
    let seen = Arc::new(Seen::default());
    let asked = seen.clone();
    // The fragment nested under /ops: the page at /ops/monitoring reads
    // /ops/monitoring/overview.
    let monitoring: Router = MonitoringRouter::standalone().observability_layer(layer.clone()).into();
    let app = application(&layer).nest("/ops", monitoring).layer(middleware::from_fn(
        move |req: Request, next: Next| overview_fails_after(1, seen.clone(), req, next),
    ));
    let address = serve(app).await;
    let client = reqwest::Client::new();
    for id in 0..5 {
        assert_eq!(get_status(&client, address, &format!("/users/{id}")).await, 200);
    }

    let dom = dump_dom(format!("http://{address}/ops/monitoring")).await;
    // The first poll's data stays on the page under the banner.
    let count: u64 = text_of(&dom, "request-count").parse().unwrap_or_else(|_| panic!("{dom}"));
    assert!(count >= 5, "{count}");
    assert_eq!(tags_with(&dom, "data-route", "/users/{id}").len(), 1, "{dom}");
    assert!(!open_tag(&dom, "status-banner").contains("hidden"));
    assert!(
        banner(&dom)
            .contains("<b>overview unavailable: HTTP 503 Service Unavailable</b> — showing the data of "),
        "{}",
        banner(&dom)
    );
    assert!(dom.contains("<body class=\"stale\">"), "the stale data is marked");

    // A picture of the same: the first overview answers, the next ones fail.
    asked.overview.store(0, Ordering::SeqCst);
    let path = screenshot(format!("http://{address}/ops/monitoring"), "dashboard-degraded.png", &[]).await;
    assert!(std::fs::metadata(&path).unwrap().len() > 10_000, "{}", path.display());
}

/// GETs `path` on the quickstart, whatever the answer.
async fn hit(client: &reqwest::Client, app: &app::App, path: &str) {
    let _ = client.get(app.url(path)).send().await.map(|r| r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_page_shows_every_panel_with_data_through_an_incident() {
    let app = app::App::start(&[("OTEL_SDK_DISABLED", "true")]);
    let client = reqwest::Client::new();
    // Normal traffic: cached users, paid orders.
    for i in 0..60u64 {
        hit(&client, &app, &format!("/users/{}", i % 12)).await;
        hit(&client, &app, &format!("/orders/{}", i * 5 + 2)).await;
    }
    // The incident: the payments service fails; orders answer 502 and the
    // readiness check fails, until the error-ratio alert fires (20 s of
    // `for`, evaluated every 5 s).
    let res = client.put(app.url("/demo/payments/failing")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut round = 0u64;
    loop {
        for i in 0..8 {
            hit(&client, &app, &format!("/orders/{}", (round * 8 + i) * 5 + 1)).await;
            hit(&client, &app, &format!("/users/{}", (round * 8 + i) % 12)).await;
        }
        round += 1;
        let alerts: serde_json::Value =
            client.get(app.url("/monitoring/alerts")).send().await.unwrap().json().await.unwrap();
        let firing = |name: &str| {
            alerts["active"].as_array().unwrap().iter().any(|a| a["name"] == name && a["state"] == "firing")
        };
        if firing("HighErrorRatio") && firing("ReadinessUnhealthy") {
            break;
        }
        assert!(Instant::now() < deadline, "the alerts did not fire within 90 s: {alerts}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let page = app.url("/monitoring");
    let dom = dump_dom(page.clone()).await;
    // Key figures and routes.
    let requests: u64 = text_of(&dom, "request-count").replace(',', "").parse().unwrap();
    assert!(requests > 100, "{requests}");
    assert_eq!(text_of(&dom, "service-name"), "quickstart");
    assert_eq!(tags_with(&dom, "data-route", "/orders/{id}").len(), 1);
    // The firing alerts.
    let errors = tags_with(&dom, "data-alert-name", "HighErrorRatio");
    assert!(errors.iter().any(|t| t.contains("data-state=\"firing\"")), "{errors:?}");
    assert!(text_of(&dom, "count-critical").parse::<u64>().unwrap() >= 2);
    // The timeline: a firing span, and the transitions listed.
    assert!(!tags_with(&dom, "data-span", "firing").is_empty(), "a firing span on the timeline");
    assert!(!tags_with(&dom, "data-span", "pending").is_empty(), "a pending span on the timeline");
    assert!(
        tags_with(&dom, "data-transition", "firing")
            .iter()
            .any(|t| t.contains("data-rule=\"HighErrorRatio\""))
    );
    assert!(
        text_of(&dom, "history-counts").contains("HighErrorRatio: "),
        "{}",
        text_of(&dom, "history-counts")
    );
    // Health: readiness unhealthy, each check with its runs.
    assert!(open_tag(&dom, "health-ready").contains("data-status=\"unhealthy\""));
    assert!(dom.contains("failing: payments"));
    let payments = tags_with(&dom, "data-check", "payments");
    assert!(payments[0].contains("data-status=\"unhealthy\""), "{payments:?}");
    assert_eq!(tags_with(&dom, "data-check", "heartbeat").len(), 1);
    assert!(dom.matches("<i data-status=\"healthy\"").count() >= 3, "runs are drawn");
    // The error budget: overspent by the incident.
    let availability = tags_with(&dom, "data-slo", "availability");
    assert!(availability[0].contains("class=\"slo over\""), "{availability:?}");
    assert!(dom.contains("overspent"));
    assert_eq!(tags_with(&dom, "data-slo", "users-latency").len(), 1);
    // The cache panel, and no error banner.
    assert!(!tags_with(&dom, "data-cache", "users").is_empty());
    assert!(open_tag(&dom, "status-banner").contains("hidden"), "{}", banner(&dom));

    // A picture of the whole page, every panel with data.
    let path = screenshot(page, "dashboard-quickstart.png", &["--window-size=1280,1900"]).await;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(size > 50_000, "{}: {size} bytes", path.display());
    eprintln!("screenshot: {} ({size} bytes)", path.display());
    let _ = client.put(app.url("/demo/payments/ok")).send().await;
    assert!(app.terminate().success());
}

/// Issue 15: the slowest recent sampled requests of each route, read from
/// the exemplar slots, each trace id a link made from the router's
/// template; a request whose parent was not sampled is not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_the_slowest_sampled_requests_with_links_to_their_traces() {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tower_observability::{
        metrics::{Exemplars, HttpMetricsLayer},
        trace::HttpTraceLayer,
    };

    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
    let exemplars = Exemplars::new();
    let layer = ObservabilityLayer::new()
        .trace(HttpTraceLayer::new().tracer(provider.tracer("dashboard-test")))
        .metrics(HttpMetricsLayer::new().exemplar_registry(exemplars.clone()));
    let monitoring = MonitoringRouter::standalone()
        .observability_layer(layer.clone())
        .exemplars(exemplars)
        .trace_link("http://jaeger.invalid/trace/{trace_id}")
        .unwrap();
    let address = serve(application(&layer).merge(monitoring)).await;
    let client = reqwest::Client::new();
    for path in ["/users/1", "/users/6", "/fail"] {
        get_status(&client, address, path).await;
    }
    let unsampled = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = client
        .get(format!("http://{address}/users/3"))
        .header("traceparent", format!("00-{unsampled}-00f067aa0ba902b7-00"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while spans.get_finished_spans().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "the three sampled spans did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sampled: Vec<(String, String)> = spans
        .get_finished_spans()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s.span_context.trace_id().to_string(),
                s.attributes.iter().find(|kv| kv.key.as_str() == "http.route").unwrap().value.to_string(),
            )
        })
        .collect();
    assert_eq!(sampled.len(), 3, "the unsampled request exports no span");

    let dom = dump_dom(format!("http://{address}/monitoring")).await;
    let rows = tags_with(&dom, "data-trace-id", "");
    assert!(rows.is_empty(), "no row without a trace id");
    let fail = sampled.iter().find(|(_, route)| route == "/fail").unwrap();
    for (trace, route) in &sampled {
        let rows = tags_with(&dom, "data-trace-id", trace);
        // `/users/{id}` keeps one request per duration bucket: the two may share one.
        if route == "/fail" {
            assert_eq!(rows.len(), 1, "{dom}");
        }
        for _ in rows {
            let link = format!(
                "<a href=\"http://jaeger.invalid/trace/{trace}\" target=\"_blank\" rel=\"noopener noreferrer\">{trace}</a>"
            );
            assert!(dom.contains(&link), "{link} in {dom}");
        }
    }
    assert!(dom.contains(&format!("data-trace-id=\"{}\"", fail.0)));
    let users = sampled
        .iter()
        .filter(|(t, r)| r == "/users/{id}" && dom.contains(&format!("data-trace-id=\"{t}\"")))
        .count();
    assert!(users >= 1, "a row for /users/{{id}}: {dom}");
    assert!(!dom.contains(unsampled), "the unsampled request is not listed");
    assert!(open_tag(&dom, "status-banner").contains("hidden"), "no error: {}", banner(&dom));
}
