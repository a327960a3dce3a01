//! The carts-and-totals read model: every cart's lines and total, and the revenue of the
//! checked-out carts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata::{Aggregate, Projection, RecordedEvent, Upcasters, decode_event};

use crate::cart::{Cart, CartEvent, Cents, Line, apply_to_lines};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartSummary {
    pub lines: BTreeMap<String, Line>,
    pub checked_out: bool,
}

impl CartSummary {
    pub fn total(&self) -> Cents {
        self.lines
            .values()
            .map(|line| Cents::from(line.quantity) * line.unit_price)
            .sum()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartTotals {
    pub carts: BTreeMap<String, CartSummary>,
    /// Sum of the totals recorded at check-out.
    pub revenue: Cents,
}

impl CartTotals {
    pub fn open_carts(&self) -> usize {
        self.carts.values().filter(|cart| !cart.checked_out).count()
    }

    /// Applies one cart event of cart `cart_id`.
    pub fn apply(&mut self, cart_id: &str, event: &CartEvent) {
        let cart = self.carts.entry(cart_id.to_owned()).or_default();
        apply_to_lines(&mut cart.lines, event);
        if let CartEvent::CheckedOut { total } = event {
            cart.checked_out = true;
            self.revenue += total;
        }
    }
}

impl Projection for CartTotals {
    type Error = strata::Error;

    fn handle(&mut self, event: &RecordedEvent) -> Result<(), strata::Error> {
        let prefix = format!("{}-", Cart::CATEGORY);
        let Some(cart_id) = event.stream.as_str().strip_prefix(&prefix) else {
            return Ok(());
        };
        let cart_event: CartEvent = decode_event(event, &Upcasters::new())?;
        self.apply(cart_id, &cart_event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strata::{ProjectionRunner, ProjectionSource, Repository};
    use strata_engine::{Config, Store};

    use super::*;
    use crate::cart::CartCommand;

    fn add(sku: &str, quantity: u32, unit_price: Cents) -> CartCommand {
        CartCommand::AddItem {
            sku: sku.to_owned(),
            quantity,
            unit_price,
        }
    }

    #[test]
    fn totals_follow_the_events() {
        let mut totals = CartTotals::default();
        totals.apply(
            "a",
            &CartEvent::ItemAdded {
                sku: "apple".into(),
                quantity: 2,
                unit_price: 50,
            },
        );
        totals.apply(
            "a",
            &CartEvent::QuantityChanged {
                sku: "apple".into(),
                quantity: 3,
            },
        );
        assert_eq!(totals.carts["a"].total(), 150);
        assert_eq!(totals.open_carts(), 1);
        totals.apply("a", &CartEvent::CheckedOut { total: 150 });
        assert_eq!(totals.revenue, 150);
        assert_eq!(totals.open_carts(), 0);
    }

    #[tokio::test]
    async fn the_read_model_matches_the_carts_and_resumes_after_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<Store> = Store::open(dir.path(), Config::small_for_tests()).expect("open");
        let carts = Repository::<Cart, Store>::new(store.clone());
        carts.execute("a", &add("apple", 2, 50)).await.expect("add");
        carts.execute("b", &add("pear", 1, 80)).await.expect("add");
        carts
            .execute("a", &CartCommand::CheckOut)
            .await
            .expect("check out");

        let mut runner =
            ProjectionRunner::<CartTotals, Store>::load(store.clone(), "carts", source())
                .await
                .expect("load");
        assert_eq!(runner.catch_up().await.expect("catch up"), 3);
        assert_eq!(runner.read_model().revenue, 100);
        drop(runner);

        carts.execute("b", &add("pear", 2, 80)).await.expect("add");
        let mut restarted =
            ProjectionRunner::<CartTotals, Store>::load(store.clone(), "carts", source())
                .await
                .expect("reload");
        assert_eq!(restarted.catch_up().await.expect("catch up"), 1);
        for id in ["a", "b"] {
            let cart = carts.load(id).await.expect("load").into_aggregate();
            let summary = &restarted.read_model().carts[id];
            assert_eq!(summary.total(), cart.total(), "cart {id}");
            assert_eq!(summary.checked_out, cart.is_checked_out(), "cart {id}");
        }
        assert_eq!(restarted.read_model().open_carts(), 1);
        store.close();
    }

    fn source() -> ProjectionSource {
        ProjectionSource::Category(Cart::CATEGORY.to_owned())
    }
}
