//! `RaftTransport`: how the driver hands raft messages to other members.
//!
//! `send` never blocks the raft loop: an implementation queues per peer (bounded) and drops
//! what does not fit, later reporting the peer unreachable to raft.

use raft::eraftpb::Message;

/// Delivers raft messages to peers.
pub trait RaftTransport: Send + Sync + 'static {
    /// Queues `messages` for delivery; never blocks.
    fn send(&self, messages: Vec<Message>);

    /// Peers a delivery failed to since the last call (the driver reports them to raft, which
    /// then probes them gently instead of streaming entries).
    fn take_unreachable(&self) -> Vec<u64> {
        Vec::new()
    }

    /// The cluster's members changed (a member was added, promoted or removed).
    fn members_changed(&self, members: &[crate::pb::etcdserverpb::Member]) {
        let _ = members;
    }
}

/// The transport of a cluster with a single voter: there is nobody to talk to, so any message
/// is a bug in membership bookkeeping, logged and dropped.
#[derive(Debug, Default)]
pub struct NoPeers;

impl RaftTransport for NoPeers {
    fn send(&self, messages: Vec<Message>) {
        for message in messages {
            tracing::warn!(to = message.to, kind = ?message.get_msg_type(), "no transport to peer; raft message dropped");
        }
    }
}
