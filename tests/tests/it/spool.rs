//! The durable spool against a real MLflow server that goes away and comes back: a service
//! whose server stops mid-burst for several retry budgets, and a job that exits during an
//! outage, its traces (minus one corrupted record) sent by the next process. Producers are
//! child processes configured the way a user would (`init`, environment variables); what the
//! server stored is read back with Python's `mlflow`.
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use mlflow_tracing::server::{ClientConfig, TrackingClient};
use mlflow_tracing::{TracerBuilder, trace};
use mlflow_tracing_tests::server::MlflowServer;
use serde_json::{Value, json};

use crate::rerun::{self, CHILD};

#[trace(span_type = "TOOL")]
fn step(i: usize) -> usize {
    i * 2
}

/// One trace of three spans; the root is named `job-{i}` (the trace's name on the server).
fn job(i: usize) {
    let root = mlflow_tracing::start_span(format!("job-{i}"))
        .span_type("AGENT")
        .inputs(&json!({"i": i}))
        .start();
    let _entered = root.enter();
    step(i);
    step(i + 1);
    root.set_outputs(&json!({"done": i}));
}

fn env_num(key: &str) -> usize {
    std::env::var(key).unwrap().parse().unwrap()
}

/// The producer (in a child): `SPOOL_TEST_FIRST`.. `+ SPOOL_TEST_TRACES` traces,
/// `SPOOL_TEST_PAUSE_MS` apart; then, for `SPOOL_TEST_DRAIN_S` seconds at most, flushes until
/// the spool has sent everything it holds. Prints its counters as one JSON line.
#[expect(
    clippy::print_stdout,
    reason = "the child reports to its parent on stdout"
)]
fn produce() {
    let (first, n, pause) = (
        env_num("SPOOL_TEST_FIRST"),
        env_num("SPOOL_TEST_TRACES"),
        env_num("SPOOL_TEST_PAUSE_MS"),
    );
    let guard = mlflow_tracing::init(TracerBuilder::from_env().unwrap()).unwrap();
    for i in first..first + n {
        job(i);
        std::thread::sleep(Duration::from_millis(pause as u64));
    }
    if let Ok(ms) = std::env::var("SPOOL_TEST_SHUTDOWN_MS") {
        // Shut down at once, within this time (the summary line reports the spool).
        drop(guard.with_shutdown_timeout(Duration::from_millis(ms.parse().unwrap())));
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(env_num("SPOOL_TEST_DRAIN_S") as u64);
    loop {
        let _ = guard.tracer().force_flush(Duration::from_secs(30));
        let spool = guard.spool_stats().unwrap();
        let waiting = std::fs::read_dir(std::env::var("MLFLOW_TRACING_SPOOL_DIR").unwrap())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "spool"))
            })
            .count();
        if waiting == 0 || Instant::now() > deadline {
            let worker = guard.export_stats().unwrap();
            println!(
                "RESULT {}",
                json!({
                    "spooled": spool.spooled,
                    "replayed": spool.replayed,
                    "corrupt": spool.corrupt,
                    "dropped": spool.dropped,
                    "waiting_segments": waiting,
                    "failed": worker.failed,
                    "dropped_queue": worker.dropped_queue_full,
                })
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(guard);
}

/// The test whose child runs [`produce`] (for other modules' producers).
pub(crate) fn producer_test() -> String {
    test_name!("a_job_that_exits_during_an_outage_is_sent_by_the_next_process")
}

/// Starts this test binary as a producer child.
pub(crate) fn spawn_producer(
    test: &str,
    url: &str,
    experiment: &str,
    spool: &Path,
    (first, traces, pause_ms, drain_s): (usize, usize, u64, u64),
) -> Child {
    rerun::command(test, "1")
        .env("MLFLOW_TRACKING_URI", url)
        .env("MLFLOW_EXPERIMENT_ID", experiment)
        .env("MLFLOW_TRACING_SPOOL_DIR", spool)
        // A short retry budget: one retry, 0.1 s backoff, 2 s per attempt.
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        .env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.1")
        .env("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.1")
        .env("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        .env("MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS", "200")
        .env("SPOOL_TEST_FIRST", first.to_string())
        .env("SPOOL_TEST_TRACES", traces.to_string())
        .env("SPOOL_TEST_PAUSE_MS", pause_ms.to_string())
        .env("SPOOL_TEST_DRAIN_S", drain_s.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub(crate) fn result(child: Child) -> Value {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rerun::result(&stdout)
}

fn new_experiment(server: &MlflowServer, name: &str) -> String {
    let client = TrackingClient::new(ClientConfig::new(server.url())).unwrap();
    let unique = format!("{name}-{}", std::process::id());
    crate::live::block_on(client.create_experiment(&unique)).unwrap()
}

/// The trace names the server holds in `experiment`, sorted, with each trace's span count
/// (read with Python's `mlflow`).
fn stored(server: &MlflowServer, experiment: &str) -> Vec<(String, u64)> {
    let out = server
        .run_python(
            r#"
import json, sys, mlflow
found = mlflow.search_traces(locations=[sys.argv[1]], return_type="list", max_results=10000)
print(json.dumps(sorted([t.info.tags.get("mlflow.traceName", ""), len(t.data.spans)] for t in found)))
"#,
            &[experiment],
        )
        .unwrap();
    let rows: Vec<(String, u64)> = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    rows
}

fn expected(range: impl Iterator<Item = usize>) -> Vec<(String, u64)> {
    let mut rows: Vec<(String, u64)> = range.map(|i| (format!("job-{i}"), 3)).collect();
    rows.sort();
    rows
}

fn stop(server: MlflowServer) -> (std::path::PathBuf, u16) {
    let (dir, port) = (server.data_dir().to_owned(), server.port());
    drop(server);
    (dir, port)
}

#[test]
fn a_server_outage_mid_burst_loses_nothing_and_duplicates_nothing() {
    if std::env::var_os(CHILD).is_some() {
        return produce();
    }
    let data = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let server = MlflowServer::start_in(data.path(), &mut |_| {}).unwrap();
    let experiment = new_experiment(&server, "spool-outage");
    let url = server.url().to_owned();
    // 60 traces over about 6 s; the server stops after 1.5 s for 6 s (many retry budgets).
    let child = spawn_producer(
        &test_name!("a_server_outage_mid_burst_loses_nothing_and_duplicates_nothing"),
        &url,
        &experiment,
        spool.path(),
        (0, 60, 100, 120),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let (dir, port) = stop(server);
    std::thread::sleep(Duration::from_secs(6));
    let server = MlflowServer::start_in_at(&dir, port).unwrap();
    let counters = result(child);
    assert!(
        counters["spooled"].as_u64().unwrap() > 0,
        "the outage was not seen: {counters}"
    );
    assert_eq!(
        counters["replayed"], counters["spooled"],
        "everything spooled was sent: {counters}"
    );
    assert_eq!(counters["waiting_segments"], 0, "{counters}");
    assert_eq!(counters["failed"], 0, "{counters}");
    assert_eq!(counters["dropped_queue"], 0, "{counters}");
    assert_eq!(stored(&server, &experiment), expected(0..60), "{counters}");
}

#[test]
fn a_job_that_exits_during_an_outage_is_sent_by_the_next_process() {
    if std::env::var_os(CHILD).is_some() {
        return produce();
    }
    let test = test_name!("a_job_that_exits_during_an_outage_is_sent_by_the_next_process");
    let data = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let server = MlflowServer::start_in(data.path(), &mut |_| {}).unwrap();
    let experiment = new_experiment(&server, "spool-next-process");
    let url = server.url().to_owned();
    let (dir, port) = stop(server);

    // The first job runs entirely during the outage and exits (no drain).
    let first = result(spawn_producer(
        &test,
        &url,
        &experiment,
        spool.path(),
        (0, 20, 0, 0),
    ));
    assert_eq!(first["spooled"], 20, "{first}");
    assert_eq!(first["replayed"], 0, "{first}");

    // A record damaged on disk: the third record's payload.
    let segments: Vec<_> = std::fs::read_dir(spool.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "spool"))
        .collect();
    assert!(!segments.is_empty());
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    let third = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"MLSP")
        .nth(2)
        .unwrap()
        .0;
    bytes[third + 40] ^= 0x20;
    std::fs::write(&segments[0], &bytes).unwrap();

    // A copy of the spool as it is now, to replay it a second time below.
    let copy = tempfile::tempdir().unwrap();
    for segment in &segments {
        std::fs::copy(segment, copy.path().join(segment.file_name().unwrap())).unwrap();
    }

    // The server is back; the next process (one trace of its own) sends what was left.
    let server = MlflowServer::start_in_at(&dir, port).unwrap();
    let second = result(spawn_producer(
        &test,
        &url,
        &experiment,
        spool.path(),
        (100, 1, 0, 60),
    ));
    assert_eq!(second["corrupt"], 1, "{second}");
    assert_eq!(second["replayed"], 19, "{second}");
    assert_eq!(second["waiting_segments"], 0, "{second}");
    let stored_once = stored(&server, &experiment);
    let lost: Vec<_> = expected(0..20)
        .into_iter()
        .filter(|row| !stored_once.contains(row))
        .collect();
    assert_eq!(
        lost.len(),
        1,
        "only the damaged record is lost: {stored_once:?}"
    );
    assert_eq!(
        stored_once.len(),
        20,
        "19 replayed and the second job's own: {stored_once:?}"
    );
    assert!(stored_once.contains(&("job-100".to_owned(), 3)));

    // The same records replayed again (as after a replay cut short before it could record its
    // progress): the server merges them; nothing is duplicated.
    for segment in &segments {
        std::fs::copy(copy.path().join(segment.file_name().unwrap()), segment).unwrap();
    }
    let again = result(spawn_producer(
        &test,
        &url,
        &experiment,
        spool.path(),
        (0, 0, 0, 60),
    ));
    assert_eq!(again["replayed"], 19, "{again}");
    assert_eq!(
        stored(&server, &experiment),
        stored_once,
        "no duplicate trace or span"
    );
}

#[test]
fn what_is_queued_when_shutdown_time_runs_out_goes_to_the_spool() {
    if std::env::var_os(CHILD).is_some() {
        return produce();
    }
    let test = test_name!("what_is_queued_when_shutdown_time_runs_out_goes_to_the_spool");
    let spool = tempfile::tempdir().unwrap();
    // A server that answers everything after 20 s: the first export holds the only slot.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (url, _) = runtime.block_on(mlflow_tracing_tests::fake_server::routed(|_, _| {
        let mut answer = mlflow_tracing_tests::fake_server::answer(503, "{}");
        answer.delay = Duration::from_secs(20);
        answer
    }));
    let (_, stderr) = rerun::output_ok(
        rerun::command(&test, "1")
            .env("MLFLOW_TRACKING_URI", &url)
            .env("MLFLOW_EXPERIMENT_ID", "1")
            .env("MLFLOW_TRACING_SPOOL_DIR", spool.path())
            .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            .env("MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS", "1")
            .env("MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE", "1")
            .env("MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS", "10")
            .env("SPOOL_TEST_FIRST", "0")
            .env("SPOOL_TEST_TRACES", "20")
            .env("SPOOL_TEST_PAUSE_MS", "0")
            .env("SPOOL_TEST_DRAIN_S", "0")
            .env("SPOOL_TEST_SHUTDOWN_MS", "2000"),
    );
    let summary = stderr
        .lines()
        .find(|l| l.contains("MLflow tracing shut down"))
        .unwrap_or_else(|| panic!("no summary on stderr:\n{stderr}"));
    let spooled: u64 = summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix("spooled="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    // All but the one (or two) held by the export stuck on the server.
    assert!(spooled >= 18, "{summary}");
    let records: usize = std::fs::read_dir(spool.path())
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .map(|bytes| bytes.windows(4).filter(|w| *w == b"MLSP").count())
        .sum();
    assert_eq!(records as u64, spooled, "{summary}");
}
