//! The real MLflow server behind TLS (uvicorn's own TLS options) with a CA made at test time:
//! the default client refuses the unknown CA with an error naming the setting to use; the CA
//! bundle (`MLFLOW_TRACKING_SERVER_CERT_PATH`) makes it work end to end; insecure mode works and
//! warns once; a server requiring client certificates (mutual TLS) works with one
//! (`MLFLOW_TRACKING_CLIENT_CERT_PATH`) and fails clearly without. A process on a system with
//! no CA certificate at all (a minimal container image) still traces to an `http://` server,
//! and an `https://` one fails with an error saying what is missing.
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::path::Path;
use std::sync::Arc;

use mlflow_tracing::server::{ClientConfig, MlflowExporter, TrackingClient};
use mlflow_tracing::start_span;
use mlflow_tracing_tests::server::{MlflowServer, ServerOptions};
use mlflow_tracing_tests::tls::{Pki, make_pki};

use crate::live::block_on;
use crate::rerun::{self, CHILD};

fn tls_server(data: &Path, pki: &Pki, mutual: bool) -> MlflowServer {
    let mut uvicorn = format!(
        "--ssl-keyfile {} --ssl-certfile {}",
        pki.server_key.display(),
        pki.server_cert.display()
    );
    if mutual {
        uvicorn.push_str(&format!(
            " --ssl-ca-certs {} --ssl-cert-reqs 2",
            pki.ca.display()
        ));
    }
    MlflowServer::start_with(
        data,
        &ServerOptions {
            args: vec!["--uvicorn-opts".into(), uvicorn],
            https: true,
            client_cert: mutual.then(|| (pki.client_cert.clone(), pki.client_key.clone())),
            ..ServerOptions::default()
        },
    )
    .unwrap()
}

fn client(config: ClientConfig) -> TrackingClient {
    TrackingClient::new(config.with_retries(0, 0.0, 0.0)).unwrap()
}

/// A trace exported through `client` into a new experiment, then read back through it.
fn round_trip(client: &TrackingClient, name: &str) -> Result<usize, String> {
    let experiment = block_on(client.create_experiment(&format!("{name}-{}", std::process::id())))
        .map_err(|e| e.to_string())?;
    // A client of its own for the synchronous exporter: its connections belong to the
    // exporter's runtime, which only runs during an export.
    let exporter = Arc::new(MlflowExporter::new(
        TrackingClient::new(client.config().clone()).map_err(|e| e.to_string())?,
    ));
    let tracer = crate::live::sync_tracer_with(exporter.clone(), &experiment);
    tracer.in_scope(|| {
        let root = start_span("over-tls").start();
        let _in = root.enter();
        drop(start_span("child").start());
    });
    let stats = exporter.stats();
    if stats.traces_logged != 1 {
        return Err(format!("not logged: {stats:?}"));
    }
    let page = block_on(client.search_traces(
        &mlflow_tracing::server::SearchTraces::in_experiment(&experiment),
    ))
    .map_err(|e| e.to_string())?;
    let trace_id = &page.traces.first().ok_or("no trace found")?.trace_id;
    let trace = block_on(client.get_trace(trace_id)).map_err(|e| e.to_string())?;
    Ok(trace.data.spans.len())
}

/// In the child: two insecure clients ask the server its version, with a subscriber printing
/// warnings on stdout.
#[expect(
    clippy::print_stdout,
    reason = "the child reports to its parent on stdout"
)]
fn insecure_child() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .init();
    let url = std::env::var("TLS_TEST_URL").unwrap();
    for _ in 0..2 {
        let c = client(ClientConfig::new(url.as_str()).with_insecure_tls(true));
        println!("VERSION {}", block_on(c.version()).unwrap());
    }
}

/// In the child, run with no system CA certificate: a trace round trip through the `http://`
/// server at `HTTP_TEST_URL`, and the error of a default client of the `https://` one.
#[expect(
    clippy::print_stdout,
    reason = "the child reports to its parent on stdout"
)]
fn no_ca_child() {
    let http = std::env::var("HTTP_TEST_URL").unwrap();
    let https = std::env::var("TLS_TEST_URL").unwrap();
    println!(
        "HTTP {:?}",
        round_trip(&client(ClientConfig::new(http.as_str())), "no-ca")
    );
    // With retries configured: a certificate that cannot be checked is not retried.
    let retrying =
        TrackingClient::new(ClientConfig::new(https.as_str()).with_retries(3, 0.01, 0.0)).unwrap();
    match block_on(retrying.get_experiment("0")) {
        Ok(v) => println!("HTTPS answered {v:?}"),
        Err(e) => println!("HTTPS {e}"),
    }
}

/// Runs this test again in a child process, as `role`, with `env`; its stdout, once it
/// succeeded.
fn child(role: &str, env: &[(&str, &str)]) -> String {
    let test = test_name!("tls_unknown_ca_ca_bundle_insecure_mode_and_client_certificates");
    rerun::output_ok(rerun::command(&test, role).envs(env.iter().copied())).0
}

#[test]
fn tls_unknown_ca_ca_bundle_insecure_mode_and_client_certificates() {
    match std::env::var(CHILD).as_deref() {
        Ok("insecure") => return insecure_child(),
        Ok("no-ca") => return no_ca_child(),
        _ => {}
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pki")).unwrap();
    let pki = make_pki(&dir.path().join("pki")).unwrap();

    let server = tls_server(&dir.path().join("tls"), &pki, false);
    let url = server.url().to_owned();
    assert!(url.starts_with("https://"));

    // The default client does not know the CA: a clear error naming the settings, at once
    // (not retried, though the client retries).
    let retrying =
        TrackingClient::new(ClientConfig::new(url.as_str()).with_retries(3, 0.01, 0.0)).unwrap();
    let err = block_on(retrying.get_experiment("0"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("MLFLOW_TRACKING_SERVER_CERT_PATH")
            && err.contains("MLFLOW_TRACKING_INSECURE_TLS")
            && !err.contains("retries"),
        "{err}"
    );

    // With the CA bundle: a trace exported, searched and read back over TLS.
    let trusted = client(ClientConfig::new(url.as_str()).with_server_cert_path(&pki.ca));
    assert_eq!(round_trip(&trusted, "tls-ca"), Ok(2));
    // Python's client with the same setting reads the server too.
    let out = mlflow_tracing_tests::python::run_script_with(
        "import json, mlflow\nprint(json.dumps(len(mlflow.search_experiments())))",
        &[],
        &[
            ("MLFLOW_TRACKING_URI", url.as_str()),
            ("MLFLOW_TRACKING_SERVER_CERT_PATH", pki.ca.to_str().unwrap()),
        ],
    )
    .unwrap();
    assert!(out.trim().parse::<u32>().unwrap() >= 2, "{out}");

    // Insecure mode works and warns once per process.
    let stdout = child("insecure", &[("TLS_TEST_URL", &url)]);
    assert_eq!(stdout.matches("VERSION 3.17.2").count(), 2, "{stdout}");
    assert_eq!(
        stdout
            .matches("MLFLOW_TRACKING_INSECURE_TLS is set")
            .count(),
        1,
        "{stdout}"
    );

    // No CA certificate on the system (the variables rustls-native-certs reads, pointing at
    // nothing): the `http://` server still gets the trace; the `https://` one explains.
    let empty = tempfile::tempdir().unwrap();
    let stdout = child(
        "no-ca",
        &[
            ("TLS_TEST_URL", &url),
            ("HTTP_TEST_URL", crate::live::server().url()),
            ("SSL_CERT_FILE", "/dev/null"),
            ("SSL_CERT_DIR", empty.path().to_str().unwrap()),
        ],
    );
    assert!(stdout.contains("HTTP Ok(2)"), "{stdout}");
    let https = stdout
        .lines()
        .find(|l| l.starts_with("HTTPS"))
        .unwrap_or("");
    assert!(
        https.contains("No CA certificates were loaded from the system")
            && https.contains("MLFLOW_TRACKING_SERVER_CERT_PATH")
            && !https.contains("retries"),
        "{stdout}"
    );
    drop(server);

    // Mutual TLS: with the client certificate it works; without, a clear error.
    let server = tls_server(&dir.path().join("mtls"), &pki, true);
    let url = server.url().to_owned();
    let with_cert = client(
        ClientConfig::new(url.as_str())
            .with_server_cert_path(&pki.ca)
            .with_client_cert_path(&pki.client_pem),
    );
    assert_eq!(round_trip(&with_cert, "mtls"), Ok(2));
    let without = client(ClientConfig::new(url.as_str()).with_server_cert_path(&pki.ca));
    let err = block_on(without.version()).unwrap_err().to_string();
    assert!(err.contains("MLFLOW_TRACKING_CLIENT_CERT_PATH"), "{err}");
}
