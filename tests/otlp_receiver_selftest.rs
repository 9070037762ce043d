//! Self-test for the in-process OTLP receiver in `tests/support/otlp.rs`.

#[path = "support/otlp.rs"]
mod otlp;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse, trace_service_client::TraceServiceClient,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message as _;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn request(service: &str, name: &str, trace_byte: u8, kind: span::SpanKind) -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: vec![trace_byte; 16],
        span_id: vec![0xab; 8],
        parent_span_id: if kind == span::SpanKind::Client { vec![0x01; 8] } else { Vec::new() },
        name: name.to_owned(),
        kind: kind as i32,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 2_000,
        attributes: vec![
            kv("http.request.method", any_value::Value::StringValue("GET".to_owned())),
            kv("http.response.status_code", any_value::Value::IntValue(200)),
            kv("flag", any_value::Value::BoolValue(true)),
        ],
        status: Some(Status { message: "boom".to_owned(), code: 2 }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", any_value::Value::StringValue(service.to_owned()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn receives_spans_over_grpc_and_http() {
    let receiver = otlp::OtlpReceiver::start().await;
    assert!(receiver.grpc_endpoint().starts_with("http://127.0.0.1:"));
    assert!(receiver.http_endpoint().starts_with("http://127.0.0.1:"));

    // gRPC
    let mut client = TraceServiceClient::connect(receiver.grpc_endpoint()).await.expect("connect gRPC");
    client.export(request("grpc-svc", "GET /grpc", 0x11, span::SpanKind::Server)).await.expect("gRPC export");

    // HTTP/protobuf
    let body = request("http-svc", "GET /http", 0x22, span::SpanKind::Client).encode_to_vec();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/traces", receiver.http_endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("HTTP export");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-type").unwrap(), "application/x-protobuf");
    let bytes = response.bytes().await.unwrap();
    ExportTraceServiceResponse::decode(bytes).expect("decodable response");

    let grpc = receiver.wait_for_span(Duration::from_secs(5), |s| s.name == "GET /grpc").await;
    assert_eq!(grpc.trace_id, "11".repeat(16));
    assert_eq!(grpc.span_id, "ab".repeat(8));
    assert_eq!(grpc.parent_span_id, "");
    assert_eq!(grpc.kind, 2);
    assert_eq!(grpc.service_name, "grpc-svc");
    assert_eq!(grpc.status_code, 2);
    assert_eq!(grpc.status_message, "boom");
    assert_eq!(grpc.attributes["http.request.method"], "GET");
    assert_eq!(grpc.attributes["http.response.status_code"], "200");
    assert_eq!(grpc.attributes["flag"], "true");
    assert_eq!((grpc.start_unix_nanos, grpc.end_unix_nanos), (1_000, 2_000));

    let http = receiver.wait_for_span(Duration::from_secs(5), |s| s.name == "GET /http").await;
    assert_eq!(http.trace_id, "22".repeat(16));
    assert_eq!(http.parent_span_id, "01".repeat(8));
    assert_eq!(http.kind, 3);
    assert_eq!(http.service_name, "http-svc");
    assert_eq!(http.attributes["http.response.status_code"], "200");

    assert_eq!(receiver.spans().len(), 2);
    assert_eq!(receiver.grpc_requests(), 1);
    assert_eq!(receiver.http_requests(), 1);
    assert_eq!(receiver.dropped_spans(), 0);
}

#[tokio::test]
#[should_panic(expected = "timed out")]
async fn wait_for_span_times_out_with_names() {
    let receiver = otlp::OtlpReceiver::start().await;
    receiver.wait_for_span(Duration::from_millis(50), |s| s.name == "never").await;
}
