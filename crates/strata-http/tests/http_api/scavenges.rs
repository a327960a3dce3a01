//! `/v1/admin/scavenges`: start (with a throttle), list with progress, show, stop, the
//! answers for a run under way and an unknown id, who may call them, and the answer of a
//! store that cannot scavenge.

use serde_json::Value;

use std::sync::Arc;

use crate::support::{Gate, start, start_scavengeable, start_scavengeable_held};

const ADMIN: (&str, &str) = ("admin", "changeit");

fn pad() -> String {
    "z".repeat(3000)
}

/// Appends big events to `doomed` (then deletes it) and `kept`, filling several segments.
async fn fill(server: &crate::support::Running) {
    for round in 0..40 {
        for stream in ["doomed-1", "kept-1"] {
            let events: Vec<Value> = (0..10)
                .map(|index| {
                    serde_json::json!({"type": "Happened", "data": {"round": round, "index": index, "pad": pad()}})
                })
                .collect();
            let answer = server
                .client
                .post(server.url(&format!("/v1/streams/{stream}")))
                .basic_auth(ADMIN.0, Some(ADMIN.1))
                .json(&serde_json::json!({ "events": events }))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
        }
    }
    let deleted = server
        .client
        .delete(server.url("/v1/streams/doomed-1"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
}

async fn call(
    server: &crate::support::Running,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    user: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut request = server.client.request(method, server.url(path));
    if let Some((login, password)) = user {
        request = request.basic_auth(login, Some(password));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn wait_finished(server: &crate::support::Running, id: &str) -> Value {
    for _ in 0..3000 {
        let (status, job) = call(
            server,
            reqwest::Method::GET,
            &format!("/v1/admin/scavenges/{id}"),
            None,
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, 200, "{job}");
        if job["state"] != "running" {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("scavenge {id} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_start_follow_and_stop_scavenges() {
    let gate = Arc::new(Gate::default());
    let server = start_scavengeable_held(Arc::clone(&gate)).await;
    fill(&server).await;
    let scavenges = "/v1/admin/scavenges";
    // A throttled run, held at the gate: under way for the calls below.
    let (status, started) = call(
        &server,
        reqwest::Method::POST,
        scavenges,
        Some(serde_json::json!({"throttle_percent": 1})),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["result"], "started");
    let id = started["id"].as_str().unwrap().to_owned();

    let (status, again) = call(
        &server,
        reqwest::Method::POST,
        scavenges,
        None,
        Some(("ops", "changeit")),
    )
    .await;
    assert_eq!(
        (status, &again["result"], &again["id"]),
        (200, &Value::from("in_progress"), &Value::from(id.clone()))
    );

    let (status, listed) = call(&server, reqwest::Method::GET, scavenges, None, Some(ADMIN)).await;
    assert_eq!(status, 200);
    assert_eq!(listed["supported"], true);
    assert_eq!(listed["current"]["id"], id.as_str());
    assert_eq!(listed["current"]["state"], "running");
    assert_eq!(listed["current"]["throttle_percent"], 1);
    assert_eq!(listed["current"]["requested_by"], "admin");
    assert!(
        listed["current"]["progress"]["bytes_total"].is_u64(),
        "{listed}"
    );

    let (status, problem) = call(
        &server,
        reqwest::Method::DELETE,
        "/v1/admin/scavenges/nope",
        None,
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 404, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("scavenge-not-found"),
        "{problem}"
    );

    let (status, stopping) = call(
        &server,
        reqwest::Method::DELETE,
        "/v1/admin/scavenges/current",
        None,
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 202, "{stopping}");
    assert_eq!(stopping["id"], id.as_str());
    gate.open();
    let stopped = wait_finished(&server, &id).await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["report"]["stopped"], true);

    // A full run removes the deleted stream's events and reports the space given back.
    let (status, started) = call(
        &server,
        reqwest::Method::POST,
        scavenges,
        Some(serde_json::json!({})),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 202);
    let finished = wait_finished(&server, started["id"].as_str().unwrap()).await;
    assert_eq!(finished["state"], "completed", "{finished}");
    assert!(
        finished["report"]["events_removed"].as_u64().unwrap() > 0,
        "{finished}"
    );
    let (_, listed) = call(&server, reqwest::Method::GET, scavenges, None, Some(ADMIN)).await;
    assert!(listed["current"].is_null());
    assert_eq!(listed["history"][0]["id"], finished["id"]);
    assert_eq!(listed["history"][1]["id"], id.as_str());

    // The history streams are there for the UI too.
    let (status, page) = call(
        &server,
        reqwest::Method::GET,
        &format!("/v1/streams/$scavenges-{id}"),
        None,
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let text = page.to_string();
    assert!(
        text.contains("$scavengeStarted") && text.contains("$scavengeCompleted"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_requests_strangers_and_unscavengeable_stores_are_refused() {
    let server = start_scavengeable().await;
    let scavenges = "/v1/admin/scavenges";
    for body in [
        serde_json::json!({"throttle_percent": 0}),
        serde_json::json!({"throttle_percent": 101}),
        serde_json::json!({"threads": 0}),
        serde_json::json!({"speed": 3}),
    ] {
        let (status, problem) = call(
            &server,
            reqwest::Method::POST,
            scavenges,
            Some(body.clone()),
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, 400, "{body}: {problem}");
    }
    let (status, _) = call(&server, reqwest::Method::GET, scavenges, None, None).await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &server,
        reqwest::Method::POST,
        scavenges,
        None,
        Some(("admin", "wrong")),
    )
    .await;
    assert_eq!(status, 401);
    let created = server
        .client
        .put(server.url("/v1/users/reader"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .json(&serde_json::json!({"fullName": "Reader", "password": "secret", "groups": []}))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap()
    );
    let (status, problem) = call(
        &server,
        reqwest::Method::POST,
        scavenges,
        None,
        Some(("reader", "secret")),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    let (_, listed) = call(&server, reqwest::Method::GET, scavenges, None, Some(ADMIN)).await;
    assert!(
        listed["current"].is_null() && listed["history"].as_array().unwrap().is_empty(),
        "{listed}"
    );

    // A server whose store cannot scavenge says so.
    let plain = start().await;
    let (status, problem) = call(&plain, reqwest::Method::POST, scavenges, None, None).await;
    assert_eq!(status, 501, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("cannot scavenge"),
        "{problem}"
    );
    let (status, listed) = call(&plain, reqwest::Method::GET, scavenges, None, None).await;
    assert_eq!((status, &listed["supported"]), (200, &Value::from(false)));
}
