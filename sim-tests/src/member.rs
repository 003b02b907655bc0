//! The software of one simulated member: what `k3rs server` runs, on turmoil.
//!
//! It opens the member's [`MemoryEngine`] (held outside the host, so a crash of the host loses
//! exactly the writes that were never synced), starts the real raft node with the real gRPC
//! peer transport, opens the peer port, waits until the member has caught up with what it had
//! committed, then serves etcd's API on the client port, exactly as `controlplane` does over
//! TCP. It returns only if the raft node stops: an error there fails the simulation.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use etcd_api::Net as _;
use parking_lot::Mutex;
use raftstore::engine::memory::MemoryEngine;
use raftstore::node::{NodeConfig, NodeHandle, NodeStatus};
use raftstore::pb::k3rspb::ClusterIdentity;

use crate::net::TurmoilNet;

/// The client (etcd) port of every member.
pub const CLIENT_PORT: u16 = 2379;
/// The peer (raft) port of every member.
pub const PEER_PORT: u16 = 2380;

/// What survives a crash of a member's host: its disk, a slot where the running member
/// publishes its handle for the simulation's observers, and — for a replacement member on a
/// wiped disk — the identity it joins the existing cluster with.
#[derive(Clone)]
pub struct MemberDisk {
    pub engine: Arc<MemoryEngine>,
    pub handle: Arc<Mutex<Option<NodeHandle>>>,
    pub joining: Arc<Mutex<Option<ClusterIdentity>>>,
}

impl MemberDisk {
    pub fn new() -> Self {
        Self {
            engine: Arc::new(MemoryEngine::new()),
            handle: Arc::new(Mutex::new(None)),
            joining: Arc::new(Mutex::new(None)),
        }
    }
}

impl Default for MemberDisk {
    fn default() -> Self {
        Self::new()
    }
}

/// The raft status of every member of `disks` that is serving, by index.
pub fn serving_statuses(disks: &[MemberDisk]) -> BTreeMap<usize, NodeStatus> {
    disks
        .iter()
        .enumerate()
        .filter_map(|(index, disk)| {
            let handle = disk.handle.lock();
            handle.as_ref().map(|handle| (index, handle.status()))
        })
        .collect()
}

/// Of `statuses`, the member that leads in the highest term, if any.
pub fn highest_leader(statuses: BTreeMap<usize, NodeStatus>) -> Option<usize> {
    statuses
        .into_iter()
        .filter(|(_, status)| status.is_leader())
        .max_by_key(|(_, status)| status.term)
        .map(|(index, _)| index)
}

fn any_addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

/// Runs one member until its raft node stops.
pub async fn run_member(config: NodeConfig, disk: MemberDisk) -> Result<()> {
    let name = config.name.clone();
    let connector = etcd_api::connector(TurmoilNet);
    let transport = etcd_api::GrpcTransport::new(connector.clone());
    let engine: Arc<dyn raftstore::engine::KvEngine> = disk.engine.clone();
    // Used only on an empty disk: a member that joined keeps its identity in its engine.
    let joining = disk.joining.lock().clone();
    let running = raftstore::node::start_or_join(engine, config, transport.clone(), joining)
        .with_context(|| format!("starting member {name}"))?;
    let handle = running.handle.clone();
    transport
        .connect_members(handle.cluster_id(), handle.member_id(), &handle.members())
        .map_err(|err| anyhow!("member {name} connecting to its peers: {err}"))?;

    let peers = TurmoilNet
        .listen(any_addr(PEER_PORT))
        .await
        .with_context(|| format!("member {name} listening for peers"))?;
    let peer_handle = handle.clone();
    tokio::spawn(async move {
        if let Err(err) =
            etcd_api::serve_peers(peer_handle, peers, futures::future::pending()).await
        {
            tracing::warn!(error = %err, "peer server stopped");
        }
    });
    let clients = TurmoilNet
        .listen(any_addr(CLIENT_PORT))
        .await
        .with_context(|| format!("member {name} listening for clients"))?;
    running
        .ready()
        .await
        .with_context(|| format!("member {name} catching up"))?;
    tokio::spawn(publish_attributes(handle.clone(), name.clone()));
    let client_handle = handle.clone();
    tokio::spawn(async move {
        if let Err(err) = etcd_api::serve(
            client_handle,
            connector,
            std::sync::Arc::default(),
            clients,
            futures::future::pending(),
        )
        .await
        {
            tracing::warn!(error = %err, "client server stopped");
        }
    });
    *disk.handle.lock() = Some(handle);

    match running.driver.await {
        Ok(Ok(())) => Err(anyhow!("member {name}: the raft node stopped")),
        Ok(Err(err)) => Err(anyhow!(err).context(format!("member {name}: the raft node failed"))),
        Err(err) => Err(anyhow!(err).context(format!("member {name}: the raft task failed"))),
    }
}

/// Publishes the member's name and client URL through raft, retrying as `controlplane` does.
async fn publish_attributes(handle: NodeHandle, name: String) {
    let urls = handle.config().advertise_client_urls.clone();
    loop {
        match handle.publish_attributes(name.clone(), urls.clone()).await {
            Ok(()) | Err(raftstore::EtcdError::Stopped) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
