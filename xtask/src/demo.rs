//! `cargo xtask demo`: a local MLflow server (or `MLFLOW_TRACKING_URI`), then the example agent
//! traced into it. `cargo xtask demo stop` stops the server the demo started.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mlflow_tracing_tests::python;
use mlflow_tracing_tests::server::MlflowServer;

/// Where the demo server keeps its data and its `server.json` (url, pid).
fn state_dir() -> PathBuf {
    python::cache_dir().join("demo-server")
}

fn state_file() -> PathBuf {
    state_dir().join("server.json")
}

/// Whether `url` (`http://127.0.0.1:<port>`) answers `/health` with 200.
fn healthy(url: &str) -> bool {
    let Some(addr) = url.strip_prefix("http://") else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// Prints the elapsed time every few seconds until dropped.
struct Ticker(Arc<AtomicBool>);

impl Ticker {
    fn start(what: &'static str) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let secs = started.elapsed().as_secs();
                if secs > 0 && started.elapsed().as_millis() % 3000 < 200 {
                    eprintln!("    ... {what} ({secs} s)");
                }
            }
        });
        Ticker(done)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The running demo server's URL, starting one if needed.
fn ensure_server() -> Result<(String, Option<u32>), String> {
    if let Ok(text) = std::fs::read_to_string(state_file())
        && let Ok(state) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(url) = state["url"].as_str()
        && healthy(url)
    {
        eprintln!("==> demo: reusing the MLflow server at {url}");
        return Ok((url.to_owned(), state["pid"].as_u64().map(|p| p as u32)));
    }
    eprintln!(
        "==> demo: preparing Python mlflow {} (the first run installs it into {}, about a minute)",
        mlflow_tracing_tests::MLFLOW_VERSION,
        python::cache_dir().display()
    );
    {
        let _ticker = Ticker::start("installing");
        python::mlflow_python()?;
    }
    let (url, pid) = {
        let _ticker = Ticker::start("waiting for the server");
        MlflowServer::start_detached(&state_dir(), &mut |line| eprintln!("==> demo: {line}"))?
    };
    std::fs::write(
        state_file(),
        serde_json::json!({"url": url, "pid": pid}).to_string(),
    )
    .map_err(|e| format!("write {}: {e}", state_file().display()))?;
    eprintln!("==> demo: MLflow server ready at {url} (pid {pid})");
    Ok((url, Some(pid)))
}

/// Runs the demo.
pub(crate) fn run(arg: Option<&str>) -> Result<(), String> {
    match arg {
        None => {}
        Some("stop") => return stop(),
        Some(other) => return Err(format!("demo: unknown argument {other:?} (try `stop`)")),
    }
    let (url, pid) = match std::env::var("MLFLOW_TRACKING_URI") {
        Ok(url) if !url.is_empty() => {
            let shown = match url.split_once("://") {
                Some((scheme, rest)) if rest.split('/').next().unwrap_or("").contains('@') => {
                    let after = rest.split_once('@').map_or(rest, |(_, r)| r);
                    format!("{scheme}://***@{after}")
                }
                _ => url.clone(),
            };
            eprintln!("==> demo: using MLFLOW_TRACKING_URI={shown}");
            (url, None)
        }
        _ => ensure_server()?,
    };
    // Cargo's own progress while the example builds (the first time takes a few minutes);
    // the run itself is quiet.
    eprintln!(
        "==> demo: building the example agent (the first build compiles the SDK and its \
         dependencies: a few minutes; later ones take seconds)"
    );
    crate::cargo(
        "demo build",
        &["build", "-p", "mlflow-tracing", "--example", "agent"],
        &[],
    )?;
    crate::cargo("demo", crate::RUN_AGENT, &[("MLFLOW_TRACKING_URI", &url)])?;
    if let Some(pid) = pid {
        println!(
            "The MLflow server keeps running at {url} (pid {pid}, data in {}).\nStop it with: cargo xtask demo stop",
            state_dir().display()
        );
    }
    Ok(())
}

/// Stops the server the demo started.
fn stop() -> Result<(), String> {
    let text = std::fs::read_to_string(state_file())
        .map_err(|_| "no demo server is recorded (nothing to stop)".to_owned())?;
    let state: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", state_file().display()))?;
    let pid = state["pid"]
        .as_u64()
        .ok_or_else(|| format!("{}: no pid", state_file().display()))?;
    // The pid may have been reused since: only stop an `mlflow server` process.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("mlflow") {
        let _ = std::fs::remove_file(state_file());
        println!("the recorded MLflow server (pid {pid}) is not running");
        return Ok(());
    }
    // The server leads its own process group: stop the whole group.
    let status = std::process::Command::new("kill")
        .args(["-TERM", "--", &format!("-{pid}")])
        .status()
        .map_err(|e| format!("kill: {e}"))?;
    let _ = std::fs::remove_file(state_file());
    // Wait (up to 15 s) for it to exit, so a following `demo` starts cleanly.
    let deadline = Instant::now() + Duration::from_secs(15);
    while status.success() && Instant::now() < deadline {
        let alive = std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if status.success() {
        println!("stopped the MLflow server (pid {pid})");
    } else {
        println!("the MLflow server (pid {pid}) was not running");
    }
    Ok(())
}
