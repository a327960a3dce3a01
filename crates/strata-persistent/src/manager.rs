//! `PersistentSubscriptions`: creates, changes and removes groups, and connects consumers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use strata_core::{
    EventStore, ExpectedRevision, FencedStore, Leadership, NodeRole, StreamMetadata, StreamName,
    StreamState, system_streams,
};
use tokio::sync::{Mutex, oneshot};

use crate::checkpoint::{self, Checkpoint};
use crate::config::{self, GroupDefinition};
use crate::consumer::{Consumer, ConsumerOptions};
use crate::error::{DropReason, Error, Result};
use crate::group::{Command, GroupHandle, STATUS_FAILED};
use crate::info::GroupInfo;
use crate::limits::PersistentLimits;
use crate::settings::{GroupSettings, StartFrom};
use crate::source::{self, FilterSpec, SubscriptionSource, check_group_name};

type GroupKey = (SubscriptionSource, String);

struct Registry {
    definitions: BTreeMap<GroupKey, GroupDefinition>,
    config_revision: Option<u64>,
    groups: HashMap<GroupKey, GroupHandle>,
}

/// How often [`PersistentSubscriptions::supervise`] looks for failed groups.
pub const SUPERVISE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The persistent subscriptions of one store. Cheap to share behind an `Arc`; its state is
/// loaded from the store on first use, and every group then runs as its own task.
pub struct PersistentSubscriptions {
    store: Arc<dyn EventStore>,
    limits: PersistentLimits,
    registry: Mutex<Option<Registry>>,
    /// In a cluster: groups run on the leader only, and their writes are fenced.
    leadership: Option<Arc<Leadership>>,
}

impl PersistentSubscriptions {
    /// The persistent subscriptions of `store`, with the default [`PersistentLimits`].
    pub fn new<S: EventStore>(store: Arc<S>) -> Self {
        Self::from_dyn(store)
    }

    pub fn from_dyn(store: Arc<dyn EventStore>) -> Self {
        Self::with_limits(store, PersistentLimits::default())
    }

    pub fn with_limits(store: Arc<dyn EventStore>, limits: PersistentLimits) -> Self {
        Self {
            store,
            limits,
            registry: Mutex::new(None),
            leadership: None,
        }
    }

    /// Persistent subscriptions of a node in a cluster: every call on a node that is not
    /// the leader fails with [`strata_core::Error::NotLeader`] (naming the leader), and
    /// every write of the groups goes through a [`FencedStore`]. Call
    /// [`PersistentSubscriptions::follow_leadership`] so the groups start when this node
    /// becomes the leader and stop when it stops being so.
    pub fn with_leadership(
        store: Arc<dyn EventStore>,
        limits: PersistentLimits,
        leadership: Arc<Leadership>,
    ) -> Self {
        let fenced: Arc<dyn EventStore> =
            Arc::new(FencedStore::new(store, Arc::clone(&leadership)));
        Self {
            leadership: Some(leadership),
            ..Self::with_limits(fenced, limits)
        }
    }

    /// Starts the groups from their checkpoints whenever this node becomes the leader, and
    /// stops them (dropping their consumers) whenever it stops being so. Ends when the
    /// manager is dropped.
    pub fn follow_leadership(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let mut changes = self.leadership.as_ref()?.watch();
        let manager = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut leading = false;
            loop {
                let role = changes.borrow_and_update().role;
                let Some(manager) = manager.upgrade() else {
                    return;
                };
                match (leading, role) {
                    (false, NodeRole::Leader) => {
                        leading = true;
                        if let Err(error) = manager.restart().await {
                            tracing::warn!(%error, "persistent subscriptions not started on becoming the leader");
                        }
                    }
                    (true, NodeRole::Follower) => {
                        leading = false;
                        manager.shutdown().await;
                    }
                    _ => {}
                }
                drop(manager);
                if changes.changed().await.is_err() {
                    return;
                }
            }
        }))
    }

    /// Every [`SUPERVISE_INTERVAL`], starts again from its checkpoint each group whose
    /// source failed (a store error: a PostgreSQL session terminated, the server
    /// restarting), so that it resumes once the store answers again instead of refusing
    /// consumers until the next leadership change. Ends when the manager is dropped.
    pub fn supervise(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let manager = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SUPERVISE_INTERVAL).await;
                let Some(manager) = manager.upgrade() else {
                    return;
                };
                if let Err(error) = manager.restart_failed().await {
                    tracing::warn!(%error, "failed persistent subscription groups not restarted");
                }
            }
        })
    }

    /// Starts again, from their checkpoints, the groups whose source failed; returns how
    /// many. Nothing on a node that is not the leader, or before the groups were loaded.
    ///
    /// # Errors
    /// A definition that no longer builds a group.
    pub async fn restart_failed(&self) -> Result<usize> {
        if self.check_leader().is_err() {
            return Ok(0);
        }
        let mut guard = self.registry.lock().await;
        let Some(registry) = guard.as_mut() else {
            return Ok(0);
        };
        let mut failed = Vec::new();
        for (key, handle) in &registry.groups {
            let (reply, answer) = oneshot::channel();
            if handle.commands.send(Command::Info { reply }).await.is_err() {
                failed.push(key.clone());
                continue;
            }
            // A group still starting (its store slow to answer) is left to finish.
            match tokio::time::timeout(SUPERVISE_INTERVAL, answer).await {
                Ok(Ok(stats)) if stats.status != STATUS_FAILED => {}
                Ok(_) => failed.push(key.clone()),
                Err(_) => {}
            }
        }
        for key in &failed {
            if let Some(handle) = registry.groups.remove(key) {
                handle.stop(DropReason::Restarted).await;
            }
            if let Some(definition) = registry.definitions.get(key) {
                tracing::info!(source = %key.0, group = %key.1, "restarting a persistent subscription group whose source failed");
                let handle = self.spawn(definition.clone())?;
                registry.groups.insert(key.clone(), handle);
            }
        }
        Ok(failed.len())
    }

    pub fn limits(&self) -> PersistentLimits {
        self.limits
    }

    fn spawn(&self, definition: GroupDefinition) -> Result<GroupHandle> {
        GroupHandle::spawn(
            Arc::clone(&self.store),
            definition,
            self.limits.window_bytes_max,
            self.leadership.clone(),
        )
    }

    /// Groups live on the cluster's leader only.
    fn check_leader(&self) -> Result<()> {
        match &self.leadership {
            Some(leadership) if !leadership.is_leader() => {
                Err(Error::Store(strata_core::Error::NotLeader {
                    leader: leadership.leader(),
                }))
            }
            _ => Ok(()),
        }
    }

    async fn registry(&self) -> Result<tokio::sync::MappedMutexGuard<'_, Registry>> {
        self.check_leader()?;
        let mut guard = self.registry.lock().await;
        if guard.is_none() {
            *guard = Some(self.load().await?);
        }
        tokio::sync::MutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| Error::Store(strata_core::Error::Closed))
    }

    async fn load(&self) -> Result<Registry> {
        let (definitions, config_revision) = config::load(&*self.store).await?;
        let mut registry = Registry {
            definitions: BTreeMap::new(),
            config_revision,
            groups: HashMap::new(),
        };
        for definition in definitions {
            let key = (definition.source.clone(), definition.group.clone());
            let handle = self.spawn(definition.clone())?;
            registry.groups.insert(key.clone(), handle);
            registry.definitions.insert(key, definition);
        }
        Ok(registry)
    }

    /// Creates a group. `filter` applies to `$all` groups only. A start `At(2^64−1)` is the
    /// end (see [`StartFrom::at`]).
    ///
    /// # Errors
    /// [`Error::GroupExists`], [`Error::InvalidSettings`], [`Error::GroupLimitReached`],
    /// store errors.
    pub async fn create(
        &self,
        source: &SubscriptionSource,
        group: &str,
        mut settings: GroupSettings,
        filter: Option<FilterSpec>,
    ) -> Result<()> {
        check_group_name(source, group)?;
        check_settings(source, group, &mut settings)?;
        if let Some(filter) = &filter {
            if *source != SubscriptionSource::All {
                return Err(Error::invalid(
                    source,
                    group,
                    "filters apply to $all groups only",
                ));
            }
            filter.to_event_filter()?;
        }
        let checkpoint_stream = source::checkpoint_stream(source, group)?;
        source::parked_stream(source, group)?;
        let mut registry = self.registry().await?;
        let key = (source.clone(), group.to_owned());
        if registry.definitions.contains_key(&key) {
            return Err(Error::GroupExists {
                stream: source.to_string(),
                group: group.to_owned(),
            });
        }
        if registry.definitions.len() >= self.limits.groups_max {
            return Err(Error::GroupLimitReached {
                stream: source.to_string(),
                group: group.to_owned(),
                max: self.limits.groups_max,
            });
        }
        // A checkpoint at the current end, so a restart before the first ack keeps the start.
        if settings.start_from == StartFrom::End
            && let Some(end) = self.current_end(source).await?
        {
            let start = Checkpoint {
                done_through: Some(end),
                done_ranges: Vec::new(),
            };
            let epoch = self
                .leadership
                .as_ref()
                .and_then(|leadership| leadership.fence());
            checkpoint::write(
                &*self.store,
                &checkpoint_stream,
                &start,
                ExpectedRevision::Any,
                epoch,
            )
            .await?;
        }
        let definition = GroupDefinition {
            source: source.clone(),
            group: group.to_owned(),
            settings,
            filter,
        };
        let definitions = registry
            .definitions
            .values()
            .chain(std::iter::once(&definition));
        let revision = config::save(&*self.store, definitions, registry.config_revision).await?;
        registry.config_revision = Some(revision);
        let handle = self.spawn(definition.clone())?;
        registry.groups.insert(key.clone(), handle);
        registry.definitions.insert(key, definition);
        Ok(())
    }

    async fn current_end(&self, source: &SubscriptionSource) -> Result<Option<u64>> {
        Ok(match source {
            SubscriptionSource::Stream(stream) => {
                match system_streams::stream_state(&*self.store, stream).await? {
                    StreamState::At(revision) => Some(revision.0),
                    StreamState::NoStream | StreamState::Tombstoned => None,
                }
            }
            SubscriptionSource::All => self.store.last_position().await?.map(|p| p.0),
        })
    }

    /// Replaces a group's settings (its filter stays) and restarts it from its checkpoint;
    /// connected consumers are dropped.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], [`Error::InvalidSettings`], store errors.
    pub async fn update(
        &self,
        source: &SubscriptionSource,
        group: &str,
        mut settings: GroupSettings,
    ) -> Result<()> {
        check_settings(source, group, &mut settings)?;
        let mut registry = self.registry().await?;
        let key = (source.clone(), group.to_owned());
        let Some(existing) = registry.definitions.get(&key) else {
            return Err(not_found(source, group));
        };
        let definition = GroupDefinition {
            settings,
            ..existing.clone()
        };
        let definitions =
            registry.definitions.iter().map(
                |(other, stored)| {
                    if *other == key { &definition } else { stored }
                },
            );
        let revision = config::save(&*self.store, definitions, registry.config_revision).await?;
        registry.config_revision = Some(revision);
        if let Some(handle) = registry.groups.remove(&key) {
            handle.stop(DropReason::Updated).await;
        }
        let handle = self.spawn(definition.clone())?;
        registry.groups.insert(key.clone(), handle);
        registry.definitions.insert(key, definition);
        Ok(())
    }

    /// Deletes a group with its checkpoint and parked events; its consumers are dropped.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], store errors.
    pub async fn delete(&self, source: &SubscriptionSource, group: &str) -> Result<()> {
        let mut registry = self.registry().await?;
        let key = (source.clone(), group.to_owned());
        if !registry.definitions.contains_key(&key) {
            return Err(not_found(source, group));
        }
        let definitions = registry
            .definitions
            .iter()
            .filter(|(other, _)| **other != key)
            .map(|(_, definition)| definition);
        let revision = config::save(&*self.store, definitions, registry.config_revision).await?;
        registry.config_revision = Some(revision);
        registry.definitions.remove(&key);
        if let Some(handle) = registry.groups.remove(&key) {
            handle.stop(DropReason::Deleted).await;
        }
        for stream in [
            source::checkpoint_stream(source, group)?,
            source::parked_stream(source, group)?,
        ] {
            self.delete_if_present(&stream).await?;
        }
        Ok(())
    }

    async fn delete_if_present(&self, stream: &StreamName) -> Result<()> {
        if let StreamState::At(_) = self.store.stream_state(stream).await? {
            self.store
                .delete_stream(stream, ExpectedRevision::Any)
                .await?;
        }
        Ok(())
    }

    /// Connects a consumer to a group.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], [`Error::MaximumSubscribersReached`], [`Error::Dropped`]
    /// when the group cannot deliver (its source failed).
    pub async fn connect(
        &self,
        source: &SubscriptionSource,
        group: &str,
        options: ConsumerOptions,
    ) -> Result<Consumer> {
        let (reply, answer) = oneshot::channel();
        self.send(source, group, Command::Connect { options, reply })
            .await?;
        answer.await.map_err(|_| dropped(source, group))?
    }

    /// Redelivers up to `stop_at` parked events (all when `None`) ahead of new ones.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], store errors.
    pub async fn replay_parked(
        &self,
        source: &SubscriptionSource,
        group: &str,
        stop_at: Option<u64>,
    ) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(source, group, Command::ReplayParked { stop_at, reply })
            .await?;
        answer.await.map_err(|_| dropped(source, group))?
    }

    /// Discards up to `stop_at` of the oldest parked events (all when `None`).
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], store errors.
    pub async fn truncate_parked(
        &self,
        source: &SubscriptionSource,
        group: &str,
        stop_at: Option<u64>,
    ) -> Result<()> {
        self.definition(source, group).await?;
        let parked = source::parked_stream(source, group)?;
        let StreamState::At(last) = self.store.stream_state(&parked).await? else {
            return Ok(());
        };
        let first = self.first_visible(&parked).await?;
        let end = last.0 + 1;
        let truncate_before = stop_at.map_or(end, |count| first.saturating_add(count).min(end));
        let metadata = StreamMetadata {
            truncate_before: Some(truncate_before),
            ..StreamMetadata::default()
        };
        self.store
            .set_stream_metadata(&parked, ExpectedRevision::Any, &metadata)
            .await?;
        Ok(())
    }

    async fn first_visible(&self, stream: &StreamName) -> Result<u64> {
        let metadata = self.store.stream_metadata(stream).await?;
        Ok(metadata.metadata.truncate_before.unwrap_or(0))
    }

    /// A group's settings and statistics.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], store errors.
    pub async fn info(&self, source: &SubscriptionSource, group: &str) -> Result<GroupInfo> {
        let definition = self.definition(source, group).await?;
        let (reply, answer) = oneshot::channel();
        self.send(source, group, Command::Info { reply }).await?;
        let stats = answer.await.map_err(|_| dropped(source, group))?;
        let parked = source::parked_stream(source, group)?;
        let parked_count = match self.store.stream_state(&parked).await? {
            StreamState::At(last) => {
                (last.0 + 1).saturating_sub(self.first_visible(&parked).await?)
            }
            StreamState::NoStream | StreamState::Tombstoned => 0,
        };
        Ok(GroupInfo {
            source: definition.source,
            group: definition.group,
            settings: definition.settings,
            filter: definition.filter,
            status: stats.status.to_owned(),
            connections: stats.connections,
            total_items: stats.total_items,
            items_per_second: stats.items_per_second,
            last_checkpointed_place: stats.last_checkpointed_place,
            last_known_place: stats.last_known_place,
            ready_count: stats.ready_count,
            retry_count: stats.retry_count,
            in_flight_count: stats.in_flight_count,
            window_count: stats.window_count,
            parked_count,
        })
    }

    /// Every group, or those of one source.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list(&self, source: Option<&SubscriptionSource>) -> Result<Vec<GroupInfo>> {
        let keys: Vec<GroupKey> = self
            .registry()
            .await?
            .definitions
            .keys()
            .filter(|(group_source, _)| source.is_none_or(|wanted| wanted == group_source))
            .cloned()
            .collect();
        let mut infos = Vec::with_capacity(keys.len());
        for (group_source, group) in keys {
            match self.info(&group_source, &group).await {
                Ok(info) => infos.push(info),
                // Deleted meanwhile.
                Err(Error::GroupNotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(infos)
    }

    /// Stops every group, writing its last checkpoint, and drops every consumer. Call it
    /// before closing the store, so that a clean stop sends no acknowledged event again. A
    /// later call on the manager starts the groups again.
    pub async fn shutdown(&self) {
        let registry = self.registry.lock().await.take();
        if let Some(registry) = registry {
            for (_, handle) in registry.groups {
                handle.stop(DropReason::Shutdown).await;
            }
        }
    }

    /// Stops every group (writing their checkpoints), drops every consumer, and starts the
    /// groups again from the stored configuration.
    ///
    /// # Errors
    /// Store errors.
    pub async fn restart(&self) -> Result<()> {
        self.check_leader()?;
        let mut guard = self.registry.lock().await;
        if let Some(registry) = guard.take() {
            for (_, handle) in registry.groups {
                handle.stop(DropReason::Restarted).await;
            }
        }
        *guard = Some(self.load().await?);
        Ok(())
    }

    async fn definition(
        &self,
        source: &SubscriptionSource,
        group: &str,
    ) -> Result<GroupDefinition> {
        let registry = self.registry().await?;
        registry
            .definitions
            .get(&(source.clone(), group.to_owned()))
            .cloned()
            .ok_or_else(|| not_found(source, group))
    }

    async fn send(&self, source: &SubscriptionSource, group: &str, command: Command) -> Result<()> {
        let commands = {
            let registry = self.registry().await?;
            let handle = registry
                .groups
                .get(&(source.clone(), group.to_owned()))
                .ok_or_else(|| not_found(source, group))?;
            handle.commands.clone()
        };
        commands
            .send(command)
            .await
            .map_err(|_| dropped(source, group))
    }
}

/// Refuses what the reference server refuses, and reads a start of 2^64−1 as the end.
fn check_settings(
    source: &SubscriptionSource,
    group: &str,
    settings: &mut GroupSettings,
) -> Result<()> {
    if let Some(reason) = settings.problem() {
        return Err(Error::invalid(source, group, reason));
    }
    settings.start_from = settings.start_from.normalized();
    Ok(())
}

fn not_found(source: &SubscriptionSource, group: &str) -> Error {
    Error::GroupNotFound {
        stream: source.to_string(),
        group: group.to_owned(),
    }
}

fn dropped(source: &SubscriptionSource, group: &str) -> Error {
    Error::Dropped {
        stream: source.to_string(),
        group: group.to_owned(),
        reason: DropReason::Shutdown,
    }
}
