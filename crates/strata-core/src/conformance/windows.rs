//! Bounded filtered reads of `$all` (`read_all_window`) and the checkpoint cadence of
//! filtered subscriptions built on them.

use std::sync::Arc;

use crate::filter::{EventFilter, FilterTarget};
use crate::store::{EventStore, ReadAllOptions, ReadFrom};
use crate::subscription::{SubscribeFrom, SubscriptionItem, SubscriptionOptions};
use crate::types::{ExpectedRevision, Position};

use super::Backend;
use super::support::{StoreChecks, event, next_item, stream};

/// A window read looks at no more events than asked, says how many it looked at, and
/// paging with it reaches every event once: the examined counts add up to `$all`, and the
/// matching events come back exactly once.
pub async fn read_all_window_bounds_and_counts_the_events_looked_at<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let noise = stream("window_noise-1");
    let wanted = stream("window_wanted-1");
    for n in 0..7 {
        store
            .append_ok(&noise, ExpectedRevision::Any, vec![event("Noise", n)])
            .await;
    }
    store
        .append_ok(&wanted, ExpectedRevision::Any, vec![event("Wanted", 0)])
        .await;
    for n in 0..5 {
        store
            .append_ok(&noise, ExpectedRevision::Any, vec![event("Noise", n)])
            .await;
    }
    let all = store.all_events().await;
    // A stream-name regex: a backend may serve prefix and event-type filters from an index
    // and look only at its keys' events (docs/INDEXES.md, "Ordinary filters").
    let filter = EventFilter::regex(FilterTarget::StreamName, "^window_wanted")
        .unwrap_or_else(|error| panic!("the case's filter is valid: {error}"));
    let mut options = ReadAllOptions::forwards().filter(filter);
    let (mut examined, mut matched, mut pages) = (0, Vec::new(), 0);
    loop {
        let window = store
            .read_all_window(options.clone(), 3)
            .await
            .unwrap_or_else(|error| panic!("window read failed: {error}"));
        assert!(
            window.examined_count <= 3,
            "a window of 3 looked at {} events",
            window.examined_count
        );
        assert!(
            window.examined_count > 0 || window.slice.is_end,
            "a page that is not the end looks at something"
        );
        examined += window.examined_count;
        matched.extend(window.slice.events);
        pages += 1;
        assert!(pages <= all.len() + 1, "window paging does not progress");
        if window.slice.is_end {
            break;
        }
        options.from = ReadFrom::At(window.slice.next_position);
    }
    assert_eq!(examined, all.len(), "the examined counts add up to $all");
    let wanted_events: Vec<_> = all
        .iter()
        .filter(|event| event.stream == wanted)
        .cloned()
        .collect();
    assert_eq!(matched, wanted_events, "the matching event, exactly once");
}

/// A filtered subscription checkpoints after every `checkpoint_interval_events` events it
/// looks at (matching or not), once more when first caught up, and again live.
pub async fn filtered_subscription_checkpoints_every_interval_of_events_examined<B: Backend>(
    backend: &B,
) {
    let store = backend.fresh().await;
    let noise = stream("cadence_noise-1");
    for n in 0..10 {
        store
            .append_ok(&noise, ExpectedRevision::Any, vec![event("Noise", n)])
            .await;
    }
    let history = store.all_events().await;
    // A stream-name regex, which every backend answers by looking at each event.
    let nothing = EventFilter::regex(FilterTarget::StreamName, "^cadence_none")
        .unwrap_or_else(|error| panic!("the case's filter is valid: {error}"));
    let options = SubscriptionOptions {
        checkpoint_interval_events: 4,
        ..SubscriptionOptions::default()
    };
    let mut subscription = crate::subscription::subscribe_to_all_with(
        Arc::clone(&store),
        SubscribeFrom::Start,
        Some(nothing),
        options,
    );
    let mut items = Vec::new();
    loop {
        let item = next_item(&mut subscription, "filtered $all, catching up").await;
        let done = item == SubscriptionItem::CaughtUp;
        items.push(item);
        if done {
            break;
        }
    }
    let at = |index: usize| SubscriptionItem::Checkpoint(history[index].position);
    assert_eq!(
        items,
        vec![
            at(3),
            at(7),
            at(history.len() - 1),
            SubscriptionItem::CaughtUp
        ],
        "a checkpoint after each 4 events looked at, and one on catching up"
    );
    let mut live = Vec::new();
    for n in 0..4 {
        live.push(
            store
                .append_ok(&noise, ExpectedRevision::Any, vec![event("Noise", n)])
                .await,
        );
    }
    let item = next_item(&mut subscription, "filtered $all, live").await;
    let last_live: Position = live[3].position;
    assert_eq!(
        item,
        SubscriptionItem::Checkpoint(last_live),
        "live, a checkpoint after 4 more events looked at"
    );
}
