//! The `Projections` service over loopback with the generated client: each call, its
//! statuses, and the advertisement in `ServerFeatures`.

use std::sync::Arc;
use std::time::Duration;

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_projections::{ProjectionManager, QuickJsEngine, SandboxLimits};
use tonic::Code;
use tonic::transport::Channel;

use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::projections::projections_client::ProjectionsClient;
use crate::proto::event_store::client::projections::{
    CreateReq, DeleteReq, DisableReq, EnableReq, ResetReq, ResultReq, StateReq, StatisticsReq,
    UpdateReq, create_req, statistics_req, statistics_resp, update_req,
};
use crate::proto::event_store::client::server_features::server_features_client::ServerFeaturesClient;
use crate::test_server::serve_store;

const COUNTER: &str = "fromCategory('order').when({
    $init: () => ({ n: 0 }),
    $any: (s, e) => { s.n++; }
}).outputState()";

fn continuous(name: &str, query: &str) -> CreateReq {
    CreateReq {
        options: Some(create_req::Options {
            mode: Some(create_req::options::Mode::Continuous(
                create_req::options::Continuous {
                    name: name.to_owned(),
                    emit_enabled: true,
                    track_emitted_streams: true,
                },
            )),
            query: query.to_owned(),
            engine_version: 1,
            metadata: Default::default(),
        }),
    }
}

async fn statistics(
    client: &mut ProjectionsClient<Channel>,
    mode: statistics_req::options::Mode,
) -> Vec<statistics_resp::Details> {
    let mut stream = client
        .statistics(StatisticsReq {
            options: Some(statistics_req::Options { mode: Some(mode) }),
        })
        .await
        .expect("statistics")
        .into_inner();
    let mut all = Vec::new();
    while let Some(answer) = stream.message().await.expect("a statistics message") {
        all.extend(answer.details);
    }
    all
}

async fn details(client: &mut ProjectionsClient<Channel>, name: &str) -> statistics_resp::Details {
    statistics(client, statistics_req::options::Mode::Name(name.to_owned()))
        .await
        .remove(0)
}

/// Waits (bounded) until the projection has caught up.
async fn caught_up(
    client: &mut ProjectionsClient<Channel>,
    name: &str,
) -> statistics_resp::Details {
    for _ in 0..3_000 {
        let details = details(client, name).await;
        if details.progress == 100.0 {
            return details;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} did not catch up");
}

fn state_json(value: Option<prost_types::Value>) -> String {
    use prost_types::value::Kind;
    match value.and_then(|value| value.kind) {
        Some(Kind::StructValue(fields)) => {
            let mut pairs: Vec<String> = fields
                .fields
                .into_iter()
                .map(|(key, value)| match value.kind {
                    Some(Kind::NumberValue(number)) => format!("{key}={number}"),
                    other => format!("{key}={other:?}"),
                })
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_service_answers_as_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests()).unwrap();
    store
        .append(
            &StreamName::new("order-1").unwrap(),
            ExpectedRevision::Any,
            vec![ProposedEvent::json("Placed", "{}")],
        )
        .await
        .unwrap();
    let shared: Arc<dyn EventStore> = store.clone();
    let manager =
        ProjectionManager::start(shared, Arc::new(QuickJsEngine), SandboxLimits::default())
            .await
            .unwrap();
    let running = serve_store(store, dir, |options| crate::GrpcOptions {
        projections: Some(manager),
        ..options
    })
    .await;
    let mut client = ProjectionsClient::new(running.channel.clone());

    let features = ServerFeaturesClient::new(running.channel.clone())
        .get_supported_methods(Empty {})
        .await
        .unwrap()
        .into_inner();
    assert!(features.methods.iter().any(|method| method.service_name
        == "event_store.client.projections.projections"
        && method.method_name == "statistics"));

    client.create(continuous("counter", COUNTER)).await.unwrap();
    let duplicate = client
        .create(continuous("counter", COUNTER))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    // Tracking without emit: the reference's handler throws before the name is looked up.
    let mut tracking_only = continuous("counter", COUNTER);
    if let Some(create_req::Options {
        mode: Some(create_req::options::Mode::Continuous(continuous)),
        ..
    }) = tracking_only.options.as_mut()
    {
        continuous.emit_enabled = false;
    }
    let refused = client.create(tracking_only).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unknown);
    assert!(
        refused
            .message()
            .starts_with("Exception was thrown by handler."),
        "{}",
        refused.message()
    );
    let counter = caught_up(&mut client, "counter").await;
    assert_eq!(counter.status, "Running");
    assert_eq!(counter.mode, "Continuous");

    let state = client
        .state(StateReq {
            options: Some(
                crate::proto::event_store::client::projections::state_req::Options {
                    name: "counter".into(),
                    partition: String::new(),
                },
            ),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state_json(state.state), "n=1");
    let result = client
        .result(ResultReq {
            options: Some(
                crate::proto::event_store::client::projections::result_req::Options {
                    name: "counter".into(),
                    partition: String::new(),
                },
            ),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state_json(result.result), "n=1");

    let delete = |name: &str| DeleteReq {
        options: Some(
            crate::proto::event_store::client::projections::delete_req::Options {
                name: name.to_owned(),
                delete_emitted_streams: true,
                delete_state_stream: true,
                delete_checkpoint_stream: true,
            },
        ),
    };
    let refused = client.delete(delete("counter")).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::FailedPrecondition,
        "deleting a running projection fails"
    );

    client
        .update(UpdateReq {
            options: Some(update_req::Options {
                name: "counter".into(),
                query: COUNTER.into(),
                emit_option: Some(update_req::options::EmitOption::EmitEnabled(false)),
                metadata: Default::default(),
            }),
        })
        .await
        .unwrap();
    client
        .reset(ResetReq {
            options: Some(
                crate::proto::event_store::client::projections::reset_req::Options {
                    name: "counter".into(),
                    write_checkpoint: true,
                },
            ),
        })
        .await
        .unwrap();
    assert_eq!(caught_up(&mut client, "counter").await.epoch, 1);

    let disable = |name: &str, write_checkpoint| DisableReq {
        options: Some(
            crate::proto::event_store::client::projections::disable_req::Options {
                name: name.to_owned(),
                write_checkpoint,
            },
        ),
    };
    client.disable(disable("counter", true)).await.unwrap();
    assert_eq!(details(&mut client, "counter").await.status, "Stopped");
    client
        .enable(EnableReq {
            options: Some(
                crate::proto::event_store::client::projections::enable_req::Options {
                    name: "counter".into(),
                },
            ),
        })
        .await
        .unwrap();
    client.disable(disable("counter", false)).await.unwrap();
    client.delete(delete("counter")).await.unwrap();
    let again = client.delete(delete("counter")).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    assert_eq!(again.message(), "Projection 'counter' not found");

    let mut transient = continuous("t", COUNTER);
    if let Some(options) = transient.options.as_mut() {
        options.mode = Some(create_req::options::Mode::Transient(
            create_req::options::Transient { name: "t".into() },
        ));
    }
    let refused = client.create(transient).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    let mut one_time = continuous("", "fromAll().when({ $any: (s) => s })");
    if let Some(options) = one_time.options.as_mut() {
        options.mode = Some(create_req::options::Mode::OneTime(Empty {}));
    }
    client.create(one_time).await.unwrap();
    let one_time = statistics(
        &mut client,
        statistics_req::options::Mode::OneTime(Empty {}),
    )
    .await;
    assert_eq!(one_time.len(), 1);
    assert_eq!(one_time[0].mode, "OneTime");
    let continuous_ones = statistics(
        &mut client,
        statistics_req::options::Mode::Continuous(Empty {}),
    )
    .await;
    assert!(continuous_ones.is_empty());
    client.restart_subsystem(Empty {}).await.unwrap();
}
