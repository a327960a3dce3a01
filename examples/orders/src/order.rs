//! The order aggregate: placed → paid → shipped, with the rules for cancelling.

use serde::{Deserialize, Serialize};
use strata::{Aggregate, DomainEvent};

/// Money in cents of the smallest currency unit, to keep sums exact.
pub type Cents = u64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_price: Cents,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderCommand {
    Place {
        customer: String,
        lines: Vec<OrderLine>,
    },
    Pay {
        amount: Cents,
    },
    Ship {
        carrier: String,
    },
    Cancel {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    Placed {
        customer: String,
        lines: Vec<OrderLine>,
        total: Cents,
    },
    Paid {
        amount: Cents,
    },
    Shipped {
        carrier: String,
    },
    /// `refund` is what was paid and goes back to the customer.
    Cancelled {
        reason: String,
        refund: Cents,
    },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::Placed { .. } => "Placed",
            OrderEvent::Paid { .. } => "Paid",
            OrderEvent::Shipped { .. } => "Shipped",
            OrderEvent::Cancelled { .. } => "Cancelled",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Not placed yet: the only state that accepts `Place`.
    #[default]
    New,
    Placed,
    Paid,
    Shipped,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "new",
            OrderStatus::Placed => "placed",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order was already placed")]
    AlreadyPlaced,
    #[error("an order needs at least one line")]
    NoLines,
    #[error("line {sku} has quantity 0; every line needs at least 1")]
    ZeroQuantity { sku: String },
    #[error("the order total overflows; split the order")]
    TotalOverflow,
    #[error("the order is {status} and cannot be {action}", status = .status.as_str())]
    WrongStatus {
        status: OrderStatus,
        action: &'static str,
    },
    #[error("the payment of {offered} cents does not match the order total of {total} cents")]
    WrongAmount { total: Cents, offered: Cents },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    status: OrderStatus,
    total: Cents,
    paid: Cents,
}

impl Order {
    pub fn status(&self) -> OrderStatus {
        self.status
    }

    pub fn total(&self) -> Cents {
        self.total
    }

    pub fn paid(&self) -> Cents {
        self.paid
    }

    fn refuse(&self, action: &'static str) -> OrderError {
        OrderError::WrongStatus {
            status: self.status,
            action,
        }
    }
}

fn order_total(lines: &[OrderLine]) -> Result<Cents, OrderError> {
    lines.iter().try_fold(0, |total: Cents, line| {
        if line.quantity == 0 {
            return Err(OrderError::ZeroQuantity {
                sku: line.sku.clone(),
            });
        }
        line.unit_price
            .checked_mul(Cents::from(line.quantity))
            .and_then(|amount| total.checked_add(amount))
            .ok_or(OrderError::TotalOverflow)
    })
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let event = match command {
            OrderCommand::Place { customer, lines } => {
                if self.status != OrderStatus::New {
                    return Err(OrderError::AlreadyPlaced);
                }
                if lines.is_empty() {
                    return Err(OrderError::NoLines);
                }
                OrderEvent::Placed {
                    customer: customer.clone(),
                    lines: lines.clone(),
                    total: order_total(lines)?,
                }
            }
            OrderCommand::Pay { amount } => {
                if self.status != OrderStatus::Placed {
                    return Err(self.refuse("paid"));
                }
                if *amount != self.total {
                    return Err(OrderError::WrongAmount {
                        total: self.total,
                        offered: *amount,
                    });
                }
                OrderEvent::Paid { amount: *amount }
            }
            OrderCommand::Ship { carrier } => {
                if self.status != OrderStatus::Paid {
                    return Err(self.refuse("shipped"));
                }
                OrderEvent::Shipped {
                    carrier: carrier.clone(),
                }
            }
            OrderCommand::Cancel { reason } => match self.status {
                OrderStatus::Placed | OrderStatus::Paid => OrderEvent::Cancelled {
                    reason: reason.clone(),
                    refund: self.paid,
                },
                OrderStatus::New | OrderStatus::Shipped | OrderStatus::Cancelled => {
                    return Err(self.refuse("cancelled"));
                }
            },
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed { total, .. } => {
                self.status = OrderStatus::Placed;
                self.total = *total;
            }
            OrderEvent::Paid { amount } => {
                self.status = OrderStatus::Paid;
                self.paid = *amount;
            }
            OrderEvent::Shipped { .. } => self.status = OrderStatus::Shipped,
            OrderEvent::Cancelled { .. } => {
                self.status = OrderStatus::Cancelled;
                self.paid = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: u32, unit_price: Cents) -> OrderLine {
        OrderLine {
            sku: sku.to_owned(),
            quantity,
            unit_price,
        }
    }

    fn placed(total_lines: Vec<OrderLine>) -> Order {
        let mut order = Order::default();
        let events = order
            .handle(&OrderCommand::Place {
                customer: "ada".to_owned(),
                lines: total_lines,
            })
            .expect("placed");
        events.iter().for_each(|event| order.apply(event));
        order
    }

    fn run(order: &mut Order, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let events = order.handle(&command)?;
        events.iter().for_each(|event| order.apply(event));
        Ok(events)
    }

    #[test]
    fn placing_sums_the_lines() {
        let order = placed(vec![line("book", 2, 1_250), line("pen", 3, 199)]);
        assert_eq!(order.status(), OrderStatus::Placed);
        assert_eq!(order.total(), 3_097);
    }

    #[test]
    fn an_order_is_placed_once_and_needs_valid_lines() {
        let mut order = placed(vec![line("book", 1, 100)]);
        let again = OrderCommand::Place {
            customer: "ada".to_owned(),
            lines: vec![line("book", 1, 100)],
        };
        assert_eq!(run(&mut order, again), Err(OrderError::AlreadyPlaced));
        let empty = OrderCommand::Place {
            customer: "bob".to_owned(),
            lines: vec![],
        };
        assert_eq!(Order::default().handle(&empty), Err(OrderError::NoLines));
        let zero = OrderCommand::Place {
            customer: "bob".to_owned(),
            lines: vec![line("pen", 0, 100)],
        };
        assert!(matches!(
            Order::default().handle(&zero),
            Err(OrderError::ZeroQuantity { .. })
        ));
        let huge = OrderCommand::Place {
            customer: "bob".to_owned(),
            lines: vec![line("gold", u32::MAX, Cents::MAX / 2)],
        };
        assert_eq!(
            Order::default().handle(&huge),
            Err(OrderError::TotalOverflow)
        );
    }

    #[test]
    fn payment_must_match_the_total_and_shipping_needs_payment() {
        let mut order = placed(vec![line("book", 1, 1_000)]);
        let ship = OrderCommand::Ship {
            carrier: "post".to_owned(),
        };
        assert!(matches!(
            run(&mut order, ship.clone()),
            Err(OrderError::WrongStatus {
                action: "shipped",
                ..
            })
        ));
        assert_eq!(
            run(&mut order, OrderCommand::Pay { amount: 999 }),
            Err(OrderError::WrongAmount {
                total: 1_000,
                offered: 999
            })
        );
        run(&mut order, OrderCommand::Pay { amount: 1_000 }).expect("paid");
        assert!(run(&mut order, OrderCommand::Pay { amount: 1_000 }).is_err());
        run(&mut order, ship).expect("shipped");
        assert_eq!(order.status(), OrderStatus::Shipped);
    }

    #[test]
    fn cancelling_refunds_what_was_paid_and_is_refused_once_shipped() {
        let cancel = OrderCommand::Cancel {
            reason: "changed my mind".to_owned(),
        };
        let mut unpaid = placed(vec![line("book", 1, 500)]);
        let events = run(&mut unpaid, cancel.clone()).expect("cancelled");
        assert!(matches!(events[0], OrderEvent::Cancelled { refund: 0, .. }));
        assert!(run(&mut unpaid, cancel.clone()).is_err());
        assert!(run(&mut unpaid, OrderCommand::Pay { amount: 500 }).is_err());

        let mut paid = placed(vec![line("book", 1, 500)]);
        run(&mut paid, OrderCommand::Pay { amount: 500 }).expect("paid");
        let events = run(&mut paid, cancel.clone()).expect("cancelled");
        assert!(matches!(
            events[0],
            OrderEvent::Cancelled { refund: 500, .. }
        ));

        let mut shipped = placed(vec![line("book", 1, 500)]);
        run(&mut shipped, OrderCommand::Pay { amount: 500 }).expect("paid");
        run(
            &mut shipped,
            OrderCommand::Ship {
                carrier: "post".to_owned(),
            },
        )
        .expect("shipped");
        assert!(matches!(
            run(&mut shipped, cancel),
            Err(OrderError::WrongStatus {
                action: "cancelled",
                ..
            })
        ));
        assert!(
            Order::default()
                .handle(&OrderCommand::Cancel {
                    reason: "x".to_owned()
                })
                .is_err()
        );
    }
}
