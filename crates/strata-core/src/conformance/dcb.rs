//! Dynamic consistency boundaries: tags, query reads and conditional appends, including
//! concurrent conditional appends (exactly one of those whose queries overlap wins; those
//! whose queries do not overlap all succeed).

use std::sync::Arc;

use crate::dcb::{AppendCondition, Query, QueryItem};
use crate::error::Error;
use crate::multi_append::AppendPart;
use crate::store::EventStore;
use crate::types::{ExpectedRevision, Position, ProposedEvent};

use super::Backend;
use super::support::stream;

fn tagged(event_type: &str, tags: &[&str]) -> ProposedEvent {
    ProposedEvent::json(event_type, r#"{"n":1}"#)
        .with_tags(tags.iter().copied())
        .expect("valid tags")
}

fn tag_query(tags: &[&str]) -> Query {
    Query::new([QueryItem::new(Vec::<String>::new(), tags.iter().copied())])
}

fn part(name: &str, events: Vec<ProposedEvent>) -> Vec<AppendPart> {
    vec![AppendPart::write(
        stream(name),
        ExpectedRevision::Any,
        events,
    )]
}

/// For a backend without conditional appends: the refusal is `Unsupported`. True when that
/// was checked (nothing more to check).
async fn refused_without_support<B: Backend>(backend: &B) -> bool {
    if backend.dcb() {
        return false;
    }
    let store = backend.fresh().await;
    let outcome = store
        .append_conditional(
            part("dcb_unsupported-1", vec![tagged("Happened", &["a"])]),
            AppendCondition::new(tag_query(&["a"]), None),
        )
        .await;
    assert!(
        matches!(outcome, Err(Error::Unsupported { .. })),
        "a store without conditional appends must refuse them: {outcome:?}"
    );
    true
}

/// Tags round-trip in metadata, and a query read returns the matching events in log order:
/// by tag, by type, by type and tags, several items, after a position, a page at a time.
pub async fn dcb_query_reads_match_types_and_tags<B: Backend>(backend: &B) {
    if refused_without_support(backend).await {
        return;
    }
    let store = backend.fresh().await;
    let writes = [
        ("course-c1", tagged("CourseDefined", &["course:c1"])),
        ("student-s1", tagged("StudentRegistered", &["student:s1"])),
        (
            "enrolment-1",
            tagged("StudentSubscribed", &["course:c1", "student:s1"]),
        ),
        (
            "enrolment-2",
            tagged("StudentSubscribed", &["course:c2", "student:s1"]),
        ),
        ("course-c2", tagged("CourseDefined", &["course:c2"])),
        ("other-1", ProposedEvent::json("StudentSubscribed", "{}")),
    ];
    let mut positions = Vec::new();
    for (name, event) in writes {
        let appended = store
            .append_multi(part(name, vec![event]))
            .await
            .expect("append");
        positions.push(appended.position);
    }
    let read = |query: Query, after: Option<Position>, max: usize| {
        let store = store.clone();
        async move {
            let slice = store.read_query(&query, after, max).await.expect("read");
            (
                slice
                    .events
                    .iter()
                    .map(|event| event.position)
                    .collect::<Vec<_>>(),
                slice,
            )
        }
    };
    let (found, slice) = read(tag_query(&["course:c1"]), None, 100).await;
    assert_eq!(found, vec![positions[0], positions[2]], "by tag");
    assert_eq!(slice.last_position, Some(positions[2]));
    assert!(!slice.more);
    assert_eq!(
        slice.events[1].tags(),
        vec!["course:c1".to_owned(), "student:s1".to_owned()],
        "tags come back as appended"
    );
    let (found, _) = read(tag_query(&["course:c1", "student:s1"]), None, 100).await;
    assert_eq!(
        found,
        vec![positions[2]],
        "every tag of an item must be carried"
    );
    let by_type = Query::new([QueryItem::new(["StudentSubscribed"], Vec::<String>::new())]);
    let (found, _) = read(by_type.clone(), None, 100).await;
    assert_eq!(
        found,
        vec![positions[2], positions[3], positions[5]],
        "by type"
    );
    let (found, _) = read(by_type, Some(positions[2]), 100).await;
    assert_eq!(found, vec![positions[3], positions[5]], "after a position");
    let type_and_tag = Query::new([QueryItem::new(["StudentSubscribed"], ["student:s1"])]);
    let (found, _) = read(type_and_tag, None, 100).await;
    assert_eq!(found, vec![positions[2], positions[3]], "type and tag");
    let two_items = Query::new([
        QueryItem::new(["CourseDefined"], ["course:c2"]),
        QueryItem::new(Vec::<String>::new(), ["student:s1"]),
    ]);
    let (found, slice) = read(two_items.clone(), None, 100).await;
    assert_eq!(
        found,
        vec![positions[1], positions[2], positions[3], positions[4]],
        "any item"
    );
    assert_eq!(slice.last_position, Some(positions[4]));
    let (found, slice) = read(two_items, None, 2).await;
    assert_eq!(found, vec![positions[1], positions[2]], "a page");
    assert!(slice.more);
    let (found, slice) = read(tag_query(&["nobody"]), Some(positions[1]), 100).await;
    assert!(found.is_empty());
    assert_eq!(
        slice.last_position,
        Some(positions[1]),
        "nothing read keeps `after`"
    );
    let empty = store.read_query(&Query::default(), None, 10).await;
    assert!(
        matches!(empty, Err(Error::InvalidArgument { .. })),
        "{empty:?}"
    );
    let blank_item = store
        .read_query(&Query::new([QueryItem::default()]), None, 10)
        .await;
    assert!(
        matches!(blank_item, Err(Error::InvalidArgument { .. })),
        "{blank_item:?}"
    );
}

/// A conditional append fails when a matching event is after its position, succeeds when
/// none is (matching events before it, or other events after it, do not count), writes
/// nothing when it fails, and a re-send returns the original result.
pub async fn dcb_conditional_append_checks_its_query<B: Backend>(backend: &B) {
    if refused_without_support(backend).await {
        return;
    }
    let store = backend.fresh().await;
    let query = tag_query(&["course:c1"]);
    let first = store
        .append_conditional(
            part("dcb_check-1", vec![tagged("Defined", &["course:c1"])]),
            AppendCondition::new(query.clone(), None),
        )
        .await
        .expect("nothing matches in an empty store");
    let other = store
        .append_multi(part("dcb_check-2", vec![tagged("Defined", &["course:c2"])]))
        .await
        .expect("append");
    let stale = store
        .append_conditional(
            part("dcb_check-3", vec![tagged("Subscribed", &["course:c1"])]),
            AppendCondition::new(query.clone(), None),
        )
        .await;
    match stale {
        Err(Error::AppendConditionFailed { after, found }) => {
            assert_eq!(after, None);
            assert_eq!(found, first.position);
        }
        other => panic!("a matching event must fail the append: {other:?}"),
    }
    assert!(
        store
            .read_query(&tag_query(&["course:c1"]), None, 10)
            .await
            .expect("read")
            .events
            .len()
            == 1,
        "a failed conditional append writes nothing"
    );
    let resend_parts = part("dcb_check-3", vec![tagged("Subscribed", &["course:c1"])]);
    let appended = store
        .append_conditional(
            resend_parts.clone(),
            AppendCondition::new(query.clone(), Some(first.position)),
        )
        .await
        .expect("an unrelated event after the position does not count");
    assert!(appended.position > other.position);
    let resent = store
        .append_conditional(
            resend_parts,
            AppendCondition::new(query.clone(), Some(first.position)),
        )
        .await
        .expect("a re-send returns the original result");
    assert_eq!(resent, appended);
    let invalid = store
        .append_conditional(
            part("dcb_check-4", vec![tagged("Defined", &["x"])]),
            AppendCondition::new(Query::default(), None),
        )
        .await;
    assert!(
        matches!(invalid, Err(Error::InvalidArgument { .. })),
        "{invalid:?}"
    );
    let too_long_tag = ProposedEvent::json("Defined", "{}").with_tags(["x".repeat(300)]);
    assert!(matches!(too_long_tag, Err(Error::InvalidArgument { .. })));
}

/// Rounds of concurrent conditional appends: in each round, tasks decide on the same
/// position; those whose queries overlap (a shared tag) race, and exactly one of each
/// overlapping set wins while the others fail; tasks with their own tags all succeed.
pub async fn dcb_concurrent_conditional_appends_exactly_one_wins<B: Backend>(backend: &B) {
    if refused_without_support(backend).await {
        return;
    }
    let store = backend.fresh().await;
    concurrent_rounds(&store, &store, "dcb_race").await;
}

/// The race of [`dcb_concurrent_conditional_appends_exactly_one_wins`] between two handles
/// (`first` and `second` may be two stores on one database: two nodes); tasks alternate
/// between them. Public so backends with several nodes can run it.
pub async fn concurrent_rounds<S: EventStore + ?Sized>(
    first: &Arc<S>,
    second: &Arc<S>,
    prefix: &str,
) {
    const ROUNDS: usize = 8;
    const RACERS: usize = 6;
    const LONERS: usize = 4;
    for round in 0..ROUNDS {
        let shared_tag = format!("{prefix}:shared:{round}");
        let after = first
            .read_query(&tag_query(&[shared_tag.as_str()]), None, 10)
            .await
            .expect("read")
            .last_position;
        assert_eq!(after, None);
        let mut tasks = Vec::new();
        for racer in 0..RACERS + LONERS {
            let store = if racer % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let tag = if racer < RACERS {
                shared_tag.clone()
            } else {
                format!("{prefix}:own:{round}:{racer}")
            };
            let name = format!("{prefix}-{round}x{racer}");
            tasks.push(tokio::spawn(async move {
                let outcome = store
                    .append_conditional(
                        part(&name, vec![tagged("Claimed", &[tag.as_str()])]),
                        AppendCondition::new(tag_query(&[tag.as_str()]), after),
                    )
                    .await;
                (racer, outcome)
            }));
        }
        let mut racers_won = 0;
        for task in tasks {
            let (racer, outcome) = task.await.expect("task");
            match outcome {
                Ok(_) if racer < RACERS => racers_won += 1,
                Ok(_) => {}
                Err(Error::AppendConditionFailed { .. }) if racer < RACERS => {}
                other => panic!("round {round}, task {racer}: {other:?}"),
            }
        }
        assert_eq!(
            racers_won, 1,
            "round {round}: exactly one overlapping append wins"
        );
        let stored = first
            .read_query(&tag_query(&[shared_tag.as_str()]), None, 100)
            .await
            .expect("read");
        assert_eq!(
            stored.events.len(),
            1,
            "round {round}: one event under the tag"
        );
    }
}
