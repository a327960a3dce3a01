//! The security model over a real engine store, through the public API only.

use std::sync::Arc;

use serde_json::json;
use strata_auth::{
    Action, AuthError, Credentials, Principal, Security, SecurityOptions, StreamOperation,
};
use strata_core::{
    EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, ReadStreamOptions, StreamMetadata,
    StreamName,
};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn EventStore>,
    security: Arc<Security>,
}

async fn fixture(options: SecurityOptions) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn EventStore> =
        strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())
            .expect("store opens");
    let security = Security::enabled(Arc::clone(&store), options)
        .await
        .expect("security starts");
    Fixture {
        _dir: dir,
        store,
        security,
    }
}

fn stream(name: &str) -> StreamName {
    StreamName::new(name).expect("valid name")
}

async fn login(security: &Security, login: &str, password: &str) -> Result<Principal, AuthError> {
    let header = Credentials::new(login, password).to_header();
    security.authenticate(Some(&header), None).await
}

async fn set_acl(store: &Arc<dyn EventStore>, name: &str, acl: serde_json::Value) {
    let metadata = StreamMetadata {
        acl: Some(acl),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&stream(name), ExpectedRevision::Any, &metadata)
        .await
        .expect("metadata written");
}

async fn allowed(
    security: &Security,
    principal: &Principal,
    operation: StreamOperation,
    name: &str,
) -> bool {
    match security
        .authorize(principal, operation, &stream(name))
        .await
    {
        Ok(()) => true,
        Err(AuthError::AccessDenied { .. }) => false,
        Err(error) => panic!("unexpected error: {error}"),
    }
}

#[tokio::test]
async fn built_in_users_exist_with_their_roles_and_wrong_passwords_fail() {
    let fixture = fixture(SecurityOptions {
        ops_password: "opspass".to_owned(),
        ..SecurityOptions::default()
    })
    .await;
    let admin = login(&fixture.security, "admin", "changeit")
        .await
        .expect("admin");
    assert!(admin.is_admin());
    let ops = login(&fixture.security, "ops", "opspass")
        .await
        .expect("ops");
    assert!(ops.is_operator() && !ops.is_admin());
    assert!(matches!(
        login(&fixture.security, "ops", "changeit").await,
        Err(AuthError::BadCredentials)
    ));
    assert!(matches!(
        login(&fixture.security, "badlogin", "badpass").await,
        Err(AuthError::BadCredentials)
    ));
    assert!(matches!(
        fixture.security.authenticate(Some("Bearer x"), None).await,
        Err(AuthError::BadHeader { .. })
    ));
    let users = fixture.security.list_users().await.expect("list");
    let logins: Vec<_> = users.iter().map(|user| user.login_name.as_str()).collect();
    assert_eq!(logins, ["admin", "ops"]);
}

#[tokio::test]
async fn acls_for_a_user_a_role_everyone_and_nobody() {
    let fixture = fixture(SecurityOptions::default()).await;
    let security = &fixture.security;
    security
        .create_user(
            "ada",
            "Ada",
            &["readers".to_owned(), "writers".to_owned()],
            "pw1",
        )
        .await
        .expect("ada");
    security
        .create_user("bob", "Bob", &[], "pw2")
        .await
        .expect("bob");
    let ada = login(security, "ada", "pw1").await.expect("ada logs in");
    let bob = login(security, "bob", "pw2").await.expect("bob logs in");
    let anonymous = security.authenticate(None, None).await.expect("anonymous");

    set_acl(
        &fixture.store,
        "for-bob",
        json!({"$r": "bob", "$w": ["bob"]}),
    )
    .await;
    set_acl(
        &fixture.store,
        "for-readers",
        json!({"$r": "readers", "$w": "nobody"}),
    )
    .await;
    set_acl(&fixture.store, "for-all", json!({"$r": "$all"})).await;
    set_acl(&fixture.store, "for-none", json!({"$r": [], "$mr": []})).await;

    assert!(allowed(security, &bob, StreamOperation::Read, "for-bob").await);
    assert!(!allowed(security, &ada, StreamOperation::Read, "for-bob").await);
    assert!(allowed(security, &ada, StreamOperation::Read, "for-readers").await);
    assert!(!allowed(security, &ada, StreamOperation::Write, "for-readers").await);
    assert!(!allowed(security, &bob, StreamOperation::Read, "for-readers").await);
    assert!(allowed(security, &bob, StreamOperation::Read, "for-all").await);
    assert!(!allowed(security, &bob, StreamOperation::Read, "for-none").await);
    // Operations the ACL does not name fall back to the user-stream default ($all).
    assert!(allowed(security, &bob, StreamOperation::Delete, "for-readers").await);
    // The metadata stream is checked as the stream's metadata.
    assert!(!allowed(security, &bob, StreamOperation::Read, "$$for-none").await);
    assert!(allowed(security, &bob, StreamOperation::Read, "$$for-bob").await);
    // Anonymous callers are refused everything while anonymous access is off.
    assert!(!allowed(security, &anonymous, StreamOperation::Read, "for-all").await);
    // System streams are admin-only; admins pass every ACL.
    assert!(!allowed(security, &ada, StreamOperation::Read, "$secret").await);
    let admin = login(security, "admin", "changeit").await.expect("admin");
    assert!(allowed(security, &admin, StreamOperation::Read, "for-none").await);
    assert!(allowed(security, &admin, StreamOperation::Write, "$secret").await);
    assert!(!allowed(security, &admin, StreamOperation::Write, "$all").await);
}

#[tokio::test]
async fn anonymous_callers_get_what_everyone_gets_when_allowed() {
    let fixture = fixture(SecurityOptions {
        allow_anonymous: true,
        ..SecurityOptions::default()
    })
    .await;
    let anonymous = fixture
        .security
        .authenticate(None, None)
        .await
        .expect("anonymous");
    set_acl(&fixture.store, "private", json!({"$r": "ada"})).await;
    assert!(
        allowed(
            &fixture.security,
            &anonymous,
            StreamOperation::Read,
            "public"
        )
        .await
    );
    assert!(
        !allowed(
            &fixture.security,
            &anonymous,
            StreamOperation::Read,
            "private"
        )
        .await
    );
}

#[tokio::test]
async fn settings_override_the_defaults_for_user_and_system_streams() {
    let fixture = fixture(SecurityOptions::default()).await;
    let security = &fixture.security;
    security
        .create_user("ada", "Ada", &["auditors".to_owned()], "pw")
        .await
        .expect("ada");
    let ada = login(security, "ada", "pw").await.expect("ada");
    assert!(allowed(security, &ada, StreamOperation::Write, "orders").await);
    let settings = json!({
        "$userStreamAcl": {"$r": "$all", "$w": "writers"},
        "$systemStreamAcl": {"$r": ["$admins", "auditors"]},
    });
    fixture
        .store
        .append(
            &stream("$settings"),
            ExpectedRevision::Any,
            vec![ProposedEvent::json("$settings", settings.to_string())],
        )
        .await
        .expect("settings written");
    assert!(!allowed(security, &ada, StreamOperation::Write, "orders").await);
    assert!(allowed(security, &ada, StreamOperation::Read, "orders").await);
    assert!(allowed(security, &ada, StreamOperation::Read, "$audit").await);
    // Not named in the system ACL: the built-in default (admins) still applies.
    assert!(!allowed(security, &ada, StreamOperation::Write, "$audit").await);
}

#[tokio::test]
async fn reads_of_all_leave_out_streams_the_caller_may_not_read() {
    let fixture = fixture(SecurityOptions::default()).await;
    let security = &fixture.security;
    security
        .create_user("ada", "Ada", &[], "pw")
        .await
        .expect("ada");
    let ada = login(security, "ada", "pw").await.expect("ada");
    let ada_store = security.store_for(ada.clone());
    // $all is a system stream: admins only until $$$all says otherwise.
    assert!(matches!(
        ada_store.read_all(ReadAllOptions::forwards()).await,
        Err(strata_core::Error::AccessDenied { .. })
    ));
    set_acl(&fixture.store, "$all", json!({"$r": "$all"})).await;
    set_acl(&fixture.store, "hidden", json!({"$r": "bob"})).await;
    for name in ["visible", "hidden"] {
        fixture
            .store
            .append(
                &stream(name),
                ExpectedRevision::Any,
                vec![ProposedEvent::json("Happened", "{}")],
            )
            .await
            .expect("appended");
    }
    let seen = ada_store
        .read_all(ReadAllOptions::forwards())
        .await
        .expect("ada reads $all");
    let streams: Vec<_> = seen
        .events
        .iter()
        .map(|event| event.stream.as_str())
        .collect();
    assert!(streams.contains(&"visible"), "{streams:?}");
    assert!(
        !streams
            .iter()
            .any(|name| *name == "hidden" || name.starts_with("$user") || *name == "$settings"),
        "{streams:?}"
    );
    // The ACL of `hidden` names no `$mr`: its metadata falls back to the default ($all).
    assert!(streams.contains(&"$$hidden"), "{streams:?}");
    let admin = login(security, "admin", "changeit").await.expect("admin");
    let everything = security
        .store_for(admin)
        .read_all(ReadAllOptions::forwards())
        .await
        .expect("admin reads $all");
    assert!(
        everything
            .events
            .iter()
            .any(|event| event.stream.as_str() == "hidden")
    );
    // Writes through the caller's store are checked too.
    assert!(matches!(
        ada_store
            .append(
                &stream("$secret"),
                ExpectedRevision::Any,
                vec![ProposedEvent::json("X", "{}")]
            )
            .await,
        Err(strata_core::Error::AccessDenied { .. })
    ));
    assert!(matches!(
        ada_store
            .read_stream(&stream("hidden"), ReadStreamOptions::forwards())
            .await,
        Err(strata_core::Error::AccessDenied { .. })
    ));
}

#[tokio::test]
async fn user_lifecycle_invalidates_verified_credentials() {
    let fixture = fixture(SecurityOptions::default()).await;
    let security = &fixture.security;
    security
        .create_user("ada", "Ada Lovelace", &["a".to_owned()], "pw")
        .await
        .expect("created");
    assert!(matches!(
        security.create_user("ada", "Again", &[], "pw").await,
        Err(AuthError::UserConflict { .. })
    ));
    login(security, "ada", "pw").await.expect("logs in");
    login(security, "ada", "pw")
        .await
        .expect("logs in from the cache");

    security
        .set_user_disabled("ada", true)
        .await
        .expect("disabled");
    assert!(
        security
            .user_details("ada")
            .await
            .expect("details")
            .disabled
    );
    assert!(matches!(
        login(security, "ada", "pw").await,
        Err(AuthError::BadCredentials)
    ));
    security
        .set_user_disabled("ada", false)
        .await
        .expect("enabled");
    login(security, "ada", "pw").await.expect("logs in again");

    security
        .update_user("ada", "Ada L.", &["b".to_owned()])
        .await
        .expect("updated");
    let ada = login(security, "ada", "pw").await.expect("logs in");
    assert!(ada.has_role("b") && !ada.has_role("a"), "{ada:?}");

    assert!(matches!(
        security.change_password("ada", "wrong", "new").await,
        Err(AuthError::AccessDenied { .. })
    ));
    security
        .change_password("ada", "pw", "pw2")
        .await
        .expect("changed");
    assert!(login(security, "ada", "pw").await.is_err());
    login(security, "ada", "pw2").await.expect("new password");
    security.reset_password("ada", "pw3").await.expect("reset");
    assert!(login(security, "ada", "pw2").await.is_err());
    login(security, "ada", "pw3").await.expect("reset password");

    security.delete_user("ada").await.expect("deleted");
    assert!(matches!(
        login(security, "ada", "pw3").await,
        Err(AuthError::BadCredentials)
    ));
    assert!(matches!(
        security.user_details("ada").await,
        Err(AuthError::UserNotFound { .. })
    ));
    assert!(matches!(
        security.delete_user("ada").await,
        Err(AuthError::UserNotFound { .. })
    ));
    // The login can be created again.
    security
        .create_user("ada", "Ada", &[], "pw4")
        .await
        .expect("recreated");
    login(security, "ada", "pw4")
        .await
        .expect("recreated user logs in");
}

#[tokio::test]
async fn ops_manage_subscriptions_but_not_users() {
    let fixture = fixture(SecurityOptions::default()).await;
    let security = &fixture.security;
    let ops = login(security, "ops", "changeit").await.expect("ops");
    let admin = login(security, "admin", "changeit").await.expect("admin");
    assert!(
        security
            .authorize_action(&ops, &Action::ManagePersistentSubscriptions)
            .is_ok()
    );
    assert!(
        security
            .authorize_action(&ops, &Action::ManageUsers)
            .is_err()
    );
    assert!(
        security
            .authorize_action(&admin, &Action::ManageUsers)
            .is_ok()
    );
    assert!(
        security
            .authorize_action(&ops, &Action::ReadUser("ops".to_owned()))
            .is_ok()
    );
    assert!(
        security
            .authorize_action(&ops, &Action::ReadUser("admin".to_owned()))
            .is_err()
    );
}

#[tokio::test]
async fn restarting_keeps_users_and_does_not_write_them_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = || {
        strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())
            .expect("store opens")
    };
    let engine = open();
    let store: Arc<dyn EventStore> = engine.clone();
    let security = Security::enabled(Arc::clone(&store), SecurityOptions::default())
        .await
        .expect("first start");
    security
        .reset_password("admin", "s3cret")
        .await
        .expect("reset");
    let end = store.last_position().await.expect("position");
    drop(security);
    drop(store);
    engine.close();
    drop(engine);
    let store: Arc<dyn EventStore> = open();
    let security = Security::enabled(Arc::clone(&store), SecurityOptions::default())
        .await
        .expect("second start");
    assert_eq!(store.last_position().await.expect("position"), end);
    login(&security, "admin", "s3cret")
        .await
        .expect("kept password");
}
