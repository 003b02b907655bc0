//! `SledEngine`: a pure-Rust [`KvEngine`] on sled 0.34, for builds without RocksDB.
//!
//! Layout: all tables share ONE sled tree (`k3rs`); a key is stored as a one-byte table prefix
//! followed by the table's key. That makes a [`WriteBatch`] a single `Tree::apply_batch`, which
//! sled applies atomically, across tables. A `DeleteRange` is expanded at write time into removes
//! of the keys then in the range (including keys put earlier in the same batch); writes are
//! serialized so the expansion cannot miss a concurrent insert.
//!
//! Durability: `write(batch, true)` and [`KvEngine::sync`] call sled's `flush`, which makes every
//! earlier write durable; sled's log keeps writes in order, so a crash keeps a prefix.
//!
//! sled 0.34 has no snapshots: [`KvEngine::read_view`] materializes a full copy of every table
//! (taken while writes are held off, so it is consistent). It costs time and memory proportional
//! to the data; fine for the small databases this engine is meant for. `compact_storage` does
//! nothing beyond a flush (sled reclaims space on its own); `size_bytes` is sled's size on disk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{BatchOp, KvEngine, ReadView, Table, WriteBatch};
use crate::error::StorageError;

const TREE_NAME: &str = "k3rs";

/// The one-byte prefix of `table`'s keys in the shared tree.
fn table_prefix(table: Table) -> u8 {
    match table {
        Table::Kv => b'k',
        Table::Meta => b'm',
        Table::RaftLog => b'r',
        Table::Lease => b'l',
    }
}

fn prefixed(table: Table, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(key.len() + 1);
    full.push(table_prefix(table));
    full.extend_from_slice(key);
    full
}

/// The shared-tree range holding `table`'s keys in `[start, end)` (`end = None`: the table's end).
fn prefixed_range(table: Table, start: &[u8], end: Option<&[u8]>) -> (Vec<u8>, Bound<Vec<u8>>) {
    let upper = match end {
        Some(end) => Bound::Excluded(prefixed(table, end)),
        // Prefixes are ASCII letters, so `prefix + 1` never overflows.
        None => Bound::Excluded(vec![table_prefix(table) + 1]),
    };
    (prefixed(table, start), upper)
}

/// A sled database with every table in one tree; see the module doc.
pub struct SledEngine {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
    /// Held by writers and by `read_view`, so range expansion and copies see no concurrent write.
    write_lock: Mutex<()>,
}

impl SledEngine {
    /// Opens (creating if absent) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let opening = || format!("opening sled at {}", dir.display());
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|err| StorageError::io(opening(), err))?;
        let tree = db
            .open_tree(TREE_NAME)
            .map_err(|err| StorageError::io(opening(), err))?;
        Ok(Self {
            db,
            tree,
            path: dir.to_path_buf(),
            write_lock: Mutex::new(()),
        })
    }

    fn failed(&self, doing: &str, err: sled::Error) -> StorageError {
        StorageError::io(format!("sled at {}: {doing}", self.path.display()), err)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db
            .flush()
            .map(drop)
            .map_err(|err| self.failed("flushing", err))
    }

    /// Turns `batch` into its final per-key effect on the shared tree (`None`: removed).
    fn resolve(
        &self,
        batch: WriteBatch,
    ) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>, StorageError> {
        let mut effects = BTreeMap::new();
        for op in batch.into_ops() {
            match op {
                BatchOp::Put { table, key, value } => {
                    effects.insert(prefixed(table, &key), Some(value));
                }
                BatchOp::Delete { table, key } => {
                    effects.insert(prefixed(table, &key), None);
                }
                BatchOp::DeleteRange { table, start, end } => {
                    if start >= end {
                        continue;
                    }
                    let (low, high) = prefixed_range(table, &start, Some(&end));
                    let range = (Bound::Included(low), high);
                    for item in self.tree.range(range.clone()) {
                        let (key, _) = item.map_err(|err| self.failed("scanning a range", err))?;
                        effects.insert(key.to_vec(), None);
                    }
                    for (_, effect) in effects.range_mut(range) {
                        *effect = None;
                    }
                }
            }
        }
        Ok(effects)
    }
}

impl ReadView for SledEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let value = self
            .tree
            .get(prefixed(table, key))
            .map_err(|err| self.failed("reading", err))?;
        Ok(value.map(|value| value.to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        if end.is_some_and(|end| start >= end) {
            return Ok(());
        }
        let (low, high) = prefixed_range(table, start, end);
        for item in self.tree.range((Bound::Included(low), high)) {
            let (key, value) = item.map_err(|err| self.failed("scanning", err))?;
            if !visit(&key[1..], &value) {
                break;
            }
        }
        Ok(())
    }
}

impl KvEngine for SledEngine {
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        {
            let _writing = self.write_lock.lock();
            let mut sled_batch = sled::Batch::default();
            for (key, effect) in self.resolve(batch)? {
                match effect {
                    Some(value) => sled_batch.insert(key, value),
                    None => sled_batch.remove(key),
                }
            }
            self.tree
                .apply_batch(sled_batch)
                .map_err(|err| self.failed("writing a batch", err))?;
        }
        if sync {
            self.flush()?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.flush()
    }

    fn read_view(&self) -> Result<Arc<dyn ReadView>, StorageError> {
        let _writing = self.write_lock.lock();
        let mut tables: [BTreeMap<Vec<u8>, Vec<u8>>; Table::ALL.len()] = Default::default();
        for (slot, table) in Table::ALL.into_iter().enumerate() {
            self.scan(table, b"", None, &mut |key, value| {
                tables[slot].insert(key.to_vec(), value.to_vec());
                true
            })?;
        }
        Ok(Arc::new(CopiedView { tables }))
    }

    fn compact_storage(&self) -> Result<(), StorageError> {
        self.flush()
    }

    fn size_bytes(&self) -> u64 {
        // An estimate; a failure to measure reads as zero rather than failing the caller.
        self.db.size_on_disk().unwrap_or(0)
    }

    fn kind(&self) -> &'static str {
        "sled"
    }
}

/// A materialized copy of every table, indexed in [`Table::ALL`] order.
struct CopiedView {
    tables: [BTreeMap<Vec<u8>, Vec<u8>>; Table::ALL.len()],
}

impl CopiedView {
    fn table(&self, table: Table) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        let slot = Table::ALL.iter().position(|candidate| *candidate == table);
        &self.tables[slot.expect("Table::ALL lists every table")]
    }
}

impl ReadView for CopiedView {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.table(table).get(key).cloned())
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        if end.is_some_and(|end| start >= end) {
            return Ok(());
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        for (key, value) in self
            .table(table)
            .range::<[u8], _>((Bound::Included(start), upper))
        {
            if !visit(key, value) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::contract;

    fn fresh() -> (tempfile::TempDir, SledEngine) {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let engine = SledEngine::open(dir.path()).expect("open sled in a fresh directory");
        (dir, engine)
    }

    contract::engine_contract_tests!(fresh);
    contract::durable_engine_contract_tests!(|dir: &Path| SledEngine::open(dir));

    #[test]
    fn tables_do_not_see_each_others_keys_in_unbounded_scans() {
        let (_dir, engine) = fresh();
        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, [0xff_u8], "kv");
        batch.put(Table::Meta, [0x00_u8], "meta");
        engine.write(batch, false).expect("write");
        let mut seen = Vec::new();
        engine
            .scan(Table::Kv, b"", None, &mut |key, _| {
                seen.push(key.to_vec());
                true
            })
            .expect("scan");
        assert_eq!(seen, vec![vec![0xff_u8]]);
    }
}
