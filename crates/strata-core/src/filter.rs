//! Server-side filters for reads and subscriptions of `$all`, and reads of `$all` bounded
//! by the number of events they look at.

use fancy_regex::{Regex, RegexBuilder};

use crate::error::{Error, Result};
use crate::store::{AllSlice, EventStore, ReadAllOptions};
use crate::system_streams::{IndexKey, category_of};
use crate::types::{Direction, RecordedEvent};

/// Longest regex a filter accepts, in bytes.
pub const FILTER_REGEX_BYTES_MAX: usize = 4_096;

/// Most prefixes one filter accepts.
pub const FILTER_PREFIXES_MAX: usize = 1_024;

/// Backtracking steps a filter's regex may take on one field (stream name or event type).
/// Patterns without lookarounds or backreferences run on a linear-time engine and never
/// backtrack; the steps are those of the lookaround parts, and the limit keeps a
/// client-supplied pattern from costing more than about a millisecond per event. Above it,
/// [`EventFilter::try_matches`] fails with [`Error::InvalidFilter`].
pub const FILTER_REGEX_BACKTRACK_STEPS_MAX: usize = 100_000;

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
        if target == FilterTarget::StreamName {
            check_index_prefixes(&prefixes)?;
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
        let regex = RegexBuilder::new(pattern)
            .backtrack_limit(FILTER_REGEX_BACKTRACK_STEPS_MAX)
            .build()
            .map_err(|error| Error::InvalidFilter {
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

    /// True when `field` passes the filter.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`] when the regex needs more than
    /// [`FILTER_REGEX_BACKTRACK_STEPS_MAX`] backtracking steps on `field`: the read cannot
    /// say whether the event matches, and says so rather than skipping it.
    pub fn try_matches_field(&self, field: &str) -> Result<bool> {
        match &self.matcher {
            Matcher::Prefixes(prefixes) => Ok(prefixes
                .iter()
                .any(|prefix| field.starts_with(prefix.as_str()))),
            Matcher::Regex(regex) => regex.is_match(field).map_err(|error| Error::InvalidFilter {
                reason: format!(
                    "regex {:?} gave up on {field:?} ({error}): it may take at most \
                     {FILTER_REGEX_BACKTRACK_STEPS_MAX} backtracking steps per field; simplify \
                     it (no nested repetition inside lookarounds)",
                    regex.as_str()
                ),
            }),
        }
    }

    /// True when `stream` and `event_type` pass the filter.
    ///
    /// # Errors
    /// As [`EventFilter::try_matches_field`].
    pub fn try_matches_parts(&self, stream: &str, event_type: &str) -> Result<bool> {
        match (self.target, &self.matcher) {
            (FilterTarget::StreamName, Matcher::Prefixes(prefixes)) => Ok(prefixes
                .iter()
                .any(|prefix| prefix_matches(prefix, stream, event_type))),
            (FilterTarget::StreamName, Matcher::Regex(_)) => self.try_matches_field(stream),
            (FilterTarget::EventType, _) => self.try_matches_field(event_type),
        }
    }

    /// The secondary index this filter names (a `$idx-ce-<category>` or `$idx-et-<type>`
    /// stream prefix): a backend may read that index instead of scanning. The events it
    /// selects are those of [`EventFilter::try_matches_parts`]: a `$idx-ce-` read also
    /// takes the stream named like the category, and no event whose type starts with `$`.
    pub fn index_key(&self) -> Option<IndexKey> {
        match (self.target, &self.matcher) {
            (FilterTarget::StreamName, Matcher::Prefixes(prefixes)) if prefixes.len() == 1 => {
                IndexKey::of_index_filter(&prefixes[0])
            }
            _ => None,
        }
    }

    /// True when `event` passes the filter.
    ///
    /// # Errors
    /// As [`EventFilter::try_matches_field`].
    pub fn try_matches(&self, event: &RecordedEvent) -> Result<bool> {
        self.try_matches_parts(event.stream.as_str(), &event.event_type)
    }

    /// True when the field passes the filter; a field on which the regex exceeds its
    /// backtracking limit counts as not matching. Readers use
    /// [`EventFilter::try_matches_field`], which reports it instead.
    pub fn matches_field(&self, field: &str) -> bool {
        self.try_matches_field(field).unwrap_or(false)
    }

    /// True when `stream` and `event_type` pass the filter (see [`EventFilter::matches_field`]).
    pub fn matches_parts(&self, stream: &str, event_type: &str) -> bool {
        self.try_matches_parts(stream, event_type).unwrap_or(false)
    }

    /// True when `event` passes the filter (see [`EventFilter::matches_field`]).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.try_matches(event).unwrap_or(false)
    }
}

/// Stream-name prefix of KurrentDB 25.1's secondary indexes.
const INDEX_PREFIX: &str = "$idx-";
/// The index of every event of a user stream.
const INDEX_ALL: &str = "$idx-all";

/// A secondary-index read names one index and nothing else, as in KurrentDB.
fn check_index_prefixes(prefixes: &[String]) -> Result<()> {
    let Some(index) = prefixes
        .iter()
        .find(|prefix| prefix.starts_with(INDEX_PREFIX))
    else {
        return Ok(());
    };
    if prefixes.len() > 1 {
        return Err(Error::InvalidFilter {
            reason: "index reads only work with one index name and cannot be combined with \
                     stream prefixes or other indexes"
                .into(),
        });
    }
    if index != INDEX_ALL && IndexKey::of_index_filter(index).is_none() {
        return Err(Error::InvalidFilter {
            reason: format!("index '{index}' not found"),
        });
    }
    Ok(())
}

/// A stream-prefix filter's prefix: `$idx-ce-<category>`, `$idx-et-<type>` and `$idx-all`
/// select the events of that secondary index (KurrentDB 25.1: events of user streams whose
/// type does not start with `$`; a stream without `-` is a category of its own), any other
/// the streams whose names start with it.
fn prefix_matches(prefix: &str, stream: &str, event_type: &str) -> bool {
    if !prefix.starts_with(INDEX_PREFIX) {
        return stream.starts_with(prefix);
    }
    if stream.starts_with('$') || event_type.starts_with('$') {
        return false;
    }
    match IndexKey::of_index_filter(prefix) {
        Some(IndexKey::Category(category)) => {
            category_of(stream).unwrap_or(stream) == category.as_str()
        }
        Some(IndexKey::EventType(indexed_type)) => event_type == indexed_type,
        _ => prefix == INDEX_ALL,
    }
}

/// A page of `$all` read with a bound on the events looked at, and how many it looked at.
#[derive(Clone, Debug)]
pub struct WindowSlice {
    /// The page, as [`EventStore::read_all`] describes it.
    pub slice: AllSlice,
    /// Events the read looked at, matching the filter or not (at most the bound it was
    /// given, and at least one unless the page is the end).
    pub examined_count: usize,
    /// Events of the log the read moved past, looked at or skipped: `examined_count` for
    /// a read that looked at every event; for a forwards read served from an index, the
    /// events from where it started to `next_position` (a backend may estimate them; at
    /// least `examined_count`, and at least one when it moved). Subscriptions, which read
    /// forwards, count these toward their checkpoints, as KurrentDB counts every event of
    /// the log whether its filter takes it or not.
    pub passed_count: usize,
}

/// [`EventStore::read_all_window`] for any store: reads up to `examined_max` events
/// without the filter and applies it here, so the count of events looked at is exact.
///
/// # Errors
/// The errors of [`EventStore::read_all`]; [`Error::InvalidFilter`] from
/// [`EventFilter::try_matches`].
pub async fn read_all_window_by_filtering<S: EventStore + ?Sized>(
    store: &S,
    mut options: ReadAllOptions,
    examined_max: usize,
) -> Result<WindowSlice> {
    let filter = options.filter.take();
    let wanted = options.max_count;
    let Some(filter) = filter else {
        options.max_count = wanted.min(examined_max);
        let slice = store.read_all(options).await?;
        return Ok(WindowSlice {
            examined_count: slice.events.len(),
            passed_count: slice.events.len(),
            slice,
        });
    };
    let direction = options.direction;
    options.max_count = if wanted == 0 { 0 } else { examined_max };
    let page = store.read_all(options).await?;
    let mut slice = AllSlice {
        events: Vec::new(),
        next_position: page.next_position,
        is_end: page.is_end,
        last_examined: page.last_examined,
    };
    let mut examined_count = 0;
    let mut page_events = page.events.into_iter().peekable();
    while let Some(event) = page_events.next() {
        examined_count += 1;
        let position = event.position;
        if filter.try_matches(&event)? {
            slice.events.push(event);
        }
        if slice.events.len() >= wanted {
            if let Some(next) = page_events.peek() {
                // Stopped before the page's end: the next page starts after this event.
                slice.next_position = match direction {
                    Direction::Forwards => next.position,
                    Direction::Backwards => position,
                };
                slice.last_examined = Some(position);
                slice.is_end = false;
            }
            break;
        }
    }
    Ok(WindowSlice {
        slice,
        examined_count,
        passed_count: examined_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_prefixes_select_a_category_or_an_event_type() {
        let category =
            EventFilter::prefixes(FilterTarget::StreamName, vec!["$idx-ce-order".into()]).unwrap();
        assert!(category.matches_parts("order-1", "Placed"));
        assert!(
            category.matches_parts("order", "Placed"),
            "a name without - is its own category"
        );
        assert!(
            !category.matches_parts("orders-1", "Placed"),
            "another category"
        );
        assert!(
            !category.matches_parts("order-1", "$>"),
            "no $-typed events"
        );
        assert_eq!(
            category.index_key(),
            Some(IndexKey::Category("order".into()))
        );
        let event_type =
            EventFilter::prefixes(FilterTarget::StreamName, vec!["$idx-et-Paid".into()]).unwrap();
        assert!(event_type.matches_parts("invoice-9", "Paid"));
        assert!(
            !event_type.matches_parts("$users", "Paid"),
            "system streams are not indexed"
        );
        let all = EventFilter::prefixes(FilterTarget::StreamName, vec!["$idx-all".into()]).unwrap();
        assert!(all.matches_parts("a", "B") && !all.matches_parts("$a", "B"));
        assert_eq!(all.index_key(), None);
        for refused in [
            vec!["$idx-ce-order".into(), "invoice".into()],
            vec!["$idx-user-x".into()],
        ] {
            assert!(matches!(
                EventFilter::prefixes(FilterTarget::StreamName, refused),
                Err(Error::InvalidFilter { .. })
            ));
        }
        let plain = EventFilter::prefixes(FilterTarget::StreamName, vec!["order".into()]).unwrap();
        assert_eq!(plain.index_key(), None);
    }

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
    fn a_regex_that_exceeds_its_backtracking_limit_is_an_error_not_a_silent_skip() {
        // Two ways to match each character, one through a lookahead (so the backtracking
        // engine runs it): exponential on a near miss.
        let catastrophic = EventFilter::regex(FilterTarget::StreamName, r"^((?=a)a|a)+$").unwrap();
        let near_miss = format!("{}!", "a".repeat(64));
        let error = catastrophic.try_matches_field(&near_miss).unwrap_err();
        let Error::InvalidFilter { reason } = error else {
            panic!("expected InvalidFilter, got {error:?}");
        };
        assert!(
            reason.contains("backtracking steps"),
            "the error says why: {reason}"
        );
        assert!(
            !catastrophic.matches_field(&near_miss),
            "the bool form counts it as no match"
        );
        assert!(catastrophic.try_matches_field("aaaa").unwrap());
    }

    #[test]
    fn client_regexes_stay_under_the_backtracking_limit_on_the_longest_fields() {
        let longest_stream = format!("{}-1", "order".repeat(400));
        let patterns = [
            r"^(?!(\$.+$|PersistentConfig\d+$|Result$))",
            r"^(?!\$)",
            r"(?<!-)1$",
            r"^order(?=-)",
        ];
        for pattern in patterns {
            let filter = EventFilter::regex(FilterTarget::StreamName, pattern).unwrap();
            filter
                .try_matches_field(&longest_stream)
                .unwrap_or_else(|error| panic!("{pattern}: {error}"));
        }
    }

    #[test]
    fn empty_prefix_list_is_refused() {
        assert!(EventFilter::prefixes(FilterTarget::EventType, vec![]).is_err());
    }
}
