//! `LeaseTable`: the leases that exist and the keys attached to each, as applied by raft.
//!
//! Guarantees:
//! - a key is attached to at most one lease: the lease named by its latest version;
//! - the table changes only through [`LeaseTable::grant`], [`LeaseTable::revoke`] and
//!   [`LeaseTable::move_key`], which the MVCC store calls while applying an entry, so the table
//!   always matches the kv rows of the same revision;
//! - [`LeaseTable::load`] rebuilds it from the `lease` table and the keys' latest versions.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message as _;

use crate::engine::{ReadView, Table, WriteBatch};
use crate::error::StorageError;
use crate::pb::k3rspb::LeaseRecord;

/// The largest TTL a lease may be granted, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// One granted lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseEntry {
    /// Granted TTL in seconds (already raised to the cluster's minimum).
    pub ttl: i64,
    /// Keys whose latest version names this lease.
    pub keys: BTreeSet<Vec<u8>>,
}

/// Every lease of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTable {
    leases: BTreeMap<i64, LeaseEntry>,
}

fn record_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

impl LeaseTable {
    /// Reads every lease record; `attachments` are (key, lease id) of live keys whose latest
    /// version has a lease. A key naming a lease that has no record is reported and left
    /// unattached, as etcd does (it cannot expire, but it is not lost).
    pub fn load(
        view: &dyn ReadView,
        attachments: impl IntoIterator<Item = (Vec<u8>, i64)>,
    ) -> Result<Self, StorageError> {
        let mut leases = BTreeMap::new();
        view.try_scan(Table::Lease, &[], None, &mut |key, value| {
            let record = LeaseRecord::decode(value).map_err(|err| {
                StorageError::io(format!("decoding lease record {key:02x?}"), err)
            })?;
            if key != record_key(record.id) {
                return Err(StorageError::corrupt(format!(
                    "lease record under key {key:02x?} is for lease {:x}",
                    record.id
                )));
            }
            leases.insert(
                record.id,
                LeaseEntry {
                    ttl: record.ttl,
                    keys: BTreeSet::new(),
                },
            );
            Ok(true)
        })?;
        let mut table = Self { leases };
        for (key, id) in attachments {
            match table.leases.get_mut(&id) {
                Some(entry) => {
                    entry.keys.insert(key);
                }
                None => tracing::warn!(
                    key = %String::from_utf8_lossy(&key),
                    lease = %format!("{id:x}"),
                    "a key names a lease that does not exist; it stays without a lease"
                ),
            }
        }
        Ok(table)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn get(&self, id: i64) -> Option<&LeaseEntry> {
        self.leases.get(&id)
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Every lease ID with its granted TTL, in ID order.
    pub fn ttls(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.leases.iter().map(|(id, entry)| (*id, entry.ttl))
    }

    /// Adds lease `id` (which must not exist) and its record to `batch`.
    pub fn grant(&mut self, id: i64, ttl: i64, batch: &mut WriteBatch) {
        let record = LeaseRecord { id, ttl };
        batch.put(Table::Lease, record_key(id), record.encode_to_vec());
        self.leases.insert(
            id,
            LeaseEntry {
                ttl,
                keys: BTreeSet::new(),
            },
        );
    }

    /// Removes lease `id`, returning its keys, and adds the record's deletion to `batch`.
    pub fn revoke(&mut self, id: i64, batch: &mut WriteBatch) -> Option<BTreeSet<Vec<u8>>> {
        let entry = self.leases.remove(&id)?;
        batch.delete(Table::Lease, record_key(id));
        Some(entry.keys)
    }

    /// Records that `key` went from lease `from` to lease `to` (0: none) by one change.
    pub fn move_key(&mut self, key: &[u8], from: i64, to: i64) {
        if from == to {
            return;
        }
        if let Some(entry) = self.leases.get_mut(&from) {
            entry.keys.remove(key);
        }
        if let Some(entry) = self.leases.get_mut(&to) {
            entry.keys.insert(key.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::MemoryEngine;
    use crate::engine::KvEngine;

    fn granted(table: &mut LeaseTable, engine: &MemoryEngine, id: i64, ttl: i64) {
        let mut batch = WriteBatch::new();
        table.grant(id, ttl, &mut batch);
        engine.write(batch, false).expect("write");
    }

    #[test]
    fn a_key_follows_its_latest_lease() {
        let engine = MemoryEngine::new();
        let mut table = LeaseTable::default();
        granted(&mut table, &engine, 1, 10);
        granted(&mut table, &engine, 2, 20);
        table.move_key(b"k", 0, 1);
        table.move_key(b"k", 1, 2);
        assert!(table.get(1).expect("lease 1").keys.is_empty());
        assert!(table
            .get(2)
            .expect("lease 2")
            .keys
            .contains(b"k".as_slice()));
        table.move_key(b"k", 2, 0);
        assert!(table.get(2).expect("lease 2").keys.is_empty());
    }

    #[test]
    fn load_restores_leases_and_attachments() {
        let engine = MemoryEngine::new();
        let mut table = LeaseTable::default();
        granted(&mut table, &engine, 7, 60);
        granted(&mut table, &engine, 8, 5);
        let mut batch = WriteBatch::new();
        let keys = table.revoke(8, &mut batch).expect("lease 8 exists");
        assert!(keys.is_empty());
        engine.write(batch, false).expect("write");

        let loaded =
            LeaseTable::load(&engine, [(b"a".to_vec(), 7), (b"b".to_vec(), 8)]).expect("load");
        assert_eq!(loaded.ttls().collect::<Vec<_>>(), vec![(7, 60)]);
        let keys: Vec<_> = loaded
            .get(7)
            .expect("lease 7")
            .keys
            .iter()
            .cloned()
            .collect();
        assert_eq!(keys, vec![b"a".to_vec()]);
    }

    #[test]
    fn load_refuses_an_undecodable_record() {
        let engine = MemoryEngine::new();
        let mut batch = WriteBatch::new();
        batch.put(Table::Lease, 5i64.to_be_bytes(), vec![0xff, 0xff, 0xff]);
        engine.write(batch, false).expect("write");
        let err = LeaseTable::load(&engine, []).expect_err("garbage record");
        assert!(err.to_string().contains("lease record"), "{err}");
    }
}
