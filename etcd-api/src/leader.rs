//! `LeaderLink`: reaching the current leader's peer service, for requests only it can answer
//! (lease keep-alive and time-to-live), as an etcd follower forwards them.
//!
//! Guarantees: the leader is the one this member's raft currently knows; no leader known is
//! etcd's `no leader`; one lazily connected channel per member is kept and reused.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use raftstore::node::NodeHandle;
use raftstore::EtcdError;
use tonic::transport::{Channel, Endpoint};

use crate::net::Connector;

use crate::pb::k3rspb::raft_peer_client::RaftPeerClient;

/// Deadline of a forwarded call.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

pub struct LeaderLink {
    handle: NodeHandle,
    connector: Connector,
    clients: Mutex<HashMap<u64, RaftPeerClient<Channel>>>,
}

impl LeaderLink {
    pub fn new(handle: NodeHandle, connector: Connector) -> Self {
        Self {
            handle,
            connector,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A client of the leader's peer service.
    pub fn leader(&self) -> Result<RaftPeerClient<Channel>, EtcdError> {
        let leader = self.handle.status().leader_id;
        if leader == 0 {
            return Err(EtcdError::NoLeader);
        }
        let mut clients = self.clients.lock();
        if let Some(client) = clients.get(&leader) {
            return Ok(client.clone());
        }
        let url = self
            .handle
            .members()
            .into_iter()
            .find(|member| member.id == leader)
            .and_then(|member| member.peer_ur_ls.into_iter().next())
            .ok_or_else(|| {
                EtcdError::Internal(format!("no peer URL known for leader {leader:x}"))
            })?;
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|err| EtcdError::Internal(format!("leader peer URL {url:?}: {err}")))?
            .connect_timeout(FORWARD_TIMEOUT)
            .timeout(FORWARD_TIMEOUT);
        let client = RaftPeerClient::new((self.connector)(endpoint));
        clients.insert(leader, client.clone());
        Ok(client)
    }
}
