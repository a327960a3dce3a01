//! Decisions over a dynamic consistency boundary (DCB, docs/DCB.md): instead of one
//! aggregate's stream, a decision reads the events a query selects (by type and tags, in
//! any streams), folds them into a state, decides, and appends its events on condition
//! that no event matching the query appeared after the position it read. A conflict reads
//! only the newer matching events, folds them in and decides again.

use std::sync::Arc;

use strata_core::{
    AppendCondition, AppendPart, EventId, EventStore, ExpectedRevision, MultiAppendResult,
    Position, Query, StreamName,
};

use crate::aggregate::DomainEvent;
use crate::codec::{decode_event, encode};
use crate::error::{CommandError, Error};
use crate::repository::CONFLICT_RETRIES_DEFAULT;
use crate::upcaster::Upcasters;

/// Events read per page of a decision's query.
const READ_PAGE_EVENTS: usize = 1_024;

/// An event a decision appends: its stream, and the tags later queries select it by.
#[derive(Clone, Debug, PartialEq)]
pub struct Tagged<E> {
    pub stream: StreamName,
    pub event: E,
    pub tags: Vec<String>,
}

impl<E> Tagged<E> {
    pub fn new<T: Into<String>>(
        stream: StreamName,
        event: E,
        tags: impl IntoIterator<Item = T>,
    ) -> Self {
        Self {
            stream,
            event,
            tags: tags.into_iter().map(Into::into).collect(),
        }
    }
}

/// A business decision whose consistency boundary is a query.
///
/// `decide` must be deterministic given the state: after a conflict it runs again on the
/// state with the newer events folded in.
pub trait Decision: Send + Sync {
    type Event: DomainEvent;
    type State: Default + Send;
    type Error: std::error::Error + Send + Sync + 'static;

    /// The events the decision depends on; its appends fail if one appears meanwhile.
    fn query(&self) -> Query;

    /// Evolves the state by one event the query selected.
    fn evolve(&self, state: &mut Self::State, event: Self::Event);

    /// The events to append (none: nothing to do), or why the decision is refused.
    ///
    /// # Errors
    /// The domain's reason to refuse.
    fn decide(&self, state: &Self::State) -> Result<Vec<Tagged<Self::Event>>, Self::Error>;
}

/// What an executed decision did.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionOutcome {
    /// The append, or `None` when the decision had nothing to append.
    pub appended: Option<MultiAppendResult>,
    /// Attempts made (1 without a conflict).
    pub attempts: u32,
}

/// Runs [`Decision`]s against a store.
pub struct Decider<S: EventStore + ?Sized> {
    store: Arc<S>,
    upcasters: Upcasters,
    conflict_retries: u32,
}

impl<S: EventStore + ?Sized> Decider<S> {
    pub fn new(store: Arc<S>) -> Self {
        Self {
            store,
            upcasters: Upcasters::new(),
            conflict_retries: CONFLICT_RETRIES_DEFAULT,
        }
    }

    /// Upcasters applied to the events read.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// How many times a decision is retried after losing a race (16 by default).
    pub fn with_conflict_retries(mut self, retries: u32) -> Self {
        self.conflict_retries = retries;
        self
    }

    /// Reads the decision's events, decides and appends conditionally at the position
    /// read; on a conflict reads the newer events and decides again, up to the retries.
    ///
    /// # Errors
    /// [`CommandError::Rejected`] with the decision's refusal; [`Error::Decode`] for an
    /// event the decision's event type cannot read; [`Error::DecisionConflictsExhausted`];
    /// store errors.
    pub async fn execute<D: Decision>(
        &self,
        decision: &D,
    ) -> Result<DecisionOutcome, CommandError<D::Error>> {
        let query = decision.query();
        let mut state = D::State::default();
        let mut after: Option<Position> = None;
        let mut attempts = 0;
        loop {
            attempts += 1;
            after = self.fold_newer(decision, &query, &mut state, after).await?;
            let decided = decision.decide(&state).map_err(CommandError::Rejected)?;
            if decided.is_empty() {
                return Ok(DecisionOutcome {
                    appended: None,
                    attempts,
                });
            }
            let parts = parts_of(decided)?;
            let condition = AppendCondition::new(query.clone(), after);
            match self.store.append_conditional(parts, condition).await {
                Ok(appended) => {
                    return Ok(DecisionOutcome {
                        appended: Some(appended),
                        attempts,
                    });
                }
                Err(strata_core::Error::AppendConditionFailed { .. })
                    if attempts <= self.conflict_retries => {}
                Err(strata_core::Error::AppendConditionFailed { .. }) => {
                    return Err(CommandError::Failed(Error::DecisionConflictsExhausted {
                        attempts,
                    }));
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Folds the events matching `query` after `after` into `state`; returns the position
    /// to decide at.
    async fn fold_newer<D: Decision>(
        &self,
        decision: &D,
        query: &Query,
        state: &mut D::State,
        mut after: Option<Position>,
    ) -> Result<Option<Position>, Error> {
        loop {
            let slice = self
                .store
                .read_query(query, after, READ_PAGE_EVENTS)
                .await?;
            for recorded in &slice.events {
                let event: D::Event = decode_event(recorded, &self.upcasters)?;
                decision.evolve(state, event);
            }
            after = slice.last_position;
            if !slice.more {
                return Ok(after);
            }
        }
    }
}

/// The decided events as one append part per stream (in first-seen order), with their
/// tags and fresh ids.
fn parts_of<E: DomainEvent>(decided: Vec<Tagged<E>>) -> Result<Vec<AppendPart>, Error> {
    let mut parts: Vec<AppendPart> = Vec::new();
    for tagged in decided {
        let proposed = encode(&tagged.event, EventId::new_random(), None)?
            .with_tags(tagged.tags)
            .map_err(Error::Store)?;
        match parts.iter_mut().find(|part| part.stream == tagged.stream) {
            Some(part) => part.events.push(proposed),
            None => parts.push(AppendPart::write(
                tagged.stream,
                ExpectedRevision::Any,
                vec![proposed],
            )),
        }
    }
    Ok(parts)
}
