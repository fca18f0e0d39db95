//! `cargo xtask fuzz [cases]`: long fuzzing campaigns of every parser that reads outside input
//! (the property tests of `tests/tests/it/fuzz.rs` and of the client's `src/fuzz.rs`), with
//! `cases` per parser (default 1,000,000), in release mode. Not part of `ci`, which runs 256
//! cases per parser.

/// Cases per parser when none is given.
const DEFAULT_CASES: u64 = 1_000_000;

pub(crate) fn run(cases: Option<&str>) -> Result<(), String> {
    let cases = match cases {
        Some(n) => n
            .parse::<u64>()
            .map_err(|_| format!("fuzz: {n:?} is not a number of cases"))?,
        None => DEFAULT_CASES,
    };
    let cases = cases.to_string();
    let env = [("MLFLOW_TRACING_FUZZ_CASES", cases.as_str())];
    crate::cargo(
        "fuzz: the client's answer parsers",
        &[
            "test",
            "--release",
            "-p",
            "mlflow-tracing-client",
            "--lib",
            "fuzz::",
        ],
        &env,
    )?;
    crate::cargo(
        "fuzz: trace JSON, span dicts, OTLP, ids, traceparent",
        &[
            "test",
            "--release",
            "-p",
            "mlflow-tracing-tests",
            "--test",
            "it",
            "fuzz::",
        ],
        &env,
    )?;
    println!("fuzz: {cases} cases per parser, no panic");
    Ok(())
}
