//! The checker's rules for what was observed: reads (contiguous pieces of the final order,
//! never stale, never from the future), subscription sessions (no gap, no duplicate) and the
//! persistent subscription group (nothing skipped once caught up).

use std::collections::HashMap;

use super::{Checker, Rule, Violation};
use crate::history::{
    Action, AppendOutcome, Micros, Operation, ReadResult, Seen, SessionEnd, StreamReadFrom,
    SubscriptionSession,
};

/// A constraint on what a read may have seen: before `at`, something showed that at least
/// `length` events (of a stream, or of the final order) existed.
struct Observation {
    at: Micros,
    length: usize,
    what: String,
}

impl Checker<'_> {
    pub(super) fn check_reads(&mut self) {
        // Per stream (and "" for the final order): what acknowledgements and reads showed.
        let mut observations: HashMap<String, Vec<Observation>> = HashMap::new();
        // Per stream: (sent at, the most the read can have seen, operation index).
        let mut limits: HashMap<String, Vec<(Micros, usize, usize)>> = HashMap::new();
        for (operation_index, operation) in self.new_operations() {
            match &operation.action {
                Action::Append {
                    stream,
                    outcome: AppendOutcome::Acknowledged { last_revision, .. },
                    event_ids,
                    ..
                } => {
                    observations
                        .entry(stream.clone())
                        .or_default()
                        .push(Observation {
                            at: operation.completed_at,
                            length: *last_revision as usize + 1,
                            what: format!("append acknowledged at {stream}@{last_revision}"),
                        });
                    if let Some(last) = event_ids.last().and_then(|id| self.index_of.get(id)) {
                        observations
                            .entry(String::new())
                            .or_default()
                            .push(Observation {
                                at: operation.completed_at,
                                length: last + 1,
                                what: format!("append acknowledged at {stream}@{last_revision}"),
                            });
                    }
                }
                Action::ReadStream {
                    stream,
                    from,
                    result,
                    ..
                } => {
                    self.figures.reads_checked += 1;
                    if let Some((seen, most)) =
                        self.check_stream_read(operation, stream, *from, result)
                    {
                        if let Some(seen) = seen {
                            observations
                                .entry(stream.clone())
                                .or_default()
                                .push(Observation {
                                    at: operation.completed_at,
                                    length: seen,
                                    what: format!("a read of {stream} that saw {seen} events"),
                                });
                        }
                        if let Some(most) = most {
                            limits.entry(stream.clone()).or_default().push((
                                operation.invoked_at,
                                most,
                                operation_index,
                            ));
                        }
                    }
                }
                Action::ReadAll {
                    from_position,
                    result,
                    ..
                } => {
                    self.figures.reads_checked += 1;
                    if let Some((seen, reached_end)) =
                        self.check_all_read(operation, *from_position, result)
                    {
                        observations
                            .entry(String::new())
                            .or_default()
                            .push(Observation {
                                at: operation.completed_at,
                                length: seen,
                                what: format!("a read of $all that saw {seen} events"),
                            });
                        if reached_end {
                            limits.entry(String::new()).or_default().push((
                                operation.invoked_at,
                                seen,
                                operation_index,
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        // What earlier operations showed came before any of these was sent.
        let earlier = std::mem::take(&mut self.since.shown);
        let mut shown = earlier.clone();
        for (stream, stream_observations) in &observations {
            if let Some(most) = stream_observations.iter().max_by_key(|o| o.length) {
                let entry = shown.entry(stream.clone()).or_insert((0, 0, String::new()));
                if most.length > entry.0 {
                    *entry = (most.length, most.at, most.what.clone());
                }
            }
        }
        self.since.shown = shown;
        for (stream, mut stream_limits) in limits {
            let mut stream_observations = observations.remove(&stream).unwrap_or_default();
            stream_observations.sort_by_key(|observation| observation.at);
            stream_limits.sort_by_key(|limit| limit.0);
            let mut next = 0;
            let before = earlier.get(&stream).map(|(length, at, what)| Observation {
                at: *at,
                length: *length,
                what: what.clone(),
            });
            let mut most_seen: Option<&Observation> = before.as_ref();
            for (sent, most, operation_index) in stream_limits {
                while next < stream_observations.len() && stream_observations[next].at < sent {
                    let observation = &stream_observations[next];
                    if most_seen.is_none_or(|seen| observation.length > seen.length) {
                        most_seen = Some(observation);
                    }
                    next += 1;
                }
                if let Some(seen) = most_seen
                    && seen.length > most
                {
                    let name = if stream.is_empty() { "$all" } else { &stream };
                    self.violations.push(Violation {
                        rule: Rule::StaleRead,
                        detail: format!(
                            "a read of {name} sent at {sent} µs saw at most {most} events, but \
                             {} (at {} µs) showed {}: {:?}",
                            seen.what,
                            seen.at,
                            seen.length,
                            self.history.operations[operation_index]
                        ),
                    });
                }
            }
        }
    }

    /// Checks a stream read against the final order; returns (how many events it proves
    /// existed, the most events the stream can have had when it was sent).
    fn check_stream_read(
        &mut self,
        operation: &Operation,
        stream: &str,
        from: StreamReadFrom,
        result: &ReadResult,
    ) -> Option<(Option<usize>, Option<usize>)> {
        let (events, reached_end) = match result {
            ReadResult::Failed { .. } => return None,
            ReadResult::NotFound => return Some((None, Some(0))),
            ReadResult::Events {
                events,
                reached_end,
            } => (events, *reached_end),
        };
        let revisions: Vec<u64> = match from {
            StreamReadFrom::Revision(first) => (first..).take(events.len()).collect(),
            StreamReadFrom::EndBackwards => match events.first() {
                Some(head) => (0..=head.revision).rev().take(events.len()).collect(),
                None => Vec::new(),
            },
        };
        for (event, revision) in events.iter().zip(revisions) {
            if self.stream_event(stream, revision) != Some(event) {
                self.violation(
                    Rule::NotInOrder,
                    format!(
                        "a read of {stream} from {from:?} returned {event:?} where the final \
                         order has {:?}: {operation:?}",
                        self.stream_event(stream, revision)
                    ),
                );
                return None;
            }
            self.check_not_from_the_future(event, operation.completed_at, "a stream read");
        }
        Some(match from {
            StreamReadFrom::EndBackwards => {
                let length = events.first().map_or(0, |head| head.revision as usize + 1);
                (Some(length), Some(length))
            }
            StreamReadFrom::Revision(first) => {
                let seen = events.last().map(|last| last.revision as usize + 1);
                let most = reached_end.then(|| seen.unwrap_or(first as usize));
                (seen, most)
            }
        })
    }

    /// Checks a `$all` read against the final order; returns (the length of the final order's
    /// prefix it proves existed, whether it reached the end).
    fn check_all_read(
        &mut self,
        operation: &Operation,
        from_position: Option<u64>,
        result: &ReadResult,
    ) -> Option<(usize, bool)> {
        let ReadResult::Events {
            events,
            reached_end,
        } = result
        else {
            return None;
        };
        let start = from_position.map_or(0, |position| {
            self.order
                .partition_point(|event| event.position < position)
        });
        if let Some(offset) = self.first_difference(start, events) {
            self.violation(
                Rule::NotInOrder,
                format!(
                    "a read of $all from {from_position:?} returned {:?} as its event {offset}, \
                     where the final order has {:?}: {operation:?}",
                    events[offset],
                    self.order.get(start + offset)
                ),
            );
            return None;
        }
        for event in events {
            self.check_not_from_the_future(event, operation.completed_at, "a $all read");
        }
        Some((start + events.len(), *reached_end))
    }

    /// The first place where `events` differs from the final order from `start` on.
    fn first_difference(&self, start: usize, events: &[Seen]) -> Option<usize> {
        events
            .iter()
            .enumerate()
            .find(|(offset, event)| self.order.get(start + offset) != Some(event))
            .map(|(offset, _)| offset)
    }

    fn check_not_from_the_future(&mut self, event: &Seen, returned_at: Micros, what: &str) {
        let (sent, _) = self.written_between(event);
        if sent > returned_at {
            self.violation(
                Rule::FromTheFuture,
                format!("{what} returned at {returned_at} µs {event:?}, sent at {sent} µs"),
            );
        }
    }

    pub(super) fn check_sessions(&mut self) {
        let history = self.history;
        for session in history.sessions.iter().skip(self.since.sessions) {
            self.figures.sessions_checked += 1;
            self.figures.deliveries_checked += session.deliveries.len() as u64;
            self.check_session(session);
        }
    }

    fn check_session(&mut self, session: &SubscriptionSession) {
        let start = session.after_position.map_or(0, |position| {
            self.order
                .partition_point(|event| event.position <= position)
        });
        let delivered: Vec<Seen> = session
            .deliveries
            .iter()
            .map(|(_, event)| event.clone())
            .collect();
        if let Some(offset) = self.first_difference(start, &delivered) {
            let got = &delivered[offset];
            let kind = if delivered[..offset].contains(got) {
                "a duplicate"
            } else if self
                .index_of
                .get(&got.id)
                .is_some_and(|i| *i > start + offset)
            {
                "a gap"
            } else {
                "a wrong event"
            };
            self.violation(
                Rule::NotInOrder,
                format!(
                    "subscriber {} (after {:?}) delivered {kind}: {got:?} as its event {offset}, \
                     where the final order has {:?}",
                    session.subscriber,
                    session.after_position,
                    self.order.get(start + offset)
                ),
            );
            return;
        }
        for (at, event) in &session.deliveries {
            self.check_not_from_the_future(event, *at, "a subscription");
        }
        if session.end == SessionEnd::CaughtUp && start + delivered.len() != self.order.len() {
            self.violation(
                Rule::SubscriptionIncomplete,
                format!(
                    "subscriber {} (after {:?}) caught up having delivered {} of the {} events \
                     after its start",
                    session.subscriber,
                    session.after_position,
                    delivered.len(),
                    self.order.len() - start
                ),
            );
        }
    }

    /// The group delivers only events of the final order (each as it is there), and once its
    /// consumers caught up, it has delivered each at least once: a kill may make it deliver
    /// again, never skip.
    pub(super) fn check_group(&mut self) {
        let history = self.history;
        let mut delivered = std::mem::take(&mut self.since.group_delivered);
        for delivery in history
            .group_deliveries
            .iter()
            .skip(self.since.group_deliveries)
        {
            self.figures.group_deliveries += 1;
            let found = self.index_of.get(&delivery.event.id).copied();
            match found {
                Some(index) if self.order[index] == delivery.event => {
                    if !delivered.insert(delivery.event.id) {
                        self.figures.group_redeliveries += 1;
                    }
                    self.check_not_from_the_future(&delivery.event, delivery.at, "the group");
                }
                _ => self.violation(
                    Rule::NotInOrder,
                    format!(
                        "consumer {} of the group got {:?}, which the final order has as {:?}",
                        delivery.consumer,
                        delivery.event,
                        found.map(|index| &self.order[index])
                    ),
                ),
            }
        }
        if history.group_caught_up {
            let missing: Vec<&Seen> = self
                .order
                .iter()
                .filter(|event| !delivered.contains(&event.id))
                .collect();
            if let Some(first) = missing.first() {
                self.violation(
                    Rule::GroupLost,
                    format!(
                        "the group never delivered {} of the {} events, the first {first:?}",
                        missing.len(),
                        self.order.len()
                    ),
                );
            }
        }
        self.since.group_delivered = delivered;
    }
}
