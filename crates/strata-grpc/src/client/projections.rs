//! [`ProjectionsAdmin`]: the `Projections` service from the command line
//! (`strata projection ...`).

use tonic::Request;
use tonic::transport::Channel;

use super::ClientError;
use super::admin::AdminConnection;
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::projections::projections_client::ProjectionsClient;
use crate::proto::event_store::client::projections::{
    CreateReq, DeleteReq, DisableReq, EnableReq, ResetReq, ResultReq, StateReq, StatisticsReq,
    UpdateReq, create_req, delete_req, disable_req, enable_req, reset_req, result_req, state_req,
    statistics_req, update_req,
};

/// How a projection is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectionMode {
    /// Runs over what is there, then stops; the server names it.
    OneTime,
    /// Runs over what is there, then follows the log.
    Continuous {
        emit_enabled: bool,
        track_emitted_streams: bool,
    },
}

/// What a delete removes besides the projection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteStreams {
    pub emitted_streams: bool,
    pub state_stream: bool,
    pub checkpoint_stream: bool,
}

/// One projection as `Statistics` describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectionInfo {
    pub name: String,
    pub status: String,
    pub state_reason: String,
    pub mode: String,
    pub position: String,
    pub progress: f32,
    pub epoch: i64,
    pub version: i64,
    pub events_processed_after_restart: i64,
    pub partitions_cached: i32,
}

/// Manages projections on a server, as the user named in the connection string (or given).
pub struct ProjectionsAdmin {
    projections: ProjectionsClient<Channel>,
    connection: AdminConnection,
}

impl ProjectionsAdmin {
    /// Connects to `url` (`kurrentdb://USER:PASSWORD@HOST:PORT?tlsCaFile=CA.pem`, or
    /// `?tls=false`); `credentials` replace those of the URL when given.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for a bad string or unreadable CA file,
    /// [`ClientError::Connect`] when no connection can be made.
    pub async fn connect(
        url: &str,
        credentials: Option<(String, String)>,
    ) -> Result<ProjectionsAdmin, ClientError> {
        let connection = AdminConnection::connect(url, credentials).await?;
        Ok(ProjectionsAdmin {
            projections: ProjectionsClient::new(connection.channel.clone()),
            connection,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        self.connection.request(message)
    }

    /// Creates a projection (`name` is ignored for one-time ones: the server names them).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn create(
        &self,
        name: &str,
        query: &str,
        mode: ProjectionMode,
    ) -> Result<(), ClientError> {
        let mode = match mode {
            ProjectionMode::OneTime => create_req::options::Mode::OneTime(Empty {}),
            ProjectionMode::Continuous {
                emit_enabled,
                track_emitted_streams,
            } => create_req::options::Mode::Continuous(create_req::options::Continuous {
                name: name.to_owned(),
                emit_enabled,
                track_emitted_streams,
            }),
        };
        let request = self.request(CreateReq {
            options: Some(create_req::Options {
                mode: Some(mode),
                query: query.to_owned(),
                ..Default::default()
            }),
        });
        self.projections
            .clone()
            .create(request)
            .await
            .map_err(|status| ClientError::rpc("Projections.Create", status))?;
        Ok(())
    }

    /// Replaces the query; `emit_enabled` changes the emit option when given.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn update(
        &self,
        name: &str,
        query: &str,
        emit_enabled: Option<bool>,
    ) -> Result<(), ClientError> {
        let emit_option = Some(match emit_enabled {
            Some(enabled) => update_req::options::EmitOption::EmitEnabled(enabled),
            None => update_req::options::EmitOption::NoEmitOptions(Empty {}),
        });
        let request = self.request(UpdateReq {
            options: Some(update_req::Options {
                name: name.to_owned(),
                query: query.to_owned(),
                emit_option,
                ..Default::default()
            }),
        });
        self.projections
            .clone()
            .update(request)
            .await
            .map_err(|status| ClientError::rpc("Projections.Update", status))?;
        Ok(())
    }

    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn delete(&self, name: &str, streams: DeleteStreams) -> Result<(), ClientError> {
        let request = self.request(DeleteReq {
            options: Some(delete_req::Options {
                name: name.to_owned(),
                delete_emitted_streams: streams.emitted_streams,
                delete_state_stream: streams.state_stream,
                delete_checkpoint_stream: streams.checkpoint_stream,
            }),
        });
        self.projections
            .clone()
            .delete(request)
            .await
            .map_err(|status| ClientError::rpc("Projections.Delete", status))?;
        Ok(())
    }

    /// One projection (`Some(name)`) or every projection (`None`).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn statistics(&self, name: Option<&str>) -> Result<Vec<ProjectionInfo>, ClientError> {
        let mode = match name {
            Some(name) => statistics_req::options::Mode::Name(name.to_owned()),
            None => statistics_req::options::Mode::All(Empty {}),
        };
        let request = self.request(StatisticsReq {
            options: Some(statistics_req::Options { mode: Some(mode) }),
        });
        let rpc = |status| ClientError::rpc("Projections.Statistics", status);
        let mut answers = self
            .projections
            .clone()
            .statistics(request)
            .await
            .map_err(rpc)?
            .into_inner();
        let mut found = Vec::new();
        while let Some(answer) = answers.message().await.map_err(rpc)? {
            if let Some(details) = answer.details {
                found.push(ProjectionInfo {
                    name: details.name,
                    status: details.status,
                    state_reason: details.state_reason,
                    mode: details.mode,
                    position: details.position,
                    progress: details.progress,
                    epoch: details.epoch,
                    version: details.version,
                    events_processed_after_restart: details.events_processed_after_restart,
                    partitions_cached: details.partitions_cached,
                });
            }
        }
        Ok(found)
    }

    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn enable(&self, name: &str) -> Result<(), ClientError> {
        let request = self.request(EnableReq {
            options: Some(enable_req::Options {
                name: name.to_owned(),
            }),
        });
        self.projections
            .clone()
            .enable(request)
            .await
            .map_err(|status| ClientError::rpc("Projections.Enable", status))?;
        Ok(())
    }

    /// Stops a projection: after its current batch with `write_checkpoint`, else at once
    /// (abort).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn disable(&self, name: &str, write_checkpoint: bool) -> Result<(), ClientError> {
        let request = self.request(DisableReq {
            options: Some(disable_req::Options {
                name: name.to_owned(),
                write_checkpoint,
            }),
        });
        self.projections
            .clone()
            .disable(request)
            .await
            .map_err(|status| ClientError::rpc("Projections.Disable", status))?;
        Ok(())
    }

    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn reset(&self, name: &str) -> Result<(), ClientError> {
        let request = self.request(ResetReq {
            options: Some(reset_req::Options {
                name: name.to_owned(),
                write_checkpoint: true,
            }),
        });
        self.projections
            .clone()
            .reset(request)
            .await
            .map_err(|status| ClientError::rpc("Projections.Reset", status))?;
        Ok(())
    }

    /// The state of `partition` (`""`: the root), as JSON.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn state(&self, name: &str, partition: &str) -> Result<String, ClientError> {
        let request = self.request(StateReq {
            options: Some(state_req::Options {
                name: name.to_owned(),
                partition: partition.to_owned(),
            }),
        });
        let answer = self
            .projections
            .clone()
            .state(request)
            .await
            .map_err(|status| ClientError::rpc("Projections.State", status))?
            .into_inner();
        Ok(json_of(answer.state).to_string())
    }

    /// The result of `partition` (`""`: the root), as JSON.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with the server's status.
    pub async fn result(&self, name: &str, partition: &str) -> Result<String, ClientError> {
        let request = self.request(ResultReq {
            options: Some(result_req::Options {
                name: name.to_owned(),
                partition: partition.to_owned(),
            }),
        });
        let answer = self
            .projections
            .clone()
            .result(request)
            .await
            .map_err(|status| ClientError::rpc("Projections.Result", status))?
            .into_inner();
        Ok(json_of(answer.result).to_string())
    }
}

/// A `google.protobuf.Value` as JSON (`null` when absent).
fn json_of(value: Option<prost_types::Value>) -> serde_json::Value {
    use prost_types::value::Kind;
    match value.and_then(|value| value.kind) {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(flag)) => flag.into(),
        Some(Kind::NumberValue(number)) => {
            // Whole numbers print as integers, as they were written.
            if number.fract() == 0.0 && number.abs() < 9.0e15 {
                // A whole number below 2^53 fits i64 exactly.
                let whole = number as i64;
                whole.into()
            } else {
                serde_json::Number::from_f64(number).map_or(serde_json::Value::Null, Into::into)
            }
        }
        Some(Kind::StringValue(text)) => text.into(),
        Some(Kind::ListValue(list)) => list
            .values
            .into_iter()
            .map(|item| json_of(Some(item)))
            .collect(),
        Some(Kind::StructValue(object)) => object
            .fields
            .into_iter()
            .map(|(key, item)| (key, json_of(Some(item))))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}
