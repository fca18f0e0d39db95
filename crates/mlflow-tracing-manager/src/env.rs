//! Environment variables (MLflow's names and parsing rules) and the environment metadata that is
//! copied into every trace.

use std::process::Command;
use std::sync::OnceLock;

use mlflow_tracing_entities::keys;

use crate::error::ConfigError;

/// `MLFLOW_EXPERIMENT_ID`.
pub const MLFLOW_EXPERIMENT_ID: &str = "MLFLOW_EXPERIMENT_ID";
/// `MLFLOW_TRACE_SAMPLING_RATIO`.
pub const MLFLOW_TRACE_SAMPLING_RATIO: &str = "MLFLOW_TRACE_SAMPLING_RATIO";
/// `MLFLOW_TRACE_BUFFER_TTL_SECONDS`.
pub const MLFLOW_TRACE_BUFFER_TTL_SECONDS: &str = "MLFLOW_TRACE_BUFFER_TTL_SECONDS";
/// `MLFLOW_TRACE_BUFFER_MAX_SIZE`.
pub const MLFLOW_TRACE_BUFFER_MAX_SIZE: &str = "MLFLOW_TRACE_BUFFER_MAX_SIZE";
/// `MLFLOW_TRACE_TIMEOUT_SECONDS`.
pub const MLFLOW_TRACE_TIMEOUT_SECONDS: &str = "MLFLOW_TRACE_TIMEOUT_SECONDS";
/// `MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS`.
pub const MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS: &str =
    "MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS";

/// Reads a variable through `get` (the process environment in production, a map in tests).
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads the environment variable `name`, which must parse as `T` (MLflow raises on a value that
/// does not parse); `expected` names the kind for the error.
///
/// # Errors
/// [`ConfigError::InvalidEnv`] when it is set and does not parse.
pub fn read_env<T: std::str::FromStr>(
    name: &'static str,
    expected: &'static str,
) -> Result<Option<T>, ConfigError> {
    env_parse(&process_env, name, expected)
}

/// Reads a boolean environment variable with MLflow's rule: `true/false/1/0`, any letter case.
///
/// # Errors
/// [`ConfigError::InvalidEnv`] for any other value.
pub fn read_env_bool(name: &'static str) -> Result<Option<bool>, ConfigError> {
    process_env(name)
        .map(|v| match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(ConfigError::InvalidEnv {
                name,
                value: v.clone(),
                expected: "boolean (true/false/1/0)",
            }),
        })
        .transpose()
}

fn env_parse<T: std::str::FromStr>(
    get: EnvLookup<'_>,
    name: &'static str,
    expected: &'static str,
) -> Result<Option<T>, ConfigError> {
    get(name)
        .map(|v| {
            v.trim().parse::<T>().map_err(|_| ConfigError::InvalidEnv {
                name,
                value: v.clone(),
                expected,
            })
        })
        .transpose()
}

pub(crate) fn env_u64(get: EnvLookup<'_>, name: &'static str) -> Result<Option<u64>, ConfigError> {
    env_parse(get, name, "non-negative integer")
}

pub(crate) fn env_f64(get: EnvLookup<'_>, name: &'static str) -> Result<Option<f64>, ConfigError> {
    env_parse(get, name, "number")
}

/// The metadata MLflow resolves once per process: OS user, entry point, source type and git
/// commit/branch/remote of the working directory (empty strings outside a git checkout, as in
/// MLflow).
pub(crate) fn environment_metadata() -> &'static [(&'static str, String)] {
    static METADATA: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    METADATA.get_or_init(resolve_environment_metadata)
}

/// The OS user, as Python's `getpass.getuser()` finds it (MLflow's `mlflow.user`): the first
/// non-empty of `LOGNAME`, `USER`, `LNAME`, `USERNAME`, then the password database entry of the
/// process's real user id (so a service with none of those variables, run by systemd or in a
/// container, still gets its user); `"unknown"` when there is none.
pub(crate) fn os_user(get: EnvLookup<'_>) -> String {
    ["LOGNAME", "USER", "LNAME", "USERNAME"]
        .iter()
        .find_map(|v| get(v).filter(|s| !s.is_empty()))
        .or_else(password_database_user)
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(unix)]
fn password_database_user() -> Option<String> {
    match nix::unistd::User::from_uid(nix::unistd::getuid()) {
        Ok(user) => user.map(|u| u.name),
        Err(e) => {
            tracing::debug!("cannot read the password database for the OS user: {e}");
            None
        }
    }
}

#[cfg(not(unix))]
fn password_database_user() -> Option<String> {
    None
}

fn resolve_environment_metadata() -> Vec<(&'static str, String)> {
    let user = os_user(&process_env);
    let source = std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "<console>".to_owned());
    let git = |args: &[&str]| -> String {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let commit = git(&["rev-parse", "HEAD"]);
    // Only ask for the rest inside a checkout (one failed process instead of three).
    let (branch, url) = if commit.is_empty() {
        (String::new(), String::new())
    } else {
        let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"]);
        let url = git(&["config", "--get", "remote.origin.url"]);
        (branch, url)
    };
    vec![
        (keys::metadata::USER, user),
        (keys::metadata::SOURCE_NAME, source),
        (keys::metadata::SOURCE_TYPE, "LOCAL".to_owned()),
        (keys::metadata::GIT_COMMIT, commit),
        (keys::metadata::GIT_BRANCH, branch),
        (keys::metadata::GIT_REPO_URL, url),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked() {
        let env = |n: &str| {
            (n == "A")
                .then(|| "12".to_owned())
                .or_else(|| (n == "B").then(|| "x".to_owned()))
        };
        assert_eq!(env_u64(&env, "A"), Ok(Some(12)));
        assert_eq!(env_u64(&env, "C"), Ok(None));
        assert!(env_u64(&env, "B").is_err());
        assert!(env_f64(&env, "B").is_err());
    }

    #[test]
    fn the_os_user_comes_from_the_variables_in_pythons_order_then_the_password_database() {
        let env = |n: &str| match n {
            "USER" => Some("from-user".to_owned()),
            "LOGNAME" => Some(String::new()), // empty: skipped, as in Python
            "USERNAME" => Some("from-username".to_owned()),
            _ => None,
        };
        assert_eq!(os_user(&env), "from-user");
        let none = os_user(&|_| None);
        assert_eq!(
            none,
            password_database_user().unwrap_or_else(|| "unknown".to_owned()),
            "without variables, the password database (or \"unknown\" when it has no entry)"
        );
        #[cfg(unix)]
        assert!(
            password_database_user().is_some() || nix::unistd::getuid().as_raw() != 0,
            "root always has an entry"
        );
    }

    #[test]
    fn environment_metadata_has_mlflow_keys() {
        let keys: Vec<_> = environment_metadata().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "mlflow.user",
                "mlflow.source.name",
                "mlflow.source.type",
                "mlflow.source.git.commit",
                "mlflow.source.git.branch",
                "mlflow.source.git.repoURL"
            ]
        );
    }
}
