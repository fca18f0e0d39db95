//! A real, pinned MLflow tracking server for tests, the demo and benchmarks.
//!
//! [`MlflowServer::start`] runs `mlflow server` from the pinned venv (see [`crate::python`]) on
//! 127.0.0.1 and a free port, with a sqlite backend and a local artifact directory in a fresh
//! data directory, `MLFLOW_DISABLE_TELEMETRY=true`, one worker and no job runner, and waits for
//! `/health`. A small Python supervisor owns the server's process group and stops it when its
//! stdin closes: when the [`MlflowServer`] is dropped, and also when the test process exits or
//! dies for any reason (a panic, `exit`, a signal), so no server outlives its tests.
//! [`MlflowServer::start_detached`] leaves the server running (the demo).

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::python::mlflow_python;

/// The supervisor: starts `mlflow server` in its own process group, prints `READY <pid>` once
/// `/health` answers (or `EXITED`/`TIMEOUT`), then stops the group when stdin closes
/// (`attached`, then deletes the data directory if told `remove`) or exits at once leaving it
/// running (`detached`).
const SUPERVISOR: &str = r#"
import json, os, shutil, signal, ssl, subprocess, sys, time, urllib.request
port, data, log, mode, keep = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
options = json.loads(os.environ.pop("MLFLOW_TEST_SERVER_OPTIONS", "{}"))
env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
           MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **options.get("env", {}))
env.pop("MLFLOW_TRACKING_URI", None)
scheme = "https" if options.get("https") else "http"
context = None
if options.get("https"):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if options.get("cert"):
        context.load_cert_chain(options["cert"], options["key"])
mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
os.makedirs(os.path.join(data, "artifacts"), exist_ok=True)
out = open(log, "ab")
p = subprocess.Popen(
    [mlflow, "server", "--host", "127.0.0.1", "--port", port, "--workers", "1",
     "--backend-store-uri", "sqlite:///" + os.path.join(data, "mlflow.db"),
     "--artifacts-destination", os.path.join(data, "artifacts")] + options.get("args", []),
    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    start_new_session=True)

def stop():
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()

deadline = time.time() + 180
status = "TIMEOUT"
while time.time() < deadline:
    if p.poll() is not None:
        status = "EXITED"
        break
    try:
        with urllib.request.urlopen("%s://127.0.0.1:%s/health" % (scheme, port), timeout=2,
                                    context=context) as r:
            if r.status == 200:
                status = "READY"
                break
    except Exception:
        time.sleep(0.2)
print(status, p.pid, flush=True)
if status != "READY":
    stop()
    sys.exit(1)
if mode == "detached":
    sys.exit(0)
try:
    sys.stdin.read()
finally:
    stop()
    if keep == "remove":
        shutil.rmtree(data, ignore_errors=True)
"#;

/// How to start a server beyond the defaults ([`MlflowServer::start_with`]).
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// More arguments of `mlflow server` (`--app-name basic-auth`, `--uvicorn-opts …`).
    pub args: Vec<String>,
    /// More environment of the server.
    pub env: Vec<(String, String)>,
    /// The Python of another venv holding `mlflow` (with extras); the pinned one by default.
    pub python: Option<PathBuf>,
    /// The server speaks TLS: its URL is `https://`, and the readiness probe does not check
    /// the certificate.
    pub https: bool,
    /// A client certificate and key for the readiness probe (a server requiring mutual TLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl ServerOptions {
    fn to_json(&self) -> String {
        let env: serde_json::Map<String, serde_json::Value> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let mut o = serde_json::json!({"args": self.args, "env": env, "https": self.https});
        if let Some((cert, key)) = &self.client_cert {
            o["cert"] = serde_json::json!(cert);
            o["key"] = serde_json::json!(key);
        }
        o.to_string()
    }
}

/// A running MLflow tracking server (see the module docs). Dropping it stops the server and
/// removes its data directory (unless it was given one).
#[derive(Debug)]
pub struct MlflowServer {
    url: String,
    pid: u32,
    data_dir: PathBuf,
    remove_data: bool,
    supervisor: Child,
    stdin: Option<ChildStdin>,
}

/// A free port on 127.0.0.1 (the OS picks it; the listener is closed before the server binds).
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn unique_dir() -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "mlflow-tracing-server-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

/// Starts the supervisor; returns it, its stdin, the server pid and URL.
fn launch(
    data_dir: &Path,
    mode: &str,
    keep: &str,
    port: Option<u16>,
    options: &ServerOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<(Child, Option<ChildStdin>, u32, String), String> {
    let python = match &options.python {
        Some(p) => p.as_path(),
        None => mlflow_python()?,
    };
    let scheme = if options.https { "https" } else { "http" };
    std::fs::create_dir_all(data_dir).map_err(|e| format!("create {}: {e}", data_dir.display()))?;
    let log = data_dir.join("server.log");
    let mut last_error = String::new();
    for attempt in 1..=3 {
        let port = match port {
            Some(p) => {
                if attempt > 1 {
                    std::thread::sleep(Duration::from_secs(1));
                }
                p
            }
            None => free_port()?,
        };
        progress(&format!(
            "starting MLflow {} server on 127.0.0.1:{port} (attempt {attempt}; log: {})",
            crate::MLFLOW_VERSION,
            log.display()
        ));
        let mut child = Command::new(python)
            .arg("-c")
            .arg(SUPERVISOR)
            .arg(port.to_string())
            .arg(data_dir)
            .arg(&log)
            .arg(mode)
            .arg(keep)
            .env("MLFLOW_TEST_SERVER_OPTIONS", options.to_json())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout)
                .read_line(&mut line)
                .map_err(|e| format!("reading the supervisor: {e}"))?;
        }
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|p| p.parse::<u32>().ok()),
        ) {
            (Some("READY"), Some(pid)) => {
                return Ok((child, stdin, pid, format!("{scheme}://127.0.0.1:{port}")));
            }
            _ => {
                drop(stdin);
                let _ = child.wait();
                last_error = format!(
                    "the MLflow server did not start ({}); last lines of {}:\n{}",
                    line.trim(),
                    log.display(),
                    log_tail(&log)
                );
            }
        }
    }
    Err(last_error)
}

impl MlflowServer {
    /// Starts a server in a fresh temporary data directory.
    ///
    /// # Errors
    /// Why it could not start (provisioning, or the server's log tail).
    pub fn start() -> Result<Self, String> {
        let dir = unique_dir();
        let mut server =
            Self::launch_attached(&dir, "remove", None, &ServerOptions::default(), &mut |_| {})?;
        server.remove_data = true;
        Ok(server)
    }

    /// Starts a server keeping its data in `data_dir`; `progress` hears what happens.
    ///
    /// # Errors
    /// As [`MlflowServer::start`].
    pub fn start_in(data_dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<Self, String> {
        Self::launch_attached(data_dir, "keep", None, &ServerOptions::default(), progress)
    }

    /// Starts a server with `options`, keeping its data in `data_dir` (where the options'
    /// files, such as an auth config or certificates, can live).
    ///
    /// # Errors
    /// As [`MlflowServer::start`].
    pub fn start_with(data_dir: &Path, options: &ServerOptions) -> Result<Self, String> {
        Self::launch_attached(data_dir, "keep", None, options, &mut |_| {})
    }

    /// Starts a server keeping its data in `data_dir`, on `port` (to restart a stopped one
    /// where its clients expect it).
    ///
    /// # Errors
    /// As [`MlflowServer::start`].
    pub fn start_in_at(data_dir: &Path, port: u16) -> Result<Self, String> {
        Self::launch_attached(
            data_dir,
            "keep",
            Some(port),
            &ServerOptions::default(),
            &mut |_| {},
        )
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    fn launch_attached(
        data_dir: &Path,
        keep: &str,
        port: Option<u16>,
        options: &ServerOptions,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Self, String> {
        let started = Instant::now();
        let (supervisor, stdin, pid, url) =
            launch(data_dir, "attached", keep, port, options, progress)?;
        progress(&format!(
            "MLflow server ready at {url} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Ok(MlflowServer {
            url,
            pid,
            data_dir: data_dir.to_path_buf(),
            remove_data: false,
            supervisor,
            stdin,
        })
    }

    /// Starts a server that keeps running after this process exits (stop it with
    /// `kill -TERM -<pid>`, the process group); returns its URL and pid.
    ///
    /// # Errors
    /// As [`MlflowServer::start`].
    pub fn start_detached(
        data_dir: &Path,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(String, u32), String> {
        let (mut supervisor, _stdin, pid, url) = launch(
            data_dir,
            "detached",
            "keep",
            None,
            &ServerOptions::default(),
            progress,
        )?;
        let _ = supervisor.wait();
        Ok((url, pid))
    }

    /// One server shared by every test of this process, started on first use and stopped when
    /// the process exits.
    ///
    /// # Errors
    /// As [`MlflowServer::start`] (the same error for every caller).
    pub fn shared() -> Result<&'static MlflowServer, String> {
        static SERVER: OnceLock<Result<MlflowServer, String>> = OnceLock::new();
        SERVER
            .get_or_init(MlflowServer::start)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's process id (the leader of its process group).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where the database, artifacts and `server.log` are.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs a Python script with the pinned `mlflow` against this server
    /// (`MLFLOW_TRACKING_URI` set); returns its stdout.
    ///
    /// # Errors
    /// The script's failure, with its stderr.
    pub fn run_python(&self, script: &str, args: &[&str]) -> Result<String, String> {
        crate::python::run_script_with(script, args, &[("MLFLOW_TRACKING_URI", &self.url)])
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // Closing stdin tells the supervisor to stop the server's process group.
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match self.supervisor.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
        if self.remove_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
