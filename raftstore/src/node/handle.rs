//! `NodeHandle`: what the API layer calls. Cheap to clone; every call is safe from any task.
//!
//! Writes are validated, encoded, size-checked and handed to the driver; the call returns once
//! the entry is committed and applied (so an acknowledged write is in the fsynced raft log).
//! Linearizable reads wait for a ReadIndex round, serializable reads read local state at once.
//! Every wait is bounded by the request timeout and ends in etcd's `request timed out`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::KvEngine;
use crate::error::EtcdError;
use crate::lease::MAX_LEASE_TTL;
use crate::membership::Membership;
use crate::metrics::{self, Metrics};
use crate::mvcc::{validate, CommandResponse, MvccStore};
use crate::node::driver::{DriverRequest, ProposalResult};
use crate::node::status::{NodeStatus, StatusCell};
use crate::node::NodeConfig;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveResponse, Member, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::pb::k3rspb::{raft_command, ClusterIdentity, RaftCommand};
use crate::pb::k3rspb::{MemberAttributes, MemberChange};
use crate::watch::WatchHub;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};

/// A handle on a running member.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
}

struct Shared {
    config: NodeConfig,
    identity: ClusterIdentity,
    engine: Arc<dyn KvEngine>,
    store: Arc<RwLock<MvccStore>>,
    watch_hub: Arc<WatchHub>,
    membership: Arc<Membership>,
    status: Arc<StatusCell>,
    metrics: Arc<Metrics>,
    requests: mpsc::Sender<DriverRequest>,
    request_id_prefix: u64,
    next_request_seq: AtomicU64,
    shutdown: watch::Sender<bool>,
}

impl NodeHandle {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: NodeConfig,
        identity: ClusterIdentity,
        engine: Arc<dyn KvEngine>,
        store: Arc<RwLock<MvccStore>>,
        watch_hub: Arc<WatchHub>,
        membership: Arc<Membership>,
        status: Arc<StatusCell>,
        metrics: Arc<Metrics>,
        requests: mpsc::Sender<DriverRequest>,
        boot_count: u64,
        shutdown: watch::Sender<bool>,
    ) -> Self {
        // Request ids are unique across members (member id prefix) and across restarts of this
        // member (boot count), so an old entry replayed after a restart never answers a new waiter.
        let request_id_prefix =
            ((identity.member_id & 0xffff) << 48) | ((boot_count & 0xffff) << 32);
        Self {
            shared: Arc::new(Shared {
                config,
                identity,
                engine,
                store,
                watch_hub,
                membership,
                status,
                metrics,
                requests,
                request_id_prefix,
                next_request_seq: AtomicU64::new(1),
                shutdown,
            }),
        }
    }

    pub fn config(&self) -> &NodeConfig {
        &self.shared.config
    }

    pub fn member_id(&self) -> u64 {
        self.shared.identity.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.shared.identity.cluster_id
    }

    pub fn engine(&self) -> &Arc<dyn KvEngine> {
        &self.shared.engine
    }

    /// The MVCC store, for reads that need no raft round (tests, hashing, snapshots).
    pub fn store(&self) -> &Arc<RwLock<MvccStore>> {
        &self.shared.store
    }

    /// The member's watchers: open a stream on it to watch.
    pub fn watch_hub(&self) -> &Arc<WatchHub> {
        &self.shared.watch_hub
    }

    pub fn status(&self) -> NodeStatus {
        self.shared.status.get()
    }

    /// The member's counters and histograms (see [`crate::metrics`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// A receiver woken on every status change.
    pub fn status_changes(&self) -> watch::Receiver<NodeStatus> {
        self.shared.status.subscribe()
    }

    /// The cluster's members as MemberList shows them.
    pub fn members(&self) -> Vec<Member> {
        self.shared.membership.members()
    }

    /// A response header as etcd fills it: cluster, member, `revision`, current raft term.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id(),
            member_id: self.member_id(),
            revision,
            raft_term: self.status().term,
        }
    }

    /// Asks the driver to stop; in-flight requests fail with `server stopped`.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, EtcdError> {
        validate::check_range(&request)?;
        if !request.serializable && !self.reads_locally_by_injected_fault() {
            self.read_barrier().await?;
        }
        let mut response = self.shared.store.read().range(&request)?;
        metrics::add(&self.shared.metrics.ranges, 1);
        let revision = response.header.as_ref().map_or(0, |h| h.revision);
        response.header = Some(self.header(revision));
        Ok(response)
    }

    /// Whether the test-only `stale_linearizable_reads` fault is switched on (never without
    /// the `fault-injection` feature).
    fn reads_locally_by_injected_fault(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            self.shared.config.injected_faults.stale_linearizable_reads
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            false
        }
    }

    pub async fn put(&self, request: PutRequest) -> Result<PutResponse, EtcdError> {
        validate::check_put(&request)?;
        match self.propose(raft_command::Request::Put(request)).await? {
            (CommandResponse::Put(mut response), revision) => {
                response.header = Some(self.header(revision));
                Ok(response)
            }
            _ => Err(mismatched_response("put")),
        }
    }

    pub async fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        validate::check_delete_range(&request)?;
        match self
            .propose(raft_command::Request::DeleteRange(request))
            .await?
        {
            (CommandResponse::DeleteRange(mut response), revision) => {
                response.header = Some(self.header(revision));
                Ok(response)
            }
            _ => Err(mismatched_response("delete range")),
        }
    }

    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, EtcdError> {
        validate::check_txn(&request, self.shared.config.max_txn_ops)?;
        match self.propose(raft_command::Request::Txn(request)).await? {
            (CommandResponse::Txn(mut response), revision) => {
                response.header = Some(self.header(revision));
                Ok(response)
            }
            _ => Err(mismatched_response("txn")),
        }
    }

    pub async fn compact(
        &self,
        request: CompactionRequest,
    ) -> Result<CompactionResponse, EtcdError> {
        match self
            .propose(raft_command::Request::Compaction(request))
            .await?
        {
            (CommandResponse::Compaction(mut response), revision) => {
                response.header = Some(self.header(revision));
                Ok(response)
            }
            _ => Err(mismatched_response("compaction")),
        }
    }

    /// Grants a lease. ID 0 asks the server to choose one (unique across members and restarts,
    /// as request ids are); a TTL below the minimum is raised to it. Both are settled here, so
    /// the raft entry says exactly what every member applies.
    pub async fn lease_grant(
        &self,
        mut request: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, EtcdError> {
        if request.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        request.ttl = request.ttl.max(self.shared.config.min_lease_ttl());
        if request.id == 0 {
            request.id = (self.next_request_id() & (i64::MAX as u64)) as i64;
        }
        match self
            .propose(raft_command::Request::LeaseGrant(request))
            .await?
        {
            (CommandResponse::LeaseGrant(mut response), revision) => {
                response.header = Some(self.header(revision));
                Ok(response)
            }
            _ => Err(mismatched_response("lease grant")),
        }
    }

    /// Revokes a lease, deleting every key attached to it at one revision.
    pub async fn lease_revoke(
        &self,
        request: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, EtcdError> {
        match self
            .propose(raft_command::Request::LeaseRevoke(request))
            .await?
        {
            (CommandResponse::LeaseRevoke(mut response), revision) => {
                response.header = Some(self.header(revision));
                Ok(response)
            }
            _ => Err(mismatched_response("lease revoke")),
        }
    }

    /// Renews lease `id` on the leader: its TTL, or `None` when it does not exist (or has
    /// expired and awaits its revoke).
    pub async fn lease_renew(&self, id: i64) -> Result<Option<i64>, EtcdError> {
        let (respond, answer) = oneshot::channel();
        self.submit(DriverRequest::LeaseRenew { id, respond }, answer)
            .await
    }

    /// Lease `id`'s remaining and granted TTL (and keys, if asked), from the leader; `None` when
    /// it does not exist.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<Option<LeaseTimeToLiveResponse>, EtcdError> {
        let (respond, answer) = oneshot::channel();
        let mut response = self
            .submit(DriverRequest::LeaseTimeToLive { id, keys, respond }, answer)
            .await?;
        if let Some(response) = &mut response {
            response.header = Some(self.header(self.shared.store.read().current_revision()));
        }
        Ok(response)
    }

    /// Every lease this member knows, in ID order.
    pub fn lease_leases(&self) -> LeaseLeasesResponse {
        let store = self.shared.store.read();
        LeaseLeasesResponse {
            header: Some(self.header(store.current_revision())),
            leases: store
                .leases()
                .ttls()
                .map(|(id, _)| LeaseStatus { id })
                .collect(),
        }
    }

    /// Publishes this member's name and client URLs to the cluster (etcd's member attributes).
    /// Done at every start: other members may not know them yet (or know old ones).
    pub async fn publish_attributes(
        &self,
        name: String,
        client_urls: Vec<String>,
    ) -> Result<(), EtcdError> {
        let attributes = MemberAttributes {
            id: self.member_id(),
            name,
            client_urls,
        };
        self.propose(raft_command::Request::MemberAttributes(attributes))
            .await
            .map(|_| ())
    }

    /// Reclaims the engine's free space (etcd's defragment); contents are unchanged.
    pub async fn defragment(&self) -> Result<(), EtcdError> {
        Ok(self.shared.engine.compact_storage()?)
    }

    /// etcd's MemberAdd: a new member (voter or learner) at `peer_urls`; answers it and the
    /// members after the change. Its id is derived from its peer URLs, the cluster and the raft position.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), EtcdError> {
        if peer_urls.is_empty() || !peer_urls.iter().all(|url| is_member_url(url)) {
            return Err(EtcdError::InvalidMemberUrls);
        }
        let members = self.members();
        if members
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|url| peer_urls.contains(url)))
        {
            return Err(EtcdError::PeerUrlsExist);
        }
        if is_learner && members.iter().any(|m| m.is_learner) {
            return Err(EtcdError::TooManyLearners);
        }
        // etcd mixes in the wall clock so that a member added again at the same URLs gets a new
        // id; the raft position does the same (it only grows) and keeps the simulation
        // deterministic. Two adds decided at one position differ by their URLs (checked above).
        let status = self.status();
        let id = crate::identity::member_id(
            &peer_urls,
            &format!(
                "{:x}/{}/{}",
                self.cluster_id(),
                status.term,
                status.commit_index
            ),
        );
        let member = Member {
            id,
            peer_ur_ls: peer_urls,
            is_learner,
            ..Default::default()
        };
        let kind = if is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let members = self.change_members(kind, member.clone(), None).await?;
        Ok((member, members))
    }

    /// etcd's MemberUpdate: member `id` is now reached at `peer_urls`; answers the members.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, EtcdError> {
        if peer_urls.is_empty() || !peer_urls.iter().all(|url| is_member_url(url)) {
            return Err(EtcdError::InvalidMemberUrls);
        }
        let members = self.members();
        if !members.iter().any(|m| m.id == id) {
            return Err(EtcdError::MemberNotFound);
        }
        if members
            .iter()
            .any(|m| m.id != id && m.peer_ur_ls.iter().any(|url| peer_urls.contains(url)))
        {
            return Err(EtcdError::PeerUrlsExist);
        }
        let update = crate::pb::etcdserverpb::MemberUpdateRequest {
            id,
            peer_ur_ls: peer_urls,
        };
        self.propose(raft_command::Request::MemberUpdate(update))
            .await?;
        Ok(self.members())
    }

    /// etcd's MemberRemove; answers the members after it.
    pub async fn member_remove(&self, id: u64) -> Result<Vec<Member>, EtcdError> {
        let member = self
            .members()
            .into_iter()
            .find(|m| m.id == id)
            .ok_or(EtcdError::MemberNotFound)?;
        self.change_members(ConfChangeType::RemoveNode, member, None)
            .await
    }

    /// etcd's MemberPromote: a learner that has caught up becomes a voter (checked by the
    /// leader; a follower answers `not leader`).
    pub async fn member_promote(&self, id: u64) -> Result<Vec<Member>, EtcdError> {
        let member = self
            .members()
            .into_iter()
            .find(|m| m.id == id)
            .ok_or(EtcdError::MemberNotFound)?;
        if !member.is_learner {
            return Err(EtcdError::NotLearner);
        }
        self.change_members(ConfChangeType::AddNode, member, Some(id))
            .await
    }

    async fn change_members(
        &self,
        kind: ConfChangeType,
        member: Member,
        promoting: Option<u64>,
    ) -> Result<Vec<Member>, EtcdError> {
        let id = self.next_request_id();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = member.id;
        let mut change = ConfChangeV2::default();
        change.set_changes(vec![single].into());
        let context = MemberChange {
            request_id: id,
            member: Some(member),
        };
        change.set_context(context.encode_to_vec().into());
        let (respond, answer) = oneshot::channel::<ProposalResult>();
        let request = DriverRequest::ProposeMemberChange {
            id,
            change,
            promoting,
            respond,
        };
        match self.submit(request, answer).await? {
            (CommandResponse::Members(members), _) => Ok(members),
            _ => Err(mismatched_response("membership change")),
        }
    }

    /// etcd's MoveLeader: hands leadership to voter `target` and waits until it leads (at most
    /// the request timeout).
    pub async fn move_leader(&self, target: u64) -> Result<(), EtcdError> {
        let mut changes = self.status_changes();
        let (respond, answer) = oneshot::channel();
        self.submit(DriverRequest::TransferLeader { target, respond }, answer)
            .await?;
        let transferred = async {
            changes
                .wait_for(|status| status.leader_id == target)
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(self.shared.config.request_timeout(), transferred).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::LeaderTransferTimeout),
        }
    }

    /// etcd's HashKV at `revision` (0: current), of this member's state.
    pub fn hash_kv(&self, revision: i64) -> Result<crate::mvcc::KvHash, EtcdError> {
        self.shared.store.read().hash_kv(revision)
    }

    /// A hash of this member's whole key-value and lease state.
    pub fn hash_all(&self) -> Result<u32, EtcdError> {
        Ok(self.shared.store.read().hash_all()?)
    }

    /// Hands raft messages from a peer to the driver, waiting while its queue is full (the
    /// peer's sender then backs off). Fails only once the member stopped.
    pub async fn step(&self, messages: Vec<raft::eraftpb::Message>) -> Result<(), EtcdError> {
        self.shared
            .requests
            .send(DriverRequest::Step { messages })
            .await
            .map_err(|_| EtcdError::Stopped)
    }

    /// Waits until this member has applied everything committed when the call began, as seen
    /// by the leader (ReadIndex): local reads after it are linearizable.
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        let (respond, answer) = oneshot::channel();
        self.submit(DriverRequest::ReadIndex { respond }, answer)
            .await
    }

    /// Waits until this member is ready to serve clients: it has applied everything it had
    /// committed before it started, and a leader is known.
    pub async fn wait_ready(&self, commit_at_start: u64) -> Result<(), EtcdError> {
        let mut changes = self.status_changes();
        loop {
            let status = *changes.borrow_and_update();
            if status.applied_index >= commit_at_start && status.has_leader() {
                return Ok(());
            }
            if changes.changed().await.is_err() {
                return Err(EtcdError::Stopped);
            }
        }
    }

    async fn propose(
        &self,
        request: raft_command::Request,
    ) -> Result<(CommandResponse, i64), EtcdError> {
        let id = self.next_request_id();
        let data = RaftCommand {
            id,
            request: Some(request),
        }
        .encode_to_vec();
        if data.len() > self.shared.config.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let (respond, answer) = oneshot::channel::<ProposalResult>();
        let result = self
            .submit(DriverRequest::Propose { id, data, respond }, answer)
            .await;
        if let Err(err) = &result {
            // Errors of the command itself (lease not found...) were applied; these were not.
            if err.is_retryable() || matches!(err, EtcdError::Internal(_)) {
                metrics::add(&self.shared.metrics.proposals_failed, 1);
            }
        }
        result
    }

    /// A request id unique across members (member id prefix) and restarts (boot count).
    fn next_request_id(&self) -> u64 {
        self.shared.request_id_prefix
            | (self.shared.next_request_seq.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
    }

    /// Hands `request` to the driver and waits for `answer`, all within the request timeout.
    async fn submit<T>(
        &self,
        request: DriverRequest,
        answer: oneshot::Receiver<Result<T, EtcdError>>,
    ) -> Result<T, EtcdError> {
        let wait = async {
            self.shared
                .requests
                .send(request)
                .await
                .map_err(|_| EtcdError::Stopped)?;
            answer.await.map_err(|_| EtcdError::Stopped)?
        };
        match tokio::time::timeout(self.shared.config.request_timeout(), wait).await {
            Ok(result) => result,
            Err(_) => Err(EtcdError::Timeout),
        }
    }
}

/// Whether `url` is an http(s) URL with a host and a port, as etcd requires of member URLs.
fn is_member_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let host_port = rest.trim_end_matches('/');
    match host_port.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

fn mismatched_response(kind: &str) -> EtcdError {
    EtcdError::Internal(format!("{kind} was answered with another kind of response"))
}
