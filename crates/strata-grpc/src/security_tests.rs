//! Authentication, authorisation and the Users service over a real loopback connection,
//! with the exact statuses and trailers the reference server answers.

use std::sync::Arc;

use prost::bytes::Bytes;
use strata_auth::{Credentials, Security, SecurityOptions};
use strata_core::{EventStore, StreamName, StreamState};
use strata_engine::{Config, Store};
use tonic::{Code, Request, Status};

use crate::proto::event_store::client::persistent_subscriptions::persistent_subscriptions_client::PersistentSubscriptionsClient;
use crate::proto::event_store::client::persistent_subscriptions::{CreateReq, create_req};
use crate::proto::event_store::client::streams::append_req::options::ExpectedStreamRevision;
use crate::proto::event_store::client::streams::streams_client::StreamsClient;
use crate::proto::event_store::client::streams::{AppendReq, append_req};
use crate::proto::event_store::client::users::users_client::UsersClient;
use crate::proto::event_store::client::users::{
    ChangePasswordReq, CreateReq as CreateUserReq, DeleteReq, DetailsReq, DisableReq, EnableReq,
    ResetPasswordReq, change_password_req, create_req as create_user_req, delete_req, details_req,
    disable_req, enable_req, reset_password_req,
};
use crate::proto::event_store::client::{Empty, StreamIdentifier, Uuid, uuid};
use crate::test_server::{Running, serve_store};

async fn secured(allow_anonymous: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let shared: Arc<dyn EventStore> = store.clone();
    let options = SecurityOptions {
        allow_anonymous,
        ..SecurityOptions::default()
    };
    let security = Security::enabled(shared, options).await.unwrap();
    serve_store(store, dir, |mut options| {
        options.security = Some(security);
        options
    })
    .await
}

fn basic(login: &str, password: &str) -> String {
    Credentials::new(login, password).to_header()
}

fn with_header<T>(message: T, header: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(header) = header {
        request
            .metadata_mut()
            .insert("authorization", header.parse().unwrap());
    }
    request
}

fn append_requests(stream: &str) -> Vec<AppendReq> {
    vec![
        AppendReq {
            content: Some(append_req::Content::Options(append_req::Options {
                stream_identifier: Some(StreamIdentifier {
                    stream_name: Bytes::copy_from_slice(stream.as_bytes()),
                }),
                expected_stream_revision: Some(ExpectedStreamRevision::Any(Empty {})),
            })),
        },
        AppendReq {
            content: Some(append_req::Content::ProposedMessage(
                crate::proposed_message::ProposedMessage {
                    id: Some(Uuid {
                        value: Some(uuid::Value::String(::uuid::Uuid::new_v4().to_string())),
                    }),
                    metadata: [
                        ("type".to_owned(), "Happened".to_owned()),
                        ("content-type".to_owned(), "application/json".to_owned()),
                    ]
                    .into_iter()
                    .collect(),
                    custom_metadata: Bytes::new(),
                    data: Bytes::from_static(b"{}"),
                },
            )),
        },
    ]
}

async fn append(running: &Running, stream: &str, header: Option<&str>) -> Result<(), Status> {
    let mut client = StreamsClient::new(running.channel.clone());
    let requests = tonic::codegen::tokio_stream::iter(append_requests(stream));
    client
        .append(with_header(requests, header))
        .await
        .map(|_| ())
}

async fn stream_state(running: &Running, stream: &str) -> StreamState {
    running
        .store
        .stream_state(&StreamName::new(stream).unwrap())
        .await
        .unwrap()
}

fn assert_access_denied(outcome: Result<(), Status>) {
    let status = outcome.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("exception")
            .and_then(|v| v.to_str().ok()),
        Some("access-denied")
    );
}

#[tokio::test]
async fn missing_credentials_are_access_denied_and_wrong_ones_unauthenticated() {
    let running = secured(false).await;
    assert_access_denied(append(&running, "orders", None).await);
    let wrong = append(&running, "orders", Some(&basic("admin", "wrong"))).await;
    assert_eq!(wrong.unwrap_err().code(), Code::Unauthenticated);
    let unknown = append(&running, "orders", Some(&basic("badlogin", "badpass"))).await;
    assert_eq!(unknown.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(
        stream_state(&running, "orders").await,
        StreamState::NoStream
    );
    append(&running, "orders", Some(&basic("admin", "changeit")))
        .await
        .expect("admin appends");
    assert_ne!(
        stream_state(&running, "orders").await,
        StreamState::NoStream
    );
}

#[tokio::test]
async fn malformed_unknown_and_huge_headers_are_refused_and_write_nothing() {
    let running = secured(true).await;
    // Over our 8 KiB bound but under the HTTP/2 header-list limit: refused by us.
    let huge = format!("Basic {}", "QUFB".repeat(2300));
    for header in [
        "Basic !!!not-base64",
        "Basic YWRtaW4=", // "admin": no password separator
        "Bearer some.jwt.token",
        "Digest username=admin",
        huge.as_str(),
    ] {
        let status = append(&running, "untouched", Some(header))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{header:.40}: {status:?}"
        );
    }
    assert_eq!(
        stream_state(&running, "untouched").await,
        StreamState::NoStream
    );
    // Anonymous access is on here: the same append without a header is served.
    append(&running, "untouched", None)
        .await
        .expect("anonymous append");
}

#[tokio::test]
async fn users_service_manages_users_with_the_reference_statuses() {
    let running = secured(false).await;
    let admin = basic("admin", "changeit");
    let mut users = UsersClient::new(running.channel.clone());
    let create = |login: &str, password: &str| CreateUserReq {
        options: Some(create_user_req::Options {
            login_name: login.to_owned(),
            password: password.to_owned(),
            full_name: format!("{login} full"),
            groups: vec!["staff".to_owned()],
        }),
    };
    users
        .create(with_header(create("ada", "pw"), Some(&admin)))
        .await
        .expect("admin creates a user");
    let conflict = users
        .create(with_header(create("ada", "pw"), Some(&admin)))
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::FailedPrecondition);
    assert_eq!(
        conflict
            .metadata()
            .get("exception")
            .and_then(|v| v.to_str().ok()),
        Some("user-conflict")
    );
    let ada = basic("ada", "pw");
    let refused = users
        .create(with_header(create("eve", "pw"), Some(&ada)))
        .await
        .map(|_| ());
    assert_access_denied(refused);

    let details = |login: &str| DetailsReq {
        options: Some(details_req::Options {
            login_name: login.to_owned(),
        }),
    };
    let mut one = users
        .details(with_header(details("ada"), Some(&ada)))
        .await
        .expect("a user reads itself")
        .into_inner();
    let shown = one.message().await.unwrap().unwrap().user_details.unwrap();
    assert_eq!(shown.login_name, "ada");
    assert_eq!(shown.full_name, "ada full");
    assert_eq!(shown.groups, ["staff"]);
    assert!(shown.last_updated.unwrap().ticks_since_epoch > 0);
    assert!(one.message().await.unwrap().is_none());
    let mut all = users
        .details(with_header(details(""), Some(&admin)))
        .await
        .expect("admin lists users")
        .into_inner();
    let mut logins = Vec::new();
    while let Some(answer) = all.message().await.unwrap() {
        logins.push(answer.user_details.unwrap().login_name);
    }
    assert_eq!(logins, ["ada", "admin", "ops"]);
    let missing = users
        .details(with_header(details("nobody"), Some(&admin)))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        missing
            .metadata()
            .get("exception")
            .and_then(|v| v.to_str().ok()),
        Some("user-not-found")
    );

    users
        .change_password(with_header(
            ChangePasswordReq {
                options: Some(change_password_req::Options {
                    login_name: "ada".to_owned(),
                    current_password: "pw".to_owned(),
                    new_password: "pw2".to_owned(),
                }),
            },
            Some(&ada),
        ))
        .await
        .expect("ada changes her password");
    let old = append(&running, "notes", Some(&ada)).await.unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated);
    let ada = basic("ada", "pw2");
    append(&running, "notes", Some(&ada))
        .await
        .expect("new password works");

    users
        .reset_password(with_header(
            ResetPasswordReq {
                options: Some(reset_password_req::Options {
                    login_name: "ada".to_owned(),
                    new_password: "pw3".to_owned(),
                }),
            },
            Some(&admin),
        ))
        .await
        .expect("admin resets");
    let ada = basic("ada", "pw3");
    append(&running, "notes", Some(&ada))
        .await
        .expect("reset password works");

    let login_only = |login: &str| disable_req::Options {
        login_name: login.to_owned(),
    };
    users
        .disable(with_header(
            DisableReq {
                options: Some(login_only("ada")),
            },
            Some(&admin),
        ))
        .await
        .expect("disabled");
    let disabled = append(&running, "notes", Some(&ada)).await.unwrap_err();
    assert_eq!(disabled.code(), Code::Unauthenticated);
    users
        .enable(with_header(
            EnableReq {
                options: Some(enable_req::Options {
                    login_name: "ada".to_owned(),
                }),
            },
            Some(&admin),
        ))
        .await
        .expect("enabled");
    append(&running, "notes", Some(&ada))
        .await
        .expect("enabled again");

    users
        .delete(with_header(
            DeleteReq {
                options: Some(delete_req::Options {
                    login_name: "ada".to_owned(),
                }),
            },
            Some(&admin),
        ))
        .await
        .expect("deleted");
    let deleted = append(&running, "notes", Some(&ada)).await.unwrap_err();
    assert_eq!(deleted.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn ops_manage_persistent_subscriptions_and_users_cannot() {
    let running = secured(false).await;
    let mut users = UsersClient::new(running.channel.clone());
    users
        .create(with_header(
            CreateUserReq {
                options: Some(create_user_req::Options {
                    login_name: "ada".to_owned(),
                    password: "pw".to_owned(),
                    full_name: String::new(),
                    groups: Vec::new(),
                }),
            },
            Some(&basic("admin", "changeit")),
        ))
        .await
        .unwrap();
    let create = |group: &str| CreateReq {
        options: Some(create_req::Options {
            stream_identifier: Some(StreamIdentifier {
                stream_name: Bytes::from_static(b"orders"),
            }),
            group_name: group.to_owned(),
            settings: Some(create_req::Settings {
                live_buffer_size: 500,
                read_batch_size: 20,
                history_buffer_size: 500,
                max_checkpoint_count: 1_000,
                consumer_strategy: "RoundRobin".to_owned(),
                ..create_req::Settings::default()
            }),
            stream_option: None,
        }),
    };
    let mut persistent = PersistentSubscriptionsClient::new(running.channel.clone());
    let refused = persistent
        .create(with_header(create("g1"), Some(&basic("ada", "pw"))))
        .await
        .map(|_| ());
    assert_access_denied(refused);
    persistent
        .create(with_header(create("g1"), Some(&basic("ops", "changeit"))))
        .await
        .expect("ops create a group");
    let ops_managing_users = users
        .reset_password(with_header(
            ResetPasswordReq {
                options: Some(reset_password_req::Options {
                    login_name: "ada".to_owned(),
                    new_password: "x".to_owned(),
                }),
            },
            Some(&basic("ops", "changeit")),
        ))
        .await
        .map(|_| ());
    assert_access_denied(ops_managing_users);
}

/// Without security every caller is the system, whatever credentials it sends; only an
/// `authorization` header that is not visible ASCII is refused, as with security on.
#[tokio::test]
async fn without_security_any_credentials_append_and_an_unreadable_header_is_refused() {
    let running = crate::test_server::serve(Config::small_for_tests()).await;
    for header in [
        None,
        Some(basic("admin", "wrong").as_str()),
        Some("Bearer x"),
    ] {
        append(&running, "orders", header)
            .await
            .unwrap_or_else(|status| panic!("{header:?}: {status:?}"));
    }
    assert_eq!(
        stream_state(&running, "orders").await,
        StreamState::At(strata_core::Revision(2))
    );
    let mut request = Request::new(tonic::codegen::tokio_stream::iter(append_requests(
        "orders",
    )));
    let unreadable = tonic::metadata::MetadataValue::try_from(&b"Basic caf\xc3\xa9"[..]).unwrap();
    request.metadata_mut().insert("authorization", unreadable);
    let refused = StreamsClient::new(running.channel.clone())
        .append(request)
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert_eq!(
        stream_state(&running, "orders").await,
        StreamState::At(strata_core::Revision(2))
    );
}
