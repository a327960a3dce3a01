//! Health, node information, statistics, metrics, the OpenAPI document, request ids, and
//! answers outside the API.

use serde_json::Value;

use crate::support::start;

#[tokio::test]
async fn health_info_and_stats() {
    let server = start().await;
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
    let ready = server
        .client
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
    let info: Value = server
        .client
        .get(server.url("/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["strataVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["store"], "engine");
    assert_eq!(info["state"], "leader");
    server.append("stats-1", 4).await;
    let stats: Value = server
        .client
        .get(server.url("/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["eventsWritten"], 4);
    assert!(stats["lastPosition"].as_u64().is_some());
}

/// The sum of the samples of `name` (with `label`, when given).
fn sample(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| {
            sample.metric == name
                && label.is_none_or(|(key, value)| sample.labels.get(key) == Some(value))
        })
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => value,
            _ => panic!("{name} is not a number"),
        })
        .sum()
}

async fn scrape(server: &crate::support::Running) -> prometheus_parse::Scrape {
    let answer = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format")
}

#[tokio::test]
async fn metrics_parse_and_counters_move_with_appends_and_reads() {
    let server = start().await;
    let before = scrape(&server).await;
    server.append("metered-1", 5).await;
    let _ = server
        .client
        .get(server.url("/v1/streams/metered-1"))
        .send()
        .await
        .unwrap();
    let create = server
        .client
        .put(server.url("/v1/persistent-subscriptions/metered-1/g"))
        .json(&serde_json::json!({"startFrom": "start"}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 201);
    let after = scrape(&server).await;
    let written = |scrape| {
        sample(
            scrape,
            "kurrentdb_io_events_total",
            Some(("activity", "written")),
        )
    };
    let read = |scrape| {
        sample(
            scrape,
            "kurrentdb_io_events_total",
            Some(("activity", "read")),
        )
    };
    assert!(written(&after) >= written(&before) + 5.0);
    assert!(read(&after) >= read(&before) + 5.0);
    assert!(
        sample(
            &after,
            "kurrentdb_io_bytes_total",
            Some(("activity", "written"))
        ) > 0.0
    );
    assert!(
        sample(
            &after,
            "strata_http_requests_total",
            Some(("status", "200"))
        ) >= 2.0
    );
    assert!(after.samples.iter().any(|sample| sample.metric
        == "kurrentdb_persistent_sub_connections"
        && sample.labels.get("group_name") == Some("g")));
}

#[tokio::test]
async fn the_openapi_document_is_3_1_and_names_every_route() {
    let server = start().await;
    let document: Value = server
        .client
        .get(server.url("/.well-known/openapi"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/streams/{stream}", "post"),
        ("/v1/streams/{stream}", "get"),
        ("/v1/streams/{stream}", "delete"),
        ("/v1/streams/{stream}/metadata", "put"),
        ("/v1/all", "get"),
        ("/v1/subscriptions/streams/{stream}", "get"),
        ("/v1/subscriptions/all", "get"),
        ("/v1/subscriptions/categories/{category}", "get"),
        ("/v1/persistent-subscriptions", "get"),
        ("/v1/persistent-subscriptions/{stream}/{group}", "put"),
        ("/v1/persistent-subscriptions/{stream}/{group}", "patch"),
        (
            "/v1/persistent-subscriptions/{stream}/{group}/messages",
            "get",
        ),
        ("/v1/persistent-subscriptions/{stream}/{group}/ack", "post"),
        ("/v1/persistent-subscriptions/{stream}/{group}/nack", "post"),
        (
            "/v1/persistent-subscriptions/{stream}/{group}/replay-parked",
            "post",
        ),
        ("/health/ready", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|item| item.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for schema in ["AppendIn", "AppendOut", "EventIn", "Problem", "GroupOut"] {
        assert!(schemas.contains_key(schema), "{schema} is a component");
    }
    // Every $ref points at a component that exists.
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            schemas.contains_key(name),
            "{name} is referenced but missing"
        );
    }
}

#[tokio::test]
async fn request_ids_come_from_the_request_or_its_traceparent() {
    let server = start().await;
    let traced = server
        .client
        .get(server.url("/health/live"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        traced.headers()["x-request-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let given = server
        .client
        .get(server.url("/info"))
        .header("x-request-id", "abc-1")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-1");
    let fresh = server.client.get(server.url("/info")).send().await.unwrap();
    assert_eq!(fresh.headers()["x-request-id"].len(), 32);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems_too() {
    let server = start().await;
    let missing = server
        .client
        .get(server.url("/no/such/thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["type"], "https://strata.dev/problems/not-found");
    let wrong_method = server
        .client
        .put(server.url("/v1/all"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(
        body["type"],
        "https://strata.dev/problems/method-not-allowed"
    );
}

#[tokio::test]
async fn http2_with_prior_knowledge_serves_the_api_on_the_grpc_port() {
    let server = start().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let answer = client.get(server.url("/info")).send().await.unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn store_metrics_show_group_commits_fsyncs_and_subscription_lag() {
    let server = start().await;
    let before = scrape(&server).await;
    // A subscription from the start of `$all` that has delivered its first event.
    let subscription = server
        .client
        .get(server.url("/v1/subscriptions/all?from=start&streamPrefix=lagging-"))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(subscription.status(), 200);
    let mut records = crate::support::Records::ndjson(subscription);
    server.append("lagging-1", 1).await;
    // Caught-up and checkpoint lines may come first.
    loop {
        let line = records.next_json().await.expect("the subscription goes on");
        if line["kind"] == "event" {
            assert_eq!(line["event"]["stream"], "lagging-1");
            break;
        }
    }
    server.append("commits-1", 3).await;
    server.append("commits-2", 2).await;
    let after = scrape(&server).await;

    let count = |scrape, name| sample(scrape, name, None);
    for histogram in [
        "strata_group_commit_appends_count",
        "strata_group_commit_bytes_count",
        "strata_group_commit_duration_seconds_count",
        "strata_fsync_duration_seconds_count",
    ] {
        assert!(
            count(&after, histogram) >= count(&before, histogram) + 2.0,
            "{histogram} did not move"
        );
    }
    assert!(
        count(&after, "strata_group_commit_bytes_sum")
            > count(&before, "strata_group_commit_bytes_sum")
    );
    // The largest commit since the previous scrape: the appends above made one.
    assert!(count(&after, "kurrentdb_writer_flush_size_max") > 0.0);
    assert!(count(&after, "kurrentdb_writer_flush_duration_max_seconds") > 0.0);
    // Nothing is in flight once every append was acknowledged.
    assert_eq!(count(&after, "strata_appends_in_flight_kib"), 0.0);
    // The subscription delivered one event of lagging-1 and nothing of commits-*: it lags
    // by at least what those appends wrote.
    assert!(count(&after, "strata_http_subscriptions") >= 1.0);
    assert!(count(&after, "strata_http_subscription_lag_bytes_max") > 0.0);
    assert!(
        after
            .samples
            .iter()
            .any(|sample| sample.metric == "strata_persistent_sub_groups")
    );

    // A scrape with no commit in between starts the maxima again.
    let quiet = scrape(&server).await;
    assert_eq!(count(&quiet, "kurrentdb_writer_flush_size_max"), 0.0);
    drop(records);
}

#[tokio::test]
async fn grpc_catch_up_subscriptions_show_their_lag() {
    let server = start().await;
    let settings: kurrentdb::ClientSettings = format!("esdb://{}?tls=false", server.address)
        .parse()
        .unwrap();
    let client = kurrentdb::Client::new(settings).unwrap();
    let filter = kurrentdb::SubscriptionFilter::on_stream_name().add_prefix("lagging-");
    let options = kurrentdb::SubscribeToAllOptions::default()
        .position(kurrentdb::StreamPosition::Start)
        .filter(filter);
    let mut subscription = client.subscribe_to_all(&options).await;
    server.append("lagging-1", 1).await;
    let first = subscription.next().await.unwrap();
    assert_eq!(first.get_original_event().stream_id(), "lagging-1");
    server.append("commits-1", 3).await;
    let after = scrape(&server).await;
    let count = |name| sample(&after, name, None);
    // One subscription, which delivered lagging-1 and nothing of commits-1 since.
    assert_eq!(count("strata_grpc_subscriptions"), 1.0);
    assert!(count("strata_grpc_subscription_lag_bytes_max") > 0.0);
    drop(subscription);
}
