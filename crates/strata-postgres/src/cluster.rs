//! Membership and leadership of the Strata nodes sharing one schema (docs/CLUSTER.md).
//!
//! Each node keeps one dedicated session: it upserts its row of `cluster_nodes` (address,
//! heartbeat) every heartbeat interval, and tries `pg_try_advisory_lock` on the leader key
//! while it does not hold it. One lease after taking the lock the holder bumps
//! `cluster_leader.epoch` and becomes leader; every successful heartbeat of the holder's session renews
//! its lease from the moment the heartbeat was sent. A failed or slow heartbeat ends the
//! session (PostgreSQL then releases the lock) and makes the node a follower at once, and a
//! lapsed lease fences it even before that: an old leader's lease always ends before a new
//! leader's wait does, because the new one can only take the lock after the old session
//! died, which is after the old leader's last successful heartbeat was sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::{Leadership, Member, NodeAddress, NodeRole};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::config::PostgresConfig;
use crate::connect::{Role, connect};
use crate::error::PostgresError;
use crate::schema::LOCK_CLASS_LEADER;

/// Migration 3: who is in the cluster, and the current leadership term.
pub(crate) const CLUSTER_MIGRATION_SQL: &str = "
    CREATE TABLE cluster_nodes (
        node_id UUID PRIMARY KEY,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        resign_requested BOOLEAN NOT NULL DEFAULT false
    );
    CREATE TABLE cluster_leader (
        singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
        epoch BIGINT NOT NULL,
        node_id UUID NOT NULL,
        since TIMESTAMPTZ NOT NULL
    );";

/// Heartbeat period of every node (also how often a follower tries the lock).
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_millis(500);
/// How long a leader may act after its last heartbeat was sent, and how long a new leader
/// waits after taking the lock before it starts leader-only work.
pub const LEASE_DEFAULT: Duration = Duration::from_secs(2);
/// Server-side TCP keepalive of the cluster session (seconds): PostgreSQL notices a leader
/// whose host vanished after about idle + count × interval = 3 s and frees its lock.
const SESSION_KEEPALIVE_SECONDS: u32 = 1;
const SESSION_KEEPALIVE_COUNT: u32 = 2;

/// How this node takes part in the cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub node_id: Uuid,
    /// What gossip and `not-leader` answers tell clients about this node.
    pub advertised: NodeAddress,
    pub heartbeat_interval: Duration,
    pub lease: Duration,
}

impl ClusterOptions {
    pub fn new(advertised: NodeAddress) -> Self {
        Self {
            node_id: Uuid::new_v4(),
            advertised,
            heartbeat_interval: HEARTBEAT_INTERVAL_DEFAULT,
            lease: LEASE_DEFAULT,
        }
    }
}

/// A node's membership: runs until [`PostgresCluster::leave`].
pub struct PostgresCluster {
    leadership: Arc<Leadership>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PostgresCluster {
    /// Starts taking part in the cluster of `config`'s schema (the store must have been
    /// opened, so the tables exist). The node is a follower until it wins the lock.
    pub fn join(config: PostgresConfig, options: ClusterOptions) -> Self {
        let leadership = Leadership::clustered(options.node_id);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(config, options, Arc::clone(&leadership), stopped));
        Self {
            leadership,
            stop,
            task,
        }
    }

    pub fn leadership(&self) -> Arc<Leadership> {
        Arc::clone(&self.leadership)
    }

    /// Gives up the leadership (if held) and removes this node's row.
    pub async fn leave(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    config: PostgresConfig,
    options: ClusterOptions,
    leadership: Arc<Leadership>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut cooldown_until = None;
    loop {
        match connect(&config, Role::Cluster, None).await {
            Ok(client) => {
                let mut session = Session {
                    client,
                    config: &config,
                    options: &options,
                    leadership: &leadership,
                    holding: None,
                    cooldown_until,
                };
                if let Err(error) = session.serve(&mut stopped).await {
                    tracing::warn!(%error, "cluster session lost; this node is a follower until it is back");
                }
                cooldown_until = session.cooldown_until;
            }
            Err(error) => tracing::warn!(%error, "cannot open the cluster session"),
        }
        step_down(&leadership);
        if *stopped.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(options.heartbeat_interval) => {}
            _ = stopped.changed() => return,
        }
    }
}

fn step_down(leadership: &Leadership) {
    leadership.update(|view| {
        if view.role == NodeRole::Leader {
            tracing::warn!(epoch = view.epoch, "no longer the leader");
        }
        view.role = NodeRole::Follower;
        view.lease_until = None;
        view.leader = None;
    });
}

struct Session<'a> {
    client: Client,
    config: &'a PostgresConfig,
    options: &'a ClusterOptions,
    leadership: &'a Leadership,
    /// When this node took the lock, and its term once the lease wait is over.
    holding: Option<(Instant, Option<u64>)>,
    /// No lock attempts before this (after resigning).
    cooldown_until: Option<Instant>,
}

impl Session<'_> {
    async fn serve(&mut self, stopped: &mut watch::Receiver<bool>) -> Result<(), PostgresError> {
        self.client
            .batch_execute(&format!(
                "SET tcp_keepalives_idle = {SESSION_KEEPALIVE_SECONDS};
                 SET tcp_keepalives_interval = {SESSION_KEEPALIVE_SECONDS};
                 SET tcp_keepalives_count = {SESSION_KEEPALIVE_COUNT};"
            ))
            .await
            .map_err(PostgresError::query("setting up the cluster session"))?;
        let mut ticker = tokio::time::interval(self.options.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let leadership = self.leadership;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = leadership.resign_requested() => {
                    self.resign().await?;
                    continue;
                }
                _ = stopped.changed() => {
                    self.leave().await;
                    return Ok(());
                }
            }
            let deadline = self
                .options
                .lease
                .saturating_sub(self.options.heartbeat_interval);
            tokio::time::timeout(deadline, self.beat())
                .await
                .map_err(|_| PostgresError::Query {
                    context: "the cluster heartbeat".to_owned(),
                    detail: format!("no answer within {deadline:?}"),
                })??;
        }
    }

    /// One heartbeat: renew the row (and the lease), take the lock if free, refresh the view.
    async fn beat(&mut self) -> Result<(), PostgresError> {
        let sent = Instant::now();
        let address = &self.options.advertised;
        let row = self
            .client
            .query_one(
                "INSERT INTO cluster_nodes (node_id, host, port) VALUES ($1, $2, $3)
                 ON CONFLICT (node_id) DO UPDATE
                     SET host = $2, port = $3, heartbeat_at = now(), resign_requested = false
                 RETURNING (SELECT resign_requested FROM cluster_nodes WHERE node_id = $1)",
                &[
                    &self.options.node_id,
                    &address.host,
                    &i32::from(address.port),
                ],
            )
            .await
            .map_err(PostgresError::query("the cluster heartbeat"))?;
        let resign_requested: Option<bool> = row.get(0);
        if self.holding.is_none() && self.cooldown_until.is_none_or(|until| sent >= until) {
            self.try_lock().await?;
        }
        // Not holding the lock after trying: another live session holds it.
        if self.holding.is_none() {
            self.leadership.update(|view| view.settled = true);
        }
        if let Some((acquired, term)) = self.holding {
            let lease_until = sent + self.options.lease;
            let epoch = match term {
                Some(epoch) => Some(epoch),
                None if sent >= acquired + self.options.lease => {
                    let epoch = self.start_term().await?;
                    self.holding = Some((acquired, Some(epoch)));
                    tracing::info!(epoch, "this node is the leader");
                    Some(epoch)
                }
                None => None,
            };
            self.leadership.update(|view| {
                view.lease_until = Some(lease_until);
                if let Some(epoch) = epoch {
                    view.epoch = epoch;
                    view.role = NodeRole::Leader;
                    view.settled = true;
                }
            });
        }
        self.refresh_members().await?;
        if resign_requested == Some(true) && self.holding.is_some() {
            self.resign().await?;
        }
        Ok(())
    }

    async fn try_lock(&mut self) -> Result<(), PostgresError> {
        let row = self
            .client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_CLASS_LEADER, &self.config.schema],
            )
            .await
            .map_err(PostgresError::query("trying the leader lock"))?;
        if !row.get::<_, bool>(0) {
            return Ok(());
        }
        tracing::info!(
            "took the leader lock; leading after one lease ({:?})",
            self.options.lease
        );
        self.holding = Some((Instant::now(), None));
        Ok(())
    }

    /// Starts a new term once the lease wait is over: only then does the membership (and so
    /// gossip) name this node the leader.
    async fn start_term(&mut self) -> Result<u64, PostgresError> {
        let row = self
            .client
            .query_one(
                "INSERT INTO cluster_leader (epoch, node_id, since) VALUES (1, $1, now())
                 ON CONFLICT (singleton) DO UPDATE
                     SET epoch = cluster_leader.epoch + 1, node_id = $1, since = now()
                 RETURNING epoch",
                &[&self.options.node_id],
            )
            .await
            .map_err(PostgresError::query("starting a leadership term"))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// Stops leader-only work first, then lets the lock go; no new attempt for three leases
    /// so that another node takes over.
    async fn resign(&mut self) -> Result<(), PostgresError> {
        if self.holding.take().is_none() {
            return Ok(());
        }
        step_down(self.leadership);
        self.cooldown_until = Some(Instant::now() + self.options.lease * 3);
        tracing::info!("resigning the leadership");
        self.client
            .query_one(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&LOCK_CLASS_LEADER, &self.config.schema],
            )
            .await
            .map_err(PostgresError::query("releasing the leader lock"))?;
        Ok(())
    }

    async fn leave(&mut self) {
        step_down(self.leadership);
        let _ = self.resign().await;
        let _ = self
            .client
            .execute(
                "DELETE FROM cluster_nodes WHERE node_id = $1",
                &[&self.options.node_id],
            )
            .await;
    }

    async fn refresh_members(&mut self) -> Result<(), PostgresError> {
        let members = members(&self.client, self.config, self.options.heartbeat_interval).await?;
        let leader = members
            .iter()
            .find(|member| member.leader)
            .map(|member| member.address.clone());
        self.leadership.update(|view| {
            view.members = members;
            view.leader = leader;
        });
        Ok(())
    }
}

/// A node counts as alive while its heartbeat is younger than this many intervals.
const ALIVE_HEARTBEATS: u32 = 4;

async fn members(
    client: &Client,
    config: &PostgresConfig,
    heartbeat_interval: Duration,
) -> Result<Vec<Member>, PostgresError> {
    let alive_seconds = (heartbeat_interval * ALIVE_HEARTBEATS).as_secs_f64();
    let rows = client
        .query(
            "SELECT n.node_id, n.host, n.port,
                    n.heartbeat_at > now() - make_interval(secs => $1) AS alive,
                    coalesce(l.node_id = n.node_id AND EXISTS (
                        SELECT 1 FROM pg_locks
                        WHERE locktype = 'advisory' AND granted AND objsubid = 2
                          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                          AND classid = $2::int::oid AND objid = hashtext($3)::oid), false) AS leader
             FROM cluster_nodes n LEFT JOIN cluster_leader l ON true
             ORDER BY n.started_at, n.node_id",
            &[&alive_seconds, &LOCK_CLASS_LEADER, &config.schema],
        )
        .await
        .map_err(PostgresError::query("reading the cluster members"))?;
    Ok(rows
        .iter()
        .map(|row| Member {
            node_id: row.get(0),
            address: NodeAddress {
                host: row.get(1),
                port: u16::try_from(row.get::<_, i32>(2)).unwrap_or(0),
            },
            alive: row.get(3),
            leader: row.get(4),
        })
        .collect())
}

/// What `strata cluster status` prints.
#[derive(Clone, Debug)]
pub struct ClusterStatus {
    pub members: Vec<Member>,
    /// The current leadership term (0 before any leader).
    pub epoch: u64,
}

/// Reads the members and the term of `config`'s schema.
///
/// # Errors
/// [`PostgresError::Unreachable`] and query errors.
pub async fn cluster_status(config: &PostgresConfig) -> Result<ClusterStatus, PostgresError> {
    let client = connect(config, Role::Cluster, None).await?;
    let members = members(&client, config, HEARTBEAT_INTERVAL_DEFAULT).await?;
    let epoch = client
        .query_opt("SELECT epoch FROM cluster_leader", &[])
        .await
        .map_err(PostgresError::query("reading the leadership term"))?
        .map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0));
    Ok(ClusterStatus { members, epoch })
}

/// Asks the current leader to resign at its next heartbeat; answers its id, or `None`
/// when no node leads.
///
/// # Errors
/// [`PostgresError::Unreachable`] and query errors.
pub async fn request_resignation(config: &PostgresConfig) -> Result<Option<Uuid>, PostgresError> {
    let status = cluster_status(config).await?;
    let Some(leader) = status.members.iter().find(|member| member.leader) else {
        return Ok(None);
    };
    let client = connect(config, Role::Cluster, None).await?;
    client
        .execute(
            "UPDATE cluster_nodes SET resign_requested = true WHERE node_id = $1",
            &[&leader.node_id],
        )
        .await
        .map_err(PostgresError::query("asking the leader to resign"))?;
    Ok(Some(leader.node_id))
}
