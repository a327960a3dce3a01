//! Upcasters: registered functions that turn an old event shape into a newer one while
//! reading. Stored events never change; only what a reader sees does.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// Most upcasting steps one event may go through; more means the registered upcasters
/// form a cycle.
pub const UPCAST_STEPS_MAX: usize = 64;

/// An event as stored or as upcast so far: type, schema version and JSON data.
#[derive(Clone, Debug, PartialEq)]
pub struct EventShape {
    pub event_type: String,
    pub schema_version: u32,
    pub data: Value,
}

impl EventShape {
    pub fn new(event_type: impl Into<String>, schema_version: u32, data: Value) -> Self {
        Self {
            event_type: event_type.into(),
            schema_version,
            data,
        }
    }
}

type UpcastFn = dyn Fn(Value) -> Result<EventShape, String> + Send + Sync;

/// The registered upcasters, keyed by the event type and schema version they read.
#[derive(Clone, Default)]
pub struct Upcasters {
    by_shape: HashMap<(String, u32), Arc<UpcastFn>>,
}

impl Upcasters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `upcast` for events of `event_type` at `schema_version`. It gets the stored
    /// data and returns the next shape (a newer version, possibly under another type);
    /// upcasters chain until no one is registered for the shape reached.
    pub fn register(
        mut self,
        event_type: impl Into<String>,
        schema_version: u32,
        upcast: impl Fn(Value) -> Result<EventShape, String> + Send + Sync + 'static,
    ) -> Self {
        self.by_shape
            .insert((event_type.into(), schema_version), Arc::new(upcast));
        self
    }

    /// Brings `shape` to the newest shape the registered upcasters reach.
    ///
    /// # Errors
    /// The failing upcaster's reason, with the shape it was given; or a cycle.
    pub(crate) fn upcast(&self, mut shape: EventShape) -> Result<EventShape, (EventShape, String)> {
        for _ in 0..UPCAST_STEPS_MAX {
            let key = (shape.event_type.clone(), shape.schema_version);
            let Some(upcast) = self.by_shape.get(&key) else {
                return Ok(shape);
            };
            let failed_at = EventShape {
                data: Value::Null,
                ..shape.clone()
            };
            shape = upcast(shape.data).map_err(|reason| (failed_at, reason))?;
        }
        let reason = format!("more than {UPCAST_STEPS_MAX} steps: the upcasters form a cycle");
        Err((shape, reason))
    }
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shapes: Vec<_> = self.by_shape.keys().collect();
        shapes.sort();
        f.debug_struct("Upcasters")
            .field("shapes", &shapes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn upcasters_chain_until_none_is_registered() {
        let upcasters = Upcasters::new()
            .register("Renamed", 1, |data| Ok(EventShape::new("Named", 2, data)))
            .register("Named", 2, |mut data| {
                data["extra"] = json!(true);
                Ok(EventShape::new("Named", 3, data))
            });
        let shape = upcasters
            .upcast(EventShape::new("Renamed", 1, json!({"name": "a"})))
            .expect("upcast");
        assert_eq!(
            shape,
            EventShape::new("Named", 3, json!({"name": "a", "extra": true}))
        );
    }

    #[test]
    fn a_cycle_is_an_error_not_a_hang() {
        let upcasters =
            Upcasters::new().register("Loop", 1, |data| Ok(EventShape::new("Loop", 1, data)));
        let (_, reason) = upcasters
            .upcast(EventShape::new("Loop", 1, json!({})))
            .expect_err("cycle");
        assert!(reason.contains("cycle"), "{reason}");
    }
}
