//! Metric handles built once per label set and reused: on the hot path of a
//! known route, one read lock finds the route and a scan of at most
//! [`SERIES_SLOTS`] set-once slots finds its label set, with no hashing and no
//! allocation. Each route also holds its in-process windows
//! ([`WindowedStats`]), recorded beside its Prometheus series.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError, RwLock},
    time::Instant,
};

use ::metrics::{Gauge, Histogram, Label, SharedString};
use http::StatusCode;

use super::{
    HTTP_SERVER_ACTIVE_REQUESTS, HTTP_SERVER_REQUEST_BODY_SIZE, HTTP_SERVER_REQUEST_DURATION,
    HTTP_SERVER_RESPONSE_BODY_SIZE, HTTP_SERVER_TIME_TO_FIRST_BYTE, stats::WindowedStats,
};
use crate::{
    classify::{ErrorType, KnownMethod, scheme_name},
    routes::RouteTable,
};

/// All label sets of one metrics layer.
#[derive(Debug)]
pub(crate) struct Registry {
    routes: RouteTable<RouteSeries>,
    ttfb: bool,
    active: [[OnceLock<Gauge>; 2]; KnownMethod::COUNT],
    /// When the windows began counting.
    created: Instant,
}

impl Registry {
    /// At most `max_routes` route labels; `ttfb` registers the
    /// time-to-first-byte histogram too.
    pub(crate) fn new(max_routes: usize, ttfb: bool) -> Self {
        Self {
            routes: RouteTable::new(max_routes, |route| RouteSeries::new(route, ttfb)),
            ttfb,
            active: Default::default(),
            created: Instant::now(),
        }
    }

    /// When the windows began counting.
    pub(crate) fn created(&self) -> Instant {
        self.created
    }

    pub(crate) fn max_routes(&self) -> usize {
        self.routes.max()
    }

    pub(crate) fn ttfb(&self) -> bool {
        self.ttfb
    }

    /// The series of `route`; a bounded number of distinct routes is kept.
    #[inline]
    pub(crate) fn route(&self, route: Option<&str>) -> Arc<RouteSeries> {
        self.routes.get(route, |route| RouteSeries::new(route, self.ttfb))
    }

    /// The series of a route label that requests were given, if any.
    pub(crate) fn find(&self, route: &str) -> Option<Arc<RouteSeries>> {
        self.routes.find(route)
    }

    /// Every series that requests were given, in no order.
    pub(crate) fn all_routes(&self) -> Vec<Arc<RouteSeries>> {
        self.routes.all()
    }

    /// The active-requests gauge of a method and scheme.
    #[inline]
    pub(crate) fn active(&self, method: KnownMethod, https: bool) -> &Gauge {
        self.active[method.index()][usize::from(https)].get_or_init(|| {
            ::metrics::gauge!(
                HTTP_SERVER_ACTIVE_REQUESTS,
                "http_request_method" => method.as_str(),
                "url_scheme" => scheme_name(https),
            )
        })
    }
}

/// What identifies one series within a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SeriesKey {
    pub(crate) method: KnownMethod,
    pub(crate) https: bool,
    pub(crate) status: Option<StatusCode>,
    pub(crate) error: Option<ErrorType>,
}

/// The histograms of one label set.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) duration: Histogram,
    pub(crate) request_size: Histogram,
    pub(crate) response_size: Histogram,
    pub(crate) ttfb: Option<Histogram>,
}

/// One finished request, as recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measurement {
    /// When the request ended (the clock reading `seconds` was taken from).
    pub(crate) at: Instant,
    pub(crate) seconds: f64,
    pub(crate) request_bytes: u64,
    pub(crate) response_bytes: u64,
    pub(crate) first_byte_seconds: Option<f64>,
}

/// How many label sets of a route are found without a lock: a route sees a
/// handful (one method, a few statuses, the odd error type).
pub(crate) const SERIES_SLOTS: usize = 8;

/// The label sets of one route.
#[derive(Debug)]
pub(crate) struct RouteSeries {
    route: SharedString,
    ttfb: bool,
    /// The first label sets, each set once and then read without a lock.
    slots: [OnceLock<(SeriesKey, Series)>; SERIES_SLOTS],
    /// Label sets beyond the slots (rare: a route answering many statuses).
    more: RwLock<HashMap<SeriesKey, Series>>,
    /// Serializes the filling of slots.
    filling: Mutex<()>,
    /// The route's windows.
    stats: WindowedStats,
}

impl RouteSeries {
    fn new(route: &str, ttfb: bool) -> Self {
        Self {
            route: SharedString::from(route.to_owned()),
            ttfb,
            slots: Default::default(),
            more: RwLock::default(),
            filling: Mutex::new(()),
            stats: WindowedStats::new(),
        }
    }

    /// The route label.
    pub(crate) fn name(&self) -> &str {
        self.route.as_ref()
    }

    /// The route's windows.
    #[inline]
    pub(crate) fn stats(&self) -> &WindowedStats {
        &self.stats
    }

    /// Whether time to first byte is recorded.
    #[inline]
    pub(crate) fn ttfb(&self) -> bool {
        self.ttfb
    }

    /// Records one finished request: into its Prometheus series, and into
    /// the route's windows.
    #[inline]
    pub(crate) fn record(&self, key: SeriesKey, m: Measurement) {
        self.stats.record_at(m.seconds, key.error.is_some(), m.at);
        let record = |series: &Series| {
            series.duration.record(m.seconds);
            series.request_size.record(m.request_bytes as f64);
            series.response_size.record(m.response_bytes as f64);
            if let (Some(ttfb), Some(seconds)) = (&series.ttfb, m.first_byte_seconds) {
                ttfb.record(seconds);
            }
        };
        if let Some(series) = self.find_slot(&key) {
            return record(series);
        }
        self.record_slow(key, record);
    }

    /// The slot holding `key`, scanning the filled slots in order.
    #[inline]
    fn find_slot(&self, key: &SeriesKey) -> Option<&Series> {
        for slot in &self.slots {
            match slot.get() {
                Some((k, series)) if k == key => return Some(series),
                Some(_) => {}
                None => return None,
            }
        }
        None
    }

    /// Registers `key` (in a free slot, else in the map) and records.
    #[cold]
    fn record_slow(&self, key: SeriesKey, record: impl Fn(&Series)) {
        {
            let _filling = self.filling.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = self.find_slot(&key) {
                return record(series);
            }
            if let Some(free) = self.slots.iter().find(|slot| slot.get().is_none()) {
                let (_, series) = free.get_or_init(|| (key, self.build(key)));
                return record(series);
            }
        }
        if let Some(series) = self.more.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return record(series);
        }
        let mut more = self.more.write().unwrap_or_else(PoisonError::into_inner);
        record(more.entry(key).or_insert_with(|| self.build(key)));
    }

    fn build(&self, key: SeriesKey) -> Series {
        let mut labels = Vec::with_capacity(5);
        labels.push(Label::new("http_request_method", key.method.as_str()));
        labels.push(Label::new("http_route", self.route.clone()));
        if let Some(status) = key.status {
            labels.push(Label::new("http_response_status_code", status.as_str().to_owned()));
        }
        labels.push(Label::new("url_scheme", scheme_name(key.https)));
        if let Some(error) = key.error {
            labels.push(Label::new("error_type", error.as_str().to_owned()));
        }
        Series {
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
    use crate::{classify::UNMATCHED_ROUTE, routes::OVERFLOW_ROUTE};

    #[test]
    fn routes_are_bounded() {
        let registry = Registry::new(2, false);
        let a = registry.route(Some("/a"));
        assert!(Arc::ptr_eq(&a, &registry.route(Some("/a"))));
        registry.route(Some("/b"));
        let c = registry.route(Some("/c"));
        assert_eq!(c.route.as_ref(), OVERFLOW_ROUTE);
        assert_eq!(registry.route(None).route.as_ref(), UNMATCHED_ROUTE);
    }

    #[test]
    fn label_sets_beyond_the_slots_are_kept_too() {
        let registry = Registry::new(4, false);
        let route = registry.route(Some("/a"));
        let key = |code: u16| SeriesKey {
            method: KnownMethod::of(&http::Method::GET),
            https: false,
            status: Some(StatusCode::from_u16(code).unwrap()),
            error: None,
        };
        let at = Instant::now();
        let m =
            Measurement { at, seconds: 0.1, request_bytes: 1, response_bytes: 2, first_byte_seconds: None };
        for round in 0..2 {
            for code in 200..200 + 2 * SERIES_SLOTS as u16 {
                route.record(key(code), m);
            }
            let slots = route.slots.iter().filter(|s| s.get().is_some()).count();
            assert_eq!(slots, SERIES_SLOTS, "round {round}");
            let more = route.more.read().unwrap().len();
            assert_eq!(more, SERIES_SLOTS, "round {round}: one entry per extra label set");
        }
        assert!(route.find_slot(&key(200)).is_some());
        assert!(route.find_slot(&key(200 + SERIES_SLOTS as u16)).is_none(), "kept in the map");
    }
}
