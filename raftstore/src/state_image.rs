//! The state machine as a raft snapshot carries it: captured on the leader for a follower whose
//! next entries were compacted away, installed by that follower in place of its own state.
//!
//! Guarantees:
//! - [`capture`] reads every kv row, lease record and MVCC meta record, and the cluster's
//!   members, in one pass of the driver (nothing applies meanwhile), so the image is the state
//!   at one applied index, which it records as its consistent index;
//! - the data ends in a CRC-32C of the image; [`install_batch`] refuses data whose checksum or
//!   encoding is wrong, or whose consistent index is not the snapshot's index, before anything
//!   is written;
//! - [`install_batch`] returns ONE write batch that clears the kv and lease tables and the MVCC
//!   meta records and writes the image's rows, and hands back the members; the caller adds the
//!   membership record and the raft log's own changes to it, so a crash leaves either the old
//!   state and log or the new ones.

use prost::Message as _;

use crate::engine::{ReadView, Table, WriteBatch};
use crate::error::StorageError;
use crate::mvcc::meta::STATE_KEYS;
use crate::mvcc::Crc32c;
use crate::pb::etcdserverpb::Member;
use crate::pb::k3rspb::{ImageRow, StateImage};
use crate::state_export::for_each_row;

/// Adds one row of `table` (as [`for_each_row`] visits them) to `image`.
pub fn push_row(image: &mut StateImage, table: Table, key: &[u8], value: &[u8]) {
    let row = ImageRow {
        key: key.to_vec(),
        value: value.to_vec(),
    };
    match table {
        Table::Kv => image.kv.push(row),
        Table::Lease => image.lease.push(row),
        Table::Meta | Table::RaftLog => image.meta.push(row),
    }
}

/// Every row of `image` with its table: kv rows, lease records, then meta records.
pub fn into_rows(image: StateImage) -> impl Iterator<Item = (Table, ImageRow)> {
    let kv = image.kv.into_iter().map(|row| (Table::Kv, row));
    let lease = image.lease.into_iter().map(|row| (Table::Lease, row));
    let meta = image.meta.into_iter().map(|row| (Table::Meta, row));
    kv.chain(lease).chain(meta)
}

fn checksum(bytes: &[u8]) -> [u8; 4] {
    let mut crc = Crc32c::default();
    crc.update(bytes);
    crc.finish().to_be_bytes()
}

/// The state machine's image, checksummed, as a raft snapshot's data.
pub fn capture(view: &dyn ReadView) -> Result<Vec<u8>, StorageError> {
    let mut image = StateImage {
        members: crate::identity::load(view)?
            .map(|identity| identity.members)
            .unwrap_or_default(),
        ..Default::default()
    };
    for_each_row(view, &mut |table, key, value| {
        push_row(&mut image, table, key, value);
        Ok(())
    })?;
    let mut data = image.encode_to_vec();
    let sum = checksum(&data);
    data.extend_from_slice(&sum);
    Ok(data)
}

/// A checked image, ready to install.
#[derive(Debug)]
pub struct Install {
    /// Replaces the state machine's rows and records.
    pub batch: WriteBatch,
    /// The cluster's members at the image's index.
    pub members: Vec<Member>,
}

/// Checks `data` and turns it into the batch that replaces this member's state with it.
pub fn install_batch(data: &[u8], index: u64) -> Result<Install, StorageError> {
    let Some(split) = data.len().checked_sub(4) else {
        return Err(StorageError::corrupt(
            "raft snapshot data is shorter than its checksum",
        ));
    };
    let (body, sum) = data.split_at(split);
    if checksum(body) != sum {
        return Err(StorageError::corrupt(format!(
            "raft snapshot at index {index} fails its CRC-32C check"
        )));
    }
    let mut image = StateImage::decode(body).map_err(|err| {
        StorageError::io(format!("decoding the raft snapshot at index {index}"), err)
    })?;
    let consistent_index = image
        .meta
        .iter()
        .find(|row| row.key == STATE_KEYS[0])
        .and_then(|row| <[u8; 8]>::try_from(row.value.as_slice()).ok())
        .map(u64::from_be_bytes);
    if consistent_index != Some(index) {
        return Err(StorageError::corrupt(format!(
            "raft snapshot at index {index} holds state applied up to {consistent_index:?}"
        )));
    }
    let mut batch = WriteBatch::new();
    batch.delete_range(Table::Kv, Vec::new(), vec![0xff; 32]);
    batch.delete_range(Table::Lease, Vec::new(), vec![0xff; 32]);
    for key in STATE_KEYS {
        batch.delete(Table::Meta, key);
    }
    let members = std::mem::take(&mut image.members);
    for (table, row) in into_rows(image) {
        batch.put(table, row.key, row.value);
    }
    Ok(Install { batch, members })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::memory::MemoryEngine;
    use crate::engine::KvEngine;
    use crate::mvcc::MvccStore;
    use crate::pb::etcdserverpb::{LeaseGrantRequest, PutRequest};
    use crate::pb::k3rspb::raft_command::Request;

    fn store_with_history() -> (Arc<MemoryEngine>, MvccStore) {
        let engine = Arc::new(MemoryEngine::new());
        let mut store = MvccStore::open(engine.clone()).expect("open");
        let requests = [
            Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 9 }),
            Request::Put(PutRequest {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
                lease: 9,
                ..Default::default()
            }),
            Request::Put(PutRequest {
                key: b"b".to_vec(),
                value: b"2".to_vec(),
                ..Default::default()
            }),
        ];
        for (index, request) in requests.iter().enumerate() {
            store
                .apply(index as u64 + 1, Some(request))
                .expect("storage")
                .expect("applied");
        }
        (engine, store)
    }

    #[test]
    fn an_installed_image_reproduces_the_state_exactly() {
        let (source, store) = store_with_history();
        let members: Vec<Member> = [2, 3]
            .into_iter()
            .map(|id| Member {
                id,
                ..Default::default()
            })
            .collect();
        let identity = crate::pb::k3rspb::ClusterIdentity {
            cluster_id: 1,
            member_id: 2,
            members: members.clone(),
        };
        crate::identity::store(source.as_ref(), &identity).expect("identity");
        let data = capture(source.as_ref()).expect("capture");
        assert_eq!(install_batch(&data, 3).expect("valid").members, members);

        let target = Arc::new(MemoryEngine::new());
        let mut stale = MvccStore::open(target.clone()).expect("open");
        stale
            .apply(
                1,
                Some(&Request::Put(PutRequest {
                    key: b"stale".to_vec(),
                    value: b"x".to_vec(),
                    ..Default::default()
                })),
            )
            .expect("storage")
            .expect("applied");
        target
            .write(install_batch(&data, 3).expect("valid").batch, true)
            .expect("write");
        let installed = MvccStore::open(target.clone()).expect("reopen");
        assert_eq!(installed.current_revision(), store.current_revision());
        assert_eq!(installed.consistent_index(), 3);
        assert_eq!(installed.leases(), store.leases());
        assert_eq!(
            installed.hash_kv(0).expect("hash"),
            store.hash_kv(0).expect("hash")
        );
    }

    #[test]
    fn damaged_or_mislabelled_data_is_refused() {
        let (source, _) = store_with_history();
        let mut data = capture(source.as_ref()).expect("capture");
        assert!(install_batch(&data, 2).is_err(), "index must match");
        data[3] ^= 0xff;
        let err = install_batch(&data, 3).expect_err("corrupt");
        assert!(err.to_string().contains("CRC-32C"), "{err}");
        assert!(install_batch(&[1, 2], 3).is_err());
    }
}
