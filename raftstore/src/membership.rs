//! `Membership`: the cluster's members as every member sees them, changed only by applied raft
//! entries and kept in the stored cluster identity.
//!
//! Guarantees: [`Membership::apply_attributes`] writes the updated identity (synced) before the
//! caller records the entry as applied, so a crash in between re-applies it — harmless, since
//! setting the same attributes twice changes nothing.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::engine::KvEngine;
use crate::error::StorageError;
use crate::identity;
use crate::pb::etcdserverpb::Member;
use crate::pb::k3rspb::{ClusterIdentity, MemberAttributes};

pub struct Membership {
    identity: RwLock<ClusterIdentity>,
}

impl Membership {
    pub fn new(identity: ClusterIdentity) -> Arc<Self> {
        Arc::new(Self {
            identity: RwLock::new(identity),
        })
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
