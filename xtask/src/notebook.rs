//! `cargo xtask notebook`: the notebook display in a real kernel. Builds (once, cached) the evcxr
//! Jupyter kernel and the pinned Jupyter client packages, registers the kernel in the project's
//! cache directory, starts the pinned MLflow server, executes
//! `crates/mlflow-tracing/examples/notebook.ipynb` with nbclient, and checks the executed
//! notebook: no error outputs, `init` seen by the later cells, each agent trace shown (renderer
//! iframe for the server's trace id, `text/plain` fallback) in the cell that finished it, the
//! read-back trace shown by the last cell, the traces on the server, and the renderer showing the
//! span names in headless Chromium (screenshot kept). Not part of `ci`: building evcxr takes
//! 5 to 20 minutes on a 2-core machine, once.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use mlflow_tracing_tests::browser::browser;
use mlflow_tracing_tests::notebook;
use mlflow_tracing_tests::server::MlflowServer;
use serde_json::Value;

/// The spans of the notebook's agent.
const SPANS: [&str; 3] = ["weather_agent", "lookup_forecast", "summarize_with_llm"];

/// The code cells of the notebook, in order (see the notebook itself).
const CELL_INIT: usize = 1;
/// `weather_agent(..)` as the cell's value: its trace is shown in HTML, the value as text.
const CELL_CALL_VALUE: usize = 4;
/// `let answer = weather_agent(..);`: the trace's bundle is the cell's output.
const CELL_CALL_LET: usize = 5;
/// Two calls in one cell: both traces are shown.
const CELL_TWO_CALLS: usize = 6;
const CELL_READ_BACK: usize = 7;

/// The text of a notebook field (a string, or a list of lines).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

/// The outputs of each code cell.
fn code_cells(executed: &Path) -> Result<Vec<Vec<Value>>, String> {
    let raw = std::fs::read_to_string(executed)
        .map_err(|e| format!("read {}: {e}", executed.display()))?;
    let nb: Value = serde_json::from_str(&raw).map_err(|e| format!("executed notebook: {e}"))?;
    Ok(nb["cells"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["cell_type"] == "code")
        .map(|c| c["outputs"].as_array().cloned().unwrap_or_default())
        .collect())
}

/// The `mime` data of a cell's outputs, joined.
fn mime(outputs: &[Value], mime: &str) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| o["data"].get(mime).map(text))
        .collect()
}

/// The trace ids whose renderer iframe a cell shows, in order.
fn shown_traces(outputs: &[Value], cell: usize) -> Result<Vec<String>, String> {
    let html = mime(outputs, "text/html").join("\n");
    if !html.contains("<iframe") {
        return Err(format!(
            "code cell {cell} shows no renderer iframe:\n{html}"
        ));
    }
    let src = html
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default();
    if !src.contains("/static-files/lib/notebook-trace-renderer/index.html?") {
        return Err(format!("code cell {cell}: not the trace renderer: {src}"));
    }
    Ok(src
        .split("trace_id=")
        .skip(1)
        .filter_map(|s| s.split("&amp;").next())
        .map(str::to_owned)
        .collect())
}

/// The `text/plain` output of a cell.
fn plain(outputs: &[Value]) -> String {
    mime(outputs, "text/plain").join("\n")
}

const PY_TRACES: &str = r#"
import json, sys, mlflow
exp = mlflow.get_experiment_by_name(sys.argv[1])
found = mlflow.search_traces(locations=[exp.experiment_id], return_type="list")
print(json.dumps({t.info.trace_id: sorted(s.name for s in t.data.spans) for t in found}))
"#;

pub(crate) fn run() -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_path_buf();
    let evcxr = notebook::evcxr_jupyter()?;
    let python = notebook::jupyter_python()?;
    notebook::register_kernel(&evcxr)?;
    eprintln!(
        "==> notebook: kernel {:?} registered in {}",
        notebook::KERNEL_NAME,
        notebook::jupyter_path().display()
    );
    let server = MlflowServer::start().map_err(|e| format!("notebook: {e}"))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_nanos();
    let experiment = format!("notebook-{stamp}");
    let artifacts = root.join("target/test-artifacts/notebook");
    std::fs::create_dir_all(&artifacts).map_err(|e| format!("{}: {e}", artifacts.display()))?;
    let source = root.join("crates/mlflow-tracing/examples/notebook.ipynb");
    let executed = artifacts.join("notebook.executed.ipynb");
    eprintln!(
        "==> notebook: executing {} (the first cell builds the SDK inside the kernel: minutes)",
        source.display()
    );
    notebook::execute(
        &python,
        &source,
        &executed,
        &[
            ("MLFLOW_TRACKING_URI", server.url()),
            ("MLFLOW_EXPERIMENT_NAME", &experiment),
        ],
    )?;
    let cells = code_cells(&executed)?;
    for (i, outputs) in cells.iter().enumerate() {
        if let Some(error) = outputs.iter().find(|o| o["output_type"] == "error") {
            return Err(format!("code cell {i} has an error output: {error}"));
        }
    }
    let cell = |i: usize| {
        cells
            .get(i)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("the notebook has no code cell {i}"))
    };
    let init = mime(cell(CELL_INIT)?, "text/plain");
    if init != ["true"] {
        return Err(format!(
            "after init, the cell sees no global tracer: {init:?}"
        ));
    }
    let one = |i: usize| -> Result<String, String> {
        match shown_traces(cell(i)?, i)?.as_slice() {
            [id] => Ok(id.clone()),
            ids => Err(format!(
                "code cell {i} should show one trace, shows {ids:?}"
            )),
        }
    };
    let first = one(CELL_CALL_VALUE)?;
    if !plain(cell(CELL_CALL_VALUE)?).contains("Expect sunny") {
        return Err("the first call's cell lost its value".into());
    }
    let second = one(CELL_CALL_LET)?;
    if plain(cell(CELL_CALL_LET)?) != format!("Trace(trace_id='{second}')") {
        return Err(format!(
            "code cell {CELL_CALL_LET} has no text fallback for {second}: {:?}",
            plain(cell(CELL_CALL_LET)?)
        ));
    }
    let pair = shown_traces(cell(CELL_TWO_CALLS)?, CELL_TWO_CALLS)?;
    let expected_plain = format!(
        "[{}]",
        pair.iter()
            .map(|id| format!("Trace(trace_id='{id}')"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if pair.len() != 2 || plain(cell(CELL_TWO_CALLS)?) != expected_plain {
        return Err(format!(
            "code cell {CELL_TWO_CALLS} should show its two traces: {pair:?}, {:?}",
            plain(cell(CELL_TWO_CALLS)?)
        ));
    }
    let mut all = vec![first.clone(), second.clone()];
    all.extend(pair.iter().cloned());
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != 4 {
        return Err(format!("the cells show the same trace twice: {all:?}"));
    }
    for (i, outputs) in cells.iter().enumerate() {
        if ![
            CELL_CALL_VALUE,
            CELL_CALL_LET,
            CELL_TWO_CALLS,
            CELL_READ_BACK,
        ]
        .contains(&i)
            && !mime(outputs, "text/html").is_empty()
        {
            return Err(format!("code cell {i} shows a trace it did not finish"));
        }
    }
    let read_back = one(CELL_READ_BACK)?;
    if Some(&read_back) != pair.last() {
        return Err(format!(
            "the read-back cell shows {read_back}, not the last trace {:?}",
            pair.last()
        ));
    }
    eprintln!(
        "==> notebook: the calling cells show {first}, {second} and {pair:?}; the last cell reads {read_back} back"
    );

    let stored: Value = serde_json::from_str(
        server
            .run_python(PY_TRACES, &[&experiment])
            .map_err(|e| format!("reading the server's traces: {e}"))?
            .trim(),
    )
    .map_err(|e| format!("the server's traces: {e}"))?;
    let mut expected: Vec<&str> = SPANS.to_vec();
    expected.sort_unstable();
    for id in &all {
        let names: Vec<&str> = stored[id.as_str()]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if names != expected {
            return Err(format!(
                "trace {id} on the server has spans {names:?}; the server holds {stored}"
            ));
        }
    }
    eprintln!(
        "==> notebook: all {} traces are on the server with spans {}",
        all.len(),
        SPANS.join(", ")
    );

    let html = mime(cell(CELL_CALL_VALUE)?, "text/html").join("\n");
    let page = artifacts.join("cell-output.html");
    std::fs::write(
        &page,
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"></head><body>{html}</body></html>"
        ),
    )
    .map_err(|e| format!("{}: {e}", page.display()))?;
    let screenshot = artifacts.join("renderer.png");
    let seen = browser()?.inspect(
        &format!("file://{}", page.display()),
        &screenshot,
        true,
        &SPANS,
        None,
    )?;
    let shown = seen["text"].as_str().unwrap_or_default();
    if let Some(missing) = SPANS.iter().find(|s| !shown.contains(**s)) {
        return Err(format!(
            "the renderer does not show {missing}; it shows:\n{shown}"
        ));
    }
    eprintln!(
        "==> notebook: the renderer shows {} in Chromium (screenshot: {})",
        SPANS.join(", "),
        screenshot.display()
    );
    drop(server);
    println!(
        "notebook: ok ({} code cells; {} traces, each shown in the cell that finished it and stored on the server)",
        cells.len(),
        all.len()
    );
    Ok(())
}
