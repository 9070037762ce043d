//! Hostile traffic against the real quickstart binary: the number of series
//! stays bounded by the routes, memory stays flat, and hostile headers are
//! neither echoed nor allowed to forge log lines.

#[path = "../support/app.rs"]
mod app;
#[path = "../support/prom.rs"]
mod prom;

use std::{collections::BTreeSet, time::Duration};

use app::App;
use prom::Exposition;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A deterministic pseudo-random generator (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn token(&mut self, len: usize) -> String {
        (0..len).map(|_| (b'a' + (self.next() % 26) as u8) as char).collect()
    }
}

/// Sends one raw HTTP/1.1 request and reads the whole answer.
async fn raw_request(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Series of the HTTP metrics on a scrape: every distinct label set.
fn http_series(exposition: &Exposition) -> BTreeSet<String> {
    exposition
        .samples
        .iter()
        .filter(|s| s.name.starts_with("http_server_"))
        .map(|s| format!("{}{:?}", s.name, s.labels))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cardinality_attack_keeps_series_bounded_and_memory_flat() {
    let app = App::start(&[("OTEL_SDK_DISABLED", "true"), ("RUST_LOG", "warn,quickstart=info")]);
    let addr = app.address.clone();
    let pid = app.pid();
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();

    // Warm up: every route and outcome once, so later growth is the attack's.
    for path in ["/users/1", "/orders/5", "/orders/1", "/nope", "/report"] {
        client.get(format!("http://{addr}{path}")).send().await.unwrap().bytes().await.unwrap();
    }
    let methods = ["PURGE", "BREW", "XYZZY", "PROPFIND", "REPORT"];
    for m in methods {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        client.request(method, format!("http://{addr}/users/1")).send().await.unwrap().bytes().await.unwrap();
    }
    let baseline = http_series(&Exposition::parse(
        &client.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap(),
    ));
    let rss_before = app::rss_bytes(pid);

    const REQUESTS: u64 = 100_000;
    const CONCURRENCY: u64 = 32;
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let client = client.clone();
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (worker + 1));
            let mut failures = 0u64;
            for i in 0..REQUESTS / CONCURRENCY {
                let path = match i % 4 {
                    0 => format!("/{}/{}", rng.token(8), rng.token(12)),
                    1 => format!("/users/{}?{}={}", rng.next(), rng.token(6), rng.token(20)),
                    2 => format!("/orders/{}", rng.next() % 1000),
                    _ => format!("/{}", rng.token(40)),
                };
                let method = if i % 3 == 0 {
                    reqwest::Method::from_bytes(rng.token(7).to_uppercase().as_bytes()).unwrap()
                } else {
                    reqwest::Method::GET
                };
                let host = format!("{}.example", rng.token(10));
                let res =
                    client.request(method, format!("http://{addr}{path}")).header("host", host).send().await;
                match res {
                    Ok(res) => {
                        res.bytes().await.ok();
                    }
                    Err(_) => failures += 1,
                }
            }
            failures
        }));
    }
    let mut failures = 0;
    for task in tasks {
        failures += task.await.unwrap();
    }
    assert_eq!(failures, 0, "every request got an answer");

    let text = client.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let exposition = Exposition::parse(&text);
    let after = http_series(&exposition);
    // Random paths, methods, hosts and queries add no label values: every
    // value comes from a fixed set, so series are bounded by their product
    // whatever the input.
    let allowed: [(&str, &[&str]); 5] = [
        ("http_route", &["/users/{id}", "/orders/{id}", "/report", "_unmatched"]),
        ("http_request_method", &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "_OTHER"]),
        ("http_response_status_code", &["200", "400", "404", "405", "500"]),
        ("url_scheme", &["http"]),
        ("error_type", &["500"]),
    ];
    let mut label_sets = BTreeSet::new();
    for sample in exposition.samples.iter().filter(|s| s.name.starts_with("http_server_")) {
        for (key, values) in &allowed {
            if let Some(value) = sample.labels.get(*key) {
                assert!(values.contains(&value.as_str()), "{key}={value:?} came from the input");
            }
        }
        let mut labels = sample.labels.clone();
        labels.remove("le");
        label_sets.insert(labels);
    }
    let bound = 4 * 8 * 5;
    assert!(label_sets.len() <= bound, "{} label sets", label_sets.len());
    let counted = exposition.sum("http_server_request_duration_seconds_count", &[]);
    assert!(counted >= REQUESTS as f64, "every attack request is counted: {counted}");

    let rss_after = app::rss_bytes(pid);
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!(
        "cardinality attack: {REQUESTS} requests, {} series before, {} after ({} label sets, bound {bound}), RSS {} -> {} KiB (+{} KiB)",
        baseline.len(),
        after.len(),
        label_sets.len(),
        rss_before / 1024,
        rss_after / 1024,
        growth / 1024
    );
    assert!(growth < 16 * 1024 * 1024, "resident memory grew by {} KiB", growth / 1024);
}

#[tokio::test]
async fn hostile_headers_are_not_echoed_and_cannot_forge_log_lines() {
    let app = App::start(&[("OTEL_SDK_DISABLED", "true"), ("LOG_FORMAT", "text")]);
    let addr = app.address.clone();
    let long = "a".repeat(16 * 1024);
    let cases: Vec<(&str, String)> = vec![
        ("x-request-id", long.clone()),
        ("x-request-id", "evil\tINFO forged".to_owned()),
        ("x-request-id", "caf\u{e9}".to_owned()),
        ("x-request-id", "<script>alert(1)</script>".to_owned()),
        ("traceparent", format!("00-{}-00f067aa0ba902b7-01", "f".repeat(4000))),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra".to_owned()),
        ("tracestate", format!("k={}", "v,".repeat(4000))),
        ("baggage", format!("user={}", "%".repeat(8000))),
        ("cache-status", "\"unterminated; hit; ttl=-".repeat(200)),
    ];
    for (header, value) in &cases {
        let request =
            format!("GET /users/7 HTTP/1.1\r\nHost: x\r\n{header}: {value}\r\nConnection: close\r\n\r\n");
        let answer = raw_request(&addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{header}: {}", &answer[..answer.len().min(200)]);
        let echoed = answer.lines().find_map(|l| l.strip_prefix("x-request-id: ")).unwrap_or_default();
        if *header == "x-request-id" {
            assert_ne!(echoed, value.as_str(), "an invalid id was echoed");
            assert_eq!(echoed.len(), 36, "a fresh UUID replaces it: {echoed}");
        }
        assert!(!answer.contains("forged"), "a hostile value reached the response");
    }
    // A raw CR inside a header value is refused by the HTTP parser itself.
    let answer =
        raw_request(&addr, "GET /users/7 HTTP/1.1\r\nHost: x\r\nx-request-id: a\rINFO forged\r\n\r\n").await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    // A path that decodes to CR LF is written escaped in the text log.
    let answer =
        raw_request(&addr, "GET /users/%0D%0AINFO%20forged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "a non-numeric id is rejected by the handler: {answer}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for line in app.lines() {
        assert!(!line.trim_start().starts_with("INFO forged"), "forged log line: {line}");
        assert!(!line.contains(&long), "a 16 KiB hostile id reached the logs");
    }
    // Still serving.
    let ok = raw_request(&addr, "GET /users/8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_under_load() {
    let app = App::start(&[("OTEL_SDK_DISABLED", "true"), ("RUST_LOG", "warn,quickstart=info")]);
    let addr = app.address.clone();
    let client = reqwest::Client::builder().pool_max_idle_per_host(128).build().unwrap();

    // 200 000 requests at concurrency 64, over three routes and outcomes:
    // i % 4 == 0 -> /orders/{5k} (500), 1 -> /orders/{5k+1} (200),
    // 2 -> /users/{id} (200), 3 -> an unknown path (404).
    const REQUESTS: usize = 200_000;
    const CONCURRENCY: usize = 64;
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let client = client.clone();
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = [0usize; 4];
            let mut i = worker;
            while i < REQUESTS {
                let kind = i % 4;
                let path = match kind {
                    0 => format!("/orders/{}", (i % 1000) * 5),
                    1 => format!("/orders/{}", (i % 1000) * 5 + 1),
                    2 => format!("/users/{}", i % 900),
                    _ => format!("/missing/{i}"),
                };
                let res = client.get(format!("http://{addr}{path}")).send().await.expect("request");
                let expected = [500, 200, 200, 404][kind];
                assert_eq!(res.status().as_u16(), expected, "{path}");
                res.bytes().await.unwrap();
                seen[kind] += 1;
                i += CONCURRENCY;
            }
            seen
        }));
    }
    let mut sent = [0usize; 4];
    for task in tasks {
        for (total, n) in sent.iter_mut().zip(task.await.unwrap()) {
            *total += n;
        }
    }
    assert_eq!(sent.iter().sum::<usize>(), REQUESTS);

    let text = client.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let exposition = Exposition::parse(&text);
    let count = |route: &str, status: &str| {
        exposition.sum(
            "http_server_request_duration_seconds_count",
            &[("http_route", route), ("http_response_status_code", status)],
        )
    };
    assert_eq!(count("/orders/{id}", "500") as usize, sent[0], "500s on /orders/{{id}}");
    assert_eq!(count("/orders/{id}", "200") as usize, sent[1], "200s on /orders/{{id}}");
    assert_eq!(count("/users/{id}", "200") as usize, sent[2], "200s on /users/{{id}}");
    assert_eq!(count("_unmatched", "404") as usize, sent[3], "404s");
    assert_eq!(exposition.sum("http_server_request_duration_seconds_count", &[]) as usize, REQUESTS);
    assert_eq!(exposition.sum("http_server_active_requests", &[]), 0.0, "the gauge returns to 0");

    // The in-process overview agrees with Prometheus.
    let overview: serde_json::Value =
        client.get(format!("http://{addr}/monitoring/overview")).send().await.unwrap().json().await.unwrap();
    let window = &overview["http"]["windows"]["15m"];
    assert_eq!(window["requests"].as_u64().unwrap() as usize, REQUESTS, "{window}");
    assert_eq!(window["errors"].as_u64().unwrap() as usize, sent[0], "{window}");
    assert_eq!(overview["http"]["active_requests"], 0);
    eprintln!(
        "exactness: {REQUESTS} requests at concurrency {CONCURRENCY}: {sent:?} (500/200/200/404), all counted"
    );
}
