//! The `PersistentSubscriptions` service: a translation onto
//! [`strata_persistent::PersistentSubscriptions`], one RPC per module.

mod create;
mod delete;
mod get_info;
mod list;
mod read;
mod replay_parked;
mod restart_subsystem;
mod settings;
pub(crate) mod status;
#[cfg(test)]
mod tests;
mod truncate_parked;
mod update;

use std::sync::Arc;

use strata_auth::Action;
use strata_persistent::PersistentSubscriptions;
use tonic::{Request, Response, Status, Streaming};

use crate::access::Access;
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::persistent_subscriptions::persistent_subscriptions_server::PersistentSubscriptions as Service;
use crate::proto::event_store::client::persistent_subscriptions::{
    CreateReq, CreateResp, DeleteReq, DeleteResp, GetInfoReq, GetInfoResp, ListReq, ListResp,
    ReadReq, ReplayParkedReq, ReplayParkedResp, TruncateParkedReq, TruncateParkedResp, UpdateReq,
    UpdateResp,
};

pub(crate) struct PersistentService {
    pub(crate) manager: Arc<PersistentSubscriptions>,
    pub(crate) access: Access,
}

#[tonic::async_trait]
impl Service for PersistentService {
    type ReadStream = read::ReadAnswers;

    async fn create(&self, request: Request<CreateReq>) -> Result<Response<CreateResp>, Status> {
        self.access
            .allow(&request, &Action::ManagePersistentSubscriptions)
            .await?;
        create::create(&self.manager, request).await
    }

    async fn update(&self, request: Request<UpdateReq>) -> Result<Response<UpdateResp>, Status> {
        self.access
            .allow(&request, &Action::ManagePersistentSubscriptions)
            .await?;
        update::update(&self.manager, request).await
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        self.access
            .allow(&request, &Action::ManagePersistentSubscriptions)
            .await?;
        delete::delete(&self.manager, request).await
    }

    async fn read(
        &self,
        request: Request<Streaming<ReadReq>>,
    ) -> Result<Response<read::ReadAnswers>, Status> {
        read::read(&self.manager, &self.access, request).await
    }

    async fn get_info(
        &self,
        request: Request<GetInfoReq>,
    ) -> Result<Response<GetInfoResp>, Status> {
        self.access.allow(&request, &Action::Statistics).await?;
        get_info::get_info(&self.manager, request).await
    }

    async fn replay_parked(
        &self,
        request: Request<ReplayParkedReq>,
    ) -> Result<Response<ReplayParkedResp>, Status> {
        self.access
            .allow(&request, &Action::ManagePersistentSubscriptions)
            .await?;
        replay_parked::replay_parked(&self.manager, request).await
    }

    async fn truncate_parked(
        &self,
        request: Request<TruncateParkedReq>,
    ) -> Result<Response<TruncateParkedResp>, Status> {
        self.access
            .allow(&request, &Action::ManagePersistentSubscriptions)
            .await?;
        truncate_parked::truncate_parked(&self.manager, request).await
    }

    async fn list(&self, request: Request<ListReq>) -> Result<Response<ListResp>, Status> {
        self.access.allow(&request, &Action::Statistics).await?;
        list::list(&self.manager, request).await
    }

    async fn restart_subsystem(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.access
            .allow(&request, &Action::ManagePersistentSubscriptions)
            .await?;
        restart_subsystem::restart_subsystem(&self.manager, request).await
    }
}
