//! HTTP Basic authentication and ACLs through strata-auth, the module gRPC uses.

use serde_json::json;

use crate::support::start_secured;

#[tokio::test]
async fn basic_auth_is_required_checked_and_acls_refuse_with_403() {
    let server = start_secured().await;
    let url = server.url("/v1/streams/guarded-1");
    let batch = json!({"events": [{"type": "E", "data": {}}]});
    let anonymous = server.client.post(&url).json(&batch).send().await.unwrap();
    assert_eq!(
        anonymous.status(),
        401,
        "anonymous access is off by default"
    );
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let wrong = server
        .client
        .post(&url)
        .basic_auth("admin", Some("wrong"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let admin = server
        .client
        .post(&url)
        .basic_auth("admin", Some("changeit"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    let ops_reads = server
        .client
        .get(&url)
        .basic_auth("ops", Some("changeit"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ops_reads.status(),
        200,
        "user streams are open to authenticated users"
    );
    let system = server
        .client
        .post(server.url("/v1/streams/$secrets"))
        .basic_auth("ops", Some("changeit"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(system.status(), 403, "system streams are for $admins");
    let body: serde_json::Value = system.json().await.unwrap();
    assert_eq!(body["type"], "https://strata.dev/problems/access-denied");
    let compat = server
        .client
        .post(server.url("/streams/guarded-1"))
        .header("content-type", "application/json")
        .header("Kurrent-EventType", "E")
        .header("Kurrent-EventId", uuid::Uuid::new_v4().to_string())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        compat.status(),
        401,
        "the KurrentDB routes go through the same check"
    );
    assert_eq!(
        server
            .client
            .get(server.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}

#[tokio::test]
async fn all_reads_and_subscriptions_leave_out_streams_the_caller_may_not_read() {
    let server = start_secured().await;
    let as_admin = |request: reqwest::RequestBuilder| request.basic_auth("admin", Some("changeit"));
    let as_ops = |request: reqwest::RequestBuilder| request.basic_auth("ops", Some("changeit"));
    let batch = json!({"events": [{"type": "E", "data": {}}]});
    // Everyone may read $all; `hidden-1` is for admin alone.
    for (stream, acl) in [
        ("$all", json!({"$r": "$all"})),
        ("hidden-1", json!({"$r": "admin"})),
    ] {
        let url = server.url(&format!("/v1/streams/{stream}/metadata"));
        let response = as_admin(server.client.put(url))
            .json(&json!({"$acl": acl}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "metadata of {stream}");
    }
    for stream in ["hidden-1", "open-1"] {
        let response = as_admin(
            server
                .client
                .post(server.url(&format!("/v1/streams/{stream}"))),
        )
        .json(&batch)
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
    }
    let streams_seen = |page: &serde_json::Value| -> Vec<String> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["stream"].as_str().unwrap().to_owned())
            .collect()
    };
    let read = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json::<serde_json::Value>().await.unwrap()
    };
    let url = server.url("/v1/all?count=1000");
    let admin_sees = streams_seen(&read(as_admin(server.client.get(&url))).await);
    assert!(
        admin_sees.contains(&"hidden-1".to_owned()),
        "{admin_sees:?}"
    );
    let ops_sees = streams_seen(&read(as_ops(server.client.get(&url))).await);
    assert!(ops_sees.contains(&"open-1".to_owned()), "{ops_sees:?}");
    assert!(!ops_sees.contains(&"hidden-1".to_owned()), "{ops_sees:?}");

    // The same through a subscription: it reaches `open-1` without passing `hidden-1`.
    let response = as_ops(server.client.get(server.url("/v1/subscriptions/all")))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut lines = crate::support::Records::ndjson(response);
    loop {
        let line = lines.next_json().await.expect("the subscription goes on");
        if let Some(stream) = line["event"]["stream"].as_str() {
            assert_ne!(stream, "hidden-1", "{line}");
            if stream == "open-1" {
                break;
            }
        }
    }
}

#[tokio::test]
async fn an_open_subscription_ends_in_band_when_its_user_is_disabled() {
    let server = start_secured().await;
    let url = format!("kdb://admin:changeit@{}?tls=false", server.address);
    let users = strata_grpc::client::UsersAdmin::connect(&url, None)
        .await
        .unwrap();
    users.create("ada", "Ada", &[], "pw").await.unwrap();
    let response = server
        .client
        .get(server.url("/v1/subscriptions/streams/notes-1"))
        .basic_auth("ada", Some("pw"))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut lines = crate::support::Records::ndjson(response);
    let batch = json!({"events": [{"type": "E", "data": {}}]});
    let appended = server
        .client
        .post(server.url("/v1/streams/notes-1"))
        .basic_auth("admin", Some("changeit"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(appended.status(), 200);
    loop {
        let line = lines.next_json().await.expect("the subscription goes on");
        if line["kind"] == "event" {
            break;
        }
    }

    users.set_disabled("ada", true).await.unwrap();
    let last = loop {
        let line = lines.next_json().await.expect("an error line ends it");
        if line["kind"] != "heartbeat" && line["kind"] != "caught-up" {
            break line;
        }
    };
    assert_eq!(last["kind"], "error", "{last}");
    assert_eq!(
        last["problem"]["type"], "https://strata.dev/problems/access-denied",
        "{last}"
    );
    assert!(
        lines.next().await.is_none(),
        "the body ends after the error"
    );
}
