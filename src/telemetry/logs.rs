//! The log subscriber's part: the filter, and the line formats that carry
//! the request's correlation on every line.
//!
//! Both formats look up the [`Correlation`] that the trace layer attached to
//! the request's span, walking from the event's span to the root, so events
//! inside nested spans of a handler carry it too.

use std::fmt::{self, Write as _};

use serde_json::{Map, Value};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    EnvFilter, Layer,
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::{JsonFields, Writer},
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

use super::{InitError, config};
use crate::trace::Correlation;

/// Format of log lines written to standard output.
///
/// Both carry `request_id`, `trace_id` and `span_id` (of the request's
/// server span) on every line emitted inside a request, nested spans
/// included, so a line can be matched to its trace in Jaeger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (with `message`), `span` (name and fields of the current span),
    /// `request_id`, `trace_id`, `span_id`. The default: logs go to machines.
    #[default]
    Json,
    /// Human-readable lines, control characters escaped:
    /// `TIMESTAMP LEVEL target: message k=v request_id=.. trace_id=.. span_id=..`.
    Text,
}

/// The log filter: `RUST_LOG`, else `fallback`, else `info`.
pub(crate) fn log_filter(fallback: Option<&str>) -> Result<EnvFilter, InitError> {
    let directives =
        config::env("RUST_LOG").or_else(|| fallback.map(str::to_owned)).unwrap_or_else(|| "info".to_owned());
    EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| InitError::InvalidLogFilter(format!("{directives:?}: {e}")))
}

/// The layer writing log lines to standard output in `format`.
pub(crate) fn fmt_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().event_format(JsonFormat).fmt_fields(JsonFields::new()).boxed()
        }
        LogFormat::Text => tracing_subscriber::fmt::layer().event_format(TextFormat).boxed(),
    }
}

/// The JSON lines of [`fmt_layer`], written to `writer` (the test kit's
/// memory).
#[cfg(feature = "testing")]
pub(crate) fn json_layer_to<S, W>(writer: W) -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .event_format(JsonFormat)
        .fmt_fields(JsonFields::new())
        .with_writer(writer)
}

/// The correlation of the request an event belongs to, if any.
fn correlation<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<Correlation>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    ctx.event_scope()?.find_map(|span| Correlation::from_extensions(&span.extensions()))
}

fn timestamp() -> String {
    let mut out = String::with_capacity(32);
    // SystemTime writes RFC 3339 with microseconds, in UTC.
    let _ = SystemTime.format_time(&mut Writer::new(&mut out));
    out
}

/// One JSON object per line:
/// `{"timestamp","level","target","fields":{"message",..},"span":{"name",..},
/// "request_id","trace_id","span_id"}` (the last four inside a request only;
/// `span_id` is the request's server span).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonFormat;

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".to_owned(), Value::from(timestamp()));
        line.insert("level".to_owned(), Value::from(meta.level().as_str()));
        line.insert("target".to_owned(), Value::from(meta.target()));
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        line.insert("fields".to_owned(), Value::Object(fields));
        // The event's parent: an explicit one (the access log's) or the current span.
        if let Some(span) = ctx.parent_span() {
            let mut object = Map::new();
            object.insert("name".to_owned(), Value::from(span.name()));
            // With `JsonFields`, a span's formatted fields are a JSON object.
            if let Some(formatted) = span.extensions().get::<FormattedFields<N>>()
                && let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(formatted)
            {
                object.extend(span_fields);
            }
            line.insert("span".to_owned(), Value::Object(object));
        }
        if let Some(c) = correlation(ctx) {
            if let Some(id) = &c.request_id {
                line.insert("request_id".to_owned(), Value::from(id.as_str()));
            }
            if c.has_trace() {
                line.insert("trace_id".to_owned(), Value::from(c.trace_id.to_string()));
                line.insert("span_id".to_owned(), Value::from(c.span_id.to_string()));
            }
        }
        // serde_json escapes control characters: one event is one line.
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writer.write_str(&text)?;
        writer.write_char('\n')
    }
}

/// Human-readable lines:
/// `2026-01-02T03:04:05.000006Z  INFO target: message k=v request_id=.. trace_id=.. span_id=..`.
///
/// Control characters in messages and values are escaped (`\n`, `\r`,
/// `\u{1b}`...): a value a client sent cannot forge a second log line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TextFormat;

/// Writes `s` with control characters escaped.
fn write_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(out, "{}", c.escape_default())?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

struct TextVisitor<'a> {
    message: String,
    fields: &'a mut String,
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write_escaped(&mut self.message, value);
        } else {
            let _ = write!(self.fields, " {}=", field.name());
            let needs_quotes = value.is_empty() || value.contains([' ', '"', '=']);
            if needs_quotes {
                self.fields.push('"');
            }
            let _ = write_escaped(self.fields, value);
            if needs_quotes {
                self.fields.push('"');
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            let _ = write_escaped(&mut self.message, &text);
        } else {
            let _ = write!(self.fields, " {}=", field.name());
            let _ = write_escaped(self.fields, &text);
        }
    }
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = String::new();
        let mut visitor = TextVisitor { message: String::new(), fields: &mut fields };
        event.record(&mut visitor);
        let message = visitor.message;
        write!(writer, "{} {:>5} {}: {message}{fields}", timestamp(), meta.level(), meta.target())?;
        if let Some(c) = correlation(ctx) {
            if let Some(id) = &c.request_id {
                write!(writer, " request_id={id}")?;
            }
            if c.has_trace() {
                write!(writer, " trace_id={} span_id={}", c.trace_id, c.span_id)?;
            }
        }
        writer.write_char('\n')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        write_escaped(&mut out, "ok\r\nINFO forged: line\u{1b}[31m").unwrap();
        assert_eq!(out, "ok\\r\\nINFO forged: line\\u{1b}[31m");
        assert!(!out.contains('\n'));
    }
}
