//! A throwaway PKI for TLS tests, made with Debian's `openssl` at test time (installed with
//! `apt-get` when missing): a CA, a certificate for `127.0.0.1`/`localhost` signed by it, and a
//! client certificate signed by it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of a [`make_pki`] run.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server's certificate and key (PEM).
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// The client's certificate and key in one PEM file (what `MLFLOW_TRACKING_CLIENT_CERT_PATH`
    /// takes).
    pub client_pem: PathBuf,
    /// The client's certificate alone.
    pub client_cert: PathBuf,
    /// The client's key alone.
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl (Debian package `openssl`): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Installs Debian's `openssl` when the command is missing.
fn ensure_openssl() -> Result<(), String> {
    if Command::new("openssl").arg("version").output().is_ok() {
        return Ok(());
    }
    let _ = Command::new("apt-get").args(["update", "-q"]).output();
    let out = Command::new("apt-get")
        .args(["install", "-y", "-q", "openssl"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("cannot run apt-get to install openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "apt-get install openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Makes the CA, server and client certificates in `dir` (installing `openssl` if needed).
///
/// # Errors
/// When `openssl` is missing and cannot be installed, or fails.
pub fn make_pki(dir: &Path) -> Result<Pki, String> {
    ensure_openssl()?;
    let days = ["-days", "2"];
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=mlflow-tracing test CA",
            days[0],
            days[1],
        ],
    )?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")
        .map_err(|e| e.to_string())?;
    for (name, cn) in [
        ("server", "127.0.0.1"),
        ("client", "mlflow-tracing test client"),
    ] {
        let subject = format!("/CN={cn}");
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                &subject,
            ],
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-extfile",
                &ext,
                days[0],
                days[1],
            ],
        )?;
    }
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(|e| e.to_string());
    std::fs::write(
        dir.join("client-with-key.pem"),
        format!("{}{}", read("client.pem")?, read("client.key")?),
    )
    .map_err(|e| e.to_string())?;
    Ok(Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_pem: dir.join("client-with-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    })
}
