//! What the web UI needs besides the streams API: its embedded files, projections and users
//! over HTTP (docs/UI.md, docs/HTTP.md).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{start, start_secured};

#[tokio::test]
async fn the_ui_is_served_embedded_with_csp_etag_and_content_types() {
    let server = start().await;
    let index = server.client.get(server.url("/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let headers = index.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert_eq!(headers["cache-control"], "no-cache");
    let body = index.text().await.unwrap();
    assert!(body.contains("/ui/app.js"), "{body}");
    for (file, kind) in [
        ("app.js", "text/javascript"),
        ("pages.js", "text/javascript"),
        ("style.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let answer = server
            .client
            .get(server.url(&format!("/ui/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{file}");
        assert!(
            answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{file}"
        );
        let etag = answer.headers()["etag"].clone();
        let again = server
            .client
            .get(server.url(&format!("/ui/{file}")))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{file}");
    }
    let missing = server
        .client
        .get(server.url("/ui/x.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let info: Value = server
        .client
        .get(server.url("/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let features: Vec<&str> = info["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        features.contains(&"ui") && features.contains(&"projections"),
        "{features:?}"
    );
    assert!(
        !features.contains(&"users"),
        "an insecure server has no users: {features:?}"
    );
}

#[tokio::test]
async fn projections_are_created_read_changed_and_deleted_over_http() {
    let server = start().await;
    server.append("counted-1", 3).await;
    let query = "fromStream('counted-1').when({ $init: () => ({ n: 0 }), Happened: (s, e) => { s.n += 1; return s; } });";
    let create = |name: &str, query: &str| {
        server
            .client
            .put(server.url(&format!("/v1/projections/{name}")))
            .json(&json!({"query": query}))
            .send()
    };
    let created = create("count", query).await.unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/v1/projections/count");
    let again = create("count", query).await.unwrap();
    assert_eq!(again.status(), 409);
    let problem: Value = again.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://strata.dev/problems/projection-exists"
    );
    let bad_mode = server
        .client
        .put(server.url("/v1/projections/other"))
        .json(&json!({"query": query, "mode": "sometimes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_mode.status(), 400);

    // The state arrives once the projection has checkpointed.
    let mut state = Value::Null;
    for _ in 0..100 {
        state = server
            .client
            .get(server.url("/v1/projections/count/state"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if state["n"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, json!({"n": 3}));
    let list: Value = server
        .client
        .get(server.url("/v1/projections"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "count");
    let one: Value = server
        .client
        .get(server.url("/v1/projections/count"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["query"], query);
    assert_eq!(one["enabled"], true);
    assert_eq!(one["mode"], "Continuous");

    let updated = server
        .client
        .put(server.url("/v1/projections/count/query"))
        .json(&json!({"query": query.replace("s.n += 1", "s.n += 10")}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 204);
    // A running projection cannot be deleted; disabled it can.
    let running = server
        .client
        .delete(server.url("/v1/projections/count"))
        .send()
        .await
        .unwrap();
    assert_eq!(running.status(), 409);
    for command in ["disable", "reset"] {
        let answer = server
            .client
            .post(server.url(&format!("/v1/projections/count/{command}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 204, "{command}");
    }
    let unknown = server
        .client
        .post(server.url("/v1/projections/count/explode"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let deleted = server
        .client
        .delete(server.url("/v1/projections/count?deleteCheckpointStream=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = server
        .client
        .get(server.url("/v1/projections/count/state"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let problem: Value = gone.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://strata.dev/problems/projection-not-found"
    );
}

#[tokio::test]
async fn admins_manage_users_over_http_and_others_may_not() {
    let server = start_secured().await;
    let admin = |request: reqwest::RequestBuilder| request.basic_auth("admin", Some("changeit"));
    let users: Value = admin(server.client.get(server.url("/v1/users")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let logins: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["loginName"].as_str().unwrap())
        .collect();
    assert_eq!(logins, ["admin", "ops"]);
    assert!(users[0].get("hash").is_none() && users[0].get("password").is_none());

    let ops = server
        .client
        .get(server.url("/v1/users"))
        .basic_auth("ops", Some("changeit"))
        .send()
        .await
        .unwrap();
    assert_eq!(ops.status(), 403);
    let anonymous = server
        .client
        .get(server.url("/v1/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let create = || {
        admin(server.client.put(server.url("/v1/users/ada")))
            .json(&json!({"fullName": "Ada", "groups": ["readers"], "password": "pw1"}))
            .send()
    };
    assert_eq!(create().await.unwrap().status(), 201);
    let conflict = create().await.unwrap();
    assert_eq!(conflict.status(), 409);
    let problem: Value = conflict.json().await.unwrap();
    assert_eq!(problem["type"], "https://strata.dev/problems/user-conflict");
    let as_ada = |password: &str| {
        server
            .client
            .get(server.url("/v1/streams/anything"))
            .basic_auth("ada", Some(password.to_owned()))
            .send()
    };
    assert_eq!(as_ada("pw1").await.unwrap().status(), 404, "ada logs in");

    let post = |path: &str, body: Option<Value>| {
        let request = admin(server.client.post(server.url(path)));
        match body {
            Some(body) => request.json(&body).send(),
            None => request.send(),
        }
    };
    assert_eq!(
        post("/v1/users/ada/disable", None).await.unwrap().status(),
        204
    );
    assert_eq!(as_ada("pw1").await.unwrap().status(), 401, "disabled");
    assert_eq!(
        post("/v1/users/ada/enable", None).await.unwrap().status(),
        204
    );
    let reset = post(
        "/v1/users/ada/reset-password",
        Some(json!({"newPassword": "pw2"})),
    );
    assert_eq!(reset.await.unwrap().status(), 204);
    assert_eq!(as_ada("pw1").await.unwrap().status(), 401, "old password");
    assert_eq!(as_ada("pw2").await.unwrap().status(), 404, "new password");
    let patched = admin(server.client.patch(server.url("/v1/users/ada")))
        .json(&json!({"fullName": "Ada L.", "groups": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 204);
    let ada: Value = admin(server.client.get(server.url("/v1/users/ada")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ada["fullName"], "Ada L.");
    assert_eq!(ada["disabled"], false);
    let deleted = admin(server.client.delete(server.url("/v1/users/ada")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let missing = admin(server.client.get(server.url("/v1/users/ada")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://strata.dev/problems/user-not-found"
    );

    let insecure = start().await;
    let none = insecure
        .client
        .get(insecure.url("/v1/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
}
