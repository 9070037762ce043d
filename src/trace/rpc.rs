//! The server span of a gRPC call, in the OpenTelemetry RPC semantic
//! conventions v1.44.0 ("RPC server span", "Semantic conventions for
//! gRPC"): kind server, named `{rpc.method}` (`grpc` when the method is
//! `_OTHER`), with `rpc.system.name` and `rpc.method` at its start (they
//! are sampling-relevant), `rpc.response.status_code` and `error.type` at
//! its end, and status error with the `grpc-message` as description for
//! the codes a server counts as errors.

use std::borrow::Cow;

use http::Request;
use opentelemetry::{
    KeyValue,
    trace::{SpanBuilder, SpanKind, Status, TraceContextExt as _},
};

use super::span::RequestSpan;
use crate::{
    classify::ErrorType,
    grpc::{self, RpcCall},
    observe::RpcEnd,
    request_id::RequestId,
    semconv::{
        ERROR_TYPE, REQUEST_ID, RPC_METHOD, RPC_METHOD_ORIGINAL, RPC_RESPONSE_STATUS_CODE, RPC_SYSTEM_GRPC,
        RPC_SYSTEM_NAME,
    },
};

/// The span of `call` (made from `req`), with what is known before the
/// response.
pub(super) fn builder<B>(req: &Request<B>, call: &RpcCall) -> SpanBuilder {
    let mut attributes = Vec::with_capacity(3);
    attributes.push(KeyValue::new(RPC_SYSTEM_NAME, RPC_SYSTEM_GRPC));
    let name = match call.recognized() {
        Some(method) => {
            attributes.push(KeyValue::new(RPC_METHOD, method));
            method
        }
        None => RPC_SYSTEM_GRPC,
    };
    if let Some(id) = req.extensions().get::<RequestId>() {
        attributes.push(KeyValue::new(REQUEST_ID, id.as_str().to_owned()));
    }
    SpanBuilder {
        span_kind: Some(SpanKind::Server),
        attributes: Some(attributes),
        ..SpanBuilder::from_name(Cow::Borrowed(name))
    }
}

/// Names the span of a call whose method was recognized from its response
/// head (the method's first call): it started as `grpc`.
pub(super) fn recognized(span: &RequestSpan, method: &'static str) {
    let span = span.cx.span();
    span.update_name(Cow::Borrowed(method));
    span.set_attribute(KeyValue::new(RPC_METHOD, method));
}

/// Records how `call` ended on its span and ends it.
pub(super) fn end(span: &RequestSpan, call: &RpcCall, end: &RpcEnd, error: Option<ErrorType>) {
    let span = span.cx.span();
    if call.recognized().is_none() {
        span.set_attribute(KeyValue::new(RPC_METHOD, call.method()));
        if let Some(original) = call.original() {
            span.set_attribute(KeyValue::new(RPC_METHOD_ORIGINAL, original.to_owned()));
        }
    }
    span.set_attribute(KeyValue::new(RPC_RESPONSE_STATUS_CODE, end.code.as_str()));
    if let Some(error) = error {
        span.set_attribute(KeyValue::new(ERROR_TYPE, error.as_str().to_owned()));
        let description = end.message.as_ref().map(|m| grpc::decode_message(m.as_bytes()).into_owned());
        span.set_status(Status::error(description.unwrap_or_default()));
    }
    span.end();
}
