//! The conformance kit: behaviour every [`crate::EventStore`] backend must show.
//!
//! A backend implements [`Backend`] and runs every case with one macro call in a test file:
//!
//! ```ignore
//! struct MemoryBackend;
//!
//! #[async_trait::async_trait]
//! impl strata_core::conformance::Backend for MemoryBackend {
//!     type Store = MemoryStore;
//!     async fn fresh_with_clock(&self, clock: strata_core::Clock) -> std::sync::Arc<MemoryStore> {
//!         std::sync::Arc::new(MemoryStore::with_clock(clock))
//!     }
//! }
//!
//! strata_core::conformance_tests!(MemoryBackend);
//! ```
//!
//! Each case is also a public function (`strata_core::conformance::append_batch_is_atomic`)
//! that panics on failure, like a test. The semantics follow KurrentDB.

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::store::EventStore;

pub use log_from::LogFrom;

mod append;
mod check;
mod concurrency;
mod dcb;
mod delete;
mod expiry;
mod filters;
mod idempotence;
mod limits;
mod log_from;
mod metadata;
mod multi_append;
mod persistence;
mod read_all;
mod read_stream;
#[cfg(test)]
mod reference;
mod subscriptions;
mod support;
mod system_streams;
mod tombstone;
mod windows;

/// Makes stores for the cases.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    type Store: EventStore;

    /// A new, empty store that takes its time from `clock` (the `created` stamp of new
    /// events and the "now" of `$maxAge`); each call returns a different one. The cases
    /// about time pass a [`crate::ManualClock`]'s clock and move it instead of sleeping.
    async fn fresh_with_clock(&self, clock: Clock) -> Arc<Self::Store>;

    /// A new, empty store on the system clock.
    async fn fresh(&self) -> Arc<Self::Store> {
        self.fresh_with_clock(Clock::system()).await
    }

    /// Whether the stores take multi-stream appends. A backend that cannot (a client
    /// without the call) must refuse them with [`crate::Error::Unsupported`] and write
    /// nothing; the multi-stream cases then check exactly that.
    fn multi_append(&self) -> bool {
        true
    }

    /// Whether the stores take conditional (DCB) appends; a backend that cannot must refuse
    /// them with [`crate::Error::Unsupported`].
    fn dcb(&self) -> bool {
        self.multi_append()
    }

    /// Closes `store` and opens the same data again. The default returns `store` itself,
    /// for backends without persistence.
    async fn reopen(&self, store: Arc<Self::Store>) -> Arc<Self::Store> {
        store
    }
}

crate::__strata_conformance_cases!(__strata_conformance_reexports!(()));
pub use dcb::concurrent_rounds as dcb_concurrent_rounds;

/// Every case of the kit as `module::case`, handed to the macro `$callback` after
/// `$args`. The single list keeps the re-exports and the generated tests in step; a case
/// missing from it is dead code, which the build denies.
#[doc(hidden)]
#[macro_export]
macro_rules! __strata_conformance_cases {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! {
            $($args)*
            append::append_any_to_new_stream_starts_at_zero,
            append::append_no_stream_to_new_stream_starts_at_zero,
            append::append_positions_strictly_increase,
            append::append_exact_to_missing_stream_fails,
            append::append_exact_checks_the_last_revision,
            append::append_no_stream_to_existing_stream_fails,
            append::append_stream_exists_checks_existence,
            append::append_stream_exists_with_only_metadata_succeeds,
            append::append_batch_is_atomic,
            append::append_of_no_events_is_refused,
            check::checking_an_expected_revision_agrees_with_appending,
            idempotence::idempotent_resend_with_exact_returns_the_same_result,
            idempotence::idempotent_resend_with_any_returns_the_same_result,
            idempotence::idempotent_partial_match_fails,
            idempotence::idempotence_is_per_stream,
            read_stream::read_stream_returns_events_as_appended,
            read_stream::read_stream_forwards,
            read_stream::read_stream_backwards,
            read_stream::read_missing_stream_is_not_found,
            read_stream::read_stream_forwards_from_end_is_empty,
            read_all::read_all_of_empty_store_is_empty,
            read_all::read_all_forwards_returns_everything_in_order,
            read_all::read_all_forwards_from_position_is_inclusive,
            read_all::read_all_backwards,
            read_all::read_all_paging_reaches_every_event_once,
            read_all::read_all_shows_deleted_and_truncated_streams,
            filters::read_all_filtered_by_prefix,
            filters::read_all_filtered_by_regex,
            filters::read_all_filtered_by_client_default_exclude,
            filters::read_all_filtered_paging,
            filters::read_all_filter_matching_nothing_reaches_the_end,
            filters::read_all_regex_over_its_backtracking_limit_fails_the_read,
            metadata::metadata_round_trips,
            metadata::metadata_expected_revision_is_checked,
            metadata::metadata_max_count_hides_older_events,
            metadata::metadata_truncate_before_hides_older_events,
            metadata::metadata_stream_reads_show_only_the_last_metadata,
            metadata::writing_the_metadata_of_a_soft_deleted_stream_keeps_its_old_events_hidden,
            expiry::metadata_max_age_hides_expired_events,
            expiry::max_age_expired_events_never_hide_live_ones_from_reads,
            expiry::max_age_expired_events_never_stall_a_stream_subscription,
            delete::soft_delete_hides_the_stream,
            delete::soft_deleted_stream_is_revived_by_append,
            delete::soft_deleted_stream_refuses_stream_exists,
            delete::soft_delete_of_missing_stream_fails,
            delete::soft_delete_checks_expected_revision,
            delete::soft_delete_replaces_the_metadata_with_truncate_before_alone,
            delete::revival_keeps_every_metadata_key_but_truncate_before,
            delete::soft_delete_expecting_no_stream_of_a_metadata_only_or_deleted_stream_succeeds,
            tombstone::tombstone_of_existing_stream,
            tombstone::tombstone_of_missing_stream,
            tombstone::tombstone_checks_expected_revision,
            tombstone::tombstone_of_soft_deleted_stream,
            tombstone::tombstone_expecting_stream_exists_of_a_stream_with_only_metadata_succeeds,
            tombstone::tombstoned_stream_metadata_is_writable_when_it_had_metadata,
            tombstone::tombstoned_stream_metadata_is_refused_when_it_had_none,
            subscriptions::subscribe_to_all_from_start,
            subscriptions::subscribe_to_all_after_position_is_exclusive,
            subscriptions::subscribe_to_all_from_end,
            subscriptions::subscribe_to_stream_from_start_after_and_end,
            subscriptions::subscribe_to_all_catch_up_under_concurrent_appends,
            subscriptions::subscribe_to_all_filtered_with_checkpoints,
            subscriptions::subscribe_to_all_sparse_filter_checkpoints_while_live,
            subscriptions::subscribe_to_tombstoned_stream_ends_with_stream_deleted,
            subscriptions::subscribe_to_stream_catch_up_under_concurrent_appends,
            concurrency::concurrent_exact_appends_have_one_winner_per_revision,
            concurrency::concurrent_batches_stay_whole,
            concurrency::readers_never_see_a_partial_batch,
            limits::event_over_the_limit_is_refused,
            limits::append_over_the_limit_is_refused,
            limits::invalid_event_type_is_refused,
            limits::event_type_with_nul_is_refused,
            limits::invalid_stream_names_are_refused,
            limits::metadata_of_a_metadata_stream_is_refused,
            multi_append::multi_append_writes_every_part_together,
            multi_append::multi_append_failing_part_fails_the_whole,
            multi_append::multi_append_check_only_parts,
            multi_append::multi_append_resend_returns_the_original_result,
            multi_append::multi_append_limits_apply_to_the_sum,
            multi_append::readers_never_see_a_partial_multi_append,
            dcb::dcb_query_reads_match_types_and_tags,
            dcb::dcb_conditional_append_checks_its_query,
            dcb::dcb_concurrent_conditional_appends_exactly_one_wins,
            persistence::reopen_keeps_everything,
            persistence::reopen_twice_keeps_appending,
            windows::read_all_window_bounds_and_counts_the_events_looked_at,
            windows::filtered_subscription_checkpoints_every_interval_of_events_examined,
            system_streams::category_stream_reads_forwards_and_backwards,
            system_streams::event_type_correlation_and_stream_lists,
            system_streams::links_resolve_to_their_targets,
            system_streams::resolved_reads_equal_reading_then_resolving,
            system_streams::category_subscription_catches_up_under_concurrent_appends,
            system_streams::links_of_deleted_and_truncated_streams_stay_and_resolve_to_nothing,
            system_streams::writes_to_system_streams_are_refused,
            system_streams::index_filtered_all_reads_equal_the_definition,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __strata_conformance_reexports {
    (() $($module:ident :: $case:ident),* $(,)?) => {
        $(pub use $crate::conformance::$module::$case;)*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __strata_conformance_test_fns {
    (($backend:expr) $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::$case(&$backend).await
            }
        )*
    };
}

/// Expands to one `#[tokio::test]` per conformance case, each running the case against
/// `$backend` (evaluated once per test). The calling crate needs `tokio` with the
/// `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::__strata_conformance_cases!(__strata_conformance_test_fns!(($backend)));
    };
    ($backend:expr,) => {
        $crate::conformance_tests!($backend);
    };
}
