//! What a server's front ends may ask of the node besides the store: scavenges, index
//! checkpoints, a shutdown, and the node priority of elections.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use strata_core::Maintenance;
use tokio::sync::watch;

use crate::error::OperationsError;
use crate::jobs::ScavengeJobs;

/// The node's operations, shared by the gRPC `Operations` service and the HTTP admin
/// routes. Clones share them.
#[derive(Clone)]
pub struct NodeOperations {
    scavenges: ScavengeJobs,
    maintenance: Option<Arc<dyn Maintenance>>,
    shutdown: watch::Sender<bool>,
    priority: Arc<AtomicI32>,
}

impl std::fmt::Debug for NodeOperations {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NodeOperations")
            .field("scavenges", &self.scavenges)
            .field("index_checkpoints", &self.maintenance.is_some())
            .finish()
    }
}

impl NodeOperations {
    /// Operations over `scavenges`, with index checkpoints through `maintenance` (`None`:
    /// the store has none).
    pub fn new(scavenges: ScavengeJobs, maintenance: Option<Arc<dyn Maintenance>>) -> Self {
        Self {
            scavenges,
            maintenance,
            shutdown: watch::channel(false).0,
            priority: Arc::new(AtomicI32::new(0)),
        }
    }

    pub fn scavenges(&self) -> &ScavengeJobs {
        &self.scavenges
    }

    /// Writes the indexes' files now (KurrentDB's MergeIndexes).
    ///
    /// # Errors
    /// [`OperationsError::Unsupported`] when the store keeps no such indexes; storage
    /// errors.
    pub async fn merge_indexes(&self) -> Result<(), OperationsError> {
        let Some(maintenance) = self.maintenance.clone() else {
            return Err(OperationsError::Unsupported(
                "this store keeps no index files to merge".into(),
            ));
        };
        tokio::task::spawn_blocking(move || maintenance.checkpoint_indexes())
            .await
            .map_err(|join| {
                OperationsError::Store(strata_core::Error::InvalidArgument {
                    reason: format!("the index checkpoint failed: {join}"),
                })
            })??;
        Ok(())
    }

    /// Asks the server to shut down (as SIGTERM does).
    pub fn request_shutdown(&self) {
        tracing::info!("shutdown requested by an operator");
        self.shutdown.send_replace(true);
    }

    /// Completes once [`NodeOperations::request_shutdown`] was called.
    pub async fn shutdown_requested(&self) {
        let mut requested = self.shutdown.subscribe();
        let _ = requested.wait_for(|&requested| requested).await;
    }

    /// Records the node's election priority. Strata has no elections of its own (a
    /// single node always leads; in a PostgreSQL cluster an advisory lock decides), so it
    /// is kept and reported, and changes nothing.
    pub fn set_priority(&self, priority: i32) {
        tracing::info!(priority, "node priority set (no effect on who leads)");
        self.priority.store(priority, Ordering::Relaxed);
    }

    pub fn priority(&self) -> i32 {
        self.priority.load(Ordering::Relaxed)
    }
}
