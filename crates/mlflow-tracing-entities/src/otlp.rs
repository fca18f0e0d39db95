//! Spans as OTLP protobuf messages, both ways, the way MLflow converts them.
//!
//! To OTLP (`Span.to_otel_proto`, what the SDK sends to `POST /v1/traces`): ids as raw bytes,
//! attributes **decoded** into typed `AnyValue`s (`mlflow.spanType` becomes the string `LLM`,
//! inputs become a `kvlistValue`), event attributes as they are, status message only when set.
//!
//! From OTLP (`Span.from_otel_proto`, what the server does on ingest): every attribute is
//! re-encoded as JSON text, and `mlflow.traceRequestId` is derived from the OTLP trace id rather
//! than trusted.

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as proto;
use serde_json::{Map, Number, Value};

use crate::attributes::SpanAttributes;
use crate::error::{EntityError, Result};
use crate::ids::{MlflowTraceId, SpanId, TraceId};
use crate::json::{decode_attribute, string_attribute_json, to_attribute_json};
use crate::keys;
use crate::span::Span;
use crate::span_kinds::{Link, SpanEvent, SpanStatus, SpanStatusCode};

/// A decoded JSON value as an OTLP `AnyValue` (`_set_otel_proto_anyvalue`): `null` is an empty
/// `AnyValue`, integers that fit `i64` are `intValue`, other numbers `doubleValue`, arrays
/// `arrayValue`, objects `kvlistValue`.
pub fn json_to_any_value(value: &Value) -> AnyValue {
    let v = match value {
        Value::Null => None,
        Value::Bool(b) => Some(Any::BoolValue(*b)),
        Value::String(s) => Some(Any::StringValue(s.clone())),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => Any::IntValue(i),
            // u64 above i64::MAX and floats: the nearest double (protobuf int64 cannot hold it).
            None => Any::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::Array(items) => Some(Any::ArrayValue(ArrayValue {
            values: items.iter().map(json_to_any_value).collect(),
        })),
        Value::Object(map) => Some(Any::KvlistValue(KeyValueList {
            values: map
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(json_to_any_value(v)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value: v }
}

/// An OTLP `AnyValue` as JSON (`_decode_otel_proto_anyvalue`); bytes become base64 text and
/// non-finite doubles `null`.
pub fn any_value_to_json(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(Any::BoolValue(b)) => Value::Bool(*b),
        Some(Any::StringValue(s)) => Value::String(s.clone()),
        Some(Any::IntValue(i)) => Value::from(*i),
        Some(Any::DoubleValue(d)) => Number::from_f64(*d).map_or(Value::Null, Value::Number),
        Some(Any::BytesValue(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Any::ArrayValue(a)) => Value::Array(a.values.iter().map(any_value_to_json).collect()),
        Some(Any::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|e| {
                    (
                        e.key.clone(),
                        e.value.as_ref().map_or(Value::Null, any_value_to_json),
                    )
                })
                .collect(),
        ),
        // String-table indices only occur in profiles, never in spans.
        Some(Any::StringValueStrindex(_)) => Value::Null,
    }
}

fn key_values<'a>(entries: impl Iterator<Item = (&'a str, Value)>) -> Vec<KeyValue> {
    entries
        .map(|(k, v)| KeyValue {
            key: k.to_owned(),
            value: Some(json_to_any_value(&v)),
            ..Default::default()
        })
        .collect()
}

fn status_code(code: SpanStatusCode) -> i32 {
    match code {
        SpanStatusCode::Unset => proto::status::StatusCode::Unset as i32,
        SpanStatusCode::Ok => proto::status::StatusCode::Ok as i32,
        SpanStatusCode::Error => proto::status::StatusCode::Error as i32,
    }
}

impl Span {
    /// The OTLP span MLflow's `Span.to_otel_proto()` builds.
    pub fn to_otlp(&self) -> proto::Span {
        let attributes = key_values(
            self.attributes
                .iter()
                .map(|(k, v)| (k, decode_attribute(v).unwrap_or(Value::Null))),
        );
        let events = self
            .events
            .iter()
            .map(|e| proto::span::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.clone(),
                attributes: key_values(e.attributes.iter().map(|(k, v)| (k.as_str(), v.clone()))),
                dropped_attributes_count: 0,
            })
            .collect();
        let links = self
            .links
            .iter()
            .filter_map(|l| {
                // Links whose trace id cannot be read are dropped, as MLflow drops over-wide ids.
                let trace_id = l.otel_trace_id().ok()?;
                Some(proto::span::Link {
                    trace_id: trace_id.to_bytes().to_vec(),
                    span_id: l.span_id.to_bytes().to_vec(),
                    trace_state: String::new(),
                    attributes: l
                        .attributes
                        .as_ref()
                        .map(|a| key_values(a.iter().map(|(k, v)| (k.as_str(), v.clone()))))
                        .unwrap_or_default(),
                    dropped_attributes_count: 0,
                    flags: 0,
                })
            })
            .collect();
        proto::Span {
            trace_id: self.trace_id.to_bytes().to_vec(),
            span_id: self.span_id.to_bytes().to_vec(),
            trace_state: String::new(),
            parent_span_id: self
                .parent_id
                .map(|p| p.to_bytes().to_vec())
                .unwrap_or_default(),
            flags: 0,
            name: self.name.clone(),
            kind: 0,
            start_time_unix_nano: self.start_time_ns,
            end_time_unix_nano: self.end_time_ns.unwrap_or(0),
            attributes,
            dropped_attributes_count: 0,
            events,
            dropped_events_count: 0,
            links,
            dropped_links_count: 0,
            status: Some(proto::Status {
                message: self.status.message.clone(),
                code: status_code(self.status.code),
            }),
        }
    }

    /// The span the MLflow server stores for an OTLP span (`Span.from_otel_proto`): attributes
    /// re-encoded as JSON text, `mlflow.traceRequestId` set to `tr-<hex>` (or the V4 id when
    /// `uc_location` is given).
    ///
    /// # Errors
    /// [`EntityError::InvalidId`] for missing or malformed ids, [`EntityError::TooDeep`] for
    /// attribute values nested too deeply.
    pub fn from_otlp(span: &proto::Span, uc_location: Option<&str>) -> Result<Span> {
        if span.trace_id.is_empty() || span.span_id.is_empty() {
            return Err(EntityError::InvalidSpan(
                "trace_id and span_id are required".into(),
            ));
        }
        let trace_id = TraceId::from_slice(&span.trace_id)?;
        let span_id = SpanId::from_slice(&span.span_id)?;
        let parent_id = if span.parent_span_id.is_empty() {
            None
        } else {
            Some(SpanId::from_slice(&span.parent_span_id)?)
        };
        let request_id = match uc_location {
            Some(loc) => MlflowTraceId::v4(loc, trace_id)?,
            None => MlflowTraceId::v3(trace_id),
        };
        let mut attributes = SpanAttributes::with_capacity(span.attributes.len() + 1);
        for kv in &span.attributes {
            let value = kv.value.as_ref().map_or(Value::Null, any_value_to_json);
            attributes.insert(kv.key.clone(), Value::String(to_attribute_json(&value)?));
        }
        attributes.insert(
            keys::span::REQUEST_ID,
            Value::String(string_attribute_json(&request_id.to_string())),
        );
        let to_map = |kvs: &[KeyValue]| -> Map<String, Value> {
            kvs.iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Value::Null, any_value_to_json),
                    )
                })
                .collect()
        };
        let status = match &span.status {
            Some(s) if s.code == proto::status::StatusCode::Ok as i32 => SpanStatus {
                code: SpanStatusCode::Ok,
                message: s.message.clone(),
            },
            Some(s) if s.code == proto::status::StatusCode::Error as i32 => {
                SpanStatus::error(s.message.clone())
            }
            Some(s) => SpanStatus {
                code: SpanStatusCode::Unset,
                message: s.message.clone(),
            },
            None => SpanStatus::default(),
        };
        let links = span
            .links
            .iter()
            .map(|l| {
                let attrs = to_map(&l.attributes);
                Ok(Link {
                    trace_id: MlflowTraceId::v3(TraceId::from_slice(&l.trace_id)?).to_string(),
                    span_id: SpanId::from_slice(&l.span_id)?,
                    attributes: (!attrs.is_empty()).then_some(attrs),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Span {
            trace_id,
            span_id,
            parent_id,
            name: span.name.clone(),
            start_time_ns: span.start_time_unix_nano,
            end_time_ns: (span.end_time_unix_nano != 0).then_some(span.end_time_unix_nano),
            status,
            events: span
                .events
                .iter()
                .map(|e| SpanEvent {
                    name: e.name.clone(),
                    time_unix_nano: e.time_unix_nano,
                    attributes: to_map(&e.attributes),
                })
                .collect(),
            links,
            attributes,
        })
    }
}

/// The resource attributes MLflow's provider sends (`telemetry.sdk.*`), here naming this SDK.
pub fn sdk_resource(sdk_version: &str) -> Resource {
    let attr = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Any::StringValue(v.into())),
        }),
        ..Default::default()
    };
    Resource {
        attributes: vec![
            attr("telemetry.sdk.language", "rust"),
            attr("telemetry.sdk.name", "mlflow-tracing"),
            attr("telemetry.sdk.version", sdk_version),
        ],
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    }
}

/// One OTLP export request as MLflow builds it: one resource, one scope with no name, the spans.
pub fn export_request<'a>(
    resource: Resource,
    spans: impl IntoIterator<Item = &'a Span>,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![proto::ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![proto::ScopeSpans {
                scope: None,
                spans: spans.into_iter().map(Span::to_otlp).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// [`export_request`] encoded as protobuf, whole or a piece at a time, without the request
/// ever being built: the same bytes as `export_request(resource, spans).encode_to_vec()`.
/// Its length is known before any piece is made, so a body can announce it; each span is
/// converted and encoded on its own when its piece is made, so a connection that takes the
/// pieces as it writes them never holds the whole request.
#[derive(Debug)]
pub struct ExportRequestEncoder<'a> {
    /// The request's fields before the spans: the resource, then the tag and length of the
    /// scope's spans.
    head: Vec<u8>,
    /// The spans, each with its encoded length.
    spans: Vec<(&'a Span, usize)>,
    /// The length of the spans' fields.
    spans_len: usize,
}

impl<'a> ExportRequestEncoder<'a> {
    /// The request of `spans` (measured: each is converted once); `None` for no spans.
    pub fn new(resource: &Resource, spans: impl IntoIterator<Item = &'a Span>) -> Option<Self> {
        use prost::Message as _;
        use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

        let spans: Vec<(&Span, usize)> = spans
            .into_iter()
            .map(|span| (span, span.to_otlp().encoded_len()))
            .collect();
        if spans.is_empty() {
            return None;
        }
        let spans_len: usize = spans.iter().map(|(_, len)| span_field_len(*len)).sum();
        // `ScopeSpans` (no scope, the spans, no schema URL) is as long as its spans' fields.
        let resource_len = resource.encoded_len();
        // `ResourceSpans`: the resource (1), the one `ScopeSpans` (2), no schema URL.
        let resource_spans_len = key_len(1)
            + encoded_len_varint(resource_len as u64)
            + resource_len
            + key_len(2)
            + encoded_len_varint(spans_len as u64)
            + spans_len;
        let mut head = Vec::with_capacity(resource_len + 32);
        encode_key(1, WireType::LengthDelimited, &mut head);
        encode_varint(resource_spans_len as u64, &mut head);
        prost::encoding::message::encode(1, resource, &mut head);
        encode_key(2, WireType::LengthDelimited, &mut head);
        encode_varint(spans_len as u64, &mut head);
        Some(ExportRequestEncoder {
            head,
            spans,
            spans_len,
        })
    }

    /// The request's length in bytes.
    pub fn encoded_len(&self) -> usize {
        self.head.len() + self.spans_len
    }

    /// The request in pieces of about `piece` bytes (at least 64), made as they are taken:
    /// the head, then as many whole spans as fit in each (a span longer than a piece is a
    /// piece of its own).
    pub fn pieces(&self, piece: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
        ExportPieces {
            head: Some(&self.head),
            spans: self.spans.iter(),
            converted: None,
            left: self.spans_len,
            piece: piece.max(64),
        }
    }

    /// The whole request in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.encoded_len());
        all.extend_from_slice(&self.head);
        for (span, len) in &self.spans {
            encode_span_field(&span.to_otlp(), *len, &mut all);
        }
        all
    }
}

/// The length of a span of `len` bytes as an element of `ScopeSpans.spans` (field 2).
fn span_field_len(len: usize) -> usize {
    use prost::encoding::{encoded_len_varint, key_len};
    key_len(2) + encoded_len_varint(len as u64) + len
}

/// Writes `span` (`len` bytes encoded) as an element of `ScopeSpans.spans` (field 2), as prost
/// writes each element of the repeated field (`prost::encoding` is what prost's generated code
/// calls, stable within a version).
fn encode_span_field(span: &proto::Span, len: usize, out: &mut Vec<u8>) {
    use prost::Message as _;
    use prost::encoding::{WireType, encode_key, encode_varint};
    encode_key(2, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
    span.encode_raw(out);
}

/// The pieces of an [`ExportRequestEncoder`]'s request, made one at a time.
struct ExportPieces<'e, 'a> {
    head: Option<&'e [u8]>,
    spans: std::slice::Iter<'e, (&'a Span, usize)>,
    /// A span converted for the last piece that did not fit in it (with its length): the next
    /// one starts with it.
    converted: Option<(proto::Span, usize)>,
    /// The length of the spans' fields not made yet.
    left: usize,
    piece: usize,
}

impl Iterator for ExportPieces<'_, '_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if let Some(head) = self.head.take() {
            return Some(head.to_vec());
        }
        let mut current: Vec<u8> = Vec::new();
        while let Some((span, len)) = self
            .converted
            .take()
            .or_else(|| self.spans.next().map(|(s, len)| (s.to_otlp(), *len)))
        {
            let field = span_field_len(len);
            if !current.is_empty() && current.len() + field > self.piece {
                self.converted = Some((span, len));
                break;
            }
            if current.capacity() == 0 {
                current.reserve_exact(field.max(self.piece).min(self.left));
            }
            encode_span_field(&span, len, &mut current);
            self.left = self.left.saturating_sub(field);
        }
        (!current.is_empty()).then_some(current)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]
    use prost::Message as _;
    use serde_json::Value;

    use super::*;

    fn span(i: u64, input_bytes: usize) -> Span {
        Span::builder(
            TraceId::from_int(0x1234_5678_9abc_def0_u128 + u128::from(i % 3)),
            SpanId::from_int(i + 1),
            format!("span {i}"),
        )
        .parent((i > 0).then(|| SpanId::from_int(1)))
        .times(1_000 + i, Some(2_000 + i))
        .raw_attribute(
            keys::span::INPUTS,
            Value::String(format!("{{\"q\": \"{}\"}}", "é".repeat(input_bytes / 2))),
        )
        .raw_attribute(
            keys::span::OUTPUTS,
            Value::String(format!("\"{}\"", "x".repeat(input_bytes))),
        )
        .build()
    }

    /// The request's pieces, none for no spans.
    fn encode_export_request(resource: &Resource, spans: &[Span], piece: usize) -> Vec<Vec<u8>> {
        ExportRequestEncoder::new(resource, spans)
            .map(|request| request.pieces(piece).collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_pieces_are_the_request_prost_encodes() {
        let resource = sdk_resource("1.2.3");
        // Spans small and large (one longer than a piece, one needing a 3-byte length).
        let sizes = [0, 10, 1_000, 40_000, 3, 200_000, 17];
        let spans: Vec<Span> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| span(i as u64, *n))
            .collect();
        for count in [1, 2, 4, sizes.len()] {
            let expected = export_request(resource.clone(), &spans[..count]).encode_to_vec();
            for piece in [0, 64, 1_000, 32 * 1024, 1 << 20] {
                let pieces = encode_export_request(&resource, &spans[..count], piece);
                assert_eq!(
                    pieces.iter().map(Vec::len).sum::<usize>(),
                    expected.len(),
                    "{count} spans, pieces of {piece}"
                );
                assert_eq!(
                    pieces.concat(),
                    expected,
                    "{count} spans, pieces of {piece}"
                );
                assert!(pieces.iter().all(|p| !p.is_empty()));
                let request = ExportRequestEncoder::new(&resource, &spans[..count]).unwrap();
                assert_eq!(request.encoded_len(), expected.len());
                assert_eq!(request.to_vec(), expected);
                if piece == 1_000 && count == sizes.len() {
                    // The head; the first two spans together; every later one alone, as each
                    // either exceeds a piece or follows one that does.
                    assert_eq!(
                        pieces.len(),
                        7,
                        "{:?}",
                        pieces.iter().map(Vec::len).collect::<Vec<_>>()
                    );
                }
            }
        }
        assert!(encode_export_request(&resource, &[], 1_000).is_empty());
    }
}
