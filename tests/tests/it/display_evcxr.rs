//! Notebook display in evcxr: with `EVCXR_IS_RUNTIME` set (what evcxr's runtime sets), `init`
//! shows each finished trace through evcxr's display protocol on stdout, and a `Trace` renders
//! itself with `evcxr_display`. evcxr itself is not installed in CI (building it takes longer
//! than the suite), so the protocol output is checked exactly; the test re-runs itself in a
//! child process with the environment set.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "tests fail by panicking; the child prints what evcxr would read"
)]

use mlflow_tracing::display::{DisplayHandler, EvcxrDisplay as _};
use mlflow_tracing::testing::InMemoryExporter;
use mlflow_tracing::{TracerBuilder, start_span};

use crate::rerun::{self, CHILD};

/// This test binary under a name starting with `evcxr` (a hard link next to it): the SDK takes
/// a process for evcxr's runtime only when it is evcxr's program and `EVCXR_IS_RUNTIME` is set.
fn as_evcxr(test: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let link = exe.with_file_name(format!("evcxr-{test}-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::fs::hard_link(&exe, &link).unwrap();
    link
}

fn child(test: &str, tracking_uri: &str) -> String {
    let exe = as_evcxr(test);
    let out = rerun::command_of(&exe, &test_name!(test), "1")
        .env("EVCXR_IS_RUNTIME", "1")
        .env("MLFLOW_TRACKING_URI", tracking_uri)
        .env_remove("DATABRICKS_RUNTIME_VERSION")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&exe);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A program a notebook cell starts inherits `EVCXR_IS_RUNTIME`, but is not evcxr: it behaves
/// as outside a notebook (no display markup, asynchronous export).
#[test]
fn a_program_started_from_a_notebook_is_not_taken_for_evcxr() {
    if std::env::var_os(CHILD).is_some() {
        assert!(!mlflow_tracing::display::in_evcxr());
        println!("child: not evcxr");
        return;
    }
    let (stdout, _) = rerun::output_ok(
        rerun::command(
            &test_name!("a_program_started_from_a_notebook_is_not_taken_for_evcxr"),
            "1",
        )
        .env("EVCXR_IS_RUNTIME", "1"),
    );
    assert!(stdout.contains("child: not evcxr"), "{stdout}");
}

#[test]
fn finished_traces_are_shown_in_the_cell_through_evcxrs_protocol() {
    if std::env::var_os(CHILD).is_some() {
        let exporter = InMemoryExporter::new();
        let guard = mlflow_tracing::init(
            TracerBuilder::default()
                .with_environment_metadata(false)
                .with_exporter(exporter.clone()),
        )
        .unwrap();
        println!("CELL START");
        drop(start_span("cell_work").start());
        println!("CELL END");
        // Disabled: nothing shown, and the trace is still exported.
        DisplayHandler::global().disable();
        drop(start_span("hidden").start());
        drop(guard);
        assert_eq!(exporter.traces().len(), 2);
        let trace = &exporter.traces()[0];
        DisplayHandler::global().enable();
        trace.evcxr_display();
        println!("ID {}", trace.info.trace_id);
        return;
    }
    let out = child(
        "finished_traces_are_shown_in_the_cell_through_evcxrs_protocol",
        "http://127.0.0.1:5000",
    );
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("ID "))
        .unwrap_or_else(|| panic!("{out}"));
    let cell = &out[out.find("CELL START").unwrap()..out.find("CELL END").unwrap()];
    let expected_start = format!(
        "CELL START\nEVCXR_BEGIN_CONTENT text/plain\nTrace(trace_id='{id}')\nEVCXR_END_CONTENT\nEVCXR_BEGIN_CONTENT text/html\n\n<div>"
    );
    assert!(cell.starts_with(&expected_start), "{cell}");
    assert!(cell.contains(&format!(
        "src=\"http://127.0.0.1:5000/static-files/lib/notebook-trace-renderer/index.html?trace_id={id}&amp;experiment_id=0&amp;version="
    )));
    assert!(cell.ends_with("</div>\n\nEVCXR_END_CONTENT\n"), "{cell}");
    // One bundle in the cell; none for the trace ended while display was disabled; one from
    // `evcxr_display`.
    assert_eq!(
        out.matches("EVCXR_BEGIN_CONTENT text/plain").count(),
        2,
        "{out}"
    );
}

#[test]
fn without_an_http_tracking_server_only_text_is_shown() {
    if std::env::var_os(CHILD).is_some() {
        let exporter = InMemoryExporter::new();
        let guard = mlflow_tracing::init(
            TracerBuilder::default()
                .with_environment_metadata(false)
                .with_exporter(exporter.clone()),
        )
        .unwrap();
        drop(start_span("cell_work").start());
        drop(guard);
        exporter.traces()[0].evcxr_display();
        return;
    }
    let out = child(
        "without_an_http_tracking_server_only_text_is_shown",
        "sqlite:///mlflow.db",
    );
    // No UI: the handler shows nothing by itself; `evcxr_display` falls back to text.
    assert_eq!(out.matches("EVCXR_BEGIN_CONTENT").count(), 1, "{out}");
    assert!(out.contains("EVCXR_BEGIN_CONTENT text/plain\nTrace(trace_id='tr-"));
    assert!(!out.contains("text/html"));
}

/// Prints `EXPORTED <trace id>` when it exports, so the order against the display is visible.
#[derive(Clone, Debug, Default)]
struct PrintingExporter;

#[mlflow_tracing::export::async_trait]
impl mlflow_tracing::export::TraceExporter for PrintingExporter {
    async fn export(
        &self,
        batch: Vec<mlflow_tracing::export::ExportItem>,
    ) -> Result<(), mlflow_tracing::export::ExportError> {
        for item in batch {
            if let mlflow_tracing::export::ExportItem::Trace(t) = item {
                println!("EXPORTED {}", t.trace.info.trace_id);
            }
        }
        Ok(())
    }
}

/// In evcxr, `init` exports each trace before the span that ends it returns (nothing may wait
/// in a queue: the kernel exits without running destructors, and the renderer loads the trace
/// from the server), the display comes after the export, a cell that finishes two traces shows
/// both (evcxr keeps the last output of each kind per cell), and the installed tracer is found
/// through the process-wide registry and removed when the guard drops.
#[test]
fn in_evcxr_traces_are_exported_before_they_are_shown_and_a_cell_shows_all_its_traces() {
    if std::env::var_os(CHILD).is_some() {
        let guard = mlflow_tracing::init(
            TracerBuilder::default()
                .with_environment_metadata(false)
                .with_exporter(PrintingExporter),
        )
        .unwrap();
        assert!(mlflow_tracing::tracer::global_tracer().is_some());
        assert!(guard.export_stats().is_some());
        println!("CELL START");
        drop(start_span("first").start());
        println!("BETWEEN");
        drop(start_span("second").start());
        println!("CELL END");
        drop(guard);
        assert!(
            mlflow_tracing::tracer::global_tracer().is_none(),
            "uninstalled"
        );
        return;
    }
    let out = child(
        "in_evcxr_traces_are_exported_before_they_are_shown_and_a_cell_shows_all_its_traces",
        "http://127.0.0.1:5000",
    );
    let cell = &out[out.find("CELL START").unwrap()..out.find("CELL END").unwrap()];
    let ids: Vec<&str> = cell
        .lines()
        .filter_map(|l| l.strip_prefix("EXPORTED "))
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "both exported before the spans' ends returned:\n{cell}"
    );
    let (before, after) = cell.split_once("BETWEEN").unwrap();
    // First trace: exported, then shown alone.
    assert!(
        before.find(&format!("EXPORTED {}", ids[0])).unwrap()
            < before.find("EVCXR_BEGIN_CONTENT text/plain").unwrap(),
        "{before}"
    );
    assert!(
        before.contains(&format!("Trace(trace_id='{}')\n", ids[0])),
        "{before}"
    );
    // Second trace: exported, then shown with the first (the cell's output is the last one).
    assert!(
        after.find(&format!("EXPORTED {}", ids[1])).unwrap()
            < after.find("EVCXR_BEGIN_CONTENT").unwrap(),
        "{after}"
    );
    assert!(
        after.contains(&format!(
            "[Trace(trace_id='{}'), Trace(trace_id='{}')]",
            ids[0], ids[1]
        )),
        "{after}"
    );
    assert!(
        after.contains(&format!(
            "trace_id={}&amp;experiment_id=0&amp;trace_id={}",
            ids[0], ids[1]
        )),
        "{after}"
    );
}
