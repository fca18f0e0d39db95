//! `InitGuard::flush_on_signals`: a job killed with SIGTERM or SIGINT right after making its
//! traces still delivers them to the real server, then dies of the signal; without it, nothing
//! arrives (the control that shows what the opt-in buys).
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use mlflow_tracing::TracerBuilder;

use crate::live::{experiment, python_json, server};

use crate::rerun::{self, CHILD};

/// In the child: 25 traces queued (batches wait a minute), then `READY`, then sleep until a
/// signal ends the process.
#[expect(
    clippy::print_stdout,
    reason = "the child tells its parent it is ready on stdout"
)]
fn child() {
    let guard = mlflow_tracing::init(TracerBuilder::from_env().unwrap()).unwrap();
    let guard = if std::env::var_os("SIGNALS_TEST_FLUSH").is_some() {
        guard.flush_on_signals(Duration::from_secs(20)).unwrap()
    } else {
        guard
    };
    for i in 0..25 {
        let span = mlflow_tracing::start_span(format!("killed-job-{i}")).start();
        span.set_outputs(&i);
    }
    if std::env::var_os("SIGNALS_TEST_DROP").is_some() {
        // Tracing is over but the program goes on: signals must keep their usual effect.
        drop(guard);
    }
    println!("READY");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Traces stored in `experiment`.
fn stored(experiment: &str) -> u64 {
    python_json(
        r#"
import json, sys, mlflow
print(json.dumps(len(mlflow.search_traces(locations=[sys.argv[1]], return_type="list"))))
"#,
        &[experiment],
    )
    .as_u64()
    .unwrap()
}

/// Runs the child against `url` (and a spool), signals it once it is ready; its exit signal.
fn run_child(
    test: &str,
    signal: &str,
    flush: bool,
    url: &str,
    experiment: &str,
    spool: Option<&std::path::Path>,
) -> Option<i32> {
    let mut command = rerun::command(test, "1");
    command
        .env("MLFLOW_TRACKING_URI", url)
        .env("MLFLOW_EXPERIMENT_ID", experiment)
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        .env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.1")
        .env("MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS", "60000")
        .env("MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE", "1000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if flush {
        command.env("SIGNALS_TEST_FLUSH", "1");
    }
    if let Some(dir) = spool {
        command.env("MLFLOW_TRACING_SPOOL_DIR", dir);
    }
    if signal.ends_with("-after-drop") {
        command.env("SIGNALS_TEST_DROP", "1");
    }
    let signal = signal.trim_end_matches("-after-drop");
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .any(|l| l.is_ok_and(|l| l.contains("READY")));
    assert!(ready, "the child did not get ready");
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // A child that ignores the signal is killed after 30 s (and the test fails on its status).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.signal();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the child against the shared server; its exit signal and the traces stored.
fn run(test: &str, signal: &str, flush: bool) -> (Option<i32>, u64) {
    let experiment = experiment(&format!("signals-{signal}-{flush}"));
    let status = run_child(test, signal, flush, server().url(), &experiment, None);
    (status, stored(&experiment))
}

#[test]
fn sigterm_and_sigint_flush_the_queue_then_end_the_process() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let test = test_name!("sigterm_and_sigint_flush_the_queue_then_end_the_process");
    assert_eq!(run(&test, "-TERM", true), (Some(15), 25));
    assert_eq!(run(&test, "-INT", true), (Some(2), 25));
    // Without the opt-in, the queue dies with the process.
    assert_eq!(run(&test, "-TERM", false), (Some(15), 0));
    // After the guard is dropped, SIGTERM still ends the process (the traces went at shutdown).
    assert_eq!(run(&test, "-TERM-after-drop", true), (Some(15), 25));

    // The server unreachable and a spool configured: the signal's flush spools the queue, and
    // the next process sends it.
    let spool = tempfile::tempdir().unwrap();
    let experiment = experiment("signals-spooled");
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let status = run_child(&test, "-TERM", true, &dead, &experiment, Some(spool.path()));
    assert_eq!(status, Some(15));
    assert_eq!(stored(&experiment), 0);
    let next = crate::spool::result(crate::spool::spawn_producer(
        &crate::spool::producer_test(),
        server().url(),
        &experiment,
        spool.path(),
        (0, 0, 0, 60),
    ));
    assert_eq!(next["replayed"], 25, "{next}");
    assert_eq!(stored(&experiment), 25);
}
