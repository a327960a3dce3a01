//! Every bound the contract puts on input. Input over a bound is a typed error, never a panic.

/// Longest stream name a caller may use, in UTF-8 bytes.
pub const STREAM_NAME_BYTES_MAX: usize = 2_048;

/// Longest event type, in UTF-8 bytes.
pub const EVENT_TYPE_BYTES_MAX: usize = 1_024;

/// Largest event (data + metadata + type), as in the reference server.
pub const EVENT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Largest append (sum of its events), as in the reference server.
pub const APPEND_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Most events one append may carry.
pub const APPEND_EVENTS_MAX: usize = 1_000_000;

/// The limits one store enforces; backends may lower them (never raise them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub event_bytes_max: usize,
    pub append_bytes_max: usize,
    pub append_events_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            event_bytes_max: EVENT_BYTES_MAX,
            append_bytes_max: APPEND_BYTES_MAX,
            append_events_max: APPEND_EVENTS_MAX,
        }
    }
}

impl Limits {
    /// Checks one append against these limits. An append needs at least one event.
    ///
    /// # Errors
    /// The first violated limit, as a typed error.
    pub fn check_append(&self, events: &[crate::ProposedEvent]) -> crate::Result<()> {
        if events.is_empty() {
            return Err(crate::Error::InvalidArgument {
                reason: "an append needs at least one event".into(),
            });
        }
        if events.len() > self.append_events_max {
            return Err(crate::Error::AppendTooLarge {
                size: events.len(),
                limit: self.append_events_max,
                unit: "events",
            });
        }
        let mut append_bytes = 0usize;
        for event in events {
            event.validate_type()?;
            let size = event.size_bytes();
            if size > self.event_bytes_max {
                return Err(crate::Error::EventTooLarge {
                    event_id: event.id,
                    size_bytes: size,
                    limit_bytes: self.event_bytes_max,
                });
            }
            append_bytes = append_bytes.saturating_add(size);
        }
        if append_bytes > self.append_bytes_max {
            return Err(crate::Error::AppendTooLarge {
                size: append_bytes,
                limit: self.append_bytes_max,
                unit: "bytes",
            });
        }
        Ok(())
    }
}
