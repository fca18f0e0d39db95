//! `cargo xtask bench e2e`: the end-to-end burst. One fresh local MLflow server; first its
//! ceiling (the exporter's exact requests, encoded beforehand, sent by a plain HTTP client at the
//! exporter's concurrency), then the same traces through the Rust SDK and through the Python
//! SDK, each into its own experiment, what each stored read back with Python's client.

use mlflow_tracing_tests::python;
use mlflow_tracing_tests::server::MlflowServer;

/// The burst: traces × spans per trace, bytes of input and of output per span.
pub(crate) const TRACES: usize = 300;
pub(crate) const SPANS: usize = 10;
pub(crate) const PAYLOAD: usize = 1024;

/// Issue 17's targets for the Rust SDK.
const CALLER_NS_TARGET: f64 = 2_000.0;
const RSS_TARGET: f64 = 15.0 * 1024.0 * 1024.0;
const CEILING_TARGET_PCT: f64 = 95.0;

/// Python's side of the burst, through MLflow's default (async) logging.
const PY_INGEST: &str = r#"
import json, resource, sys, time, mlflow
n_traces, n_spans, size = (int(a) for a in sys.argv[1:4])
payload = "x" * size
t0 = time.perf_counter()
u0 = resource.getrusage(resource.RUSAGE_THREAD)
for i in range(n_traces):
    with mlflow.start_span(name="root", span_type="AGENT") as root:
        root.set_inputs({"q": payload})
        for j in range(1, n_spans):
            with mlflow.start_span(name="step", span_type="TOOL") as s:
                s.set_inputs({"q": payload})
                s.set_outputs({"a": payload})
        root.set_outputs({"a": payload})
caller = time.perf_counter() - t0
u1 = resource.getrusage(resource.RUSAGE_THREAD)
cpu = (u1.ru_utime + u1.ru_stime) - (u0.ru_utime + u0.ru_stime)
mlflow.flush_trace_async_logging()
flushed = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"caller_s": caller, "caller_cpu_s": cpu, "flushed_s": flushed, "spans": n_traces * n_spans, "peak_rss": rss}))
"#;

/// Creates the ceiling's, Rust's and Python's experiments, named after `argv[1]`; prints their
/// ids (`e2e` and `scale`).
pub(crate) const PY_EXPERIMENTS: &str = r#"
import json, sys, time, mlflow
stamp = str(time.time_ns())
print(json.dumps([mlflow.create_experiment(f"{sys.argv[1]}-{k}-{stamp}") for k in ("ceiling", "rust", "python")]))
"#;

/// What the server stored in an experiment (read with Python's client, the same for all).
pub(crate) const PY_COUNT: &str = r#"
import json, sys, mlflow
found = mlflow.search_traces(locations=[sys.argv[1]], return_type="list", max_results=100000)
print(json.dumps({"traces": len(found), "spans": sum(len(t.data.spans) for t in found)}))
"#;

/// One side of the run, as reported.
#[derive(Clone, Debug)]
pub(crate) struct Side {
    pub(crate) name: &'static str,
    pub(crate) sent: f64,
    pub(crate) stored: f64,
    /// Stored spans per second of the whole run (first span to last response).
    pub(crate) rate: f64,
    /// Caller time per span, in ns (none for the ceiling: it has no caller).
    pub(crate) caller_ns: Option<f64>,
    /// The part of it the calling thread spent on a CPU (the rest it waited for one: the
    /// server and the export worker share this machine's cores).
    pub(crate) caller_cpu_ns: Option<f64>,
    pub(crate) peak_rss: f64,
}

impl Side {
    pub(crate) fn loss_pct(&self) -> f64 {
        100.0 * (self.sent - self.stored) / self.sent
    }
}

/// The run: the ceiling, the Rust SDK, the Python SDK.
#[derive(Clone, Debug)]
pub(crate) struct E2e {
    pub(crate) ceiling: Side,
    pub(crate) rust: Side,
    pub(crate) python: Side,
}

impl E2e {
    pub(crate) fn pct_of_ceiling(&self, side: &Side) -> f64 {
        100.0 * side.rate / self.ceiling.rate
    }

    /// The targets the Rust side missed.
    pub(crate) fn missed(&self) -> Vec<String> {
        let mut missed = Vec::new();
        let r = &self.rust;
        if r.loss_pct() > 0.0 {
            missed.push(format!(
                "e2e: the Rust SDK lost {:.1}% of the spans (target: none)",
                r.loss_pct()
            ));
        }
        if let Some(c) = r.caller_ns
            && c > CALLER_NS_TARGET
        {
            missed.push(format!(
                "e2e: caller time {} per span > {}",
                crate::bench::human(c),
                crate::bench::human(CALLER_NS_TARGET)
            ));
        }
        if r.peak_rss > RSS_TARGET {
            missed.push(format!(
                "e2e: peak RSS {:.1} MB > {:.0} MB",
                mb(r.peak_rss),
                mb(RSS_TARGET)
            ));
        }
        let pct = self.pct_of_ceiling(r);
        if pct < CEILING_TARGET_PCT {
            missed.push(format!(
                "e2e: {pct:.0}% of the server's ceiling < {CEILING_TARGET_PCT:.0}%"
            ));
        }
        missed
    }

    /// The table as printed and as written into the report (Markdown).
    pub(crate) fn table(&self) -> String {
        let mut out = format!(
            "{TRACES} traces × {SPANS} spans, {PAYLOAD} B in and out per span, one fresh local MLflow {} server (sqlite, one worker)\n\n\
             | sender | sent | stored | loss | stored spans/s | % of ceiling | caller time per span | of it on a CPU | peak RSS |\n\
             |---|---|---|---|---|---|---|---|---|\n",
            mlflow_tracing_tests::MLFLOW_VERSION
        );
        for side in [&self.ceiling, &self.rust, &self.python] {
            out.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.1} % | {:.0} | {:.0} % | {} | {} | {:.1} MB |\n",
                side.name,
                side.sent,
                side.stored,
                side.loss_pct(),
                side.rate,
                self.pct_of_ceiling(side),
                side.caller_ns
                    .map_or_else(|| "–".to_owned(), crate::bench::human),
                side.caller_cpu_ns
                    .map_or_else(|| "–".to_owned(), crate::bench::human),
                mb(side.peak_rss),
            ));
        }
        if let (Some(r), Some(p)) = (self.rust.caller_ns, self.python.caller_ns) {
            out.push_str(&format!(
                "\nRust vs Python: {:.2}× the stored spans/s, {:.0}× less caller time per span, {:.1}× less memory.\n",
                self.rust.rate / self.python.rate,
                p / r,
                self.python.peak_rss / self.rust.peak_rss
            ));
        }
        out
    }
}

pub(crate) fn mb(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// The last line of `text` that is JSON.
pub(crate) fn json_line(text: &str) -> Result<serde_json::Value, String> {
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("no JSON result in:\n{text}"))
}

fn num(v: &serde_json::Value, key: &str) -> Result<f64, String> {
    v[key]
        .as_f64()
        .ok_or_else(|| format!("e2e: no {key:?} in {v}"))
}

/// Builds a benches example in release mode (before a server starts, so no compilation
/// competes with it); its path.
pub(crate) fn build_example(step: &str, name: &str) -> Result<std::path::PathBuf, String> {
    crate::cargo(
        step,
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            "mlflow-tracing-benches",
            "--example",
            name,
        ],
        &[],
    )?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?;
    Ok(root.join("target/release/examples").join(name))
}

/// Builds and runs a benches example with `args` and `env`; its JSON line.
fn run_example(
    step: &str,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<serde_json::Value, String> {
    let example = build_example(step, name)?;
    let out = std::process::Command::new(&example)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .map_err(|e| format!("{step}: cannot run {}: {e}", example.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{step} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    json_line(&String::from_utf8_lossy(&out.stdout))
}

/// Runs the Rust example in `mode` against the server; its JSON line.
fn rust_example(mode: &str, url: &str, experiment: &str) -> Result<serde_json::Value, String> {
    let sizes = [TRACES.to_string(), SPANS.to_string(), PAYLOAD.to_string()];
    let mut args = vec![mode];
    args.extend(sizes.iter().map(String::as_str));
    run_example(
        &format!("e2e: {mode}"),
        "e2e_ingest",
        &args,
        &[
            ("MLFLOW_TRACKING_URI", url),
            ("MLFLOW_EXPERIMENT_ID", experiment),
        ],
    )
}

/// Runs the burst on a fresh server.
pub(crate) fn run() -> Result<E2e, String> {
    build_example("e2e: build", "e2e_ingest")?;
    let server = MlflowServer::start().map_err(|e| format!("e2e: {e}"))?;
    let url = server.url().to_owned();
    let env = [("MLFLOW_TRACKING_URI", url.as_str())];
    let ids = json_line(&python::run_script_with(PY_EXPERIMENTS, &["e2e"], &env)?)?;
    let id = |i: usize| ids[i].as_str().unwrap_or_default().to_owned();
    let (ceiling_exp, rust_exp, py_exp) = (id(0), id(1), id(2));
    let sent = (TRACES * SPANS) as f64;

    let ceiling = rust_example("ceiling", &url, &ceiling_exp)?;
    let rust = rust_example("sdk", &url, &rust_exp)?;
    eprintln!("==> e2e: Python SDK burst");
    let sizes = [TRACES.to_string(), SPANS.to_string(), PAYLOAD.to_string()];
    let sizes: Vec<&str> = sizes.iter().map(String::as_str).collect();
    let py = json_line(&python::run_script_with(
        PY_INGEST,
        &sizes,
        &[
            ("MLFLOW_TRACKING_URI", &url),
            ("MLFLOW_EXPERIMENT_ID", &py_exp),
        ],
    )?)?;
    let stored = |exp: &str| -> Result<f64, String> {
        num(
            &json_line(&python::run_script_with(PY_COUNT, &[exp], &env)?)?,
            "spans",
        )
    };
    let (ceiling_stored, rust_stored, py_stored) =
        (stored(&ceiling_exp)?, stored(&rust_exp)?, stored(&py_exp)?);
    drop(server);

    let sdk_side = |name, run: &serde_json::Value, stored: f64| -> Result<Side, String> {
        Ok(Side {
            name,
            sent,
            stored,
            rate: stored / num(run, "flushed_s")?,
            caller_ns: Some(num(run, "caller_s")? / sent * 1e9),
            caller_cpu_ns: run["caller_cpu_s"].as_f64().map(|s| s / sent * 1e9),
            peak_rss: num(run, "peak_rss")?,
        })
    };
    let result = E2e {
        ceiling: Side {
            name: "plain HTTP client (ceiling)",
            sent,
            stored: ceiling_stored,
            rate: ceiling_stored / num(&ceiling, "sent_s")?,
            caller_ns: None,
            caller_cpu_ns: None,
            peak_rss: num(&ceiling, "peak_rss")?,
        },
        rust: sdk_side("Rust SDK", &rust, rust_stored)?,
        python: sdk_side("Python SDK", &py, py_stored)?,
    };
    println!("\nend to end: {}", result.table());
    Ok(result)
}

/// Held memory of large traces may be at most this many times their encoded size.
const HELD_TARGET: f64 = 1.5;

/// `held_memory`: the heap a 10,000-span trace and a 50 MB output take, next to their encoded
/// size; the table (Markdown) and the targets missed.
pub(crate) fn held_memory() -> Result<(String, Vec<String>), String> {
    let run = run_example("held memory", "held_memory", &[], &[])?;
    let mut table = String::from(
        "| trace | encoded (OTLP) | held in progress | held finished | × encoded | peak (counted) |\n|---|---|---|---|---|---|\n",
    );
    let mut missed = Vec::new();
    for (key, name) in [
        ("spans_10000", "10,000 spans, 1 KB in/out each"),
        ("output_50mb", "one span, 50 MB output"),
    ] {
        let held = &run[key];
        let encoded = num(held, "encoded")?;
        let finished = num(held, "finished")?;
        let ratio = finished / encoded;
        if ratio > HELD_TARGET {
            missed.push(format!(
                "held memory: {name}: {ratio:.2}× its encoded size > {HELD_TARGET}×"
            ));
        }
        table.push_str(&format!(
            "| {name} | {:.1} MB | {:.1} MB | {:.1} MB | {ratio:.2}× (≤ {HELD_TARGET}×) | {:.1} MB |\n",
            mb(encoded),
            mb(num(held, "in_progress")?),
            mb(finished),
            mb(num(held, "peak")?),
        ));
    }
    println!("\nheld memory (heap counted on the tracing thread):\n\n{table}");
    Ok((table, missed))
}
