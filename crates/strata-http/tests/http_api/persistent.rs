//! Persistent subscriptions managed and consumed over HTTP.

use serde_json::{Value, json};

use crate::support::start;

async fn take(server: &crate::support::Running, count: usize) -> Vec<Value> {
    let answer: Value = server
        .client
        .get(server.url(&format!(
            "/v1/persistent-subscriptions/work-1/billing/messages?count={count}&waitMs=5000"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["messages"].as_array().unwrap().clone()
}

async fn settle(server: &crate::support::Running, verb: &str, body: Value) {
    let answer = server
        .client
        .post(server.url(&format!(
            "/v1/persistent-subscriptions/work-1/billing/{verb}"
        )))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204, "{}", answer.text().await.unwrap());
}

async fn info(server: &crate::support::Running) -> Value {
    server
        .client
        .get(server.url("/v1/persistent-subscriptions/work-1/billing"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn groups_are_managed_and_consumed_with_ack_nack_park_and_replay() {
    let server = start().await;
    let group = server.url("/v1/persistent-subscriptions/work-1/billing");
    let created = server
        .client
        .put(&group)
        .json(&json!({"startFrom": "start", "maxRetryCount": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let again = server
        .client
        .put(&group)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let ids = server.append("work-1", 3).await;

    let mut messages = Vec::new();
    while messages.len() < 3 {
        messages.extend(take(&server, 3 - messages.len()).await);
    }
    let delivered: Vec<&str> = messages
        .iter()
        .map(|message| message["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        delivered,
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    settle(&server, "ack", json!({"ids": [ids[0]]})).await;
    settle(&server, "nack", json!({"ids": [ids[1]], "action": "park"})).await;
    settle(&server, "nack", json!({"ids": [ids[2]], "action": "retry"})).await;

    let retried = take(&server, 10).await;
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0]["event"]["id"], ids[2].as_str());
    assert_eq!(retried[0]["retryCount"], 1);
    settle(&server, "ack", json!({"ids": [ids[2]]})).await;

    let mut parked = 0;
    for _ in 0..200 {
        parked = info(&server).await["parkedCount"].as_u64().unwrap();
        if parked == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(parked, 1);
    let replay = server
        .client
        .post(format!("{group}/replay-parked"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 204);
    let replayed = take(&server, 10).await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0]["event"]["id"], ids[1].as_str());
    settle(&server, "ack", json!({"ids": [replayed[0]["ackId"]]})).await;

    let updated = server
        .client
        .patch(&group)
        .json(&json!({"maxRetryCount": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 204);
    assert_eq!(info(&server).await["maxRetryCount"], 2);
    let listed: Value = server
        .client
        .get(server.url("/v1/persistent-subscriptions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["group"], "billing");

    let bad = server
        .client
        .post(format!("{group}/nack"))
        .json(&json!({"ids": [ids[0]], "action": "explode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let deleted = server.client.delete(&group).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = server.client.get(&group).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["type"], "https://strata.dev/problems/group-not-found");
}
