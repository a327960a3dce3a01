//! The RPC handlers on requests no official client in the test suites sends: the legacy
//! `revision` settings field (the Node client's), and listing a source without groups.

use std::sync::Arc;

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::{Config, Store};
use strata_persistent::{PersistentSubscriptions, StartFrom, SubscriptionSource};
use tonic::{Code, Request};

use super::create::create;
use super::get_info::subscription_info;
use super::list::list;
use super::update::update;
use crate::proto::event_store::client::persistent_subscriptions::{
    CreateReq, ListReq, UpdateReq, create_req, list_req, update_req,
};
use crate::proto::event_store::client::{Empty, StreamIdentifier};

fn identifier(name: &str) -> StreamIdentifier {
    StreamIdentifier {
        stream_name: name.as_bytes().to_vec().into(),
    }
}

/// Create settings as the Node client sends them with the legacy `revision` start.
fn legacy_create(stream: &str, revision: u64) -> CreateReq {
    CreateReq {
        options: Some(create_req::Options {
            stream_identifier: Some(identifier(stream)),
            group_name: "g".to_owned(),
            settings: Some(create_req::Settings {
                revision,
                live_buffer_size: 500,
                read_batch_size: 20,
                history_buffer_size: 500,
                max_checkpoint_count: 1_000,
                consumer_strategy: "RoundRobin".to_owned(),
                ..create_req::Settings::default()
            }),
            stream_option: None,
        }),
    }
}

async fn store_with_events(dir: &tempfile::TempDir, stream: &str, count: usize) -> Arc<Store> {
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let events = (0..count).map(|_| ProposedEvent::json("E", "{}")).collect();
    store
        .append(
            &StreamName::new(stream).unwrap(),
            ExpectedRevision::Any,
            events,
        )
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn a_legacy_start_revision_of_two_to_the_64_minus_one_creates_and_updates_a_group_at_the_end()
{
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(&dir, "s", 3).await;
    let manager = PersistentSubscriptions::new(Arc::clone(&store));
    create(&manager, Request::new(legacy_create("s", u64::MAX)))
        .await
        .unwrap();
    let source = SubscriptionSource::Stream(StreamName::new("s").unwrap());
    let info = manager.info(&source, "g").await.unwrap();
    assert_eq!(info.settings.start_from, StartFrom::End);
    assert_eq!(
        subscription_info(info).start_from,
        "-1",
        "reported as the end"
    );

    let options = legacy_create("s", 1).options.unwrap();
    let at_one = update_req::Options {
        stream_identifier: options.stream_identifier,
        group_name: "g".to_owned(),
        settings: Some(update_req::Settings {
            revision: 1,
            live_buffer_size: 500,
            read_batch_size: 20,
            history_buffer_size: 500,
            max_checkpoint_count: 1_000,
            named_consumer_strategy: update_req::ConsumerStrategy::RoundRobin.into(),
            ..update_req::Settings::default()
        }),
        stream_option: None,
    };
    let mut at_end = at_one.clone();
    if let Some(settings) = &mut at_end.settings {
        settings.revision = u64::MAX;
    }
    for (options, expected) in [(at_one, StartFrom::At(1)), (at_end, StartFrom::End)] {
        let request = UpdateReq {
            options: Some(options),
        };
        update(&manager, Request::new(request)).await.unwrap();
        let info = manager.info(&source, "g").await.unwrap();
        assert_eq!(info.settings.start_from, expected);
    }
}

#[tokio::test]
async fn listing_a_stream_or_all_without_groups_is_not_found_with_the_reference_trailers() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(&dir, "s", 1).await;
    let manager = PersistentSubscriptions::new(Arc::clone(&store));
    let for_stream = |option| ListReq {
        options: Some(list_req::Options {
            list_option: Some(list_req::options::ListOption::ListForStream(
                list_req::StreamOption {
                    stream_option: Some(option),
                },
            )),
        }),
    };
    let stream = list_req::stream_option::StreamOption::Stream(identifier("s"));
    let all = list_req::stream_option::StreamOption::All(Empty {});
    for (option, name) in [(stream.clone(), "s"), (all, "$all")] {
        let status = list(&manager, Request::new(for_stream(option)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{name}");
        assert_eq!(
            status.message(),
            format!("Subscription group  on stream {name} does not exist.")
        );
        let trailers = status.metadata();
        assert_eq!(
            trailers.get("exception").unwrap(),
            "persistent-subscription-does-not-exist"
        );
        assert_eq!(trailers.get("stream-name").unwrap(), name);
    }
    let every = ListReq {
        options: Some(list_req::Options {
            list_option: Some(list_req::options::ListOption::ListAllSubscriptions(
                Empty {},
            )),
        }),
    };
    let listed = list(&manager, Request::new(every)).await.unwrap();
    assert!(
        listed.into_inner().subscriptions.is_empty(),
        "listing every group is no error"
    );
    create(&manager, Request::new(legacy_create("s", 0)))
        .await
        .unwrap();
    let listed = list(&manager, Request::new(for_stream(stream)))
        .await
        .unwrap();
    assert_eq!(listed.into_inner().subscriptions.len(), 1);
}
