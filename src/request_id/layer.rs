use std::sync::{Arc, LazyLock, OnceLock};

use http::{HeaderName, Request, Response};
use tower_layer::Layer;

use super::{MakeRequestId, MakeRequestUuid, RejectReason, RequestId, X_REQUEST_ID, accept, uuid_id};
use crate::{
    classify::StatusClassifier,
    context::{Parts, RequestContext},
    observe::{Finished, Observe, Routed, Stage},
};

/// `http_server_request_id_rejected_total{reason}`: incoming request ids
/// replaced because they were invalid (counter).
pub const HTTP_SERVER_REQUEST_ID_REJECTED: &str = "http_server_request_id_rejected_total";

/// Settings shared by the clones of a layer and its services.
#[derive(Debug)]
struct Shared {
    header: HeaderName,
    also_accept: Vec<HeaderName>,
    rejected: [OnceLock<::metrics::Counter>; RejectReason::ALL.len()],
}

impl Shared {
    fn new(header: HeaderName, also_accept: Vec<HeaderName>) -> Arc<Self> {
        Arc::new(Self { header, also_accept, rejected: Default::default() })
    }

    fn reject(&self, reason: RejectReason) {
        tracing::debug!(reason = reason.as_str(), "replaced an invalid incoming request id");
        self.rejected[reason as usize]
            .get_or_init(|| {
                ::metrics::describe_counter!(
                    HTTP_SERVER_REQUEST_ID_REJECTED,
                    "Incoming request ids replaced because they were invalid, by reason."
                );
                ::metrics::counter!(HTTP_SERVER_REQUEST_ID_REJECTED, "reason" => reason.as_str())
            })
            .increment(1);
    }

    /// The first valid id among the headers, counting the invalid ones.
    fn accept<B>(&self, req: &Request<B>) -> Option<RequestId> {
        std::iter::once(&self.header).chain(&self.also_accept).find_map(|name| {
            match accept(req.headers().get_all(name))? {
                Ok(id) => Some(id),
                Err(reason) => {
                    self.reject(reason);
                    None
                }
            }
        })
    }
}

/// Layer that gives every request a validated [`RequestId`].
///
/// The id is read from `x-request-id` (or the header set with
/// [`header_name`](Self::header_name)) when valid, or made by
/// [`MakeRequestId`] (a UUID by default). It replaces the header on the
/// request, goes into request extensions, and is copied to the response
/// header unless the response sets that header itself.
///
/// The first part of [`ObservabilityLayer`](crate::ObservabilityLayer); used
/// alone, it makes a [`SetRequestId`] service. Under another layer of the
/// crate that gave the request its id already, it does nothing.
#[derive(Debug, Clone)]
#[must_use]
pub struct SetRequestIdLayer<M = MakeRequestUuid> {
    shared: Arc<Shared>,
    make: M,
}

/// Service made by [`SetRequestIdLayer`]: the crate's
/// [`Observe`](crate::observe::Observe) service with the request id part.
pub type SetRequestId<S, M = MakeRequestUuid> = Observe<S, SetRequestIdLayer<M>>;

impl SetRequestIdLayer {
    /// `x-request-id`, with UUIDs for requests without a valid id.
    pub fn new() -> Self {
        Self { shared: Shared::new(X_REQUEST_ID, Vec::new()), make: MakeRequestUuid }
    }
}

impl Default for SetRequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> SetRequestIdLayer<M> {
    /// Reads and writes `header` instead of `x-request-id`.
    pub fn header_name(mut self, header: HeaderName) -> Self {
        self.shared = Shared::new(header, self.shared.also_accept.clone());
        self
    }

    /// Also accepts an id from `header` (e.g. `x-correlation-id`) when the
    /// main header carries no valid one. Headers are tried in order: the
    /// main one, then these in the order added. The id is still written to
    /// the main header only.
    pub fn also_accept(mut self, header: HeaderName) -> Self {
        let mut also = self.shared.also_accept.clone();
        also.push(header);
        self.shared = Shared::new(self.shared.header.clone(), also);
        self
    }

    /// Makes ids with `make` instead of UUIDs.
    pub fn make_request_id<M2: MakeRequestId>(self, make: M2) -> SetRequestIdLayer<M2> {
        SetRequestIdLayer { shared: self.shared, make }
    }

    /// The header the id is read from and written to.
    pub fn header(&self) -> &HeaderName {
        &self.shared.header
    }
}

impl<S, M> Layer<S> for SetRequestIdLayer<M>
where
    M: MakeRequestId + Clone + Send + Sync + 'static,
{
    type Service = SetRequestId<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe::new(inner, self.clone())
    }
}

/// The request id part keeps nothing per route: one shared entry.
static NO_ROUTE: LazyLock<Arc<Routed<()>>> = LazyLock::new(|| Arc::new(Routed::new(())));

impl<M> Stage for SetRequestIdLayer<M>
where
    M: MakeRequestId + Clone + Send + Sync + 'static,
{
    type Route = ();
    /// The header to write on the response, and the id.
    type Held<T: Send + 'static> = crate::observe::Inline<T>;
    type Pending = Option<(HeaderName, RequestId)>;

    #[inline]
    fn route(&self, _template: Option<&str>) -> Arc<Routed<()>> {
        NO_ROUTE.clone()
    }

    fn classifier(&self) -> StatusClassifier {
        StatusClassifier::default()
    }

    #[inline]
    fn on_request<B: http_body::Body + 'static>(
        &mut self,
        cx: &mut RequestContext,
        _route: &(),
        _observed: bool,
        req: &mut Request<B>,
    ) -> Self::Pending {
        if !cx.claim(Parts::REQUEST_ID) {
            return None;
        }
        let id = match self.shared.accept(req) {
            Some(id) => id,
            // Every `RequestId` is valid by construction: no second check.
            None => self.make.make_request_id(req).unwrap_or_else(uuid_id),
        };
        let header = &self.shared.header;
        req.headers_mut().insert(header.clone(), id.header_value().clone());
        #[cfg(feature = "tower-http")]
        req.extensions_mut().insert(tower_http::request_id::RequestId::new(id.header_value().clone()));
        req.extensions_mut().insert(id.clone());
        Some((header.clone(), id))
    }

    #[inline]
    fn on_response<B>(pending: &mut Self::Pending, _route: &(), _cx: &RequestContext, res: &mut Response<B>) {
        if let Some((name, id)) = pending.take()
            && let http::header::Entry::Vacant(entry) = res.headers_mut().entry(name)
        {
            entry.insert(id.value);
        }
    }

    #[inline]
    fn on_end(_pending: Self::Pending, _route: &(), _cx: &RequestContext, _finished: &Finished) {}
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::HeaderValue;
    use tower::{Service, ServiceBuilder, ServiceExt};

    use super::*;
    use crate::request_id::{RequestIdSource, validate};

    async fn roundtrip(
        layer: SetRequestIdLayer<impl MakeRequestId + Clone + Send + Sync + 'static>,
        values: &[&[u8]],
    ) -> (RequestId, Response<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let svc = ServiceBuilder::new().layer(layer).service_fn(move |req: Request<String>| {
            let id = req.extensions().get::<RequestId>().cloned().unwrap();
            // The request header now holds the accepted or generated id, once.
            let header: Vec<_> = req.headers().get_all("x-request-id").iter().cloned().collect();
            assert_eq!(header, vec![id.header_value().clone()]);
            tx.send(id).unwrap();
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        });
        let mut req = Request::new(String::new());
        for v in values {
            req.headers_mut().append("x-request-id", HeaderValue::from_bytes(v).unwrap());
        }
        let res = svc.oneshot(req).await.unwrap();
        (rx.recv().unwrap(), res.map(drop))
    }

    #[tokio::test]
    async fn valid_id_is_kept_and_echoed() {
        let (id, res) = roundtrip(SetRequestIdLayer::new(), &[b"client-42"]).await;
        assert_eq!(id.as_str(), "client-42");
        assert_eq!(id.source(), RequestIdSource::Client);
        assert_eq!(res.headers()["x-request-id"], "client-42");
    }

    #[tokio::test]
    async fn hostile_ids_are_replaced_never_echoed() {
        let long = vec![b'z'; 10_000];
        let hostile: [&[u8]; 6] = [b"", b"has space", "\u{e9}t\u{e9}".as_bytes(), &long, b"a,b", b"a\tb"];
        for value in hostile {
            let (id, res) = roundtrip(SetRequestIdLayer::new(), &[value]).await;
            assert_eq!(id.source(), RequestIdSource::Generated, "{value:?}");
            assert_eq!(id.as_str().len(), 36);
            let echoed = res.headers()["x-request-id"].as_bytes();
            assert_eq!(echoed, id.as_str().as_bytes());
            assert_ne!(echoed, value);
        }
        let (id, _) = roundtrip(SetRequestIdLayer::new(), &[b"one", b"two"]).await;
        assert_eq!(id.source(), RequestIdSource::Generated);
    }

    #[tokio::test]
    async fn missing_id_is_generated() {
        let (id, res) = roundtrip(SetRequestIdLayer::new(), &[]).await;
        assert_eq!(id.source(), RequestIdSource::Generated);
        assert_eq!(res.headers()["x-request-id"].to_str().unwrap(), id.as_str());
    }

    #[derive(Clone)]
    struct Counter(u64);
    impl MakeRequestId for Counter {
        fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
            self.0 += 1;
            RequestId::generated(HeaderValue::from_str(&format!("req-{}", self.0)).unwrap())
        }
    }

    #[derive(Clone)]
    struct Broken;
    impl MakeRequestId for Broken {
        fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
            None
        }
    }

    #[tokio::test]
    async fn custom_generator_and_fallback() {
        let (id, _) = roundtrip(SetRequestIdLayer::new().make_request_id(Counter(0)), &[]).await;
        assert_eq!(id.as_str(), "req-1");
        let (id, _) = roundtrip(SetRequestIdLayer::new().make_request_id(Broken), &[]).await;
        assert_eq!(id.as_str().len(), 36, "a generator that gives up falls back to a UUID");
    }

    #[tokio::test]
    async fn response_header_set_by_handler_is_left_alone() {
        let svc =
            ServiceBuilder::new().layer(SetRequestIdLayer::new()).service_fn(|_req: Request<String>| async {
                Ok::<_, Infallible>(
                    Response::builder().header("x-request-id", "upstream").body(String::new()).unwrap(),
                )
            });
        let res = svc.oneshot(Request::new(String::new())).await.unwrap();
        assert_eq!(res.headers()["x-request-id"], "upstream");
    }

    #[tokio::test]
    async fn aliases_are_tried_in_order_and_written_to_the_main_header() {
        let layer = SetRequestIdLayer::new().also_accept(HeaderName::from_static("x-correlation-id"));
        let svc = ServiceBuilder::new().layer(layer).service_fn(|req: Request<String>| async move {
            assert_eq!(req.extensions().get::<RequestId>().unwrap().as_str(), "from-alias");
            #[cfg(feature = "tower-http")]
            assert_eq!(
                req.extensions().get::<tower_http::request_id::RequestId>().unwrap().header_value(),
                "from-alias"
            );
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let req = Request::builder()
            .header("x-request-id", "bad value")
            .header("x-correlation-id", "from-alias")
            .body(String::new())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()["x-request-id"], "from-alias");
    }

    #[tokio::test]
    async fn rejections_are_counted_by_reason() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let svc = ServiceBuilder::new()
            .layer(SetRequestIdLayer::new())
            .service_fn(|_req: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) });
        let requests = ["a b", "", "x,y"]
            .map(|v| Request::builder().header("x-request-id", v).body(String::new()).unwrap());
        ::metrics::with_local_recorder(&recorder, || {
            for req in requests {
                // `call` runs the validation synchronously, inside the local recorder.
                let fut = svc.clone().call(req);
                drop(fut);
            }
        });
        let counts: std::collections::HashMap<String, u64> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Counter(n) => Some((key.key().labels().next().unwrap().value().to_owned(), n)),
                _ => None,
            })
            .collect();
        assert_eq!(counts.get("invalid_character"), Some(&2));
        assert_eq!(counts.get("empty"), Some(&1));
    }

    proptest::proptest! {
        /// Any value a client can put in the header: kept verbatim when it
        /// is valid, else replaced by a fresh UUID and never echoed.
        #[test]
        fn any_incoming_value_is_kept_only_when_valid(
            values in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..3)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let header_values: Vec<HeaderValue> =
                values.iter().filter_map(|v| HeaderValue::from_bytes(v).ok()).collect();
            let raw: Vec<&[u8]> = header_values.iter().map(HeaderValue::as_bytes).collect();
            let (id, res) = rt.block_on(roundtrip(SetRequestIdLayer::new(), &raw));
            let echoed = res.headers()["x-request-id"].as_bytes().to_vec();
            proptest::prop_assert_eq!(&echoed, &id.as_str().as_bytes().to_vec());
            proptest::prop_assert!(validate(&echoed).is_ok());
            let agree = raw.windows(2).all(|w| w[0] == w[1]);
            match raw.first() {
                Some(first) if agree && validate(first).is_ok() => {
                    proptest::prop_assert_eq!(id.source(), crate::request_id::RequestIdSource::Client);
                    proptest::prop_assert_eq!(&echoed[..], *first);
                }
                _ => {
                    proptest::prop_assert_eq!(id.source(), crate::request_id::RequestIdSource::Generated);
                    proptest::prop_assert!(uuid::Uuid::parse_str(id.as_str()).is_ok());
                    for value in &raw {
                        proptest::prop_assert_ne!(&echoed[..], *value);
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn custom_header_name() {
        let layer = SetRequestIdLayer::new().header_name(HeaderName::from_static("x-correlation-id"));
        let svc = ServiceBuilder::new().layer(layer).service_fn(|req: Request<String>| async move {
            assert_eq!(req.extensions().get::<RequestId>().unwrap().as_str(), "corr-1");
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let req = Request::builder().header("x-correlation-id", "corr-1").body(String::new()).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()["x-correlation-id"], "corr-1");
    }
}
