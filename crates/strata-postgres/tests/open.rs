//! Opening: clear errors for an unreachable database and for a schema a newer binary made.

mod support;

use strata_postgres::{PostgresConfig, PostgresError, PostgresStore, SCHEMA_VERSION};
use support::{TestSchema, test_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let config = PostgresConfig::new("postgres://postgres@127.0.0.1:1/test");
    let error = match PostgresStore::open(config).await {
        Err(error) => error,
        Ok(_) => panic!("opening a store on a closed port must fail"),
    };
    assert!(
        matches!(error, PostgresError::Unreachable { .. }),
        "got {error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:1/test"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_url_is_refused() {
    let config = PostgresConfig::new("postgres://host:notaport/db");
    assert!(matches!(
        PostgresStore::open(config).await,
        Err(PostgresError::InvalidUrl { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_newer_than_the_binary_is_refused() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    store.close().await;
    drop(store);
    let (client, connection) = tokio_postgres::connect(&test_url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
        .execute(
            &format!("UPDATE \"{}\".strata_schema SET version = $1", schema.name),
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .expect("the version is bumped");
    let error = match PostgresStore::open(schema.config()).await {
        Err(error) => error,
        Ok(_) => panic!("a newer schema must be refused"),
    };
    match &error {
        PostgresError::SchemaTooNew {
            found, supported, ..
        } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_an_up_to_date_schema_keeps_its_version() {
    let schema = TestSchema::new();
    for _ in 0..2 {
        let store = PostgresStore::open(schema.config()).await.expect("opens");
        store.close().await;
    }
}
