//! [`TrackingClient`]: the client and its construction. Its requests are in `transport`, its
//! endpoints in `experiments`, `traces` and `databricks`.

use std::fmt;
use std::time::Duration;

use crate::config::{ClientConfig, redact_uri};
use crate::error::ClientError;

/// The version this SDK reports as `telemetry.sdk.version` and in `User-Agent`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A client of an MLflow tracking server's REST API, for tracing. Cheap to clone.
///
/// Every call is async and retries transient failures (408, 429, 5xx gateway errors,
/// connection errors and timeouts) with MLflow's backoff schedule; other 4xx answers fail at
/// once. Must be polled inside a tokio runtime with I/O and timers enabled. Clones share one
/// connection pool, and a pooled connection belongs to the runtime that opened it: use a
/// client (and its clones) from one runtime, and make another client for another runtime (a
/// request over a connection whose runtime is not running stalls until the timeout).
#[derive(Clone)]
pub struct TrackingClient {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) config: ClientConfig,
    /// The cached OAuth token (OAuth client credentials only).
    pub(crate) token: std::sync::Arc<tokio::sync::Mutex<Option<CachedToken>>>,
}

/// An OAuth access token and when to fetch a new one.
pub(crate) struct CachedToken {
    pub(crate) value: crate::config::Secret,
    pub(crate) refresh_at: std::time::Instant,
}

impl fmt::Debug for TrackingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackingClient")
            .field("config", &self.config)
            .finish()
    }
}

impl TrackingClient {
    /// A client with these settings.
    ///
    /// # Errors
    /// [`ClientError::Config`] for invalid settings or unreadable certificate files.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        config.validate()?;
        let http = http_builder(&config)?
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(TrackingClient {
            http,
            base: config.tracking_uri.trim_end_matches('/').to_owned(),
            config,
            token: std::sync::Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// A client configured from MLflow's environment variables.
    ///
    /// # Errors
    /// As [`ClientConfig::from_env`] and [`TrackingClient::new`].
    pub fn from_env() -> Result<Self, ClientError> {
        Self::new(ClientConfig::from_env()?)
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The tracking URI without a trailing `/` (user info redacted).
    pub fn tracking_uri(&self) -> String {
        redact_uri(&self.base)
    }
}

/// The HTTP client's settings for `config`.
fn http_builder(config: &ClientConfig) -> Result<reqwest::ClientBuilder, ClientError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(format!("mlflow-tracing-rust/{SDK_VERSION}"))
        .timeout(config.timeout)
        .pool_max_idle_per_host(10)
        .tcp_keepalive(Duration::from_secs(60));
    if !cfg!(feature = "http2") {
        // HTTP/1.1, as the Python SDK: also when another crate of the program turns on
        // reqwest's `http2` feature, and with reqwest's own TLS setup (a CA bundle, a client
        // certificate, insecure mode), which would otherwise offer `h2`.
        builder = builder.http1_only();
    }
    let default_tls = !config.insecure_tls
        && config.server_cert_path.is_none()
        && config.client_cert_path.is_none();
    if default_tls {
        // reqwest applies none of its TLS settings (SNI, versions, ALPN) to a preconfigured
        // rustls config: `tls::default_config` sets what reqwest would set by default.
        builder = builder.tls_backend_preconfigured(crate::tls::default_config()?);
    }
    if config.insecure_tls {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "MLFLOW_TRACKING_INSECURE_TLS is set: the tracking server's certificate is \
                     not checked (anyone on the network path can read and change traces)"
            );
        }
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(path) = &config.server_cert_path {
        let pem = std::fs::read(path)
            .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ClientError::Config(format!("bad CA bundle {}: {e}", path.display())))?;
        builder = builder.tls_certs_only(certs);
    }
    if let Some(path) = &config.client_cert_path {
        let pem = std::fs::read(path)
            .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", path.display())))?;
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            ClientError::Config(format!("bad client certificate {}: {e}", path.display()))
        })?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]
    use super::*;

    /// HTTP/1.1 only without the `http2` feature, with the default TLS settings and with
    /// reqwest's own (insecure mode here), which would otherwise offer `h2`.
    #[test]
    fn http_1_1_only_unless_the_http2_feature_is_on() {
        for config in [
            ClientConfig::new("https://example.com"),
            ClientConfig::new("https://example.com").with_insecure_tls(true),
        ] {
            let shown = format!("{:?}", http_builder(&config).unwrap());
            assert_eq!(
                shown.contains("http1_only: true"),
                !cfg!(feature = "http2"),
                "{shown}"
            );
        }
    }
}
