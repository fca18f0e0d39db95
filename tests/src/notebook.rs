//! A real Jupyter kernel for the notebook check (`cargo xtask notebook`): the evcxr kernel built
//! from crates.io and the Python Jupyter client packages, pinned here, installed once into the
//! project's cache directory and registered there (never in the user's own Jupyter setup).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::python::{cache_dir, provision_once, venv};

/// The evcxr Jupyter kernel version.
pub const EVCXR_VERSION: &str = "0.22.0";

/// The Python packages that execute a notebook, pinned.
pub const JUPYTER_PACKAGES: [&str; 3] = [
    "nbclient==0.11.0",
    "nbformat==5.11.1",
    "jupyter_client==8.10.0",
];

/// The kernel name the notebook asks for.
pub const KERNEL_NAME: &str = "rust";

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// The `evcxr_jupyter` binary, built with `cargo install --locked` on first use (5 to 20
/// minutes on a 2-core machine).
///
/// # Errors
/// Why the build failed.
#[expect(clippy::print_stderr, reason = "a long build: say so before it starts")]
pub fn evcxr_jupyter() -> Result<PathBuf, String> {
    let root = provision_once(&format!("evcxr-{EVCXR_VERSION}"), |root| {
        eprintln!(
            "==> notebook: building evcxr_jupyter {EVCXR_VERSION} from crates.io (once; 5 to 20 minutes)"
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(
            Command::new(cargo)
                .args([
                    "install",
                    "--locked",
                    "evcxr_jupyter",
                    "--version",
                    EVCXR_VERSION,
                    "--root",
                ])
                .arg(root),
            "cargo install evcxr_jupyter",
        )
    })?;
    Ok(root.join("bin").join("evcxr_jupyter"))
}

/// The Python of a venv holding [`JUPYTER_PACKAGES`].
///
/// # Errors
/// Why the venv could not be made.
pub fn jupyter_python() -> Result<PathBuf, String> {
    let tag = JUPYTER_PACKAGES.join("-").replace(['=', '_'], "");
    venv(&format!("jupyter-{tag}"), &JUPYTER_PACKAGES)
}

/// Where the kernel is registered: give it to Jupyter as `JUPYTER_PATH`.
pub fn jupyter_path() -> PathBuf {
    cache_dir().join("jupyter")
}

/// Registers the evcxr kernel under [`jupyter_path`] (`evcxr_jupyter --install`).
///
/// # Errors
/// Why the registration failed.
pub fn register_kernel(evcxr: &Path) -> Result<(), String> {
    run(
        Command::new(evcxr)
            .arg("--install")
            .env("JUPYTER_PATH", jupyter_path())
            .stdout(Stdio::null()),
        "evcxr_jupyter --install",
    )
}

/// Executes the notebook `source` with nbclient in the registered kernel (its directory as the
/// working directory), with `env` added to the kernel's environment; writes the executed
/// notebook to `executed`.
///
/// # Errors
/// The execution error (a cell's error output included), with what the runner printed.
pub fn execute(
    python: &Path,
    source: &Path,
    executed: &Path,
    env: &[(&str, &str)],
) -> Result<(), String> {
    const RUNNER: &str = r#"
import os, sys, nbformat
from nbclient import NotebookClient
source, executed, kernel = sys.argv[1:4]
nb = nbformat.read(source, as_version=4)
client = NotebookClient(nb, kernel_name=kernel, timeout=1800, startup_timeout=120,
                        resources={"metadata": {"path": os.path.dirname(os.path.abspath(source))}})
try:
    client.execute()
finally:
    nbformat.write(nb, executed)
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(RUNNER)
        .arg(source)
        .arg(executed)
        .arg(KERNEL_NAME)
        .env("JUPYTER_PATH", jupyter_path())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run nbclient: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "executing {} failed ({}):\n{}\n{}",
            source.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
