#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use mlflow_tracing_client::{ClientConfig, TrackingClient};
use mlflow_tracing_entities::Trace;
use mlflow_tracing_manager::TraceExporter as _;

use super::{MlflowExporter, at_least, supports_otlp};

#[test]
fn traces_need_a_server_with_start_trace_v3() {
    for (v, ok) in [
        ("3.2.0", true),
        ("3.17.2", true),
        ("3.1.4", false),
        ("2.22.5", false),
        ("garbage", false),
    ] {
        assert_eq!(at_least(v, (3, 2)), ok, "{v}");
    }
}

#[test]
fn otlp_needs_server_3_4() {
    for (v, ok) in [
        ("3.17.2", true),
        ("3.4.0", true),
        ("3.4.0.dev0", true),
        ("4.0", true),
        ("3.3.2", false),
        ("2.22.1", false),
        ("garbage", false),
    ] {
        assert_eq!(supports_otlp(v), ok, "{v}");
    }
}

#[test]
fn a_draining_exporter_spools_and_tries_no_replay() {
    let dir = tempfile::tempdir().unwrap();
    let client = TrackingClient::new(ClientConfig::new("http://127.0.0.1:9")).unwrap();
    let exporter = MlflowExporter::new(client)
        .with_spool(dir.path(), 1 << 20)
        .unwrap();
    let trace = Trace::from_json(include_str!(
        "../../../tests/data/fixtures/traces/non_ascii.json"
    ))
    .unwrap();
    assert_eq!(exporter.spool(&[(&trace, false)]), 0);
    let spooling = exporter.spooling.as_ref().unwrap();
    assert!(spooling.replay_due(true));
    assert!(!exporter.exports_locally());
    assert!(exporter.spool_remaining());
    // Draining: everything goes to the spool, nothing waits on the network.
    assert!(exporter.exports_locally());
    assert!(!spooling.replay_due(true));
    assert!(exporter.spool_waiting());
}
