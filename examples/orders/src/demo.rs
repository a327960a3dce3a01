//! The story `cargo run -p orders` tells: four orders through the rules, then the order
//! list rebuilt in PostgreSQL and caught up again with nothing left to apply.

use std::sync::Arc;

use strata::{CommandError, EventStore, ProjectionSource, Repository, SqlProjectionRunner};

use crate::order::{Cents, Order, OrderCommand, OrderLine};
use crate::order_list::{ORDER_LIST_PROJECTION, OrderList, OrderRow, order_rows};

fn money(cents: Cents) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn describe(command: &OrderCommand) -> String {
    match command {
        OrderCommand::Place { customer, lines } => {
            format!("place for {customer} ({} line(s))", lines.len())
        }
        OrderCommand::Pay { amount } => format!("pay {}", money(*amount)),
        OrderCommand::Ship { carrier } => format!("ship with {carrier}"),
        OrderCommand::Cancel { reason } => format!("cancel ({reason})"),
    }
}

fn line(sku: &str, quantity: u32, unit_price: Cents) -> OrderLine {
    OrderLine {
        sku: sku.to_owned(),
        quantity,
        unit_price,
    }
}

fn place(customer: &str, lines: Vec<OrderLine>) -> OrderCommand {
    OrderCommand::Place {
        customer: customer.to_owned(),
        lines,
    }
}

/// What each order goes through; some commands are refused by the rules on purpose.
fn script() -> Vec<(&'static str, OrderCommand)> {
    let ship = || OrderCommand::Ship {
        carrier: "parcel-post".to_owned(),
    };
    let cancel = |reason: &str| OrderCommand::Cancel {
        reason: reason.to_owned(),
    };
    vec![
        (
            "1001",
            place("ada", vec![line("book", 2, 1_250), line("pen", 3, 199)]),
        ),
        ("1001", OrderCommand::Pay { amount: 3_097 }),
        ("1001", ship()),
        ("1002", place("grace", vec![line("lamp", 1, 4_500)])),
        ("1002", cancel("found it cheaper")),
        ("1002", OrderCommand::Pay { amount: 4_500 }),
        ("1003", place("alan", vec![line("chair", 4, 7_900)])),
        ("1003", ship()),
        ("1003", OrderCommand::Pay { amount: 30_000 }),
        ("1003", OrderCommand::Pay { amount: 31_600 }),
        ("1003", cancel("delivery too late")),
        ("1004", place("edsger", vec![line("desk", 1, 19_900)])),
        ("1004", OrderCommand::Pay { amount: 19_900 }),
        ("1004", ship()),
        ("1004", cancel("too late to change my mind")),
    ]
}

/// Runs the script, then rebuilds the order list from the first event; returns the number
/// of events the rebuild applied.
///
/// # Errors
/// Store and database errors; refused commands are printed, not errors.
pub async fn run<S: EventStore>(
    store: Arc<S>,
    client: tokio_postgres::Client,
) -> anyhow::Result<u64> {
    let orders = Repository::<Order, S>::new(store.clone());
    for (order_id, command) in script() {
        match orders.execute(order_id, &command).await {
            Ok(_) => {
                let order = orders.load(order_id).await?.into_aggregate();
                println!(
                    "order {order_id}: {} — done; now {}",
                    describe(&command),
                    order.status().as_str()
                );
            }
            Err(CommandError::Rejected(reason)) => {
                println!(
                    "order {order_id}: {} — refused: {reason}",
                    describe(&command)
                );
            }
            Err(error) => return Err(error.into()),
        }
    }

    let mut runner = SqlProjectionRunner::load(
        store,
        client,
        ORDER_LIST_PROJECTION,
        ProjectionSource::Category("order".to_owned()),
        OrderList::default(),
    )
    .await?;
    runner.reset().await?;
    let applied = runner.catch_up().await?;
    println!("order list: rebuilt from {applied} event(s), rows and checkpoint in one transaction");
    let again = runner.catch_up().await?;
    println!("order list: caught up again, {again} event(s) left to apply");
    Ok(applied)
}

/// Prints the order list as a table.
pub fn print_rows(rows: &[OrderRow]) {
    println!(
        "{:<6} {:<8} {:<10} {:>9} {:>9}  note",
        "order", "customer", "status", "total", "paid"
    );
    for row in rows {
        let note = row
            .carrier
            .as_deref()
            .map(|carrier| format!("via {carrier}"))
            .or_else(|| row.cancel_reason.clone())
            .unwrap_or_default();
        println!(
            "{:<6} {:<8} {:<10} {:>9} {:>9}  {note}",
            row.order_id,
            row.customer,
            row.status,
            money(row.total.unsigned_abs()),
            money(row.paid.unsigned_abs()),
        );
    }
}

/// Reads the rows through a second connection (the runner owns its own).
///
/// # Errors
/// Database errors.
pub async fn read_rows(url: &str, schema: &str) -> anyhow::Result<Vec<OrderRow>> {
    let client = crate::connect(url, schema).await?;
    Ok(order_rows(&client).await?)
}
