//! The server's bounds as the Rust client sees them: subscriptions and connections beyond
//! the configured limits are refused with a message that names the limit.

use super::*;

/// gRPC status `RESOURCE_EXHAUSTED` by number.
const CODE_RESOURCE_EXHAUSTED: i32 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_beyond_the_limit_is_resource_exhausted() {
    let server = Server::start_with(&["--insecure", "--max-subscriptions", "1"]);
    let client = server.client();
    let options = SubscribeToAllOptions::default().position(StreamPosition::Start);
    let mut first = client.subscribe_to_all(&options).await;
    expect_confirmation(&mut first).await;
    let mut second = client.subscribe_to_all(&options).await;
    let refused = within("the second subscription", second.next_subscription_event()).await;
    match refused {
        Err(Error::Grpc { code, message }) => {
            let number: i32 = code.into();
            assert_eq!(number, CODE_RESOURCE_EXHAUSTED, "{message}");
            assert!(message.contains("limit of 1 subscriptions"), "{message}");
        }
        other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_the_limit_fails_with_a_message_naming_the_limit() {
    let server = Server::start_with(&["--insecure", "--max-connections", "1"]);
    let first = server.client();
    append_new(&first, "held-1", StreamState::Any, 1).await;
    // A second client opens a second connection.
    let second = server.client();
    let refused = try_append(
        &second,
        "refused-1",
        StreamState::Any,
        events_with_ids("Refused", &new_ids(1)),
    )
    .await
    .expect_err("no room for a second connection");
    assert!(
        refused.to_string().contains("limit of 1 open connections"),
        "the client reports the server's reason: {refused}"
    );
    append_new(&first, "held-1", StreamState::Any, 1).await;
}
