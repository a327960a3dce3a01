//! KurrentDB's HTTP append, read and delete, with its headers and status codes.

use serde_json::{Value, json};

use crate::support::start;

#[tokio::test]
async fn batch_appends_answer_201_with_location_and_check_expected_versions() {
    let server = start().await;
    let url = server.url("/streams/legacy-1");
    for (revision, media) in [
        "application/vnd.kurrent.events+json",
        "application/vnd.eventstore.events+json",
    ]
    .into_iter()
    .enumerate()
    {
        let answer = server
            .client
            .post(&url)
            .header("content-type", media)
            .body(json!([{"eventId": uuid::Uuid::new_v4(), "eventType": "Old", "data": {"a": 1}, "metadata": {"m": true}}]).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201, "{media}");
        let location = answer.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            location.ends_with(&format!("/streams/legacy-1/{revision}")),
            "{location}"
        );
    }
    let wrong = server
        .client
        .post(&url)
        .header("content-type", "application/vnd.kurrent.events+json")
        .header("Kurrent-ExpectedVersion", "7")
        .body(
            json!([{"eventId": uuid::Uuid::new_v4(), "eventType": "Late", "data": {}}]).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    assert_eq!(wrong.headers()["kurrent-currentversion"], "1");
    let no_stream = server
        .client
        .post(&url)
        .header("content-type", "application/vnd.eventstore.events+json")
        .header("ES-ExpectedVersion", "-1")
        .body(
            json!([{"eventId": uuid::Uuid::new_v4(), "eventType": "Late", "data": {}}]).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(no_stream.status(), 400);
    assert_eq!(no_stream.headers()["es-currentversion"], "1");
    let right = server
        .client
        .post(&url)
        .header("content-type", "application/vnd.kurrent.events+json")
        .header("Kurrent-ExpectedVersion", "1")
        .body(
            json!([{"eventId": uuid::Uuid::new_v4(), "eventType": "OnTime", "data": {}}])
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 201);
    assert!(
        right.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("/streams/legacy-1/2")
    );
}

#[tokio::test]
async fn single_events_use_headers_and_are_forwarded_to_an_idempotent_url_without_an_id() {
    let server = start().await;
    let url = server.url("/streams/single-1");
    let with_id = server
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("Kurrent-EventType", "Typed")
        .header("Kurrent-EventId", "0e3bd2a4-3d6e-4c55-9c4b-7c8bd1f1e001")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(with_id.status(), 201);
    let redirected = server
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("ES-EventType", "Typed")
        .body(r#"{"n":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 307);
    let location = redirected.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        location.contains("/streams/single-1/incoming/"),
        "{location}"
    );
    let path = location.split_once("/streams/").unwrap().1;
    for _ in 0..2 {
        let answer = server
            .client
            .post(server.url(&format!("/streams/{path}")))
            .header("content-type", "application/json")
            .header("ES-EventType", "Typed")
            .body(r#"{"n":2}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
    }
    let no_type = server
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("Kurrent-EventId", "0e3bd2a4-3d6e-4c55-9c4b-7c8bd1f1e002")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status(), 400);

    let feed: Value = server
        .client
        .get(format!("{url}?embed=body"))
        .header("accept", "application/vnd.kurrent.atom+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = feed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "the re-sent event is stored once: {feed}");
    assert_eq!(entries[0]["eventNumber"], 1, "newest first");
    assert_eq!(
        entries[1]["eventId"],
        "0e3bd2a4-3d6e-4c55-9c4b-7c8bd1f1e001"
    );
    assert_eq!(feed["headOfStream"], true);
    let event = server.client.get(format!("{url}/0")).send().await.unwrap();
    assert_eq!(event.headers()["content-type"], "application/json");
    assert_eq!(event.text().await.unwrap(), r#"{"n":1}"#);
    let page: Value = server
        .client
        .get(format!("{url}/0/forward/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn delete_is_soft_unless_hard_delete_and_tombstoned_streams_are_gone() {
    let server = start().await;
    let url = server.url("/streams/del-1");
    let append = |expected: &'static str| {
        server
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("Kurrent-EventType", "E")
            .header("Kurrent-EventId", uuid::Uuid::new_v4().to_string())
            .header("Kurrent-ExpectedVersion", expected)
            .body("{}")
            .send()
    };
    assert_eq!(append("-1").await.unwrap().status(), 201);
    assert_eq!(
        server.client.delete(&url).send().await.unwrap().status(),
        204
    );
    assert_eq!(server.client.get(&url).send().await.unwrap().status(), 404);
    assert_eq!(
        append("-2").await.unwrap().status(),
        201,
        "a soft-deleted stream comes back"
    );
    let hard = server
        .client
        .delete(&url)
        .header("Kurrent-HardDelete", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(hard.status(), 204);
    assert_eq!(append("-2").await.unwrap().status(), 410);
    assert_eq!(server.client.get(&url).send().await.unwrap().status(), 410);
}

#[tokio::test]
async fn a_long_poll_read_past_the_head_answers_once_an_event_arrives() {
    let server = std::sync::Arc::new(start().await);
    server.append("polled-1", 1).await;
    // Page 1 onwards is empty: without a long poll the answer comes at once, empty.
    let at_once = server
        .client
        .get(server.url("/streams/polled-1/1/forward/20"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(at_once.status(), 200);
    let at_once: Value = at_once.json().await.unwrap();
    assert_eq!(at_once["entries"].as_array().unwrap().len(), 0);

    let polling = {
        let server = std::sync::Arc::clone(&server);
        tokio::spawn(async move {
            server
                .client
                .get(server.url("/streams/polled-1/1/forward/20?embed=body"))
                .header("accept", "application/json")
                .header("Kurrent-LongPoll", "30")
                .send()
                .await
                .unwrap()
        })
    };
    // Give the poll time to start waiting; an event appended before it reads is found too.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    server.append("polled-1", 1).await;
    let answer = polling.await.unwrap();
    assert_eq!(answer.status(), 200);
    let page: Value = answer.json().await.unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(entries[0]["eventNumber"], 1, "{page}");

    let bad = server
        .client
        .get(server.url("/streams/polled-1"))
        .header("ES-LongPoll", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
