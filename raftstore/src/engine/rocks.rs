//! `RocksEngine`: the production [`KvEngine`], on RocksDB.
//!
//! Layout: one column family per [`Table`], named [`Table::name`]; a [`WriteBatch`] becomes one
//! RocksDB write batch, so it is atomic across tables, and `DeleteRange` becomes a range
//! tombstone (`delete_range_cf`).
//!
//! Durability: every write goes through the WAL (it is never disabled). `write(batch, true)`
//! fsyncs the WAL before returning; `write(batch, false)` leaves the fsync to a later synced write
//! or [`KvEngine::sync`] (`FlushWAL(sync = true)`). WAL recovery is point-in-time, so after a
//! power loss the database holds a prefix of the written batches, every synced one included.
//! Paranoid checks are on: a damaged data directory fails [`RocksEngine::open`] with an error
//! naming the path and RocksDB's message (e.g. `opening RocksDB at /x/member/db: Corruption: ...`).
//!
//! Reads through the engine see the latest writes; [`KvEngine::read_view`] is a RocksDB snapshot
//! owned by the view together with an `Arc` of the database, so a view may outlive the engine
//! handle. `compact_storage` compacts every column family fully; `size_bytes` sums, over the
//! column families, the live SST file size and the size of all memtables.
//!
//! Tuning, chosen for small machines (2 cores, a few GiB of RAM): no compression (no compression
//! libraries are linked); 16 MiB write buffers, at most 3 per column family, and at most 64 MiB of
//! memtables across all column families (`db_write_buffer_size`); 2 background jobs; the WAL is
//! capped at 128 MiB (beyond it the column families holding the oldest data are flushed); at most
//! 5 info-log files of 16 MiB kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    properties, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode, Options,
    ReadOptions, Snapshot, WriteOptions, DB,
};
use self_cell::self_cell;

use super::{BatchOp, KvEngine, ReadView, Table, WriteBatch};
use crate::error::StorageError;

const WRITE_BUFFER_BYTES: usize = 16 << 20;
const MAX_WRITE_BUFFERS_PER_TABLE: i32 = 3;
const ALL_MEMTABLES_MAX_BYTES: usize = 64 << 20;
const MAX_BACKGROUND_JOBS: i32 = 2;
const MAX_TOTAL_WAL_BYTES: u64 = 128 << 20;
const MAX_INFO_LOG_FILE_BYTES: usize = 16 << 20;
const KEPT_INFO_LOG_FILES: usize = 5;

/// A RocksDB database with one column family per [`Table`]; see the module doc.
pub struct RocksEngine {
    db: Arc<DB>,
    path: PathBuf,
    synced: WriteOptions,
    unsynced: WriteOptions,
}

fn table_options() -> Options {
    let mut options = Options::default();
    options.set_compression_type(DBCompressionType::None);
    options.set_write_buffer_size(WRITE_BUFFER_BYTES);
    options.set_max_write_buffer_number(MAX_WRITE_BUFFERS_PER_TABLE);
    options
}

fn db_options() -> Options {
    let mut options = table_options();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_paranoid_checks(true);
    options.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    options.set_db_write_buffer_size(ALL_MEMTABLES_MAX_BYTES);
    options.set_max_background_jobs(MAX_BACKGROUND_JOBS);
    options.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    options.set_max_log_file_size(MAX_INFO_LOG_FILE_BYTES);
    options.set_keep_log_file_num(KEPT_INFO_LOG_FILES);
    options
}

/// The column family holding `table`; every one is opened with the database.
fn column_family(db: &DB, table: Table) -> Result<&ColumnFamily, StorageError> {
    db.cf_handle(table.name()).ok_or_else(|| {
        StorageError::corrupt(format!(
            "RocksDB column family {:?} is not open",
            table.name()
        ))
    })
}

impl RocksEngine {
    /// Opens (creating if absent) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|err| {
            StorageError::io(format!("creating RocksDB directory {}", dir.display()), err)
        })?;
        let descriptors = Table::ALL
            .iter()
            .map(|table| ColumnFamilyDescriptor::new(table.name(), table_options()));
        let db = DB::open_cf_descriptors(&db_options(), dir, descriptors).map_err(|err| {
            StorageError::io(format!("opening RocksDB at {}", dir.display()), err)
        })?;
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        let mut unsynced = WriteOptions::default();
        unsynced.set_sync(false);
        Ok(Self {
            db: Arc::new(db),
            path: dir.to_path_buf(),
            synced,
            unsynced,
        })
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn failed(&self, doing: &str, err: rocksdb::Error) -> StorageError {
        StorageError::io(format!("RocksDB at {}: {doing}", self.path.display()), err)
    }
}

/// Visits `[start, end)` of one column family through `iter`, which is already bounded above.
fn visit_range<D: rocksdb::DBAccess>(
    mut iter: rocksdb::DBRawIteratorWithThreadMode<'_, D>,
    start: &[u8],
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), rocksdb::Error> {
    iter.seek(start);
    while iter.valid() {
        let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
            break;
        };
        if !visit(key, value) {
            return Ok(());
        }
        iter.next();
    }
    iter.status()
}

/// Read options bounding an iterator to `[start, end)`; `None` when the range is empty.
fn range_read_options(start: &[u8], end: Option<&[u8]>) -> Option<ReadOptions> {
    let mut options = ReadOptions::default();
    if let Some(end) = end {
        if start >= end {
            return None;
        }
        options.set_iterate_upper_bound(end.to_vec());
    }
    Some(options)
}

impl ReadView for RocksEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let cf = column_family(&self.db, table)?;
        self.db
            .get_cf(cf, key)
            .map_err(|err| self.failed("reading", err))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let cf = column_family(&self.db, table)?;
        let Some(options) = range_read_options(start, end) else {
            return Ok(());
        };
        visit_range(self.db.raw_iterator_cf_opt(cf, options), start, visit)
            .map_err(|err| self.failed("scanning", err))
    }
}

impl KvEngine for RocksEngine {
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let mut rocks_batch = rocksdb::WriteBatch::default();
        for op in batch.into_ops() {
            match op {
                BatchOp::Put { table, key, value } => {
                    rocks_batch.put_cf(column_family(&self.db, table)?, key, value)
                }
                BatchOp::Delete { table, key } => {
                    rocks_batch.delete_cf(column_family(&self.db, table)?, key)
                }
                BatchOp::DeleteRange { table, start, end } => {
                    // RocksDB rejects a range tombstone whose start is after its end.
                    if start < end {
                        rocks_batch.delete_range_cf(column_family(&self.db, table)?, start, end)
                    }
                }
            }
        }
        let options = if sync { &self.synced } else { &self.unsynced };
        self.db
            .write_opt(rocks_batch, options)
            .map_err(|err| self.failed("writing a batch", err))
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.db
            .flush_wal(true)
            .map_err(|err| self.failed("syncing the WAL", err))
    }

    fn read_view(&self) -> Result<Arc<dyn ReadView>, StorageError> {
        let snapshot = OwnedSnapshot::new(Arc::clone(&self.db), |db| db.snapshot());
        Ok(Arc::new(RocksView {
            snapshot,
            path: self.path.clone(),
        }))
    }

    fn compact_storage(&self) -> Result<(), StorageError> {
        for table in Table::ALL {
            let cf = column_family(&self.db, table)?;
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        let mut total = 0u64;
        for table in Table::ALL {
            let Ok(cf) = column_family(&self.db, table) else {
                continue;
            };
            for property in [
                properties::LIVE_SST_FILES_SIZE,
                properties::CUR_SIZE_ALL_MEM_TABLES,
            ] {
                // A property RocksDB cannot report counts as zero: the size is an estimate.
                let bytes = self.db.property_int_value_cf(cf, property).ok().flatten();
                total = total.saturating_add(bytes.unwrap_or(0));
            }
        }
        total
    }

    fn kind(&self) -> &'static str {
        "rocksdb"
    }
}

self_cell!(
    /// A RocksDB snapshot together with the database it reads; dropping it releases the snapshot
    /// first, then the `Arc`.
    struct OwnedSnapshot {
        owner: Arc<DB>,
        #[covariant]
        dependent: Snapshot,
    }
);

/// A point-in-time view of every table: a RocksDB snapshot.
struct RocksView {
    snapshot: OwnedSnapshot,
    path: PathBuf,
}

impl RocksView {
    fn failed(&self, doing: &str, err: rocksdb::Error) -> StorageError {
        StorageError::io(
            format!("RocksDB snapshot at {}: {doing}", self.path.display()),
            err,
        )
    }
}

impl ReadView for RocksView {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let cf = column_family(self.snapshot.borrow_owner(), table)?;
        self.snapshot
            .borrow_dependent()
            .get_cf(cf, key)
            .map_err(|err| self.failed("reading", err))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let cf = column_family(self.snapshot.borrow_owner(), table)?;
        let Some(options) = range_read_options(start, end) else {
            return Ok(());
        };
        let iter = self
            .snapshot
            .borrow_dependent()
            .raw_iterator_cf_opt(cf, options);
        visit_range(iter, start, visit).map_err(|err| self.failed("scanning", err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::contract;

    fn fresh() -> (tempfile::TempDir, RocksEngine) {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let engine = RocksEngine::open(dir.path()).expect("open RocksDB in a fresh directory");
        (dir, engine)
    }

    contract::engine_contract_tests!(fresh);
    contract::durable_engine_contract_tests!(|dir: &Path| RocksEngine::open(dir));

    #[test]
    fn open_creates_one_column_family_per_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(RocksEngine::open(dir.path()).expect("open"));
        let families = DB::list_cf(&Options::default(), dir.path()).expect("list column families");
        for table in Table::ALL {
            assert!(
                families.iter().any(|name| name == table.name()),
                "{families:?}"
            );
        }
    }

    #[test]
    fn open_of_a_damaged_directory_names_the_path_and_the_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = RocksEngine::open(dir.path()).expect("open");
        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, "a", "1");
        engine.write(batch, true).expect("write");
        drop(engine);
        let current = std::fs::read_to_string(dir.path().join("CURRENT")).expect("read CURRENT");
        let manifest = dir.path().join(current.trim());
        std::fs::write(&manifest, b"this is not a RocksDB manifest").expect("damage the manifest");

        let err = match RocksEngine::open(dir.path()) {
            Ok(_) => panic!("opening a damaged database must fail"),
            Err(err) => err.to_string(),
        };
        let expected = format!("opening RocksDB at {}: Corruption: ", dir.path().display());
        assert!(err.starts_with(&expected), "{err}");
    }

    #[test]
    fn size_bytes_grows_with_data_and_shrinks_after_deleting_and_compacting() {
        let (_dir, engine) = fresh();
        let value = vec![7u8; 1024];
        let mut batch = WriteBatch::new();
        for index in 0..2048u32 {
            batch.put(Table::Kv, index.to_be_bytes(), value.clone());
        }
        engine.write(batch, false).expect("write");
        engine.compact_storage().expect("compact");
        let full = engine.size_bytes();
        assert!(full >= 2048 * 1024, "2 MiB written, size_bytes {full}");

        let mut batch = WriteBatch::new();
        batch.delete_range(Table::Kv, 0u32.to_be_bytes(), 2048u32.to_be_bytes());
        engine.write(batch, false).expect("write");
        engine.compact_storage().expect("compact");
        let emptied = engine.size_bytes();
        assert!(
            emptied < full / 4,
            "before {full}, after deleting and compacting {emptied}"
        );
    }

    #[test]
    fn read_view_outlives_the_engine() {
        let (_dir, engine) = fresh();
        let mut batch = WriteBatch::new();
        batch.put(Table::Meta, "k", "v");
        engine.write(batch, false).expect("write");
        let view = engine.read_view().expect("view");
        drop(engine);
        assert_eq!(
            view.get(Table::Meta, b"k").expect("get"),
            Some(b"v".to_vec())
        );
    }
}
