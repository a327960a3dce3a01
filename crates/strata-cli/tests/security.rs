//! Users and ACLs, black box: `strata serve` over TLS (authentication on), users managed
//! with `strata user`, and the official Rust client (`kurrentdb` crate) as each user. With
//! `STRATA_TEST_STORE=postgres` the same runs on PostgreSQL, where users are streams too.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, PersistentSubscriptionOptions,
    PersistentSubscriptionToAllOptions, ReadAllOptions, ReadStreamOptions, StreamPosition,
    SubscribeToAllOptions, SubscribeToPersistentSubscriptionOptions, SubscribeToStreamOptions,
};
use serde_json::{Value, json};
use support::{Server, within};

struct Secured {
    server: Server,
    _certificates: tempfile::TempDir,
    ca_file: PathBuf,
}

fn start() -> Secured {
    let certificates = tempfile::tempdir().expect("temp dir");
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).expect("a certificate");
    let ca_file = certificates.path().join("node.crt");
    let key = certificates.path().join("node.key");
    std::fs::write(&ca_file, certified.cert.pem()).expect("write the certificate");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write the key");
    let server = Server::start_with(&[
        "--tls-cert",
        ca_file.to_str().expect("UTF-8 path"),
        "--tls-key",
        key.to_str().expect("UTF-8 path"),
    ]);
    Secured {
        server,
        _certificates: certificates,
        ca_file,
    }
}

impl Secured {
    fn url(&self, credentials: Option<(&str, &str)>) -> String {
        let user = credentials.map_or(String::new(), |(login, password)| {
            format!("{login}:{password}@")
        });
        format!(
            "esdb://{user}localhost:{}?tls=true&tlsCaFile={}",
            self.server.port(),
            self.ca_file.display()
        )
    }

    fn client(&self, credentials: Option<(&str, &str)>) -> Client {
        let settings: ClientSettings = self.url(credentials).parse().expect("parses");
        Client::new(settings).expect("client builds")
    }

    fn admin(&self) -> Client {
        self.client(Some(("admin", "changeit")))
    }

    /// `strata user ARGS` as admin (credentials from the environment); its stdout.
    fn user_command(&self, args: &[&str]) -> String {
        run_user_command(&self.url(None), &self.ca_file, args)
    }
}

fn run_user_command(url: &str, _ca_file: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("user")
        .args(args)
        .args(["--server", url])
        .env("STRATA_USER", "admin")
        .env("STRATA_PASSWORD", "changeit")
        .output()
        .expect("strata runs");
    assert!(
        output.status.success(),
        "strata user {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn event(n: u64) -> EventData {
    EventData::json("Happened", &json!({ "n": n })).expect("json")
}

async fn append(client: &Client, stream: &str) -> Result<(), kurrentdb::Error> {
    within(
        "append",
        client.append_to_stream(stream, &AppendToStreamOptions::default(), vec![event(0)]),
    )
    .await
    .map(|_| ())
}

/// How many events `client` reads from `stream`, or the error it gets.
async fn read(client: &Client, stream: &str) -> Result<usize, kurrentdb::Error> {
    let mut events = within(
        "read",
        client.read_stream(stream, &ReadStreamOptions::default()),
    )
    .await?;
    let mut count = 0;
    loop {
        match within("next", events.next()).await {
            Ok(Some(_)) => count += 1,
            Ok(None) => return Ok(count),
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(0),
            Err(error) => return Err(error),
        }
    }
}

/// Streams of the events `client` reads from `$all`.
async fn read_all_streams(client: &Client) -> Result<Vec<String>, kurrentdb::Error> {
    let mut events = within("read $all", client.read_all(&ReadAllOptions::default())).await?;
    let mut streams = Vec::new();
    while let Some(event) = within("next", events.next()).await? {
        streams.push(event.get_original_event().stream_id().to_owned());
    }
    Ok(streams)
}

/// Writes `$acl` into the metadata of `stream` as admin.
async fn set_acl(admin: &Client, stream: &str, acl: Value) {
    let metadata = EventData::json("$metadata", &json!({ "$acl": acl })).expect("json");
    admin
        .append_to_stream(
            format!("$${stream}"),
            &AppendToStreamOptions::default(),
            vec![metadata],
        )
        .await
        .expect("admin writes metadata");
}

fn denied<T: std::fmt::Debug>(outcome: Result<T, kurrentdb::Error>) -> bool {
    matches!(outcome, Err(kurrentdb::Error::AccessDenied))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_acls_for_a_user_a_role_everyone_and_nobody() {
    let secured = start();
    secured.user_command(&["add", "ada", "--password", "pw-ada", "--group", "readers"]);
    secured.user_command(&[
        "add",
        "bob",
        "--password",
        "pw-bob",
        "--group",
        "writers",
        "--group",
        "readers",
    ]);
    let admin = secured.admin();
    let ada = secured.client(Some(("ada", "pw-ada")));
    let bob = secured.client(Some(("bob", "pw-bob")));
    for stream in ["for-ada", "for-readers", "for-all", "for-none"] {
        append(&admin, stream).await.expect("admin appends");
    }
    set_acl(&admin, "for-ada", json!({"$r": "ada", "$w": "ada"})).await;
    set_acl(
        &admin,
        "for-readers",
        json!({"$r": ["readers"], "$w": "writers"}),
    )
    .await;
    set_acl(&admin, "for-all", json!({"$r": "$all", "$w": "$all"})).await;
    set_acl(&admin, "for-none", json!({"$r": [], "$w": [], "$mr": []})).await;

    assert_eq!(
        read(&ada, "for-ada").await.expect("ada reads her stream"),
        1
    );
    assert!(denied(read(&bob, "for-ada").await));
    append(&ada, "for-ada")
        .await
        .expect("ada writes her stream");
    assert!(denied(append(&bob, "for-ada").await));
    // A role: both are readers, only bob is a writer.
    assert_eq!(read(&ada, "for-readers").await.expect("reader"), 1);
    assert_eq!(read(&bob, "for-readers").await.expect("reader"), 1);
    assert!(denied(append(&ada, "for-readers").await));
    append(&bob, "for-readers")
        .await
        .expect("bob writes as a writer");
    // Everyone, and nobody (admins still pass).
    assert_eq!(read(&bob, "for-all").await.expect("everyone"), 1);
    assert!(denied(read(&ada, "for-none").await));
    assert!(denied(append(&bob, "for-none").await));
    assert!(
        denied(read(&ada, "$$for-none").await),
        "$mr [] hides the metadata"
    );
    assert_eq!(read(&admin, "for-none").await.expect("admin passes"), 1);
    // Streams without an ACL follow the default: everyone may read and write.
    append(&ada, "plain").await.expect("default user ACL");
    assert_eq!(read(&bob, "plain").await.expect("default user ACL"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_and_unknown_credentials_are_refused_and_write_nothing() {
    let secured = start();
    let admin = secured.admin();
    let anonymous = secured.client(None);
    let wrong = secured.client(Some(("admin", "not-the-password")));
    let unknown = secured.client(Some(("badlogin", "badpass")));
    for client in [&anonymous, &wrong, &unknown] {
        assert!(denied(append(client, "guarded").await));
        assert!(denied(read(client, "guarded").await));
    }
    assert_eq!(read(&admin, "guarded").await.expect("admin reads"), 0);
    append(&admin, "guarded").await.expect("admin appends");
    assert_eq!(read(&admin, "guarded").await.expect("admin reads"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_streams_are_for_admins_unless_settings_say_otherwise() {
    let secured = start();
    secured.user_command(&["add", "ada", "--password", "pw", "--group", "auditors"]);
    let admin = secured.admin();
    let ada = secured.client(Some(("ada", "pw")));
    append(&admin, "$audit")
        .await
        .expect("admin writes a system stream");
    assert!(denied(read(&ada, "$audit").await));
    assert!(denied(read(&ada, "$users").await));
    assert!(denied(read(&ada, "$user-admin").await));
    append(&ada, "orders")
        .await
        .expect("user streams are open by default");

    let settings = EventData::json(
        "$settings",
        &json!({
            "$userStreamAcl": {"$r": "$all", "$w": "writers"},
            "$systemStreamAcl": {"$r": ["$admins", "auditors"], "$w": "$admins"},
        }),
    )
    .expect("json");
    admin
        .append_to_stream(
            "$settings",
            &AppendToStreamOptions::default(),
            vec![settings],
        )
        .await
        .expect("admin overrides the defaults");
    assert_eq!(
        read(&ada, "$audit")
            .await
            .expect("auditors read system streams"),
        1
    );
    assert!(denied(append(&ada, "$audit").await));
    assert!(
        denied(append(&ada, "orders").await),
        "only writers write user streams now"
    );
    assert_eq!(read(&ada, "orders").await.expect("everyone reads"), 1);
    assert!(denied(append(&ada, "$settings").await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_and_subscribing_to_all_leaves_out_streams_the_user_may_not_read() {
    let secured = start();
    secured.user_command(&["add", "ada", "--password", "pw"]);
    let admin = secured.admin();
    let ada = secured.client(Some(("ada", "pw")));
    append(&admin, "visible").await.expect("append");
    append(&admin, "hidden").await.expect("append");
    set_acl(&admin, "hidden", json!({"$r": "bob", "$mr": "bob"})).await;
    // `$all` is a system stream: admins only until its metadata (`$$$all`) says otherwise.
    assert!(denied(read_all_streams(&ada).await));
    let everything = read_all_streams(&admin).await.expect("admin reads $all");
    assert!(everything.iter().any(|stream| stream == "hidden"));
    assert!(everything.iter().any(|stream| stream == "$user-admin"));
    set_acl(&admin, "$all", json!({"$r": "$all"})).await;
    let seen = read_all_streams(&ada).await.expect("ada reads $all");
    assert!(seen.iter().any(|stream| stream == "visible"), "{seen:?}");
    assert!(
        !seen.iter().any(|stream| stream == "hidden"
            || stream == "$$hidden"
            || stream.starts_with("$user")),
        "{seen:?}"
    );

    let mut subscription = ada
        .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::Start))
        .await;
    append(&admin, "hidden").await.expect("append");
    append(&admin, "visible-later").await.expect("append");
    let mut streams = Vec::new();
    while !streams.iter().any(|stream| stream == "visible-later") {
        let event = within("subscription", subscription.next())
            .await
            .expect("ada's subscription serves");
        streams.push(event.get_original_event().stream_id().to_owned());
    }
    assert!(
        !streams
            .iter()
            .any(|stream| stream == "hidden" || stream.starts_with("$user")),
        "{streams:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_users_log_in_until_disabled_or_deleted() {
    let secured = start();
    secured.user_command(&[
        "add",
        "ada",
        "--password",
        "pw1",
        "--full-name",
        "Ada L",
        "--group",
        "a",
    ]);
    let listed = secured.user_command(&["list"]);
    for login in ["ada", "admin", "ops"] {
        assert!(
            listed
                .lines()
                .any(|line| line.starts_with(&format!("{login}\t"))),
            "{listed}"
        );
    }
    let shown = secured.user_command(&["show", "ada"]);
    assert!(shown.contains("Ada L") && shown.contains("[a]"), "{shown}");
    let ada = secured.client(Some(("ada", "pw1")));
    append(&ada, "notes").await.expect("ada appends");

    secured.user_command(&["passwd", "ada", "--password", "pw2"]);
    assert!(
        denied(append(&ada, "notes").await),
        "the old password stops working"
    );
    let ada = secured.client(Some(("ada", "pw2")));
    append(&ada, "notes").await.expect("the new password works");

    secured.user_command(&["disable", "ada"]);
    assert!(
        denied(append(&ada, "notes").await),
        "a disabled user cannot log in"
    );
    secured.user_command(&["enable", "ada"]);
    append(&ada, "notes").await.expect("enabled again");

    secured.user_command(&["delete", "ada"]);
    assert!(
        denied(append(&ada, "notes").await),
        "a deleted user's credentials fail"
    );
    let admin = secured.admin();
    assert_eq!(read(&admin, "notes").await.expect("admin reads"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_subscriptions_end_when_their_user_is_disabled_deleted_or_changes_password() {
    let secured = start();
    for login in ["ada", "bob", "cid", "dan"] {
        secured.user_command(&["add", login, "--password", "pw"]);
    }
    let admin = secured.admin();
    append(&admin, "watched").await.expect("append");
    let mut subscriptions = Vec::new();
    for login in ["ada", "bob", "cid", "dan"] {
        let client = secured.client(Some((login, "pw")));
        let mut subscription = client
            .subscribe_to_stream(
                "watched",
                &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
            )
            .await;
        within("the first event", subscription.next())
            .await
            .expect("the subscription serves");
        subscriptions.push((login, subscription));
    }
    secured.user_command(&["disable", "ada"]);
    secured.user_command(&["passwd", "bob", "--password", "pw2"]);
    secured.user_command(&["delete", "cid"]);
    for (login, subscription) in subscriptions.iter_mut().take(3) {
        // No new event: the change itself ends the subscription.
        let outcome = within("the subscription's end", subscription.next()).await;
        assert!(
            denied(outcome),
            "{login}'s subscription ends with access denied"
        );
    }
    append(&admin, "watched").await.expect("append");
    let (_, dan) = &mut subscriptions[3];
    let event = within("dan's next event", dan.next())
        .await
        .expect("an unchanged user's subscription goes on");
    assert_eq!(event.get_original_event().revision, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_subscriptions_deliver_only_what_the_consumer_may_read() {
    let secured = start();
    secured.user_command(&["add", "ada", "--password", "pw"]);
    let admin = secured.admin();
    let ada = secured.client(Some(("ada", "pw")));
    append(&admin, "hidden").await.expect("append");
    set_acl(&admin, "hidden", json!({"$r": "bob", "$mr": "bob"})).await;
    set_acl(&admin, "$all", json!({"$r": "$all"})).await;

    // A group on a stream the user may not read refuses her.
    admin
        .create_persistent_subscription("hidden", "g", &PersistentSubscriptionOptions::default())
        .await
        .expect("admin creates a group");
    let refused = match ada
        .subscribe_to_persistent_subscription(
            "hidden",
            "g",
            &SubscribeToPersistentSubscriptionOptions::default(),
        )
        .await
    {
        Ok(mut subscription) => within("refusal", subscription.next()).await.map(|_| ()),
        Err(error) => Err(error),
    };
    let shown = format!("{refused:?}");
    assert!(denied(refused), "{shown}");

    // A `$all` group: events of `hidden` are left out for ada, and acked so the group
    // moves past them.
    let from_start =
        PersistentSubscriptionToAllOptions::default().start_from(StreamPosition::Start);
    admin
        .create_persistent_subscription_to_all("everything", &from_start)
        .await
        .expect("admin creates a $all group");
    append(&admin, "hidden").await.expect("append");
    append(&admin, "visible").await.expect("append");
    let options = SubscribeToPersistentSubscriptionOptions::default();
    let mut consumer = ada
        .subscribe_to_persistent_subscription_to_all("everything", &options)
        .await
        .expect("ada consumes from $all");
    let mut seen = Vec::new();
    while !seen.iter().any(|stream| stream == "visible") {
        let event = within("ada's next event", consumer.next())
            .await
            .expect("the group serves");
        consumer.ack(&event).await.expect("ack");
        seen.push(event.get_original_event().stream_id().to_owned());
    }
    assert!(
        !seen
            .iter()
            .any(|stream| stream == "hidden" || stream.starts_with("$user")),
        "{seen:?}"
    );
    drop(consumer);
    // Another consumer of the group (admin, who may read everything) gets what follows, and
    // not the hidden events: ada's share of the group acked them.
    append(&admin, "after").await.expect("append");
    let mut consumer = admin
        .subscribe_to_persistent_subscription_to_all("everything", &options)
        .await
        .expect("admin consumes from $all");
    let mut later = Vec::new();
    while !later.iter().any(|stream| stream == "after") {
        let event = within("admin's next event", consumer.next())
            .await
            .expect("the group serves");
        consumer.ack(&event).await.expect("ack");
        later.push(event.get_original_event().stream_id().to_owned());
    }
    assert!(!later.iter().any(|stream| stream == "hidden"), "{later:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_client_speaks_tls_and_sends_the_connection_strings_credentials() {
    let secured = start();
    let stream = strata_core::StreamName::new("benched").expect("a stream name");
    let event = || vec![strata_core::ProposedEvent::json("Happened", "{}")];
    let admin = strata_grpc::client::Client::connect(&secured.url(Some(("admin", "changeit"))))
        .await
        .expect("connects over TLS");
    within(
        "append as admin",
        admin.append(&stream, strata_core::ExpectedRevision::Any, event()),
    )
    .await
    .expect("admin appends");
    let anonymous = strata_grpc::client::Client::connect(&secured.url(None))
        .await
        .expect("connects over TLS");
    let refused = within(
        "append without credentials",
        anonymous.append(&stream, strata_core::ExpectedRevision::Any, event()),
    )
    .await
    .expect_err("no credentials, no append");
    assert!(
        refused.to_string().contains("PermissionDenied"),
        "{refused}"
    );
}

fn strata(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("strata runs");
    assert!(
        output.status.success(),
        "strata {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_the_targets_own_users_and_adds_the_others() {
    let source = start();
    source.user_command(&["add", "ada", "--password", "pw-ada"]);
    source.user_command(&["passwd", "ops", "--password", "source-ops"]);
    append(&source.admin(), "orders").await.expect("append");
    let target = start();
    let file = tempfile::tempdir().expect("temp dir");
    let export = file.path().join("export.ndjson");
    let export = export.to_str().expect("UTF-8 path");
    strata(&[
        "export",
        "--to",
        export,
        "--server",
        &source.url(Some(("admin", "changeit"))),
    ]);
    strata(&[
        "import",
        export,
        "--server",
        &target.url(Some(("admin", "changeit"))),
    ]);
    // The target's ops keeps its password; ada comes over with hers.
    append(&target.client(Some(("ops", "changeit"))), "ops-notes")
        .await
        .expect("the target's ops password is kept");
    assert!(denied(
        append(&target.client(Some(("ops", "source-ops"))), "ops-notes").await
    ));
    append(&target.client(Some(("ada", "pw-ada"))), "ada-notes")
        .await
        .expect("ada was imported");
    let listed = target.user_command(&["list"]);
    let logins: Vec<_> = listed
        .lines()
        .filter_map(|line| line.split('\t').next())
        .collect();
    assert_eq!(logins, ["ada", "admin", "ops"], "{listed}");
    assert_eq!(read(&target.admin(), "orders").await.expect("read"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_prints_a_connection_string_that_works() {
    if support::postgres_requested() {
        // --dev keeps its certificate in --data-dir, which a PostgreSQL server has none of.
        return;
    }
    let server = Server::start_with(&["--dev"]);
    let stderr = server.stderr();
    let prefix = format!(
        "kurrentdb://admin:changeit@localhost:{}?tlsCaFile=",
        server.port()
    );
    let url = stderr
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no connection string in: {stderr}"))
        .to_owned();
    let settings: ClientSettings = url.parse().expect("the printed string parses");
    let client = Client::new(settings).expect("client builds");
    append(&client, "dev")
        .await
        .expect("admin appends over TLS");
    let anonymous: ClientSettings = url.replace("admin:changeit@", "").parse().expect("parses");
    let anonymous = Client::new(anonymous).expect("client builds");
    assert!(
        denied(append(&anonymous, "dev").await),
        "authentication is on"
    );
}
