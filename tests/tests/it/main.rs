//! The integration tests of the workspace, in one test binary (one link, one shared MLflow
//! server), one module per area. `init.rs` is a binary of its own: it installs the process-wide
//! tracer, which the span API tests here assume is never installed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking on unexpected values"
)]

/// The name libtest knows the test `name` of the calling module by (`<module>::<name>`), to run
/// it again in a child process with `--exact`.
macro_rules! test_name {
    ($name:expr) => {
        format!(
            "{}::{}",
            module_path!()
                .split_once("::")
                .map_or(module_path!(), |(_, m)| m),
            $name
        )
    };
}

mod auth;
mod client_faults;
mod common;
mod display_browser;
mod display_evcxr;
mod distributed;
mod exporter_faults;
mod feedback;
mod fuzz;
mod golden;
mod hostile;
mod inference_table;
mod init_env;
mod layer;
mod layer_rig;
mod live;
mod llm_helpers;
mod macro_ui;
mod notice;
mod otlp;
mod proptests;
mod python_readback;
mod rerun;
mod signals;
mod span_api;
mod span_limits;
mod spool;
mod streams;
mod tidy;
mod tls;
mod trace_context;
mod tracking_server;
// The same suite against a PostgreSQL-backed server with four workers.
#[path = "tracking_server.rs"]
#[expect(
    clippy::duplicate_mod,
    reason = "the same suite, compiled again against the second backend"
)]
mod tracking_server_postgres;
mod uc_table;
