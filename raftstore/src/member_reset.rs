//! Resets a stopped member's cluster to that member alone, keeping its data: etcd's
//! `--force-new-cluster`, k3s's `--cluster-reset`, the way out of a lost quorum.
//!
//! Guarantees:
//! - nothing is changed unless the store is whole: an identity listing this member, and every
//!   committed entry applied (the caller replays a member's log first; an unapplied committed
//!   entry is refused, never dropped);
//! - the reset is ONE synced write: the raft log restarts after the last applied entry (its
//!   index and term kept, uncommitted entries dropped, this member the only voter) and the
//!   identity keeps its cluster and member ids but lists this member alone, as a voter. A crash
//!   leaves either the old cluster or the reset one, and a restart keeps the reset one;
//! - keys, values, revisions, leases and compaction state are not touched.

use std::sync::Arc;

use raft::eraftpb::{ConfState, Snapshot, SnapshotMetadata};
use raft::Storage as _;

use crate::engine::{KvEngine, WriteBatch};
use crate::error::StorageError;
use crate::identity;
use crate::mvcc::meta;
use crate::pb::etcdserverpb::Member;
use crate::raft_log::RaftLogStore;

/// Why a reset was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("the data dir holds no store (no cluster identity): there is nothing to reset")]
    NoStore,
    #[error(
        "member {member_id:x} is not in its own member list (it was removed from the cluster); \
         remove its data dir and join the cluster again instead"
    )]
    NotAMember { member_id: u64 },
    #[error(
        "entries up to raft index {commit} are committed but the state is applied only up to \
         {applied}: start the member once without --cluster-reset so it applies them"
    )]
    Unapplied { applied: u64, commit: u64 },
}

/// What a reset did.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetOutcome {
    pub cluster_id: u64,
    pub member_id: u64,
    /// The members taken out of the cluster.
    pub removed: Vec<Member>,
    /// The raft index (and its term) the new log continues from.
    pub index: u64,
    pub term: u64,
}

/// Makes the member stored in `engine` the only member of its cluster (see the module doc).
pub fn reset_to_single_member(engine: Arc<dyn KvEngine>) -> Result<ResetOutcome, ResetError> {
    let mut identity = identity::load(engine.as_ref())?.ok_or(ResetError::NoStore)?;
    let member_id = identity.member_id;
    let Some(mut this) = identity
        .members
        .iter()
        .find(|member| member.id == member_id)
        .cloned()
    else {
        return Err(ResetError::NotAMember { member_id });
    };
    let applied = meta::read(engine.as_ref())?.consistent_index;
    let log = RaftLogStore::open(engine.clone())?;
    let commit = log.hard_state().commit;
    if applied != commit {
        return Err(ResetError::Unapplied { applied, commit });
    }
    let term = log.term(applied).map_err(|err| {
        StorageError::io(
            format!("reading the term of the last applied entry {applied}"),
            err,
        )
    })?;

    this.is_learner = false;
    let removed = identity
        .members
        .iter()
        .filter(|member| member.id != member_id)
        .cloned()
        .collect();
    identity.members = vec![this];
    let mut metadata = SnapshotMetadata {
        index: applied,
        term,
        ..Default::default()
    };
    metadata.set_conf_state(ConfState {
        voters: vec![member_id],
        ..Default::default()
    });
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(metadata);
    let mut batch = WriteBatch::new();
    identity::put(&mut batch, &identity);
    log.apply_snapshot(&snapshot, batch)?;
    Ok(ResetOutcome {
        cluster_id: identity.cluster_id,
        member_id,
        removed,
        index: applied,
        term,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::MemoryEngine;
    use crate::pb::k3rspb::ClusterIdentity;

    fn three_member_store() -> Arc<dyn KvEngine> {
        let engine: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
        let members = [1u64, 2, 3]
            .into_iter()
            .map(|id| Member {
                id,
                ..Default::default()
            })
            .collect();
        identity::store(
            engine.as_ref(),
            &ClusterIdentity {
                cluster_id: 7,
                member_id: 2,
                members,
            },
        )
        .expect("identity");
        let log = RaftLogStore::open(engine.clone()).expect("log");
        log.bootstrap(&ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        })
        .expect("bootstrap");
        engine
    }

    #[test]
    fn a_reset_member_is_the_only_voter_and_member_after_reopening() {
        let engine = three_member_store();
        let outcome = reset_to_single_member(engine.clone()).expect("reset");
        assert_eq!(
            outcome.removed.iter().map(|m| m.id).collect::<Vec<_>>(),
            [1, 3]
        );
        let log = RaftLogStore::open(engine.clone()).expect("reopen log");
        assert_eq!(log.conf_state().voters, [2]);
        let identity = identity::load(engine.as_ref())
            .expect("load")
            .expect("some");
        assert_eq!(identity.cluster_id, 7);
        assert_eq!(identity.members.len(), 1);
        assert_eq!(identity.members[0].id, 2);
    }

    #[test]
    fn a_store_without_identity_is_refused() {
        let engine: Arc<dyn KvEngine> = Arc::new(MemoryEngine::new());
        assert!(matches!(
            reset_to_single_member(engine),
            Err(ResetError::NoStore)
        ));
    }
}
