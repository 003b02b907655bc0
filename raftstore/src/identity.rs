//! Member and cluster identity, computed exactly as etcd computes them so that ids shown by
//! `etcdctl member list` look and behave like etcd's.
//!
//! - member id: first 8 bytes (big-endian) of SHA-1 over the member's sorted peer URLs joined
//!   with nothing, followed by the cluster token;
//! - cluster id: first 8 bytes of SHA-1 over the sorted member ids, each 8 bytes big-endian.
//!
//! With etcd's defaults (`http://localhost:2380`, token `etcd-cluster`) this gives etcd's
//! familiar `8e9e05c52164694d` / `cdf818194e3a8c32`.

use prost::Message;
use sha1::{Digest, Sha1};

use crate::engine::{KvEngine, ReadView, Table, WriteBatch};
use crate::error::StorageError;
use crate::pb::etcdserverpb::Member;
use crate::pb::k3rspb::ClusterIdentity;

const IDENTITY_KEY: &[u8] = b"cluster_identity";

/// A member as named in the initial cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// etcd's member id for a member with `peer_urls` in a cluster created with `cluster_token`.
pub fn member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut sorted: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for url in sorted {
        hasher.update(url.as_bytes());
    }
    hasher.update(cluster_token.as_bytes());
    first_u64(&hasher.finalize())
}

/// etcd's cluster id for a cluster whose initial members have `member_ids`.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut sorted = member_ids.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for id in sorted {
        hasher.update(id.to_be_bytes());
    }
    first_u64(&hasher.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// The identity of a brand-new cluster: every initial member, and which one is `self_name`.
pub fn new_cluster_identity(
    initial: &[InitialMember],
    self_name: &str,
    cluster_token: &str,
    self_client_urls: &[String],
) -> Result<ClusterIdentity, String> {
    if initial.is_empty() {
        return Err("the initial cluster names no member".to_string());
    }
    let mut members: Vec<Member> = Vec::with_capacity(initial.len());
    for m in initial {
        let id = member_id(&m.peer_urls, cluster_token);
        if members.iter().any(|other| other.id == id) {
            return Err(format!(
                "member {:?} has the same peer URLs as another member: {:?}",
                m.name, m.peer_urls
            ));
        }
        let is_self = m.name == self_name;
        members.push(Member {
            id,
            // etcd shows name and client URLs only once a member has started; this one has.
            name: if is_self {
                m.name.clone()
            } else {
                String::new()
            },
            peer_ur_ls: m.peer_urls.clone(),
            client_ur_ls: if is_self {
                self_client_urls.to_vec()
            } else {
                Vec::new()
            },
            is_learner: false,
        });
    }
    let member_id = initial
        .iter()
        .zip(&members)
        .find(|(m, _)| m.name == self_name)
        .map(|(_, member)| member.id)
        .ok_or_else(|| format!("this member {self_name:?} is not in the initial cluster"))?;
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    Ok(ClusterIdentity {
        cluster_id: cluster_id(&ids),
        member_id,
        members,
    })
}

/// Reads the stored identity, if this data dir was ever bootstrapped.
pub fn load(engine: &dyn ReadView) -> Result<Option<ClusterIdentity>, StorageError> {
    match engine.get(Table::Meta, IDENTITY_KEY)? {
        None => Ok(None),
        Some(bytes) => ClusterIdentity::decode(bytes.as_slice())
            .map(Some)
            .map_err(|err| StorageError::io("meta: cluster identity record is not decodable", err)),
    }
}

/// Adds the identity record to `batch`.
pub fn put(batch: &mut WriteBatch, identity: &ClusterIdentity) {
    batch.put(Table::Meta, IDENTITY_KEY, identity.encode_to_vec());
}

/// Stores the identity, synced.
pub fn store(engine: &dyn KvEngine, identity: &ClusterIdentity) -> Result<(), StorageError> {
    let mut batch = WriteBatch::new();
    batch.put(Table::Meta, IDENTITY_KEY, identity.encode_to_vec());
    engine.write(batch, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_etcd_member_and_cluster_ids_match_etcd() {
        let id = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[id])), "cdf818194e3a8c32");
    }

    #[test]
    fn member_id_ignores_peer_url_order() {
        let a = member_id(&["http://a:2380".into(), "http://b:2380".into()], "t");
        let b = member_id(&["http://b:2380".into(), "http://a:2380".into()], "t");
        assert_eq!(a, b);
    }

    #[test]
    fn self_must_be_in_initial_cluster() {
        let initial = vec![InitialMember {
            name: "a".into(),
            peer_urls: vec!["http://a:2380".into()],
        }];
        assert!(new_cluster_identity(&initial, "b", "t", &[]).is_err());
        let identity = new_cluster_identity(&initial, "a", "t", &[]).expect("a is initial");
        assert_eq!(identity.members.len(), 1);
        assert_eq!(identity.member_id, identity.members[0].id);
    }
}
