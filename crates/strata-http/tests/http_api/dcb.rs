//! Conditional appends and query reads through `/v1/dcb` (docs/DCB.md), against a real
//! server: tags in, the read position, a failed condition as a 409 problem, racing
//! conditional appends of which exactly one wins, and bad queries refused.

use serde_json::{Value, json};

use crate::support::start;

const PROBLEM: &str = "https://strata.dev/problems/";

fn claim(stream: &str, tag: &str, after: Option<u64>) -> Value {
    json!({
        "query": {"items": [{"tags": [tag]}]},
        "after": after,
        "appends": [{"stream": stream, "events": [
            {"type": "Claimed", "data": {"by": stream}, "tags": [tag]}
        ]}]
    })
}

#[tokio::test]
async fn conditional_appends_check_the_query_after_the_read_position() {
    let server = start().await;
    let append = server.url("/v1/dcb/append");
    let read = server.url("/v1/dcb/read");
    let first = server
        .client
        .post(&append)
        .json(&claim("seat-1", "seat:1", None))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["streams"][0]["stream"], "seat-1");
    assert_eq!(first["streams"][0]["revision"], 0);
    let position = first["position"].as_u64().unwrap();

    let slice: Value = server
        .client
        .post(&read)
        .json(&json!({"query": {"items": [{"types": ["Claimed"], "tags": ["seat:1"]}]}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(slice["events"].as_array().unwrap().len(), 1);
    assert_eq!(slice["events"][0]["metadata"]["$tags"], json!(["seat:1"]));
    assert_eq!(slice["lastPosition"], position);
    assert_eq!(slice["more"], false);

    let stale = server
        .client
        .post(&append)
        .json(&claim("seat-1b", "seat:1", None))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 409);
    let problem: Value = stale.json().await.unwrap();
    assert_eq!(problem["type"], format!("{PROBLEM}append-condition-failed"));

    let fresh = server
        .client
        .post(&append)
        .json(&claim("seat-1b", "seat:1", Some(position)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        fresh.status(),
        200,
        "nothing matched after the position read"
    );

    let empty = server
        .client
        .post(&append)
        .json(&json!({"query": {"items": []}, "appends": [
            {"stream": "x-1", "events": [{"type": "X"}]}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    let blank = server
        .client
        .post(&read)
        .json(&json!({"query": {"items": [{}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(blank.status(), 400);
    let bad_tags = server
        .client
        .post(server.url("/v1/streams/x-2"))
        .json(&json!({"events": [{"type": "X", "metadata": [1], "tags": ["a"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_tags.status(), 400, "tags need object metadata");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_conditional_appends_over_http_exactly_one_wins() {
    let server = start().await;
    for round in 0..5 {
        let tag = format!("race:{round}");
        let mut tasks = Vec::new();
        for racer in 0..8 {
            let client = server.client.clone();
            let url = server.url("/v1/dcb/append");
            let body = claim(&format!("racer-{round}x{racer}"), &tag, None);
            tasks.push(tokio::spawn(async move {
                client.post(url).json(&body).send().await.unwrap().status()
            }));
        }
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap().as_u16());
        }
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            vec![200, 409, 409, 409, 409, 409, 409, 409],
            "round {round}"
        );
    }
}
