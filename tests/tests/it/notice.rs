//! Losses are visible without a `tracing` subscriber: a job whose server is unreachable,
//! run as a child process three ways: no subscriber (warnings and the summary on stderr, once
//! per call site), a subscriber (everything through it, nothing of ours on stderr), and no
//! subscriber with `MLFLOW_TRACING_QUIET=1` (silent).
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use mlflow_tracing::TracerBuilder;

use crate::rerun::{self, CHILD};

/// In the child: three traces to an unreachable server, then the guard dropped.
fn child() {
    if std::env::var_os("NOTICE_TEST_SUBSCRIBER").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stdout)
            .with_ansi(false)
            .init();
    }
    let guard = mlflow_tracing::init(TracerBuilder::from_env().unwrap()).unwrap();
    for i in 0..3 {
        let span = mlflow_tracing::start_span(format!("lost-{i}")).start();
        span.set_outputs(&i);
    }
    drop(guard);
}

/// Runs the child; its stdout and stderr.
fn run(test: &str, env: &[(&str, &str)]) -> (String, String) {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    rerun::output_ok(
        rerun::command(test, "1")
            .env("MLFLOW_TRACKING_URI", dead)
            .env("MLFLOW_EXPERIMENT_ID", "0")
            .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            .env("MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE", "1")
            .env_remove("MLFLOW_TRACING_QUIET")
            .envs(env.iter().copied()),
    )
}

fn ours(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("mlflow-tracing "))
        .collect()
}

#[test]
fn losses_reach_stderr_without_a_subscriber_and_the_subscriber_with_one() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let test = test_name!("losses_reach_stderr_without_a_subscriber_and_the_subscriber_with_one");

    let (_, stderr) = run(&test, &[]);
    let lines = ours(&stderr);
    let failures: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("mlflow-tracing WARN: failed to send the trace to MLflow"))
        .collect();
    assert_eq!(failures.len(), 1, "one line per call site: {stderr}");
    assert!(
        failures[0].contains("no tracing subscriber is installed"),
        "the first line says why and how to silence it: {stderr}"
    );
    let summary: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("mlflow-tracing INFO: MLflow tracing shut down"))
        .collect();
    assert_eq!(summary.len(), 1, "{stderr}");
    assert!(summary[0].contains("failed=3"), "{stderr}");

    let (stdout, stderr) = run(&test, &[("NOTICE_TEST_SUBSCRIBER", "1")]);
    assert!(ours(&stderr).is_empty(), "{stderr}");
    assert!(
        stdout.matches("failed to send the trace to MLflow").count() >= 3,
        "every failure through the subscriber: {stdout}"
    );
    assert!(stdout.contains("MLflow tracing shut down"), "{stdout}");

    let (_, stderr) = run(&test, &[("MLFLOW_TRACING_QUIET", "1")]);
    assert!(ours(&stderr).is_empty(), "{stderr}");
}
