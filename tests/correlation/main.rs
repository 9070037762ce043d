//! Correlation across two real services (two processes of the `chain`
//! example): one trace in the OTLP receiver, the same request id and trace
//! id on every log line of both, in JSON and in text, matching the response
//! headers.

#[path = "../support/app.rs"]
mod app;
#[path = "../support/otlp.rs"]
mod otlp;

use std::time::Duration;

use app::App;
use otlp::OtlpReceiver;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// The JSON lines of `app` emitted inside a request (they have a `span`).
fn request_lines(app: &App) -> Vec<Value> {
    app.lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|json| json.get("span").is_some())
        .collect()
}

async fn wait_for_lines(app: &App, what: &str, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let lines = request_lines(app);
        if cond(&lines) {
            return lines;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {:#?}", app.lines());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_trace_and_one_request_id_across_two_services_and_every_log_line() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.grpc_endpoint();
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "50")];

    let inventory = App::start_example("chain", &[&otel[..], &[("ROLE", "inventory")]].concat());
    let inventory_url = format!("http://{}", inventory.address);
    let storefront = App::start_example(
        "chain",
        &[&otel[..], &[("ROLE", "storefront"), ("INVENTORY_URL", &inventory_url)]].concat(),
    );

    let res = reqwest::Client::new()
        .get(storefront.url("/checkout/sku-9"))
        .header("x-request-id", "order-77")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "order-77");
    let traceparent = res.headers()["traceparent"].to_str().unwrap().to_owned();
    let server_timing = res.headers()["server-timing"].to_str().unwrap().to_owned();
    assert_eq!(server_timing, format!("traceparent;desc=\"{traceparent}\""));
    let parts: Vec<&str> = traceparent.split('-').collect();
    let (trace_id, storefront_span) = (parts[1].to_owned(), parts[2].to_owned());
    res.bytes().await.unwrap();

    // The receiver has both server spans, in one trace, parent to child.
    let front =
        receiver.wait_for_span(WAIT, |s| s.service_name == "storefront" && s.trace_id == trace_id).await;
    let back =
        receiver.wait_for_span(WAIT, |s| s.service_name == "inventory" && s.trace_id == trace_id).await;
    assert_eq!(front.span_id, storefront_span, "the traceparent header names the server span");
    assert_eq!(front.name, "GET /checkout/{sku}");
    assert_eq!(back.name, "GET /stock/{sku}");
    assert_eq!(back.parent_span_id, front.span_id, "the inventory span is a child of the storefront's");
    assert_eq!(front.attributes["request_id"], "order-77");
    assert_eq!(back.attributes["request_id"], "order-77", "the request id crossed to the next service");

    // Every log line of the request, in both services, carries the ids.
    let front_lines = wait_for_lines(&storefront, "storefront access log", |lines| {
        lines.iter().any(|l| l["target"] == "tower_observability::access")
    })
    .await;
    let back_lines = wait_for_lines(&inventory, "inventory access log", |lines| {
        lines.iter().any(|l| l["target"] == "tower_observability::access")
    })
    .await;
    for (lines, span_id, messages) in [
        (&front_lines, &front.span_id, &["calling inventory", "inventory answered", "request finished"][..]),
        (&back_lines, &back.span_id, &["checked stock", "request finished"][..]),
    ] {
        for line in lines.iter() {
            assert_eq!(line["request_id"], "order-77", "{line}");
            assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
            assert_eq!(line["span_id"], span_id.as_str(), "{line}");
        }
        for message in messages {
            assert!(
                lines.iter().any(|l| l["fields"]["message"] == *message),
                "no {message:?} line: {lines:#?}"
            );
        }
    }
    let access = back_lines.iter().find(|l| l["target"] == "tower_observability::access").unwrap();
    assert_eq!(access["fields"]["http.route"], "/stock/{sku}");
    assert_eq!(access["fields"]["http.response.status_code"], 200);
    assert!(access["fields"]["duration_seconds"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn text_logs_carry_the_same_ids_and_escape_control_characters() {
    let app = App::start_example("chain", &[("ROLE", "inventory"), ("LOG_FORMAT", "text")]);
    let res = reqwest::Client::new()
        .get(app.url("/stock/sku%0D%0AINFO%20forged"))
        .header("x-request-id", "text-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let line = loop {
        if let Some(line) = app.lines().into_iter().find(|l| l.contains("checked stock")) {
            break line;
        }
        assert!(std::time::Instant::now() < deadline, "no log line: {:#?}", app.lines());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(line.contains(" request_id=text-1 "), "{line}");
    assert!(line.contains(" trace_id="), "{line}");
    assert!(line.contains(" span_id="), "{line}");
    // The decoded path segment holds CR LF: it is escaped, not a new line.
    assert!(
        line.contains(r"sku=sku\r\nINFO forged") || line.contains(r#"sku="sku\r\nINFO forged""#),
        "{line}"
    );
    assert!(!app.lines().iter().any(|l| l.starts_with("INFO forged")), "a forged line got through");
}

/// A caller that does not sample (`traceparent` flag `00`): no span is
/// exported by either service, yet both log the caller's trace id and the
/// request id, the storefront answers with a span id of its own (flag `00`),
/// and the inventory service receives the trace, still unsampled.
#[tokio::test]
async fn an_unsampled_caller_gets_no_spans_but_correlated_logs_in_both_services() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.grpc_endpoint();
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "50")];
    let inventory = App::start_example("chain", &[&otel[..], &[("ROLE", "inventory")]].concat());
    let inventory_url = format!("http://{}", inventory.address);
    let storefront = App::start_example(
        "chain",
        &[&otel[..], &[("ROLE", "storefront"), ("INVENTORY_URL", &inventory_url)]].concat(),
    );
    let client = reqwest::Client::new();

    let (trace_id, parent_id) = ("5bf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7");
    let res = client
        .get(storefront.url("/checkout/sku-1"))
        .header("traceparent", format!("00-{trace_id}-{parent_id}-00"))
        .header("x-request-id", "quiet-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let traceparent = res.headers()["traceparent"].to_str().unwrap().to_owned();
    res.bytes().await.unwrap();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!((parts[1], parts[3]), (trace_id, "00"), "the caller's trace, still unsampled: {traceparent}");
    let storefront_span = parts[2].to_owned();
    assert_ne!(storefront_span, parent_id, "the server has a span id of its own");

    let quiet = |lines: &[Value]| -> Vec<Value> {
        lines.iter().filter(|l| l["request_id"] == "quiet-1").cloned().collect()
    };
    let has_access =
        |lines: &[Value]| quiet(lines).iter().any(|l| l["target"] == "tower_observability::access");
    let front_lines = quiet(&wait_for_lines(&storefront, "storefront access log", has_access).await);
    let back_lines = quiet(&wait_for_lines(&inventory, "inventory access log", has_access).await);
    for line in &front_lines {
        assert_eq!(line["trace_id"], trace_id, "{line}");
        assert_eq!(line["span_id"], storefront_span.as_str(), "{line}");
    }
    for message in ["calling inventory", "inventory answered", "request finished"] {
        assert!(
            front_lines.iter().any(|l| l["fields"]["message"] == message),
            "no {message:?}: {front_lines:#?}"
        );
    }
    let back_span = back_lines[0]["span_id"].as_str().unwrap().to_owned();
    assert_ne!(back_span, storefront_span, "the inventory's own (unsampled) span id");
    for line in &back_lines {
        assert_eq!(line["trace_id"], trace_id, "the trace crossed to the next service: {line}");
        assert_eq!(line["span_id"], back_span.as_str(), "{line}");
    }
    assert!(back_lines.iter().any(|l| l["fields"]["message"] == "checked stock"), "{back_lines:#?}");

    // A sampled request afterwards: once both its spans arrived, anything the
    // first request had exported would have arrived before them.
    let res = client.get(storefront.url("/checkout/sku-2")).send().await.unwrap();
    let sampled = res.headers()["traceparent"].to_str().unwrap().split('-').nth(1).unwrap().to_owned();
    res.bytes().await.unwrap();
    receiver.wait_for_span(WAIT, |s| s.service_name == "storefront" && s.trace_id == sampled).await;
    receiver.wait_for_span(WAIT, |s| s.service_name == "inventory" && s.trace_id == sampled).await;
    let leaked: Vec<_> = receiver.spans().into_iter().filter(|s| s.trace_id == trace_id).collect();
    assert!(leaked.is_empty(), "spans of an unsampled trace were exported: {leaked:#?}");
}
