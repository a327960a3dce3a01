//! The order list: one row per order in PostgreSQL, kept by a [`SqlProjection`], so each
//! row changes in the same transaction as the projection's checkpoint.

use async_trait::async_trait;
use strata::{RecordedEvent, SqlProjection, Upcasters, decode_event};
use tokio_postgres::Transaction;

use crate::order::{Cents, OrderEvent, OrderStatus};

/// The table of the order list.
pub const ORDER_LIST_TABLE: &str = "order_list";

/// The projection's name: its checkpoint row.
pub const ORDER_LIST_PROJECTION: &str = "order-list";

/// One row of the order list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: String,
    pub customer: String,
    pub status: String,
    pub total: i64,
    pub paid: i64,
    pub carrier: Option<String>,
    pub cancel_reason: Option<String>,
    /// Events applied to this row: a row that counts an event twice is wrong.
    pub events: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderListError {
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Decode(#[from] strata::Error),
    #[error("stream {0} is not an order stream (order-<id>)")]
    NotAnOrder(String),
    #[error("amount {0} does not fit a bigint column")]
    AmountTooLarge(Cents),
}

#[derive(Default)]
pub struct OrderList {
    upcasters: Upcasters,
}

fn cents(amount: Cents) -> Result<i64, OrderListError> {
    i64::try_from(amount).map_err(|_| OrderListError::AmountTooLarge(amount))
}

/// Reads every row of the order list, by order id.
///
/// # Errors
/// Database errors.
pub async fn order_rows(
    client: &tokio_postgres::Client,
) -> Result<Vec<OrderRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT order_id, customer, status, total, paid, carrier, cancel_reason, events
                 FROM {ORDER_LIST_TABLE} ORDER BY order_id"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| OrderRow {
            order_id: row.get(0),
            customer: row.get(1),
            status: row.get(2),
            total: row.get(3),
            paid: row.get(4),
            carrier: row.get(5),
            cancel_reason: row.get(6),
            events: row.get(7),
        })
        .collect())
}

#[async_trait]
impl SqlProjection for OrderList {
    type Error = OrderListError;

    async fn create_tables(&self, transaction: &Transaction<'_>) -> Result<(), OrderListError> {
        transaction
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {ORDER_LIST_TABLE} (
                     order_id text PRIMARY KEY,
                     customer text NOT NULL,
                     status text NOT NULL,
                     total bigint NOT NULL,
                     paid bigint NOT NULL DEFAULT 0,
                     carrier text,
                     cancel_reason text,
                     events bigint NOT NULL DEFAULT 1)"
            ))
            .await?;
        Ok(())
    }

    async fn handle(
        &self,
        transaction: &Transaction<'_>,
        event: &RecordedEvent,
    ) -> Result<(), OrderListError> {
        let order_id = event
            .stream
            .as_str()
            .strip_prefix("order-")
            .ok_or_else(|| OrderListError::NotAnOrder(event.stream.to_string()))?;
        let update = |set: &str| {
            format!("UPDATE {ORDER_LIST_TABLE} SET {set}, events = events + 1 WHERE order_id = $1")
        };
        match decode_event::<OrderEvent>(event, &self.upcasters)? {
            OrderEvent::Placed {
                customer, total, ..
            } => {
                transaction
                    .execute(
                        &format!(
                            "INSERT INTO {ORDER_LIST_TABLE} (order_id, customer, status, total)
                             VALUES ($1, $2, $3, $4)"
                        ),
                        &[
                            &order_id,
                            &customer,
                            &OrderStatus::Placed.as_str(),
                            &cents(total)?,
                        ],
                    )
                    .await?;
            }
            OrderEvent::Paid { amount } => {
                transaction
                    .execute(
                        &update("status = $2, paid = $3"),
                        &[&order_id, &OrderStatus::Paid.as_str(), &cents(amount)?],
                    )
                    .await?;
            }
            OrderEvent::Shipped { carrier } => {
                transaction
                    .execute(
                        &update("status = $2, carrier = $3"),
                        &[&order_id, &OrderStatus::Shipped.as_str(), &carrier],
                    )
                    .await?;
            }
            OrderEvent::Cancelled { reason, .. } => {
                transaction
                    .execute(
                        &update("status = $2, paid = 0, cancel_reason = $3"),
                        &[&order_id, &OrderStatus::Cancelled.as_str(), &reason],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn clear(&self, transaction: &Transaction<'_>) -> Result<(), OrderListError> {
        transaction
            .batch_execute(&format!("DELETE FROM {ORDER_LIST_TABLE}"))
            .await?;
        Ok(())
    }
}
