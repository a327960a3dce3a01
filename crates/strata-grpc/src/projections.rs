//! The `Projections` service: a translation onto `strata-projections`' manager, with the
//! reference server's statuses (`NOT_FOUND` `Projection '<n>' not found`, `ALREADY_EXISTS`,
//! `FAILED_PRECONDITION`, `INVALID_ARGUMENT`, `UNKNOWN`). Managing projections takes the
//! operations permission; statistics, state and result any authenticated caller. On a
//! cluster's follower every call answers `not-leader` (projections run on the leader).

use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt as _};
use strata_auth::Action;
use strata_projections::{
    CreateOptions, DeleteOptions, Mode, ProjectionError, ProjectionManager, Statistics,
    TRACK_WITHOUT_EMIT,
};
use tonic::{Request, Response, Status};

use crate::access::Access;
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::projections::projections_server::Projections;
use crate::proto::event_store::client::projections::{
    CreateReq, CreateResp, DeleteReq, DeleteResp, DisableReq, DisableResp, EnableReq, EnableResp,
    ResetReq, ResetResp, ResultReq, ResultResp, StateReq, StateResp, StatisticsReq, StatisticsResp,
    UpdateReq, UpdateResp, create_req, statistics_req, statistics_resp, update_req,
};

pub(crate) struct ProjectionsService {
    pub(crate) manager: Arc<ProjectionManager>,
    pub(crate) access: Access,
}

fn missing_options() -> Status {
    Status::invalid_argument("the request has no options")
}

/// The status the reference server answers for each refusal.
fn status(error: ProjectionError) -> Status {
    match error {
        ProjectionError::NotFound { .. } => Status::not_found(error.to_string()),
        ProjectionError::AlreadyExists { .. } => Status::already_exists(error.to_string()),
        ProjectionError::FailedPrecondition { .. } => {
            Status::failed_precondition(error.to_string())
        }
        ProjectionError::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
        // On a cluster's follower, as the other leader-only calls answer there.
        ProjectionError::Store(strata_core::Error::NotLeader { leader }) => {
            crate::errors::not_leader(leader.as_ref())
        }
        other => Status::unknown(other.to_string()),
    }
}

/// JSON text as a `google.protobuf.Value`. No state (or result) yet is an empty object, as
/// the reference answers (its empty state text reaches clients as `{}`).
fn value_of(json: Option<String>) -> prost_types::Value {
    let parsed = match json {
        None => serde_json::Value::Object(serde_json::Map::new()),
        Some(json) => serde_json::from_str(&json).unwrap_or(serde_json::Value::Null),
    };
    to_value(parsed)
}

fn to_value(json: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(flag) => Kind::BoolValue(flag),
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(text) => Kind::StringValue(text),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields
                .into_iter()
                .map(|(key, value)| (key, to_value(value)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

fn details(statistics: Statistics) -> StatisticsResp {
    let count = |value: usize| i32::try_from(value).unwrap_or(i32::MAX);
    let long = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    StatisticsResp {
        details: Some(statistics_resp::Details {
            core_processing_time: 0,
            version: long(statistics.version),
            epoch: long(statistics.epoch),
            effective_name: statistics.effective_name,
            writes_in_progress: 0,
            reads_in_progress: 0,
            partitions_cached: count(statistics.partitions_cached),
            status: statistics.status,
            state_reason: statistics.state_reason,
            name: statistics.name,
            mode: statistics.mode,
            position: statistics.position.clone(),
            progress: statistics.progress,
            last_checkpoint: statistics.position,
            events_processed_after_restart: long(statistics.events_processed_after_restart),
            checkpoint_status: statistics.checkpoint_status,
            buffered_events: 0,
            write_pending_events_before_checkpoint: 0,
            write_pending_events_after_checkpoint: 0,
        }),
    }
}

#[tonic::async_trait]
impl Projections for ProjectionsService {
    type StatisticsStream = BoxStream<'static, Result<StatisticsResp, Status>>;

    async fn create(&self, request: Request<CreateReq>) -> Result<Response<CreateResp>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        let (name, create) = match options.mode {
            Some(create_req::options::Mode::OneTime(_)) => (
                uuid::Uuid::new_v4().to_string(),
                CreateOptions {
                    mode: Mode::OneTime,
                    emit_enabled: false,
                    track_emitted_streams: false,
                },
            ),
            Some(create_req::options::Mode::Continuous(continuous)) => (
                continuous.name,
                CreateOptions {
                    mode: Mode::Continuous,
                    emit_enabled: continuous.emit_enabled,
                    track_emitted_streams: continuous.track_emitted_streams,
                },
            ),
            Some(create_req::options::Mode::Transient(_)) => {
                return Err(Status::invalid_argument(
                    "transient projections are not supported (deprecated by the reference server): create a one-time or continuous projection",
                ));
            }
            None => return Err(Status::invalid_argument("the request has no mode")),
        };
        if create.track_emitted_streams && !create.emit_enabled {
            // The reference throws from its handler; its gRPC host answers UNKNOWN with this
            // text, which clients recognize (kurrentdbclient: ExceptionThrownByHandlerError).
            return Err(Status::unknown(format!(
                "Exception was thrown by handler. {TRACK_WITHOUT_EMIT}"
            )));
        }
        self.manager
            .create(&name, &options.query, create)
            .await
            .map_err(status)?;
        Ok(Response::new(CreateResp {}))
    }

    async fn update(&self, request: Request<UpdateReq>) -> Result<Response<UpdateResp>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        let emit_enabled = match options.emit_option {
            Some(update_req::options::EmitOption::EmitEnabled(enabled)) => Some(enabled),
            Some(update_req::options::EmitOption::NoEmitOptions(_)) | None => None,
        };
        self.manager
            .update(&options.name, &options.query, emit_enabled)
            .await
            .map_err(status)?;
        Ok(Response::new(UpdateResp {}))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        let flags = DeleteOptions {
            delete_emitted_streams: options.delete_emitted_streams,
            delete_state_stream: options.delete_state_stream,
            delete_checkpoint_stream: options.delete_checkpoint_stream,
        };
        self.manager
            .delete(&options.name, flags)
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteResp {}))
    }

    async fn statistics(
        &self,
        request: Request<StatisticsReq>,
    ) -> Result<Response<Self::StatisticsStream>, Status> {
        self.access.allow(&request, &Action::Statistics).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        let wanted = match options.mode {
            Some(statistics_req::options::Mode::Name(name)) => {
                self.manager.statistics(Some(&name)).await.map_err(status)?
            }
            mode => {
                let all = self.manager.statistics(None).await.map_err(status)?;
                let keep = |statistics: &Statistics| match &mode {
                    Some(statistics_req::options::Mode::Continuous(_)) => {
                        statistics.mode == "Continuous"
                    }
                    Some(statistics_req::options::Mode::OneTime(_)) => statistics.mode == "OneTime",
                    Some(statistics_req::options::Mode::Transient(_)) => false,
                    _ => true,
                };
                all.into_iter().filter(keep).collect()
            }
        };
        let answers = wanted.into_iter().map(|statistics| Ok(details(statistics)));
        Ok(Response::new(stream::iter(answers).boxed()))
    }

    async fn disable(&self, request: Request<DisableReq>) -> Result<Response<DisableResp>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        let outcome = if options.write_checkpoint {
            self.manager.disable(&options.name).await
        } else {
            self.manager.abort(&options.name).await
        };
        outcome.map_err(status)?;
        Ok(Response::new(DisableResp {}))
    }

    async fn enable(&self, request: Request<EnableReq>) -> Result<Response<EnableResp>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        self.manager.enable(&options.name).await.map_err(status)?;
        Ok(Response::new(EnableResp {}))
    }

    async fn reset(&self, request: Request<ResetReq>) -> Result<Response<ResetResp>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        self.manager.reset(&options.name).await.map_err(status)?;
        Ok(Response::new(ResetResp {}))
    }

    async fn state(&self, request: Request<StateReq>) -> Result<Response<StateResp>, Status> {
        self.access.allow(&request, &Action::Statistics).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        let state = self
            .manager
            .state(&options.name, &options.partition)
            .await
            .map_err(status)?;
        Ok(Response::new(StateResp {
            state: Some(value_of(state)),
        }))
    }

    async fn result(&self, request: Request<ResultReq>) -> Result<Response<ResultResp>, Status> {
        self.access.allow(&request, &Action::Statistics).await?;
        let options = request.into_inner().options.ok_or_else(missing_options)?;
        let result = self
            .manager
            .result(&options.name, &options.partition)
            .await
            .map_err(status)?;
        Ok(Response::new(ResultResp {
            result: Some(value_of(result)),
        }))
    }

    async fn restart_subsystem(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        self.manager.check_leader().map_err(status)?;
        self.manager.restart_all().await;
        Ok(Response::new(Empty {}))
    }
}
