//! Server-side filters for reads and subscriptions of `$all`.

use fancy_regex::Regex;

use crate::error::{Error, Result};
use crate::types::RecordedEvent;

/// Longest regex a filter accepts, in bytes.
pub const FILTER_REGEX_BYTES_MAX: usize = 4_096;

/// Most prefixes one filter accepts.
pub const FILTER_PREFIXES_MAX: usize = 1_024;

/// Which field of an event a filter looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterTarget {
    StreamName,
    EventType,
}

#[derive(Clone, Debug)]
enum Matcher {
    /// Matches when the field starts with any of the prefixes.
    Prefixes(Vec<String>),
    /// Matches when the regex finds a match anywhere in the field (as .NET `IsMatch`).
    Regex(Regex),
}

/// A filter on stream name or event type, by prefixes or by a regex. Regexes use the
/// .NET-like syntax real clients send, lookarounds included (fancy-regex).
#[derive(Clone, Debug)]
pub struct EventFilter {
    target: FilterTarget,
    matcher: Matcher,
}

impl EventFilter {
    /// Matches events whose field starts with one of `prefixes`.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`] for an empty or oversized prefix list.
    pub fn prefixes(target: FilterTarget, prefixes: Vec<String>) -> Result<Self> {
        if prefixes.is_empty() {
            return Err(Error::InvalidFilter {
                reason: "a prefix filter needs at least one prefix".into(),
            });
        }
        if prefixes.len() > FILTER_PREFIXES_MAX {
            return Err(Error::InvalidFilter {
                reason: format!(
                    "{} prefixes is over the limit of {FILTER_PREFIXES_MAX}",
                    prefixes.len()
                ),
            });
        }
        Ok(Self {
            target,
            matcher: Matcher::Prefixes(prefixes),
        })
    }

    /// Matches events whose field matches `pattern` anywhere.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`] when the pattern is too long or does not compile.
    pub fn regex(target: FilterTarget, pattern: &str) -> Result<Self> {
        if pattern.len() > FILTER_REGEX_BYTES_MAX {
            return Err(Error::InvalidFilter {
                reason: format!("regex of {} bytes is over the limit", pattern.len()),
            });
        }
        let regex = Regex::new(pattern).map_err(|error| Error::InvalidFilter {
            reason: format!("regex {pattern:?} does not compile: {error}"),
        })?;
        Ok(Self {
            target,
            matcher: Matcher::Regex(regex),
        })
    }

    /// Excludes system events (types starting with `$`), as clients' default filters do.
    pub fn exclude_system_events() -> Self {
        Self {
            target: FilterTarget::EventType,
            matcher: Matcher::Regex(
                Regex::new(r"^[^\$]").unwrap_or_else(|_| unreachable!("constant regex")),
            ),
        }
    }

    pub fn target(&self) -> FilterTarget {
        self.target
    }

    /// The prefixes of a prefix filter; `None` for a regex filter. Lets a client send the
    /// filter to a server.
    pub fn prefix_list(&self) -> Option<&[String]> {
        match &self.matcher {
            Matcher::Prefixes(prefixes) => Some(prefixes),
            Matcher::Regex(_) => None,
        }
    }

    /// The pattern of a regex filter; `None` for a prefix filter.
    pub fn regex_pattern(&self) -> Option<&str> {
        match &self.matcher {
            Matcher::Prefixes(_) => None,
            Matcher::Regex(regex) => Some(regex.as_str()),
        }
    }

    /// True when the field chosen by the target passes the filter.
    pub fn matches_field(&self, field: &str) -> bool {
        match &self.matcher {
            Matcher::Prefixes(prefixes) => prefixes
                .iter()
                .any(|prefix| field.starts_with(prefix.as_str())),
            // A regex that exceeds fancy-regex's backtrack limit counts as no match
            // rather than failing the whole read.
            Matcher::Regex(regex) => regex.is_match(field).unwrap_or(false),
        }
    }

    /// True when `stream` and `event_type` pass the filter.
    pub fn matches_parts(&self, stream: &str, event_type: &str) -> bool {
        match self.target {
            FilterTarget::StreamName => self.matches_field(stream),
            FilterTarget::EventType => self.matches_field(event_type),
        }
    }

    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.matches_parts(event.stream.as_str(), &event.event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_client_default_exclude_filter_parses_and_excludes_system_events() {
        let filter = EventFilter::regex(
            FilterTarget::EventType,
            r"^(?!(\$.+$|PersistentConfig\d+$|Result$))",
        )
        .unwrap();
        assert!(filter.matches_field("OrderPlaced"));
        assert!(!filter.matches_field("$metadata"));
        assert!(!filter.matches_field("PersistentConfig1"));
        assert!(!filter.matches_field("Result"));
        assert!(filter.matches_field("Results"));
    }

    #[test]
    fn prefixes_match_any() {
        let filter = EventFilter::prefixes(
            FilterTarget::StreamName,
            vec!["order-".into(), "cart".into()],
        )
        .unwrap();
        assert!(filter.matches_parts("order-1", "x"));
        assert!(filter.matches_parts("cart-9", "x"));
        assert!(!filter.matches_parts("user-1", "x"));
    }

    #[test]
    fn bad_regex_is_a_typed_error() {
        let error = EventFilter::regex(FilterTarget::EventType, "(unclosed").unwrap_err();
        assert!(matches!(error, Error::InvalidFilter { .. }));
    }

    #[test]
    fn empty_prefix_list_is_refused() {
        assert!(EventFilter::prefixes(FilterTarget::EventType, vec![]).is_err());
    }
}
