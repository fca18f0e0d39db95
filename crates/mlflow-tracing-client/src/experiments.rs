//! Experiments, and the server's version.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use crate::client::TrackingClient;
use crate::error::ClientError;
use crate::transport::Call;

/// An MLflow experiment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Experiment {
    /// The id (digits).
    pub experiment_id: String,
    /// The name.
    #[serde(default)]
    pub name: String,
    /// Where its artifacts go (`mlflow-artifacts:/<id>` on a proxying server).
    #[serde(default)]
    pub artifact_location: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

impl TrackingClient {
    /// `GET /version`: the server's MLflow version (3 s, no retries, as MLflow probes it).
    ///
    /// # Errors
    /// [`ClientError`] when the server cannot be reached or answers with an error.
    pub async fn version(&self) -> Result<String, ClientError> {
        let mut call = Call::new(Method::GET, "/version");
        call.retries = false;
        call.timeout = Some(Duration::from_secs(3));
        let body = self.send(call).await?;
        Ok(String::from_utf8_lossy(&body).trim().to_owned())
    }

    // ----- experiments -----

    /// `GET experiments/get`.
    ///
    /// # Errors
    /// [`ClientError`]; 404 for an unknown id.
    pub async fn get_experiment(&self, experiment_id: &str) -> Result<Experiment, ClientError> {
        validate_experiment_id(experiment_id)?;
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        let call = Call::new(Method::GET, "/api/2.0/mlflow/experiments/get")
            .query("experiment_id", experiment_id);
        Ok(self.send_json::<Answer>(call).await?.experiment)
    }

    /// `GET experiments/get-by-name`; `None` when there is no such experiment.
    ///
    /// # Errors
    /// [`ClientError`] other than "does not exist".
    pub async fn get_experiment_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Experiment>, ClientError> {
        validate_name(name)?;
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        let call = Call::new(Method::GET, "/api/2.0/mlflow/experiments/get-by-name")
            .query("experiment_name", name);
        match self.send_json::<Answer>(call).await {
            Ok(a) => Ok(Some(a.experiment)),
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST experiments/create`: the new experiment's id.
    ///
    /// # Errors
    /// [`ClientError`]; `RESOURCE_ALREADY_EXISTS` when the name is taken.
    pub async fn create_experiment(&self, name: &str) -> Result<String, ClientError> {
        validate_name(name)?;
        #[derive(Deserialize)]
        struct Answer {
            experiment_id: String,
        }
        let body = serde_json::json!({ "name": name }).to_string();
        let call = Call::new(Method::POST, "/api/2.0/mlflow/experiments/create").json(body);
        Ok(self.send_json::<Answer>(call).await?.experiment_id)
    }

    /// The id of the experiment named `name`, created if missing (a concurrent creation by
    /// another client is tolerated).
    ///
    /// # Errors
    /// [`ClientError`] from the lookups.
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<String, ClientError> {
        if let Some(e) = self.get_experiment_by_name(name).await? {
            return Ok(e.experiment_id);
        }
        match self.create_experiment(name).await {
            Ok(id) => Ok(id),
            Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => self
                .get_experiment_by_name(name)
                .await?
                .map(|e| e.experiment_id)
                .ok_or(e),
            Err(e) => Err(e),
        }
    }

    // ----- writing traces -----
}

pub(crate) fn validate_experiment_id(id: &str) -> Result<(), ClientError> {
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ClientError::InvalidArgument {
            what: "experiment id",
            value: id.to_owned(),
            reason: "experiment ids are decimal digits",
        });
    }
    Ok(())
}

pub(crate) fn validate_name(name: &str) -> Result<(), ClientError> {
    if name.is_empty() || name.len() > 1024 || name.chars().any(|c| c == '\0') {
        return Err(ClientError::InvalidArgument {
            what: "name",
            value: name.to_owned(),
            reason: "must be non-empty, at most 1024 bytes, without NUL",
        });
    }
    Ok(())
}
