//! A throwaway PostgreSQL cluster for tests: Debian's `postgresql` (installed with `apt-get` on
//! first use when missing), `initdb` in a fresh directory, `postgres` on 127.0.0.1 and a free
//! port, one database `mlflow`. A Python supervisor owns it (as the `postgres` user when run as
//! root: PostgreSQL refuses root) and stops it and removes its files when its stdin closes:
//! when the [`Postgres`] is dropped or the test process ends, whatever happens.
//! [`postgres_server`] is an MLflow tracking server on such a cluster with four workers, the
//! driver (`psycopg2-binary`, pinned) in a venv next to the pinned `mlflow`.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use crate::server::{MlflowServer, ServerOptions};

/// The PostgreSQL driver of the server's venv.
pub const PSYCOPG2: &str = "psycopg2-binary==2.9.10";

const SUPERVISOR: &str = r#"
import os, pwd, shutil, signal, subprocess, sys, time
bindir, port, data = sys.argv[1], sys.argv[2], sys.argv[3]
log = open(os.path.join(data, "postgres.log"), "ab")
cluster = os.path.join(data, "cluster")
user = None
if os.getuid() == 0:
    user = pwd.getpwnam("postgres")
    os.chown(data, user.pw_uid, user.pw_gid)
def demote():
    if user is not None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
def run(args):
    subprocess.run(args, preexec_fn=demote, stdout=log, stderr=log, check=True)
try:
    run([os.path.join(bindir, "initdb"), "-D", cluster, "-U", "postgres", "--auth=trust",
         "-E", "UTF8", "--no-sync"])
    p = subprocess.Popen(
        [os.path.join(bindir, "postgres"), "-D", cluster, "-p", port, "-k", data,
         "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "fsync=off"],
        preexec_fn=demote, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.time() + 60
    while subprocess.run([os.path.join(bindir, "pg_isready"), "-h", "127.0.0.1", "-p", port],
                         stdout=subprocess.DEVNULL).returncode != 0:
        if time.time() > deadline or p.poll() is not None:
            raise RuntimeError("postgres did not start")
        time.sleep(0.2)
    run([os.path.join(bindir, "createdb"), "-h", "127.0.0.1", "-p", port, "-U", "postgres",
         "mlflow"])
except Exception as e:
    print("FAILED", e, flush=True)
    shutil.rmtree(data, ignore_errors=True)
    sys.exit(1)
print("READY", p.pid, flush=True)
try:
    sys.stdin.read()
finally:
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(20)
    except Exception:
        os.killpg(p.pid, signal.SIGKILL)
    shutil.rmtree(data, ignore_errors=True)
"#;

/// A running cluster (see the module docs).
#[derive(Debug)]
pub struct Postgres {
    uri: String,
    supervisor: Child,
    stdin: Option<ChildStdin>,
}

/// The directory of `initdb`, `postgres`, `pg_isready` and `createdb`, installing Debian's
/// `postgresql` when there is none.
fn bindir() -> Result<PathBuf, String> {
    let find = || {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .collect();
        found.sort();
        found.pop()
    };
    if let Some(dir) = find() {
        return Ok(dir);
    }
    let out = Command::new("apt-get")
        .args(["install", "-y", "-q", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("cannot run apt-get to install postgresql: {e}"))?;
    if !out.status.success() {
        let _ = Command::new("apt-get").args(["update", "-q"]).output();
        let out = Command::new("apt-get")
            .args(["install", "-y", "-q", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "apt-get install postgresql failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    find().ok_or_else(|| "postgresql is installed but initdb was not found".to_owned())
}

impl Postgres {
    /// Starts a cluster.
    ///
    /// # Errors
    /// Why it could not start (no PostgreSQL and no apt-get, initdb or postgres failing).
    pub fn start() -> Result<Self, String> {
        let bindir = bindir()?;
        let python = crate::python::mlflow_python()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let data = std::env::temp_dir().join(format!(
            "mlflow-tracing-postgres-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let mut supervisor = Command::new(python)
            .arg("-c")
            .arg(SUPERVISOR)
            .arg(&bindir)
            .arg(port.to_string())
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the PostgreSQL supervisor: {e}"))?;
        let stdin = supervisor.stdin.take();
        let mut line = String::new();
        if let Some(out) = supervisor.stdout.take() {
            BufReader::new(out)
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
        }
        if !line.starts_with("READY") {
            let _ = supervisor.wait();
            return Err(format!("PostgreSQL did not start: {}", line.trim()));
        }
        Ok(Postgres {
            uri: format!("postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"),
            supervisor,
            stdin,
        })
    }

    /// `postgresql+psycopg2://postgres@127.0.0.1:<port>/mlflow`.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.supervisor.wait();
    }
}

/// An MLflow tracking server (pinned version, four workers) on a fresh PostgreSQL cluster;
/// returns both (the server first, so it stops first).
///
/// # Errors
/// Why either could not start.
pub fn postgres_server() -> Result<(MlflowServer, Postgres), String> {
    let db = Postgres::start()?;
    let python = crate::python::venv(
        &format!("python-mlflow-{}-postgres", crate::MLFLOW_VERSION),
        &[&format!("mlflow=={}", crate::MLFLOW_VERSION), PSYCOPG2],
    )?;
    static DIRS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let data = std::env::temp_dir().join(format!(
        "mlflow-tracing-pg-server-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let server = MlflowServer::start_with(
        &data,
        &ServerOptions {
            args: vec![
                "--backend-store-uri".into(),
                db.uri().to_owned(),
                "--workers".into(),
                "4".into(),
            ],
            python: Some(python),
            ..ServerOptions::default()
        },
    )?;
    Ok((server, db))
}

/// One PostgreSQL-backed server per test process, started on first use (the supervisors stop
/// both when the process exits).
///
/// # Errors
/// As [`postgres_server`] (the same error for every caller).
pub fn shared_postgres_server() -> Result<&'static MlflowServer, String> {
    static SERVER: OnceLock<Result<(MlflowServer, Postgres), String>> = OnceLock::new();
    SERVER
        .get_or_init(postgres_server)
        .as_ref()
        .map(|(server, _)| server)
        .map_err(Clone::clone)
}
