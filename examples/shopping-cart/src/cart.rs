//! The shopping cart aggregate: items with quantities and unit prices, then a check-out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata::{Aggregate, DomainEvent};

/// Price in cents of the smallest currency unit, to keep sums exact.
pub type Cents = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CartCommand {
    AddItem {
        sku: String,
        quantity: u32,
        unit_price: Cents,
    },
    RemoveItem {
        sku: String,
    },
    ChangeQuantity {
        sku: String,
        quantity: u32,
    },
    CheckOut,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CartEvent {
    ItemAdded {
        sku: String,
        quantity: u32,
        unit_price: Cents,
    },
    ItemRemoved {
        sku: String,
    },
    QuantityChanged {
        sku: String,
        quantity: u32,
    },
    CheckedOut {
        total: Cents,
    },
}

impl DomainEvent for CartEvent {
    fn event_type(&self) -> &'static str {
        match self {
            CartEvent::ItemAdded { .. } => "ItemAdded",
            CartEvent::ItemRemoved { .. } => "ItemRemoved",
            CartEvent::QuantityChanged { .. } => "QuantityChanged",
            CartEvent::CheckedOut { .. } => "CheckedOut",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("the cart is checked out and can no longer change")]
    AlreadyCheckedOut,
    #[error("an empty cart cannot be checked out")]
    Empty,
    #[error("a quantity must be at least 1 (remove the item instead)")]
    ZeroQuantity,
    #[error("{sku} is not in the cart")]
    NotInCart { sku: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub quantity: u32,
    pub unit_price: Cents,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    lines: BTreeMap<String, Line>,
    checked_out: bool,
}

impl Cart {
    pub fn lines(&self) -> &BTreeMap<String, Line> {
        &self.lines
    }

    pub fn is_checked_out(&self) -> bool {
        self.checked_out
    }

    pub fn total(&self) -> Cents {
        self.lines
            .values()
            .map(|line| Cents::from(line.quantity) * line.unit_price)
            .sum()
    }

    fn line(&self, sku: &str) -> Result<&Line, CartError> {
        self.lines.get(sku).ok_or_else(|| CartError::NotInCart {
            sku: sku.to_owned(),
        })
    }
}

impl Aggregate for Cart {
    const CATEGORY: &'static str = "cart";
    type Command = CartCommand;
    type Event = CartEvent;
    type Error = CartError;

    fn handle(&self, command: &CartCommand) -> Result<Vec<CartEvent>, CartError> {
        if self.checked_out {
            return Err(CartError::AlreadyCheckedOut);
        }
        let event = match command {
            CartCommand::AddItem {
                sku,
                quantity,
                unit_price,
            } => {
                if *quantity == 0 {
                    return Err(CartError::ZeroQuantity);
                }
                CartEvent::ItemAdded {
                    sku: sku.clone(),
                    quantity: *quantity,
                    unit_price: *unit_price,
                }
            }
            CartCommand::RemoveItem { sku } => {
                self.line(sku)?;
                CartEvent::ItemRemoved { sku: sku.clone() }
            }
            CartCommand::ChangeQuantity { sku, quantity } => {
                let line = self.line(sku)?;
                if *quantity == 0 {
                    return Err(CartError::ZeroQuantity);
                }
                if line.quantity == *quantity {
                    return Ok(Vec::new());
                }
                CartEvent::QuantityChanged {
                    sku: sku.clone(),
                    quantity: *quantity,
                }
            }
            CartCommand::CheckOut => {
                if self.lines.is_empty() {
                    return Err(CartError::Empty);
                }
                CartEvent::CheckedOut {
                    total: self.total(),
                }
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &CartEvent) {
        apply_to_lines(&mut self.lines, event);
        if let CartEvent::CheckedOut { .. } = event {
            self.checked_out = true;
        }
    }
}

/// What a cart event does to a cart's lines; the aggregate and the read model share it.
pub fn apply_to_lines(lines: &mut BTreeMap<String, Line>, event: &CartEvent) {
    match event {
        CartEvent::ItemAdded {
            sku,
            quantity,
            unit_price,
        } => {
            let line = lines.entry(sku.clone()).or_insert(Line {
                quantity: 0,
                unit_price: *unit_price,
            });
            line.quantity += quantity;
            line.unit_price = *unit_price;
        }
        CartEvent::ItemRemoved { sku } => {
            lines.remove(sku);
        }
        CartEvent::QuantityChanged { sku, quantity } => {
            if let Some(line) = lines.get_mut(sku) {
                line.quantity = *quantity;
            }
        }
        CartEvent::CheckedOut { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(sku: &str, quantity: u32, unit_price: Cents) -> CartCommand {
        CartCommand::AddItem {
            sku: sku.to_owned(),
            quantity,
            unit_price,
        }
    }

    /// Handles `commands` in order, applying what each causes.
    fn run(commands: &[CartCommand]) -> Result<Cart, CartError> {
        let mut cart = Cart::default();
        for command in commands {
            for event in cart.handle(command)? {
                cart.apply(&event);
            }
        }
        Ok(cart)
    }

    #[test]
    fn adding_twice_sums_quantities_and_totals() {
        let cart =
            run(&[add("apple", 2, 50), add("pear", 1, 80), add("apple", 1, 50)]).expect("cart");
        assert_eq!(cart.lines()["apple"].quantity, 3);
        assert_eq!(cart.total(), 3 * 50 + 80);
    }

    #[test]
    fn quantities_change_and_items_go() {
        let cart = run(&[
            add("apple", 2, 50),
            add("pear", 1, 80),
            CartCommand::ChangeQuantity {
                sku: "apple".into(),
                quantity: 5,
            },
            CartCommand::RemoveItem { sku: "pear".into() },
        ])
        .expect("cart");
        assert_eq!(cart.total(), 250);
        assert!(!cart.lines().contains_key("pear"));
    }

    #[test]
    fn an_empty_cart_cannot_be_checked_out() {
        assert_eq!(run(&[CartCommand::CheckOut]), Err(CartError::Empty));
        let emptied = run(&[
            add("apple", 1, 50),
            CartCommand::RemoveItem {
                sku: "apple".into(),
            },
            CartCommand::CheckOut,
        ]);
        assert_eq!(emptied, Err(CartError::Empty));
    }

    #[test]
    fn a_checked_out_cart_cannot_change() {
        let cart = run(&[add("apple", 1, 50), CartCommand::CheckOut]).expect("cart");
        assert!(cart.is_checked_out());
        for command in [
            add("pear", 1, 80),
            CartCommand::RemoveItem {
                sku: "apple".into(),
            },
            CartCommand::ChangeQuantity {
                sku: "apple".into(),
                quantity: 2,
            },
            CartCommand::CheckOut,
        ] {
            assert_eq!(cart.handle(&command), Err(CartError::AlreadyCheckedOut));
        }
    }

    #[test]
    fn unknown_items_and_zero_quantities_are_refused() {
        let cart = run(&[add("apple", 1, 50)]).expect("cart");
        let missing = CartCommand::RemoveItem { sku: "kiwi".into() };
        assert!(matches!(
            cart.handle(&missing),
            Err(CartError::NotInCart { .. })
        ));
        assert_eq!(
            cart.handle(&add("kiwi", 0, 10)),
            Err(CartError::ZeroQuantity)
        );
        let zero = CartCommand::ChangeQuantity {
            sku: "apple".into(),
            quantity: 0,
        };
        assert_eq!(cart.handle(&zero), Err(CartError::ZeroQuantity));
    }

    #[test]
    fn checking_out_records_the_total() {
        let cart = run(&[add("apple", 4, 25)]).expect("cart");
        assert_eq!(
            cart.handle(&CartCommand::CheckOut),
            Ok(vec![CartEvent::CheckedOut { total: 100 }])
        );
    }
}
