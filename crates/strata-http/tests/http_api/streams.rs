//! Appends, reads, metadata and deletes through `/v1/streams` and `/v1/all`.

use serde_json::{Value, json};

use crate::support::{Records, start, start_with};

const PROBLEM: &str = "https://strata.dev/problems/";

async fn problem(answer: reqwest::Response) -> Value {
    assert_eq!(
        answer.headers()["content-type"],
        "application/problem+json",
        "errors are problem details"
    );
    answer.json().await.unwrap()
}

#[tokio::test]
async fn appends_answer_revision_and_position_and_check_the_expected_revision() {
    let server = start().await;
    let url = server.url("/v1/streams/order-1");
    let first: Value = server
        .client
        .post(&url)
        .json(&json!({"expectedRevision": "no-stream", "events": [
            {"type": "Placed", "data": {"total": 10}},
            {"type": "Paid", "data": {"total": 10}, "metadata": {"by": "me"}},
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["revision"], 1);
    assert!(first["position"].as_u64().is_some());

    let wrong = server
        .client
        .post(&url)
        .json(&json!({"expectedRevision": 5, "events": [{"type": "Late", "data": {}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 409);
    let body = problem(wrong).await;
    assert_eq!(body["type"], format!("{PROBLEM}wrong-expected-revision"));
    assert_eq!(body["actualRevision"], 1);

    let exact = server
        .client
        .post(&url)
        .json(&json!({"expectedRevision": 1, "events": [{"type": "Shipped", "data": {}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(exact.status(), 200);
    let exists = server
        .client
        .post(server.url("/v1/streams/order-2"))
        .json(&json!({"expectedRevision": "exists", "events": [{"type": "X", "data": {}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(exists.status(), 409);
    assert_eq!(problem(exists).await["actualRevision"], Value::Null);
}

#[tokio::test]
async fn re_sent_event_ids_are_written_once() {
    let server = start().await;
    let url = server.url("/v1/streams/idem-1");
    let batch = json!({"events": [{"id": "6f1b5e4a-3c2d-4e5f-8a9b-0c1d2e3f4a5b", "type": "Once", "data": {}}]});
    let first: Value = server
        .client
        .post(&url)
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again: Value = server
        .client
        .post(&url)
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first, again, "the re-send answers as the first time");
    let page: Value = server
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        page["events"][0]["id"],
        "6f1b5e4a-3c2d-4e5f-8a9b-0c1d2e3f4a5b"
    );
}

#[tokio::test]
async fn stream_reads_page_both_ways_as_json_and_ndjson() {
    let server = start().await;
    server.append("page-1", 10).await;
    let forwards: Value = server
        .client
        .get(server.url("/v1/streams/page-1?count=4&from=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let revisions: Vec<u64> = forwards["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, [2, 3, 4, 5]);
    assert_eq!(forwards["nextRevision"], 6);
    assert_eq!(forwards["lastRevision"], 9);
    assert_eq!(forwards["events"][0]["data"], json!({"index": 2}));
    assert_eq!(forwards["events"][0]["type"], "Happened");

    let backwards: Value = server
        .client
        .get(server.url("/v1/streams/page-1?direction=backwards&count=3"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let revisions: Vec<u64> = backwards["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, [9, 8, 7]);
    assert_eq!(backwards["nextRevision"], 6);

    let answer = server
        .client
        .get(server.url("/v1/streams/page-1?count=100000"))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["content-type"], "application/x-ndjson");
    let mut lines = Records::ndjson(answer);
    let mut seen = Vec::new();
    while let Some(event) = lines.next_json().await {
        seen.push(event["revision"].as_u64().unwrap());
    }
    assert_eq!(seen, (0..10).collect::<Vec<_>>());

    let too_many = server
        .client
        .get(server.url("/v1/streams/page-1?count=5000"))
        .send()
        .await
        .unwrap();
    assert_eq!(too_many.status(), 413);
    assert_eq!(problem(too_many).await["limit"], 4096);
    let missing = server
        .client
        .get(server.url("/v1/streams/nobody-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        problem(missing).await["type"],
        format!("{PROBLEM}stream-not-found")
    );
}

#[tokio::test]
async fn all_reads_filter_like_grpc_and_stream_every_page_as_ndjson() {
    let server = start().await;
    server.append("cart-1", 3).await;
    server.append("order-9", 2).await;
    server.append("cart-2", 3).await;
    let page: Value = server
        .client
        .get(server.url("/v1/all?streamPrefix=cart-&count=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let streams: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["stream"].as_str().unwrap())
        .collect();
    assert_eq!(
        streams,
        ["cart-1", "cart-1", "cart-1", "cart-2", "cart-2", "cart-2"]
    );
    let by_regex: Value = server
        .client
        .get(server.url("/v1/all?streamRegex=%5Eorder&count=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_regex["events"].as_array().unwrap().len(), 2);
    let two_filters = server
        .client
        .get(server.url("/v1/all?streamRegex=a&eventTypePrefix=b"))
        .send()
        .await
        .unwrap();
    assert_eq!(two_filters.status(), 400);
    assert_eq!(
        problem(two_filters).await["type"],
        format!("{PROBLEM}invalid-filter")
    );

    let backwards: Value = server
        .client
        .get(server.url("/v1/all?direction=backwards&count=2&excludeSystemEvents=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = backwards["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[0]["position"].as_u64() > events[1]["position"].as_u64());

    // NDJSON reads on past one page of the store.
    server.append("bulk-1", 3_000).await;
    let answer = server
        .client
        .get(server.url("/v1/all?count=1000000&eventTypePrefix=Happened"))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    let mut lines = Records::ndjson(answer);
    let mut positions = Vec::new();
    while let Some(event) = lines.next_json().await {
        positions.push(event["position"].as_u64().unwrap());
    }
    assert_eq!(positions.len(), 3_008);
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
}

#[tokio::test]
async fn binary_data_and_metadata_round_trip() {
    let server = start().await;
    let url = server.url("/v1/streams/bin-1");
    let answer = server
        .client
        .post(&url)
        .json(&json!({"events": [{"type": "Blob", "dataBase64": "AAEC/w==", "metadata": {"k": [1, 2]}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let page: Value = server
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event = &page["events"][0];
    assert_eq!(event["contentType"], "application/octet-stream");
    assert_eq!(event["dataBase64"], "AAEC/w==");
    assert_eq!(event["metadata"], json!({"k": [1, 2]}));
    assert!(event["created"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn metadata_soft_delete_and_tombstone() {
    let server = start().await;
    server.append("meta-1", 3).await;
    let none: Value = server
        .client
        .get(server.url("/v1/streams/meta-1/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["revision"], Value::Null);
    let set = server
        .client
        .put(server.url("/v1/streams/meta-1/metadata?expectedRevision=no-stream"))
        .json(&json!({"$maxCount": 2, "owner": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let read: Value = server
        .client
        .get(server.url("/v1/streams/meta-1/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["revision"], 0);
    assert_eq!(read["metadata"]["$maxCount"], 2);
    assert_eq!(read["metadata"]["owner"], "ops");
    let page: Value = server
        .client
        .get(server.url("/v1/streams/meta-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        2,
        "$maxCount hides the oldest"
    );
    let conflict = server
        .client
        .put(server.url("/v1/streams/meta-1/metadata?expectedRevision=no-stream"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(conflict.status(), 409);

    let deleted = server
        .client
        .delete(server.url("/v1/streams/meta-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(
        server
            .client
            .get(server.url("/v1/streams/meta-1"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Appending revives a soft-deleted stream after its old revisions.
    let revived: Value = server
        .client
        .post(server.url("/v1/streams/meta-1"))
        .json(&json!({"events": [{"type": "Back", "data": {}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revived["revision"], 3);

    let tombstoned = server
        .client
        .delete(server.url("/v1/streams/meta-1?mode=tombstone"))
        .send()
        .await
        .unwrap();
    assert_eq!(tombstoned.status(), 200);
    let gone = server
        .client
        .post(server.url("/v1/streams/meta-1"))
        .json(&json!({"events": [{"type": "Never", "data": {}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);
    assert_eq!(
        problem(gone).await["type"],
        format!("{PROBLEM}stream-tombstoned")
    );
    assert_eq!(
        server
            .client
            .get(server.url("/v1/streams/meta-1"))
            .send()
            .await
            .unwrap()
            .status(),
        410
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_a_problem_and_writes_nothing() {
    let server = start_with(strata_http::HttpOptions {
        body_bytes_max: 1_024,
        ..strata_http::HttpOptions::default()
    })
    .await;
    let url = server.url("/v1/streams/bad-1");
    let malformed = server
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"events\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        problem(malformed).await["type"],
        format!("{PROBLEM}malformed-json")
    );
    let unknown_field = server
        .client
        .post(&url)
        .json(&json!({"events": [], "surprise": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), 400);
    let empty = server
        .client
        .post(&url)
        .json(&json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    let wrong_type = server
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    assert_eq!(
        problem(wrong_type).await["type"],
        format!("{PROBLEM}unsupported-media-type")
    );
    let big = "x".repeat(2_000);
    let oversize = server
        .client
        .post(&url)
        .json(&json!({"events": [{"type": "Big", "data": {"x": big}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(oversize.status(), 413);
    let body = problem(oversize).await;
    assert_eq!(body["limit"], 1_024);
    assert!(body["detail"].as_str().unwrap().contains("1024"), "{body}");
    let bad_type = server
        .client
        .post(&url)
        .json(&json!({"events": [{"type": "", "data": {}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_type.status(), 400);
    assert_eq!(
        problem(bad_type).await["type"],
        format!("{PROBLEM}invalid-event-type")
    );
    assert_eq!(
        server.client.get(&url).send().await.unwrap().status(),
        404,
        "nothing was written"
    );
}

#[tokio::test]
async fn an_oversize_body_is_refused_before_it_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start_with(strata_http::HttpOptions {
        body_bytes_max: 1_024,
        ..strata_http::HttpOptions::default()
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    tcp.write_all(
        b"POST /v1/streams/early-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn a_body_that_never_finishes_is_answered_408_and_writes_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start_with(strata_http::HttpOptions {
        body_timeout: std::time::Duration::from_millis(300),
        ..strata_http::HttpOptions::default()
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let body = br#"{"events":[{"type":"Slow","data":{}}]}"#;
    let head = format!(
        "POST /v1/streams/slow-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // All the body but its last byte, one byte at a time, then nothing more.
    for byte in &body[..body.len() - 1] {
        if tcp.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut answer = Vec::new();
    // The server answers and closes the connection (the bound only keeps a broken test from
    // hanging).
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tcp.read_to_end(&mut answer),
    )
    .await
    .expect("the server closed the connection")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("/problems/request-timeout"), "{answer}");
    assert_eq!(
        server
            .client
            .get(server.url("/v1/streams/slow-1"))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "nothing was written"
    );
}

/// `resolveLinks=true` shows `$ce-…` links as the events they point at, with the link; the
/// compatibility feed resolves by default and shows links with `ResolveLinkTos: false`.
#[tokio::test]
async fn reads_resolve_links_when_asked() {
    let server = start().await;
    let ids = server.append("order-1", 2).await;
    let get = |path: String| {
        let client = server.client.clone();
        async move {
            let answer = client.get(path).send().await.unwrap();
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().await.unwrap()
        }
    };
    let links = get(server.url("/v1/streams/$ce-order")).await;
    let events = links["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["type"], "$>");
    assert!(events[0].get("link").is_none());

    let resolved = get(server.url("/v1/streams/$ce-order?resolveLinks=true&count=1")).await;
    let event = &resolved["events"][0];
    assert_eq!(event["id"], ids[0].as_str());
    assert_eq!(event["stream"], "order-1");
    assert_eq!(event["link"]["stream"], "$ce-order");
    assert_eq!(event["link"]["revision"], 0);
    assert_eq!(resolved["nextRevision"], 1, "pages follow the links");

    let all = get(server.url("/v1/all?resolveLinks=true&streamPrefix=order-")).await;
    assert_eq!(all["events"].as_array().unwrap().len(), 2);

    let bad = server
        .client
        .get(server.url("/v1/streams/$ce-order?resolveLinks=yes"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let feed = |resolve: Option<&'static str>| {
        let mut request = server
            .client
            .get(server.url("/streams/$ce-order?embed=body"))
            .header("accept", "application/vnd.kurrent.atom+json");
        if let Some(value) = resolve {
            request = request.header("ES-ResolveLinkTos", value);
        }
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let resolved = feed(None).await;
    let entry = &resolved["entries"][0];
    assert_eq!(entry["streamId"], "order-1", "{entry}");
    assert_eq!(entry["positionStreamId"], "$ce-order");
    let links = feed(Some("false")).await;
    assert_eq!(links["entries"][0]["streamId"], "$ce-order");
    assert_eq!(links["entries"][0]["eventType"], "$>");
}
