//! `cargo xtask bench [filter]`: runs the criterion benches, then prints each SDK measurement
//! next to its bare OpenTelemetry (or `serde_json`) counterpart from the same run, with the ratio
//! and the target where there is one; then (without a filter, or with `e2e`) the end-to-end
//! burst: the same traces ingested into one local MLflow server by the Rust SDK and by the
//! Python SDK, with stored spans/s, caller cost per span, loss and the ratios.

use std::path::Path;

use mlflow_tracing_tests::python;
use mlflow_tracing_tests::server::MlflowServer;

/// The end-to-end burst: traces × spans per trace, bytes of input and of output per span.
const E2E_TRACES: usize = 300;
const E2E_SPANS: usize = 10;
const E2E_PAYLOAD: usize = 1024;

/// Python's side of the burst, through MLflow's default (async) logging.
const PY_INGEST: &str = r#"
import json, sys, time, mlflow
n_traces, n_spans, size = (int(a) for a in sys.argv[1:4])
payload = "x" * size
t0 = time.perf_counter()
for i in range(n_traces):
    with mlflow.start_span(name="root", span_type="AGENT") as root:
        root.set_inputs({"q": payload})
        for j in range(1, n_spans):
            with mlflow.start_span(name=f"step{j}", span_type="TOOL") as s:
                s.set_inputs({"q": payload})
                s.set_outputs({"a": payload})
        root.set_outputs({"a": payload})
caller = time.perf_counter() - t0
mlflow.flush_trace_async_logging()
flushed = time.perf_counter() - t0
print(json.dumps({"caller_s": caller, "flushed_s": flushed, "spans": n_traces * n_spans}))
"#;

/// Creates the two experiments; prints their ids.
const PY_EXPERIMENTS: &str = r#"
import json, time, mlflow
stamp = str(time.time_ns())
print(json.dumps([mlflow.create_experiment("e2e-rust-" + stamp), mlflow.create_experiment("e2e-python-" + stamp)]))
"#;

/// What the server stored in an experiment (read with Python's client, the same for both).
const PY_COUNT: &str = r#"
import json, sys, mlflow
found = mlflow.search_traces(locations=[sys.argv[1]], return_type="list")
print(json.dumps({"traces": len(found), "spans": sum(len(t.data.spans) for t in found)}))
"#;

/// (group, SDK bench, baseline bench, target ratio).
const PAIRS: &[(&str, &str, &str, Option<f64>)] = &[
    ("span", "mlflow_bare", "otel_sdk_bare", None),
    ("span", "mlflow_1kb", "otel_sdk_1kb", Some(2.0)),
    ("span", "mlflow_macro_1kb", "otel_sdk_1kb", Some(1.5)),
    ("trace", "mlflow_1kb", "otel_sdk_1kb", None),
    ("json", "mlflow_1kb", "serde_json_1kb", None),
    // A traced stream of 1,000 items next to the same items recorded by hand (issue 16).
    ("stream", "traced", "hand_written", Some(2.0)),
    // The tracing layer next to tracing-opentelemetry with an in-memory exporter (issue 15).
    ("layer", "mlflow", "tracing_opentelemetry", Some(1.0)),
    // Filtered out, the layer adds nothing to tracing-subscriber's per-layer filtering...
    (
        "layer",
        "filtered_out",
        "filtered_out_noop_layer",
        Some(1.05),
    ),
    // ...which itself costs this much over a registry with no layer.
    ("layer", "filtered_out", "tracing_alone", None),
];

/// (group, bench, target median in ns).
const ABSOLUTE: &[(&str, &str, f64)] = &[
    ("runtime", "enqueue", 200.0),
    ("runtime", "enqueue_2_threads", f64::INFINITY),
    ("runtime", "batcher_throughput_per_item", f64::INFINITY),
    // Issue 17: a `#[trace]` call with tracing disabled (1 KB argument, empty body).
    ("disabled", "macro_1kb", 50.0),
    // Issue 17: a one-span trace on the caller's thread, the worker finalizing it.
    ("trace", "mlflow_deferred_1kb", 3_000.0),
];

/// A criterion estimate (`"mean"` or `"median"`, in ns) of the latest run of `group/bench`.
fn estimate_ns(root: &Path, group: &str, bench: &str, statistic: &str) -> Option<f64> {
    let path = root
        .join("target/criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json[statistic]["point_estimate"].as_f64()
}

fn human(ns: f64) -> String {
    if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn json_line(text: &str) -> Result<serde_json::Value, String> {
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("no JSON result in:\n{text}"))
}

/// Runs the end-to-end burst on both SDKs against one local server; the missed targets.
fn e2e() -> Result<Vec<String>, String> {
    let server = MlflowServer::start().map_err(|e| format!("e2e: {e}"))?;
    let url = server.url().to_owned();
    let env = [("MLFLOW_TRACKING_URI", url.as_str())];
    let ids = json_line(&python::run_script_with(PY_EXPERIMENTS, &[], &env)?)?;
    let (rust_exp, py_exp) = (
        ids[0].as_str().unwrap_or_default().to_owned(),
        ids[1].as_str().unwrap_or_default().to_owned(),
    );
    let sizes = [
        E2E_TRACES.to_string(),
        E2E_SPANS.to_string(),
        E2E_PAYLOAD.to_string(),
    ];
    let sizes: Vec<&str> = sizes.iter().map(String::as_str).collect();

    let mut args = vec![
        "run",
        "--release",
        "--quiet",
        "-p",
        "mlflow-tracing-benches",
        "--example",
        "e2e_ingest",
        "--",
    ];
    args.extend(&sizes);
    let out = crate::cargo_command(
        "e2e: Rust SDK burst",
        &args,
        &[
            ("MLFLOW_TRACKING_URI", &url),
            ("MLFLOW_EXPERIMENT_ID", &rust_exp),
        ],
    )?
    .output()
    .map_err(|e| format!("e2e: cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "e2e: the Rust burst failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let rust = json_line(&String::from_utf8_lossy(&out.stdout))?;
    eprintln!("==> e2e: Python SDK burst");
    let py = json_line(&python::run_script_with(
        PY_INGEST,
        &sizes,
        &[
            ("MLFLOW_TRACKING_URI", &url),
            ("MLFLOW_EXPERIMENT_ID", &py_exp),
        ],
    )?)?;
    let rust_stored = json_line(&python::run_script_with(PY_COUNT, &[&rust_exp], &env)?)?;
    let py_stored = json_line(&python::run_script_with(PY_COUNT, &[&py_exp], &env)?)?;
    drop(server);

    let sent = (E2E_TRACES * E2E_SPANS) as f64;
    let row = |name: &str, run: &serde_json::Value, stored: &serde_json::Value| {
        let spans = stored["spans"].as_f64().unwrap_or(0.0);
        let flushed = run["flushed_s"].as_f64().unwrap_or(f64::NAN);
        let caller = run["caller_s"].as_f64().unwrap_or(f64::NAN) / sent * 1e9;
        let rate = spans / flushed;
        let loss = 100.0 * (sent - spans) / sent;
        println!(
            "{name:<10} {sent:>6} {spans:>7} {loss:>6.1}% {rate:>10.0} {:>14}",
            human(caller)
        );
        (rate, caller, loss)
    };
    println!(
        "\nend to end: {E2E_TRACES} traces × {E2E_SPANS} spans, {E2E_PAYLOAD} B in and out per span, one local MLflow {} server\n{:<10} {:>6} {:>7} {:>7} {:>10} {:>14}",
        mlflow_tracing_tests::MLFLOW_VERSION,
        "sdk",
        "sent",
        "stored",
        "loss",
        "spans/s",
        "caller/span"
    );
    let (r_rate, r_caller, r_loss) = row("rust", &rust, &rust_stored);
    let (p_rate, p_caller, _) = row("python", &py, &py_stored);
    println!(
        "ratio: {:.2}× the stored spans/s, {:.1}× less caller time per span (rust vs python)",
        r_rate / p_rate,
        p_caller / r_caller
    );
    let mut missed = Vec::new();
    if r_loss > 0.0 {
        missed.push(format!(
            "e2e: the Rust SDK lost {r_loss:.1}% of the spans (target: none)"
        ));
    }
    Ok(missed)
}

pub(crate) fn run(filter: Option<&str>) -> Result<(), String> {
    if filter == Some("e2e") {
        let missed = e2e()?;
        return if missed.is_empty() {
            Ok(())
        } else {
            Err(format!("benchmark targets missed: {}", missed.join("; ")))
        };
    }
    let mut args = vec!["bench", "--package", "mlflow-tracing-benches", "--"];
    if let Some(f) = filter {
        args.push(f);
    }
    crate::cargo("bench", &args, &[])?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?;
    println!(
        "\n{:<26} {:>12} {:>12} {:>8}  target",
        "benchmark", "sdk", "baseline", "ratio"
    );
    let mut missed = Vec::new();
    let wanted_group = filter.map(|f| f.split('/').next().unwrap_or(f).to_owned());
    for (group, sdk, base, target) in PAIRS {
        if wanted_group
            .as_deref()
            .is_some_and(|g| !g.is_empty() && g != *group)
        {
            continue; // not measured in this run
        }
        let (Some(s), Some(b)) = (
            estimate_ns(root, group, sdk, "mean"),
            estimate_ns(root, group, base, "mean"),
        ) else {
            continue;
        };
        let ratio = s / b;
        let verdict = match target {
            Some(t) if ratio <= *t => format!("≤ {t}× ok"),
            Some(t) => {
                missed.push(format!("{group}/{sdk}: {ratio:.2}× > {t}×"));
                format!("≤ {t}× MISSED")
            }
            None => String::new(),
        };
        println!(
            "{:<26} {:>12} {:>12} {:>7.2}×  {verdict}",
            format!("{group}/{sdk}"),
            human(s),
            human(b),
            ratio
        );
    }
    println!();
    for (group, bench, target) in ABSOLUTE {
        if wanted_group
            .as_deref()
            .is_some_and(|g| !g.is_empty() && g != *group)
        {
            continue;
        }
        let Some(median) = estimate_ns(root, group, bench, "median") else {
            continue;
        };
        let verdict = if target.is_infinite() {
            String::new()
        } else if median <= *target {
            format!("median ≤ {} ok", human(*target))
        } else {
            missed.push(format!(
                "{group}/{bench}: median {} > {}",
                human(median),
                human(*target)
            ));
            format!("median ≤ {} MISSED", human(*target))
        };
        println!(
            "{:<26} {:>12} (median)  {verdict}",
            format!("{group}/{bench}"),
            human(median)
        );
    }
    if filter.is_none() {
        missed.extend(e2e()?);
    }
    if missed.is_empty() {
        Ok(())
    } else {
        Err(format!("benchmark targets missed: {}", missed.join("; ")))
    }
}
