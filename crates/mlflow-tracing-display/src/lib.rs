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

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use mlflow_tracing_entities::{Trace, TraceInfo};
use mlflow_tracing_manager::{Dispatch, ExportItem, LifecycleError, process_global};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Where the tracking server serves the notebook trace renderer.
pub const TRACE_RENDERER_ASSET_PATH: &str = "/static-files/lib/notebook-trace-renderer";
/// `MLFLOW_NOTEBOOK_TRACE_RENDERER_BASE_URL`: where to load the renderer from instead of the
/// tracking URI.
pub const MLFLOW_NOTEBOOK_TRACE_RENDERER_BASE_URL: &str = "MLFLOW_NOTEBOOK_TRACE_RENDERER_BASE_URL";
/// `MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK` (default 10).
pub const MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK: &str =
    "MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK";
/// The mime type Databricks notebooks render traces from.
pub const DATABRICKS_TRACE_MIME: &str = "application/databricks.mlflow.trace";
/// The version put in the renderer URL (it only defeats the browser cache across versions).
pub const RENDERER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Python's `urlencode` safe set (`quote_plus`): letters, digits and `_.-~`.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// The settings display depends on, from the environment ([`DisplayConfig::from_env`]) or code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DisplayConfig {
    /// The tracking URI (`MLFLOW_TRACKING_URI`).
    pub tracking_uri: Option<String>,
    /// `MLFLOW_NOTEBOOK_TRACE_RENDERER_BASE_URL`, which wins over the tracking URI.
    pub renderer_base_url: Option<String>,
    /// Running in a Databricks runtime (`DATABRICKS_RUNTIME_VERSION` or
    /// `DATABRICKS_ENV_VERSION` set).
    pub databricks_runtime: bool,
    /// `MLFLOW_TRACING_SQL_WAREHOUSE_ID` (Databricks bundles).
    pub sql_warehouse_id: Option<String>,
    /// `MLFLOW_WORKSPACE`, passed to the renderer.
    pub workspace: Option<String>,
    /// Traces shown per cell (`MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK`, 10).
    pub max_traces: usize,
}

impl DisplayConfig {
    /// Display settings for a tracking server at `tracking_uri`.
    pub fn for_tracking_uri(tracking_uri: impl Into<String>) -> Self {
        DisplayConfig {
            tracking_uri: Some(tracking_uri.into()),
            max_traces: 10,
            ..Default::default()
        }
    }

    /// The settings from MLflow's environment variables (an invalid max falls back to 10).
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`DisplayConfig::from_env`] over any variable source.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        DisplayConfig {
            tracking_uri: get("MLFLOW_TRACKING_URI"),
            renderer_base_url: get(MLFLOW_NOTEBOOK_TRACE_RENDERER_BASE_URL),
            databricks_runtime: get("DATABRICKS_RUNTIME_VERSION").is_some()
                || get("DATABRICKS_ENV_VERSION").is_some(),
            sql_warehouse_id: get("MLFLOW_TRACING_SQL_WAREHOUSE_ID"),
            workspace: get("MLFLOW_WORKSPACE"),
            max_traces: get(MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(10),
        }
    }

    /// The base URL the renderer is loaded from, when it is http(s).
    fn renderer_base(&self) -> Option<&str> {
        self.renderer_base_url
            .as_deref()
            .or(self.tracking_uri.as_deref())
            .filter(|u| is_http(u))
    }

    /// Whether traces can be shown: a Databricks runtime, or an http(s) renderer base.
    pub fn ui_available(&self) -> bool {
        self.databricks_runtime || self.renderer_base().is_some()
    }
}

/// An `http(s)://` URI with a host.
fn is_http(uri: &str) -> bool {
    let lower = uri.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

/// What display needs of a trace: its id and experiment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRef {
    /// The MLflow trace id.
    pub trace_id: String,
    /// The experiment, if the trace is in one.
    pub experiment_id: Option<String>,
}

impl From<&TraceInfo> for TraceRef {
    fn from(info: &TraceInfo) -> Self {
        TraceRef {
            trace_id: info.trace_id.clone(),
            experiment_id: info.experiment_id().map(str::to_owned),
        }
    }
}

impl From<&Trace> for TraceRef {
    fn from(trace: &Trace) -> Self {
        TraceRef::from(&trace.info)
    }
}

/// A mime bundle: representations of one value, richest last (`text/plain` first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MimeBundle {
    entries: Vec<(String, String)>,
}

impl MimeBundle {
    fn push(&mut self, mime: &str, content: String) {
        self.entries.push((mime.to_owned(), content));
    }

    /// The content for `mime`.
    pub fn get(&self, mime: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(m, _)| m == mime)
            .map(|(_, c)| c.as_str())
    }

    /// The mime types, in order.
    pub fn mime_types(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(m, _)| m.as_str())
    }

    /// The bundle as a JSON object (Jupyter's `display_data` `data` field).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.entries
                .iter()
                .map(|(m, c)| (m.clone(), serde_json::Value::String(c.clone())))
                .collect(),
        )
    }

    /// The bundle in evcxr's display protocol: one `EVCXR_BEGIN_CONTENT <mime>` …
    /// `EVCXR_END_CONTENT` block per representation.
    pub fn to_evcxr(&self) -> String {
        let mut out = String::new();
        for (mime, content) in &self.entries {
            out.push_str("EVCXR_BEGIN_CONTENT ");
            out.push_str(mime);
            out.push('\n');
            out.push_str(content);
            out.push_str("\nEVCXR_END_CONTENT\n");
        }
        out
    }

    /// Prints [`MimeBundle::to_evcxr`] to stdout in one write (stdout locked), as evcxr reads
    /// it. Errors writing stdout are ignored: display never fails the user's code.
    pub fn print_evcxr(&self) {
        let text = self.to_evcxr();
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Python's `html.escape(s, quote=True)`.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Python's `urlencode` of key/value pairs (`quote_plus`: space as `+`).
fn urlencode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        utf8_percent_encode(s, QUERY)
            .to_string()
            .replace("%20", "+")
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `scheme://user:password@host/…` without the `user:password@`.
fn strip_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The renderer URL for `traces` (not yet HTML-escaped); `None` without an http(s) base.
pub fn renderer_url(traces: &[TraceRef], config: &DisplayConfig) -> Option<String> {
    let base = config.renderer_base()?.trim();
    // `urljoin(base + "/", "static-files/…")`: the base is a server root; its query and
    // fragment are dropped.
    let base = base.split(['?', '#']).next().unwrap_or(base);
    // Never put credentials (`user:password@`) in a notebook's HTML.
    let base = strip_userinfo(base);
    let base = base.as_str();
    let base = if base.ends_with('/') {
        base.to_owned()
    } else {
        format!("{base}/")
    };
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for t in traces {
        pairs.push(("trace_id", &t.trace_id));
        pairs.push((
            "experiment_id",
            t.experiment_id.as_deref().unwrap_or("None"),
        ));
    }
    if let Some(ws) = &config.workspace {
        pairs.push(("workspace", ws));
    }
    Some(format!(
        "{base}{}/index.html?{}&version={}",
        TRACE_RENDERER_ASSET_PATH.trim_start_matches('/'),
        urlencode(&pairs),
        utf8_percent_encode(RENDERER_VERSION, QUERY)
    ))
}

/// MLflow's notebook iframe HTML for `traces` (the renderer, a Collapse/Expand button); `None`
/// without an http(s) base URL.
pub fn iframe_html(traces: &[TraceRef], config: &DisplayConfig) -> Option<String> {
    let src = html_escape(&renderer_url(traces, config)?);
    Some(format!(
        r#"
<div>
  <style scoped>
  button {{
    border: none;
    border-radius: 4px;
    background-color: rgb(34, 114, 180);
    font-family: -apple-system, "system-ui", "Segoe UI", Roboto, "Helvetica Neue", Arial;
    font-size: 13px;
    color: white;
    margin-top: 8px;
    margin-bottom: 8px;
    padding: 8px 16px;
    cursor: pointer;
  }}
  button:hover {{
    background-color: rgb(66, 153, 224);
  }}
  </style>
  <button
    onclick="
        const display = this.nextElementSibling.style.display;
        const isCollapsed = display === 'none';
        this.nextElementSibling.style.display = isCollapsed ? null : 'none';

        const verb = isCollapsed ? 'Collapse' : 'Expand';
        this.innerText = `${{verb}} MLflow Trace`;
    "
  >Collapse MLflow Trace</button>
  <iframe
    id="trace-renderer"
    style="width: 100%; height: 500px; border: none; resize: vertical;"
    src="{src}"
  />
</div>
"#
    ))
}

/// The `repr` of one trace, or of a list (`[Trace(trace_id='a'), Trace(trace_id='b')]`).
/// Control characters in ids are escaped, so an id cannot end a block of evcxr's line-based
/// protocol and start another.
fn plain_text(traces: &[TraceRef]) -> String {
    let one = |t: &TraceRef| {
        let id: String = t
            .trace_id
            .chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_unicode().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect();
        format!("Trace(trace_id='{id}')")
    };
    match traces {
        [t] => one(t),
        _ => format!(
            "[{}]",
            traces.iter().map(one).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn databricks_json(traces: &[TraceRef], config: &DisplayConfig) -> String {
    let item = |t: &TraceRef| serde_json::json!({"trace_id": t.trace_id, "sql_warehouse_id": config.sql_warehouse_id});
    let value = match traces {
        [t] => item(t),
        _ => serde_json::Value::Array(traces.iter().map(item).collect()),
    };
    // Python's json.dumps separators.
    mlflow_tracing_entities::json::to_python_json(&value).unwrap_or_default()
}

/// The mime bundle of `traces` (see the crate docs).
pub fn mime_bundle(traces: &[TraceRef], config: &DisplayConfig) -> MimeBundle {
    let mut bundle = MimeBundle::default();
    bundle.push("text/plain", plain_text(traces));
    if config.databricks_runtime {
        bundle.push(DATABRICKS_TRACE_MIME, databricks_json(traces, config));
    } else if let Some(html) = iframe_html(traces, config) {
        bundle.push("text/html", html);
    }
    bundle
}

/// Whether this process runs inside evcxr (its runtime sets `EVCXR_IS_RUNTIME`).
pub fn in_evcxr() -> bool {
    process_global::in_evcxr()
}

/// Collects traces for display at the end of a notebook cell (MLflow's
/// `IPythonTraceDisplayHandler`).
#[derive(Debug)]
pub struct DisplayHandler {
    pending: Mutex<Vec<TraceRef>>,
    disabled: AtomicBool,
    config: Mutex<DisplayConfig>,
}

impl DisplayHandler {
    /// A handler with these settings.
    pub fn new(config: DisplayConfig) -> Self {
        DisplayHandler {
            pending: Mutex::new(Vec::new()),
            disabled: AtomicBool::new(false),
            config: Mutex::new(config),
        }
    }

    /// The process-wide handler (settings from the environment on first use). In an evcxr
    /// kernel, one handler for every cell (each cell links its own copy of this crate; see
    /// `mlflow_tracing_manager::process_global`).
    pub fn global() -> &'static DisplayHandler {
        static HANDLER: OnceLock<&'static DisplayHandler> = OnceLock::new();
        HANDLER.get_or_init(|| {
            if let Some(Some(shared)) = process_global::get::<&'static DisplayHandler>() {
                return shared;
            }
            let handler: &'static DisplayHandler =
                Box::leak(Box::new(DisplayHandler::new(DisplayConfig::from_env())));
            let _ = process_global::replace(Some(handler));
            handler
        })
    }

    /// Stops showing traces (MLflow's `disable_notebook_display`).
    pub fn disable(&self) {
        self.disabled.store(true, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Shows traces again (MLflow's `enable_notebook_display`).
    pub fn enable(&self) {
        self.disabled.store(false, Ordering::Relaxed);
    }

    /// Whether traces are shown.
    pub fn is_enabled(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// Replaces the settings.
    pub fn set_config(&self, config: DisplayConfig) {
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// The settings.
    pub fn config(&self) -> DisplayConfig {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Remembers traces to show (a trace already pending is not added twice); nothing when
    /// disabled or when no UI can show them.
    pub fn display_traces(&self, traces: &[TraceRef]) {
        if !self.is_enabled() || !self.config().ui_available() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for t in traces {
            if !pending.iter().any(|p| p.trace_id == t.trace_id) {
                pending.push(t.clone());
            }
        }
    }

    /// The bundle for the end of the cell: up to `max_traces` pending traces, which are then
    /// forgotten; `None` when there are none (or display is off).
    pub fn take_bundle(&self) -> Option<MimeBundle> {
        let taken =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        self.bundle_of(&taken)
    }

    /// The bundle showing `traces` (up to `max_traces` of them) with this handler's settings;
    /// `None` when there are none, display is off, or no UI can show them.
    pub fn bundle_of(&self, traces: &[TraceRef]) -> Option<MimeBundle> {
        let config = self.config();
        if traces.is_empty() || !self.is_enabled() || !config.ui_available() {
            return None;
        }
        let shown = &traces[..traces.len().min(config.max_traces.max(1))];
        Some(mime_bundle(shown, &config))
    }
}

/// A [`Dispatch`] that hands each finished trace to the wrapped dispatcher, then to a
/// [`DisplayHandler`]. In evcxr it shows the trace at once instead, with the others this
/// dispatch (one notebook cell) has shown (see the crate docs).
#[derive(Debug)]
pub struct DisplayDispatch {
    inner: Arc<dyn Dispatch>,
    handler: &'static DisplayHandler,
    evcxr: bool,
    /// In evcxr: the traces shown so far by this dispatch, that is, by one notebook cell.
    cell: Mutex<Vec<TraceRef>>,
}

impl DisplayDispatch {
    /// Wraps `inner`, reporting to the global handler; evcxr is detected from the environment.
    pub fn new(inner: Arc<dyn Dispatch>) -> Self {
        DisplayDispatch {
            inner,
            handler: DisplayHandler::global(),
            evcxr: in_evcxr(),
            cell: Mutex::new(Vec::new()),
        }
    }

    /// In evcxr: shows every trace this dispatch has shown so far plus `trace`. evcxr keeps
    /// one output of each kind per cell (the last printed), and each cell gets its own dispatch
    /// (`TracerBuilder::with_dispatch_wrapper`), so the cell ends up showing all the traces it
    /// finished (up to `MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK`), as MLflow's end-of-cell
    /// display does.
    fn show_in_cell(&self, trace: TraceRef) {
        if !self.handler.is_enabled() {
            return;
        }
        let mut cell = self.cell.lock().unwrap_or_else(PoisonError::into_inner);
        if !cell.iter().any(|t| t.trace_id == trace.trace_id) {
            cell.push(trace);
        }
        if let Some(bundle) = self.handler.bundle_of(&cell) {
            bundle.print_evcxr();
        }
    }
}

impl Dispatch for DisplayDispatch {
    fn dispatch(&self, item: ExportItem) {
        let shown = match &item {
            ExportItem::Trace(t) if !t.remote => Some(TraceRef::from(&t.trace)),
            _ => None,
        };
        // Export first: with synchronous export (evcxr's default) the trace is on the server
        // by the time the renderer iframe asks for it.
        self.inner.dispatch(item);
        if let Some(trace) = shown {
            // Display must never fail the user's code.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if self.evcxr {
                    self.show_in_cell(trace);
                } else {
                    self.handler.display_traces(&[trace]);
                }
            }));
            if result.is_err() {
                tracing::debug!("notebook display of a trace failed");
            }
        }
    }

    fn wants_spans(&self) -> bool {
        self.inner.wants_spans()
    }

    fn force_flush(&self, timeout: Duration) -> Result<(), LifecycleError> {
        self.inner.force_flush(timeout)
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), LifecycleError> {
        self.inner.shutdown(timeout)
    }
}

/// `evcxr_display` for traces: with this trait in scope, a trace (or a list of traces) as the
/// last expression of an evcxr cell renders itself, with the global handler's settings.
pub trait EvcxrDisplay {
    /// Prints the mime bundle in evcxr's display protocol.
    fn evcxr_display(&self);
}

impl EvcxrDisplay for Trace {
    fn evcxr_display(&self) {
        std::slice::from_ref(self).evcxr_display();
    }
}

impl EvcxrDisplay for [Trace] {
    fn evcxr_display(&self) {
        let refs: Vec<TraceRef> = self.iter().map(TraceRef::from).collect();
        let handler = DisplayHandler::global();
        let mut config = handler.config();
        if !handler.is_enabled() {
            // Plain text only, as MLflow's `_repr_mimebundle_` when display is disabled.
            config.tracking_uri = None;
            config.renderer_base_url = None;
            config.databricks_runtime = false;
        }
        mime_bundle(&refs, &config).print_evcxr();
    }
}

impl EvcxrDisplay for Vec<Trace> {
    fn evcxr_display(&self) {
        self.as_slice().evcxr_display();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn t(id: &str, exp: &str) -> TraceRef {
        TraceRef {
            trace_id: id.into(),
            experiment_id: Some(exp.into()),
        }
    }

    #[test]
    fn the_iframe_points_at_the_renderer_with_every_trace_and_the_version() {
        let config = DisplayConfig::for_tracking_uri("http://127.0.0.1:5000");
        let url = renderer_url(&[t("tr-a", "1"), t("tr-b", "2")], &config).unwrap();
        assert_eq!(
            url,
            format!(
                "http://127.0.0.1:5000/static-files/lib/notebook-trace-renderer/index.html?trace_id=tr-a&experiment_id=1&trace_id=tr-b&experiment_id=2&version={RENDERER_VERSION}"
            )
        );
        let html = iframe_html(&[t("tr-a", "1")], &config).unwrap();
        assert!(html.contains(
            "src=\"http://127.0.0.1:5000/static-files/lib/notebook-trace-renderer/index.html?trace_id=tr-a&amp;experiment_id=1&amp;version="
        ));
        assert!(html.contains("Collapse MLflow Trace") && html.contains("id=\"trace-renderer\""));
    }

    #[test]
    fn subpath_servers_keep_their_prefix_and_the_renderer_base_wins() {
        let mut config = DisplayConfig::for_tracking_uri("https://host/mlflow?x=1#f");
        let url = renderer_url(&[t("tr-a", "1")], &config).unwrap();
        assert!(url.starts_with(
            "https://host/mlflow/static-files/lib/notebook-trace-renderer/index.html?trace_id=tr-a"
        ));
        config.renderer_base_url = Some("http://cdn.example/".into());
        assert!(
            renderer_url(&[t("tr-a", "1")], &config)
                .unwrap()
                .starts_with("http://cdn.example/static-files/")
        );
    }

    #[test]
    fn hostile_ids_and_uris_cannot_inject_markup() {
        let evil = r#"tr-"><script>alert(1)</script>' onload='x&"#;
        let config = DisplayConfig::for_tracking_uri(r#"http://h/"><img src=x onerror=alert(1)>"#);
        let html = iframe_html(&[t(evil, "1\"><b>")], &config).unwrap();
        for bad in ["<script", "<img", "\"><", "onerror=alert(1)>", "' onload='"] {
            assert!(!html.contains(bad), "{bad} leaked into {html}");
        }
        // The id travels URL-encoded, then HTML-escaped.
        assert!(html.contains(
            "trace_id=tr-%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E%27+onload%3D%27x%26"
        ));
        // The base is HTML-escaped (as in MLflow), so it stays inside the quoted attribute.
        assert!(
            html.contains(
                "src=\"http://h/&quot;&gt;&lt;img src=x onerror=alert(1)&gt;/static-files/"
            )
        );
        // Only http(s) bases make HTML.
        for base in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "sqlite:///x.db",
            "data:text/html,x",
            "http://",
        ] {
            let config = DisplayConfig::for_tracking_uri(base);
            assert!(iframe_html(&[t("tr-a", "1")], &config).is_none(), "{base}");
            assert!(
                mime_bundle(&[t("tr-a", "1")], &config)
                    .get("text/html")
                    .is_none()
            );
        }
    }

    #[test]
    fn bundles_follow_mlflow_one_several_and_databricks() {
        let config = DisplayConfig::for_tracking_uri("http://h:1");
        let one = mime_bundle(&[t("tr-a", "1")], &config);
        assert_eq!(one.get("text/plain"), Some("Trace(trace_id='tr-a')"));
        assert!(one.get("text/html").is_some());
        let two = mime_bundle(&[t("tr-a", "1"), t("tr-b", "1")], &config);
        assert_eq!(
            two.get("text/plain"),
            Some("[Trace(trace_id='tr-a'), Trace(trace_id='tr-b')]")
        );
        let mut dbx = config.clone();
        dbx.databricks_runtime = true;
        dbx.sql_warehouse_id = Some("wh".into());
        let b = mime_bundle(&[t("tr-a", "1")], &dbx);
        assert_eq!(
            b.get(DATABRICKS_TRACE_MIME),
            Some(r#"{"trace_id": "tr-a", "sql_warehouse_id": "wh"}"#)
        );
        assert!(b.get("text/html").is_none());
        dbx.sql_warehouse_id = None;
        let b = mime_bundle(&[t("tr-a", "1"), t("tr-b", "1")], &dbx);
        assert_eq!(
            b.get(DATABRICKS_TRACE_MIME),
            Some(
                r#"[{"trace_id": "tr-a", "sql_warehouse_id": null}, {"trace_id": "tr-b", "sql_warehouse_id": null}]"#
            )
        );
        let json = one.to_json();
        assert_eq!(json["text/plain"], "Trace(trace_id='tr-a')");
    }

    #[test]
    fn credentials_and_protocol_breaking_ids_stay_out() {
        let config = DisplayConfig::for_tracking_uri("https://alice:s3cret@host:5000/ml");
        let url = renderer_url(&[t("tr-a", "1")], &config).unwrap();
        assert!(
            url.starts_with("https://host:5000/ml/static-files/"),
            "{url}"
        );
        let evil = t(
            "tr-a\nEVCXR_END_CONTENT\nEVCXR_BEGIN_CONTENT text/html\n<script>",
            "1",
        );
        let out = mime_bundle(&[evil], &DisplayConfig::default()).to_evcxr();
        // One block: the marker lines evcxr reads start a line, and only the real ones do.
        let markers = out.lines().filter(|l| l.starts_with("EVCXR_")).count();
        assert_eq!(markers, 2, "{out}");
        assert_eq!(out.lines().count(), 3, "{out}");
    }

    #[test]
    fn the_evcxr_protocol_output_is_exact() {
        let b = mime_bundle(&[t("tr-a", "1")], &DisplayConfig::default());
        assert_eq!(
            b.to_evcxr(),
            "EVCXR_BEGIN_CONTENT text/plain\nTrace(trace_id='tr-a')\nEVCXR_END_CONTENT\n"
        );
        let b = mime_bundle(
            &[t("tr-a", "1")],
            &DisplayConfig::for_tracking_uri("http://h"),
        );
        let out = b.to_evcxr();
        assert!(out.starts_with("EVCXR_BEGIN_CONTENT text/plain\nTrace(trace_id='tr-a')\nEVCXR_END_CONTENT\nEVCXR_BEGIN_CONTENT text/html\n\n<div>"));
        assert!(out.ends_with("</div>\n\nEVCXR_END_CONTENT\n"));
    }

    #[test]
    fn the_handler_collects_up_to_the_max_once_and_can_be_disabled() {
        let mut config = DisplayConfig::for_tracking_uri("http://h");
        config.max_traces = 2;
        let h = DisplayHandler::new(config);
        h.display_traces(&[
            t("tr-a", "1"),
            t("tr-b", "1"),
            t("tr-a", "1"),
            t("tr-c", "1"),
        ]);
        let b = h.take_bundle().unwrap();
        assert_eq!(
            b.get("text/plain"),
            Some("[Trace(trace_id='tr-a'), Trace(trace_id='tr-b')]")
        );
        assert!(h.take_bundle().is_none(), "cleared after the cell");
        h.disable();
        h.display_traces(&[t("tr-d", "1")]);
        assert!(h.take_bundle().is_none());
        h.enable();
        h.display_traces(&[t("tr-d", "1")]);
        assert!(h.take_bundle().is_some());
        // No UI (a sqlite tracking URI, not Databricks): nothing is collected.
        let h = DisplayHandler::new(DisplayConfig::for_tracking_uri("sqlite:///mlflow.db"));
        h.display_traces(&[t("tr-a", "1")]);
        assert!(h.take_bundle().is_none());
    }

    #[test]
    fn settings_come_from_mlflows_env_vars() {
        let c = DisplayConfig::from_lookup(|k| match k {
            "MLFLOW_TRACKING_URI" => Some("http://h".into()),
            "DATABRICKS_RUNTIME_VERSION" => Some("15.4".into()),
            "MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK" => Some("3".into()),
            "MLFLOW_WORKSPACE" => Some("team a".into()),
            _ => None,
        });
        assert!(c.databricks_runtime && c.ui_available());
        assert_eq!(c.max_traces, 3);
        let url = renderer_url(&[t("tr-a", "1")], &c).unwrap();
        assert!(url.contains("&workspace=team+a&version="), "{url}");
        assert_eq!(DisplayConfig::from_lookup(|_| None).max_traces, 10);
        assert!(!DisplayConfig::from_lookup(|_| None).ui_available());
    }
}
