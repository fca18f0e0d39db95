//! MLflow's own basic-auth app (`mlflow server --app-name basic-auth`, installed from PyPI as
//! `mlflow[auth]`, real users and permissions). A job (a child process: `init`, a `tracing`
//! subscriber printing everything) writes traces as a user with EDIT on the experiment, with a
//! wrong password, and as a user with only the default READ: the first stores them (read back
//! with Python's `mlflow` as that user); the others are each reported once at ERROR with the
//! status and the setting to fix, every trace counted; no password appears in anything the
//! job prints.
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::Duration;

use mlflow_tracing::TracerBuilder;
use mlflow_tracing_tests::python;
use mlflow_tracing_tests::server::{MlflowServer, ServerOptions};
use serde_json::{Value, json};

use crate::rerun::{self, CHILD};

const ADMIN_PASSWORD: &str = "admin-Pw-4711-secret";
const ALICE_PASSWORD: &str = "alice-Pw-0815-secret";
const BOB_PASSWORD: &str = "bob-Pw-2342-secret";
const WRONG_PASSWORD: &str = "wrong-Pw-9999-secret";

/// In the child: 5 traces through `init` with a global subscriber on stdout; its counters as
/// one JSON line.
#[expect(
    clippy::print_stdout,
    reason = "the child reports to its parent on stdout"
)]
fn child() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .init();
    let guard = mlflow_tracing::init(TracerBuilder::from_env().unwrap()).unwrap();
    for i in 0..5 {
        let span = mlflow_tracing::start_span(format!("auth-job-{i}")).start();
        span.set_outputs(&i);
    }
    guard.tracer().force_flush(Duration::from_secs(60)).unwrap();
    let stats = guard.export_stats().unwrap();
    println!(
        "RESULT {}",
        json!({"failed": stats.failed, "exported": stats.exported})
    );
    drop(guard);
}

/// Runs the child as `user`/`password`; its stdout+stderr and its RESULT.
fn run(test: &str, url: &str, experiment: &str, user: &str, password: &str) -> (String, Value) {
    let (stdout, stderr) = rerun::output_ok(
        rerun::command(test, "1")
            .env("MLFLOW_TRACKING_URI", url)
            .env("MLFLOW_EXPERIMENT_ID", experiment)
            .env("MLFLOW_TRACKING_USERNAME", user)
            .env("MLFLOW_TRACKING_PASSWORD", password)
            .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            .env("MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE", "1"),
    );
    let all = format!("{stdout}\n{stderr}");
    let result = rerun::result(&all);
    (all, result)
}

/// Runs a Python script against the server as `user`; its last line as JSON.
fn as_user(url: &str, user: &str, password: &str, script: &str, args: &[&str]) -> Value {
    let out = python::run_script_with(
        script,
        args,
        &[
            ("MLFLOW_TRACKING_URI", url),
            ("MLFLOW_TRACKING_USERNAME", user),
            ("MLFLOW_TRACKING_PASSWORD", password),
        ],
    )
    .unwrap();
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

fn error_lines(output: &str) -> Vec<&str> {
    output.lines().filter(|l| l.contains(" ERROR ")).collect()
}

#[test]
fn basic_auth_users_store_or_are_refused_once_loudly_and_never_leak_passwords() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let test =
        test_name!("basic_auth_users_store_or_are_refused_once_loudly_and_never_leak_passwords");
    let auth_python = python::venv(
        &format!(
            "python-mlflow-auth-{}",
            mlflow_tracing_tests::MLFLOW_VERSION
        ),
        &[&format!(
            "mlflow[auth]=={}",
            mlflow_tracing_tests::MLFLOW_VERSION
        )],
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let ini = data.path().join("basic_auth.ini");
    std::fs::write(
        &ini,
        format!(
            "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{}\nadmin_username = admin\nadmin_password = {ADMIN_PASSWORD}\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
            data.path().join("basic_auth.db").display()
        ),
    )
    .unwrap();
    let server = MlflowServer::start_with(
        data.path(),
        &ServerOptions {
            args: vec!["--app-name".into(), "basic-auth".into()],
            env: vec![
                ("MLFLOW_AUTH_CONFIG_PATH".into(), ini.display().to_string()),
                (
                    "MLFLOW_FLASK_SERVER_SECRET_KEY".into(),
                    "test-csrf-key".into(),
                ),
            ],
            python: Some(auth_python),
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let url = server.url().to_owned();

    // Users, through the auth app's REST API as the admin; alice creates the experiment (and
    // so may manage it); bob has only the default READ.
    let create_user = r#"
import json, sys, requests, os
r = requests.post(os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/users/create",
                  json={"username": sys.argv[1], "password": sys.argv[2]},
                  auth=(os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]))
print(json.dumps(r.status_code))
"#;
    for (user, password) in [("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)] {
        let status = as_user(
            &url,
            "admin",
            ADMIN_PASSWORD,
            create_user,
            &[user, password],
        );
        assert_eq!(status, json!(200), "creating {user}");
    }
    let experiment = as_user(
        &url,
        "alice",
        ALICE_PASSWORD,
        "import json, mlflow\nprint(json.dumps(mlflow.create_experiment('auth-traces')))",
        &[],
    );
    let experiment = experiment.as_str().unwrap().to_owned();

    // Alice stores her traces.
    let (out, result) = run(&test, &url, &experiment, "alice", ALICE_PASSWORD);
    assert_eq!(result["failed"], 0, "{out}");
    let found = as_user(
        &url,
        "alice",
        ALICE_PASSWORD,
        "import json, sys, mlflow\nprint(json.dumps(len(mlflow.search_traces(locations=[sys.argv[1]], return_type='list'))))",
        &[&experiment],
    );
    assert_eq!(found, json!(5));
    let mut everything = out;

    // A wrong password: 401, one ERROR naming the settings, five failures counted.
    let (out, result) = run(&test, &url, &experiment, "alice", WRONG_PASSWORD);
    assert_eq!(result["failed"], 5, "{out}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{out}");
    assert!(
        errors[0].contains("401") && errors[0].contains("MLFLOW_TRACKING_PASSWORD"),
        "{}",
        errors[0]
    );
    everything.push_str(&out);

    // Bob may read but not write: 403, one ERROR naming the experiment and what to grant.
    let (out, result) = run(&test, &url, &experiment, "bob", BOB_PASSWORD);
    assert_eq!(result["failed"], 5, "{out}");
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{out}");
    assert!(
        errors[0].contains("403")
            && errors[0].contains(&format!("experiment {experiment}"))
            && errors[0].contains("EDIT"),
        "{}",
        errors[0]
    );
    everything.push_str(&out);

    // No password in anything printed, at DEBUG level included.
    for secret in [ALICE_PASSWORD, BOB_PASSWORD, WRONG_PASSWORD, ADMIN_PASSWORD] {
        assert!(
            !everything.contains(secret),
            "a password leaked:\n{everything}"
        );
    }
}
