//! Metric handles built once per label set and reused: on the hot path of a
//! known route, a scan of at most [`SERIES_SLOTS`] set-once slots finds its
//! label set, with no hashing and no allocation.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, PoisonError, RwLock, Weak,
        atomic::{AtomicI64, Ordering},
    },
    time::Instant,
};

use ::metrics::{Gauge, Histogram, Label, SharedString};
use http::StatusCode;

use super::{
    HTTP_SERVER_ACTIVE_REQUESTS, HTTP_SERVER_REQUEST_BODY_SIZE, HTTP_SERVER_REQUEST_DURATION,
    HTTP_SERVER_RESPONSE_BODY_SIZE, HTTP_SERVER_TIME_TO_FIRST_BYTE,
    exemplar::{Exemplars, SampledIds, SeriesExemplars},
    flush::Flush,
};
use crate::{
    classify::ErrorType,
    labeler::{LabelValues, MetricLabels},
    semconv::{KnownMethod, scheme_name},
    shard::{self, Padded},
};

/// The `http_server_active_requests` gauges of one layer, one per method
/// and scheme, registered on first use, and the counts behind them.
///
/// A request start and end change a count on the worker's shard (no cache
/// line written by two workers); a [`flush`](super::flush) adds what the
/// counts moved since the last one to the gauges, so that two layers
/// recording into one recorder add up, as with `increment`.
#[derive(Debug)]
pub(crate) struct ActiveGauges {
    gauges: [[OnceLock<Gauge>; 2]; KnownMethod::COUNT],
    counts: Box<[Padded<MethodCounts>]>,
    /// What the gauges were given so far, per method and scheme.
    published: Mutex<[[i64; 2]; KnownMethod::COUNT]>,
}

type MethodCounts = [[AtomicI64; 2]; KnownMethod::COUNT];

impl ActiveGauges {
    /// No request yet; flushed by [`flush`](super::flush) while it lives.
    pub(crate) fn new() -> Arc<Self> {
        let gauges = Arc::new(Self {
            gauges: Default::default(),
            counts: shard::shards(MethodCounts::default),
            published: Mutex::new([[0; 2]; KnownMethod::COUNT]),
        });
        let weak: Weak<dyn Flush> = Arc::downgrade(&gauges) as Weak<dyn Flush>;
        super::flush::register(weak);
        gauges
    }

    /// The gauge of a method and scheme.
    #[inline]
    fn gauge(&self, method: KnownMethod, https: bool) -> &Gauge {
        self.gauges[method.index()][usize::from(https)].get_or_init(|| {
            ::metrics::gauge!(
                HTTP_SERVER_ACTIVE_REQUESTS,
                "http_request_method" => method.as_str(),
                "url_scheme" => scheme_name(https),
            )
        })
    }

    /// Counts a request of `method` and scheme as under way: registers its
    /// gauge (with the recorder in scope) on first use.
    #[inline]
    pub(crate) fn start(&self, method: KnownMethod, https: bool) {
        self.gauge(method, https);
        self.add(method, https, 1);
    }

    /// Counts a request as over; pairs with [`start`](Self::start).
    #[inline]
    pub(crate) fn end(&self, method: KnownMethod, https: bool) {
        self.add(method, https, -1);
    }

    #[inline]
    fn add(&self, method: KnownMethod, https: bool, delta: i64) {
        shard::mine(&self.counts)[method.index()][usize::from(https)].fetch_add(delta, Ordering::Relaxed);
    }
}

impl Flush for ActiveGauges {
    fn flush(&self) {
        let mut published = self.published.lock().unwrap_or_else(PoisonError::into_inner);
        for (method, gauges) in self.gauges.iter().enumerate() {
            for (scheme, gauge) in gauges.iter().enumerate() {
                let Some(gauge) = gauge.get() else { continue };
                let now = self.counts.iter().map(|shard| shard[method][scheme].load(Ordering::Relaxed)).sum();
                publish(gauge, now, &mut published[method][scheme]);
            }
        }
    }
}

/// Gives `gauge` the change of a per-thread count from what it was given
/// (`published`) to `now`. Clamped at 0: read while requests move between
/// shards, a sum can miss a start whose end it saw.
pub(crate) fn publish(gauge: &Gauge, now: i64, published: &mut i64) {
    let now = now.max(0);
    if now != *published {
        gauge.increment((now - *published) as f64);
        *published = now;
    }
}

impl Drop for ActiveGauges {
    /// Gives the gauges what moved since the last flush (the requests that
    /// ended since), so that a dropped layer leaves a shared recorder's
    /// gauges right.
    fn drop(&mut self) {
        self.flush();
    }
}

/// What identifies one series within a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SeriesKey {
    pub(crate) method: KnownMethod,
    pub(crate) https: bool,
    /// `network.protocol.version` (compared as a value, not a string).
    pub(crate) version: http::Version,
    /// The index of `server.address` among the known hosts, when recorded
    /// (see `HttpMetricsLayer::server_address`).
    pub(crate) server: Option<u16>,
    pub(crate) status: Option<StatusCode>,
    pub(crate) error: Option<ErrorType>,
    /// The labels the handler set.
    pub(crate) labels: LabelValues,
}

/// What a route's series add to the key's labels.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeriesLabels {
    /// The known hosts: `server_address` and, for a `host:port` entry,
    /// `server_port`, by index.
    pub(crate) hosts: Option<Arc<[KnownHost]>>,
    /// The handlers' declared labels.
    pub(crate) declared: Option<MetricLabels>,
}

/// The histograms of one label set, and the exemplar slots of its
/// duration.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) duration: Histogram,
    pub(crate) exemplars: Option<Arc<SeriesExemplars>>,
    pub(crate) request_size: Histogram,
    pub(crate) response_size: Histogram,
    pub(crate) ttfb: Option<Histogram>,
}

impl Series {
    /// Records a finished request into the histograms.
    #[inline]
    pub(crate) fn record(&self, m: &Measurement) {
        self.duration.record(m.seconds);
        self.request_size.record(m.request_bytes as f64);
        self.response_size.record(m.response_bytes as f64);
        if let (Some(ttfb), Some(seconds)) = (&self.ttfb, m.first_byte_seconds) {
            ttfb.record(seconds);
        }
    }

    /// Keeps a request that took `seconds` and ended `at` as the exemplar of
    /// its bucket, when the series keeps exemplars and `sampled` gives its
    /// span's ids (asked only then).
    #[inline]
    pub(crate) fn exemplar(&self, seconds: f64, at: Instant, sampled: impl FnOnce() -> Option<SampledIds>) {
        if let Some(exemplars) = &self.exemplars
            && let Some(ids) = sampled()
        {
            exemplars.record(seconds, ids, at);
        }
    }
}

/// One finished request, as recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measurement {
    pub(crate) seconds: f64,
    pub(crate) request_bytes: u64,
    pub(crate) response_bytes: u64,
    pub(crate) first_byte_seconds: Option<f64>,
}

/// A host the metrics may name in `server_address`: `host`, or
/// `host:port` to name the port too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KnownHost {
    pub(crate) host: SharedString,
    pub(crate) port: Option<u16>,
}

impl KnownHost {
    /// Whether a request to `host` and `port` is this host's.
    pub(crate) fn matches(&self, host: &str, port: Option<u16>) -> bool {
        host.eq_ignore_ascii_case(&self.host) && (self.port.is_none() || self.port == port)
    }
}

/// The index of the known host of `host` and `port` among `hosts`, else
/// one past them (`_OTHER`).
pub(crate) fn host_index(hosts: &[KnownHost], host: Option<(&str, Option<u16>)>) -> u16 {
    host.and_then(|(host, port)| hosts.iter().position(|k| k.matches(host, port))).unwrap_or(hosts.len())
        as u16
}

/// The `server_address` of a host that is not among the known ones.
pub(crate) const OTHER_HOST: &str = "_OTHER";

/// How many label sets of a route are found without a lock: a route sees a
/// handful (one method, a few statuses, the odd error type).
pub(crate) const SERIES_SLOTS: usize = 8;

/// The label sets of one route.
#[derive(Debug)]
pub(crate) struct RouteSeries {
    route: SharedString,
    ttfb: bool,
    extra: SeriesLabels,
    exemplars: Option<Exemplars>,
    /// The first label sets, each set once and then read without a lock.
    slots: [OnceLock<(SeriesKey, Series)>; SERIES_SLOTS],
    /// Label sets beyond the slots (rare: a route answering many statuses).
    more: RwLock<HashMap<SeriesKey, Series>>,
    /// Serializes the filling of slots.
    filling: Mutex<()>,
}

impl RouteSeries {
    /// The series of route label `route`; `ttfb` adds the time to first
    /// byte; `exemplars` keeps the exemplars of the duration.
    pub(crate) fn new(route: &str, ttfb: bool, extra: SeriesLabels, exemplars: Option<Exemplars>) -> Self {
        Self {
            route: SharedString::from(route.to_owned()),
            ttfb,
            extra,
            exemplars,
            slots: Default::default(),
            more: RwLock::default(),
            filling: Mutex::new(()),
        }
    }

    /// The known hosts, when `server_address` is recorded.
    #[inline]
    pub(crate) fn known_hosts(&self) -> Option<&[KnownHost]> {
        self.extra.hosts.as_deref()
    }

    /// The route label.
    pub(crate) fn label(&self) -> &str {
        self.route.as_ref()
    }

    /// Records one finished request that ended `at` into its Prometheus
    /// series at once, and its exemplar: `sampled` gives the ids of its span
    /// when it is sampled; it is asked only when the series keeps
    /// exemplars. (The layer records through a
    /// [`RouteBuffer`](super::buffer::RouteBuffer).)
    #[cfg(test)]
    pub(crate) fn record(
        &self,
        key: SeriesKey,
        m: Measurement,
        at: Instant,
        sampled: impl Fn() -> Option<SampledIds>,
    ) {
        let record = |series: &Series| {
            series.record(&m);
            series.exemplar(m.seconds, at, &sampled);
        };
        match self.slot_of(&key) {
            Some((_, series)) => record(series),
            None => self.record_beyond_slots(key, record),
        }
    }

    /// The slot of `key` and its series, filling a free slot (its handles
    /// registered with the recorder in scope) when `key` is new; `None`
    /// when the slots are full with other keys.
    #[inline]
    pub(crate) fn slot_of(&self, key: &SeriesKey) -> Option<(u8, &Series)> {
        for (index, slot) in self.slots.iter().enumerate() {
            match slot.get() {
                Some((k, series)) if k == key => return Some((index as u8, series)),
                Some(_) => {}
                None => return self.fill_slot(key),
            }
        }
        None
    }

    /// The series in `slot`, as [`slot_of`](Self::slot_of) gave it.
    #[inline]
    pub(crate) fn in_slot(&self, slot: u8) -> Option<&Series> {
        self.slots.get(usize::from(slot)).and_then(OnceLock::get).map(|(_, series)| series)
    }

    /// Fills a free slot with `key`, unless another thread filled one with
    /// it first.
    #[cold]
    fn fill_slot(&self, key: &SeriesKey) -> Option<(u8, &Series)> {
        let _filling = self.filling.lock().unwrap_or_else(PoisonError::into_inner);
        for (index, slot) in self.slots.iter().enumerate() {
            match slot.get() {
                Some((k, series)) if k == key => return Some((index as u8, series)),
                Some(_) => {}
                None => {
                    let (_, series) = slot.get_or_init(|| (*key, self.build(*key)));
                    return Some((index as u8, series));
                }
            }
        }
        None
    }

    /// Registers `key` in the map beyond the slots if it is new, and
    /// records (rare: a route answering many label sets).
    #[cold]
    pub(crate) fn record_beyond_slots(&self, key: SeriesKey, record: impl Fn(&Series)) {
        if let Some(series) = self.more.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return record(series);
        }
        let mut more = self.more.write().unwrap_or_else(PoisonError::into_inner);
        record(more.entry(key).or_insert_with(|| self.build(key)));
    }

    fn build(&self, key: SeriesKey) -> Series {
        let mut labels = Vec::with_capacity(8);
        labels.push(Label::new("http_request_method", key.method.as_str()));
        labels.push(Label::new("http_route", self.route.clone()));
        if let Some(status) = key.status {
            labels.push(Label::new("http_response_status_code", status.as_str().to_owned()));
        }
        labels.push(Label::new("url_scheme", scheme_name(key.https)));
        labels.push(Label::new("network_protocol_version", crate::semconv::protocol_version(key.version)));
        if let (Some(hosts), Some(server)) = (&self.extra.hosts, key.server) {
            match hosts.get(usize::from(server)) {
                Some(known) => {
                    labels.push(Label::new("server_address", known.host.clone()));
                    if let Some(port) = known.port {
                        labels.push(Label::new("server_port", port.to_string()));
                    }
                }
                None => labels.push(Label::new("server_address", OTHER_HOST)),
            }
        }
        if let Some(error) = key.error {
            labels.push(Label::new("error_type", error.as_str().to_owned()));
        }
        if let Some(declared) = &self.extra.declared {
            labels.extend(declared.labels(&key.labels));
        }
        Series {
            exemplars: self
                .exemplars
                .as_ref()
                .and_then(|e| e.series_of(HTTP_SERVER_REQUEST_DURATION, &labels)),
            duration: ::metrics::histogram!(HTTP_SERVER_REQUEST_DURATION, labels.clone()),
            request_size: ::metrics::histogram!(HTTP_SERVER_REQUEST_BODY_SIZE, labels.clone()),
            ttfb: self.ttfb.then(|| ::metrics::histogram!(HTTP_SERVER_TIME_TO_FIRST_BYTE, labels.clone())),
            response_size: ::metrics::histogram!(HTTP_SERVER_RESPONSE_BODY_SIZE, labels),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of a plain GET answered with `code`.
    fn key(code: u16) -> SeriesKey {
        SeriesKey {
            method: KnownMethod::of(&http::Method::GET),
            https: false,
            version: http::Version::HTTP_11,
            server: None,
            status: Some(StatusCode::from_u16(code).unwrap()),
            error: None,
            labels: LabelValues::default(),
        }
    }

    #[test]
    fn label_sets_beyond_the_slots_are_kept_too() {
        let route = RouteSeries::new("/a", false, SeriesLabels::default(), None);
        let m = Measurement { seconds: 0.1, request_bytes: 1, response_bytes: 2, first_byte_seconds: None };
        for round in 0..2 {
            for code in 200..200 + 2 * SERIES_SLOTS as u16 {
                route.record(key(code), m, Instant::now(), || None);
            }
            let slots = route.slots.iter().filter(|s| s.get().is_some()).count();
            assert_eq!(slots, SERIES_SLOTS, "round {round}");
            let more = route.more.read().unwrap().len();
            assert_eq!(more, SERIES_SLOTS, "round {round}: one entry per extra label set");
        }
        assert!(route.slot_of(&key(200)).is_some());
        assert!(route.slot_of(&key(200 + SERIES_SLOTS as u16)).is_none(), "kept in the map");
    }

    #[test]
    fn only_sampled_requests_leave_an_exemplar_in_their_series() {
        use opentelemetry::trace::{SpanId, TraceId};

        let registry = Exemplars::new();
        let route = RouteSeries::new("/ex", false, SeriesLabels::default(), Some(registry.clone()));
        let at = Instant::now();
        let m =
            |seconds| Measurement { seconds, request_bytes: 0, response_bytes: 0, first_byte_seconds: None };
        let ids = SampledIds {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        };
        route.record(key(200), m(0.2), at, || None);
        route.record(key(500), m(0.2), at, || None);
        assert_eq!(registry.len(), 2, "each series has its slots");
        assert!(registry.latest(HTTP_SERVER_REQUEST_DURATION, &[]).is_empty(), "none sampled");

        route.record(key(200), m(0.3), at, || Some(ids));
        let ok = registry.latest(HTTP_SERVER_REQUEST_DURATION, &[("http_response_status_code", "200")]);
        assert_eq!(ok.len(), 1);
        assert_eq!((ok[0].trace_id, ok[0].span_id, ok[0].value), (ids.trace_id, ids.span_id, 0.3));
        let labels: Vec<_> =
            registry.series().iter().flat_map(|s| s.label("http_route").map(str::to_owned)).collect();
        assert_eq!(labels, ["/ex", "/ex"]);
        assert!(
            registry.latest(HTTP_SERVER_REQUEST_DURATION, &[("http_response_status_code", "500")]).is_empty()
        );
    }
}
