//! The `Operations` service over a real loopback connection with the generated client:
//! the reference's answers (Started / InProgress / Stopped, `scavenge-not-found`),
//! ServerFeatures, Shutdown, MergeIndexes, the node calls, and who may call them.

use std::sync::Arc;

use strata_auth::{Credentials, Security, SecurityOptions};
use strata_core::{EventStore, ExpectedRevision, Maintenance, ProposedEvent, StreamName};
use strata_engine::{Config, Store};
use strata_operations::{JobState, NodeOperations, ScavengeJobs};
use tonic::{Code, Request};

use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::operations::operations_client::OperationsClient;
use crate::proto::event_store::client::operations::{
    ScavengeResp, SetNodePriorityReq, StartScavengeReq, StopScavengeReq, scavenge_resp,
    start_scavenge_req, stop_scavenge_req,
};
use crate::proto::event_store::client::server_features::server_features_client::ServerFeaturesClient;
use crate::test_server::{Running, serve_store};

struct Served {
    running: Running,
    operations: NodeOperations,
}

async fn serve(
    security: Option<Arc<Security>>,
    store: Arc<Store>,
    dir: tempfile::TempDir,
) -> Served {
    let maintenance: Arc<dyn Maintenance> = store.clone();
    serve_maintained(security, store, dir, maintenance).await
}

/// Holds scavenges until opened.
#[derive(Default)]
struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// The store's maintenance, each scavenge waiting at the gate first: a run stays under
/// way for as long as a test needs.
struct Held {
    store: Arc<Store>,
    gate: Arc<Gate>,
}

impl Maintenance for Held {
    fn scavenge(
        &self,
        options: strata_core::ScavengeOptions,
    ) -> strata_core::Result<strata_core::ScavengeReport> {
        let mut open = self.gate.open.lock().unwrap();
        while !*open {
            open = self.gate.opened.wait(open).unwrap();
        }
        drop(open);
        Maintenance::scavenge(&*self.store, options)
    }

    fn checkpoint_indexes(&self) -> strata_core::Result<()> {
        Maintenance::checkpoint_indexes(&*self.store)
    }
}

async fn serve_maintained(
    security: Option<Arc<Security>>,
    store: Arc<Store>,
    dir: tempfile::TempDir,
    maintenance: Arc<dyn Maintenance>,
) -> Served {
    let operations = NodeOperations::new(
        ScavengeJobs::new(
            store.clone(),
            Some(Arc::clone(&maintenance)),
            "127.0.0.1:2113",
        ),
        Some(maintenance),
    );
    let served = operations.clone();
    let running = serve_store(store, dir, move |mut options| {
        options.security = security;
        options.operations = Some(served);
        options
    })
    .await;
    Served {
        running,
        operations,
    }
}

/// A store with a deleted stream across several sealed segments.
async fn store_with_work() -> (Arc<Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let pad = "y".repeat(4000);
    let stream = StreamName::new("doomed-1").unwrap();
    for round in 0..80 {
        let events = (0..10)
            .map(|_| ProposedEvent::json("Happened", format!(r#"{{"r":{round},"p":"{pad}"}}"#)))
            .collect();
        store
            .append(&stream, ExpectedRevision::Any, events)
            .await
            .unwrap();
    }
    store
        .delete_stream(&stream, ExpectedRevision::Any)
        .await
        .unwrap();
    (store, dir)
}

fn start_request(threads: i32, start_from_chunk: i32) -> StartScavengeReq {
    StartScavengeReq {
        options: Some(start_scavenge_req::Options {
            thread_count: threads,
            start_from_chunk,
        }),
    }
}

fn stop_request(id: &str) -> StopScavengeReq {
    StopScavengeReq {
        options: Some(stop_scavenge_req::Options {
            scavenge_id: id.to_owned(),
        }),
    }
}

fn result_of(answer: &ScavengeResp) -> scavenge_resp::ScavengeResult {
    scavenge_resp::ScavengeResult::try_from(answer.scavenge_result).unwrap()
}

fn as_user<T>(message: T, login: &str, password: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        Credentials::new(login, password)
            .to_header()
            .parse()
            .unwrap(),
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_in_progress_stop_and_not_found_answer_as_the_reference() {
    let (store, dir) = store_with_work().await;
    let gate = Arc::new(Gate::default());
    let held = Arc::new(Held {
        store: store.clone(),
        gate: Arc::clone(&gate),
    });
    let served = serve_maintained(None, store, dir, held).await;
    let mut client = OperationsClient::new(served.running.channel.clone());
    // Held at the gate, so that it is still running for the calls below.
    let jobs = served.operations.scavenges();
    let first = jobs
        .start(strata_operations::ScavengeRequest {
            throttle_percent: 1,
            ..strata_operations::ScavengeRequest::default()
        })
        .unwrap();
    let strata_operations::StartOutcome::Started(id) = first else {
        panic!("{first:?}");
    };
    let again = client
        .start_scavenge(start_request(1, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(result_of(&again), scavenge_resp::ScavengeResult::InProgress);
    assert_eq!(again.scavenge_id, id);

    let missing = client
        .stop_scavenge(stop_request("no-such-scavenge"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), "Scavenge id was invalid.");
    assert_eq!(
        missing.metadata().get("exception").unwrap(),
        "scavenge-not-found"
    );
    assert_eq!(
        missing.metadata().get("scavenge-id").unwrap(),
        "no-such-scavenge"
    );

    let stopped = client
        .stop_scavenge(stop_request(&id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(result_of(&stopped), scavenge_resp::ScavengeResult::Stopped);
    assert_eq!(stopped.scavenge_id, id);
    gate.open();
    assert_eq!(jobs.wait(&id).await.unwrap().state, JobState::Stopped);

    // A new run through the service starts, from a chunk, with threads recorded.
    let started = client
        .start_scavenge(start_request(2, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(result_of(&started), scavenge_resp::ScavengeResult::Started);
    assert_ne!(started.scavenge_id, id);
    let finished = jobs.wait(&started.scavenge_id).await.unwrap();
    assert_eq!(finished.state, JobState::Completed);
    assert_eq!((finished.threads, finished.start_from_segment), (2, 1));
    assert_eq!(
        finished.progress.segments_done,
        finished.progress.segments_total
    );

    for (threads, chunk) in [(0, 0), (-1, 0), (1, -1)] {
        let refused = client
            .start_scavenge(start_request(threads, chunk))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{threads} {chunk}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_calls_answer_as_a_single_node_and_shutdown_is_requested() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let served = serve(None, store, dir).await;
    let mut client = OperationsClient::new(served.running.channel.clone());
    client.merge_indexes(Empty {}).await.unwrap();
    client.resign_node(Empty {}).await.unwrap();
    client
        .set_node_priority(SetNodePriorityReq { priority: 7 })
        .await
        .unwrap();
    assert_eq!(served.operations.priority(), 7);
    client
        .restart_persistent_subscriptions(Empty {})
        .await
        .unwrap();

    let features = ServerFeaturesClient::new(served.running.channel.clone())
        .get_supported_methods(Empty {})
        .await
        .unwrap()
        .into_inner();
    for name in [
        "startscavenge",
        "stopscavenge",
        "shutdown",
        "mergeindexes",
        "resignnode",
        "setnodepriority",
        "restartpersistentsubscriptions",
    ] {
        assert!(
            features.methods.iter().any(|method| method.service_name
                == "event_store.client.operations.operations"
                && method.method_name == name),
            "{name} is advertised"
        );
    }

    let requested = served.operations.clone();
    let waiting = tokio::spawn(async move { requested.shutdown_requested().await });
    client.shutdown(Empty {}).await.unwrap();
    waiting.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_and_ops_may_call_operations() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let shared: Arc<dyn EventStore> = store.clone();
    let security = Security::enabled(shared, SecurityOptions::default())
        .await
        .unwrap();
    security
        .create_user("reader", "A Reader", &[], "secret")
        .await
        .unwrap();
    let served = serve(Some(Arc::clone(&security)), store, dir).await;
    let mut client = OperationsClient::new(served.running.channel.clone());

    let anonymous = client
        .start_scavenge(start_request(1, 0))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::PermissionDenied, "{anonymous:?}");
    let reader = client
        .start_scavenge(as_user(start_request(1, 0), "reader", "secret"))
        .await
        .unwrap_err();
    assert_eq!(reader.code(), Code::PermissionDenied);
    assert_eq!(reader.metadata().get("exception").unwrap(), "access-denied");
    let shutdown = client
        .shutdown(as_user(Empty {}, "reader", "secret"))
        .await
        .unwrap_err();
    assert_eq!(shutdown.code(), Code::PermissionDenied);
    assert!(served.operations.scavenges().current().is_none());
    assert!(served.operations.scavenges().history().is_empty());

    for login in ["ops", "admin"] {
        let started = client
            .start_scavenge(as_user(start_request(1, 0), login, "changeit"))
            .await
            .unwrap()
            .into_inner();
        let job = served
            .operations
            .scavenges()
            .wait(&started.scavenge_id)
            .await
            .unwrap();
        assert_eq!(job.requested_by.as_deref(), Some(login));
    }
}
