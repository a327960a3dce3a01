//! Leader-only jobs (projections, connectors) started and stopped with the leadership.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use strata_core::{Leadership, NodeRole};

/// A start or stop action of a leader-only job.
pub type LeaderAction<T> = fn(Arc<T>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `stop` on `target` now unless this node leads, then `start` each time the node
/// becomes the leader and `stop` each time it stops being so, until `target` is dropped.
pub async fn follow_leadership<T: Send + Sync + 'static>(
    leadership: &Leadership,
    target: Weak<T>,
    start: LeaderAction<T>,
    stop: LeaderAction<T>,
) {
    let mut changes = leadership.watch();
    let mut leading = changes.borrow_and_update().role == NodeRole::Leader;
    if !leading && let Some(target) = target.upgrade() {
        stop(target).await;
    }
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let role = changes.borrow_and_update().role;
            let Some(target) = target.upgrade() else {
                return;
            };
            match (leading, role) {
                (false, NodeRole::Leader) => {
                    leading = true;
                    start(target).await;
                }
                (true, NodeRole::Follower) => {
                    leading = false;
                    stop(target).await;
                }
                _ => {}
            }
        }
    });
}

/// Projections follow the leadership, and their management calls answer `not-leader` on a
/// follower.
pub(crate) async fn follow(
    leadership: &Arc<Leadership>,
    projections: Weak<strata_projections::ProjectionManager>,
) {
    if let Some(manager) = projections.upgrade() {
        manager.set_leadership(Arc::clone(leadership));
    }
    follow_leadership(
        leadership,
        projections,
        |projections| Box::pin(async move { projections.restart_all().await }),
        |projections| Box::pin(async move { projections.shutdown().await }),
    )
    .await;
}
