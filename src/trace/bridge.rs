//! What `tracing-opentelemetry` does for its own spans, done for the
//! request's `tracing` span, whose OTel span the trace layer makes itself.

use std::{
    borrow::Cow,
    cell::{Cell, RefCell},
    fmt,
};

use opentelemetry::{
    ContextGuard, Key, KeyValue,
    trace::{Status, TraceContextExt},
};
use tracing::{Event, Subscriber, field::Field, span};
use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

use super::correlation::RequestScope;

/// A `tracing-subscriber` layer that joins the request's `tracing` span
/// (target `tower_observability::request`) to the OTel server span of
/// [`HttpTraceLayer`](super::HttpTraceLayer), as `tracing-opentelemetry`
/// joins its own spans:
///
/// - entering the span makes the server span's context the current OTel
///   context, so spans opened in a task instrumented with it
///   (`tokio::spawn(work.in_current_span())`) are children of the server
///   span, and calls it makes carry the trace on;
/// - an event whose innermost span is the request's becomes an event of
///   the server span (name: the message; attributes: `level`, `target`
///   and the event's fields), and one at `ERROR` sets the span's status to
///   error, as `tracing-opentelemetry` does for its spans. Events inside a
///   span of the handler's own belong to that span, and
///   `tracing-opentelemetry` records them there. The access log (target
///   `tower_observability::access`) and the panic log line (target
///   `tower_observability::panic`) are left out: the span holds all they
///   say, the panic as its `exception` event.
///
/// [`Observability`](crate::Observability) installs it (it is part of
/// [`Observability::otel_layer`](crate::Observability::otel_layer)); add it
/// to a subscriber you build yourself, after the OTel layer (its context
/// must be attached last to be the current one), with a level filter such
/// as the OTel layer's:
///
/// ```
/// use tower_observability::trace::ServerSpanLayer;
/// use tracing_subscriber::{Layer as _, filter::LevelFilter, layer::SubscriberExt};
///
/// let subscriber = tracing_subscriber::registry()
///     // .with(tracing_opentelemetry::layer().with_tracer(...))
///     .with(ServerSpanLayer::new().with_filter(LevelFilter::INFO));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ServerSpanLayer {}

impl ServerSpanLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self {}
    }
}

thread_local! {
    /// The contexts attached on entering request spans, innermost last.
    static ENTERED: RefCell<Vec<(span::Id, ContextGuard)>> = const { RefCell::new(Vec::new()) };
    /// Set while the trace layer enters a request span whose context it
    /// attaches itself: the layer has nothing to do, and skips the lookup.
    static ATTACHED: Cell<bool> = const { Cell::new(false) };
}

/// Enters `span`, the request span of a context the caller attaches
/// itself (the trace layer, while it polls the inner service).
#[inline]
pub(crate) fn enter_attached(span: &tracing::Span) -> tracing::span::Entered<'_> {
    ATTACHED.set(true);
    let entered = span.enter();
    ATTACHED.set(false);
    entered
}

impl<S> Layer<S> for ServerSpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        if ATTACHED.get() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        // Cloned first: no registry lock is held while attaching.
        let cx = span.extensions().get::<RequestScope>().map(|scope| scope.cx.clone());
        if let Some(cx) = cx {
            let guard = cx.attach();
            ENTERED.with(|entered| entered.borrow_mut().push((id.clone(), guard)));
        }
    }

    fn on_exit(&self, id: &span::Id, _ctx: Context<'_, S>) {
        let guard = ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            let pos = entered.iter().rposition(|(entered, _)| entered == id)?;
            Some(entered.remove(pos))
        });
        // Dropped outside the borrow: detaching runs no code of ours, but
        // keep the thread-local free anyway.
        drop(guard);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The access log repeats what the span holds; the trace layer
        // records a caught panic as the span's `exception` event itself.
        if matches!(event.metadata().target(), ACCESS_TARGET | PANIC_TARGET) {
            return;
        }
        let Some(span) = ctx.event_span(event) else { return };
        let cx = span.extensions().get::<RequestScope>().map(|scope| scope.cx.clone());
        let Some(cx) = cx else { return };
        let otel = cx.span();
        if !otel.is_recording() {
            return;
        }
        let meta = event.metadata();
        let mut fields = EventFields {
            name: None,
            attributes: vec![
                KeyValue::new(LEVEL, meta.level().as_str()),
                KeyValue::new(TARGET, meta.target().to_owned()),
            ],
        };
        event.record(&mut fields);
        // As tracing-opentelemetry: an error logged in the request marks
        // its span as failed.
        if *meta.level() == tracing::Level::ERROR {
            otel.set_status(Status::error(""));
        }
        otel.add_event(fields.name.unwrap_or(Cow::Borrowed(meta.name())), fields.attributes);
    }
}

const ACCESS_TARGET: &str = "tower_observability::access";
const PANIC_TARGET: &str = "tower_observability::panic";
const LEVEL: Key = Key::from_static_str("level");
const TARGET: Key = Key::from_static_str("target");

/// An event's message and fields, as OTel event name and attributes.
struct EventFields {
    name: Option<Cow<'static, str>>,
    attributes: Vec<KeyValue>,
}

impl EventFields {
    fn push(&mut self, field: &Field, value: impl Into<opentelemetry::Value>) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }
}

impl tracing::field::Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.name = Some(Cow::Owned(value.to_owned()));
        } else {
            self.push(field, value.to_owned());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(value) => self.push(field, value),
            Err(_) => self.push(field, value.to_string()),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.name = Some(Cow::Owned(format!("{value:?}")));
        } else {
            self.push(field, format!("{value:?}"));
        }
    }
}
