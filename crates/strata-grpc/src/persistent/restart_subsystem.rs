//! `PersistentSubscriptions.RestartSubsystem`: stop every group (checkpointing), drop every
//! consumer, and start the groups again from the stored configuration.

use strata_persistent::PersistentSubscriptions;
use tonic::{Request, Response, Status};

use crate::persistent::status::persistent_status;
use crate::proto::event_store::client::Empty;

pub(crate) async fn restart_subsystem(
    manager: &PersistentSubscriptions,
    _request: Request<Empty>,
) -> Result<Response<Empty>, Status> {
    manager.restart().await.map_err(persistent_status)?;
    Ok(Response::new(Empty {}))
}
