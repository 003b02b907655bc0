//! The driver: the one task that owns raft-rs's `RawNode`.
//!
//! Each turn of the loop takes a tick or a batch of queued requests (every proposal waiting is
//! proposed before the next Ready, so one fsync serves them all), then handles the Ready in this
//! order: send messages; append entries and hard state in one engine write, fsynced when raft
//! says it must be; apply committed entries; send the messages that needed the fsync; advance.
//! Applied state is synced lazily, except after a compaction, which is synced before its
//! client (or anyone) hears of it, as etcd forces a backend commit for it.
//! A storage failure or an undecodable committed entry stops the driver with an error: a node
//! never goes on in a state it cannot trust.
//!
//! The driver also keeps the leader's lease deadlines ([`ExpiryClock`]): it promotes and
//! demotes the clock as leadership changes, starts a deadline when a grant is applied, renews on
//! keep-alive, and on each tick proposes a revoke for every lease past its deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType};
use raft::prelude::Ready;
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::error::{EtcdError, StorageError};
use crate::lease::ExpiryClock;
use crate::membership::{MemberChangeKind, Membership};
use crate::metrics::{self, Metrics};
use crate::mvcc::{ApplyOutcome, CommandResponse, MvccStore};
use crate::node::read_index::{ReadResponder, ReadRounds};
use crate::node::status::{NodeStatus, StatusCell};
use crate::node::transport::RaftTransport;
use crate::node::NodeConfig;
use crate::pb::etcdserverpb::Member;
use crate::pb::etcdserverpb::{LeaseRevokeRequest, LeaseTimeToLiveResponse};
use crate::pb::k3rspb::{raft_command, MemberChange, RaftCommand};
use crate::raft_log::RaftLogStore;
use crate::watch::WatchHub;

/// What a proposer gets back once its entry is applied: the response and the revision after it.
pub type ProposalResult = Result<(CommandResponse, i64), EtcdError>;

/// Work handed to the driver.
pub enum DriverRequest {
    /// Propose an encoded [`RaftCommand`] whose id is `id`.
    Propose {
        id: u64,
        data: Vec<u8>,
        respond: oneshot::Sender<ProposalResult>,
    },
    /// Wait for a linearizable read point.
    ReadIndex { respond: ReadResponder },
    /// Raft messages from peers.
    Step {
        messages: Vec<raft::eraftpb::Message>,
    },
    /// Propose a membership conf change whose context is an encoded [`MemberChange`] with
    /// request id `id`. With `promoting`, the learner must have caught up with the leader.
    ProposeMemberChange {
        id: u64,
        change: ConfChangeV2,
        promoting: Option<u64>,
        respond: oneshot::Sender<ProposalResult>,
    },
    /// Start handing leadership to voter `target` (leader only).
    TransferLeader {
        target: u64,
        respond: oneshot::Sender<Result<(), EtcdError>>,
    },
    /// Renew lease `id` (leader only): answers its TTL, or `None` when it does not exist or
    /// has already expired.
    LeaseRenew {
        id: i64,
        respond: oneshot::Sender<Result<Option<i64>, EtcdError>>,
    },
    /// Describe lease `id` (leader only): `None` when it does not exist.
    LeaseTimeToLive {
        id: i64,
        keys: bool,
        respond: oneshot::Sender<Result<Option<LeaseTimeToLiveResponse>, EtcdError>>,
    },
}

/// Most expired leases revoked per tick (etcd revokes at most 1,000 a second).
const REVOKES_PER_TICK: usize = 100;

/// Why the driver stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("storage failure in the raft loop: {0}")]
    Storage(#[from] StorageError),
    #[error("raft failure: {0}")]
    Raft(#[from] raft::Error),
    #[error("committed raft entry {index} is not decodable: {reason}")]
    CorruptEntry { index: u64, reason: String },
    #[error("etcdserver: the member has been permanently removed from the cluster")]
    Removed,
}

pub struct Driver {
    pub raw_node: RawNode<RaftLogStore>,
    pub log: RaftLogStore,
    pub store: Arc<RwLock<MvccStore>>,
    pub watch_hub: Arc<WatchHub>,
    pub membership: Arc<Membership>,
    pub status: Arc<StatusCell>,
    pub metrics: Arc<Metrics>,
    pub transport: Arc<dyn RaftTransport>,
    pub config: NodeConfig,
    pub member_id: u64,
    waiters: HashMap<u64, oneshot::Sender<ProposalResult>>,
    reads: ReadRounds,
    applied_index: u64,
    snapshots_installed: u64,
    last_log_compaction_index: u64,
    known_leader: (u64, u64),
    lease_clock: ExpiryClock,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raw_node: RawNode<RaftLogStore>,
        log: RaftLogStore,
        store: Arc<RwLock<MvccStore>>,
        watch_hub: Arc<WatchHub>,
        membership: Arc<Membership>,
        status: Arc<StatusCell>,
        metrics: Arc<Metrics>,
        transport: Arc<dyn RaftTransport>,
        config: NodeConfig,
        member_id: u64,
    ) -> Self {
        let applied_index = store.read().consistent_index();
        let reads = ReadRounds::new(config.election_ticks());
        Self {
            raw_node,
            last_log_compaction_index: log.first_index().saturating_sub(1),
            log,
            store,
            watch_hub,
            membership,
            status,
            metrics,
            transport,
            config,
            member_id,
            waiters: HashMap::new(),
            reads,
            applied_index,
            snapshots_installed: 0,
            known_leader: (0, 0),
            lease_clock: ExpiryClock::default(),
        }
    }

    /// Runs until shutdown is signalled, every handle is dropped, or a fatal error.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<DriverRequest>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), DriverError> {
        let mut ticker = tokio::time::interval(self.config.tick_interval());
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.advance_first_election();
        let result = loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break Ok(()),
                _ = ticker.tick() => self.on_tick(),
                request = requests.recv() => match request {
                    Some(request) => {
                        self.on_request(request);
                        for _ in 1..self.config.max_proposals_per_ready {
                            match requests.try_recv() {
                                Ok(request) => self.on_request(request),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break Ok(()),
                },
            }
            if let Some(context) = self.reads.start_round() {
                self.raw_node.read_index(context);
            }
            if self.raw_node.has_ready() {
                if let Err(err) = self.on_ready() {
                    break Err(err);
                }
            }
            self.metrics.proposals_pending.store(
                self.waiters.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        };
        let reason = match &result {
            Ok(()) => EtcdError::Stopped,
            Err(err) => {
                tracing::error!(member = %format!("{:x}", self.member_id), error = %err, "raft driver stopped");
                EtcdError::Stopped
            }
        };
        self.fail_everything(reason);
        if let Err(err) = self.store.read().engine().sync() {
            tracing::warn!(error = %err, "final sync at shutdown failed");
        }
        result
    }

    /// etcd's initial election tick advance: a voter of a multi-voter cluster starts with all
    /// but two ticks of its election timeout already elapsed, so a cluster that starts (or
    /// restarts) together elects a leader after a few heartbeats instead of a whole election
    /// timeout. Pre-vote makes an early campaign harmless: peers that still hear from a
    /// leader refuse it without any term change.
    fn advance_first_election(&mut self) {
        let raft = &self.raw_node.raft;
        let voters = raft.prs().conf().voters();
        if voters.ids().len() < 2
            || !voters.contains(self.member_id)
            || raft.leader_id != raft::INVALID_ID
        {
            return;
        }
        for _ in 2..self.config.election_ticks() {
            self.raw_node.tick();
        }
    }

    fn on_tick(&mut self) {
        self.raw_node.tick();
        for peer in self.transport.take_unreachable() {
            self.raw_node.report_unreachable(peer);
            // A snapshot in flight to it is lost too; raft sends a new one when it can.
            self.raw_node
                .report_snapshot(peer, raft::SnapshotStatus::Failure);
        }
        if let Some(context) = self.reads.tick() {
            self.raw_node.read_index(context);
        }
        // Callers that gave up (deadline) leave closed senders behind.
        self.waiters.retain(|_, waiter| !waiter.is_closed());
        self.revoke_expired_leases();
    }

    /// Proposes a revoke for each lease past its deadline (the clock only has deadlines while
    /// this member leads). Nobody waits for these entries.
    fn revoke_expired_leases(&mut self) {
        let now = tokio::time::Instant::now();
        for id in self.lease_clock.due(now, REVOKES_PER_TICK) {
            let command = RaftCommand {
                id: 0,
                request: Some(raft_command::Request::LeaseRevoke(LeaseRevokeRequest {
                    id,
                })),
            };
            tracing::debug!(lease = %format!("{id:x}"), "lease expired; proposing its revoke");
            if let Err(err) = self.raw_node.propose(Vec::new(), command.encode_to_vec()) {
                tracing::warn!(lease = %format!("{id:x}"), error = %err, "proposing a lease revoke failed; retrying later");
            }
        }
    }

    fn on_request(&mut self, request: DriverRequest) {
        match request {
            DriverRequest::Propose { id, data, respond } => {
                match self.raw_node.propose(Vec::new(), data) {
                    Ok(()) => {
                        self.waiters.insert(id, respond);
                    }
                    Err(raft::Error::ProposalDropped) => {
                        let _ = respond.send(Err(self.no_leader_error()));
                    }
                    Err(err) => {
                        let _ = respond.send(Err(EtcdError::Internal(format!("propose: {err}"))));
                    }
                }
            }
            DriverRequest::ReadIndex { respond } => {
                if self.raw_node.raft.leader_id == raft::INVALID_ID {
                    let _ = respond.send(Err(EtcdError::NoLeader));
                } else {
                    self.reads.enqueue(respond);
                }
            }
            DriverRequest::Step { messages } => {
                for message in messages {
                    let from = message.from;
                    if self.is_stale_pre_vote_grant(&message) {
                        tracing::debug!(from = %format!("{from:x}"), term = message.term, "stale pre-vote grant dropped");
                        continue;
                    }
                    if let Err(err) = self.raw_node.step(message) {
                        tracing::debug!(from = %format!("{from:x}"), error = %err, "raft message not stepped");
                    }
                }
            }
            DriverRequest::ProposeMemberChange {
                id,
                change,
                promoting,
                respond,
            } => match self.propose_member_change(change, promoting) {
                Ok(()) => {
                    self.waiters.insert(id, respond);
                }
                Err(err) => {
                    let _ = respond.send(Err(err));
                }
            },
            DriverRequest::TransferLeader { target, respond } => {
                let _ = respond.send(self.transfer_leader(target));
            }
            DriverRequest::LeaseRenew { id, respond } => {
                let _ = respond.send(self.renew_lease(id));
            }
            DriverRequest::LeaseTimeToLive { id, keys, respond } => {
                let _ = respond.send(self.lease_time_to_live(id, keys));
            }
        }
    }

    /// Whether `message` grants a pre-vote of an earlier round. A grant carries the term the
    /// pre-candidate asked for (its term + 1), so one at or below the current term answers a
    /// round that is over — delayed by the network, or sent to this member before it
    /// restarted. raft-rs would count it towards the current round (it compares terms only),
    /// and a pre-candidate whose log is behind could then start a real election it cannot
    /// win, whose higher term unseats a working leader.
    fn is_stale_pre_vote_grant(&self, message: &raft::eraftpb::Message) -> bool {
        message.get_msg_type() == raft::eraftpb::MessageType::MsgRequestPreVoteResponse
            && !message.reject
            && message.term <= self.raw_node.raft.term
    }

    /// The error for a lease request on a member that does not lead.
    fn not_leading(&self) -> EtcdError {
        if self.raw_node.raft.leader_id == raft::INVALID_ID {
            EtcdError::NoLeader
        } else {
            EtcdError::NotLeader
        }
    }

    fn propose_member_change(
        &mut self,
        change: ConfChangeV2,
        promoting: Option<u64>,
    ) -> Result<(), EtcdError> {
        if self.raw_node.raft.has_pending_conf() {
            // raft-rs takes one membership change at a time.
            return Err(EtcdError::Unhealthy);
        }
        if self.raw_node.raft.state == StateRole::Leader {
            self.check_reconfiguration(&change, promoting.is_some())?;
        }
        if let Some(learner) = promoting {
            if self.raw_node.raft.state != StateRole::Leader {
                return Err(self.not_leading());
            }
            let committed = self.raw_node.raft.raft_log.committed;
            let matched = self
                .raw_node
                .raft
                .prs()
                .get(learner)
                .map_or(0, |progress| progress.matched);
            // etcd's rule: a learner is ready once it has 90% of the leader's log.
            if (matched as f64) < committed as f64 * 0.9 {
                return Err(EtcdError::LearnerNotReady);
            }
        }
        let context = change.context.to_vec();
        match self.raw_node.propose_conf_change(context, change) {
            Ok(()) => Ok(()),
            Err(raft::Error::ProposalDropped) => Err(self.no_leader_error()),
            Err(err) => Err(EtcdError::Internal(format!("propose conf change: {err}"))),
        }
    }

    /// etcd's strict reconfiguration check, on the leader: every voter must be reachable
    /// ("unhealthy cluster" otherwise) — except for the removal of a voter that is down — and
    /// the voters still reachable after the change must be a quorum of the new voters ("not
    /// enough started members" otherwise).
    fn check_reconfiguration(
        &self,
        change: &ConfChangeV2,
        promoting: bool,
    ) -> Result<(), EtcdError> {
        let raft = &self.raw_node.raft;
        let voters: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
        let active =
            |id: u64| id == self.member_id || raft.prs().get(id).is_some_and(|p| p.recent_active);
        let mut active_after = voters.iter().filter(|id| active(**id)).count();
        let mut voters_after = voters.len();
        for single in change.get_changes() {
            match single.get_change_type() {
                ConfChangeType::AddNode => {
                    voters_after += 1;
                    // A learner being promoted is connected; a brand-new voter is not yet.
                    if promoting && active(single.node_id) {
                        active_after += 1;
                    }
                }
                ConfChangeType::RemoveNode if voters.contains(&single.node_id) => {
                    voters_after -= 1;
                    if active(single.node_id) {
                        active_after -= 1;
                    }
                }
                ConfChangeType::RemoveNode | ConfChangeType::AddLearnerNode => {}
            }
        }
        // Removing a voter that is down is how a dead machine leaves the cluster: etcd allows it
        // as long as the members left that are up make a quorum (checked below).
        let removes_a_down_voter = change.get_changes().iter().all(|single| {
            single.get_change_type() == ConfChangeType::RemoveNode
                && voters.contains(&single.node_id)
                && !active(single.node_id)
        });
        if !removes_a_down_voter && !voters.iter().all(|id| active(*id)) {
            return Err(EtcdError::Unhealthy);
        }
        // Growing a one-member cluster to two is allowed, as etcd allows it (restoring data).
        let growing_from_one = voters.len() == 1 && voters_after == 2;
        if active_after < voters_after / 2 + 1 && !growing_from_one {
            return Err(EtcdError::NotEnoughStartedMembers);
        }
        Ok(())
    }

    fn transfer_leader(&mut self, target: u64) -> Result<(), EtcdError> {
        if self.raw_node.raft.state != StateRole::Leader {
            return Err(self.not_leading());
        }
        if !self.raw_node.raft.prs().conf().voters().contains(target) {
            return Err(EtcdError::BadLeaderTransferee);
        }
        if target != self.member_id {
            self.raw_node.transfer_leader(target);
        }
        Ok(())
    }

    fn renew_lease(&mut self, id: i64) -> Result<Option<i64>, EtcdError> {
        if !self.lease_clock.is_leading() {
            return Err(self.not_leading());
        }
        let Some(ttl) = self.store.read().leases().get(id).map(|lease| lease.ttl) else {
            return Ok(None);
        };
        let now = tokio::time::Instant::now();
        Ok(self.lease_clock.renew(id, ttl, now).then_some(ttl))
    }

    fn lease_time_to_live(
        &self,
        id: i64,
        with_keys: bool,
    ) -> Result<Option<LeaseTimeToLiveResponse>, EtcdError> {
        if !self.lease_clock.is_leading() {
            return Err(self.not_leading());
        }
        let store = self.store.read();
        let Some(lease) = store.leases().get(id) else {
            return Ok(None);
        };
        let now = tokio::time::Instant::now();
        // etcd reports whole seconds left, rounded down; -1 once expired.
        let remaining = match self.lease_clock.remaining(id, now) {
            Some(left) if !left.is_zero() => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            _ => -1,
        };
        Ok(Some(LeaseTimeToLiveResponse {
            header: None,
            id,
            ttl: remaining,
            granted_ttl: lease.ttl,
            keys: if with_keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        }))
    }

    fn no_leader_error(&self) -> EtcdError {
        if self.raw_node.raft.leader_id == raft::INVALID_ID {
            EtcdError::NoLeader
        } else {
            // A known leader that refuses proposals is transferring leadership.
            EtcdError::LeaderChanged
        }
    }

    /// Whether the test-only `skip_raft_log_fsync` fault is switched on (never without the
    /// `fault-injection` feature).
    fn skips_fsync_by_injected_fault(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            self.config.injected_faults.skip_raft_log_fsync
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            false
        }
    }

    fn on_ready(&mut self) -> Result<(), DriverError> {
        let mut ready: Ready = self.raw_node.ready();
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot())?;
        }
        if !ready.entries().is_empty() || ready.hs().is_some() {
            let started = tokio::time::Instant::now();
            let sync = ready.must_sync() && !self.skips_fsync_by_injected_fault();
            self.log.persist(ready.entries(), ready.hs(), sync)?;
            if sync {
                self.metrics.wal_fsync.observe(started.elapsed());
            }
        }
        for read_state in ready.take_read_states() {
            self.reads.on_read_state(
                &read_state.request_ctx,
                read_state.index,
                self.applied_index,
            );
        }
        let committed = ready.take_committed_entries();
        self.apply_committed(committed)?;
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }
        let mut light = self.raw_node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit)?;
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        let committed = light.take_committed_entries();
        self.apply_committed(committed)?;
        self.raw_node.advance_apply();
        self.maybe_compact_log()?;
        self.publish_status();
        Ok(())
    }

    fn apply_committed(&mut self, entries: Vec<Entry>) -> Result<(), DriverError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let last_index = last.index;
        let mut replies = Vec::new();
        let mut published = Vec::new();
        // Whether a compaction was applied: its state is synced before anyone hears of it.
        let mut compacted = false;
        {
            let store = Arc::clone(&self.store);
            let mut store = store.write();
            for entry in &entries {
                match entry.get_entry_type() {
                    EntryType::EntryNormal => {
                        if entry.data.is_empty() {
                            record_index_only(&mut store, entry.index)?;
                            continue;
                        }
                        let command = RaftCommand::decode(entry.data.as_ref()).map_err(|err| {
                            DriverError::CorruptEntry {
                                index: entry.index,
                                reason: err.to_string(),
                            }
                        })?;
                        match &command.request {
                            Some(raft_command::Request::MemberAttributes(attributes)) => {
                                self.membership
                                    .apply_attributes(store.engine().as_ref(), attributes)?;
                            }
                            Some(raft_command::Request::MemberUpdate(update)) => {
                                self.membership.apply_peer_urls(
                                    store.engine().as_ref(),
                                    update.id,
                                    &update.peer_ur_ls,
                                )?;
                                self.transport.members_changed(&self.membership.members());
                            }
                            _ => {}
                        }
                        let started = tokio::time::Instant::now();
                        let mut outcome = store.apply(entry.index, command.request.as_ref())?;
                        self.metrics.backend_commit.observe(started.elapsed());
                        if let Ok(ApplyOutcome {
                            response: Some(response),
                            ..
                        }) = &outcome
                        {
                            self.metrics.record_applied(response);
                        }
                        self.track_lease_deadlines(command.request.as_ref(), &outcome);
                        compacted |= matches!(
                            &outcome,
                            Ok(ApplyOutcome {
                                response: Some(CommandResponse::Compaction(_)),
                                ..
                            })
                        );
                        if let Ok(applied) = &mut outcome {
                            if !applied.events.is_empty() {
                                let events = std::mem::take(&mut applied.events);
                                published.push((applied.revision, events));
                            }
                        }
                        if command.id != 0 {
                            replies.push((command.id, outcome));
                        }
                    }
                    EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                        let (conf_state, context, changes) = self.apply_conf_change(entry)?;
                        let (request_id, removed_self) =
                            self.apply_member_changes(store.engine().as_ref(), &context, &changes)?;
                        self.log.set_conf_state(&conf_state)?;
                        record_index_only(&mut store, entry.index)?;
                        let members = self.membership.members();
                        self.transport.members_changed(&members);
                        if request_id != 0 {
                            let revision = store.current_revision();
                            replies.push((
                                request_id,
                                Ok(ApplyOutcome {
                                    response: Some(CommandResponse::Members(members)),
                                    events: Vec::new(),
                                    revision,
                                }),
                            ));
                        }
                        if removed_self {
                            return Err(DriverError::Removed);
                        }
                        self.make_joiners_use_snapshots(store.engine().as_ref())?;
                    }
                }
            }
            // As etcd's ForceCommit after scheduling a compaction: an acknowledged compaction
            // survives a power loss, so a restarted member never serves revisions below it
            // again (it would otherwise replay only up to the commit index it had synced, and
            // answer with a compact revision gone back until a leader told it more).
            if compacted {
                store.engine().sync()?;
            }
        }
        // Watchers hear of a revision before its writer does, and only once the store lock is
        // released (the hub's sync task takes the hub lock, then the store's).
        for (revision, events) in published {
            self.watch_hub.notify(revision, events);
        }
        for (id, outcome) in replies {
            if let Some(waiter) = self.waiters.remove(&id) {
                let reply = outcome.and_then(|outcome| match outcome.response {
                    Some(response) => Ok((response, outcome.revision)),
                    None => Err(EtcdError::Internal(
                        "applied command gave no response".into(),
                    )),
                });
                let _ = waiter.send(reply);
            }
        }
        self.applied_index = last_index;
        self.reads.on_applied(last_index);
        Ok(())
    }

    /// Replaces this member's state with a raft snapshot from the leader: state and log start in
    /// one synced write, then the MVCC store is reopened from the engine and watchers catch up
    /// from it (or learn that their history was compacted away).
    fn install_snapshot(&mut self, snapshot: &raft::eraftpb::Snapshot) -> Result<(), DriverError> {
        let index = snapshot.get_metadata().index;
        let install = crate::state_image::install_batch(snapshot.get_data(), index)?;
        let mut batch = install.batch;
        // Membership changes the member missed come with the snapshot, in the same write.
        let identity =
            (!install.members.is_empty()).then(|| self.membership.identity_with(install.members));
        if let Some(identity) = &identity {
            crate::identity::put(&mut batch, identity);
        }
        self.log.apply_snapshot(snapshot, batch)?;
        if let Some(identity) = identity {
            self.membership.replace_members(identity);
            self.transport.members_changed(&self.membership.members());
        }
        let engine = Arc::clone(self.store.read().engine());
        let reopened = MvccStore::open(engine)?;
        let revision = reopened.current_revision();
        *self.store.write() = reopened;
        self.applied_index = index;
        self.snapshots_installed += 1;
        self.reads.on_applied(index);
        self.watch_hub.restored(revision);
        tracing::info!(member = %format!("{:x}", self.member_id), index, revision, "installed a raft snapshot from the leader");
        Ok(())
    }

    /// Keeps the leader's lease deadlines in step with applied grants and revokes.
    fn track_lease_deadlines(
        &mut self,
        request: Option<&raft_command::Request>,
        outcome: &Result<ApplyOutcome, EtcdError>,
    ) {
        if let Some(raft_command::Request::LeaseRevoke(revoke)) = request {
            // Revoked now, or already gone (not found): either way there is nothing to expire.
            self.lease_clock.remove(revoke.id);
        }
        if let Ok(ApplyOutcome {
            response: Some(CommandResponse::LeaseGrant(granted)),
            ..
        }) = outcome
        {
            let now = tokio::time::Instant::now();
            self.lease_clock.start(granted.id, granted.ttl, now);
        }
    }

    /// Drops raft log entries once `snapshot_count` more were applied, keeping
    /// `snapshot_catchup_entries` behind the applied index. The state they produced is synced
    /// first, so the log never loses an entry whose effect is not durable.
    fn maybe_compact_log(&mut self) -> Result<(), DriverError> {
        if self.applied_index < self.last_log_compaction_index + self.config.snapshot_count {
            return Ok(());
        }
        let compact_index = self
            .applied_index
            .saturating_sub(self.config.snapshot_catchup_entries);
        if compact_index > self.log.first_index() {
            self.store.read().engine().sync()?;
            self.log.compact(compact_index)?;
        }
        self.last_log_compaction_index = self.applied_index;
        Ok(())
    }

    fn publish_status(&mut self) {
        let raft = &self.raw_node.raft;
        let leader = (raft.leader_id, raft.term);
        if leader != self.known_leader {
            if self.known_leader.0 != 0 && leader.0 != self.known_leader.0 {
                self.reads.fail_in_flight(EtcdError::LeaderChanged);
            }
            if leader.0 != 0 && leader.0 != self.known_leader.0 {
                metrics::add(&self.metrics.leader_changes_seen, 1);
            }
            tracing::info!(
                member = %format!("{:x}", self.member_id),
                leader = %format!("{:x}", raft.leader_id),
                term = raft.term,
                role = ?raft.state,
                "raft leadership"
            );
            self.known_leader = leader;
        }
        let leading = raft.state == StateRole::Leader;
        if leading && !self.lease_clock.is_leading() {
            let store = self.store.read();
            let extend = Duration::from_millis(self.config.election_timeout_ms);
            self.lease_clock
                .promote(tokio::time::Instant::now(), store.leases().ttls(), extend);
        } else if !leading && self.lease_clock.is_leading() {
            self.lease_clock.demote();
        }
        let raft = &self.raw_node.raft;
        self.status.publish(NodeStatus {
            member_id: self.member_id,
            leader_id: raft.leader_id,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: self.applied_index,
            last_index: raft.raft_log.last_index(),
            is_learner: raft.state != StateRole::Leader
                && raft.prs().conf().learners().contains(&self.member_id),
            snapshots_installed: self.snapshots_installed,
        });
    }

    /// Applies a committed conf change entry to raft, returning the new conf state, the entry's
    /// context and its single changes (type, node).
    #[allow(clippy::type_complexity)]
    fn apply_conf_change(
        &mut self,
        entry: &Entry,
    ) -> Result<(ConfState, Vec<u8>, Vec<(ConfChangeType, u64)>), DriverError> {
        let corrupt = |err: protobuf::ProtobufError| DriverError::CorruptEntry {
            index: entry.index,
            reason: err.to_string(),
        };
        if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
            let change = ConfChangeV2::parse_from_bytes(entry.data.as_ref()).map_err(corrupt)?;
            let singles = change
                .get_changes()
                .iter()
                .map(|single| (single.get_change_type(), single.node_id))
                .collect();
            let conf_state = self.raw_node.apply_conf_change(&change)?;
            Ok((conf_state, change.context.to_vec(), singles))
        } else {
            let change = ConfChange::parse_from_bytes(entry.data.as_ref()).map_err(corrupt)?;
            let singles = vec![(change.get_change_type(), change.node_id)];
            let conf_state = self.raw_node.apply_conf_change(&change)?;
            Ok((conf_state, change.context.to_vec(), singles))
        }
    }

    /// Records applied conf changes in the membership; returns the waiting request id (0 if
    /// none) and whether this member was removed.
    fn apply_member_changes(
        &mut self,
        engine: &dyn crate::engine::KvEngine,
        context: &[u8],
        changes: &[(ConfChangeType, u64)],
    ) -> Result<(u64, bool), DriverError> {
        let described = MemberChange::decode(context).unwrap_or_default();
        let mut removed_self = false;
        for (change_type, node_id) in changes {
            let mut member = described
                .member
                .clone()
                .filter(|member| member.id == *node_id)
                .unwrap_or_else(|| Member {
                    id: *node_id,
                    ..Default::default()
                });
            let kind = match change_type {
                ConfChangeType::AddNode if self.membership.contains(*node_id) => {
                    MemberChangeKind::Promoted
                }
                ConfChangeType::AddNode => {
                    member.is_learner = false;
                    MemberChangeKind::Added
                }
                ConfChangeType::AddLearnerNode => {
                    member.is_learner = true;
                    MemberChangeKind::Added
                }
                ConfChangeType::RemoveNode => {
                    removed_self |= *node_id == self.member_id;
                    MemberChangeKind::Removed
                }
            };
            tracing::info!(member = %format!("{node_id:x}"), change = ?kind, "membership changed");
            self.membership.apply_change(engine, kind, &member)?;
        }
        Ok((described.request_id, removed_self))
    }

    /// A member joining later starts from an empty log and must learn the cluster from a raft
    /// snapshot, never by replaying the log from index 1 (the initial voters are not in it):
    /// the log is compacted past index 1 once.
    fn make_joiners_use_snapshots(
        &mut self,
        engine: &dyn crate::engine::KvEngine,
    ) -> Result<(), DriverError> {
        if self.log.first_index() <= 1 && self.applied_index >= 1 {
            engine.sync()?;
            self.log.compact(2)?;
        }
        Ok(())
    }

    fn fail_everything(&mut self, error: EtcdError) {
        for (_, waiter) in self.waiters.drain() {
            let _ = waiter.send(Err(error.clone()));
        }
        self.reads.fail_all(error);
    }
}

/// Records that entry `index`, which carries no command for MVCC, was applied.
fn record_index_only(store: &mut MvccStore, index: u64) -> Result<(), DriverError> {
    match store.apply(index, None)? {
        Ok(_) => Ok(()),
        Err(err) => Err(DriverError::CorruptEntry {
            index,
            reason: err.to_string(),
        }),
    }
}
