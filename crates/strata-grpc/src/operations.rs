//! The `Operations` service: scavenges through the node's job manager
//! (`strata-operations`), Shutdown, MergeIndexes (an index checkpoint),
//! RestartPersistentSubscriptions, and ResignNode / SetNodePriority as a single node (or,
//! in a PostgreSQL cluster, the leader resigning its lock). Every call takes the operations
//! permission (admins and ops), as in the reference server.

use std::sync::Arc;

use strata_auth::Action;
use strata_operations::{NodeOperations, OperationsError, ScavengeRequest, StartOutcome, Trigger};
use strata_persistent::PersistentSubscriptions;
use tonic::{Code, Request, Response, Status};

use crate::access::Access;
use crate::errors::{to_status, with_trailers};
use crate::persistent::status::persistent_status;
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::operations::operations_server::Operations;
use crate::proto::event_store::client::operations::{
    ScavengeResp, SetNodePriorityReq, StartScavengeReq, StopScavengeReq, scavenge_resp,
};

pub(crate) struct OperationsService {
    pub(crate) operations: NodeOperations,
    pub(crate) persistent: Arc<PersistentSubscriptions>,
    pub(crate) leadership: Option<Arc<strata_core::Leadership>>,
    pub(crate) access: Access,
}

/// Errors of the job manager as the reference server answers them.
fn status(error: OperationsError) -> Status {
    match error {
        OperationsError::NotFound(id) => with_trailers(
            Code::NotFound,
            "Scavenge id was invalid.".to_owned(),
            &[
                ("exception", "scavenge-not-found".into()),
                ("scavenge-id", id),
            ],
        ),
        OperationsError::InvalidArgument(reason) => Status::invalid_argument(reason),
        OperationsError::Unsupported(reason) => Status::unimplemented(reason),
        OperationsError::Store(error) => to_status(error),
        other => Status::unknown(other.to_string()),
    }
}

fn answer(id: String, result: scavenge_resp::ScavengeResult) -> Response<ScavengeResp> {
    Response::new(ScavengeResp {
        scavenge_id: id,
        scavenge_result: result.into(),
    })
}

#[tonic::async_trait]
impl Operations for OperationsService {
    async fn start_scavenge(
        &self,
        request: Request<StartScavengeReq>,
    ) -> Result<Response<ScavengeResp>, Status> {
        let principal = self.access.allow(&request, &Action::Operations).await?;
        let options = request.into_inner().options.unwrap_or_default();
        let threads = u32::try_from(options.thread_count).map_err(|_| {
            Status::invalid_argument(format!(
                "thread_count must be at least 1, not {}",
                options.thread_count
            ))
        })?;
        let start_from_segment = u64::try_from(options.start_from_chunk).map_err(|_| {
            Status::invalid_argument(format!(
                "start_from_chunk must be 0 or more, not {}",
                options.start_from_chunk
            ))
        })?;
        let outcome = self
            .operations
            .scavenges()
            .start(ScavengeRequest {
                threads,
                start_from_segment,
                trigger: Trigger::Manual,
                requested_by: principal.login().map(str::to_owned),
                ..ScavengeRequest::default()
            })
            .map_err(status)?;
        Ok(match outcome {
            StartOutcome::Started(id) => answer(id, scavenge_resp::ScavengeResult::Started),
            StartOutcome::InProgress(id) => answer(id, scavenge_resp::ScavengeResult::InProgress),
        })
    }

    async fn stop_scavenge(
        &self,
        request: Request<StopScavengeReq>,
    ) -> Result<Response<ScavengeResp>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        let id = request
            .into_inner()
            .options
            .map(|options| options.scavenge_id)
            .unwrap_or_default();
        let stopped = self.operations.scavenges().stop(&id).map_err(status)?;
        Ok(answer(stopped, scavenge_resp::ScavengeResult::Stopped))
    }

    async fn shutdown(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        self.operations.request_shutdown();
        Ok(Response::new(Empty {}))
    }

    async fn merge_indexes(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        self.operations.merge_indexes().await.map_err(status)?;
        Ok(Response::new(Empty {}))
    }

    /// A single node leads again at once (as the reference's single node, which wins its
    /// own election); a node of a PostgreSQL cluster gives up its leader lock.
    async fn resign_node(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        if let Some(leadership) = &self.leadership {
            leadership.resign();
        }
        Ok(Response::new(Empty {}))
    }

    async fn set_node_priority(
        &self,
        request: Request<SetNodePriorityReq>,
    ) -> Result<Response<Empty>, Status> {
        self.access.allow(&request, &Action::Operations).await?;
        self.operations.set_priority(request.into_inner().priority);
        Ok(Response::new(Empty {}))
    }

    async fn restart_persistent_subscriptions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        self.access
            .allow(&request, &Action::ManagePersistentSubscriptions)
            .await?;
        self.persistent.restart().await.map_err(persistent_status)?;
        Ok(Response::new(Empty {}))
    }
}
