//! The node's raft status, published by the driver after every Ready and read by anyone.
//!
//! Values are updated together under one lock, so a reader never sees a term from one Ready
//! with an applied index from another.

use parking_lot::RwLock;
use tokio::sync::watch;

/// A member's view of raft, as Maintenance.Status reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub member_id: u64,
    /// The leader this member knows of; 0 when none.
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub is_learner: bool,
    /// Raft snapshots from the leader installed since this member started.
    pub snapshots_installed: u64,
}

impl NodeStatus {
    pub fn is_leader(&self) -> bool {
        self.leader_id != 0 && self.leader_id == self.member_id
    }

    pub fn has_leader(&self) -> bool {
        self.leader_id != 0
    }
}

/// Shared cell holding the latest [`NodeStatus`], with change notification.
#[derive(Debug)]
pub struct StatusCell {
    current: RwLock<NodeStatus>,
    changes: watch::Sender<NodeStatus>,
}

impl StatusCell {
    pub fn new(initial: NodeStatus) -> Self {
        let (changes, _) = watch::channel(initial);
        Self {
            current: RwLock::new(initial),
            changes,
        }
    }

    pub fn get(&self) -> NodeStatus {
        *self.current.read()
    }

    /// Publishes `status` if it differs from the current one.
    pub fn publish(&self, status: NodeStatus) {
        let mut current = self.current.write();
        if *current != status {
            *current = status;
            self.changes.send_replace(status);
        }
    }

    /// A receiver that wakes on every published change.
    pub fn subscribe(&self) -> watch::Receiver<NodeStatus> {
        self.changes.subscribe()
    }
}
