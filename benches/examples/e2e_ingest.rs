//! The Rust side of `cargo xtask bench e2e`, into the MLflow server at `MLFLOW_TRACKING_URI`,
//! experiment `MLFLOW_EXPERIMENT_ID`. Arguments: mode, traces, spans per trace, payload bytes.
//!
//! - `sdk`: a burst of traces through `#[trace]` and the SDK's default async path, from
//!   `threads` threads (argument 5, default 1; `traces` each), every `sample`-th trace of each
//!   thread (argument 6; 0: none) timed from its root's end until the server has it (polled with
//!   `GetTraceInfo`). Prints one JSON line: caller time (wall, and the burst threads' CPU time,
//!   the kernel's part of it and page faults), time until everything was flushed, the export
//!   counters, peak RSS and its file-backed part (code, shared libraries), the sampled
//!   latencies in ms.
//! - `warm`: `sdk`'s burst twice in one process, each flushed; the caller figures are the second
//!   burst's, whose memory the first one's exported traces freed (no new pages): what the SDK
//!   costs the caller when the memory is not new.
//! - `ceiling`: the same traces made by the SDK into memory, encoded beforehand into exactly
//!   the requests the SDK's exporter sends (one OTLP protobuf request per batch of traces, then
//!   one StartTraceV3 per trace), then sent with a plain HTTP client at the exporter's
//!   concurrency: how fast this server stores spans when the client costs nothing.
#![expect(clippy::print_stdout, reason = "reports to xtask on stdout")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mlflow_tracing::entities::otlp::{export_request, sdk_resource};
use mlflow_tracing::export::WorkerConfig;
use mlflow_tracing::testing::InMemoryExporter;
use mlflow_tracing::{TracerBuilder, trace};
use prost::Message as _;
use serde::Serialize;
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// What a step answers: `{"a": "xxx…"}`, as the Python side's outputs.
#[derive(Serialize)]
struct Answer<'a> {
    a: &'a str,
}

#[trace(name = "step", span_type = "TOOL")]
fn step<'a>(q: &'a str) -> Answer<'a> {
    Answer { a: q }
}

thread_local! {
    /// Whether `root` keeps its trace id in [`LAST_ROOT`] (only while latency is sampled).
    static KEEP_ID: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LAST_ROOT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

#[trace(name = "root", span_type = "AGENT")]
fn root<'a>(q: &'a str, spans: usize) -> Answer<'a> {
    if KEEP_ID.get() {
        let id = mlflow_tracing::context::current_span().and_then(|s| s.mlflow_trace_id());
        LAST_ROOT.with_borrow_mut(|last| *last = id);
    }
    for _ in 1..spans {
        std::hint::black_box(step(q));
    }
    Answer { a: q }
}

/// Polls the server for each sampled trace until it is stored; the latencies (ms) from the
/// root's end.
fn poll_stored(samples: std::sync::mpsc::Receiver<(String, Instant)>) -> Result<Vec<f64>, Error> {
    let client = mlflow_tracing::server::TrackingClient::from_env()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut pending: Vec<(String, Instant)> = Vec::new();
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut open = true;
    while (open || !pending.is_empty()) && Instant::now() < deadline {
        loop {
            match samples.try_recv() {
                Ok(sample) => pending.push(sample),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let mut still = Vec::new();
        for (id, ended) in pending.drain(..) {
            if runtime.block_on(client.get_trace_info(&id)).is_ok() {
                latencies.push(ended.elapsed().as_secs_f64() * 1000.0);
            } else {
                still.push((id, ended));
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(latencies)
}

/// A thread's resource use: CPU time (s) in user space and in the kernel, minor page faults.
#[derive(Clone, Copy, Default)]
struct Usage {
    user_s: f64,
    system_s: f64,
    faults: i64,
}

impl Usage {
    fn since(self, before: Usage) -> Usage {
        Usage {
            user_s: self.user_s - before.user_s,
            system_s: self.system_s - before.system_s,
            faults: self.faults - before.faults,
        }
    }

    fn add(self, other: Usage) -> Usage {
        Usage {
            user_s: self.user_s + other.user_s,
            system_s: self.system_s + other.system_s,
            faults: self.faults + other.faults,
        }
    }
}

/// This thread's resource use so far; `None` where the system cannot say (`RUSAGE_THREAD` is
/// Linux's).
#[cfg(target_os = "linux")]
fn thread_usage() -> Option<Usage> {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_THREAD).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(Usage {
        user_s: secs(u.user_time()),
        system_s: secs(u.system_time()),
        faults: u.minor_page_faults(),
    })
}

#[cfg(not(target_os = "linux"))]
fn thread_usage() -> Option<Usage> {
    None
}

/// A `/proc/self/status` figure in kB (`VmHWM`, `RssFile`…), in bytes; 0 where unknown.
fn status_bytes(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The process's peak resident set, in bytes.
fn peak_rss() -> u64 {
    status_bytes("VmHWM")
}

/// One thread's burst: `traces` root calls, every `sample`-th one's id sent to the poller.
fn burst(
    traces: usize,
    spans: usize,
    payload: &str,
    sample: usize,
    samples: &std::sync::mpsc::Sender<(String, Instant)>,
) {
    for i in 0..traces {
        let keep = sample > 0 && i % sample == 0;
        KEEP_ID.set(keep);
        std::hint::black_box(root(payload, spans));
        if keep && let Some(id) = LAST_ROOT.with_borrow_mut(Option::take) {
            let _ = samples.send((id, Instant::now()));
        }
    }
}

fn sdk(
    traces: usize,
    spans: usize,
    payload: &str,
    threads: usize,
    sample: usize,
    bursts: usize,
) -> Result<(), Error> {
    let guard = mlflow_tracing::init(TracerBuilder::from_env()?)?;
    let (samples, sampled) = std::sync::mpsc::channel::<(String, Instant)>();
    let poller = (sample > 0).then(|| std::thread::spawn(move || poll_stored(sampled)));
    let mut last = None;
    for _ in 0..bursts.max(1) {
        let started = Instant::now();
        let usage = std::thread::scope(|scope| {
            let bursts: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    let samples = samples.clone();
                    scope.spawn(move || {
                        let before = thread_usage();
                        burst(traces, spans, payload, sample, &samples);
                        let after = thread_usage();
                        before.zip(after).map(|(b, a)| a.since(b))
                    })
                })
                .collect();
            let mut total = Some(Usage::default());
            for b in bursts {
                let usage = b.join().map_err(|_| "a burst thread panicked")?;
                total = total.zip(usage).map(|(t, u)| t.add(u));
            }
            Ok::<_, Error>(total)
        })?;
        let caller = started.elapsed();
        guard.tracer().force_flush(Duration::from_secs(600))?;
        last = Some((caller, usage, started.elapsed()));
    }
    drop(samples);
    let (caller, usage, flushed) = last.ok_or("no burst")?;
    let stats = guard.export_stats().unwrap_or_default();
    drop(guard);
    let latencies = match poller {
        Some(p) => p.join().map_err(|_| "the poller panicked")??,
        None => Vec::new(),
    };
    println!(
        "{}",
        json!({
            "caller_s": caller.as_secs_f64(),
            "caller_cpu_s": usage.map(|u| u.user_s + u.system_s),
            "caller_system_s": usage.map(|u| u.system_s),
            "caller_minor_faults": usage.map(|u| u.faults),
            "flushed_s": flushed.as_secs_f64(),
            "spans": traces * spans * threads.max(1),
            "bursts": bursts.max(1),
            "traces_failed": stats.failed,
            "traces_dropped": stats.dropped_queue_full,
            "peak_rss": peak_rss(),
            // Code and shared libraries (file-backed; they do not shrink, so this is also
            // their part of the peak).
            "file_rss": status_bytes("RssFile"),
            "latencies_ms": latencies,
        })
    );
    Ok(())
}

/// One batch as the exporter sends it: the OTLP request of its spans, then each trace's
/// StartTraceV3 body.
struct Batch {
    otlp: Vec<u8>,
    infos: Vec<String>,
}

fn encode(traces: usize, spans: usize, payload: &str) -> Result<(String, Vec<Batch>), Error> {
    let exporter = InMemoryExporter::new();
    let guard = mlflow_tracing::init(TracerBuilder::from_env()?.with_exporter(exporter.clone()))?;
    for _ in 0..traces {
        std::hint::black_box(root(payload, spans));
    }
    guard.tracer().force_flush(Duration::from_secs(60))?;
    drop(guard);
    let mut all = exporter.traces();
    let experiment = all
        .first()
        .and_then(|t| t.info.experiment_id())
        .ok_or("no trace in an experiment")?
        .to_owned();
    let per_batch = WorkerConfig::default().max_batch_size;
    let mut batches = Vec::new();
    for chunk in all.chunks_mut(per_batch) {
        let request = export_request(
            sdk_resource(env!("CARGO_PKG_VERSION")),
            chunk.iter().flat_map(|t| t.data.spans.iter()),
        );
        let mut infos = Vec::with_capacity(chunk.len());
        for trace in chunk.iter_mut() {
            trace.add_size_stats();
            infos.push(trace.info.start_trace_v3_body()?);
        }
        batches.push(Batch {
            otlp: request.encode_to_vec(),
            infos,
        });
    }
    Ok((experiment, batches))
}

fn ceiling(traces: usize, spans: usize, payload: &str) -> Result<(), Error> {
    let url = std::env::var("MLFLOW_TRACKING_URI")?;
    let url = url.trim_end_matches('/').to_owned();
    let (experiment, batches) = encode(traces, spans, payload)?;
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let concurrency = WorkerConfig::default().max_concurrent_exports;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let failures = runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (batches, next, client) = (batches.clone(), next.clone(), client.clone());
            let (url, experiment) = (url.clone(), experiment.clone());
            tasks.push(tokio::spawn(async move {
                let mut failures = 0usize;
                while let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let otlp = client
                        .post(format!("{url}/v1/traces"))
                        .header("content-type", "application/x-protobuf")
                        .header("x-mlflow-experiment-id", &experiment)
                        .body(batch.otlp.clone())
                        .send()
                        .await;
                    failures += usize::from(!otlp.is_ok_and(|r| r.status().is_success()));
                    for info in &batch.infos {
                        let start = client
                            .post(format!("{url}/api/3.0/mlflow/traces"))
                            .header("content-type", "application/json")
                            .body(info.clone())
                            .send()
                            .await;
                        failures += usize::from(!start.is_ok_and(|r| r.status().is_success()));
                    }
                }
                failures
            }));
        }
        let mut failures = 0;
        for task in tasks {
            failures += task.await.unwrap_or(1);
        }
        failures
    });
    let sent = started.elapsed();
    println!(
        "{}",
        json!({
            "sent_s": sent.as_secs_f64(),
            "spans": traces * spans,
            "failed_requests": failures,
            "peak_rss": peak_rss(),
        })
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let (traces, spans, size) = (arg(2, 300), arg(3, 10), arg(4, 1024));
    let payload = "x".repeat(size);
    match mode.as_str() {
        "sdk" => sdk(traces, spans, &payload, arg(5, 1), arg(6, 0), 1),
        "warm" => sdk(traces, spans, &payload, 1, 0, 2),
        "ceiling" => ceiling(traces, spans, &payload),
        other => Err(format!("unknown mode {other:?} (sdk, warm or ceiling)").into()),
    }
}
