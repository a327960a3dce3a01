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
