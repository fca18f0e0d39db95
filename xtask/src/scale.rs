//! `cargo xtask bench scale`: many producers into one MLflow server on PostgreSQL with four
//! workers. Four producer processes × eight threads, each thread a burst of traces (10 spans,
//! 1 KB in and out); first the server's ceiling (the exporter's exact requests, pre-encoded,
//! from four plain HTTP senders at the exporter's concurrency), then this SDK, then the Python
//! SDK, each into its own experiment, in one run. Reports stored/sent, loss, stored spans/s, %
//! of the ceiling and, for this SDK, p50/p99 of the time from a root's end until the server has
//! the trace (every 10th trace of each thread, polled). Targets: no loss, ≥ 90 % of the ceiling.

use std::process::{Command, Stdio};
use std::time::Instant;

use mlflow_tracing_tests::postgres::postgres_server;
use mlflow_tracing_tests::python;

use crate::e2e::json_line;

const PROCESSES: usize = 4;
const THREADS: usize = 8;
const TRACES_PER_THREAD: usize = 20;
const SPANS: usize = 10;
const SAMPLE_EVERY: usize = 10;
const TARGET_PCT: f64 = 90.0;

/// The Python SDK's producer: `threads` threads of `traces` traces each.
const PY_PRODUCER: &str = r#"
import json, sys, threading, time, mlflow
threads, traces, spans = (int(a) for a in sys.argv[1:4])
payload = "x" * 1024
def work():
    for i in range(traces):
        with mlflow.start_span(name="root", span_type="AGENT") as root:
            root.set_inputs({"q": payload})
            for j in range(1, spans):
                with mlflow.start_span(name="step", span_type="TOOL") as s:
                    s.set_inputs({"q": payload})
                    s.set_outputs({"a": payload})
            root.set_outputs({"a": payload})
t0 = time.perf_counter()
ts = [threading.Thread(target=work) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
mlflow.flush_trace_async_logging()
print(json.dumps({"flushed_s": time.perf_counter() - t0}))
"#;

/// Runs `PROCESSES` copies of a command at once; each one's JSON line.
fn all_at_once(make: impl Fn() -> Command) -> Result<Vec<serde_json::Value>, String> {
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            make()
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "a producer failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            json_line(&String::from_utf8_lossy(&out.stdout))
        })
        .collect()
}

fn max_of(runs: &[serde_json::Value], key: &str) -> f64 {
    runs.iter()
        .filter_map(|r| r[key].as_f64())
        .fold(0.0, f64::max)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(crate) fn run() -> Result<Vec<String>, String> {
    let example = crate::e2e::build_example("scale: build", "e2e_ingest")?;
    eprintln!("==> scale: PostgreSQL and an MLflow server with four workers");
    let (server, _db) = postgres_server()?;
    let url = server.url().to_owned();
    let env = [("MLFLOW_TRACKING_URI", url.as_str())];
    let ids = json_line(&python::run_script_with(
        crate::e2e::PY_EXPERIMENTS,
        &["scale"],
        &env,
    )?)?;
    let id = |i: usize| ids[i].as_str().unwrap_or_default().to_owned();
    let (ceiling_exp, rust_exp, py_exp) = (id(0), id(1), id(2));
    let per_process = THREADS * TRACES_PER_THREAD;
    let sent = (PROCESSES * per_process * SPANS) as f64;

    eprintln!("==> scale: the server's ceiling ({PROCESSES} plain HTTP senders)");
    let ceiling = all_at_once(|| {
        let mut c = Command::new(&example);
        c.args([
            "ceiling",
            &per_process.to_string(),
            &SPANS.to_string(),
            "1024",
        ])
        .env("MLFLOW_TRACKING_URI", &url)
        .env("MLFLOW_EXPERIMENT_ID", &ceiling_exp);
        c
    })?;
    eprintln!("==> scale: this SDK ({PROCESSES} processes × {THREADS} threads)");
    let started = Instant::now();
    let rust = all_at_once(|| {
        let mut c = Command::new(&example);
        c.args([
            "sdk",
            &TRACES_PER_THREAD.to_string(),
            &SPANS.to_string(),
            "1024",
            &THREADS.to_string(),
            &SAMPLE_EVERY.to_string(),
        ])
        .env("MLFLOW_TRACKING_URI", &url)
        .env("MLFLOW_EXPERIMENT_ID", &rust_exp);
        c
    })?;
    let rust_wall = started.elapsed().as_secs_f64();
    eprintln!("==> scale: the Python SDK ({PROCESSES} processes × {THREADS} threads)");
    let py_python = python::mlflow_python()?;
    let py = all_at_once(|| {
        let mut c = Command::new(py_python);
        c.arg("-c")
            .arg(PY_PRODUCER)
            .args([
                THREADS.to_string(),
                TRACES_PER_THREAD.to_string(),
                SPANS.to_string(),
            ])
            .env("MLFLOW_TRACKING_URI", &url)
            .env("MLFLOW_EXPERIMENT_ID", &py_exp);
        c
    })?;
    let stored = |exp: &str| -> Result<f64, String> {
        json_line(&python::run_script_with(
            crate::e2e::PY_COUNT,
            &[exp],
            &env,
        )?)?["spans"]
            .as_f64()
            .ok_or_else(|| "no count".to_owned())
    };
    let (c_stored, r_stored, p_stored) =
        (stored(&ceiling_exp)?, stored(&rust_exp)?, stored(&py_exp)?);
    drop(server);

    let c_rate = c_stored / max_of(&ceiling, "sent_s");
    let r_rate = r_stored / max_of(&rust, "flushed_s");
    let p_rate = p_stored / max_of(&py, "flushed_s");
    let mut latencies: Vec<f64> = rust
        .iter()
        .flat_map(|r| {
            r["latencies_ms"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.as_f64())
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let loss = |stored: f64| 100.0 * (sent - stored) / sent;
    println!(
        "\nscale: {PROCESSES} processes × {THREADS} threads × {TRACES_PER_THREAD} traces × {SPANS} spans (1 KB in/out), one MLflow {} server on PostgreSQL, 4 workers\n\n\
         | sender | sent | stored | loss | stored spans/s | % of ceiling | root end → stored, p50 / p99 |\n|---|---|---|---|---|---|---|",
        mlflow_tracing_tests::MLFLOW_VERSION
    );
    println!(
        "| plain HTTP (ceiling) | {sent:.0} | {c_stored:.0} | {:.1} % | {c_rate:.0} | 100 % | – |",
        loss(c_stored)
    );
    println!(
        "| Rust SDK | {sent:.0} | {r_stored:.0} | {:.1} % | {r_rate:.0} | {:.0} % | {:.0} ms / {:.0} ms ({} samples) |",
        loss(r_stored),
        100.0 * r_rate / c_rate,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len()
    );
    println!(
        "| Python SDK | {sent:.0} | {p_stored:.0} | {:.1} % | {p_rate:.0} | {:.0} % | – |",
        loss(p_stored),
        100.0 * p_rate / c_rate
    );
    eprintln!("(the Rust producers' wall time: {rust_wall:.1} s)");
    let mut missed = Vec::new();
    if r_stored < sent {
        missed.push(format!("scale: the Rust SDK lost {:.1}%", loss(r_stored)));
    }
    if 100.0 * r_rate / c_rate < TARGET_PCT {
        missed.push(format!(
            "scale: {:.0}% of the ceiling < {TARGET_PCT:.0}%",
            100.0 * r_rate / c_rate
        ));
    }
    Ok(missed)
}
