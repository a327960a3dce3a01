//! The `Streams` service: each RPC lives in its own module.

use tonic::{Request, Response, Status, Streaming};

use crate::access::Access;
use crate::batch_append::BatchAnswers;
use crate::proto::event_store::client::streams::{
    AppendReq, AppendResp, BatchAppendReq, DeleteReq, DeleteResp, ReadReq, TombstoneReq,
    TombstoneResp,
};
use crate::proto::streams_service::streams_server::Streams;
use crate::read_answers::ReadAnswers;
use crate::subscribe::SubscriptionSlots;

pub(crate) struct StreamsService {
    pub(crate) access: Access,
    pub(crate) subscriptions: SubscriptionSlots,
}

#[tonic::async_trait]
impl Streams for StreamsService {
    type ReadStream = ReadAnswers;
    type BatchAppendStream = BatchAnswers;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<ReadAnswers>, Status> {
        let (store, login) = self.access.session(&request).await?;
        crate::read::read(&store, login, &self.subscriptions, request).await
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        let store = self.access.store(&request).await?;
        crate::append::append(&store, request).await
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        let store = self.access.store(&request).await?;
        crate::delete::delete(&store, request).await
    }

    async fn tombstone(
        &self,
        request: Request<TombstoneReq>,
    ) -> Result<Response<TombstoneResp>, Status> {
        let store = self.access.store(&request).await?;
        crate::delete::tombstone(&store, request).await
    }

    async fn batch_append(
        &self,
        request: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<BatchAnswers>, Status> {
        let store = self.access.store(&request).await?;
        crate::batch_append::batch_append(&store, request).await
    }
}
