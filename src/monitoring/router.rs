//! [`MonitoringRouter`]: the builder of the fragment, and its conversion to
//! an axum [`Router`].

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;

use super::{
    Overview, ROUTES, SETTINGS_ROUTE, STATUS_ROUTE, admin, auth, dashboard, handlers, overview,
    slow::{self, TraceLinkError},
    state::{MonitoringState, ServiceInfo, SharedAlerts},
    status,
};
use crate::{
    alerts::{self, AlertEngine, AlertsSource},
    cache::CacheHitRatios,
    health::HealthRegistry,
    layer::ObservabilityLayer,
    metrics::{Exemplars, HttpStats},
    observe::Unobserved,
    request_id::{MakeRequestId, MakeRequestUuid},
    slo::{Slo, SloError, SloSet},
};

/// The monitoring routes; turn it into a [`Router`] with `.merge(..)` or
/// `Router::from`.
///
/// Built by [`Observability::monitoring_router`](crate::Observability::monitoring_router),
/// or by [`MonitoringRouter::standalone`] without the global pipeline.
///
/// The fragment's routes are never observed, in whichever order it is merged
/// with an application's layer: the layer of
/// [`Observability`](crate::Observability) leaves their templates alone,
/// and their responses tell any layer around them to record nothing (and
/// to leave the route alone from then on, for a fragment nested under a
/// prefix). The fragment's default fallback is observed by the
/// application's layer ([`observability_layer`](Self::observability_layer)):
/// axum's `merge` keeps the merged-in router's default fallback, so the
/// application's 404s stay counted when the fragment is merged after
/// `.layer(..)`; when it is merged before, the application's layer finds
/// the request observed already and the fallback counts it once.
#[must_use]
pub struct MonitoringRouter<M = MakeRequestUuid> {
    state: Arc<MonitoringState>,
    layer: ObservabilityLayer<M>,
}

impl<M: Clone> Clone for MonitoringRouter<M> {
    fn clone(&self) -> Self {
        Self { state: self.state.clone(), layer: self.layer.clone() }
    }
}

impl MonitoringRouter {
    pub(crate) fn new(
        prometheus: Option<PrometheusHandle>,
        info: Arc<ServiceInfo>,
        layer: ObservabilityLayer,
    ) -> Self {
        let state = MonitoringState {
            prometheus,
            info,
            health: HealthRegistry::new(),
            health_set: false,
            http: layer.http_stats(),
            cache: CacheHitRatios::global(),
            alerts: None,
            engine: None,
            slos: None,
            token: None,
            exporters: None,
            write_token: None,
            exemplars: Exemplars::global(),
            trace_link: None,
            #[cfg(feature = "process-metrics")]
            process: metrics_process::Collector::default(),
            #[cfg(feature = "process-metrics")]
            process_described: Arc::new(std::sync::Once::new()),
        };
        Self { state: Arc::new(state), layer }
    }

    /// The routes without [`Observability`](crate::Observability): for an
    /// application that installs its own recorder and subscriber, or for a
    /// test.
    ///
    /// The service name is `unknown_service` (the OTel default) and its
    /// version empty; `/metrics` answers `503` until given a handle with
    /// [`prometheus`](Self::prometheus); the health endpoints answer healthy
    /// until given a registry with [`health`](Self::health). 404s of the
    /// merged router are observed by an [`ObservabilityLayer`] of its own;
    /// give it the application's layer with
    /// [`observability_layer`](Self::observability_layer) so that the
    /// overview shows the application's requests.
    ///
    /// # Example
    ///
    /// ```
    /// use axum::Router;
    /// use tower_observability::{health::HealthRegistry, monitoring::MonitoringRouter};
    ///
    /// let registry = HealthRegistry::builder()
    ///     .check("db", || async { Ok::<(), std::io::Error>(()) })
    ///     .build();
    /// let app: Router = Router::new().merge(MonitoringRouter::standalone().health(registry));
    /// ```
    pub fn standalone() -> Self {
        let info = ServiceInfo {
            name: "unknown_service".to_owned(),
            version: String::new(),
            started: Instant::now(),
        };
        Self::new(None, Arc::new(info), ObservabilityLayer::new().exclude_routes(ROUTES))
    }
}

impl<M> MonitoringRouter<M> {
    /// Serves `registry` at `/health/live` (its
    /// [`HealthGroup::Live`](crate::health::HealthGroup::Live) checks) and
    /// `/health/ready` (its [`HealthGroup::Ready`](crate::health::HealthGroup::Ready) checks),
    /// replacing the empty default registry; see [`crate::health`].
    ///
    /// Also describes the health metrics to the installed recorder.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use axum::Router;
    /// use tower_observability::{Observability, health::HealthRegistry};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let obs = Observability::builder().service_name("users-api").init()?;
    /// let registry = HealthRegistry::builder()
    ///     .check("db", || async { Ok::<(), std::io::Error>(()) })
    ///     .build();
    /// let app: Router = Router::new().merge(obs.monitoring_router().health(registry));
    /// # Ok(())
    /// # }
    /// ```
    pub fn health(mut self, registry: HealthRegistry) -> Self {
        crate::health::describe();
        let state = Arc::make_mut(&mut self.state);
        state.health = registry;
        state.health_set = true;
        self
    }

    /// Observes with (a clone of) `layer`, the one the application's router
    /// uses: `/monitoring/overview` and [`http_stats`](Self::http_stats)
    /// then read the figures of the application's requests, and the
    /// fragment's 404s are counted with them. The fragment's own routes
    /// ([`ROUTES`]) stay unobserved.
    ///
    /// [`Observability::monitoring_router`](crate::Observability::monitoring_router)
    /// does this already; it is for [`standalone`](Self::standalone).
    ///
    /// # Example
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_observability::{ObservabilityLayer, monitoring::MonitoringRouter};
    ///
    /// let layer = ObservabilityLayer::new();
    /// let app: Router = Router::new()
    ///     .route("/users/{id}", get(|| async { "user" }))
    ///     .layer(layer.clone())
    ///     .merge(MonitoringRouter::standalone().observability_layer(layer));
    /// ```
    pub fn observability_layer<M2>(mut self, layer: ObservabilityLayer<M2>) -> MonitoringRouter<M2> {
        let layer = layer.exclude_routes(ROUTES);
        Arc::make_mut(&mut self.state).http = layer.http_stats();
        MonitoringRouter { state: self.state, layer }
    }

    /// Reads the cache hit ratios of the overview from `ratios` instead of
    /// [`CacheHitRatios::global`], for caches and layers given their own
    /// registry.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::{cache::CacheHitRatios, monitoring::MonitoringRouter};
    ///
    /// let ratios = CacheHitRatios::new();
    /// let router = MonitoringRouter::standalone().cache_hit_ratios(ratios.clone());
    /// # let _ = router;
    /// ```
    pub fn cache_hit_ratios(mut self, ratios: CacheHitRatios) -> Self {
        Arc::make_mut(&mut self.state).cache = ratios;
        self
    }

    /// Fills the overview's `"alerts"` section from `source`, the alert
    /// engine's hook (see [`AlertsSource`]); without one it is empty.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::monitoring::{AlertsSummary, MonitoringRouter};
    ///
    /// let router = MonitoringRouter::standalone()
    ///     .alerts(|| AlertsSummary::new(Vec::new(), [("firing".to_owned(), 0)].into()));
    /// # let _ = router;
    /// ```
    pub fn alerts(mut self, source: impl AlertsSource) -> Self {
        Arc::make_mut(&mut self.state).alerts = Some(SharedAlerts(Arc::new(source)));
        self
    }

    /// Guards the routes with a bearer token (RFC 6750): `/metrics`,
    /// `/monitoring`, `/monitoring/overview` and `/monitoring/alerts` answer
    /// `401` with `WWW-Authenticate: Bearer` and nothing else unless the
    /// request carries `Authorization: Bearer <token>`; `/health/live` and
    /// `/health/ready` stay open for probes but show only their status
    /// (`{"status": ".."}`, and the code) without the token, never check
    /// names, messages or details.
    ///
    /// The comparison takes the same time whatever the token sent. An empty
    /// token can never match: everything guarded is refused.
    ///
    /// The monitoring routes are for operators: prefer serving them on an
    /// internal listener (see [`serve`](Self::serve)); the token is a second
    /// line of defence, or the first where only one port is exposed.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::monitoring::MonitoringRouter;
    ///
    /// let token = std::env::var("MONITORING_TOKEN").unwrap_or_default();
    /// let router = MonitoringRouter::standalone().bearer_token(token);
    /// # let _ = router;
    /// ```
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.state).token = Some(Arc::from(token.into()));
        self
    }

    /// Serves the monitoring routes alone on `listener`, e.g. an internal
    /// port that the public load balancer does not reach. Runs until the
    /// server fails; spawn it beside the application's server.
    ///
    /// # Errors
    ///
    /// The I/O error that stopped the server.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tower_observability::Observability;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let obs = Observability::builder().service_name("users-api").init()?;
    /// let internal = tokio::net::TcpListener::bind("127.0.0.1:9100").await?;
    /// tokio::spawn(obs.monitoring_router().serve(internal));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()>
    where
        M: MakeRequestId + Clone + Send + Sync + 'static,
    {
        axum::serve(listener, Router::<()>::from(self)).await
    }

    /// Evaluates `engine`'s rules every
    /// [`ALERT_EVALUATION_INTERVAL`](super::ALERT_EVALUATION_INTERVAL) over
    /// the router's windowed HTTP figures, cache hit ratios and readiness
    /// (when a health registry is set), serves its report at
    /// `GET /monitoring/alerts`, and shows its active alerts in the overview.
    ///
    /// [`Observability::monitoring_router`](crate::Observability::monitoring_router)
    /// sets an engine with [`AlertRule::defaults`](crate::alerts::AlertRule::defaults).
    /// The evaluation task is spawned on the current tokio runtime when the
    /// router is built (`Router::from` / `.merge(..)`); without a runtime no
    /// task runs and a warning is logged.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_observability::{alerts::AlertEngine, monitoring::MonitoringRouter};
    ///
    /// let router = MonitoringRouter::standalone()
    ///     .alert_engine(AlertEngine::with_default_rules(), Duration::from_secs(5));
    /// # let _ = router;
    /// ```
    pub fn alert_engine(mut self, engine: AlertEngine, every: Duration) -> Self {
        self = self.alerts(engine.clone());
        Arc::make_mut(&mut self.state).engine = Some((engine, every));
        self
    }

    /// Turns the alert rules off: no engine is evaluated, `/monitoring/alerts`
    /// and its sub-routes are not served, and the overview's `"alerts"`
    /// section is empty.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::monitoring::MonitoringRouter;
    ///
    /// let router = MonitoringRouter::standalone().without_alerts();
    /// assert!(router.engine().is_none());
    /// ```
    pub fn without_alerts(mut self) -> Self {
        let state = Arc::make_mut(&mut self.state);
        state.engine = None;
        state.alerts = None;
        self
    }

    /// Adds a service level objective: its good and bad requests are
    /// counted from the router's layer, its error budget shown in the
    /// overview and the dashboard, and its two burn-rate alert rules
    /// ([`Slo::alert_rules`]) added to the alert engine when the router is
    /// built. See [`crate::slo`].
    ///
    /// # Errors
    ///
    /// [`SloError`] when the SLO is invalid or another has its name.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::{monitoring::MonitoringRouter, slo::Slo};
    ///
    /// let router = MonitoringRouter::standalone().slo(Slo::availability("api", 0.999))?;
    /// assert!(router.slo(Slo::availability("api", 0.99)).is_err(), "names are unique");
    /// # Ok::<(), tower_observability::slo::SloError>(())
    /// ```
    pub fn slo(mut self, slo: Slo) -> Result<Self, SloError> {
        let mut all: Vec<Slo> = self.state.slos.iter().flat_map(|s| s.slos().cloned()).collect();
        all.push(slo);
        Arc::make_mut(&mut self.state).slos = Some(SloSet::new(all)?);
        Ok(self)
    }

    /// The alert engine the router evaluates, if any.
    #[must_use]
    pub fn engine(&self) -> Option<&AlertEngine> {
        self.state.engine.as_ref().map(|(engine, _)| engine)
    }

    /// Serves the routes that change state, guarded by `token`
    /// (`Authorization: Bearer <token>`, compared in constant time); without
    /// a write token they do not exist (`404`, or `405` where the path has a
    /// read route):
    ///
    /// | route | effect |
    /// |---|---|
    /// | `POST /monitoring/silences` | `{"rule": "HighErrorRatio"}` or `{"all": true}`, `"reason"`, and `"duration"` (`"30m"` or seconds) or `"expires_at"` (RFC 3339): `201` with the silence |
    /// | `DELETE /monitoring/silences/{id}` | ends a silence: `204`, `404` for none |
    /// | `PUT /monitoring/alerts/rules/{name}?severity=` | `{"threshold": 0.01, "for": "2m", "severity": "warning"}`, any of them: `200` with the rule as changed |
    /// | `PUT /monitoring/settings` | `{"window_stats": false, "alert_evaluation": true}`: `200` with the settings |
    /// | `POST /monitoring/alerts/test` | one test notification to every target: `200` with each target's result |
    ///
    /// A body that is not JSON gets `400`; JSON with an unknown field or a
    /// value the builder would refuse gets `422` with
    /// `{"error": "<reason>"}`, and changes nothing. Without the token:
    /// `401`. Every change is logged, and rule changes are recorded in the
    /// alert history.
    ///
    /// The write token is separate from the read token
    /// ([`bearer_token`](Self::bearer_token)): keep it to the operators who
    /// may silence alerts. An empty token never matches. Serve these routes
    /// on an internal listener only ([`serve`](Self::serve)).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::monitoring::MonitoringRouter;
    ///
    /// let router = match std::env::var("MONITORING_WRITE_TOKEN") {
    ///     Ok(token) => MonitoringRouter::standalone().write_token(token),
    ///     Err(_) => MonitoringRouter::standalone(),
    /// };
    /// # let _ = router;
    /// ```
    pub fn write_token(mut self, token: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.state).write_token = Some(Arc::from(token.into()));
        self
    }

    /// The in-process windowed HTTP statistics the overview shows: those of
    /// the router's [`ObservabilityLayer`] (see
    /// [`observability_layer`](Self::observability_layer)).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::{monitoring::MonitoringRouter, window::Window};
    ///
    /// let stats = MonitoringRouter::standalone().http_stats();
    /// assert_eq!(stats.window(Window::OneMinute).requests, 0);
    /// ```
    pub fn http_stats(&self) -> HttpStats {
        self.state.http.clone()
    }

    /// The overview `GET /monitoring/overview` serves, built now: it runs
    /// (or reads from the registry's cache) the health checks.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::monitoring::MonitoringRouter;
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let overview = MonitoringRouter::standalone().overview().await;
    /// assert!(overview.health.is_none(), "no registry was given");
    /// assert_eq!(overview.http.active_requests, 0);
    /// # }
    /// ```
    pub async fn overview(&self) -> Overview {
        overview::build(&self.state).await
    }

    /// Serves `handle`'s rendering at `/metrics`, for a recorder installed
    /// without [`Observability`](crate::Observability).
    ///
    /// # Example
    ///
    /// ```
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// use tower_observability::monitoring::MonitoringRouter;
    ///
    /// let recorder = PrometheusBuilder::new().build_recorder();
    /// let router = MonitoringRouter::standalone().prometheus(recorder.handle());
    /// # let _ = router;
    /// ```
    pub fn prometheus(mut self, handle: PrometheusHandle) -> Self {
        Arc::make_mut(&mut self.state).prometheus = Some(handle);
        self
    }

    /// Links the trace ids of the dashboard's slow requests (the overview's
    /// `slow_requests`) with `template`, its `{trace_id}` (and `{span_id}`)
    /// replaced: e.g. Jaeger's `http://localhost:16686/trace/{trace_id}`.
    /// Without one, trace ids are shown as text.
    ///
    /// # Errors
    ///
    /// A template that is not an `http://`, `https://` or same-origin
    /// (`/...`) address, or that holds no `{trace_id}`: the page must never
    /// get a `javascript:` link.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::monitoring::MonitoringRouter;
    ///
    /// let router = MonitoringRouter::standalone().trace_link("http://localhost:16686/trace/{trace_id}")?;
    /// assert!(MonitoringRouter::standalone().trace_link("javascript:alert(1)").is_err());
    /// # let _ = router;
    /// # Ok::<(), tower_observability::monitoring::TraceLinkError>(())
    /// ```
    pub fn trace_link(mut self, template: impl Into<String>) -> Result<Self, TraceLinkError> {
        let template = template.into();
        slow::check_template(&template)?;
        Arc::make_mut(&mut self.state).trace_link = Some(template.into());
        Ok(self)
    }

    /// Reads the exemplars of `/metrics` (in OpenMetrics) and of the
    /// dashboard's slow requests from `registry` instead of
    /// [`Exemplars::global`]: that of layers given
    /// [`HttpMetricsLayer::exemplar_registry`](crate::metrics::HttpMetricsLayer::exemplar_registry).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_observability::{metrics::Exemplars, monitoring::MonitoringRouter};
    ///
    /// let router = MonitoringRouter::standalone().exemplars(Exemplars::new());
    /// # let _ = router;
    /// ```
    pub fn exemplars(mut self, registry: Exemplars) -> Self {
        Arc::make_mut(&mut self.state).exemplars = registry;
        self
    }

    /// Where the overview and `GET /monitoring/status` read the OTLP
    /// pipelines' counts (set by `Observability`).
    #[cfg(feature = "telemetry")]
    pub(crate) fn exporters(mut self, source: super::ExportersSource) -> Self {
        Arc::make_mut(&mut self.state).exporters = Some(source);
        self
    }
}

impl<M> fmt::Debug for MonitoringRouter<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitoringRouter")
            .field("service_name", &self.state.info.name)
            .field("prometheus", &self.state.prometheus.is_some())
            .field("health", &self.state.health)
            .field("alerts", &self.state.alerts.is_some())
            .field("write_routes", &self.state.write_token.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, M> From<MonitoringRouter<M>> for Router<S>
where
    S: Clone + Send + Sync + 'static,
    M: MakeRequestId + Clone + Send + Sync + 'static,
{
    fn from(router: MonitoringRouter<M>) -> Self {
        if let Some(slos) = router.state.slos.clone() {
            let observer = Arc::new(move |route: &str, seconds: f64, error: bool, at: Instant| {
                slos.record(route, seconds, error, at);
            });
            if !router.state.http.set_observer(observer) {
                tracing::warn!("the layer's requests feed SLOs already: these SLOs count nothing");
            }
            if let (Some((engine, _)), Some(slos)) = (&router.state.engine, &router.state.slos)
                && let Err(err) = engine.add_rules(slos.slos().flat_map(Slo::alert_rules))
            {
                tracing::warn!(error = %err, "the SLOs' burn-rate rules were refused");
            }
        }
        let alerts = match &router.state.engine {
            Some((engine, every)) => {
                let state = Arc::clone(&router.state);
                engine.clone().spawn_evaluator_on_current_runtime(*every, move |now| {
                    let state = Arc::clone(&state);
                    async move { state.alert_inputs(now).await }
                });
                alerts::router(engine.clone())
            }
            None => Router::new(),
        };
        let guarded = Router::new()
            .route("/metrics", get(handlers::metrics))
            .route("/monitoring", get(dashboard::page))
            .route("/monitoring/overview", get(handlers::overview))
            .route(STATUS_ROUTE, get(status::status))
            .route(SETTINGS_ROUTE, get(status::settings))
            .with_state(router.state.clone())
            .merge(alerts)
            .route_layer(axum::middleware::map_request(flushed))
            .route_layer(axum::middleware::from_fn_with_state(router.state.clone(), auth::guard));
        let writes = match router.state.write_token {
            Some(_) => admin::router(&router.state)
                .route_layer(axum::middleware::from_fn_with_state(router.state.clone(), auth::write_guard)),
            None => Router::new(),
        };
        Router::new()
            .route("/health/live", get(handlers::live))
            .route("/health/ready", get(handlers::ready))
            .with_state(router.state)
            .merge(guarded)
            .merge(writes)
            .route_layer(axum::middleware::map_response(unobserved))
            // axum's `merge` keeps the merged-in router's default fallback
            // (the right-hand one): a router whose only endpoint is its
            // default fallback, layered, gives the fragment an observed
            // fallback (see the type's docs).
            .merge(Router::new().layer(router.layer))
    }
}

/// Writes what the layers buffered per thread before an authorized route of
/// the fragment reads the figures (see [`crate::metrics::flush`]); after
/// the guard, so that a refused request costs no flush.
async fn flushed(req: axum::extract::Request) -> axum::extract::Request {
    crate::metrics::flush();
    req
}

/// Marks a response of the fragment's routes: never observed.
async fn unobserved(mut res: axum::response::Response) -> axum::response::Response {
    res.extensions_mut().insert(Unobserved);
    res
}
