//! The client's errors.

/// What went wrong talking to the tracking server. Messages name the method and endpoint path
/// (never a query string, a credential or the URI's user info).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A setting or environment variable is invalid.
    #[error("invalid MLflow client configuration: {0}")]
    Config(String),
    /// An id or name given to the client is not valid for the endpoint.
    #[error("invalid {what}: {value:?} ({reason})")]
    InvalidArgument {
        /// What the value is (trace id, experiment id, ...).
        what: &'static str,
        /// The value, as given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The server answered with an error status (after any retries).
    #[error("{method} {endpoint}: HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Http {
        /// HTTP method.
        method: &'static str,
        /// The endpoint path.
        endpoint: String,
        /// HTTP status code.
        status: u16,
        /// MLflow's `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`), when the body had one.
        code: Option<String>,
        /// MLflow's `message`, FastAPI's `detail`, or the start of the body.
        message: String,
    },
    /// The request did not get an answer (connection refused, reset, TLS, timeout), after any
    /// retries.
    #[error("{method} {endpoint}: {message}")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// The endpoint path.
        endpoint: String,
        /// What happened.
        message: String,
        /// Whether the attempt timed out (raise `MLFLOW_HTTP_REQUEST_TIMEOUT`).
        timeout: bool,
    },
    /// The answer could not be read.
    #[error("{method} {endpoint}: unexpected answer: {message}")]
    Decode {
        /// HTTP method.
        method: &'static str,
        /// The endpoint path.
        endpoint: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ClientError {
    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// MLflow's error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Http { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The server's message (empty for errors that are not HTTP answers).
    pub fn server_message(&self) -> &str {
        match self {
            ClientError::Http { message, .. } => message,
            _ => "",
        }
    }

    /// Whether the server said the thing does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}
