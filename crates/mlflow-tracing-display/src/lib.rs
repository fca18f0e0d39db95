//! Notebook display of MLflow traces for Rust notebooks (evcxr's Jupyter kernel) and any host
//! that renders mime bundles, as MLflow's `IPythonTraceDisplayHandler` does for Python.
//!
//! - [`mime_bundle`]: `text/plain` (`Trace(trace_id='tr-…')`, or a list), plus either the
//!   tracking server's trace renderer in an iframe (`text/html`, with MLflow's
//!   Collapse/Expand toggle) when the tracking URI (or `MLFLOW_NOTEBOOK_TRACE_RENDERER_BASE_URL`)
//!   is http(s), or, in a Databricks runtime, `application/databricks.mlflow.trace` (trace ids
//!   only). Every value put in the HTML is URL-encoded and then HTML-escaped; a base URL that is
//!   not http(s) gives no HTML at all.
//! - [`DisplayHandler`]: traces finished during a notebook cell are collected (up to
//!   `MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK`, 10) for one bundle at the end of the cell
//!   ([`DisplayHandler::take_bundle`], for hosts with an end-of-cell hook). It can be disabled
//!   and enabled, and never fails the user's code.
//! - [`DisplayDispatch`] wraps the tracer's dispatcher and hands each finished trace to the
//!   handler once the wrapped dispatcher has it (with synchronous export, once it is on the
//!   server). In evcxr (detected from `EVCXR_IS_RUNTIME`), which has no end-of-cell hook and
//!   keeps one output of each kind per cell, each trace is shown through evcxr's display
//!   protocol as soon as its root span ends, on the cell's thread, together with the traces the
//!   cell finished before it (each cell has a dispatch of its own).
//! - [`EvcxrDisplay`]: `trace.evcxr_display()` for a `Trace` or a list of traces, so a trace
//!   (e.g. from `TrackingClient::get_trace`) as the last expression of a cell renders itself
//!   once the trait is in scope.
#![doc(test(attr(deny(warnings))))]

mod bundle;
mod evcxr;
mod handler;
#[cfg(test)]
mod tests;

pub use bundle::{
    DATABRICKS_TRACE_MIME, DisplayConfig, MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK,
    MLFLOW_NOTEBOOK_TRACE_RENDERER_BASE_URL, MimeBundle, RENDERER_VERSION,
    TRACE_RENDERER_ASSET_PATH, TraceRef, html_escape, iframe_html, mime_bundle, renderer_url,
};
pub use evcxr::EvcxrDisplay;
pub use handler::{DisplayDispatch, DisplayHandler, in_evcxr};
