//! Unit tests of the bundles, URLs, escaping and the handler.

use crate::bundle::*;
use crate::handler::*;

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
    assert!(
        html.contains(
            "trace_id=tr-%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E%27+onload%3D%27x%26"
        )
    );
    // The base is HTML-escaped (as in MLflow), so it stays inside the quoted attribute.
    assert!(
        html.contains("src=\"http://h/&quot;&gt;&lt;img src=x onerror=alert(1)&gt;/static-files/")
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
