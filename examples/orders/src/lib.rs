//! Orders: an order aggregate (placed → paid → shipped, with cancel rules) and an order
//! list kept in PostgreSQL by a projection that commits its rows with its checkpoint.

pub mod demo;
pub mod order;
pub mod order_list;

use anyhow::Context;

/// The database the example uses unless told otherwise.
pub const POSTGRES_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Connects to `url`, creates `schema` when missing and works inside it.
///
/// # Errors
/// When the database cannot be reached or refuses the schema.
pub async fn connect(url: &str, schema: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {url}; start it or give another URL with \
                 --postgres"
            )
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("orders: the PostgreSQL connection ended: {error}");
        }
    });
    let schema = quote_identifier(schema);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
        ))
        .await
        .with_context(|| format!("cannot create or use schema {schema}"))?;
    Ok(client)
}

/// `name` as a quoted SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
