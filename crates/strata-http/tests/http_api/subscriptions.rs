//! Catch-up subscriptions over HTTP: NDJSON lines and server-sent events.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Records, sse_fields, start, start_with};

#[tokio::test]
async fn ndjson_stream_subscription_sends_events_caught_up_heartbeats_and_live_events() {
    let server = start_with(strata_http::HttpOptions {
        heartbeat_interval: Duration::from_millis(100),
        ..strata_http::HttpOptions::default()
    })
    .await;
    server.append("live-1", 2).await;
    let answer = server
        .client
        .get(server.url("/v1/subscriptions/streams/live-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/x-ndjson");
    let mut lines = Records::ndjson(answer);
    let mut kinds = Vec::new();
    let mut revisions = Vec::new();
    while !kinds.iter().any(|kind| kind == "heartbeat") {
        let line = lines.next_json().await.unwrap();
        if line["kind"] == "event" {
            revisions.push(line["event"]["revision"].as_u64().unwrap());
        }
        kinds.push(line["kind"].as_str().unwrap().to_owned());
    }
    assert_eq!(revisions, [0, 1]);
    assert_eq!(kinds[..3], ["event", "event", "caught-up"]);
    server.append("live-1", 1).await;
    loop {
        let line = lines.next_json().await.unwrap();
        if line["kind"] == "event" {
            assert_eq!(line["event"]["revision"], 2);
            break;
        }
        assert_eq!(line["kind"], "heartbeat");
    }
}

#[tokio::test]
async fn a_subscription_that_fails_after_the_200_says_so_in_band() {
    let server = start().await;
    server.append("doomed-1", 1).await;
    let answer = server
        .client
        .get(server.url("/v1/subscriptions/streams/doomed-1"))
        .send()
        .await
        .unwrap();
    let mut lines = Records::ndjson(answer);
    assert_eq!(lines.next_json().await.unwrap()["kind"], "event");
    assert_eq!(lines.next_json().await.unwrap()["kind"], "caught-up");
    let tombstone = server
        .client
        .delete(server.url("/v1/streams/doomed-1?mode=tombstone"))
        .send()
        .await
        .unwrap();
    assert_eq!(tombstone.status(), 200);
    let mut last = Value::Null;
    while let Some(line) = lines.next_json().await {
        last = line;
    }
    assert_eq!(last["kind"], "error", "{last}");
    assert_eq!(
        last["problem"]["type"],
        "https://strata.dev/problems/stream-tombstoned"
    );
}

#[tokio::test]
async fn filtered_all_and_category_subscriptions_send_only_matching_events_and_checkpoints() {
    let server = start().await;
    server.append("shop-1", 1).await;
    server.append("other-1", 1).await;
    server.append("shop-2", 1).await;
    let answer = server
        .client
        .get(server.url("/v1/subscriptions/categories/shop"))
        .send()
        .await
        .unwrap();
    let mut lines = Records::ndjson(answer);
    let mut streams = Vec::new();
    loop {
        let line = lines.next_json().await.unwrap();
        match line["kind"].as_str().unwrap() {
            "event" => streams.push(line["event"]["stream"].as_str().unwrap().to_owned()),
            "caught-up" => break,
            "checkpoint" => assert!(line["position"].as_u64().is_some()),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(streams, ["shop-1", "shop-2"]);
    let answer = server
        .client
        .get(server.url("/v1/subscriptions/all?eventTypePrefix=Nothing"))
        .send()
        .await
        .unwrap();
    let mut lines = Records::ndjson(answer);
    let first = lines.next_json().await.unwrap();
    assert!(
        first["kind"] == "checkpoint" || first["kind"] == "caught-up",
        "{first}"
    );
    let bad = server
        .client
        .get(server.url("/v1/subscriptions/all?streamRegex=("))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// Reads SSE events of a category subscription until `wanted` events arrived or the reader
/// chooses to leave after `leave_after`; returns (position, event id) pairs and the last id.
async fn read_sse(
    server: &crate::support::Running,
    last_event_id: Option<&str>,
    leave_after: usize,
) -> (Vec<(u64, String)>, Option<String>) {
    let mut request = server
        .client
        .get(server.url("/v1/subscriptions/categories/sse"))
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let answer = request.send().await.unwrap();
    assert_eq!(answer.headers()["content-type"], "text/event-stream");
    let mut records = Records::sse(answer);
    let mut seen = Vec::new();
    let mut last = last_event_id.map(str::to_owned);
    while seen.len() < leave_after {
        let record = records.next().await.unwrap();
        let (id, event, data) = sse_fields(&record);
        if id.is_some() {
            last = id.clone();
        }
        if event == "event" {
            let event: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(
                id.as_deref().map(|id| id.parse::<u64>().unwrap()),
                event["position"].as_u64()
            );
            seen.push((
                event["position"].as_u64().unwrap(),
                event["id"].as_str().unwrap().to_owned(),
            ));
        }
    }
    (seen, last)
}

#[tokio::test]
async fn sse_resumes_with_last_event_id_without_gap_or_duplicate_under_concurrent_appends() {
    let server = std::sync::Arc::new(start().await);
    const WRITERS: usize = 4;
    const BATCHES: usize = 25;
    const PER_BATCH: usize = 3;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let server = std::sync::Arc::clone(&server);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..BATCHES {
                    ids.extend(server.append(&format!("sse-{writer}"), PER_BATCH).await);
                    // Interleaves with noise the category filter leaves out.
                    server.append(&format!("noise-{writer}"), 1).await;
                }
                ids
            })
        })
        .collect();
    let total = WRITERS * BATCHES * PER_BATCH;
    let mut received = Vec::new();
    let mut last = None;
    // Several short connections while the writers run, each resuming after the last id.
    while received.len() < total {
        let leave_after = (total - received.len()).min(37);
        let (seen, resume) = read_sse(&server, last.as_deref(), leave_after).await;
        received.extend(seen);
        last = resume;
    }
    let mut written = HashSet::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    let positions: Vec<u64> = received.iter().map(|(position, _)| *position).collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "no duplicate, in order"
    );
    let ids: HashSet<String> = received.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), total);
    assert_eq!(ids, written, "no gap: every appended event arrived once");
}
