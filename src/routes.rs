//! A bounded table of per-route state, shared by the layers that keep
//! something per route template (metric handles, windows, cache counters).
//!
//! Lookups of a known route take a read lock and allocate nothing; a new
//! route takes the write lock once. Requests that matched no route share one
//! entry, [`UNMATCHED_ROUTE`]; once `max` routes exist, new ones share
//! [`OVERFLOW_ROUTE`], so memory is bounded whatever labels arrive.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::classify::UNMATCHED_ROUTE;

/// The route label given once more than `max` distinct routes were seen.
pub(crate) const OVERFLOW_ROUTE: &str = "_overflow";

/// Per-route entries of type `T`, at most `max` routes plus two fixed ones.
pub(crate) struct RouteTable<T> {
    /// Keyed with foldhash: route labels are the router's templates, not
    /// attacker-chosen, and their number is capped by `max`.
    routes: RwLock<HashMap<Box<str>, Arc<T>, foldhash::fast::RandomState>>,
    unmatched: Arc<T>,
    overflow: Arc<T>,
    /// Whether a request was given `unmatched` or `overflow`.
    unmatched_used: AtomicBool,
    overflow_used: AtomicBool,
    max: usize,
}

impl<T> RouteTable<T> {
    /// A table of at most `max` routes; `make` builds the entry of a route
    /// label (here, the two fixed ones).
    pub(crate) fn new(max: usize, make: impl Fn(&str) -> T) -> Self {
        Self {
            routes: RwLock::default(),
            unmatched: Arc::new(make(UNMATCHED_ROUTE)),
            overflow: Arc::new(make(OVERFLOW_ROUTE)),
            unmatched_used: AtomicBool::new(false),
            overflow_used: AtomicBool::new(false),
            max,
        }
    }

    /// The most routes kept.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// The entry of `route` (`None`: matched no route), made with `make` on
    /// its first request.
    #[inline]
    pub(crate) fn get(&self, route: Option<&str>, make: impl FnOnce(&str) -> T) -> Arc<T> {
        let Some(route) = route else {
            mark(&self.unmatched_used);
            return self.unmatched.clone();
        };
        if let Some(entry) = self.routes.read().unwrap_or_else(PoisonError::into_inner).get(route) {
            return entry.clone();
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = routes.get(route) {
            return entry.clone();
        }
        if routes.len() >= self.max {
            mark(&self.overflow_used);
            return self.overflow.clone();
        }
        let entry = Arc::new(make(route));
        routes.insert(route.into(), entry.clone());
        entry
    }

    /// The entry of a route label that requests were given, if any.
    pub(crate) fn find(&self, label: &str) -> Option<Arc<T>> {
        if let Some(entry) = self.routes.read().unwrap_or_else(PoisonError::into_inner).get(label) {
            return Some(entry.clone());
        }
        self.fixed().find(|(name, _)| *name == label).map(|(_, entry)| entry.clone())
    }

    /// Every entry that requests were given, in no order.
    pub(crate) fn all(&self) -> Vec<Arc<T>> {
        let mut all: Vec<Arc<T>> =
            self.routes.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        all.extend(self.fixed().map(|(_, entry)| entry.clone()));
        all
    }

    /// The fixed entries that requests were given.
    fn fixed(&self) -> impl Iterator<Item = (&'static str, &Arc<T>)> {
        [
            (UNMATCHED_ROUTE, &self.unmatched, &self.unmatched_used),
            (OVERFLOW_ROUTE, &self.overflow, &self.overflow_used),
        ]
        .into_iter()
        .filter(|(_, _, used)| used.load(Ordering::Relaxed))
        .map(|(name, entry, _)| (name, entry))
    }
}

/// Sets `flag` once, without a write when it is already set.
#[inline]
fn mark(flag: &AtomicBool) {
    if !flag.load(Ordering::Relaxed) {
        flag.store(true, Ordering::Relaxed);
    }
}

impl<T> fmt::Debug for RouteTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("RouteTable").field("routes", &routes).field("max", &self.max).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_bounded_and_fixed_entries_show_once_used() {
        let table = RouteTable::new(2, str::to_owned);
        let a = table.get(Some("/a"), str::to_owned);
        assert!(Arc::ptr_eq(&a, &table.get(Some("/a"), |_| unreachable!("made once"))));
        table.get(Some("/b"), str::to_owned);
        assert_eq!(table.all().len(), 2, "no fixed entry used yet");
        assert_eq!(*table.get(Some("/c"), str::to_owned), OVERFLOW_ROUTE);
        assert_eq!(*table.get(None, str::to_owned), UNMATCHED_ROUTE);
        assert_eq!(table.all().len(), 4);
        assert_eq!(table.find("/b").as_deref().map(String::as_str), Some("/b"));
        assert_eq!(table.find(OVERFLOW_ROUTE).as_deref().map(String::as_str), Some(OVERFLOW_ROUTE));
        assert!(table.find("/c").is_none(), "an overflowed route has no entry of its own");
    }
}
