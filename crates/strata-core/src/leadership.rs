//! Which node of a cluster runs the jobs that need a single owner (persistent-subscription
//! groups, projections, connectors), as a watchable value.
//!
//! A backend that can run several nodes on one store (PostgreSQL) publishes its view here;
//! an embedded store is one node, always the leader ([`Leadership::single_node`]). Leader-only
//! work starts when [`ClusterView::role`] becomes [`NodeRole::Leader`], stops when it stops
//! being so, and checks [`Leadership::fence`] before each of its writes: a leader's lease
//! runs out on its own clock, so a node cut off from the store stops writing even before it
//! hears that it lost the leadership (docs/CLUSTER.md).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Notify, watch};

/// What this node is in its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// Runs the leader-only jobs.
    Leader,
    /// Serves appends and reads; sends leader-only calls to the leader.
    Follower,
}

impl NodeRole {
    /// `leader` / `follower`, as `/info` and the CLI show it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Leader => "leader",
            NodeRole::Follower => "follower",
        }
    }
}

/// Where clients reach a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    pub host: String,
    pub port: u16,
}

/// One member of the cluster, as the membership table says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node_id: uuid::Uuid,
    pub address: NodeAddress,
    /// Heartbeat seen recently.
    pub alive: bool,
    pub leader: bool,
}

/// This node's view of the cluster.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub node_id: uuid::Uuid,
    pub role: NodeRole,
    /// Leadership term: grows by one each time a node becomes leader. 0 before any.
    pub epoch: u64,
    /// Until when this node may still do leader-only writes: `None` for a node that is
    /// always the leader (embedded), otherwise the end of its lease.
    pub lease_until: Option<Instant>,
    /// The leader's address, when one is known (this node's own when it leads).
    pub leader: Option<NodeAddress>,
    /// Every registered member, this node included. Empty for an embedded store.
    pub members: Vec<Member>,
    /// Whether this node knows who leads: it leads, or it found the leader lock held by
    /// another live session (which leads, or will after its lease wait).
    pub settled: bool,
}

/// The shared, watchable leadership of one node. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Leadership {
    view: watch::Sender<ClusterView>,
    single_node: bool,
    resign: Notify,
}

impl Leadership {
    /// One node, always the leader, epoch 1, no lease (an embedded store).
    pub fn single_node() -> Arc<Self> {
        let (view, _) = watch::channel(ClusterView {
            node_id: uuid::Uuid::nil(),
            role: NodeRole::Leader,
            epoch: 1,
            lease_until: None,
            leader: None,
            members: Vec::new(),
            settled: true,
        });
        Arc::new(Self {
            view,
            single_node: true,
            resign: Notify::new(),
        })
    }

    /// A node of a cluster, a follower until its membership says otherwise.
    pub fn clustered(node_id: uuid::Uuid) -> Arc<Self> {
        let (view, _) = watch::channel(ClusterView {
            node_id,
            role: NodeRole::Follower,
            epoch: 0,
            lease_until: None,
            leader: None,
            members: Vec::new(),
            settled: false,
        });
        Arc::new(Self {
            view,
            single_node: false,
            resign: Notify::new(),
        })
    }

    /// True for [`Leadership::single_node`].
    pub fn is_single_node(&self) -> bool {
        self.single_node
    }

    /// The current view.
    pub fn view(&self) -> ClusterView {
        self.view.borrow().clone()
    }

    /// Changes of the view.
    pub fn watch(&self) -> watch::Receiver<ClusterView> {
        self.view.subscribe()
    }

    /// For the membership that owns this value: publishes a new view.
    pub fn publish(&self, view: ClusterView) {
        self.view.send_replace(view);
    }

    /// For the membership: changes the view in place.
    pub fn update(&self, change: impl FnOnce(&mut ClusterView)) {
        self.view.send_modify(change);
    }

    /// The epoch under which a leader-only write may be made now, or `None` when this node
    /// is not the leader or its lease has run out.
    pub fn fence(&self) -> Option<u64> {
        let view = self.view.borrow();
        let within_lease = view.lease_until.is_none_or(|until| Instant::now() < until);
        (view.role == NodeRole::Leader && within_lease).then_some(view.epoch)
    }

    /// Whether this node leads now (with a lease still running).
    pub fn is_leader(&self) -> bool {
        self.fence().is_some()
    }

    /// The leader's address as far as this node knows.
    pub fn leader(&self) -> Option<NodeAddress> {
        self.view.borrow().leader.clone()
    }

    /// Asks this node to give up the leadership (a single node ignores it).
    pub fn resign(&self) {
        self.resign.notify_one();
    }

    /// For the membership: completes when [`Leadership::resign`] is called.
    pub async fn resign_requested(&self) {
        self.resign.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_single_node_always_leads_under_epoch_one() {
        let leadership = Leadership::single_node();
        assert_eq!(leadership.fence(), Some(1));
        assert_eq!(leadership.view().role, NodeRole::Leader);
    }

    #[test]
    fn a_clustered_node_is_fenced_once_its_lease_runs_out() {
        let leadership = Leadership::clustered(uuid::Uuid::new_v4());
        assert_eq!(leadership.fence(), None, "followers are fenced");
        leadership.update(|view| {
            view.role = NodeRole::Leader;
            view.epoch = 7;
            view.lease_until = Some(Instant::now() + Duration::from_secs(60));
        });
        assert_eq!(leadership.fence(), Some(7));
        leadership.update(|view| view.lease_until = Some(Instant::now()));
        assert_eq!(leadership.fence(), None, "a lapsed lease fences the leader");
    }
}
