//! Property tests: id encodings and Trace JSON / OTLP round trips over arbitrary content.
#![allow(
    clippy::unwrap_used,
    reason = "tests fail by panicking on unexpected values"
)]

use mlflow_tracing::entities::json::to_attribute_json;
use mlflow_tracing::entities::keys;
use mlflow_tracing::entities::{
    MlflowTraceId, SpanEvent, SpanId, SpanStatus, TraceId, TraceInfo, TraceLocation,
};
use mlflow_tracing::{Span, SpanType, Trace};
use proptest::prelude::*;
use serde_json::{Map, Value};

proptest! {
    #[test]
    fn trace_id_encodings_round_trip(v in 1u128..) {
        let id = TraceId::from_int(v);
        prop_assert_eq!(TraceId::from_hex(&id.to_hex()).unwrap(), id);
        prop_assert_eq!(id.to_hex().len(), 32);
        prop_assert_eq!(TraceId::from_base64(&id.to_base64()).unwrap(), id);
        prop_assert_eq!(id.to_base64().len(), 24);
        prop_assert_eq!(TraceId::from_slice(&id.to_bytes()).unwrap(), id);
        let otel: opentelemetry::trace::TraceId = id.into();
        prop_assert_eq!(TraceId::from(otel), id);
        let v3 = MlflowTraceId::v3(id);
        prop_assert_eq!(v3.to_string().parse::<MlflowTraceId>().unwrap(), v3);
        let v4 = MlflowTraceId::v4("cat.schema.prefix", id).unwrap();
        prop_assert_eq!(v4.to_string().parse::<MlflowTraceId>().unwrap(), v4);
    }

    #[test]
    fn span_id_encodings_round_trip(v in 1u64..) {
        let id = SpanId::from_int(v);
        prop_assert_eq!(SpanId::from_hex(&id.to_hex()).unwrap(), id);
        prop_assert_eq!(SpanId::from_hex(&format!("0x{}", id.to_hex())).unwrap(), id);
        prop_assert_eq!(SpanId::from_base64(&id.to_base64()).unwrap(), id);
        prop_assert_eq!(SpanId::from_slice(&id.to_bytes()).unwrap(), id);
    }

    #[test]
    fn arbitrary_text_never_panics_id_parsers(s in ".{0,64}") {
        let _ = TraceId::from_hex(&s);
        let _ = SpanId::from_base64(&s);
        let _ = s.parse::<MlflowTraceId>();
        let _ = Span::from_json(&s);
        let _ = Trace::from_json(&s);
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn arb_event_attrs() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(
        (
            "[a-z.]{1,12}",
            prop_oneof![
                any::<String>().prop_map(Value::String),
                any::<i64>().prop_map(Value::from),
                any::<bool>().prop_map(Value::Bool)
            ],
        ),
        0..4,
    )
    .prop_map(|kv| kv.into_iter().collect())
}

prop_compose! {
    fn arb_span(trace_id: TraceId, index: u64)(
        name in any::<String>(),
        inputs in arb_json(),
        outputs in arb_json(),
        extra in prop::collection::vec(("[a-z_.]{1,16}", arb_json()), 0..4),
        span_type in prop_oneof![Just(SpanType::Llm), Just(SpanType::Tool), any::<String>().prop_map(SpanType::from)],
        start in 1u64..(1u64 << 62),
        duration in 0u64..1_000_000_000_000,
        error in proptest::option::of(any::<String>()),
        events in prop::collection::vec(("[a-z_]{1,10}", arb_event_attrs()), 0..3),
        parent in proptest::option::of(0u64..8),
    ) -> Span {
        let parent = parent.filter(|p| *p < index).map(|p| SpanId::from_int(p + 1));
        let mut b = Span::builder(trace_id, SpanId::from_int(index + 1), name)
            .parent(parent)
            .times(start, Some(start + duration))
            .span_type(&span_type)
            .attribute(keys::span::INPUTS, &inputs).unwrap()
            .attribute(keys::span::OUTPUTS, &outputs).unwrap()
            .status(error.map_or_else(SpanStatus::ok, SpanStatus::error));
        for (k, v) in extra {
            b = b.attribute(k, &v).unwrap();
        }
        for (i, (name, attrs)) in events.into_iter().enumerate() {
            let mut e = SpanEvent::new(name, start + i as u64);
            e.attributes = attrs;
            b = b.event(e);
        }
        b.build()
    }
}

fn arb_trace() -> impl Strategy<Value = Trace> {
    (1u128.., 1usize..6).prop_flat_map(|(tid, n)| {
        let trace_id = TraceId::from_int(tid);
        let spans: Vec<_> = (0..n as u64).map(|i| arb_span(trace_id, i)).collect();
        (
            Just(trace_id),
            spans,
            prop::collection::vec((any::<String>(), any::<String>()), 0..5),
            prop::collection::vec((any::<String>(), any::<String>()), 0..5),
            proptest::option::of(any::<String>()),
        )
            .prop_map(|(trace_id, spans, metadata, tags, client_request_id)| {
                let mut info = TraceInfo::new(
                    MlflowTraceId::v3(trace_id).to_string(),
                    TraceLocation::experiment("42"),
                    0,
                );
                // Keys and values within MLflow's limits, so that nothing is cut on write.
                let cut = |s: String, n: usize| s.chars().take(n).collect::<String>();
                info.trace_metadata = metadata
                    .into_iter()
                    .map(|(k, v)| (cut(k, 250), cut(v, 250)))
                    .collect();
                info.tags = tags
                    .into_iter()
                    .map(|(k, v)| (cut(k, 250), cut(v, 4096)))
                    .collect();
                info.client_request_id = client_request_id;
                let mut trace = Trace::new(info, spans);
                trace.finalize(1000);
                trace.add_size_stats();
                trace
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn trace_json_round_trips(trace in arb_trace()) {
        let text = trace.to_json().unwrap();
        prop_assert!(text.is_ascii(), "Trace.to_json() is ASCII like Python's");
        let back = Trace::from_json(&text).unwrap();
        prop_assert_eq!(&back, &trace);
        prop_assert_eq!(back.to_json().unwrap(), text);
        // Size stats are a pure function of the content.
        prop_assert_eq!(back.size_stats(), trace.size_stats());
    }

    #[test]
    fn spans_round_trip_through_otlp(trace in arb_trace()) {
        for span in &trace.data.spans {
            let back = Span::from_otlp(&span.to_otlp(), None).unwrap();
            prop_assert_eq!(&back, span);
        }
    }

    #[test]
    fn attribute_json_is_parseable_json(v in arb_json()) {
        let text = to_attribute_json(&v).unwrap();
        let back: Value = mlflow_tracing::entities::json::parse_json(&text).unwrap();
        prop_assert_eq!(back, v);
    }
}
