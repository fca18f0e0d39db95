//! Client settings: MLflow's environment variables, overridable in code.

use mlflow_tracing_entities::is_http_uri;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ClientError;

/// `MLFLOW_TRACKING_URI`.
pub const MLFLOW_TRACKING_URI: &str = "MLFLOW_TRACKING_URI";
/// `MLFLOW_TRACKING_TOKEN` (bearer token).
pub const MLFLOW_TRACKING_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";
/// `MLFLOW_TRACKING_USERNAME` (basic auth, with the password; wins over the token).
pub const MLFLOW_TRACKING_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
/// `MLFLOW_TRACKING_PASSWORD`.
pub const MLFLOW_TRACKING_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";
/// `MLFLOW_TRACKING_INSECURE_TLS`: `true` skips certificate verification.
pub const MLFLOW_TRACKING_INSECURE_TLS: &str = "MLFLOW_TRACKING_INSECURE_TLS";
/// `MLFLOW_TRACKING_SERVER_CERT_PATH`: PEM bundle of the only CAs to trust.
pub const MLFLOW_TRACKING_SERVER_CERT_PATH: &str = "MLFLOW_TRACKING_SERVER_CERT_PATH";
/// `MLFLOW_TRACKING_CLIENT_CERT_PATH`: PEM file with the client certificate and its key.
pub const MLFLOW_TRACKING_CLIENT_CERT_PATH: &str = "MLFLOW_TRACKING_CLIENT_CERT_PATH";
/// `MLFLOW_HTTP_REQUEST_TIMEOUT` (seconds, default 120).
pub const MLFLOW_HTTP_REQUEST_TIMEOUT: &str = "MLFLOW_HTTP_REQUEST_TIMEOUT";
/// `MLFLOW_HTTP_REQUEST_MAX_RETRIES` (default 7, at most 10).
pub const MLFLOW_HTTP_REQUEST_MAX_RETRIES: &str = "MLFLOW_HTTP_REQUEST_MAX_RETRIES";
/// `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR` (default 2, at most 120).
pub const MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR: &str = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR";
/// `MLFLOW_HTTP_REQUEST_BACKOFF_JITTER` (default 1.0).
pub const MLFLOW_HTTP_REQUEST_BACKOFF_JITTER: &str = "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER";
/// `MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER` (default true).
pub const MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER: &str = "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER";

/// `DATABRICKS_HOST`: the workspace URL (`https://` is added when missing).
pub const DATABRICKS_HOST: &str = "DATABRICKS_HOST";
/// `DATABRICKS_TOKEN`: a personal access token (bearer).
pub const DATABRICKS_TOKEN: &str = "DATABRICKS_TOKEN";
/// `DATABRICKS_CLIENT_ID`: OAuth machine-to-machine client id.
pub const DATABRICKS_CLIENT_ID: &str = "DATABRICKS_CLIENT_ID";
/// `DATABRICKS_CLIENT_SECRET`: OAuth machine-to-machine client secret.
pub const DATABRICKS_CLIENT_SECRET: &str = "DATABRICKS_CLIENT_SECRET";

/// MLflow's limit on `MLFLOW_HTTP_REQUEST_MAX_RETRIES`.
pub const MAX_RETRIES_LIMIT: u32 = 10;
/// MLflow's limit on `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`, and the longest sleep between tries.
pub const MAX_BACKOFF: f64 = 120.0;

/// A secret (token, password): shown as `***` by `Debug` and never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How requests authenticate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Bearer <token>` (`MLFLOW_TRACKING_TOKEN`).
    Bearer(Secret),
    /// HTTP basic auth (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// OAuth machine-to-machine (client credentials), as Databricks service principals use
    /// (`DATABRICKS_CLIENT_ID` / `DATABRICKS_CLIENT_SECRET`): a bearer token fetched from
    /// `token_url`, cached, and fetched again shortly before it expires or after a 401.
    OAuthClientCredentials {
        /// The token endpoint (`<host>/oidc/v1/token` on Databricks).
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
        /// The scope asked for (`all-apis` on Databricks).
        scope: String,
    },
}

/// The default of [`ClientConfig::max_answer_bytes`].
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// Settings of a [`crate::TrackingClient`]: MLflow's defaults, then its environment variables
/// ([`ClientConfig::from_env`]), then whatever code sets with the `with_*` methods.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The tracking server, `http(s)://host[:port][/prefix]`; paths are appended verbatim.
    pub tracking_uri: String,
    /// Authentication.
    pub auth: Auth,
    /// Skip TLS certificate verification.
    pub insecure_tls: bool,
    /// PEM bundle of the only CAs to trust.
    pub server_cert_path: Option<PathBuf>,
    /// PEM file with the client certificate and private key.
    pub client_cert_path: Option<PathBuf>,
    /// Time limit of one attempt (connect and read), default 120 s.
    pub timeout: Duration,
    /// Retries after the first attempt, default 7 (at most 10).
    pub max_retries: u32,
    /// Backoff factor in seconds, default 2: retry k (k ≥ 2) sleeps `factor × 2^(k-1)` plus jitter.
    pub backoff_factor: f64,
    /// Upper bound of the random jitter added to each backoff, in seconds, default 1.0.
    pub backoff_jitter: f64,
    /// Honour `Retry-After` on 413, 429 and 503 (default true).
    pub respect_retry_after: bool,
    /// The largest answer read (default 256 MiB); a larger one fails with
    /// [`ClientError::Decode`] without being read further.
    pub max_answer_bytes: usize,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("tracking_uri", &redact_uri(&self.tracking_uri))
            .field("auth", &self.auth)
            .field("insecure_tls", &self.insecure_tls)
            .field("server_cert_path", &self.server_cert_path)
            .field("client_cert_path", &self.client_cert_path)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff_factor", &self.backoff_factor)
            .field("backoff_jitter", &self.backoff_jitter)
            .field("respect_retry_after", &self.respect_retry_after)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .finish()
    }
}

/// The URI with any `user:password@` replaced by `***@`.
pub(crate) fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_owned();
    };
    let rest = &uri[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &uri[..scheme_end + 3], &rest[at + 1..]),
        None => uri.to_owned(),
    }
}

impl ClientConfig {
    /// MLflow's defaults for a server at `tracking_uri`.
    pub fn new(tracking_uri: impl Into<String>) -> Self {
        ClientConfig {
            tracking_uri: tracking_uri.into(),
            auth: Auth::None,
            insecure_tls: false,
            server_cert_path: None,
            client_cert_path: None,
            timeout: Duration::from_secs(120),
            max_retries: 7,
            backoff_factor: 2.0,
            backoff_jitter: 1.0,
            respect_retry_after: true,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
        }
    }

    /// The settings from MLflow's environment variables (see the constants of this module).
    ///
    /// # Errors
    /// [`ClientError::Config`] when `MLFLOW_TRACKING_URI` is unset or a variable is invalid.
    pub fn from_env() -> Result<Self, ClientError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// A client of a Databricks workspace: `DATABRICKS_HOST` with `DATABRICKS_TOKEN`
    /// (bearer), or else `DATABRICKS_CLIENT_ID` / `DATABRICKS_CLIENT_SECRET` (OAuth M2M through
    /// `<host>/oidc/v1/token`); timeouts and retries from the `MLFLOW_HTTP_*` variables.
    ///
    /// # Errors
    /// [`ClientError::Config`] when the host or the credentials are missing or invalid.
    pub fn from_databricks_env() -> Result<Self, ClientError> {
        Self::from_databricks_lookup(|key| std::env::var(key).ok())
    }

    /// [`ClientConfig::from_databricks_env`] over any variable source.
    ///
    /// # Errors
    /// As [`ClientConfig::from_databricks_env`].
    pub fn from_databricks_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ClientError> {
        let get = |key: &str| get(key).filter(|v| !v.is_empty());
        let host = get(DATABRICKS_HOST)
            .ok_or_else(|| ClientError::Config(format!("{DATABRICKS_HOST} is not set")))?;
        let host = if is_http_uri(&host) {
            host
        } else {
            format!("https://{host}")
        };
        let host = host.trim_end_matches('/').to_owned();
        let mut config = Self::apply_http_env(ClientConfig::new(host.clone()), &get)?;
        config.auth = match (
            get(DATABRICKS_TOKEN),
            get(DATABRICKS_CLIENT_ID),
            get(DATABRICKS_CLIENT_SECRET),
        ) {
            (Some(token), _, _) => Auth::Bearer(Secret(token)),
            (None, Some(client_id), Some(secret)) => Auth::OAuthClientCredentials {
                token_url: format!("{host}/oidc/v1/token"),
                client_id,
                client_secret: Secret(secret),
                scope: "all-apis".into(),
            },
            _ => {
                return Err(ClientError::Config(format!(
                    "no Databricks credentials: set {DATABRICKS_TOKEN}, or {DATABRICKS_CLIENT_ID} and {DATABRICKS_CLIENT_SECRET}"
                )));
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// [`ClientConfig::from_env`] over any variable source (used by tests).
    ///
    /// # Errors
    /// As [`ClientConfig::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ClientError> {
        let get = |key: &str| get(key).filter(|v| !v.is_empty());
        let uri = get(MLFLOW_TRACKING_URI)
            .ok_or_else(|| ClientError::Config(format!("{MLFLOW_TRACKING_URI} is not set")))?;
        let mut config = Self::apply_http_env(ClientConfig::new(uri), &get)?;
        config.auth = match (
            get(MLFLOW_TRACKING_USERNAME),
            get(MLFLOW_TRACKING_PASSWORD),
            get(MLFLOW_TRACKING_TOKEN),
        ) {
            // As MLflow's code does: basic auth wins over the token.
            (Some(username), Some(password), _) => Auth::Basic {
                username,
                password: Secret(password),
            },
            (_, _, Some(token)) => Auth::Bearer(Secret(token)),
            _ => Auth::None,
        };
        config.validate()?;
        Ok(config)
    }

    /// The TLS, timeout and retry variables over `config`.
    fn apply_http_env(
        mut config: ClientConfig,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ClientError> {
        if let Some(v) = get(MLFLOW_TRACKING_INSECURE_TLS) {
            config.insecure_tls = parse_bool(MLFLOW_TRACKING_INSECURE_TLS, &v)?;
        }
        config.server_cert_path = get(MLFLOW_TRACKING_SERVER_CERT_PATH).map(PathBuf::from);
        config.client_cert_path = get(MLFLOW_TRACKING_CLIENT_CERT_PATH).map(PathBuf::from);
        if let Some(v) = get(MLFLOW_HTTP_REQUEST_TIMEOUT) {
            let secs = parse_number(MLFLOW_HTTP_REQUEST_TIMEOUT, &v)?;
            config.timeout = Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| invalid(MLFLOW_HTTP_REQUEST_TIMEOUT, &v, "a positive number"))?;
        }
        if let Some(v) = get(MLFLOW_HTTP_REQUEST_MAX_RETRIES) {
            config.max_retries = v
                .trim()
                .parse()
                .map_err(|_| invalid(MLFLOW_HTTP_REQUEST_MAX_RETRIES, &v, "an integer"))?;
        }
        if let Some(v) = get(MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR) {
            config.backoff_factor = parse_number(MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, &v)?;
        }
        if let Some(v) = get(MLFLOW_HTTP_REQUEST_BACKOFF_JITTER) {
            config.backoff_jitter = parse_number(MLFLOW_HTTP_REQUEST_BACKOFF_JITTER, &v)?;
        }
        if let Some(v) = get(MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER) {
            config.respect_retry_after = parse_bool(MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER, &v)?;
        }
        Ok(config)
    }

    /// Checks the settings (scheme, retry limits, exclusive TLS options).
    ///
    /// # Errors
    /// [`ClientError::Config`] saying what is wrong.
    pub fn validate(&self) -> Result<(), ClientError> {
        let uri = &self.tracking_uri;
        if !is_http_uri(uri) {
            return Err(ClientError::Config(format!(
                "the tracking URI must be http:// or https:// (got {})",
                redact_uri(uri)
            )));
        }
        if self.max_retries > MAX_RETRIES_LIMIT {
            return Err(ClientError::Config(format!(
                "{MLFLOW_HTTP_REQUEST_MAX_RETRIES} must be at most {MAX_RETRIES_LIMIT} (got {})",
                self.max_retries
            )));
        }
        if !(0.0..=MAX_BACKOFF).contains(&self.backoff_factor) {
            return Err(ClientError::Config(format!(
                "{MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR} must be in [0, {MAX_BACKOFF}] (got {})",
                self.backoff_factor
            )));
        }
        if !(self.backoff_jitter >= 0.0 && self.backoff_jitter.is_finite()) {
            return Err(ClientError::Config(format!(
                "{MLFLOW_HTTP_REQUEST_BACKOFF_JITTER} must be a non-negative number (got {})",
                self.backoff_jitter
            )));
        }
        if self.insecure_tls && self.server_cert_path.is_some() {
            return Err(ClientError::Config(format!(
                "{MLFLOW_TRACKING_INSECURE_TLS} and {MLFLOW_TRACKING_SERVER_CERT_PATH} cannot both be set"
            )));
        }
        Ok(())
    }

    /// Sets [`ClientConfig::auth`] to a bearer token.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Bearer(Secret(token.into()));
        self
    }

    /// Sets [`ClientConfig::auth`] to basic auth.
    #[must_use]
    pub fn with_basic_auth(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.auth = Auth::Basic {
            username: username.into(),
            password: Secret(password.into()),
        };
        self
    }

    /// Sets [`ClientConfig::timeout`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::max_retries`], [`ClientConfig::backoff_factor`] and
    /// [`ClientConfig::backoff_jitter`].
    #[must_use]
    pub fn with_retries(
        mut self,
        max_retries: u32,
        backoff_factor: f64,
        backoff_jitter: f64,
    ) -> Self {
        self.max_retries = max_retries;
        self.backoff_factor = backoff_factor;
        self.backoff_jitter = backoff_jitter;
        self
    }

    /// Sets [`ClientConfig::insecure_tls`].
    #[must_use]
    pub fn with_insecure_tls(mut self, insecure: bool) -> Self {
        self.insecure_tls = insecure;
        self
    }

    /// Sets [`ClientConfig::server_cert_path`].
    #[must_use]
    pub fn with_server_cert_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.server_cert_path = Some(path.into());
        self
    }

    /// Sets [`ClientConfig::client_cert_path`].
    #[must_use]
    pub fn with_client_cert_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_cert_path = Some(path.into());
        self
    }

    /// The sleep before retry number `retry` (1-based), without `Retry-After`: MLflow's urllib3
    /// schedule, `0` for the first retry, then `factor × 2^(retry-1) + U[0, jitter)`, at most 120 s.
    pub fn backoff(&self, retry: u32) -> Duration {
        if retry <= 1 {
            return Duration::ZERO;
        }
        let base = self.backoff_factor * 2f64.powi(i32::try_from(retry - 1).unwrap_or(i32::MAX));
        let jitter = self.backoff_jitter * fastrand::f64();
        Duration::from_secs_f64((base + jitter).clamp(0.0, MAX_BACKOFF))
    }
}

fn invalid(key: &str, value: &str, expected: &str) -> ClientError {
    ClientError::Config(format!("{key} must be {expected} (got {value:?})"))
}

fn parse_number(key: &str, value: &str) -> Result<f64, ClientError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| invalid(key, value, "a number"))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ClientError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(invalid(key, value, "true or false")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<ClientConfig, ClientError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ClientConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn env_vars_map_to_settings_and_basic_auth_wins_over_the_token() {
        let c = config(&[
            (MLFLOW_TRACKING_URI, "https://mlflow.example.com/prefix"),
            (MLFLOW_TRACKING_TOKEN, "tok"),
            (MLFLOW_TRACKING_USERNAME, "u"),
            (MLFLOW_TRACKING_PASSWORD, "p"),
            (MLFLOW_HTTP_REQUEST_TIMEOUT, "2.5"),
            (MLFLOW_HTTP_REQUEST_MAX_RETRIES, "3"),
            (MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, "0.5"),
            (MLFLOW_HTTP_REQUEST_BACKOFF_JITTER, "0"),
            (MLFLOW_TRACKING_SERVER_CERT_PATH, "/ca.pem"),
        ])
        .unwrap();
        assert_eq!(
            c.auth,
            Auth::Basic {
                username: "u".into(),
                password: Secret::new("p")
            }
        );
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(
            (c.max_retries, c.backoff_factor, c.backoff_jitter),
            (3, 0.5, 0.0)
        );
        assert_eq!(c.server_cert_path, Some(PathBuf::from("/ca.pem")));
        let token = config(&[
            (MLFLOW_TRACKING_URI, "http://h"),
            (MLFLOW_TRACKING_TOKEN, "tok"),
        ])
        .unwrap();
        assert_eq!(token.auth, Auth::Bearer(Secret::new("tok")));
        // Code wins over the environment.
        assert_eq!(
            token.with_token("other").auth,
            Auth::Bearer(Secret::new("other"))
        );
    }

    #[test]
    fn invalid_settings_are_clear_errors() {
        for (vars, needle) in [
            (vec![], "MLFLOW_TRACKING_URI is not set"),
            (
                vec![(MLFLOW_TRACKING_URI, "file:///tmp/x")],
                "http:// or https://",
            ),
            (
                vec![
                    (MLFLOW_TRACKING_URI, "http://h"),
                    (MLFLOW_HTTP_REQUEST_MAX_RETRIES, "11"),
                ],
                "at most 10",
            ),
            (
                vec![
                    (MLFLOW_TRACKING_URI, "http://h"),
                    (MLFLOW_HTTP_REQUEST_TIMEOUT, "soon"),
                ],
                "MLFLOW_HTTP_REQUEST_TIMEOUT must be a number",
            ),
            (
                vec![
                    (MLFLOW_TRACKING_URI, "http://h"),
                    (MLFLOW_TRACKING_INSECURE_TLS, "true"),
                    (MLFLOW_TRACKING_SERVER_CERT_PATH, "/ca.pem"),
                ],
                "cannot both be set",
            ),
        ] {
            let err = config(&vars).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = ClientConfig::new("https://alice:hunter2@h/x").with_token("s3cret-token");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cret-token"),
            "{debug}"
        );
        assert!(debug.contains("https://***@h/x"), "{debug}");
        let basic = ClientConfig::new("http://h").with_basic_auth("bob", "pw-123");
        assert!(!format!("{basic:?}").contains("pw-123"));
    }

    #[test]
    fn backoff_follows_mlflows_schedule() {
        let c = ClientConfig::new("http://h").with_retries(7, 2.0, 0.0);
        let secs: Vec<u64> = (1..=8).map(|k| c.backoff(k).as_secs()).collect();
        assert_eq!(secs, [0, 4, 8, 16, 32, 64, 120, 120]);
        let jittered = ClientConfig::new("http://h")
            .with_retries(7, 2.0, 1.0)
            .backoff(2);
        assert!((4.0..5.0).contains(&jittered.as_secs_f64()));
    }
}
