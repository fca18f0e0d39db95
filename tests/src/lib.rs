//! Test harness of the `mlflow-tracing` workspace.
//!
//! The SDK's compatibility is proven against the real Python `mlflow` package, pinned to
//! [`MLFLOW_VERSION`]. [`python::mlflow_python`] provisions it on first use: a virtualenv under
//! the user's cache directory (`$MLFLOW_TRACING_CACHE_DIR`, else `$XDG_CACHE_HOME/mlflow-tracing`,
//! else `~/.cache/mlflow-tracing`), keyed by version, installed from PyPI with `pip`, guarded by
//! a file lock so parallel test binaries install it once. A clean machine needs only `python3`
//! (with `venv`) and network access to PyPI; if provisioning fails, the tests that need it fail
//! with the reason, they never skip.
//!
//! [`server::MlflowServer`] runs a real tracking server of that version for the tests of the
//! server path, the demo (`cargo xtask demo`) and the end-to-end benchmark.
//! [`browser::browser`] provides headless Chromium with chromedriver (Debian's packages,
//! installed with `apt-get` on first use) for the display tests.

/// The pinned MLflow version every compatibility test runs against.
pub const MLFLOW_VERSION: &str = "3.17.2";

pub mod python {
    //! Provisioning of the pinned Python `mlflow` and running scripts with it.

    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;

    use super::MLFLOW_VERSION;

    /// The cache directory the harness installs into.
    pub fn cache_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("MLFLOW_TRACING_CACHE_DIR") {
            return PathBuf::from(dir);
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("mlflow-tracing")
    }

    fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{what}: cannot start: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Runs `install` once per `name` under the cache directory, guarded by a file lock and a
    /// marker file written when it succeeded; returns the directory.
    ///
    /// # Errors
    /// What `install` returned, or why the cache directory could not be used.
    pub fn provision_once(
        name: &str,
        install: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<PathBuf, String> {
        let cache = cache_dir();
        std::fs::create_dir_all(&cache).map_err(|e| format!("create {}: {e}", cache.display()))?;
        let dir = cache.join(name);
        let marker = dir.join(".mlflow-tracing-installed");
        if marker.exists() {
            return Ok(dir);
        }
        let lock_path = cache.join(format!("{name}.lock"));
        let lock = std::fs::File::create(&lock_path)
            .map_err(|e| format!("create {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
        if !marker.exists() {
            install(&dir)?;
            std::fs::write(&marker, name)
                .map_err(|e| format!("write {}: {e}", marker.display()))?;
        }
        Ok(dir)
    }

    /// The Python of a venv named `name` under the cache directory, holding `packages` (pip
    /// requirement strings), made on first use.
    ///
    /// # Errors
    /// Why the venv could not be made (no `python3`, no network, a pip error).
    pub fn venv(name: &str, packages: &[&str]) -> Result<PathBuf, String> {
        let venv = provision_once(name, |venv| {
            let host = std::env::var("MLFLOW_TRACING_PYTHON3").unwrap_or_else(|_| "python3".into());
            if !venv.join("bin").join("python").exists() {
                run(
                    Command::new(host).args(["-m", "venv"]).arg(venv),
                    &format!("creating the Python venv {name}"),
                )?;
            }
            run(
                Command::new(venv.join("bin").join("python"))
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .args(packages),
                &format!("pip install {}", packages.join(" ")),
            )
        })?;
        Ok(venv.join("bin").join("python"))
    }

    fn provision() -> Result<PathBuf, String> {
        venv(
            &format!("python-mlflow-{MLFLOW_VERSION}"),
            &[&format!("mlflow=={MLFLOW_VERSION}")],
        )
    }

    /// The Python interpreter of the pinned `mlflow` venv, installing it on first use.
    ///
    /// # Errors
    /// Why provisioning failed (no `python3`, no network, pip error), for the test to fail with.
    pub fn mlflow_python() -> Result<&'static Path, String> {
        static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        PYTHON
            .get_or_init(provision)
            .as_ref()
            .map(PathBuf::as_path)
            .map_err(Clone::clone)
    }

    /// Runs `script` with the pinned `mlflow`, passing `args`, against an in-memory sqlite
    /// store; returns its stdout.
    ///
    /// # Errors
    /// Provisioning errors, or the script's exit status with its stderr.
    pub fn run_script(script: &str, args: &[&str]) -> Result<String, String> {
        run_script_with(
            script,
            args,
            &[("MLFLOW_TRACKING_URI", "sqlite:///:memory:")],
        )
    }

    /// Runs `script` with the pinned `mlflow`, passing `args`, with extra environment
    /// variables (telemetry is always off); returns its stdout.
    ///
    /// # Errors
    /// Provisioning errors, or the script's exit status with its stderr.
    pub fn run_script_with(
        script: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<String, String> {
        let python = mlflow_python()?;
        let out = Command::new(python)
            .arg("-c")
            .arg(script)
            .args(args)
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        if !out.status.success() {
            return Err(format!(
                "python script failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8(out.stdout).map_err(|e| format!("python output is not UTF-8: {e}"))
    }
}

pub mod browser;
pub mod fake_server;
pub mod http;
pub mod notebook;
pub mod postgres;
pub mod server;
pub mod service;
pub mod tls;
