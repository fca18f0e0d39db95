//! The Rust side of `cargo xtask bench e2e`: a burst of traces (spans per trace and payload
//! size from the arguments) into the MLflow server at `MLFLOW_TRACKING_URI`, experiment
//! `MLFLOW_EXPERIMENT_ID`, through the SDK's default async path. Prints one JSON line: caller
//! time, time until everything was flushed, and the export counters.
#![expect(clippy::print_stdout, reason = "reports to xtask on stdout")]

use std::time::{Duration, Instant};

use mlflow_tracing::{TracerBuilder, start_span};
use serde_json::json;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (traces, spans, size) = (arg(1, 300), arg(2, 10), arg(3, 1024));
    let payload = "x".repeat(size);
    let guard = mlflow_tracing::init(TracerBuilder::from_env()?)?;
    let started = Instant::now();
    for _ in 0..traces {
        let root = start_span("root")
            .span_type("AGENT")
            .inputs(&json!({"q": payload}))
            .start();
        for j in 1..spans {
            let child = start_span(format!("step{j}"))
                .span_type("TOOL")
                .inputs(&json!({"q": payload}))
                .start();
            child.set_outputs(&json!({"a": payload}));
        }
        root.set_outputs(&json!({"a": payload}));
    }
    let caller = started.elapsed();
    guard.tracer().force_flush(Duration::from_secs(600))?;
    let flushed = started.elapsed();
    let stats = guard.export_stats().unwrap_or_default();
    println!(
        "{}",
        json!({
            "caller_s": caller.as_secs_f64(),
            "flushed_s": flushed.as_secs_f64(),
            "spans": traces * spans,
            "traces_failed": stats.failed,
            "traces_dropped": stats.dropped_queue_full,
        })
    );
    drop(guard);
    Ok(())
}
