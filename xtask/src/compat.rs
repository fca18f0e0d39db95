//! `cargo xtask compat`: the SDK against real MLflow servers of several versions, each installed
//! from PyPI in a venv of its own (cached): the newest release that installs (found again on
//! every run), the pinned 3.17.2, 3.4.0 (the first with OTLP span logging), 3.2.0 (the first
//! whose server has StartTraceV3; no OTLP: spans go as `traces.json`), 3.1.4 and the last 2.x
//! (no StartTraceV3 on the server: the exporter says so once and counts the traces). For each: the example agent writes its traces, and that
//! version's own Python client reads them back. Prints a table; fails when a version does not
//! behave as expected.

use std::process::Command;

use mlflow_tracing_tests::python;
use mlflow_tracing_tests::server::{MlflowServer, ServerOptions};

/// The matrix: (label, pip requirements, whether this version can store the SDK's traces).
/// Older releases allow a SQLAlchemy that removed what they import: held below 2.1.
const VERSIONS: &[(&str, &[&str], bool)] = &[
    ("newest", &["mlflow"], true),
    ("pinned", &["mlflow==3.17.2"], true),
    ("first OTLP", &["mlflow==3.4.0", "sqlalchemy<2.1"], true),
    (
        "first StartTraceV3",
        &["mlflow==3.2.0", "sqlalchemy<2.1"],
        true,
    ),
    ("3.1", &["mlflow==3.1.4", "sqlalchemy<2.1"], false),
    ("last 2.x", &["mlflow==2.22.*", "sqlalchemy<2.1"], false),
];

/// What the version's Python client reads back: per trace id, the number of spans (or -1).
const READ_BACK: &str = r#"
import json, sys, mlflow
out = []
for trace_id in sys.argv[1:]:
    try:
        t = mlflow.get_trace(trace_id)
        out.append(len(t.data.spans) if t is not None else -1)
    except Exception:
        out.append(-1)
print(json.dumps({"version": mlflow.__version__, "spans": out}))
"#;

/// One row of the table.
struct Row {
    label: &'static str,
    version: String,
    traces: usize,
    spans: Vec<i64>,
    note: String,
    ok: bool,
}

/// The venv's Python for `requirement`; the unpinned one is upgraded on every run.
fn venv(requirements: &[&str]) -> Result<std::path::PathBuf, String> {
    let name = format!(
        "python-compat-{}",
        requirements.join("-").replace(['<', '=', '*', ' '], "")
    );
    let python = python::venv(&name, requirements)?;
    let requirement = requirements[0];
    if !requirement.contains("==") {
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--upgrade",
                "--disable-pip-version-check",
                requirement,
            ])
            .output()
            .map_err(|e| format!("pip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pip install --upgrade {requirement}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(python)
}

fn check(label: &'static str, requirements: &[&str], stores: bool) -> Result<Row, String> {
    eprintln!("==> compat: {label} ({})", requirements.join(" "));
    let python = venv(requirements)?;
    let data = std::env::temp_dir().join(format!(
        "mlflow-tracing-compat-{}-{}",
        std::process::id(),
        label.replace(' ', "-")
    ));
    let server = MlflowServer::start_with(
        &data,
        &ServerOptions {
            python: Some(python.clone()),
            ..ServerOptions::default()
        },
    )?;
    let out = crate::cargo_command(
        &format!("compat: the example agent into {label}"),
        crate::RUN_AGENT,
        &[
            ("MLFLOW_TRACKING_URI", server.url()),
            (
                "MLFLOW_EXPERIMENT_NAME",
                &format!("compat-{}", label.replace(' ', "-")),
            ),
        ],
    )?
    .output()
    .map_err(|e| format!("cannot run the agent: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let ids: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("traced  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut args: Vec<&str> = Vec::new();
    args.extend(&ids);
    let read = Command::new(&python)
        .arg("-c")
        .arg(READ_BACK)
        .args(&args)
        .env("MLFLOW_TRACKING_URI", server.url())
        .output()
        .map_err(|e| format!("cannot run the read-back: {e}"))?;
    let read_out = String::from_utf8_lossy(&read.stdout);
    let result: serde_json::Value = read_out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            format!(
                "{label}: no read-back result: {}",
                String::from_utf8_lossy(&read.stderr)
            )
        })?;
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    let version = result["version"].as_str().unwrap_or("?").to_owned();
    let spans: Vec<i64> = result["spans"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
        .unwrap_or_default();
    let said_once = stderr
        .matches("cannot store traces from this SDK, which needs MLflow 3.2 or later")
        .count()
        == 1;
    let (ok, note) = if stores {
        let ok = ids.len() == 2 && spans.iter().all(|&n| n > 0);
        let otlp = if !(version.starts_with("3.2.") || version.starts_with("3.3.")) {
            "spans through OTLP"
        } else {
            "spans as traces.json"
        };
        (ok, format!("stored and read back, {otlp}"))
    } else {
        let ok = said_once && spans.iter().all(|&n| n < 0);
        (
            ok,
            "not stored: the exporter says once that MLflow 3.2 or later is needed, and counts the traces"
                .to_owned(),
        )
    };
    if !ok {
        eprintln!("{label} {version}: agent stdout:\n{stdout}\nagent stderr:\n{stderr}");
    }
    Ok(Row {
        label,
        version,
        traces: ids.len(),
        spans,
        note,
        ok,
    })
}

pub(crate) fn run() -> Result<(), String> {
    let mut rows = Vec::new();
    for (label, requirements, stores) in VERSIONS {
        rows.push(check(label, requirements, *stores)?);
    }
    println!(
        "\n| server | MLflow | traces written | spans read back by that version's client | result |\n|---|---|---|---|---|"
    );
    for r in &rows {
        println!(
            "| {} | {} | {} | {:?} | {}{} |",
            r.label,
            r.version,
            r.traces,
            r.spans,
            r.note,
            if r.ok { "" } else { " **UNEXPECTED**" }
        );
    }
    let bad: Vec<&str> = rows.iter().filter(|r| !r.ok).map(|r| r.label).collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "compat: unexpected behaviour against {}",
            bad.join(", ")
        ))
    }
}
