//! `Membership`: the cluster's members as every member sees them, changed only by applied raft
//! entries and kept in the stored cluster identity.
//!
//! Guarantees: [`Membership::apply_attributes`] and [`Membership::apply_change`] write the
//! updated identity (synced) before the caller records the entry as applied, so a crash in
//! between re-applies it — harmless, since applying the same change twice changes nothing.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::engine::KvEngine;
use crate::error::StorageError;
use crate::identity;
use crate::pb::etcdserverpb::Member;
use crate::pb::k3rspb::{ClusterIdentity, MemberAttributes};

/// What a membership conf change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChangeKind {
    Added,
    Promoted,
    Removed,
}

pub struct Membership {
    identity: RwLock<ClusterIdentity>,
}

impl Membership {
    pub fn new(identity: ClusterIdentity) -> Arc<Self> {
        Arc::new(Self {
            identity: RwLock::new(identity),
        })
    }

    pub fn cluster_id(&self) -> u64 {
        self.identity.read().cluster_id
    }

    /// Whether member `id` is in the cluster.
    pub fn contains(&self, id: u64) -> bool {
        self.identity.read().members.iter().any(|m| m.id == id)
    }

    /// Every member, as MemberList shows them.
    pub fn members(&self) -> Vec<Member> {
        self.identity.read().members.clone()
    }

    /// Whether member `id` already shows exactly these attributes.
    pub fn has_attributes(&self, attributes: &MemberAttributes) -> bool {
        self.identity.read().members.iter().any(|member| {
            member.id == attributes.id
                && member.name == attributes.name
                && member.client_ur_ls == attributes.client_urls
        })
    }

    /// Records a membership conf change: `Added` puts `member` in (or updates it), `Promoted`
    /// makes it a voter, `Removed` takes it out.
    pub fn apply_change(
        &self,
        engine: &dyn KvEngine,
        change: MemberChangeKind,
        member: &Member,
    ) -> Result<(), StorageError> {
        let mut identity = self.identity.write();
        let before = identity.members.clone();
        match change {
            MemberChangeKind::Added => {
                match identity.members.iter_mut().find(|m| m.id == member.id) {
                    Some(existing) => existing.is_learner = member.is_learner,
                    None => identity.members.push(member.clone()),
                }
            }
            MemberChangeKind::Promoted => {
                if let Some(existing) = identity.members.iter_mut().find(|m| m.id == member.id) {
                    existing.is_learner = false;
                }
            }
            MemberChangeKind::Removed => identity.members.retain(|m| m.id != member.id),
        }
        if identity.members == before {
            return Ok(());
        }
        identity::store(engine, &identity)
    }

    /// Sets a member's peer URLs (etcd's MemberUpdate); an unknown member is ignored.
    pub fn apply_peer_urls(
        &self,
        engine: &dyn KvEngine,
        id: u64,
        peer_urls: &[String],
    ) -> Result<(), StorageError> {
        let mut identity = self.identity.write();
        let Some(member) = identity.members.iter_mut().find(|member| member.id == id) else {
            return Ok(());
        };
        if member.peer_ur_ls == peer_urls {
            return Ok(());
        }
        member.peer_ur_ls = peer_urls.to_vec();
        identity::store(engine, &identity)
    }

    /// The identity this member would have with `members` (a raft snapshot's), for the batch
    /// that installs it; [`Membership::replace_members`] makes it current once written.
    pub fn identity_with(&self, members: Vec<Member>) -> ClusterIdentity {
        let mut identity = self.identity.read().clone();
        identity.members = members;
        identity
    }

    pub fn replace_members(&self, identity: ClusterIdentity) {
        *self.identity.write() = identity;
    }

    /// Sets a member's name and client URLs; an unknown member is ignored (it was removed).
    pub fn apply_attributes(
        &self,
        engine: &dyn KvEngine,
        attributes: &MemberAttributes,
    ) -> Result<(), StorageError> {
        if self.has_attributes(attributes) {
            return Ok(());
        }
        let mut identity = self.identity.write();
        let Some(member) = identity
            .members
            .iter_mut()
            .find(|member| member.id == attributes.id)
        else {
            return Ok(());
        };
        member.name = attributes.name.clone();
        member.client_ur_ls = attributes.client_urls.clone();
        identity::store(engine, &identity)
    }
}
