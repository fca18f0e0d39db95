//! Fuzzing of the parsers that read the server's answers (property tests that nothing panics):
//! real answers of MLflow 3.17.2 with random byte edits, and random bytes. 256 cases per
//! parser by default; `MLFLOW_TRACING_FUZZ_CASES` sets more (`cargo xtask fuzz`).
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use proptest::prelude::*;

use crate::traces::{parse_full_trace_answer, parse_trace_info_answer};
use crate::transport::http_error;

const INFO: &[u8] = include_bytes!("../tests/data/get_trace_info.json");
const FULL: &[u8] = include_bytes!("../tests/data/get_trace_full.json");

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

/// `seed` with up to 8 edits: a byte replaced, a byte removed, or a structural byte inserted.
fn mutated(seed: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    let edit = (
        any::<prop::sample::Index>(),
        0u8..3,
        prop::sample::select(b"{}[]\",:0\\\xff-e.".to_vec()),
    );
    prop::collection::vec(edit, 1..8).prop_map(move |edits| {
        let mut bytes = seed.to_vec();
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

fn answers() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        mutated(INFO),
        mutated(FULL),
        prop::collection::vec(any::<u8>(), 0..512),
    ]
}

#[test]
fn the_seeds_parse() {
    assert!(parse_trace_info_answer(INFO).is_ok());
    assert_eq!(parse_full_trace_answer(FULL).unwrap().data.spans.len(), 4);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn trace_info_answers_never_panic(body in answers()) {
        let _ = parse_trace_info_answer(&body);
    }

    #[test]
    fn full_trace_answers_never_panic(body in answers()) {
        let _ = parse_full_trace_answer(&body);
    }

    #[test]
    fn error_answers_never_panic(status in 100u16..600, body in answers()) {
        let e = http_error("GET", "/api/3.0/mlflow/traces/x", status, &body);
        prop_assert!(!e.to_string().is_empty());
    }
}
