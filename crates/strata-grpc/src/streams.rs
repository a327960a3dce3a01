//! The `Streams` service: each RPC lives in its own module.

use std::sync::Arc;

use strata_core::EventStore;
use tonic::{Request, Response, Status, Streaming};

use crate::batch_append::BatchAnswers;
use crate::proto::event_store::client::streams::streams_server::Streams;
use crate::proto::event_store::client::streams::{
    AppendReq, AppendResp, BatchAppendReq, DeleteReq, DeleteResp, ReadReq, TombstoneReq,
    TombstoneResp,
};
use crate::read_answers::ReadAnswers;
use crate::subscribe::SubscriptionSlots;

pub(crate) struct StreamsService {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) subscriptions: SubscriptionSlots,
}

#[tonic::async_trait]
impl Streams for StreamsService {
    type ReadStream = ReadAnswers;
    type BatchAppendStream = BatchAnswers;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<ReadAnswers>, Status> {
        crate::read::read(&self.store, &self.subscriptions, request).await
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        crate::append::append(&self.store, request).await
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        crate::delete::delete(&self.store, request).await
    }

    async fn tombstone(
        &self,
        request: Request<TombstoneReq>,
    ) -> Result<Response<TombstoneResp>, Status> {
        crate::delete::tombstone(&self.store, request).await
    }

    async fn batch_append(
        &self,
        request: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<BatchAnswers>, Status> {
        crate::batch_append::batch_append(&self.store, request).await
    }
}
