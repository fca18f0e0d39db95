//! `TraceContext` scopes against Python's `mlflow.tracing.context`: the same program in both
//! SDKs, each into its own experiment of the real server, read back by Python; the traces'
//! scope metadata and tags must be the same, and a disabled scope records nothing in either.

use mlflow_tracing::context::{FutureExt as _, TraceContext};
use mlflow_tracing::start_span;
use serde_json::{Value, json};

use crate::live::{block_on, experiment, python_json, sync_tracer};

/// The reference program.
const PY_PROGRAM: &str = r#"
import json, sys, mlflow
mlflow.set_experiment(experiment_id=sys.argv[1])
with mlflow.tracing.context(metadata={"tenant": "acme", "foo": "outer"}, tags={"project": "p1"},
                            session_id="s-1", user="u-1"):
    with mlflow.tracing.context(metadata={"foo": "inner"},
                                tags={"team": "t1", "mlflow.traceName": "from-scope"}):
        with mlflow.start_span("inner_root"):
            pass
    with mlflow.tracing.context(enabled=False):
        with mlflow.start_span("hidden"):
            pass
    with mlflow.start_span("outer_root"):
        pass
with mlflow.start_span("unscoped"):
    pass
print(json.dumps({"ok": True}))
"#;

/// What both sides are compared on: per trace name, the scope's metadata and tags.
const PY_READ: &str = r#"
import json, sys, mlflow
out = {}
for t in mlflow.search_traces(locations=[sys.argv[1]], return_type="list"):
    name = t.info.tags.get("mlflow.traceName")
    out[name] = {
        "metadata": {k: v for k, v in t.info.trace_metadata.items()
                     if k in ("tenant", "foo", "mlflow.trace.session", "mlflow.trace.user")},
        "tags": {k: v for k, v in t.info.tags.items() if k in ("project", "team")},
    }
print(json.dumps(out, sort_keys=True))
"#;

fn rust_program(experiment: &str) {
    let tracer = sync_tracer(experiment);
    tracer.in_scope(|| {
        let outer = TraceContext::new()
            .metadata("tenant", "acme")
            .metadata("foo", "outer")
            .tag("project", "p1")
            .session_id("s-1")
            .user("u-1");
        outer.in_scope(|| {
            TraceContext::new()
                .metadata("foo", "inner")
                .tag("team", "t1")
                .tag("mlflow.traceName", "from-scope")
                .in_scope(|| drop(start_span("inner_root").start()));
            TraceContext::new()
                .enabled(false)
                .in_scope(|| drop(start_span("hidden").start()));
            drop(start_span("outer_root").start());
        });
        drop(start_span("unscoped").start());
    });
}

#[test]
fn scopes_give_traces_the_same_metadata_and_tags_as_python() {
    let py_experiment = experiment("ctx-python");
    python_json(PY_PROGRAM, &[&py_experiment]);
    let rust_experiment = experiment("ctx-rust");
    rust_program(&rust_experiment);

    let python = python_json(PY_READ, &[&py_experiment]);
    let rust = python_json(PY_READ, &[&rust_experiment]);
    assert_eq!(rust, python, "Rust's traces carry what Python's do");
    // And what that is, spelled out.
    assert_eq!(
        python,
        json!({
            "inner_root": {
                "metadata": {"tenant": "acme", "foo": "inner", "mlflow.trace.session": "s-1",
                             "mlflow.trace.user": "u-1"},
                "tags": {"project": "p1", "team": "t1"}
            },
            "outer_root": {
                "metadata": {"tenant": "acme", "foo": "outer", "mlflow.trace.session": "s-1",
                             "mlflow.trace.user": "u-1"},
                "tags": {"project": "p1"}
            },
            "unscoped": {"metadata": {}, "tags": {}}
        })
    );
}

#[test]
fn a_scope_follows_spawned_tasks_and_async_code() {
    let id = experiment("ctx-async");
    let tracer = sync_tracer(&id);
    block_on(tracer.scope(async {
        let scope = TraceContext::new().session_id("async-session");
        scope
            .scope(async {
                // A task spawned with the caller's context keeps the scope.
                tokio::spawn(async { drop(start_span("spawned_root").start()) }.in_current_span())
                    .await
                    .unwrap();
                drop(start_span("awaited_root").start());
            })
            .await;
        // Outside the scope again.
        drop(start_span("after").start());
    }));
    let read = python_json(
        r#"
import json, sys, mlflow
print(json.dumps({t.info.tags["mlflow.traceName"]: t.info.trace_metadata.get("mlflow.trace.session")
                  for t in mlflow.search_traces(locations=[sys.argv[1]], return_type="list")}))
"#,
        &[&id],
    );
    assert_eq!(
        read,
        json!({"spawned_root": "async-session", "awaited_root": "async-session", "after": Value::Null})
    );
}
