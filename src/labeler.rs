//! [`Labeler`]: what a handler adds to its request's telemetry, like Go's
//! `otelhttp.Labeler` and ASP.NET Core's `IHttpMetricsTagsFeature`: span
//! attributes, metric labels from a set declared up front, and an error
//! type of its own.
//!
//! Metric labels are bounded twice: their keys are declared with the
//! layer ([`MetricLabels`]), and each key keeps at most
//! [`MetricLabels::max_values`] distinct values; later values share
//! [`OVERFLOW_LABEL_VALUE`]. A handler can never add a series the
//! declaration does not allow.
//!
//! # Example
//!
//! ```
//! use axum::{Extension, Router, routing::post};
//! use opentelemetry::KeyValue;
//! use tower_observability::{
//!     ObservabilityLayer,
//!     labeler::{Labeler, MetricLabels},
//! };
//!
//! async fn checkout(Extension(labeler): Extension<Labeler>) -> &'static str {
//!     labeler.label("tenant", "acme");                       // a metric label, declared below
//!     labeler.attribute(KeyValue::new("app.cart.items", 3)); // a span attribute
//!     if false {
//!         labeler.error_type("payment_declined");            // error.type, even on a 200
//!     }
//!     "ok"
//! }
//!
//! let labels = MetricLabels::new(["tenant"]).expect("valid label names").max_values(50);
//! let app: Router = Router::new()
//!     .route("/checkout", post(checkout))
//!     .layer(ObservabilityLayer::new().metric_labels(labels));
//! ```

use std::{
    collections::HashMap,
    error::Error,
    fmt,
    sync::{
        Arc, Mutex, OnceLock, PoisonError, RwLock,
        atomic::{AtomicU16, Ordering},
    },
};

use metrics::SharedString;
use opentelemetry::{KeyValue, trace::TraceContextExt as _};

/// The most label keys a layer declares.
pub const MAX_METRIC_LABELS: usize = 4;

/// The value of a label past its key's [`MetricLabels::max_values`].
pub const OVERFLOW_LABEL_VALUE: &str = "_OTHER";

/// The most bytes of a label value; longer values are cut (at a character
/// boundary).
pub const MAX_LABEL_VALUE_LEN: usize = 128;

/// The label names the crate's own series use: a declared label may not
/// take one.
const RESERVED: [&str; 8] = [
    "http_request_method",
    "http_route",
    "http_response_status_code",
    "url_scheme",
    "error_type",
    "network_protocol_version",
    "server_address",
    "server_port",
];

/// The metric labels handlers may set through their [`Labeler`], declared
/// with [`HttpMetricsLayer::labels`](crate::metrics::HttpMetricsLayer::labels).
/// Clones share their value tables.
#[derive(Clone)]
pub struct MetricLabels {
    inner: Arc<Labels>,
}

struct Labels {
    keys: Vec<SharedString>,
    max_values: usize,
    /// Per key: the values seen, and their numbers (1-based).
    values: Vec<RwLock<Values>>,
}

#[derive(Default)]
struct Values {
    numbers: HashMap<Box<str>, u16>,
    names: Vec<SharedString>,
}

/// Why label keys were refused.
#[derive(Debug, Clone)]
pub struct LabelError {
    reason: String,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl Error for LabelError {}

impl MetricLabels {
    /// Declares these label keys, each at most 100 values by default.
    ///
    /// # Errors
    ///
    /// [`LabelError`] for more than [`MAX_METRIC_LABELS`] keys, a key that
    /// is not a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not
    /// starting with `__`), a key given twice, or one of the crate's own
    /// labels (`http_route`...).
    pub fn new<I, T>(keys: I) -> Result<Self, LabelError>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        let refuse = |reason: String| Err(LabelError { reason });
        if keys.len() > MAX_METRIC_LABELS {
            return refuse(format!("at most {MAX_METRIC_LABELS} metric labels, {} given", keys.len()));
        }
        for (i, key) in keys.iter().enumerate() {
            let valid = key
                .bytes()
                .enumerate()
                .all(|(j, b)| b == b'_' || b.is_ascii_alphabetic() || (j > 0 && b.is_ascii_digit()));
            if key.is_empty() || !valid || key.starts_with("__") {
                return refuse(format!("`{key}` is not a Prometheus label name"));
            }
            if RESERVED.contains(&key.as_str()) {
                return refuse(format!("`{key}` is a label of the crate's own"));
            }
            if keys[..i].contains(key) {
                return refuse(format!("`{key}` is declared twice"));
            }
        }
        let values = keys.iter().map(|_| RwLock::default()).collect();
        let keys = keys.into_iter().map(SharedString::from).collect();
        Ok(Self { inner: Arc::new(Labels { keys, max_values: 100, values }) })
    }

    /// Keeps at most `max` distinct values per key (at least 1; values
    /// past it are [`OVERFLOW_LABEL_VALUE`]). 100 by default. Starts the
    /// value tables anew: declare the labels fully before serving.
    pub fn max_values(self, max: usize) -> Self {
        let keys = self.inner.keys.clone();
        let values = keys.iter().map(|_| RwLock::default()).collect();
        Self { inner: Arc::new(Labels { keys, max_values: max.clamp(1, u16::MAX as usize - 1), values }) }
    }

    /// The declared keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.inner.keys.iter().map(|k| k.as_ref())
    }

    /// The number of `value` under key `index`, interning it (1-based; the
    /// overflow value past the cap).
    fn number(&self, index: usize, value: &str) -> u16 {
        let value = crate::semconv::capped(value, MAX_LABEL_VALUE_LEN);
        let table = &self.inner.values[index];
        if let Some(&n) = table.read().unwrap_or_else(PoisonError::into_inner).numbers.get(value) {
            return n;
        }
        let mut table = table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(&n) = table.numbers.get(value) {
            return n;
        }
        let full = table.names.len() >= self.inner.max_values;
        let value = if full { OVERFLOW_LABEL_VALUE } else { value };
        if let Some(&n) = table.numbers.get(value) {
            return n;
        }
        table.names.push(SharedString::from(value.to_owned()));
        let n = table.names.len() as u16;
        table.numbers.insert(value.into(), n);
        n
    }

    /// The labels of the numbers `values` (0: unset), for a series.
    pub(crate) fn labels(&self, values: &LabelValues) -> Vec<metrics::Label> {
        let mut labels = Vec::new();
        for (i, n) in values.0.into_iter().enumerate().filter(|&(_, n)| n != 0) {
            let Some(table) = self.inner.values.get(i) else { continue };
            let table = table.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(value) = table.names.get(usize::from(n) - 1) {
                labels.push(metrics::Label::new(self.inner.keys[i].clone(), value.clone()));
            }
        }
        labels
    }
}

impl fmt::Debug for MetricLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricLabels")
            .field("keys", &self.inner.keys)
            .field("max_values", &self.inner.max_values)
            .finish_non_exhaustive()
    }
}

/// The label values of one request: a number per declared key, 0 for
/// unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct LabelValues([u16; MAX_METRIC_LABELS]);

/// A request extension through which a handler adds to the request's
/// telemetry; see the [module docs](self). Present when the layer declares
/// [`MetricLabels`] or is asked for it
/// ([`ObservabilityLayer::labeler`](crate::ObservabilityLayer::labeler)).
/// Clones share one request's state, so a task spawned by the handler can
/// keep one.
#[derive(Clone)]
pub struct Labeler {
    inner: Arc<Request>,
}

struct Request {
    labels: Option<MetricLabels>,
    values: [AtomicU16; MAX_METRIC_LABELS],
    error: Mutex<Option<&'static str>>,
    span: OnceLock<opentelemetry::Context>,
}

impl Labeler {
    pub(crate) fn new(labels: Option<MetricLabels>) -> Self {
        Self {
            inner: Arc::new(Request {
                labels,
                values: Default::default(),
                error: Mutex::new(None),
                span: OnceLock::new(),
            }),
        }
    }

    /// Sets metric label `key` to `value` for this request's series (the
    /// last value set wins). A key that was not declared is ignored (with
    /// a debug log line); a value past the key's cap is
    /// [`OVERFLOW_LABEL_VALUE`]; values are cut at
    /// [`MAX_LABEL_VALUE_LEN`] bytes.
    pub fn label(&self, key: &str, value: &str) {
        let Some(labels) = &self.inner.labels else {
            tracing::debug!(key, "no metric labels are declared: label ignored");
            return;
        };
        let Some(index) = labels.inner.keys.iter().position(|k| k.as_ref() == key) else {
            tracing::debug!(key, "undeclared metric label ignored");
            return;
        };
        self.inner.values[index].store(labels.number(index, value), Ordering::Relaxed);
    }

    /// Adds `attribute` to the request's server span (a no-op when it is
    /// not sampled or not traced). Values are the handler's own: keep them
    /// bounded in size.
    pub fn attribute(&self, attribute: KeyValue) {
        if let Some(cx) = self.inner.span.get() {
            cx.span().set_attribute(attribute);
        }
    }

    /// Marks the request as failed with `error_type` (`error.type` on the
    /// span, `error_type` on the metrics), whatever its status: for an
    /// answer the application considers a failure, such as a 200 that
    /// reports a declined payment. A low-cardinality name, from the code.
    pub fn error_type(&self, error_type: &'static str) {
        *self.inner.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error_type);
    }

    /// The request's server span, for [`attribute`](Self::attribute).
    pub(crate) fn set_span(&self, cx: &opentelemetry::Context) {
        let _ = self.inner.span.set(cx.clone());
    }

    /// The error type the handler set.
    pub(crate) fn marked_error(&self) -> Option<&'static str> {
        *self.inner.error.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The label values the handler set.
    pub(crate) fn values(&self) -> LabelValues {
        LabelValues(std::array::from_fn(|i| self.inner.values[i].load(Ordering::Relaxed)))
    }
}

impl fmt::Debug for Labeler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Labeler").field("values", &self.values()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(MetricLabels::new(["tenant", "plan_2"]).is_ok());
        for bad in
            [&["2x"][..], &["a-b"], &[""], &["__x"], &["http_route"], &["a", "a"], &["a", "b", "c", "d", "e"]]
        {
            let err = MetricLabels::new(bad.iter().copied()).unwrap_err();
            assert!(!err.to_string().is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn values_are_bounded_per_key_and_overflow_to_one() {
        let labels = MetricLabels::new(["tenant", "plan"]).unwrap().max_values(2);
        let labeler = Labeler::new(Some(labels.clone()));
        let names = |l: &Labeler| -> Vec<(String, String)> {
            labels.labels(&l.values()).iter().map(|l| (l.key().to_owned(), l.value().to_owned())).collect()
        };
        assert!(names(&labeler).is_empty(), "unset labels are left out");
        labeler.label("tenant", "a");
        labeler.label("nope", "x");
        assert_eq!(names(&labeler), [("tenant".into(), "a".into())]);
        for (i, value) in ["b", "c", "d", "a"].into_iter().enumerate() {
            let l = Labeler::new(Some(labels.clone()));
            l.label("tenant", value);
            let expected = if i < 1 || value == "a" { value } else { OVERFLOW_LABEL_VALUE };
            assert_eq!(names(&l)[0].1, expected, "{value}");
        }
        let long = "é".repeat(MAX_LABEL_VALUE_LEN);
        let l = Labeler::new(Some(MetricLabels::new(["k"]).unwrap()));
        l.label("k", &long);
        assert!(names(&l)[0].1.len() <= MAX_LABEL_VALUE_LEN);
    }

    #[test]
    fn the_last_error_type_wins() {
        let l = Labeler::new(None);
        assert_eq!(l.marked_error(), None);
        l.error_type("declined");
        l.clone().error_type("fraud");
        assert_eq!(l.marked_error(), Some("fraud"));
    }
}
