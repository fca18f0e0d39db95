//! `cargo xtask bench e2e`: the end-to-end burst. One fresh local MLflow server; its ceiling
//! (the exporter's exact requests, encoded beforehand, sent by a plain HTTP client at the
//! exporter's concurrency) and the same traces through the Rust SDK, twice each in the order
//! ceiling, Rust, Rust, ceiling (so a server that speeds up or slows down as its store fills
//! favours neither), then the Rust burst twice in one process (the second's memory is not new:
//! what the SDK itself costs the caller; reported, not a target), then through the Python SDK;
//! each run into its own experiment, what each stored read back with Python's client.

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

/// Creates one experiment per name in `argv[2:]` (by default the ceiling's, Rust's and
/// Python's), named after `argv[1]`; prints their ids (`e2e` and `scale`).
pub(crate) const PY_EXPERIMENTS: &str = r#"
import json, sys, time, mlflow
stamp = str(time.time_ns())
kinds = sys.argv[2:] or ("ceiling", "rust", "python")
print(json.dumps([mlflow.create_experiment(f"{sys.argv[1]}-{k}-{stamp}") for k in kinds]))
"#;

/// The ceiling's and the Rust SDK's runs, in this order (A B B A).
const ROUNDS: [&str; 4] = ["ceiling", "sdk", "sdk", "ceiling"];

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
    /// The part of the CPU time the calling thread spent in the kernel, per span (the clock's
    /// sampling splits user and kernel time: an estimate).
    pub(crate) caller_system_ns: Option<f64>,
    /// New pages the calling thread touched (minor page faults) per run, where known.
    pub(crate) caller_faults: Option<f64>,
    pub(crate) peak_rss: f64,
    /// The file-backed part of the resident set (code, shared libraries), where known.
    pub(crate) file_rss: Option<f64>,
}

impl Side {
    pub(crate) fn loss_pct(&self) -> f64 {
        100.0 * (self.sent - self.stored) / self.sent
    }
}

/// The Rust SDK's burst a second time in one process, once the first was exported: its
/// memory is not new (not a target; it shows what the SDK itself costs the caller).
#[derive(Clone, Debug)]
pub(crate) struct Warm {
    /// Caller time per span, in ns.
    pub(crate) caller_ns: f64,
    /// The part of it on a CPU, where known.
    pub(crate) caller_cpu_ns: Option<f64>,
    /// New pages the calling thread touched, where known.
    pub(crate) faults: Option<f64>,
    /// Spans sent (both bursts) and stored.
    pub(crate) sent: f64,
    pub(crate) stored: f64,
}

/// The run: the ceiling, the Rust SDK, the Python SDK.
#[derive(Clone, Debug)]
pub(crate) struct E2e {
    pub(crate) ceiling: Side,
    pub(crate) rust: Side,
    pub(crate) python: Side,
    pub(crate) warm: Warm,
    /// What a new page of memory costs a thread on this machine now (ns per 4 KB page).
    pub(crate) page_fault_ns: f64,
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
            "{TRACES} traces × {SPANS} spans, {PAYLOAD} B in and out per span, one fresh local MLflow {} server (sqlite, one worker); the ceiling and the Rust SDK run twice each (ceiling, Rust, Rust, ceiling) and are summed (peak RSS: the higher)\n\n\
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
        if let Some(faults) = self.rust.caller_faults {
            let per_span = faults * self.page_fault_ns / (TRACES * SPANS) as f64;
            out.push_str(&format!(
                "\nNew memory costs a thread {} per 4 KB page on this machine now; each Rust burst touched {faults:.0} new pages (its spans wait in the queue while the server catches up): about {} of the caller's CPU time per span.",
                crate::bench::human(self.page_fault_ns),
                crate::bench::human(per_span),
            ));
            if let Some(system) = self.rust.caller_system_ns {
                out.push_str(&format!(
                    " The kernel's part of the caller's CPU time was about {} per span (those page faults, and glibc growing the thread's heap one page per `mprotect`).",
                    crate::bench::human(system)
                ));
            }
            out.push('\n');
        }
        let w = &self.warm;
        out.push_str(&format!(
            "\nThe same burst a second time in one process, once the first was exported (its memory freed and used again: {} new pages), cost the caller {} per span ({} on a CPU): what the SDK itself costs the caller when its memory is not new. Not a target; {:.0} of its {:.0} spans were stored.\n",
            w.faults.map_or_else(|| "?".to_owned(), |f| format!("{f:.0}")),
            crate::bench::human(w.caller_ns),
            w.caller_cpu_ns
                .map_or_else(|| "–".to_owned(), crate::bench::human),
            w.stored,
            w.sent,
        ));
        if let Some(file) = self.rust.file_rss {
            out.push_str(&format!(
                "\nOf the Rust SDK's peak RSS, {:.1} MB is file-backed: the program's code and shared libraries; the rest ({:.1} MB) is its heap and stacks. The spans' inputs and outputs alone are {:.1} MB, and the burst outruns the server, so nearly all of them are held at the peak.\n",
                mb(file),
                mb(self.rust.peak_rss - file),
                mb((TRACES * SPANS * PAYLOAD * 2) as f64),
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

/// What touching a new page of memory costs this thread (ns per 4 KB page, the median of
/// five rounds of 4 MB): a burst that outruns the server holds every span, so each span's
/// memory is new; on a VM this cost varies from day to day.
fn page_fault_ns() -> f64 {
    const PAGE: usize = 4096;
    const PAGES: usize = 1024;
    // Every block is kept until the end, so that each round's memory is new (a freed block
    // would be handed out again, already touched).
    let mut blocks = Vec::new();
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let started = std::time::Instant::now();
            // Zeroed memory this large is mapped fresh, and touched here page by page.
            let mut block = vec![0u8; PAGE * PAGES];
            for page in block.chunks_mut(PAGE) {
                page[0] = 1;
            }
            let ns = started.elapsed().as_secs_f64() * 1e9 / PAGES as f64;
            blocks.push(std::hint::black_box(block));
            ns
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
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

/// The profile benchmarks and examples are built with (the workspace's `Cargo.toml`: release
/// with whole-program LTO).
pub(crate) const PROFILE: &str = "measure";

/// Builds a benches example with [`PROFILE`] (before a server starts, so no compilation
/// competes with it); its path.
pub(crate) fn build_example(step: &str, name: &str) -> Result<std::path::PathBuf, String> {
    crate::cargo(
        step,
        &[
            "build",
            "--profile",
            PROFILE,
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
    Ok(root
        .join("target")
        .join(PROFILE)
        .join("examples")
        .join(name))
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
    let mut kinds: Vec<String> = ROUNDS
        .iter()
        .enumerate()
        .map(|(i, mode)| format!("{mode}{i}"))
        .collect();
    kinds.push("python".to_owned());
    kinds.push("warm".to_owned());
    let mut args = vec!["e2e"];
    args.extend(kinds.iter().map(String::as_str));
    let ids = json_line(&python::run_script_with(PY_EXPERIMENTS, &args, &env)?)?;
    let id = |i: usize| ids[i].as_str().unwrap_or_default().to_owned();
    let sent = (TRACES * SPANS) as f64;
    let stored = |exp: &str| -> Result<f64, String> {
        num(
            &json_line(&python::run_script_with(PY_COUNT, &[exp], &env)?)?,
            "spans",
        )
    };

    // Each round's JSON line with what its experiment stored.
    let mut ceiling = Vec::new();
    let mut rust = Vec::new();
    for (i, mode) in ROUNDS.iter().enumerate() {
        let run = rust_example(mode, &url, &id(i))?;
        if *mode == "ceiling" {
            ceiling.push((run, id(i)));
        } else {
            rust.push((run, id(i)));
        }
    }
    let warm_exp = id(ROUNDS.len() + 1);
    let warm = rust_example("warm", &url, &warm_exp)?;
    let warm_sent = num(&warm, "spans")? * num(&warm, "bursts")?;
    let warm = Warm {
        caller_ns: num(&warm, "caller_s")? / num(&warm, "spans")? * 1e9,
        caller_cpu_ns: warm["caller_cpu_s"].as_f64().map(|s| s / sent * 1e9),
        faults: warm["caller_minor_faults"].as_f64(),
        sent: warm_sent,
        stored: stored(&warm_exp)?,
    };
    eprintln!("==> e2e: Python SDK burst");
    let py_exp = id(ROUNDS.len());
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
    let py_stored = stored(&py_exp)?;

    // The runs of one side together: spans per second of their summed time, caller time per
    // span over all of them, the highest peak.
    let together = |name, runs: &[(serde_json::Value, String)], time_key: &str, caller: bool| {
        let mut side = Side {
            name,
            sent: 0.0,
            stored: 0.0,
            rate: 0.0,
            caller_ns: None,
            caller_cpu_ns: None,
            caller_system_ns: None,
            caller_faults: None,
            peak_rss: 0.0,
            file_rss: None,
        };
        let (mut time, mut caller_s) = (0.0, 0.0);
        let (mut cpu_s, mut system_s, mut faults) = (Some(0.0), Some(0.0), Some(0.0));
        for (run, exp) in runs {
            side.sent += sent;
            side.stored += stored(exp)?;
            time += num(run, time_key)?;
            let peak = num(run, "peak_rss")?;
            if peak >= side.peak_rss {
                side.peak_rss = peak;
                side.file_rss = run["file_rss"].as_f64().filter(|f| *f > 0.0);
            }
            if caller {
                caller_s += num(run, "caller_s")?;
                cpu_s = cpu_s.zip(run["caller_cpu_s"].as_f64()).map(|(a, b)| a + b);
                system_s = system_s
                    .zip(run["caller_system_s"].as_f64())
                    .map(|(a, b)| a + b);
                faults = faults
                    .zip(run["caller_minor_faults"].as_f64())
                    .map(|(a, b)| a + b);
            }
        }
        side.rate = side.stored / time;
        if caller {
            side.caller_ns = Some(caller_s / side.sent * 1e9);
            side.caller_cpu_ns = cpu_s.map(|s| s / side.sent * 1e9);
            side.caller_system_ns = system_s.map(|s| s / side.sent * 1e9);
            side.caller_faults = faults.map(|f| f / runs.len().max(1) as f64);
        }
        Ok::<_, String>(side)
    };
    let result = E2e {
        ceiling: together("plain HTTP client (ceiling)", &ceiling, "sent_s", false)?,
        rust: together("Rust SDK", &rust, "flushed_s", true)?,
        python: Side {
            name: "Python SDK",
            sent,
            stored: py_stored,
            rate: py_stored / num(&py, "flushed_s")?,
            caller_ns: Some(num(&py, "caller_s")? / sent * 1e9),
            caller_cpu_ns: py["caller_cpu_s"].as_f64().map(|s| s / sent * 1e9),
            caller_system_ns: None,
            caller_faults: None,
            peak_rss: num(&py, "peak_rss")?,
            file_rss: None,
        },
        warm,
        page_fault_ns: page_fault_ns(),
    };
    drop(server);
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
