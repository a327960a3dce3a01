//! The answers of one Read call on their way to the client: pages of answers through a
//! channel bounded in pages and in bytes of events, so a slow client holds back only its
//! own call and never makes the server hold more than the budget.

use std::pin::Pin;
use std::sync::Arc;

use futures::future::Either;
use futures::stream::{self, StreamExt as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::Status;
use tonic::codegen::tokio_stream::Stream;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use crate::proto::event_store::client::streams::read_resp::Content;
use crate::read_answer::ReadAnswer;

/// The stream of answers of one Read call.
pub(crate) type ReadAnswers = Pin<Box<dyn Stream<Item = Result<ReadAnswer, Status>> + Send>>;

/// Pages of answers buffered per call before the reading task waits for the client (a page
/// is one store page of events, or one single answer).
const PAGES_BUFFERED_MAX: usize = 16;

/// Bytes of events buffered per call before the reading task waits for the client. A page
/// larger than this still goes, alone.
pub(crate) const BUFFERED_BYTES_MAX: usize = 8 * 1024 * 1024;

/// A page with its share of the byte budget, released when the page leaves the buffer.
type Page = (
    Result<Vec<ReadAnswer>, Status>,
    Option<OwnedSemaphorePermit>,
);

/// The reading task's end of a Read call.
pub(crate) struct Answers {
    pages: mpsc::Sender<Page>,
    bytes: Arc<Semaphore>,
    bytes_max: usize,
}

/// A new call's answers: the sender for its reading task and the stream for tonic.
pub(crate) fn channel() -> (Answers, ReadAnswers) {
    channel_with_budget(BUFFERED_BYTES_MAX)
}

/// [`channel`] buffering at most `bytes_max` bytes of events (a larger page still goes,
/// alone): subscriptions, which may stay unread for long, take a smaller budget.
pub(crate) fn channel_with_budget(bytes_max: usize) -> (Answers, ReadAnswers) {
    let bytes_max = bytes_max.clamp(1, Semaphore::MAX_PERMITS);
    let (pages, receiver) = mpsc::channel::<Page>(PAGES_BUFFERED_MAX);
    let answers = ReceiverStream::new(receiver).flat_map(|(page, mut permit)| match page {
        Ok(page) => {
            let last = page.len();
            Either::Left(stream::iter(page.into_iter().enumerate().map(
                move |(index, answer)| {
                    // The page's bytes count until its last answer is handed on.
                    if index + 1 == last {
                        drop(permit.take());
                    }
                    Ok(answer)
                },
            )))
        }
        Err(status) => Either::Right(stream::iter(std::iter::once(Err(status)))),
    });
    let sender = Answers {
        pages,
        bytes: Arc::new(Semaphore::new(bytes_max)),
        bytes_max,
    };
    (sender, Box::pin(answers))
}

impl Answers {
    /// Sends one answer that carries no event.
    pub(crate) async fn send(&self, content: Content) -> Result<(), Status> {
        self.send_page(vec![ReadAnswer::other(content)], 0).await
    }

    /// Sends a page holding `event_bytes` of events, waiting while the buffer is full.
    ///
    /// # Errors
    /// `CANCELLED` when the client went away (nothing is left to tell it).
    pub(crate) async fn send_page(
        &self,
        page: Vec<ReadAnswer>,
        event_bytes: usize,
    ) -> Result<(), Status> {
        let gone = || Status::cancelled("the client went away");
        let permit = if event_bytes == 0 {
            None
        } else {
            let cost = event_bytes.min(self.bytes_max);
            let cost = u32::try_from(cost).unwrap_or(u32::MAX);
            let permit = Arc::clone(&self.bytes)
                .acquire_many_owned(cost)
                .await
                .map_err(|_| gone())?;
            Some(permit)
        };
        self.pages
            .send((Ok(page), permit))
            .await
            .map_err(|_| gone())
    }

    /// Ends the call with `status`.
    pub(crate) async fn fail(&self, status: Status) {
        let _ = self.pages.send((Err(status), None)).await;
    }

    /// Completes when the client has gone away.
    pub(crate) async fn closed(&self) {
        self.pages.closed().await;
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    #[tokio::test]
    async fn pages_wait_while_the_buffer_holds_its_byte_budget() {
        let (answers, mut stream) = channel();
        let page = || vec![ReadAnswer::other(Content::FirstStreamPosition(0))];
        answers
            .send_page(page(), BUFFERED_BYTES_MAX - 10)
            .now_or_never()
            .expect("room for the first page")
            .unwrap();
        let mut second = Box::pin(answers.send_page(page(), 20));
        assert!(second.as_mut().now_or_never().is_none(), "over the budget");
        assert!(
            stream.next().await.is_some(),
            "the client takes the first page"
        );
        assert!(
            second.now_or_never().is_some(),
            "room again once it is handed on"
        );
        // A page larger than the budget still goes, alone.
        assert!(stream.next().await.is_some());
        answers
            .send_page(page(), BUFFERED_BYTES_MAX * 4)
            .now_or_never()
            .expect("a large page goes alone")
            .unwrap();
    }
}
