//! [`MetricsRecorder`]: the `metrics` recorder a layer registers its
//! series with, when it is not the process-wide one.

use std::{fmt, sync::Arc};

/// A `metrics` recorder given to a layer
/// ([`ObservabilityLayer::recorder`](crate::ObservabilityLayer::recorder),
/// [`HttpMetricsLayer::recorder`](crate::metrics::HttpMetricsLayer::recorder)),
/// so that two stacks in one process record apart, or a test records
/// without installing a global recorder.
///
/// Without one, a layer registers with whatever the `metrics` facade
/// answers: a thread's default recorder
/// (`metrics::set_default_local_recorder`), else the global recorder. With
/// one, the layer's own series (request metrics, active requests, cache
/// outcomes, rejected request ids, the RPC series) are registered with it;
/// a handler's own `metrics` calls are not, they still go to the facade's.
/// Handles are registered once per label set, so the cost per request is
/// setting a thread-local pointer around the layer's hooks.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_observability::{ObservabilityLayer, recorder::MetricsRecorder};
///
/// let recorder = tower_observability::prometheus_builder().build_recorder();
/// let handle = recorder.handle(); // renders this stack's series only
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "user" }))
///     .layer(ObservabilityLayer::new().recorder(MetricsRecorder::new(recorder)));
/// # drop(handle);
/// ```
#[derive(Clone)]
pub struct MetricsRecorder(Arc<dyn metrics::Recorder + Send + Sync>);

impl MetricsRecorder {
    /// Registers with `recorder`.
    pub fn new(recorder: impl metrics::Recorder + Send + Sync + 'static) -> Self {
        Self(Arc::new(recorder))
    }

    /// Registers with a recorder shared with other code.
    pub fn from_arc(recorder: Arc<dyn metrics::Recorder + Send + Sync>) -> Self {
        Self(recorder)
    }

    /// Runs `f` with `recorder` as the thread's recorder, when there is one.
    #[inline]
    pub(crate) fn scope<T>(recorder: Option<&Self>, f: impl FnOnce() -> T) -> T {
        match recorder {
            Some(recorder) => metrics::with_local_recorder(&*recorder.0, f),
            None => f(),
        }
    }
}

impl fmt::Debug for MetricsRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsRecorder")
    }
}
