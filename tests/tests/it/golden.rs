//! Golden tests on payloads recorded from MLflow 3.17.2 (tests/data/fixtures).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking on unexpected values"
)]

use crate::common::{SCENARIOS, SERVER_SPAN_ATTRIBUTES, fixture, otlp_spans_from_message_json};
use mlflow_tracing::entities::keys;
use mlflow_tracing::entities::opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use mlflow_tracing::entities::opentelemetry_proto::tonic::trace::v1 as proto;
use mlflow_tracing::entities::{SpanStatusCode, TraceState};
use mlflow_tracing::{Span, Trace};
use serde_json::Value;

/// `Trace.to_json()` of every recorded trace parses and re-serialises to the same bytes.
#[test]
fn trace_json_round_trips_byte_for_byte() {
    for name in SCENARIOS {
        let text = fixture(&format!("traces/{name}.json"));
        let trace = Trace::from_json(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(trace.to_json().unwrap(), text, "{name}");
        assert!(!trace.data.spans.is_empty());
    }
}

/// The read-back spans decode to what the scenarios set.
#[test]
fn recorded_traces_read_back_typed() {
    let t = Trace::from_json(&fixture("traces/agent_retriever_llm.json")).unwrap();
    assert_eq!(t.info.state, TraceState::Ok);
    assert_eq!(t.info.experiment_id(), Some("1"));
    assert_eq!(t.info.execution_duration, Some(66));
    assert_eq!(t.info.token_usage().unwrap().total_tokens, 48);
    let llm = t
        .data
        .spans
        .iter()
        .find(|s| s.name() == "chat_completion")
        .unwrap();
    assert_eq!(llm.span_type(), Some(mlflow_tracing::SpanType::Llm));
    assert_eq!(llm.function_name().as_deref(), Some("chat_completion"));
    assert_eq!(
        llm.log_level(),
        Some(mlflow_tracing::entities::SpanLogLevel::Info)
    );
    assert_eq!(llm.token_usage().unwrap().input_tokens, 36);
    assert_eq!(llm.inputs().unwrap()["messages"][1]["role"], "user");
    assert_eq!(
        llm.request_id().as_deref(),
        Some("tr-fccc8c74cb5dba417bfe559a4bc269b1")
    );
    assert_eq!(llm.parent_id(), t.data.root_span().map(Span::span_id));

    let t = Trace::from_json(&fixture("traces/tool_exception.json")).unwrap();
    let tool = t
        .data
        .spans
        .iter()
        .find(|s| s.name() == "get_weather")
        .unwrap();
    assert_eq!(tool.status().code, SpanStatusCode::Error);
    assert_eq!(
        tool.status().message,
        "ConnectionError: weather service unavailable for Atlantis"
    );
    assert_eq!(tool.events()[0].name, "exception");
    assert_eq!(
        tool.events()[0].attributes["exception.type"],
        "ConnectionError"
    );
    assert_eq!(tool.outputs(), None);
    assert_eq!(
        tool.log_level(),
        Some(mlflow_tracing::entities::SpanLogLevel::Error)
    );
    assert_eq!(t.info.state, TraceState::Ok);

    let t = Trace::from_json(&fixture("traces/non_ascii.json")).unwrap();
    assert_eq!(
        t.data.spans[0].inputs().unwrap()["question"],
        "北京今天的天气怎么样？☀️🌧️"
    );
}

/// Removes what the server adds on read-back, leaving the client's trace as it was at root end.
fn client_side_trace(readback: &str, reset_derived: bool) -> Trace {
    let mut doc: Value = serde_json::from_str(readback).unwrap();
    for span in doc["data"]["spans"].as_array_mut().unwrap() {
        let attrs = span["attributes"].as_object_mut().unwrap();
        for k in SERVER_SPAN_ATTRIBUTES {
            attrs.shift_remove(k);
        }
    }
    let mut trace: Trace = serde_json::from_value(doc).unwrap();
    let info = &mut trace.info;
    for k in [keys::tag::ARTIFACT_LOCATION, keys::tag::SPANS_LOCATION] {
        info.tags.shift_remove(k);
    }
    for k in [keys::metadata::INFO_FINALIZED, keys::metadata::COST] {
        info.trace_metadata.shift_remove(k);
    }
    if reset_derived {
        for k in [
            keys::metadata::SIZE_STATS,
            keys::metadata::SIZE_BYTES,
            keys::metadata::INPUTS,
            keys::metadata::OUTPUTS,
            keys::metadata::TOKEN_USAGE,
        ] {
            info.trace_metadata.shift_remove(k);
        }
        info.request_preview = None;
        info.response_preview = None;
        info.state = TraceState::InProgress;
        info.execution_duration = None;
        info.request_time = 0;
    }
    trace
}

fn reorder_like(map: &mut mlflow_tracing::entities::StringMap, order: &Value) {
    let order: Vec<&String> = order.as_object().unwrap().keys().collect();
    map.sort_by_cached_key(|k, _| order.iter().position(|o| *o == k).unwrap_or(usize::MAX));
}

/// Rebuilding each trace's StartTraceV3 body from its spans (previews, truncation, token usage,
/// state, duration, size stats) gives the exact bytes Python sent.
#[test]
fn start_trace_v3_body_is_rebuilt_exactly() {
    for name in SCENARIOS {
        let mut trace = client_side_trace(&fixture(&format!("traces/{name}.json")), true);
        trace.finalize(keys::PREVIEW_MAX_LENGTH_OSS);
        trace.add_size_stats().unwrap();
        let want = fixture(&format!("traces/{name}.start_trace_v3.json"));
        let want_doc: Value = serde_json::from_str(&want).unwrap();
        let want_info = &want_doc["trace"]["trace_info"];
        reorder_like(&mut trace.info.trace_metadata, &want_info["trace_metadata"]);
        reorder_like(&mut trace.info.tags, &want_info["tags"]);
        assert_eq!(trace.info.start_trace_v3_body().unwrap(), want, "{name}");
    }
}

/// Size stats of a recorded trace equal what Python computed (the read-back info carries them).
#[test]
fn size_stats_match_python() {
    for name in SCENARIOS {
        let readback = fixture(&format!("traces/{name}.json"));
        let recorded = Trace::from_json(&readback).unwrap().info.trace_metadata
            [keys::metadata::SIZE_STATS]
            .clone();
        let mut trace = client_side_trace(&readback, false);
        trace.add_size_stats().unwrap();
        assert_eq!(
            trace.info.trace_metadata[keys::metadata::SIZE_STATS],
            recorded,
            "{name}"
        );
    }
}

fn normalized(mut s: proto::Span) -> proto::Span {
    s.status.get_or_insert_with(Default::default);
    s
}

/// Span -> OTLP gives the request Python sent, and OTLP -> Span gives what the server stored.
#[test]
fn otlp_conversions_match_recorded_requests() {
    for name in SCENARIOS {
        let readback = client_side_trace(&fixture(&format!("traces/{name}.json")), false);
        let sent = otlp_spans_from_message_json(&fixture(&format!("traces/{name}.otlp.json")));
        assert_eq!(sent.len(), readback.data.spans.len(), "{name}");
        for otlp in sent {
            let stored = readback
                .data
                .spans
                .iter()
                .find(|s| s.span_id().to_bytes().as_slice() == otlp.span_id.as_slice())
                .unwrap_or_else(|| panic!("{name}: span {:?} not read back", otlp.name));
            assert_eq!(
                normalized(stored.to_otlp()),
                normalized(otlp.clone()),
                "{name}/{}: to_otlp",
                otlp.name
            );
            assert_eq!(
                &Span::from_otlp(&otlp, None).unwrap(),
                stored,
                "{name}/{}: from_otlp",
                otlp.name
            );
        }
    }
}

/// The OTLP request built for a trace encodes to protobuf and decodes back unchanged, and the
/// non-ASCII text travels as UTF-8.
#[test]
fn otlp_export_request_round_trips_protobuf() {
    use prost::Message as _;
    let trace = Trace::from_json(&fixture("traces/non_ascii.json")).unwrap();
    let req = mlflow_tracing::entities::otlp::export_request(
        mlflow_tracing::entities::otlp::sdk_resource("0.1.0"),
        &trace.data.spans,
    );
    let bytes = req.encode_to_vec();
    assert!(bytes.windows("北京".len()).any(|w| w == "北京".as_bytes()));
    let back = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, req);
    let span = &back.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(&Span::from_otlp(span, None).unwrap(), &trace.data.spans[0]);
}

/// Each historical `Span.to_dict()` layout reads as MLflow 3.17.2's `Span.from_dict` reads it.
#[test]
fn legacy_span_layouts_read_like_python() {
    for layout in ["span_current", "span_v3_5_0_hex", "span_v2_context"] {
        let span = Span::from_json(&fixture(&format!("legacy/{layout}.json")))
            .unwrap_or_else(|e| panic!("{layout}: {e}"));
        let want = fixture(&format!("legacy/{layout}.from_dict.json"));
        assert_eq!(span.to_json().unwrap(), want, "{layout}");
        assert_eq!(span.status().message, "partial results: index timeout");
        assert_eq!(span.events()[0].attributes["attempt"], 1);
    }
    // V2: the MLflow trace id comes from the attribute, the OTel id from `context`.
    let v2 = Span::from_json(&fixture("legacy/span_v2_context.json")).unwrap();
    assert_eq!(
        v2.request_id().as_deref(),
        Some("fbc6ce3922864a79b9038a54f825c361")
    );
    assert_eq!(v2.trace_id().to_hex(), "7175ee2bb612eac6a877143df5d55f29");
}

/// Like MLflow, a span without `mlflow.traceRequestId` is rejected with a clear error.
#[test]
fn span_without_request_id_is_rejected() {
    let mut doc: Value = serde_json::from_str(&fixture("legacy/span_current.json")).unwrap();
    doc["attributes"]
        .as_object_mut()
        .unwrap()
        .shift_remove("mlflow.traceRequestId");
    let err = Span::from_json(&doc.to_string()).unwrap_err().to_string();
    assert!(err.contains("mlflow.traceRequestId"), "{err}");
}
