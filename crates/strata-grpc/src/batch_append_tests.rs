//! BatchAppend over a real loopback connection: deadlines, limits checked as chunks
//! arrive, the per-event overhead, bad messages, and the bound on appends in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prost::Message as _;
use prost::bytes::Bytes;
use strata_core::{
    AllSlice, AppendResult, DeleteResult, EventStore, ExpectedRevision, Limits, Position,
    ProposedEvent, ReadAllOptions, ReadStreamOptions, StreamName, StreamSlice, StreamState,
};
use strata_engine::{Config, Store};
use tokio::sync::{Semaphore, mpsc, watch};
use tonic::Code;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use crate::append::PROPOSED_EVENT_OVERHEAD_BYTES;
use crate::batch_append::IN_FLIGHT_APPENDS_MAX;
use crate::proposed_message::ProposedMessage;
use crate::proto::event_store::client::streams::batch_append_req;
use crate::proto::event_store::client::streams::batch_append_req::options::{
    DeadlineOption, ExpectedStreamPosition,
};
use crate::proto::event_store::client::streams::streams_client::StreamsClient;
use crate::proto::event_store::client::streams::{
    BatchAppendReq, BatchAppendResp, batch_append_resp,
};
use crate::proto::event_store::client::{self as shared, StreamIdentifier, Uuid, uuid};
use crate::test_server::{Running, all_events, serve, serve_store};

/// One BatchAppend call driven chunk by chunk.
struct Call {
    chunks: mpsc::Sender<BatchAppendReq>,
    answers: tonic::Streaming<BatchAppendResp>,
}

impl Call {
    async fn open<S: EventStore>(running: &Running<S>) -> Call {
        let (chunks, receiver) = mpsc::channel(1_024);
        let mut client = StreamsClient::new(running.channel.clone());
        let answers = client
            .batch_append(ReceiverStream::new(receiver))
            .await
            .unwrap()
            .into_inner();
        Call { chunks, answers }
    }

    async fn send(&self, chunk: BatchAppendReq) {
        self.chunks.send(chunk).await.unwrap();
    }

    async fn answer(&mut self) -> BatchAppendResp {
        self.answers
            .message()
            .await
            .unwrap()
            .expect("an answer before the call ends")
    }
}

fn correlation(n: u32) -> Uuid {
    Uuid {
        value: Some(uuid::Value::String(format!(
            "00000000-0000-4000-8000-{n:012}"
        ))),
    }
}

fn options(stream: &str, deadline: Option<DeadlineOption>) -> batch_append_req::Options {
    batch_append_req::Options {
        stream_identifier: Some(StreamIdentifier {
            stream_name: Bytes::copy_from_slice(stream.as_bytes()),
        }),
        expected_stream_position: Some(ExpectedStreamPosition::Any(())),
        deadline_option: deadline,
    }
}

fn messages(count: usize, data_bytes: usize) -> Vec<ProposedMessage> {
    (0..count)
        .map(|_| ProposedMessage {
            id: Some(Uuid {
                value: Some(uuid::Value::String(
                    strata_core::EventId::new_random().to_string(),
                )),
            }),
            metadata: [
                ("type".to_owned(), "E".to_owned()),
                (
                    "content-type".to_owned(),
                    "application/octet-stream".to_owned(),
                ),
            ]
            .into_iter()
            .collect(),
            custom_metadata: Bytes::new(),
            data: Bytes::from(vec![b'x'; data_bytes]),
        })
        .collect()
}

fn chunk(
    n: u32,
    options: Option<batch_append_req::Options>,
    proposed_messages: Vec<ProposedMessage>,
    is_final: bool,
) -> BatchAppendReq {
    BatchAppendReq {
        correlation_id: Some(correlation(n)),
        options,
        proposed_messages,
        is_final,
    }
}

fn relative(duration: Duration) -> Option<DeadlineOption> {
    Some(DeadlineOption::Deadline(
        prost_types::Duration::try_from(duration).unwrap(),
    ))
}

/// The answer's error: its code and the name of its packed detail.
fn error_of(answer: &BatchAppendResp) -> (Code, String) {
    let Some(batch_append_resp::Result::Error(status)) = &answer.result else {
        panic!("expected an error answer, got {answer:?}");
    };
    let detail = status.details.as_ref().expect("a packed detail");
    let name = detail.type_url.rsplit('.').next().unwrap().to_owned();
    (Code::from(status.code), name)
}

fn is_success(answer: &BatchAppendResp) -> bool {
    matches!(answer.result, Some(batch_append_resp::Result::Success(_)))
}

#[tokio::test]
async fn an_append_whose_deadline_passed_on_arrival_is_deadline_exceeded_and_not_written() {
    let running = serve(Config::small_for_tests()).await;
    let mut call = Call::open(&running).await;
    let past = Some(DeadlineOption::Deadline21100(prost_types::Timestamp {
        seconds: 0,
        nanos: 0,
    }));
    call.send(chunk(
        1,
        Some(options("late-1", past)),
        messages(2, 3),
        true,
    ))
    .await;
    let answer = call.answer().await;
    assert_eq!(answer.correlation_id, Some(correlation(1)));
    assert_eq!(
        error_of(&answer),
        (Code::DeadlineExceeded, "Timeout".into())
    );
    let Some(batch_append_resp::Result::Error(status)) = &answer.result else {
        unreachable!()
    };
    let detail = status.details.as_ref().unwrap();
    shared::Timeout::decode(detail.value.as_slice()).expect("a Timeout detail");
    call.send(chunk(
        2,
        Some(options("late-2", relative(Duration::ZERO))),
        messages(1, 3),
        true,
    ))
    .await;
    assert_eq!(error_of(&call.answer().await).0, Code::DeadlineExceeded);
    assert!(
        all_events(&*running.store).await.is_empty(),
        "nothing written"
    );
}

#[tokio::test]
async fn an_append_whose_deadline_passes_while_assembled_is_answered_then_and_never_written() {
    let running = serve(Config::small_for_tests()).await;
    let mut call = Call::open(&running).await;
    let soon = relative(Duration::from_millis(50));
    call.send(chunk(
        1,
        Some(options("slow-1", soon)),
        messages(2, 3),
        false,
    ))
    .await;
    // No more chunks: the deadline alone brings the answer.
    let answer = call.answer().await;
    assert_eq!(answer.correlation_id, Some(correlation(1)));
    assert_eq!(error_of(&answer).0, Code::DeadlineExceeded);
    // Its late final chunk is dropped; the call goes on.
    call.send(chunk(1, None, messages(1, 3), true)).await;
    call.send(chunk(
        2,
        Some(options("fine-1", None)),
        messages(1, 3),
        true,
    ))
    .await;
    let next = call.answer().await;
    assert_eq!(next.correlation_id, Some(correlation(2)));
    assert!(is_success(&next), "{next:?}");
    let written = all_events(&*running.store).await;
    assert_eq!(written.len(), 1, "only the append without a deadline");
    assert_eq!(written[0].stream.as_str(), "fine-1");
}

#[tokio::test]
async fn an_append_over_the_event_count_is_refused_as_its_chunks_arrive() {
    let config = Config {
        limits: Limits {
            append_events_max: 3,
            ..Config::small_for_tests().limits
        },
        ..Config::small_for_tests()
    };
    let running = serve(config).await;
    let mut call = Call::open(&running).await;
    call.send(chunk(
        1,
        Some(options("many-1", None)),
        messages(2, 1),
        false,
    ))
    .await;
    call.send(chunk(1, None, messages(2, 1), false)).await;
    // Refused before its final chunk is even sent.
    let answer = call.answer().await;
    assert_eq!(
        error_of(&answer),
        (Code::InvalidArgument, "MaximumAppendSizeExceeded".into())
    );
    call.send(chunk(1, None, messages(1, 1), true)).await;
    call.send(chunk(2, Some(options("few-1", None)), messages(3, 1), true))
        .await;
    let next = call.answer().await;
    assert_eq!(next.correlation_id, Some(correlation(2)));
    assert!(
        is_success(&next),
        "three events are within the limit: {next:?}"
    );
    assert_eq!(all_events(&*running.store).await.len(), 3);
}

#[tokio::test]
async fn empty_events_are_charged_the_per_event_overhead() {
    let budget = 10 * (1 + PROPOSED_EVENT_OVERHEAD_BYTES);
    let config = Config {
        limits: Limits {
            event_bytes_max: 1_024,
            append_bytes_max: budget,
            ..Config::small_for_tests().limits
        },
        ..Config::small_for_tests()
    };
    let running = serve(config).await;
    let mut call = Call::open(&running).await;
    call.send(chunk(
        1,
        Some(options("empty-1", None)),
        messages(11, 0),
        true,
    ))
    .await;
    assert_eq!(
        error_of(&call.answer().await),
        (Code::InvalidArgument, "MaximumAppendSizeExceeded".into()),
        "eleven empty events weigh more than ten"
    );
    call.send(chunk(
        2,
        Some(options("empty-2", None)),
        messages(10, 0),
        true,
    ))
    .await;
    assert!(is_success(&call.answer().await), "ten fit");
}

#[tokio::test]
async fn a_bad_message_refuses_its_append_only() {
    let running = serve(Config::small_for_tests()).await;
    let mut call = Call::open(&running).await;
    let mut bad = messages(1, 1);
    bad[0].metadata = [(
        "content-type".to_owned(),
        "application/octet-stream".to_owned(),
    )]
    .into_iter()
    .collect();
    call.send(chunk(1, Some(options("bad-1", None)), bad, true))
        .await;
    let answer = call.answer().await;
    assert_eq!(
        error_of(&answer),
        (Code::InvalidArgument, "BadRequest".into())
    );
    call.send(chunk(
        2,
        Some(options("good-1", None)),
        messages(1, 1),
        true,
    ))
    .await;
    assert!(is_success(&call.answer().await));
}

/// The engine behind a gate: appends wait until the test lets them through, and the store
/// counts how many wait at once.
struct GatedStore {
    inner: Arc<Store>,
    gate: Semaphore,
    waiting: AtomicUsize,
    waiting_max: AtomicUsize,
    waiting_now: watch::Sender<usize>,
}

#[tonic::async_trait]
impl EventStore for GatedStore {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> strata_core::Result<AppendResult> {
        let now = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        self.waiting_max.fetch_max(now, Ordering::SeqCst);
        self.waiting_now.send_replace(now);
        let pass = self.gate.acquire().await.unwrap();
        pass.forget();
        let left = self.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
        self.waiting_now.send_replace(left);
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> strata_core::Result<StreamSlice> {
        self.inner.read_stream(stream, options).await
    }

    async fn read_all(&self, options: ReadAllOptions) -> strata_core::Result<AllSlice> {
        self.inner.read_all(options).await
    }

    async fn stream_state(&self, stream: &StreamName) -> strata_core::Result<StreamState> {
        self.inner.stream_state(stream).await
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> strata_core::Result<DeleteResult> {
        self.inner.delete_stream(stream, expected).await
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> strata_core::Result<DeleteResult> {
        self.inner.tombstone_stream(stream, expected).await
    }

    async fn last_position(&self) -> strata_core::Result<Option<Position>> {
        self.inner.last_position().await
    }

    fn watch_log_end(&self) -> watch::Receiver<Position> {
        self.inner.watch_log_end()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_hands_the_store_no_more_than_its_in_flight_bound_and_answers_every_append() {
    const APPENDS: u32 = IN_FLIGHT_APPENDS_MAX as u32 + 44;
    let dir = tempfile::tempdir().unwrap();
    let (waiting_now, mut watching) = watch::channel(0);
    let store = Arc::new(GatedStore {
        inner: Store::open(dir.path(), Config::small_for_tests()).unwrap(),
        gate: Semaphore::new(0),
        waiting: AtomicUsize::new(0),
        waiting_max: AtomicUsize::new(0),
        waiting_now,
    });
    let running = serve_store(Arc::clone(&store), dir, |options| options).await;
    let mut call = Call::open(&running).await;
    for n in 0..APPENDS {
        let stream = format!("gated-{n}");
        call.send(chunk(n, Some(options(&stream, None)), messages(1, 1), true))
            .await;
    }
    watching
        .wait_for(|&waiting| waiting >= IN_FLIGHT_APPENDS_MAX)
        .await
        .unwrap();
    // Let the server read on: without the bound, every append would now be waiting.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.waiting.load(Ordering::SeqCst),
        IN_FLIGHT_APPENDS_MAX,
        "the call waits for room instead of handing over more"
    );
    store.gate.add_permits(APPENDS as usize);
    for _ in 0..APPENDS {
        assert!(is_success(&call.answer().await));
    }
    assert_eq!(
        store.waiting_max.load(Ordering::SeqCst),
        IN_FLIGHT_APPENDS_MAX
    );
}
