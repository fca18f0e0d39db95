//! Mime bundles: the text, the trace renderer's iframe (URL-encoded, then HTML-escaped) and the
//! Databricks form, and the settings they come from.

use std::io::Write as _;

use mlflow_tracing_entities::{Trace, TraceInfo, is_http_uri};
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
            .filter(|u| is_http_uri(u))
    }

    /// Whether traces can be shown: a Databricks runtime, or an http(s) renderer base.
    pub fn ui_available(&self) -> bool {
        self.databricks_runtime || self.renderer_base().is_some()
    }
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
