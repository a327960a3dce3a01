//! Shopping carts on an embedded Strata store in a temporary directory: commands, refused
//! commands, an idempotent re-send, snapshots, and the carts-and-totals read model.

mod cart;
mod totals;

use std::sync::Arc;

use anyhow::Context;
use strata::{
    CommandError, CommandId, ProjectionRunner, ProjectionSource, Repository, SnapshotPolicy,
};
use strata_engine::{Config, Store};

use crate::cart::{Cart, CartCommand, Cents};
use crate::totals::CartTotals;

fn money(cents: Cents) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn describe(command: &CartCommand) -> String {
    match command {
        CartCommand::AddItem {
            sku,
            quantity,
            unit_price,
        } => format!("add {quantity} × {sku} at {}", money(*unit_price)),
        CartCommand::RemoveItem { sku } => format!("remove {sku}"),
        CartCommand::ChangeQuantity { sku, quantity } => {
            format!("change {sku} to {quantity}")
        }
        CartCommand::CheckOut => "check out".to_owned(),
    }
}

async fn send(
    carts: &Repository<Cart, Store>,
    cart_id: &str,
    command: CartCommand,
) -> anyhow::Result<()> {
    match carts.execute(cart_id, &command).await {
        Ok(outcome) => {
            let cart = carts.load(cart_id).await?.into_aggregate();
            let state = if cart.is_checked_out() {
                "checked out"
            } else {
                "open"
            };
            println!(
                "cart {cart_id}: {} — done ({} event(s)); {} line(s), total {}, {state}",
                describe(&command),
                outcome.events_appended,
                cart.lines().len(),
                money(cart.total())
            );
        }
        Err(CommandError::Rejected(reason)) => {
            println!("cart {cart_id}: {} — refused: {reason}", describe(&command));
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

fn add(sku: &str, quantity: u32, unit_price: Cents) -> CartCommand {
    CartCommand::AddItem {
        sku: sku.to_owned(),
        quantity,
        unit_price,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let store: Arc<Store> =
        Store::open(dir.path(), Config::default()).context("opening the store")?;
    println!("Opened an embedded store in {}", dir.path().display());
    let carts = Repository::<Cart, Store>::new(store.clone())
        .with_snapshot_policy(SnapshotPolicy::EveryEvents(3));

    send(&carts, "alice", add("apple", 3, 45)).await?;
    send(&carts, "alice", add("bread", 1, 250)).await?;
    send(
        &carts,
        "alice",
        CartCommand::ChangeQuantity {
            sku: "apple".into(),
            quantity: 6,
        },
    )
    .await?;
    send(
        &carts,
        "alice",
        CartCommand::RemoveItem { sku: "kiwi".into() },
    )
    .await?;
    send(&carts, "bob", CartCommand::CheckOut).await?;
    send(&carts, "bob", add("coffee", 2, 799)).await?;
    send(&carts, "bob", add("milk", 1, 99)).await?;
    send(
        &carts,
        "bob",
        CartCommand::RemoveItem { sku: "milk".into() },
    )
    .await?;

    let checkout_id = CommandId::new_random();
    for attempt in ["first", "second (a re-send)"] {
        let outcome = carts
            .execute_once("alice", checkout_id, &CartCommand::CheckOut)
            .await?;
        let what = if outcome.duplicate {
            "already done, nothing appended"
        } else {
            "checked out"
        };
        println!("cart alice: check out with command id {checkout_id}, {attempt} time: {what}");
    }
    send(&carts, "alice", add("cake", 1, 500)).await?;

    let loaded = carts.load("alice").await?;
    println!(
        "cart alice loads from {} and {} newer event(s)",
        if loaded.from_snapshot() {
            "a snapshot"
        } else {
            "no snapshot"
        },
        loaded.events_replayed()
    );

    let source = ProjectionSource::Category("cart".to_owned());
    let mut totals =
        ProjectionRunner::<CartTotals, Store>::load(store.clone(), "carts-and-totals", source)
            .await?;
    let handled = totals.catch_up().await?;
    println!("The carts-and-totals read model handled {handled} event(s):");
    for (cart_id, summary) in &totals.read_model().carts {
        let state = if summary.checked_out {
            "checked out"
        } else {
            "open"
        };
        let items: Vec<String> = summary
            .lines
            .iter()
            .map(|(sku, line)| format!("{} × {sku}", line.quantity))
            .collect();
        println!(
            "  cart {cart_id}: {state}, {}, total {}",
            items.join(", "),
            money(summary.total())
        );
    }
    println!(
        "  open carts: {}; revenue from checked-out carts: {}",
        totals.read_model().open_carts(),
        money(totals.read_model().revenue)
    );
    store.close();
    Ok(())
}
