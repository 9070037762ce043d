//! The log subscriber's part: the filter, and the line formats that carry
//! the request's correlation on every line.
//!
//! Both formats look up the [`Correlation`] that the trace layer attached to
//! the request's span, walking from the event's span to the root, so events
//! inside nested spans of a handler carry it too.

use std::fmt::{self, Write as _};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{
    EnvFilter, Layer,
    field::RecordFields,
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

use super::{InitError, config, stdout::Stdout};
use opentelemetry::trace::{SpanId, TraceId};

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

/// The layer writing log lines in `format` to `writer`.
pub(crate) fn fmt_layer<S>(format: LogFormat, writer: Stdout) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(JsonFormat)
            .fmt_fields(JsonSpanFields)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => {
            tracing_subscriber::fmt::layer().event_format(TextFormat).with_writer(writer).boxed()
        }
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
    tracing_subscriber::fmt::layer().event_format(JsonFormat).fmt_fields(JsonSpanFields).with_writer(writer)
}

/// The correlation of the request an event belongs to, if any.
fn correlation<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<Correlation>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    ctx.event_scope()?.find_map(|span| Correlation::from_extensions(&span.extensions()))
}

/// One JSON object per line:
/// `{"timestamp","level","target","fields":{"message",..},"span":{"name",..},
/// "request_id","trace_id","span_id"}` (the last four inside a request only;
/// `span_id` is the request's server span).
///
/// Made in a `String` of the thread's and handed to the layer in one write:
/// no map, no intermediate value, the span's fields (already JSON,
/// formatted once when the span was made) copied as they are. Strings are
/// escaped per RFC 8259, so a value a client sent cannot forge a second
/// line; non-finite floats are `null`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonFormat;

/// A [`fmt::Write`] that escapes what it is given as the inside of a JSON
/// string (RFC 8259 section 7): `"`, `\` and the control characters.
struct JsonEscaped<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for JsonEscaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let mut start = 0;
        // Only ASCII bytes are escaped: they never occur inside a multi-byte
        // UTF-8 sequence, so every slice below is on a char boundary.
        while let Some(i) = next_escaped(bytes, start) {
            if i > start {
                self.0.write_str(&s[start..i])?;
            }
            let byte = bytes[i];
            match byte {
                b'"' => self.0.write_str("\\\"")?,
                b'\\' => self.0.write_str("\\\\")?,
                b'\n' => self.0.write_str("\\n")?,
                b'\r' => self.0.write_str("\\r")?,
                b'\t' => self.0.write_str("\\t")?,
                _ => write!(self.0, "\\u{byte:04x}")?,
            }
            start = i + 1;
        }
        if start < s.len() { self.0.write_str(&s[start..]) } else { Ok(()) }
    }
}

/// The index of the first byte at or after `from` that a JSON string must
/// escape (RFC 8259 section 7: `"`, `\`, the control characters; and DEL).
/// Eight bytes at a time: a value is written once per line, and most need
/// nothing.
#[inline]
fn next_escaped(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Whether a byte of `w` is zero, or below `n` (n <= 128): exact as a
    // yes/no for the whole word ("Bit Twiddling Hacks", haszero/hasless).
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGHS != 0;
    let has = |w: u64, byte: u8| below(w ^ (ONES * u64::from(byte)), 1);
    let rest = &bytes[from..];
    let mut chunks = rest.chunks_exact(8);
    let mut offset = 0;
    for chunk in chunks.by_ref() {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if below(w, 0x20) || has(w, b'"') || has(w, b'\\') || has(w, 0x7f) {
            break;
        }
        offset += 8;
    }
    rest[offset..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
        .map(|i| from + offset + i)
}

/// Writes `s` as a JSON string, quotes included.
fn write_json_str(out: &mut (impl fmt::Write + ?Sized), s: &str) -> fmt::Result {
    out.write_str("\"")?;
    JsonEscaped(out).write_str(s)?;
    out.write_str("\"")
}

/// Writes an event's or a span's fields as the members of a JSON object,
/// into a `String` of the thread's (calls the compiler sees through) or,
/// when that is in use, the layer's `Writer`.
struct JsonVisitor<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> JsonVisitor<'_, W> {
    /// Writes `"name":value`, after a comma unless it is the first member.
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let first = std::mem::take(&mut self.first);
        self.result = write_key(self.out, field.name(), first).and_then(|()| value(self.out));
    }
}

impl<W: fmt::Write> Visit for JsonVisitor<'_, W> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // `Debug` switches to an exponent for very large and small values:
        // a short, exact JSON number either way.
        self.member(
            field,
            |out| if value.is_finite() { write!(out, "{value:?}") } else { out.write_str("null") },
        );
    }
    // Integers through `itoa` (the text `Display` gives, without the
    // formatting machinery); booleans as their words.
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| out.write_str(itoa::Buffer::new().format(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| out.write_str(itoa::Buffer::new().format(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| out.write_str(if value { "true" } else { "false" }));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| write_json_str(out, value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_str("\"")?;
            write!(JsonEscaped(out), "{value:?}")?;
            out.write_str("\"")
        });
    }
}

thread_local! {
    /// The escaped member keys (`,"name":`) of the field names a thread
    /// wrote last, by the name's address: direct-mapped, [`KEY_SLOTS`]
    /// entries, so bounded whatever the fields.
    static KEYS: std::cell::RefCell<[Option<CachedKey>; KEY_SLOTS]> =
        const { std::cell::RefCell::new([const { None }; KEY_SLOTS]) };
}

/// A field name and its escaped member key.
type CachedKey = (&'static str, Box<str>);

/// How many member keys a thread keeps.
const KEY_SLOTS: usize = 64;

/// Writes the key of a member named `name` (`"name":`, after a comma
/// unless `first`), from the thread's cache of escaped keys when it holds
/// it: a field name is `'static`, the same few are written on every line.
fn write_key(out: &mut impl fmt::Write, name: &'static str, first: bool) -> fmt::Result {
    let skip = usize::from(first);
    let slot = (name.as_ptr() as usize >> 3) % KEY_SLOTS;
    let hit = KEYS.with(|keys| {
        let Ok(mut keys) = keys.try_borrow_mut() else { return None };
        let entry = &mut keys[slot];
        if !matches!(entry, Some((cached, _)) if std::ptr::eq(*cached, name)) {
            let mut key = String::with_capacity(name.len() + 4);
            key.push_str(",\"");
            JsonEscaped(&mut key).write_str(name).ok()?;
            key.push_str("\":");
            *entry = Some((name, key.into_boxed_str()));
        }
        let (_, key) = entry.as_ref()?;
        Some(out.write_str(&key[skip..]))
    });
    match hit {
        Some(written) => written,
        // The cache in use (a field's `Debug` that logs): written directly.
        None => {
            out.write_str(&",\""[skip..])?;
            JsonEscaped(&mut *out).write_str(name)?;
            out.write_str("\":")
        }
    }
}

/// A span's fields as one JSON object, `{"name":value,..}`, written
/// straight into the span's buffer (RFC 8259 escaping, as the lines); the
/// fields recorded later are added to the same object. Formatted once, when
/// the span is made; [`JsonFormat`] copies the members into each line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        // Formatted in a buffer of the thread's, then written at once: the
        // span's own string (new per span) is allocated once, at its size,
        // instead of growing member by member. Directly when the buffer is
        // in use (a field's `Debug` that makes a span).
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => {
                scratch.clear();
                json_object(&mut *scratch, fields)?;
                let result = writer.write_str(&scratch);
                if scratch.capacity() > MAX_SCRATCH {
                    *scratch = String::new();
                }
                result
            }
            Err(_) => json_object(&mut writer, fields),
        })
    }

    /// Adds the fields recorded later; a field recorded again replaces its
    /// value (the object is parsed and rewritten then, a rare path).
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &span::Record<'_>,
    ) -> fmt::Result {
        let mut added = String::new();
        self.format_fields(Writer::new(&mut added), fields)?;
        let members = |object: &str| object.strip_prefix('{')?.strip_suffix('}').map(str::len);
        let (Some(kept), Some(new)) = (members(&current.fields), members(&added)) else {
            // Not an object of this formatter's: start again.
            current.fields = added;
            return Ok(());
        };
        if new == 0 {
            return Ok(());
        }
        let mut names = FieldNames(Vec::new());
        fields.record(&mut names);
        let again = names.0.iter().any(|name| {
            let mut key = String::new();
            let _ = write_json_str(&mut key, name);
            key.push(':');
            current.fields.contains(&key)
        });
        if !again {
            // `{kept}` + `,` + `{new}` without their braces.
            current.fields.pop();
            if kept > 0 {
                current.fields.push(',');
            }
            current.fields.push_str(&added[1..]);
            return Ok(());
        }
        match (
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&current.fields),
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&added),
        ) {
            (Ok(mut object), Ok(added)) => {
                object.extend(added);
                current.fields = serde_json::to_string(&object).map_err(|_| fmt::Error)?;
            }
            _ => current.fields = added,
        }
        Ok(())
    }
}

thread_local! {
    /// Where [`JsonSpanFields`] formats a span's fields before copying them.
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The largest buffer a thread keeps between spans, and between lines
/// (bytes).
const MAX_SCRATCH: usize = 16 * 1024;

/// Writes `fields` as one JSON object.
fn json_object<R: RecordFields>(writer: &mut impl fmt::Write, fields: R) -> fmt::Result {
    writer.write_char('{')?;
    let mut visitor = JsonVisitor { out: writer, first: true, result: Ok(()) };
    fields.record(&mut visitor);
    visitor.result?;
    writer.write_char('}')
}

/// The names of the fields a record carries.
struct FieldNames(Vec<&'static str>);

impl Visit for FieldNames {
    fn record_debug(&mut self, field: &Field, _: &dyn fmt::Debug) {
        self.0.push(field.name());
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
        // The line is made in a buffer of the thread's, where each piece is
        // a `String` push, then handed to the layer in one write (its
        // `Writer` is a `dyn fmt::Write`: a call per piece). Directly when
        // the buffer is in use (a field's `Debug` that logs).
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                let result = json_line(&mut *line, ctx, event).and_then(|()| writer.write_str(&line));
                if line.capacity() > MAX_SCRATCH {
                    *line = String::new();
                }
                result
            }
            Err(_) => json_line(&mut writer, ctx, event),
        })
    }
}

thread_local! {
    /// Where [`JsonFormat`] makes a line before handing it to the layer.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Writes `event` as one JSON line (see [`JsonFormat`]).
fn json_line<S, N>(out: &mut impl fmt::Write, ctx: &FmtContext<'_, S, N>, event: &Event<'_>) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let meta = event.metadata();
    // RFC 3339 with microseconds, in UTC: nothing to escape.
    out.write_str("{\"timestamp\":\"")?;
    write_timestamp(out, std::time::SystemTime::now())?;
    out.write_str("\",\"level\":\"")?;
    out.write_str(meta.level().as_str())?;
    out.write_str("\",\"target\":")?;
    write_json_str(out, meta.target())?;
    out.write_str(",\"fields\":{")?;
    let mut visitor = JsonVisitor { out: &mut *out, first: true, result: Ok(()) };
    event.record(&mut visitor);
    visitor.result?;
    out.write_char('}')?;
    // The event's parent: an explicit one (the access log's) or the current span.
    if let Some(span) = ctx.parent_span() {
        out.write_str(",\"span\":{\"name\":")?;
        write_json_str(out, span.name())?;
        // With `JsonSpanFields`, a span's formatted fields are a JSON
        // object, escaped when the span was made: its members are copied
        // as they are.
        if let Some(formatted) = span.extensions().get::<FormattedFields<N>>()
            && let Some(members) = formatted.strip_prefix('{').and_then(|f| f.strip_suffix('}'))
            && !members.is_empty()
        {
            out.write_char(',')?;
            out.write_str(members)?;
        }
        out.write_char('}')?;
    }
    if let Some(c) = correlation(ctx) {
        if let Some(id) = &c.request_id {
            out.write_str(",\"request_id\":")?;
            write_json_str(out, id.as_str())?;
        }
        if c.has_trace() {
            write_ids(out, c.trace_id, c.span_id)?;
        }
    }
    out.write_str("}\n")
}

thread_local! {
    /// The second the thread last wrote a line in, and its RFC 3339 text up
    /// to the second (`2026-12-08T02:35:12`).
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// Writes `at` as RFC 3339 in UTC with microseconds
/// (`2026-12-08T02:35:12.123456Z`, as `tracing-subscriber`'s `SystemTime`
/// writes it), for both line formats: the date and time are formatted once
/// a second per thread, the microseconds per line. On a clock before 1970
/// or past the year 9999, `tracing-subscriber` writes the time (it reads
/// the clock itself).
fn write_timestamp(out: &mut impl fmt::Write, at: std::time::SystemTime) -> fmt::Result {
    let Ok(since) = at.duration_since(std::time::UNIX_EPOCH) else {
        return SystemTime.format_time(&mut Writer::new(out));
    };
    let secs = since.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let mut text = String::with_capacity(20);
        // `YYYY-MM-DDTHH:MM:SSZ`; humantime refuses a year past 9999.
        let written = write!(text, "{}", humantime::format_rfc3339_seconds(whole));
        let Some(date_time) = text.strip_suffix('Z').filter(|t| written.is_ok() && t.len() == 19) else {
            return SystemTime.format_time(&mut Writer::new(out));
        };
        prefix.copy_from_slice(date_time.as_bytes());
        SECOND.set((secs, prefix));
    }
    let mut line = [b'0'; 27];
    line[..19].copy_from_slice(&prefix);
    line[19] = b'.';
    let mut micros = since.subsec_micros();
    for digit in line[20..26].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    line[26] = b'Z';
    out.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
}

/// Writes `,"trace_id":"..","span_id":".."` (lowercase hex, W3C Trace
/// Context) in one piece, without going through `fmt` per digit.
fn write_ids(out: &mut impl fmt::Write, trace_id: TraceId, span_id: SpanId) -> fmt::Result {
    const TRACE: &[u8] = b",\"trace_id\":\"";
    const SPAN: &[u8] = b"\",\"span_id\":\"";
    const LEN: usize = TRACE.len() + 32 + SPAN.len() + 16 + 1;
    fn hex(bytes: &[u8], out: &mut [u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
    }
    let mut line = [b'"'; LEN];
    let (trace, rest) = line.split_at_mut(TRACE.len());
    trace.copy_from_slice(TRACE);
    let (trace_hex, rest) = rest.split_at_mut(32);
    hex(&trace_id.to_bytes(), trace_hex);
    let (span, rest) = rest.split_at_mut(SPAN.len());
    span.copy_from_slice(SPAN);
    hex(&span_id.to_bytes(), &mut rest[..16]);
    out.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
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
        write_timestamp(&mut writer, std::time::SystemTime::now())?;
        write!(writer, " {:>5} {}: {message}{fields}", meta.level(), meta.target())?;
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

    proptest::proptest! {
        #[test]
        fn the_word_scan_finds_what_a_byte_scan_finds(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            from in 0usize..40,
        ) {
            let from = from.min(bytes.len());
            let naive = bytes[from..]
                .iter()
                .position(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
                .map(|i| from + i);
            proptest::prop_assert_eq!(next_escaped(&bytes, from), naive);
        }
    }

    #[test]
    fn every_byte_to_escape_is_found_at_every_position_of_a_word() {
        for special in (0u8..0x20).chain([b'"', b'\\', 0x7f]) {
            for len in 1..=24 {
                for at in 0..len {
                    // Neighbours just above the thresholds: 0x20, 0x21, 0x7e, 0x80.
                    let mut bytes: Vec<u8> = (0..len).map(|i| [0x20, 0x21, 0x7e, 0x80][i % 4]).collect();
                    bytes[at] = special;
                    assert_eq!(next_escaped(&bytes, 0), Some(at), "{special:#x} at {at} of {len}");
                }
            }
        }
        assert_eq!(next_escaped("é 漢 🦀 plain ascii text".as_bytes(), 0), None);
    }

    #[test]
    fn timestamps_are_rfc_3339_with_microseconds_in_utc() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |secs: u64, micros: u32| UNIX_EPOCH + Duration::new(secs, micros * 1_000 + 999);
        let written = |t| {
            let mut out = String::new();
            write_timestamp(&mut Writer::new(&mut out), t).unwrap();
            out
        };
        for t in [
            at(0, 0),
            at(1_765_000_000, 5),
            at(1_765_000_000, 999_999),
            at(1_765_000_001, 0),
            at(1_765_000_000, 123_456),
            at(253_402_300_799, 1),
        ] {
            // The same second again (cached) and another one write alike.
            let expected = humantime::format_rfc3339_micros(t).to_string();
            assert_eq!(written(t), expected);
            assert_eq!(written(t), expected, "from the thread's cache");
        }
        // Checked against Python: datetime.fromtimestamp(1765195312, timezone.utc).
        assert_eq!(written(at(1_765_195_312, 42)), "2025-12-08T12:01:52.000042Z");
        // Before 1970 and past 9999: tracing-subscriber's text (of its own
        // clock reading), whole, never a panic or a cut one.
        for odd in [UNIX_EPOCH - Duration::from_secs(1), at(253_402_300_800, 0)] {
            let text = written(odd);
            assert!(text.ends_with('Z') && text.len() >= 27, "{text}");
        }
    }

    #[test]
    fn member_keys_are_escaped_and_cached_per_name() {
        // The same names over many lines (from the thread's cache), a name
        // that needs escaping, and more names than the cache has slots.
        let line = json_lines(|| {
            for _ in 0..3 {
                tracing::info!(plain = 1u64, "q\"uote" = 2u64, "back\\slash" = "v", "first");
            }
        });
        for line in line.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["fields"]["plain"], 1);
            assert_eq!(v["fields"]["q\"uote"], 2);
            assert_eq!(v["fields"]["back\\slash"], "v");
            assert_eq!(v["fields"]["message"], "first");
        }
        assert_eq!(line.lines().count(), 3);
        let many = json_lines(|| {
            // One callsite per name: 26 * 4 names, more than KEY_SLOTS.
            macro_rules! names {
                ($($n:ident)*) => { $( tracing::info!($n = 1u64, "x"); )* };
            }
            names!(a0 b0 c0 d0 e0 f0 g0 h0 i0 j0 k0 l0 m0 n0 o0 p0 q0 r0 s0 t0 u0 v0 w0 x0 y0 z0);
            names!(a1 b1 c1 d1 e1 f1 g1 h1 i1 j1 k1 l1 m1 n1 o1 p1 q1 r1 s1 t1 u1 v1 w1 x1 y1 z1);
            names!(a2 b2 c2 d2 e2 f2 g2 h2 i2 j2 k2 l2 m2 n2 o2 p2 q2 r2 s2 t2 u2 v2 w2 x2 y2 z2);
            names!(a3 b3 c3 d3 e3 f3 g3 h3 i3 j3 k3 l3 m3 n3 o3 p3 q3 r3 s3 t3 u3 v3 w3 x3 y3 z3);
            names!(a0 z3);
        });
        let names: Vec<String> = many
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let fields = v["fields"].as_object().unwrap();
                assert_eq!(fields.len(), 2, "{line}");
                fields.keys().find(|k| *k != "message").unwrap().clone()
            })
            .collect();
        let mut expected: Vec<String> =
            (0..4).flat_map(|i| ('a'..='z').map(move |c| format!("{c}{i}"))).collect();
        expected.extend(["a0".to_owned(), "z3".to_owned()]);
        assert_eq!(names, expected);
    }

    #[test]
    fn ids_are_written_as_their_w3c_hex() {
        for (trace, span) in [
            (TraceId::from_bytes([0xab; 16]), SpanId::from_bytes([0x01; 8])),
            (
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            ),
            (TraceId::from_bytes([0xff; 16]), SpanId::from_bytes([0; 8])),
        ] {
            let mut out = String::new();
            write_ids(&mut Writer::new(&mut out), trace, span).unwrap();
            assert_eq!(out, format!(",\"trace_id\":\"{trace}\",\"span_id\":\"{span}\""));
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        write_escaped(&mut out, "ok\r\nINFO forged: line\u{1b}[31m").unwrap();
        assert_eq!(out, "ok\\r\\nINFO forged: line\\u{1b}[31m");
        assert!(!out.contains('\n'));
    }

    /// The JSON lines of what `log` logs, in a subscriber of its own.
    fn json_lines(log: impl FnOnce()) -> String {
        use tracing_subscriber::layer::SubscriberExt as _;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .event_format(JsonFormat)
            .fmt_fields(JsonSpanFields)
            .with_writer(move || Sink(sink.clone()));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), log);
        String::from_utf8(lines.lock().unwrap().clone()).unwrap()
    }

    /// The JSON line of one event with `value` in the message, a field and
    /// the span's field.
    fn line_of(value: &str, number: f64) -> String {
        json_lines(|| {
            let span = tracing::info_span!("HTTP request", http.route = value, late = tracing::field::Empty);
            span.record("late", value);
            span.in_scope(|| {
                tracing::info!(target: "t\"arget", user_agent = value, ratio = number, n = 7u64, ok = true, "said {value}");
            });
        })
    }

    #[test]
    fn json_lines_parse_and_keep_hostile_values() {
        let hostile = "a\"b\\c\n{\"forged\":1}\r\t\u{0}\u{1b}\u{7f} é 漢 🦀";
        let line = line_of(hostile, f64::NAN);
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["target"], "t\"arget");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], format!("said {hostile}"));
        assert_eq!(v["fields"]["user_agent"], hostile);
        assert_eq!(v["fields"]["ratio"], serde_json::Value::Null);
        assert_eq!(v["fields"]["n"], 7);
        assert_eq!(v["fields"]["ok"], true);
        assert_eq!(v["span"]["name"], "HTTP request");
        assert_eq!(v["span"]["http.route"], hostile);
        assert_eq!(v["span"]["late"], hostile, "a field recorded later joins the span's object");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    /// Drops each line's timestamp (it differs from one run to the next).
    fn without_timestamps(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut line: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                line.as_object_mut().unwrap().remove("timestamp").expect("a timestamp");
                line
            })
            .collect()
    }

    fn some_lines() {
        let span = tracing::info_span!("request", user = "a \"b\"", n = 3);
        let _entered = span.enter();
        tracing::info!(value = ?"x\ny", number = 1.5, "line one");
        tracing::warn!("line two");
    }

    #[test]
    fn lines_written_while_the_thread_buffers_are_in_use_are_the_same() {
        // As when a field's `Debug` logs under a global dispatcher (a
        // scoped one, as here, does not dispatch what is logged inside a
        // subscriber's call): the line and the span's fields are written
        // through the layer's `Writer`.
        let buffered = json_lines(some_lines);
        let direct = LINE.with(|line| {
            let _line = line.borrow_mut();
            SCRATCH.with(|scratch| {
                let _scratch = scratch.borrow_mut();
                json_lines(some_lines)
            })
        });
        assert_eq!(without_timestamps(&buffered).len(), 2);
        assert_eq!(without_timestamps(&direct), without_timestamps(&buffered));
        let after_timestamps = |text: &str| -> Vec<String> {
            text.lines().map(|l| l[l.find("\"level\"").unwrap()..].to_owned()).collect()
        };
        assert_eq!(
            after_timestamps(&direct),
            after_timestamps(&buffered),
            "the same bytes but the timestamps"
        );
    }

    #[test]
    fn integers_and_booleans_are_written_as_display_writes_them() {
        let text = json_lines(|| {
            tracing::info!(
                min = i64::MIN,
                max = u64::MAX,
                zero = 0u64,
                minus = -42i64,
                yes = true,
                no = false,
                "numbers"
            );
        });
        for expected in [
            format!("\"min\":{}", i64::MIN),
            format!("\"max\":{}", u64::MAX),
            "\"zero\":0".to_owned(),
            "\"minus\":-42".to_owned(),
            "\"yes\":true".to_owned(),
            "\"no\":false".to_owned(),
        ] {
            assert!(text.contains(&expected), "{expected} in {text}");
        }
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["fields"]["max"].as_u64(), Some(u64::MAX));
    }

    #[test]
    fn a_span_field_recorded_again_is_replaced_not_repeated() {
        let line = json_lines(|| {
            let span = tracing::info_span!("loop", n = 1u64, later = tracing::field::Empty, keep = "k");
            for n in 2..=5u64 {
                span.record("n", n);
            }
            span.record("later", "set");
            span.in_scope(|| tracing::info!("done"));
        });
        assert_eq!(line.matches("\"n\":").count(), 1, "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["span"]["n"], 5);
        assert_eq!(v["span"]["later"], "set");
        assert_eq!(v["span"]["keep"], "k");
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    proptest::proptest! {
        #[test]
        fn any_value_round_trips_through_a_json_line(value in "\\PC*|[\\x00-\\x7f]*", number in proptest::num::f64::NORMAL) {
            let line = line_of(&value, number);
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            proptest::prop_assert_eq!(v["fields"]["user_agent"].as_str(), Some(value.as_str()));
            proptest::prop_assert_eq!(v["span"]["late"].as_str(), Some(value.as_str()));
            proptest::prop_assert_eq!(v["fields"]["ratio"].as_f64(), Some(number));
        }
    }
}
