//! [`ObservabilityLayer`]: every per-request layer of the crate, stacked.

use tower_layer::Layer;

#[cfg(feature = "monitoring")]
use crate::classify::RouteFilter;
use crate::{
    StatusClassifier,
    cache::{CacheStatusLayer, CacheStatusService},
    metrics::{HttpMetrics, HttpMetricsLayer, HttpStats},
    panic::CatchPanic,
    request_id::{RequestIdLayer, RequestIdService},
    stack::StackId,
    trace::{HttpTrace, HttpTraceLayer},
};

/// The service of [`ObservabilityLayer`]: request id, then span, then
/// metrics, then cache status, then the panic catcher, around `S`.
pub type ObservabilityService<S> =
    RequestIdService<HttpTrace<HttpMetrics<CacheStatusService<CatchPanic<S>>>>>;

/// Request id, server span, HTTP metrics, cache status and a panic catcher
/// around a service, in that order (DESIGN: "request id -> span -> metrics
/// -> cache").
///
/// The request id is set first so the span can carry it; the span is opened
/// before the metrics start their clock so that the metrics see the same
/// request the span does; panics are caught innermost so that both see the
/// 500 they become (`error_type="panic"`). Stacking [`RequestIdLayer`],
/// [`HttpTraceLayer`], [`HttpMetricsLayer`], [`CacheStatusLayer`] and
/// [`CatchPanicLayer`](crate::panic::CatchPanicLayer) by hand
/// in this order gives the same service.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_observability::ObservabilityLayer;
///
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "user" }))
///     .layer(ObservabilityLayer::new());
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ObservabilityLayer {
    request_id: RequestIdLayer,
    trace: HttpTraceLayer,
    metrics: HttpMetricsLayer,
    cache: CacheStatusLayer,
}

impl ObservabilityLayer {
    /// All layers with their defaults, recording into the global recorder
    /// and the global `tracing` dispatcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Neither traces nor measures requests on these route templates;
    /// [`Observability::layer`](crate::Observability::layer) excludes the
    /// monitoring routes. Requests that matched no route are always observed.
    pub fn exclude_routes<I, T>(mut self, routes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Box<str>>,
    {
        let routes: Vec<Box<str>> = routes.into_iter().map(Into::into).collect();
        self.trace = self.trace.exclude_routes(routes.iter().cloned());
        self.metrics = self.metrics.exclude_routes(routes);
        self
    }

    /// Which statuses count as errors, for spans and metrics alike; 5xx by
    /// default (OTel HTTP semconv).
    pub fn error_status(mut self, classifier: StatusClassifier) -> Self {
        self.trace = self.trace.error_status(classifier);
        self.metrics = self.metrics.error_status(classifier);
        self
    }

    /// Observes only requests that matched no route (the fallback): the
    /// monitoring fragment's own copy, whatever prefix it is nested under.
    #[cfg(feature = "monitoring")]
    pub(crate) fn fallback_only(mut self) -> Self {
        self.trace = self.trace.with_exclude(RouteFilter::AllMatched);
        self.metrics = self.metrics.with_exclude(RouteFilter::AllMatched);
        self
    }

    /// Replaces the request id layer (e.g. another header name).
    pub fn request_id(mut self, layer: RequestIdLayer) -> Self {
        self.request_id = layer;
        self
    }

    /// Replaces the trace layer (e.g. another propagator).
    pub fn trace(mut self, layer: HttpTraceLayer) -> Self {
        self.trace = layer;
        self
    }

    /// Replaces the cache status layer (e.g. another cache name).
    pub fn cache(mut self, layer: CacheStatusLayer) -> Self {
        self.cache = layer;
        self
    }

    /// Replaces the metrics layer (e.g. another route cap).
    pub fn metrics(mut self, layer: HttpMetricsLayer) -> Self {
        self.metrics = layer;
        self
    }

    /// The in-process windowed statistics of the requests this layer (and
    /// its clones) measure: request rate, error ratio and latency quantiles
    /// over the last 1, 5 and 15 minutes, overall and per route; see
    /// [`HttpStats`]. Take it after [`metrics`](Self::metrics), which
    /// replaces the figures with the new layer's.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::{ObservabilityLayer, window::Window};
    ///
    /// let layer = ObservabilityLayer::new();
    /// let stats = layer.http_stats();
    /// assert_eq!(stats.window(Window::OneMinute).request_rate, 0.0);
    /// ```
    pub fn http_stats(&self) -> HttpStats {
        self.metrics.http_stats()
    }
}

impl<S> Layer<S> for ObservabilityLayer {
    type Service = ObservabilityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        // Each application gets its own id: a request observed by another
        // application of the stack passes this one untouched.
        let stack = StackId::next();
        let inner = self.cache.clone().in_stack(stack).layer(CatchPanic::new(inner));
        let inner = self.metrics.clone().in_stack(stack).layer(inner);
        let inner = self.trace.clone().in_stack(stack).layer(inner);
        self.request_id.clone().in_stack(stack).layer(inner)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::{request_id::RequestId, window::Window};

    /// A request passing two applications of the stack (the monitoring
    /// fragment's copy and the application's, say) is observed once: by the
    /// outer one.
    #[tokio::test]
    async fn a_request_is_observed_by_one_application_only() {
        let (outer, inner) = (ObservabilityLayer::new(), ObservabilityLayer::new());
        let (outer_stats, inner_stats) = (outer.http_stats(), inner.http_stats());
        let handler = service_fn(|req: Request<String>| async move {
            let id = req.extensions().get::<RequestId>().cloned().expect("an id");
            Ok::<_, Infallible>(Response::new(id.as_str().to_owned()))
        });
        let svc = outer.layer(inner.layer(handler));
        for _ in 0..3 {
            let res = svc.clone().oneshot(Request::new(String::new())).await.unwrap();
            let ids: Vec<_> = res.headers().get_all("x-request-id").iter().cloned().collect();
            assert_eq!(ids.len(), 1);
            let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
            assert_eq!(ids[0].as_bytes(), &body[..], "the handler saw the id the client gets");
        }
        assert_eq!(outer_stats.window(Window::OneMinute).requests, 3);
        assert_eq!(inner_stats.window(Window::OneMinute).requests, 0);
    }
}
