//! The connectors of one store: create, list, show, start, stop, reset, update, delete.
//! Definitions live in `$connectors`; each enabled connector runs as its own task.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use strata_core::{EventStore, ExpectedRevision, Timestamp};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::definition::{ConnectorDefinition, ConnectorSettings, Source, StartFrom};
use crate::error::{Error, Result};
use crate::lag;
use crate::runtime;
use crate::sink::Sink;
use crate::sinks;
use crate::status::{ConnectorCounters, ConnectorState, Shared};
use crate::streams::{self, Checkpoint, StoredConnector};

/// What `list` and `show` report about one connector. Secrets are never in it.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectorInfo {
    pub id: String,
    /// `nats`, `rabbit-mq` or `http`.
    pub sink: &'static str,
    pub state: ConnectorState,
    pub enabled: bool,
    /// The definition with every secret replaced by `***`.
    pub definition: serde_json::Value,
    /// Source cursor (position, or revision for a stream source) of the last event
    /// published or dead-lettered, and of the last checkpoint.
    pub position: Option<u64>,
    pub checkpoint: Option<u64>,
    /// Log position of the newest event in the store.
    pub log_position: Option<u64>,
    /// Seconds between the record time of the last event handled and now, while events
    /// are waiting; 0 when caught up.
    pub lag_seconds: f64,
    /// Events of the source after the last one handled, counted up to
    /// [`crate::LAG_EVENTS_COUNT_MAX`]; `None` while the connector has not read its
    /// checkpoint since it was started (a stopped connector).
    pub lag_events: Option<u64>,
    pub last_error: Option<String>,
    pub counters: ConnectorCounters,
}

/// What [`Connectors::declare`] did with one definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Declared {
    Created,
    Updated,
    Unchanged,
}

struct Entry {
    stored: StoredConnector,
    shared: Arc<Shared>,
    runner: Option<Runner>,
}

struct Runner {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Registry {
    entries: BTreeMap<String, Entry>,
    revision: Option<u64>,
}

/// Every connector of a store.
pub struct Connectors {
    store: Arc<dyn EventStore>,
    registry: Mutex<Registry>,
}

impl Connectors {
    /// Loads the stored connectors and starts the enabled ones (each connects to its sink
    /// in its own task, retrying while the broker is away). Call inside a tokio runtime.
    ///
    /// # Errors
    /// Store errors; [`Error::CorruptState`] when `$connectors` does not parse.
    pub async fn open(store: Arc<dyn EventStore>) -> Result<Self> {
        let (stored, revision) = streams::load_definitions(&*store).await?;
        let mut entries = BTreeMap::new();
        for connector in stored {
            let mut entry = Entry {
                shared: Arc::new(Shared::new()),
                stored: connector,
                runner: None,
            };
            if entry.stored.enabled {
                entry.runner = Some(spawn(&store, &entry, None));
            }
            entries.insert(entry.stored.definition.id.clone(), entry);
        }
        Ok(Self {
            store,
            registry: Mutex::new(Registry { entries, revision }),
        })
    }

    /// Creates and starts a connector, after checking its settings and that its sink
    /// answers (a bad template, an unknown sink, an unreachable broker fail here).
    ///
    /// # Errors
    /// [`Error::InvalidDefinition`], [`Error::SinkUnreachable`], [`Error::Exists`], store
    /// errors.
    pub async fn create(&self, definition: ConnectorDefinition) -> Result<ConnectorInfo> {
        definition.validate()?;
        let id = definition.id.clone();
        if self.registry.lock().await.entries.contains_key(&id) {
            return Err(Error::Exists { id });
        }
        let sink =
            sinks::connect(&definition.sink)
                .await
                .map_err(|reason| Error::SinkUnreachable {
                    id: id.clone(),
                    reason,
                })?;
        streams::limit_checkpoints(&*self.store, &id).await?;
        let mut registry = self.registry.lock().await;
        if registry.entries.contains_key(&id) {
            return Err(Error::Exists { id });
        }
        let mut entry = Entry {
            stored: StoredConnector {
                definition,
                enabled: true,
            },
            shared: Arc::new(Shared::new()),
            runner: None,
        };
        let mut list = stored_list(&registry);
        list.push(entry.stored.clone());
        registry.revision =
            Some(streams::save_definitions(&*self.store, list, registry.revision).await?);
        entry.runner = Some(spawn(&self.store, &entry, Some(sink)));
        registry.entries.insert(id.clone(), entry);
        drop(registry);
        self.show(&id).await
    }

    /// Makes the stored connectors match `definitions` (a config file's `[[connectors]]`):
    /// a missing one is created and started, one whose stored definition differs is
    /// replaced (keeping its checkpoint and whether it is enabled) and restarted, an equal
    /// one is left alone; connectors not named are not touched. Unlike [`Connectors::create`]
    /// this does not wait for the sink: a broker that is down shows as `retrying`, so a
    /// server starts whatever its brokers are doing.
    ///
    /// # Errors
    /// [`Error::InvalidDefinition`] for the first invalid definition or a repeated id
    /// (nothing is changed then), store errors.
    pub async fn declare(
        &self,
        definitions: Vec<ConnectorDefinition>,
    ) -> Result<Vec<(String, Declared)>> {
        let mut ids = std::collections::HashSet::new();
        for definition in &definitions {
            definition.validate()?;
            if !ids.insert(definition.id.clone()) {
                return Err(Error::InvalidDefinition {
                    id: definition.id.clone(),
                    reason: "the id is declared twice".into(),
                });
            }
        }
        let mut registry = self.registry.lock().await;
        let mut outcomes = Vec::with_capacity(definitions.len());
        for definition in definitions {
            let id = definition.id.clone();
            let (outcome, enabled) = match registry.entries.get(&id) {
                None => (Declared::Created, true),
                Some(entry) if entry.stored.definition == definition => {
                    outcomes.push((id, Declared::Unchanged));
                    continue;
                }
                Some(entry) => (Declared::Updated, entry.stored.enabled),
            };
            if outcome == Declared::Created {
                streams::limit_checkpoints(&*self.store, &id).await?;
                registry.entries.insert(
                    id.clone(),
                    Entry {
                        stored: StoredConnector {
                            definition: definition.clone(),
                            enabled: false,
                        },
                        shared: Arc::new(Shared::new()),
                        runner: None,
                    },
                );
            }
            let stored = StoredConnector {
                definition,
                enabled,
            };
            if let Err(error) = self.replace(&mut registry, &id, Some(stored)).await {
                if outcome == Declared::Created {
                    registry.entries.remove(&id);
                }
                return Err(error);
            }
            outcomes.push((id, outcome));
        }
        Ok(outcomes)
    }

    /// Every connector, by id.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list(&self) -> Result<Vec<ConnectorInfo>> {
        let log_position = self.store.last_position().await?.map(|position| position.0);
        let registry = self.registry.lock().await;
        let infos: Vec<_> = registry
            .entries
            .values()
            .map(|entry| info(entry, log_position))
            .collect();
        drop(registry);
        let mut listed = Vec::with_capacity(infos.len());
        for (info, lag) in infos {
            listed.push(self.with_lag(info, lag).await?);
        }
        Ok(listed)
    }

    /// `info` with its lag in events counted.
    async fn with_lag(&self, mut info: ConnectorInfo, lag: LagFrom) -> Result<ConnectorInfo> {
        if let Some(cursor) = lag.cursor {
            info.lag_events =
                Some(lag::lag_events(&*self.store, &info.id, &lag.source, cursor).await?);
        }
        Ok(info)
    }

    /// One connector.
    ///
    /// # Errors
    /// [`Error::NotFound`], store errors.
    pub async fn show(&self, id: &str) -> Result<ConnectorInfo> {
        let log_position = self.store.last_position().await?.map(|position| position.0);
        let registry = self.registry.lock().await;
        let entry = registry.entries.get(id).ok_or_else(|| not_found(id))?;
        let (info, lag) = info(entry, log_position);
        drop(registry);
        self.with_lag(info, lag).await
    }

    /// Starts a stopped connector from its checkpoint.
    ///
    /// # Errors
    /// [`Error::NotFound`], store errors.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.set_enabled(id, true).await
    }

    /// Stops a connector after it writes its last checkpoint.
    ///
    /// # Errors
    /// [`Error::NotFound`], store errors.
    pub async fn stop(&self, id: &str) -> Result<()> {
        self.set_enabled(id, false).await
    }

    /// Moves a connector's checkpoint to `from` (it restarts there if it was running);
    /// `End` is where its source ends at the reset.
    ///
    /// # Errors
    /// [`Error::NotFound`], store errors.
    pub async fn reset(&self, id: &str, from: StartFrom) -> Result<()> {
        let mut registry = self.registry.lock().await;
        let entry = registry.entries.get_mut(id).ok_or_else(|| not_found(id))?;
        halt(entry).await;
        // `End` is where the source ends now, at the reset: resolved later, when the
        // connector next runs, it would skip what was appended in between.
        let resume =
            runtime::resolve_end(&*self.store, &entry.stored.definition.source, from).await?;
        streams::save_checkpoint(&*self.store, id, Checkpoint { resume }).await?;
        if entry.stored.enabled {
            entry.shared = Arc::new(Shared::new());
            entry.runner = Some(spawn(&self.store, entry, None));
        }
        Ok(())
    }

    /// Replaces a connector's settings (batching, checkpoints, retries, start) and
    /// restarts it if it was running.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidDefinition`], store errors.
    pub async fn update_settings(&self, id: &str, settings: ConnectorSettings) -> Result<()> {
        let mut registry = self.registry.lock().await;
        let entry = registry.entries.get(id).ok_or_else(|| not_found(id))?;
        let mut updated = entry.stored.clone();
        updated.definition.settings = settings;
        updated.definition.validate()?;
        self.replace(&mut registry, id, Some(updated)).await
    }

    /// Replaces (or, with `None`, removes) a connector's JavaScript transform and restarts it
    /// if it was running; it resumes from its checkpoint with the new transform.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidDefinition`] (the transform does not compile),
    /// store errors.
    pub async fn update_transform(&self, id: &str, transform: Option<String>) -> Result<()> {
        let mut registry = self.registry.lock().await;
        let entry = registry.entries.get(id).ok_or_else(|| not_found(id))?;
        let mut updated = entry.stored.clone();
        updated.definition.transform = transform;
        updated.definition.validate()?;
        self.replace(&mut registry, id, Some(updated)).await
    }

    /// Stops and removes a connector, and deletes its checkpoint stream. Its dead letters
    /// stay until deleted by hand.
    ///
    /// # Errors
    /// [`Error::NotFound`], store errors.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let mut registry = self.registry.lock().await;
        if !registry.entries.contains_key(id) {
            return Err(not_found(id));
        }
        self.replace(&mut registry, id, None).await?;
        match self
            .store
            .delete_stream(&streams::checkpoint_stream(id), ExpectedRevision::Any)
            .await
        {
            Ok(_) | Err(strata_core::Error::WrongExpectedRevision { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Stops every connector, each after its last checkpoint.
    pub async fn shutdown(&self) {
        let mut registry = self.registry.lock().await;
        for entry in registry.entries.values_mut() {
            halt(entry).await;
        }
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<()> {
        let mut registry = self.registry.lock().await;
        let entry = registry.entries.get(id).ok_or_else(|| not_found(id))?;
        let mut updated = entry.stored.clone();
        updated.enabled = enabled;
        self.replace(&mut registry, id, Some(updated)).await
    }

    /// Saves the list with `id` replaced (or removed), then restarts (or stops) it.
    async fn replace(
        &self,
        registry: &mut Registry,
        id: &str,
        updated: Option<StoredConnector>,
    ) -> Result<()> {
        let mut list = stored_list(registry);
        list.retain(|stored| stored.definition.id != id);
        if let Some(updated) = &updated {
            list.push(updated.clone());
        }
        registry.revision =
            Some(streams::save_definitions(&*self.store, list, registry.revision).await?);
        let Some(mut entry) = registry.entries.remove(id) else {
            return Ok(());
        };
        halt(&mut entry).await;
        if let Some(updated) = updated {
            entry.stored = updated;
            if entry.stored.enabled {
                entry.shared = Arc::new(Shared::new());
                entry.runner = Some(spawn(&self.store, &entry, None));
            }
            registry.entries.insert(id.to_owned(), entry);
        }
        Ok(())
    }
}

impl Drop for Connectors {
    fn drop(&mut self) {
        // Without a graceful shutdown the tasks end here, as after a crash: they resume
        // from their last checkpoint next time.
        if let Ok(registry) = self.registry.try_lock() {
            for entry in registry.entries.values() {
                if let Some(runner) = &entry.runner {
                    runner.task.abort();
                }
            }
        }
    }
}

fn spawn(store: &Arc<dyn EventStore>, entry: &Entry, sink: Option<Box<dyn Sink>>) -> Runner {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(runtime::run(
        Arc::clone(store),
        entry.stored.definition.clone(),
        Arc::clone(&entry.shared),
        stopped,
        sink,
    ));
    Runner { stop, task }
}

async fn halt(entry: &mut Entry) {
    if let Some(runner) = entry.runner.take() {
        runner.stop.send_replace(true);
        let _ = runner.task.await;
    }
}

fn stored_list(registry: &Registry) -> Vec<StoredConnector> {
    registry
        .entries
        .values()
        .map(|entry| entry.stored.clone())
        .collect()
}

fn not_found(id: &str) -> Error {
    Error::NotFound { id: id.to_owned() }
}

/// Where to count a connector's lag in events from.
struct LagFrom {
    source: Source,
    /// The cursor after which events are still to publish (inner `None`: the start);
    /// `None` when unknown.
    cursor: Option<Option<u64>>,
}

fn info(entry: &Entry, log_position: Option<u64>) -> (ConnectorInfo, LagFrom) {
    let progress = entry.shared.progress();
    let waiting = match (progress.last_position, log_position) {
        (Some(handled), Some(end)) => handled < end,
        (None, Some(_)) => true,
        _ => false,
    };
    let lag_seconds = match (waiting, progress.last_created) {
        (true, Some(created)) => (Timestamp::now().0 - created.0).max(0) as f64 / 1e9,
        _ => 0.0,
    };
    let definition = &entry.stored.definition;
    let lag = LagFrom {
        source: definition.source.clone(),
        cursor: progress
            .resumed
            .then_some(progress.cursor.or(progress.checkpointed)),
    };
    let info = ConnectorInfo {
        id: definition.id.clone(),
        sink: definition.sink.kind(),
        state: progress.state,
        enabled: entry.stored.enabled,
        definition: definition.redacted_json(),
        position: progress.cursor,
        checkpoint: progress.checkpointed,
        log_position,
        lag_seconds,
        lag_events: None,
        last_error: progress.last_error,
        counters: entry.shared.counters(),
    };
    (info, lag)
}
