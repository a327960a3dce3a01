//! The history checker: one pass over a recorded [`History`] and the final `$all` order of the
//! workload's streams, read after the run (and after the last restart).
//!
//! The final order is the single truth every observation must agree with:
//! - positions strictly increase, no event appears twice, and each stream's events carry the
//!   revisions 0, 1, 2, … in `$all` order (so each revision has exactly one winner);
//! - every event was sent by some append, and no refused append was written;
//! - every acknowledged append is there at its acknowledged revisions and position, as one
//!   contiguous batch, consistent with the expected revision it was sent with; an append
//!   with no answer is there whole or not at all;
//! - a refusal for a wrong expected revision was real: the revision it reports existed while
//!   the call ran, and the expected state was not certainly the stream's state throughout;
//! - an append acknowledged before another was sent comes first in `$all`;
//! - every read returned a contiguous piece of the final order, saw every append
//!   acknowledged before it was sent and everything an earlier completed read saw
//!   (monotonic), and nothing that was not sent yet;
//! - every subscription session delivered a contiguous piece of the final order from where it
//!   started — no gap, no duplicate — and a session that caught up delivered all of it.

use std::collections::{HashMap, HashSet};
use std::fmt;

use uuid::Uuid;

use crate::history::{Action, AppendOutcome, Expected, History, Micros, Operation, Seen};

/// Which rule a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// The final `$all` order itself is inconsistent (positions, duplicates, revisions).
    FinalOrder,
    /// An event in the final order that no append sent.
    EventFromNowhere,
    /// An acknowledged event is missing.
    AcknowledgedLost,
    /// An acknowledged event is at another stream, revision or position than acknowledged.
    AcknowledgedMisplaced,
    /// The events of one append are not one contiguous batch, or only some are there.
    BatchSplit,
    /// An append was written at revisions its expected revision forbids.
    ExpectedRevisionIgnored,
    /// A refused append was written anyway.
    RefusedButWritten,
    /// A refusal for a wrong expected revision that was not wrong.
    FalseConflict,
    /// An append acknowledged before another was sent comes after it in `$all`.
    RealTimeOrder,
    /// A read or a subscription disagrees with the final order.
    NotInOrder,
    /// A read missed an acknowledged append or what an earlier read saw.
    StaleRead,
    /// A read or delivery returned an event before it was sent.
    FromTheFuture,
    /// A subscription that caught up did not deliver everything after its start.
    SubscriptionIncomplete,
    /// The persistent subscription group never delivered an event, though its consumers
    /// acked only what they got and ran until they caught up.
    GroupLost,
}

/// One broken rule, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}: {}", self.rule, self.detail)
    }
}

/// Counts of what was checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub events_in_final_order: u64,
    pub appends_acknowledged: u64,
    pub events_acknowledged: u64,
    pub appends_refused: u64,
    pub appends_unanswered: u64,
    /// Unanswered appends that took effect anyway (whole).
    pub appends_unanswered_applied: u64,
    pub reads_checked: u64,
    pub sessions_checked: u64,
    pub deliveries_checked: u64,
    /// Deliveries to the persistent subscription group, redeliveries included.
    pub group_deliveries: u64,
    /// Deliveries of an event the group had delivered before (after a kill or a timeout).
    pub group_redeliveries: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub figures: Figures,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks `history` against `final_order`: the workload's events in `$all` order, read once
/// the run was over.
pub fn check(history: &History, final_order: &[Seen]) -> Report {
    check_since(history, final_order, Checked::default()).0
}

/// What the checks of a growing history have covered so far, for [`check_since`]: how much
/// of the history and of the final order, a summary of what that part showed, and the
/// indexes built over it (so a check costs what was added since, not the whole history).
#[derive(Clone, Debug, Default)]
pub struct Checked {
    operations: usize,
    sessions: usize,
    group_deliveries: usize,
    /// Events of the final order checked.
    events: usize,
    /// Per stream (`""`: the final order): the most events an acknowledgement or a read
    /// showed to exist, and which.
    shown: HashMap<String, (usize, Micros, String)>,
    /// The furthest index in the final order an acknowledged append reached, and when it
    /// was acknowledged.
    acknowledged_until: Option<(usize, Micros)>,
    index_of: HashMap<Uuid, usize>,
    streams: HashMap<String, Vec<usize>>,
    sender_of: HashMap<Uuid, usize>,
    /// Events the group delivered (of the final order, as they are there).
    group_delivered: HashSet<Uuid>,
    figures: Figures,
}

impl Checked {
    /// Events of the final order covered so far.
    pub fn events(&self) -> usize {
        self.events
    }
}

/// Checks what `history` and `final_order` gained since `since` (the result of the
/// previous call; `Checked::default()` checks everything), and returns the report (its
/// figures counting everything so far) and what is covered now.
///
/// The caller guarantees what makes this equal to checking everything again:
/// - `final_order` extends the final order of the previous call unchanged (the soak reads
///   only what follows the last event it had, starting at that event, which must still be
///   there);
/// - the operations, sessions and deliveries after `since` were started after every earlier
///   operation had ended (they belong to a later phase: the soak checks between kills).
pub fn check_since(history: &History, final_order: &[Seen], since: Checked) -> (Report, Checked) {
    let mut checker = Checker::new(history, final_order, since);
    checker.check_final_order();
    checker.check_appends();
    checker.check_real_time_order();
    checker.check_reads();
    checker.check_sessions();
    checker.check_group();
    let mut checked = checker.since;
    checked.operations = history.operations.len();
    checked.sessions = history.sessions.len();
    checked.group_deliveries = history.group_deliveries.len();
    checked.events = final_order.len();
    checked.index_of = checker.index_of;
    checked.streams = checker.streams;
    checked.sender_of = checker.sender_of;
    checked.figures = checker.figures;
    let report = Report {
        figures: checker.figures,
        violations: checker.violations,
    };
    (report, checked)
}

struct Checker<'a> {
    history: &'a History,
    order: &'a [Seen],
    /// What earlier checks covered (its indexes moved into the fields below).
    since: Checked,
    /// Event id → index in `order`.
    index_of: HashMap<Uuid, usize>,
    /// Stream → indexes in `order`, in `$all` order.
    streams: HashMap<String, Vec<usize>>,
    /// Event id → index of the append operation that sent it.
    sender_of: HashMap<Uuid, usize>,
    figures: Figures,
    violations: Vec<Violation>,
}

impl<'a> Checker<'a> {
    fn new(history: &'a History, order: &'a [Seen], mut since: Checked) -> Self {
        let mut index_of = std::mem::take(&mut since.index_of);
        let mut streams = std::mem::take(&mut since.streams);
        let mut sender_of = std::mem::take(&mut since.sender_of);
        for (index, event) in order.iter().enumerate().skip(since.events) {
            index_of.entry(event.id).or_insert(index);
            streams.entry(event.stream.clone()).or_default().push(index);
        }
        for (operation_index, operation) in
            history.operations.iter().enumerate().skip(since.operations)
        {
            if let Action::Append { event_ids, .. } = &operation.action {
                for id in event_ids {
                    sender_of.insert(*id, operation_index);
                }
            }
        }
        let figures = Figures {
            events_in_final_order: order.len() as u64,
            ..since.figures
        };
        Checker {
            history,
            order,
            since,
            index_of,
            streams,
            sender_of,
            figures,
            violations: Vec::new(),
        }
    }

    /// The operations not checked before, with their indexes.
    fn new_operations(&self) -> impl Iterator<Item = (usize, &'a Operation)> + use<'a> {
        let history = self.history;
        history
            .operations
            .iter()
            .enumerate()
            .skip(self.since.operations)
    }

    fn violation(&mut self, rule: Rule, detail: String) {
        self.violations.push(Violation { rule, detail });
    }

    fn check_final_order(&mut self) {
        let from = self.since.events;
        for pair in self.order[from.saturating_sub(1)..].windows(2) {
            if pair[1].position <= pair[0].position {
                self.violation(
                    Rule::FinalOrder,
                    format!(
                        "positions do not increase: {:?} then {:?}",
                        pair[0], pair[1]
                    ),
                );
            }
        }
        for (index, event) in self.order.iter().enumerate().skip(from) {
            if self.index_of[&event.id] != index {
                self.violation(
                    Rule::FinalOrder,
                    format!("event {} appears twice in $all: {event:?}", event.id),
                );
            }
        }
        // Only streams with new events, and only their new events.
        let mut streams: Vec<(String, Vec<(usize, usize)>)> = self
            .streams
            .iter()
            .filter(|(_, indexes)| indexes.last().is_some_and(|last| *last >= from))
            .map(|(stream, indexes)| {
                let new = indexes.partition_point(|index| *index < from);
                (
                    stream.clone(),
                    indexes.iter().copied().enumerate().skip(new).collect(),
                )
            })
            .collect();
        streams.sort();
        for (stream, indexes) in streams {
            for (revision, index) in &indexes {
                let revision = *revision;
                let event = &self.order[*index];
                if event.revision != revision as u64 {
                    self.violation(
                        Rule::FinalOrder,
                        format!(
                            "stream {stream}: the {revision}th event in $all order has revision \
                             {} ({event:?}): a revision is missing, doubled or out of order",
                            event.revision
                        ),
                    );
                    break;
                }
            }
        }
        for event in &self.order[from..] {
            if !self.sender_of.contains_key(&event.id) {
                self.violation(
                    Rule::EventFromNowhere,
                    format!("no append sent event {event:?}"),
                );
            }
        }
    }

    /// The event at `revision` of `stream` in the final order.
    fn stream_event(&self, stream: &str, revision: u64) -> Option<&'a Seen> {
        let indexes = self.streams.get(stream)?;
        let index = *indexes.get(usize::try_from(revision).ok()?)?;
        Some(&self.order[index])
    }

    /// When the append that wrote `event` was sent, and when it was acknowledged (never, for
    /// one without an answer: it may have taken effect at any time after it was sent).
    fn written_between(&self, event: &Seen) -> (Micros, Micros) {
        let Some(operation) = self
            .sender_of
            .get(&event.id)
            .map(|index| &self.history.operations[*index])
        else {
            return (0, Micros::MAX);
        };
        match &operation.action {
            Action::Append {
                outcome: AppendOutcome::Acknowledged { .. },
                ..
            } => (operation.invoked_at, operation.completed_at),
            _ => (operation.invoked_at, Micros::MAX),
        }
    }

    fn check_appends(&mut self) {
        // Earlier appends with events among the new ones: an unanswered append may take
        // effect late (while its server lives on), a refused one never.
        let mut earlier: Vec<usize> = self.order[self.since.events..]
            .iter()
            .filter_map(|event| self.sender_of.get(&event.id).copied())
            .filter(|operation| *operation < self.since.operations)
            .collect();
        earlier.sort_unstable();
        earlier.dedup();
        let history = self.history;
        for operation_index in earlier {
            let operation = &history.operations[operation_index];
            let Action::Append {
                stream,
                expected,
                event_ids,
                outcome,
            } = &operation.action
            else {
                continue;
            };
            match outcome {
                AppendOutcome::Unknown { .. } => {
                    self.check_unanswered(operation, stream, *expected, event_ids, false);
                }
                AppendOutcome::WrongExpected { current } => {
                    self.check_refused(operation, stream, *expected, event_ids, *current);
                }
                // Its events were in the order checked before: here again, they are twice.
                AppendOutcome::Acknowledged { .. } => {}
            }
        }
        for (_, operation) in self.new_operations() {
            let Action::Append {
                stream,
                expected,
                event_ids,
                outcome,
            } = &operation.action
            else {
                continue;
            };
            match outcome {
                AppendOutcome::Acknowledged {
                    last_revision,
                    position,
                } => {
                    self.figures.appends_acknowledged += 1;
                    self.figures.events_acknowledged += event_ids.len() as u64;
                    self.check_acknowledged(
                        operation,
                        stream,
                        *expected,
                        event_ids,
                        *last_revision,
                        *position,
                    );
                }
                AppendOutcome::WrongExpected { current } => {
                    self.figures.appends_refused += 1;
                    self.check_refused(operation, stream, *expected, event_ids, *current);
                }
                AppendOutcome::Unknown { .. } => {
                    self.figures.appends_unanswered += 1;
                    self.check_unanswered(operation, stream, *expected, event_ids, true);
                }
            }
        }
    }

    fn check_acknowledged(
        &mut self,
        operation: &Operation,
        stream: &str,
        expected: Expected,
        event_ids: &[Uuid],
        last_revision: u64,
        position: u64,
    ) {
        let count = event_ids.len() as u64;
        let Some(first_revision) = (last_revision + 1).checked_sub(count) else {
            self.violation(
                Rule::AcknowledgedMisplaced,
                format!(
                    "{count} events acknowledged with last revision {last_revision}: {operation:?}"
                ),
            );
            return;
        };
        let mut indexes = Vec::new();
        for (offset, id) in event_ids.iter().enumerate() {
            let revision = first_revision + offset as u64;
            let Some(&index) = self.index_of.get(id) else {
                self.violation(
                    Rule::AcknowledgedLost,
                    format!(
                        "event {id} acknowledged at {stream}@{revision} (client {}, answered at \
                         {} µs) is not in $all",
                        operation.client, operation.completed_at
                    ),
                );
                continue;
            };
            let event = &self.order[index];
            if event.stream != stream || event.revision != revision {
                self.violation(
                    Rule::AcknowledgedMisplaced,
                    format!("event acknowledged at {stream}@{revision} is at {event:?}"),
                );
            }
            indexes.push(index);
        }
        if let Some(&last) = indexes.last()
            && indexes.len() == event_ids.len()
            && self.order[last].position != position
        {
            self.violation(
                Rule::AcknowledgedMisplaced,
                format!(
                    "append acknowledged at position {position}, its last event is at {:?}",
                    self.order[last]
                ),
            );
        }
        self.check_batch(operation, &indexes);
        self.check_expected(operation, stream, expected, first_revision);
    }

    /// The events at `indexes` (of one append, all found) follow each other in `$all`.
    fn check_batch(&mut self, operation: &Operation, indexes: &[usize]) {
        if indexes.windows(2).any(|pair| pair[1] != pair[0] + 1) {
            self.violation(
                Rule::BatchSplit,
                format!(
                    "the events of one append are not contiguous in $all (indexes {indexes:?}): \
                     {operation:?}"
                ),
            );
        }
    }

    fn check_expected(
        &mut self,
        operation: &Operation,
        stream: &str,
        expected: Expected,
        first_revision: u64,
    ) {
        let allowed = match expected {
            Expected::Any => true,
            Expected::NoStream => first_revision == 0,
            Expected::StreamExists => first_revision > 0,
            Expected::Exact(revision) => first_revision == revision + 1,
        };
        if !allowed {
            self.violation(
                Rule::ExpectedRevisionIgnored,
                format!(
                    "append to {stream} expecting {expected:?} was written from revision \
                     {first_revision}: {operation:?}"
                ),
            );
        }
    }

    fn check_refused(
        &mut self,
        operation: &Operation,
        stream: &str,
        expected: Expected,
        event_ids: &[Uuid],
        current: Option<u64>,
    ) {
        if let Some(id) = event_ids.iter().find(|id| self.index_of.contains_key(id)) {
            self.violation(
                Rule::RefusedButWritten,
                format!(
                    "event {id} of a refused append is in $all at {:?}",
                    self.order[self.index_of[id]]
                ),
            );
        }
        let (sent, answered) = (operation.invoked_at, operation.completed_at);
        // Revision `revision` certainly existed from before the call was sent.
        let existed_before = |revision: u64| {
            self.stream_event(stream, revision)
                .is_some_and(|event| self.written_between(event).1 <= sent)
        };
        // Revision `revision` was possibly there before the call was answered.
        let possibly_there = |revision: u64| {
            self.stream_event(stream, revision)
                .is_some_and(|event| self.written_between(event).0 <= answered)
        };
        let expected_was_true_throughout = match expected {
            Expected::Any => true,
            Expected::NoStream => !possibly_there(0),
            Expected::StreamExists => existed_before(0),
            Expected::Exact(revision) => existed_before(revision) && !possibly_there(revision + 1),
        };
        let reported_state_possible = match current {
            Some(revision) => possibly_there(revision) && !existed_before(revision + 1),
            None => !existed_before(0),
        };
        let reported_state_matches = match (expected, current) {
            (Expected::Any, _) | (Expected::NoStream, None) | (Expected::StreamExists, Some(_)) => {
                true
            }
            (Expected::Exact(revision), Some(reported)) => revision == reported,
            _ => false,
        };
        if expected_was_true_throughout || !reported_state_possible || reported_state_matches {
            self.violation(
                Rule::FalseConflict,
                format!(
                    "append to {stream} expecting {expected:?} refused with current {current:?}, \
                     but the stream held {} events at the end and the refusal does not fit \
                     them: {operation:?}",
                    self.streams.get(stream).map_or(0, Vec::len)
                ),
            );
        }
    }

    fn check_unanswered(
        &mut self,
        operation: &Operation,
        stream: &str,
        expected: Expected,
        event_ids: &[Uuid],
        count_it: bool,
    ) {
        let indexes: Vec<usize> = event_ids
            .iter()
            .filter_map(|id| self.index_of.get(id).copied())
            .collect();
        if indexes.is_empty() {
            return;
        }
        if indexes.len() != event_ids.len() {
            self.violation(
                Rule::BatchSplit,
                format!(
                    "only {} of the {} events of an unanswered append are in $all: {operation:?}",
                    indexes.len(),
                    event_ids.len()
                ),
            );
            return;
        }
        if count_it {
            self.figures.appends_unanswered_applied += 1;
        }
        let first = &self.order[indexes[0]];
        let in_place = indexes.iter().enumerate().all(|(offset, index)| {
            let event = &self.order[*index];
            event.stream == stream && event.revision == first.revision + offset as u64
        });
        if !in_place {
            self.violation(
                Rule::BatchSplit,
                format!("an unanswered append was written out of place: {operation:?}"),
            );
        }
        self.check_batch(operation, &indexes);
        self.check_expected(operation, stream, expected, first.revision);
    }

    /// Acknowledged appends not checked before, whole, as (sent, answered, first index,
    /// last index).
    fn acknowledged_spans(&self) -> Vec<(Micros, Micros, usize, usize)> {
        let mut spans = Vec::new();
        for (_, operation) in self.new_operations() {
            if let Action::Append {
                event_ids,
                outcome: AppendOutcome::Acknowledged { .. },
                ..
            } = &operation.action
            {
                let indexes: Option<Vec<usize>> = event_ids
                    .iter()
                    .map(|id| self.index_of.get(id).copied())
                    .collect();
                if let Some(indexes) = indexes
                    && let (Some(first), Some(last)) = (indexes.iter().min(), indexes.iter().max())
                {
                    spans.push((operation.invoked_at, operation.completed_at, *first, *last));
                }
            }
        }
        spans
    }

    fn check_real_time_order(&mut self) {
        let spans = self.acknowledged_spans();
        let mut by_answer = spans.clone();
        by_answer.sort_by_key(|span| span.1);
        let mut by_sending = spans;
        by_sending.sort_by_key(|span| span.0);
        let mut answered = 0;
        // Every earlier append was answered before any of these was sent.
        let mut latest: Option<(usize, Micros)> = self.since.acknowledged_until;
        for (sent, _, first, _) in by_sending {
            while answered < by_answer.len() && by_answer[answered].1 < sent {
                let (_, at, _, last) = by_answer[answered];
                if latest.is_none_or(|(index, _)| last > index) {
                    latest = Some((last, at));
                }
                answered += 1;
            }
            if let Some((last, at)) = latest
                && last >= first
            {
                self.violation(
                    Rule::RealTimeOrder,
                    format!(
                        "an append sent at {sent} µs starts at {:?}, before {:?} of an append \
                         acknowledged at {at} µs",
                        self.order[first], self.order[last]
                    ),
                );
            }
        }
        for (_, at, _, last) in by_answer {
            if latest.is_none_or(|(index, _)| last > index) {
                latest = Some((last, at));
            }
        }
        self.since.acknowledged_until = latest;
    }
}

#[path = "checker_observations.rs"]
mod observations;

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
