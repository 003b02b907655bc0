//! A running member: start-up (bootstrap or recovery), the raft driver task, and the handle.
//!
//! Start-up guarantees: a data dir is bootstrapped once (identity and initial conf state synced
//! before anything else); on restart the stored identity, raft log and MVCC state are validated
//! against each other, and any damage stops start-up with a message naming it — nothing is ever
//! silently reset. [`RunningNode::ready`] resolves once every entry committed before the restart
//! is applied again (and, on an empty member, once it applied anything at all: a joining member
//! waits for the leader's snapshot), so a client port opened after it never serves stale state.

pub mod config;
pub mod driver;
pub mod handle;
mod logger;
pub mod read_index;
pub mod status;
pub mod transport;

use std::sync::Arc;

use parking_lot::RwLock;
use raft::eraftpb::ConfState;
use raft::RawNode;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::NodeConfig;
pub use driver::DriverError;
pub use handle::NodeHandle;
pub use status::NodeStatus;
pub use transport::{NoPeers, RaftTransport};

use crate::engine::{KvEngine, Table, WriteBatch};
use crate::error::{EtcdError, StorageError};
use crate::identity;
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::mvcc::MvccStore;
use crate::raft_log::RaftLogStore;
use crate::watch::{HubConfig, WatchHub};
use driver::Driver;
use status::StatusCell;

const BOOT_COUNT_KEY: &[u8] = b"boot_count";

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("data dir is inconsistent: {0}")]
    Inconsistent(String),
    #[error("starting raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("etcdserver: the member has been permanently removed from the cluster")]
    Removed,
}

/// A started member: its handle and its driver task.
pub struct RunningNode {
    pub handle: NodeHandle,
    pub driver: JoinHandle<Result<(), DriverError>>,
    /// The commit index persisted before this start; serving waits until it is applied.
    pub commit_at_start: u64,
}

impl RunningNode {
    /// Resolves once the member may serve clients (see the module doc).
    pub async fn ready(&self) -> Result<(), EtcdError> {
        self.handle.wait_ready(self.commit_at_start).await
    }
}

/// Opens (bootstrapping if new) the member whose data is in `engine` and starts its driver.
pub fn start(
    engine: Arc<dyn KvEngine>,
    config: NodeConfig,
    transport: Arc<dyn RaftTransport>,
) -> Result<RunningNode, StartError> {
    start_or_join(engine, config, transport, None)
}

/// As [`start`]; a new data dir with `joining` set becomes that member of an existing cluster
/// (etcd's `--initial-cluster-state existing`): it keeps the identity and starts with no
/// configuration, learning the cluster's state from the leader's raft snapshot.
pub fn start_or_join(
    engine: Arc<dyn KvEngine>,
    config: NodeConfig,
    transport: Arc<dyn RaftTransport>,
    joining: Option<crate::pb::k3rspb::ClusterIdentity>,
) -> Result<RunningNode, StartError> {
    config.validate().map_err(StartError::Config)?;
    let log = RaftLogStore::open(engine.clone())?;
    let identity = match identity::load(engine.as_ref())? {
        Some(identity) => identity,
        None if !log.is_new() => {
            return Err(StartError::Inconsistent(
                "a raft log exists but the cluster identity record is missing".into(),
            ))
        }
        None => match joining {
            Some(identity) => {
                log.bootstrap(&ConfState::default())?;
                identity::store(engine.as_ref(), &identity)?;
                tracing::info!(
                    cluster = %format!("{:x}", identity.cluster_id),
                    member = %format!("{:x}", identity.member_id),
                    "joining an existing cluster"
                );
                identity
            }
            None => bootstrap(engine.as_ref(), &log, &config)?,
        },
    };
    if !identity.members.iter().any(|m| m.id == identity.member_id) {
        return Err(StartError::Removed);
    }
    let boot_count = next_boot_count(engine.as_ref())?;
    let store = MvccStore::open(engine.clone())?;

    let applied = store.consistent_index();
    let hard_state = log.hard_state();
    if applied > hard_state.commit {
        return Err(StartError::Inconsistent(format!(
            "state is applied up to raft index {applied} but the raft log commits only up to {}: \
             the raft log was truncated or replaced",
            hard_state.commit
        )));
    }
    if applied + 1 < log.first_index() {
        return Err(StartError::Inconsistent(format!(
            "state is applied up to raft index {applied} but the raft log starts at {}: entries \
             in between are gone",
            log.first_index()
        )));
    }

    let member_id = identity.member_id;
    let (min_election_tick, max_election_tick) = config.election_tick_range();
    let raft_config = raft::Config {
        id: member_id,
        election_tick: config.election_ticks(),
        min_election_tick,
        max_election_tick,
        heartbeat_tick: 1,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        pre_vote: true,
        check_quorum: true,
        ..Default::default()
    };
    raft_config.validate()?;
    let mut raw_node = RawNode::new(&raft_config, log.clone(), &logger::raft_logger(member_id))?;
    let voters = log.conf_state().voters;
    if voters == [member_id] {
        // The only voter need not wait out an election timeout to lead.
        raw_node.campaign()?;
    }

    let store = Arc::new(RwLock::new(store));
    let watch_hub = WatchHub::new(store.clone(), HubConfig::default());
    let membership = Membership::new(identity.clone());
    let status = Arc::new(StatusCell::new(status::NodeStatus {
        member_id,
        applied_index: applied,
        ..Default::default()
    }));
    let metrics = Arc::new(Metrics::default());
    let (requests_tx, requests_rx) = mpsc::channel(config.proposal_queue_capacity.max(1));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(watch_hub.clone().run(shutdown_rx.clone()));
    let handle = NodeHandle::new(
        config.clone(),
        identity,
        engine,
        store.clone(),
        watch_hub.clone(),
        membership.clone(),
        status.clone(),
        metrics.clone(),
        requests_tx,
        boot_count,
        shutdown_tx,
    );
    let driver = Driver::new(
        raw_node, log, store, watch_hub, membership, status, metrics, transport, config, member_id,
    );
    let driver = tokio::spawn(driver.run(requests_rx, shutdown_rx));
    tracing::info!(member = %format!("{member_id:x}"), applied, commit = hard_state.commit, "member started");
    Ok(RunningNode {
        handle,
        driver,
        // At least one entry: a member with nothing applied (a new member joining, whose state
        // comes with the leader's first snapshot) has no state to serve yet; every cluster
        // commits an entry as soon as it has a leader, so a new cluster gets there at once.
        commit_at_start: hard_state.commit.max(1),
    })
}

fn bootstrap(
    engine: &dyn KvEngine,
    log: &RaftLogStore,
    config: &NodeConfig,
) -> Result<crate::pb::k3rspb::ClusterIdentity, StartError> {
    let identity = identity::new_cluster_identity(
        &config.initial_cluster,
        &config.name,
        &config.initial_cluster_token,
        &config.advertise_client_urls,
    )
    .map_err(StartError::Config)?;
    let conf_state = ConfState {
        voters: identity.members.iter().map(|m| m.id).collect(),
        ..Default::default()
    };
    log.bootstrap(&conf_state)?;
    identity::store(engine, &identity)?;
    tracing::info!(
        cluster = %format!("{:x}", identity.cluster_id),
        member = %format!("{:x}", identity.member_id),
        "bootstrapped a new cluster"
    );
    Ok(identity)
}

/// Counts starts of this member (synced), so request ids of different runs never collide.
fn next_boot_count(engine: &dyn KvEngine) -> Result<u64, StorageError> {
    let previous = match engine.get(Table::Meta, BOOT_COUNT_KEY)? {
        None => 0,
        Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| {
            StorageError::corrupt(format!(
                "meta: boot count record has {} bytes, not 8",
                bytes.len()
            ))
        })?),
    };
    let next = previous + 1;
    let mut batch = WriteBatch::new();
    batch.put(Table::Meta, BOOT_COUNT_KEY, next.to_be_bytes().to_vec());
    engine.write(batch, true)?;
    Ok(next)
}
