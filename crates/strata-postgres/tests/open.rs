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

/// A database that cannot store every string the contract accepts is refused at open,
/// with the database and its encoding named (here SQL_ASCII, which checks nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_not_utf8_is_refused() {
    let database = format!("strata_test_ascii_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&test_url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "CREATE DATABASE {database} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' \
             TEMPLATE template0"
        ))
        .await
        .expect("creates a SQL_ASCII database");
    let config = PostgresConfig::new(with_database(&test_url(), &database));
    let opened = PostgresStore::open(config).await;
    client
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await
        .expect("drops the test database");
    let error = match opened {
        Err(error) => error,
        Ok(_) => panic!("a SQL_ASCII database must be refused"),
    };
    assert!(
        matches!(&error, PostgresError::UnsupportedEncoding { encoding, .. } if encoding == "SQL_ASCII"),
        "got {error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&database), "{message}");
    assert!(message.contains("ENCODING 'UTF8'"), "{message}");
}

/// `url` naming `database` instead of its own.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').expect("the URL names a database");
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}
