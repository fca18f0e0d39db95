//! Fuzzing of every parser that reads outside input (property tests that nothing panics and
//! every error is an `Err`): Trace JSON, span dicts of all three layouts, OTLP protobuf
//! requests, ids, `traceparent`. Seeds are real payloads of MLflow 3.17.2 (`data/fixtures`),
//! edited at random, next to random input. 256 cases per parser in CI;
//! `MLFLOW_TRACING_FUZZ_CASES` sets more (`cargo xtask fuzz` runs 1,000,000). The client's
//! answer parsers are fuzzed the same way in its own crate (`src/fuzz.rs`).
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use mlflow_tracing::distributed::continue_trace;
use mlflow_tracing::entities::otlp::{export_request, sdk_resource};
use mlflow_tracing::entities::{MlflowTraceId, SpanId, TraceId};
use mlflow_tracing::testing::Capture;
use mlflow_tracing::{Span, Trace};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use proptest::prelude::*;
use prost::Message as _;

const TRACES: [&str; 3] = [
    include_str!("../../data/fixtures/traces/agent_retriever_llm.json"),
    include_str!("../../data/fixtures/traces/non_ascii.json"),
    include_str!("../../data/fixtures/traces/tool_exception.json"),
];
const SPANS: [&str; 3] = [
    include_str!("../../data/fixtures/legacy/span_current.json"),
    include_str!("../../data/fixtures/legacy/span_v2_context.json"),
    include_str!("../../data/fixtures/legacy/span_v3_5_0_hex.json"),
];
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn config() -> ProptestConfig {
    let cases = std::env::var("MLFLOW_TRACING_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One of `seeds` with up to 8 edits: a byte replaced, removed, or a structural byte inserted.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let edit = (
        any::<prop::sample::Index>(),
        0u8..3,
        prop::sample::select(b"{}[]\",:0\\\xff-e.\x00\x08".to_vec()),
    );
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit, 1..8),
    )
        .prop_map(|(seed, edits)| {
            let mut bytes = seed;
            for (at, op, byte) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => {
                        bytes.remove(i);
                    }
                    _ => bytes.insert(i, byte),
                }
            }
            bytes
        })
}

fn text_of(seeds: &[&str]) -> impl Strategy<Value = String> {
    let seeds: Vec<Vec<u8>> = seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
    prop_oneof![
        mutated(seeds).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ".{0,256}",
    ]
}

/// The fixture traces' spans as OTLP protobuf requests.
fn otlp_seeds() -> Vec<Vec<u8>> {
    TRACES
        .iter()
        .map(|t| {
            let trace = Trace::from_json(t).unwrap();
            export_request(sdk_resource("3.17.2"), trace.data.spans.iter()).encode_to_vec()
        })
        .collect()
}

#[test]
fn the_seeds_parse() {
    for t in TRACES {
        Trace::from_json(t).unwrap();
    }
    for s in SPANS {
        Span::from_json(s).unwrap();
    }
    for bytes in otlp_seeds() {
        ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    }
    Capture::new()
        .run(|| continue_trace([("traceparent", TRACEPARENT)]))
        .unwrap();
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn trace_json_never_panics(text in text_of(&TRACES)) {
        let _ = Trace::from_json(&text);
        let _ = Trace::from_json_bytes(text.as_bytes());
    }

    #[test]
    fn span_dicts_never_panic(text in text_of(&SPANS)) {
        let _ = Span::from_json(&text);
    }

    #[test]
    fn otlp_protobuf_never_panics(
        bytes in prop_oneof![mutated(otlp_seeds()), prop::collection::vec(any::<u8>(), 0..512)]
    ) {
        if let Ok(request) = ExportTraceServiceRequest::decode(bytes.as_slice()) {
            for span in request
                .resource_spans
                .iter()
                .flat_map(|r| r.scope_spans.iter())
                .flat_map(|s| s.spans.iter())
            {
                let _ = Span::from_otlp(span, None);
                let _ = Span::from_otlp(span, Some("catalog.schema.table"));
            }
        }
    }

    #[test]
    fn ids_never_panic(text in text_of(&["tr-0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"])) {
        let _ = TraceId::from_hex(&text);
        let _ = SpanId::from_hex(&text);
        let _ = text.parse::<MlflowTraceId>();
    }

    #[test]
    fn traceparent_never_panics(
        header in text_of(&[TRACEPARENT]),
        state in text_of(&["congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"]),
    ) {
        let capture = Capture::new();
        let _ = capture.run(|| {
            continue_trace([("traceparent", header.as_str()), ("tracestate", state.as_str())])
                .map(|remote| drop(remote.attach()))
        });
    }
}
