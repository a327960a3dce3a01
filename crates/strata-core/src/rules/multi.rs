//! The plan of an atomic append across streams: each writing part planned by
//! [`plan_append`] as if appended alone after the parts before it, each check by
//! [`check_expected`] against the state before the request; the records of every part
//! form one transaction.

use std::collections::HashMap;
use std::ops::Range;

use crate::error::{Error, Result};
use crate::multi_append::{AppendPart, MultiAppendResult};
use crate::types::{AppendResult, EventId, Position, Revision, StreamName};

use super::write::{set_head, wrong_expected};
use super::{
    AppendDecision, RecordBody, StreamHead, StreamView, WritePlan, check_expected, plan_append,
};

/// What a multi-stream append comes to.
#[derive(Clone, Debug, PartialEq)]
pub enum MultiAppendDecision {
    /// Every writing part is already where the request would put it: a re-send of the
    /// whole request. Nothing is written and the original result is the answer.
    AlreadyAppended(MultiAppendResult),
    /// Write these records as one transaction.
    Write(MultiWritePlan),
}

/// The records of every part as one transaction. Proposed records index into the events
/// of the writing parts laid end to end in request order
/// ([`crate::multi_append::events_of_parts`]).
#[derive(Clone, Debug, PartialEq)]
pub struct MultiWritePlan {
    pub plan: WritePlan,
    /// Each writing part's stream and the range of its records in `plan.records`.
    parts: Vec<(StreamName, Range<usize>)>,
}

impl MultiWritePlan {
    /// What the append reports, given the position each record got.
    ///
    /// # Panics
    /// When `positions` is shorter than the plan's records.
    pub fn result(&self, positions: &[Position]) -> MultiAppendResult {
        let parts: Vec<(StreamName, AppendResult)> = self
            .parts
            .iter()
            .map(|(stream, range)| {
                let index = range
                    .clone()
                    .rfind(|index| {
                        matches!(self.plan.records[*index].body, RecordBody::Proposed(_))
                    })
                    .unwrap_or_else(|| unreachable!("a writing part plans its events"));
                let result = AppendResult {
                    current_revision: Revision(self.plan.records[index].revision),
                    position: positions[index],
                };
                (stream.clone(), result)
            })
            .collect();
        MultiAppendResult {
            position: last_position(&parts),
            parts,
        }
    }
}

fn last_position(parts: &[(StreamName, AppendResult)]) -> Position {
    parts
        .iter()
        .map(|(_, result)| result.position)
        .max()
        .unwrap_or(Position::START)
}

/// The view of a later part: the heads earlier parts of the request leave, over the store's.
struct Overlay<'a, V: ?Sized> {
    view: &'a V,
    heads: HashMap<StreamName, StreamHead>,
}

impl<V: StreamView + ?Sized> StreamView for Overlay<'_, V> {
    fn head(&self, stream: &StreamName) -> Result<StreamHead> {
        match self.heads.get(stream) {
            Some(head) => Ok(head.clone()),
            None => self.view.head(stream),
        }
    }

    fn event_position(
        &self,
        stream: &StreamName,
        revision: u64,
        id: EventId,
    ) -> Result<Option<Position>> {
        self.view.event_position(stream, revision, id)
    }

    fn recent_revision(&self, stream: &StreamName, id: EventId) -> Result<Option<u64>> {
        self.view.recent_revision(stream, id)
    }

    fn serves_system_streams(&self) -> bool {
        self.view.serves_system_streams()
    }
}

/// Plans an atomic append of `parts` (validated beforehand with
/// [`crate::Limits::check_multi_append`]).
///
/// A re-send is recognised for the whole request only: when every writing part is already
/// in place, the original result is the answer (checks are not evaluated again: the
/// original request passed them). When some parts are in place and others are not, the
/// first part in place fails with a wrong expected revision.
///
/// # Errors
/// The first failing part's error, as [`plan_append`] or [`check_expected`] gives it.
pub fn plan_multi_append<V: StreamView + ?Sized>(
    view: &V,
    parts: &[AppendPart],
) -> Result<MultiAppendDecision> {
    let mut overlay = Overlay {
        view,
        heads: HashMap::new(),
    };
    let mut plan = WritePlan {
        records: Vec::new(),
        heads: Vec::new(),
    };
    let mut written = Vec::new();
    let mut resent = Vec::new();
    let mut event_offset = 0;
    for part in parts.iter().filter(|part| !part.is_check()) {
        match plan_append(&overlay, &part.stream, part.expected, &part.events)? {
            AppendDecision::AlreadyAppended(result) => resent.push((part, result)),
            AppendDecision::Write(part_plan) => {
                let start = plan.records.len();
                for mut record in part_plan.records {
                    if let RecordBody::Proposed(index) = &mut record.body {
                        *index += event_offset;
                    }
                    plan.records.push(record);
                }
                for (stream, head) in part_plan.heads {
                    overlay.heads.insert(stream.clone(), head.clone());
                    set_head(&mut plan, &stream, head);
                }
                written.push((part.stream.clone(), start..plan.records.len()));
            }
        }
        event_offset += part.events.len();
    }
    if written.is_empty() && resent.is_empty() {
        return Err(Error::InvalidArgument {
            reason: "a multi-stream append needs at least one part with events".into(),
        });
    }
    if written.is_empty() {
        let parts: Vec<_> = resent
            .into_iter()
            .map(|(part, result)| (part.stream.clone(), result))
            .collect();
        return Ok(MultiAppendDecision::AlreadyAppended(MultiAppendResult {
            position: last_position(&parts),
            parts,
        }));
    }
    if let Some((part, _)) = resent.first() {
        let head = view.head(&part.stream)?;
        return Err(wrong_expected(&part.stream, part.expected, &head));
    }
    for part in parts.iter().filter(|part| part.is_check()) {
        check_expected(view, &part.stream, part.expected)?;
    }
    Ok(MultiAppendDecision::Write(MultiWritePlan {
        plan,
        parts: written,
    }))
}
