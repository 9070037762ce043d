//! Bring your own pieces: `Observability` with the application's span
//! exporter, extra `tracing` layer and recorder, or with its own tracer
//! provider, over real loopback HTTP; the crate's accounting kept.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, routing::get};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower_observability::{Observability, recorder::MetricsRecorder, telemetry::counted_span_processor};
use tracing_subscriber::Layer;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn get_ok(addr: SocketAddr, path: &str) {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let res = client.get(format!("http://{addr}{path}")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
}

/// A `tracing` layer that keeps the targets of the events it sees.
#[derive(Clone, Default)]
struct Targets(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Targets {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.lock().unwrap().push(event.metadata().target().to_owned());
    }
}

/// The two tests one after the other: the second's requests register the
/// access log's callsite while the first installs the global subscriber,
/// and `tracing` can then keep the callsite's interest from before (seen
/// once in CI: the extra layer saw no access-log line).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_exporter_layer_and_recorder_are_used() {
    let _serial = SERIAL.lock().await;
    let spans = InMemorySpanExporter::default();
    let targets = Targets::default();
    let recorder = tower_observability::prometheus_builder().build_recorder();
    let handle = recorder.handle();
    // A scoped default held anywhere before is not a global subscriber.
    tracing::subscriber::with_default(tracing_subscriber::registry(), || tracing::info!("scoped"));
    let obs = Observability::builder()
        .service_name("byo")
        .span_exporter(spans.clone())
        .with_layer(targets.clone())
        .metrics_recorder(MetricsRecorder::new(recorder))
        .log_filter("info")
        .init()
        .expect("init");
    assert!(obs.prometheus_handle().is_none(), "no global recorder installed");
    let again = Observability::builder().install_metrics_recorder(false).init();
    assert!(
        matches!(again, Err(tower_observability::InitError::SubscriberAlreadyInstalled)),
        "a second subscriber is refused: {again:?}"
    );

    let app = Router::new().route("/users/{id}", get(|| async { "user" })).layer(obs.layer());
    let addr = serve(app).await;
    for _ in 0..3 {
        get_ok(addr, "/users/7").await;
    }
    obs.tracer_provider().unwrap().force_flush().unwrap();

    let finished = spans.get_finished_spans().unwrap();
    let server: Vec<_> = finished.iter().filter(|s| s.name == "GET /users/{id}").collect();
    assert_eq!(server.len(), 3, "the application's exporter got every server span");
    let exported = obs.exporters().into_iter().find(|e| e.signal == "spans").expect("the spans pipeline");
    assert!(exported.exported >= 3, "counted by the crate's pipeline: {exported:?}");
    tower_observability::metrics::flush();
    let text = handle.render();
    assert!(text.contains(r#"http_route="/users/{id}""#), "the given recorder has the series: {text}");
    let seen = targets.0.lock().unwrap().clone();
    assert!(
        seen.iter().filter(|t| *t == "tower_observability::access").count() >= 3,
        "the extra layer saw the access log: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_tracer_provider_is_used_with_the_crates_accounting() {
    let _serial = SERIAL.lock().await;
    let spans = InMemorySpanExporter::default();
    let provider =
        SdkTracerProvider::builder().with_span_processor(counted_span_processor(spans.clone(), 16)).build();
    let obs = Observability::builder()
        .tracer_provider(provider.clone())
        .install_subscriber(false)
        .install_metrics_recorder(false)
        .init()
        .expect("init");
    let app = Router::new().route("/orders/{id}", get(|| async { "order" })).layer(obs.layer());
    let addr = serve(app).await;
    get_ok(addr, "/orders/1").await;
    provider.force_flush().unwrap();
    let names: Vec<_> = spans.get_finished_spans().unwrap().into_iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["GET /orders/{id}"]);
}
