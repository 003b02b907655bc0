//! `MemoryEngine`: an in-memory [`KvEngine`] that models durability, for tests and simulation.
//!
//! It keeps two layers of every table:
//! - *visible*: every batch written, what reads see;
//! - *durable*: only the batches made durable by `write(batch, true)` or [`KvEngine::sync`].
//!
//! An unsynced write is applied to the visible layer and queued; a sync replays the queued batches
//! onto the durable layer in write order (so a sync costs the size of the unsynced batches, not of
//! the data). [`MemoryEngine::crash`] simulates a power loss: the visible layer becomes the durable
//! one and the queue is dropped, so after a crash the engine holds exactly the synced prefix of
//! the batches written — the guarantee [`KvEngine`] promises, in its strictest form.
//!
//! Read views share the visible tables copy-on-write: taking a view is cheap, and the first write
//! after it copies only the tables that write changes (and only while the view is alive).
//! `compact_storage` does nothing; `size_bytes` is the sum of visible key and value lengths.
//!
//! The engine is `Sync`; hold it in an `Arc` outside a simulated host so that it outlives a
//! simulated restart.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;

use super::{BatchOp, KvEngine, ReadView, Table, WriteBatch};
use crate::error::StorageError;

type TableMap = BTreeMap<Vec<u8>, Vec<u8>>;

/// One layer: every table, plus the total bytes of its keys and values.
#[derive(Clone, Default)]
struct Layer {
    tables: [Arc<TableMap>; Table::ALL.len()],
    size_bytes: u64,
}

fn table_slot(table: Table) -> usize {
    match table {
        Table::Kv => 0,
        Table::Meta => 1,
        Table::RaftLog => 2,
        Table::Lease => 3,
    }
}

fn entry_bytes(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl Layer {
    fn table(&self, table: Table) -> &TableMap {
        &self.tables[table_slot(table)]
    }

    /// Applies one batch, in order. Copies a table only if a read view still shares it.
    fn apply(&mut self, batch: &WriteBatch) {
        for op in batch.ops() {
            match op {
                BatchOp::Put { table, key, value } => {
                    let map = Arc::make_mut(&mut self.tables[table_slot(*table)]);
                    self.size_bytes += entry_bytes(key, value);
                    if let Some(old) = map.insert(key.clone(), value.clone()) {
                        self.size_bytes -= entry_bytes(key, &old);
                    }
                }
                BatchOp::Delete { table, key } => {
                    if !self.table(*table).contains_key(key) {
                        continue;
                    }
                    let map = Arc::make_mut(&mut self.tables[table_slot(*table)]);
                    if let Some(old) = map.remove(key) {
                        self.size_bytes -= entry_bytes(key, &old);
                    }
                }
                BatchOp::DeleteRange { table, start, end } => {
                    if start >= end {
                        continue;
                    }
                    let doomed: Vec<Vec<u8>> = self
                        .table(*table)
                        .range::<[u8], _>((
                            Bound::Included(start.as_slice()),
                            Bound::Excluded(end.as_slice()),
                        ))
                        .map(|(key, _)| key.clone())
                        .collect();
                    if doomed.is_empty() {
                        continue;
                    }
                    let map = Arc::make_mut(&mut self.tables[table_slot(*table)]);
                    for key in doomed {
                        if let Some(old) = map.remove(&key) {
                            self.size_bytes -= entry_bytes(&key, &old);
                        }
                    }
                }
            }
        }
    }
}

struct State {
    visible: Layer,
    durable: Layer,
    /// Batches applied to `visible` but not yet to `durable`, oldest first.
    pending: Vec<WriteBatch>,
}

impl State {
    fn make_durable(&mut self) {
        for batch in self.pending.drain(..) {
            self.durable.apply(&batch);
        }
    }
}

/// An in-memory engine with a visible and a durable layer; see the module doc.
pub struct MemoryEngine {
    state: RwLock<State>,
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self {
            state: RwLock::new(State {
                visible: Layer::default(),
                durable: Layer::default(),
                pending: Vec::new(),
            }),
        }
    }

    /// Simulates a power loss: everything not yet synced is gone.
    pub fn crash(&self) {
        let mut state = self.state.write();
        state.pending.clear();
        state.visible = state.durable.clone();
    }

    /// Simulates replacing the disk: the engine is empty again, as a new one.
    pub fn wipe(&self) {
        let mut state = self.state.write();
        state.pending.clear();
        state.visible = Layer::default();
        state.durable = Layer::default();
    }

    /// How many written batches are not yet durable.
    pub fn unsynced_batches(&self) -> usize {
        self.state.read().pending.len()
    }
}

/// Scans `map` over `[start, end)` in key order until `visit` returns `false`.
fn scan_map(
    map: &TableMap,
    start: &[u8],
    end: Option<&[u8]>,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) {
    if let Some(end) = end {
        if start >= end {
            return;
        }
    }
    let upper = match end {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    for (key, value) in map.range::<[u8], _>((Bound::Included(start), upper)) {
        if !visit(key, value) {
            break;
        }
    }
}

impl ReadView for MemoryEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.state.read().visible.table(table).get(key).cloned())
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        // Hold only a shared handle on the table while visiting, so `visit` may itself write.
        let map = Arc::clone(&self.state.read().visible.tables[table_slot(table)]);
        scan_map(&map, start, end, visit);
        Ok(())
    }
}

impl KvEngine for MemoryEngine {
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let mut state = self.state.write();
        state.visible.apply(&batch);
        state.pending.push(batch);
        if sync {
            state.make_durable();
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.state.write().make_durable();
        Ok(())
    }

    fn read_view(&self) -> Result<Arc<dyn ReadView>, StorageError> {
        let tables = self.state.read().visible.tables.clone();
        Ok(Arc::new(MemoryView { tables }))
    }

    fn compact_storage(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.state.read().visible.size_bytes
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// A point-in-time view: shared, immutable handles on the visible tables when it was taken.
struct MemoryView {
    tables: [Arc<TableMap>; Table::ALL.len()],
}

impl ReadView for MemoryView {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tables[table_slot(table)].get(key).cloned())
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        scan_map(&self.tables[table_slot(table)], start, end, visit);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::contract;
    use super::*;

    fn put_batch(key: &str, value: &str) -> WriteBatch {
        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, key, value);
        batch
    }

    fn kv(engine: &MemoryEngine, key: &str) -> Option<Vec<u8>> {
        engine
            .get(Table::Kv, key.as_bytes())
            .expect("memory reads do not fail")
    }

    fn fresh() -> ((), MemoryEngine) {
        ((), MemoryEngine::new())
    }

    contract::engine_contract_tests!(fresh);

    #[test]
    fn crash_drops_unsynced_batches() {
        let engine = MemoryEngine::new();
        engine.write(put_batch("a", "1"), false).expect("write");
        assert_eq!(engine.unsynced_batches(), 1);
        engine.crash();
        assert_eq!(kv(&engine, "a"), None);
        assert_eq!(engine.unsynced_batches(), 0);
        assert_eq!(engine.size_bytes(), 0);
    }

    #[test]
    fn crash_keeps_synced_batches_and_drops_later_ones() {
        let engine = MemoryEngine::new();
        engine.write(put_batch("a", "1"), true).expect("write");
        engine.write(put_batch("a", "2"), false).expect("write");
        engine.write(put_batch("b", "3"), false).expect("write");
        engine.crash();
        assert_eq!(kv(&engine, "a"), Some(b"1".to_vec()));
        assert_eq!(kv(&engine, "b"), None);
    }

    #[test]
    fn synced_write_makes_earlier_unsynced_writes_durable() {
        let engine = MemoryEngine::new();
        engine.write(put_batch("a", "1"), false).expect("write");
        engine.write(put_batch("b", "2"), false).expect("write");
        engine.write(put_batch("c", "3"), true).expect("write");
        assert_eq!(engine.unsynced_batches(), 0);
        engine.crash();
        assert_eq!(kv(&engine, "a"), Some(b"1".to_vec()));
        assert_eq!(kv(&engine, "b"), Some(b"2".to_vec()));
        assert_eq!(kv(&engine, "c"), Some(b"3".to_vec()));
    }

    #[test]
    fn sync_makes_earlier_unsynced_writes_durable_in_order() {
        let engine = MemoryEngine::new();
        engine.write(put_batch("a", "1"), false).expect("write");
        let mut delete = WriteBatch::new();
        delete.delete(Table::Kv, "a");
        engine.write(delete, false).expect("write");
        engine.write(put_batch("b", "2"), false).expect("write");
        engine.sync().expect("sync");
        engine.write(put_batch("c", "3"), false).expect("write");
        engine.crash();
        assert_eq!(kv(&engine, "a"), None);
        assert_eq!(kv(&engine, "b"), Some(b"2".to_vec()));
        assert_eq!(kv(&engine, "c"), None);
    }

    #[test]
    fn size_bytes_counts_visible_keys_and_values() {
        let engine = MemoryEngine::new();
        engine.write(put_batch("ab", "123"), false).expect("write");
        engine.write(put_batch("c", "4"), false).expect("write");
        assert_eq!(engine.size_bytes(), 7);
        engine.write(put_batch("ab", "1"), false).expect("write");
        assert_eq!(engine.size_bytes(), 5);
        let mut delete = WriteBatch::new();
        delete.delete_range(Table::Kv, "a", "b");
        engine.write(delete, false).expect("write");
        assert_eq!(engine.size_bytes(), 2);
    }

    #[test]
    fn engine_survives_in_an_arc_across_a_simulated_restart() {
        let engine = Arc::new(MemoryEngine::new());
        let host_handle: Arc<dyn KvEngine> = engine.clone();
        host_handle.write(put_batch("a", "1"), true).expect("write");
        drop(host_handle);
        engine.crash();
        let reopened: Arc<dyn KvEngine> = engine;
        assert_eq!(
            reopened.get(Table::Kv, b"a").expect("get"),
            Some(b"1".to_vec())
        );
    }
}

/// The contract every [`KvEngine`] must meet, as generic checks, and macros that turn them into
/// one `#[test]` per behaviour for a given engine (used by every engine's test module).
#[cfg(test)]
pub(crate) mod contract {
    #[cfg(any(feature = "rocksdb", feature = "sled"))]
    use std::path::Path;

    use crate::engine::{KvEngine, ReadView, Table, WriteBatch};

    fn collect(
        view: &dyn ReadView,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut seen = Vec::new();
        view.scan(table, start, end, &mut |key, value| {
            seen.push((key.to_vec(), value.to_vec()));
            true
        })
        .expect("scan");
        seen
    }

    fn keys(view: &dyn ReadView, table: Table, start: &[u8], end: Option<&[u8]>) -> Vec<Vec<u8>> {
        collect(view, table, start, end)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    fn owned(keys: &[&[u8]]) -> Vec<Vec<u8>> {
        keys.iter().map(|key| key.to_vec()).collect()
    }

    fn get(view: &dyn ReadView, table: Table, key: &[u8]) -> Option<Vec<u8>> {
        view.get(table, key).expect("get")
    }

    pub(crate) fn batch_ops_apply_in_order(engine: &dyn KvEngine) {
        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, "a", "1");
        batch.put(Table::Kv, "a", "2");
        batch.put(Table::Kv, "b", "1");
        batch.delete(Table::Kv, "b");
        batch.delete(Table::Kv, "c");
        batch.delete(Table::Kv, "d");
        batch.put(Table::Kv, "d", "4");
        engine.write(batch, false).expect("write");
        assert_eq!(get(engine, Table::Kv, b"a"), Some(b"2".to_vec()));
        assert_eq!(get(engine, Table::Kv, b"b"), None);
        assert_eq!(get(engine, Table::Kv, b"c"), None);
        assert_eq!(get(engine, Table::Kv, b"d"), Some(b"4".to_vec()));
    }

    pub(crate) fn tables_are_independent(engine: &dyn KvEngine) {
        let mut batch = WriteBatch::new();
        for table in Table::ALL {
            batch.put(table, "same", table.name());
        }
        engine.write(batch, false).expect("write");
        let mut batch = WriteBatch::new();
        batch.delete(Table::Meta, "same");
        batch.delete_range(Table::RaftLog, "a", "z");
        engine.write(batch, false).expect("write");
        assert_eq!(get(engine, Table::Kv, b"same"), Some(b"kv".to_vec()));
        assert_eq!(get(engine, Table::Meta, b"same"), None);
        assert_eq!(get(engine, Table::RaftLog, b"same"), None);
        assert_eq!(keys(engine, Table::Kv, b"", None), owned(&[b"same"]));
    }

    pub(crate) fn read_view_sees_whole_batches_only(engine: &dyn KvEngine) {
        const BATCHES: u32 = 300;
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                for round in 1..=BATCHES {
                    let mut batch = WriteBatch::new();
                    batch.put(Table::Kv, "x", round.to_be_bytes());
                    batch.put(Table::Meta, "y", round.to_be_bytes());
                    engine.write(batch, false).expect("write");
                }
            });
            loop {
                let done = writer.is_finished();
                let view = engine.read_view().expect("view");
                let x = get(view.as_ref(), Table::Kv, b"x");
                let y = get(view.as_ref(), Table::Meta, b"y");
                assert_eq!(x, y, "a view saw half a batch");
                if done {
                    assert_eq!(x, Some(BATCHES.to_be_bytes().to_vec()));
                    break;
                }
            }
        });
    }

    pub(crate) fn delete_range_removes_exactly_the_half_open_range(engine: &dyn KvEngine) {
        let mut batch = WriteBatch::new();
        for key in ["a", "b", "b\0", "ba", "bz", "c", "d"] {
            batch.put(Table::Kv, key, "v");
        }
        engine.write(batch, false).expect("write");
        let mut batch = WriteBatch::new();
        batch.delete_range(Table::Kv, "b", "c");
        engine.write(batch, false).expect("write");
        assert_eq!(
            keys(engine, Table::Kv, b"", None),
            owned(&[b"a", b"c", b"d"])
        );
    }

    pub(crate) fn delete_range_acts_in_batch_order(engine: &dyn KvEngine) {
        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, "k1", "before");
        batch.put(Table::Kv, "k2", "before");
        batch.delete_range(Table::Kv, "k", "l");
        batch.put(Table::Kv, "k2", "after");
        engine.write(batch, false).expect("write");
        assert_eq!(
            collect(engine, Table::Kv, b"", None),
            vec![(b"k2".to_vec(), b"after".to_vec())]
        );
    }

    pub(crate) fn empty_or_inverted_delete_range_removes_nothing(engine: &dyn KvEngine) {
        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, "b", "v");
        engine.write(batch, false).expect("write");
        let mut batch = WriteBatch::new();
        batch.delete_range(Table::Kv, "b", "b");
        batch.delete_range(Table::Kv, "c", "a");
        engine.write(batch, false).expect("write");
        assert_eq!(keys(engine, Table::Kv, b"", None), owned(&[b"b"]));
    }

    pub(crate) fn scan_visits_keys_in_ascending_byte_order_within_bounds(engine: &dyn KvEngine) {
        let mut batch = WriteBatch::new();
        for key in [&b"c"[..], b"a", b"\xff", b"b", b"ab", b"", b"\x00"] {
            batch.put(Table::Kv, key, key);
        }
        engine.write(batch, false).expect("write");
        assert_eq!(
            keys(engine, Table::Kv, b"", None),
            owned(&[b"", b"\x00", b"a", b"ab", b"b", b"c", b"\xff"])
        );
        assert_eq!(
            keys(engine, Table::Kv, b"a", Some(b"c")),
            owned(&[b"a", b"ab", b"b"])
        );
        assert_eq!(
            keys(engine, Table::Kv, b"aa", Some(b"b\x00")),
            owned(&[b"ab", b"b"])
        );
        assert_eq!(keys(engine, Table::Kv, b"c", None), owned(&[b"c", b"\xff"]));
        assert!(keys(engine, Table::Kv, b"b", Some(b"b")).is_empty());
        assert!(keys(engine, Table::Kv, b"c", Some(b"a")).is_empty());
        let pairs = collect(engine, Table::Kv, b"ab", Some(b"b"));
        assert_eq!(pairs, vec![(b"ab".to_vec(), b"ab".to_vec())]);
    }

    pub(crate) fn scan_stops_when_the_visitor_returns_false(engine: &dyn KvEngine) {
        let mut batch = WriteBatch::new();
        for key in ["a", "b", "c", "d"] {
            batch.put(Table::Kv, key, "v");
        }
        engine.write(batch, false).expect("write");
        let mut seen = Vec::new();
        engine
            .scan(Table::Kv, b"", None, &mut |key, _| {
                seen.push(key.to_vec());
                seen.len() < 2
            })
            .expect("scan");
        assert_eq!(seen, owned(&[b"a", b"b"]));
    }

    pub(crate) fn read_view_is_unaffected_by_later_writes(engine: &dyn KvEngine) {
        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, "a", "old");
        batch.put(Table::Kv, "b", "old");
        batch.put(Table::Meta, "m", "old");
        engine.write(batch, false).expect("write");
        let view = engine.read_view().expect("view");

        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, "a", "new");
        batch.delete_range(Table::Kv, "b", "c");
        batch.put(Table::Kv, "c", "new");
        batch.delete(Table::Meta, "m");
        engine.write(batch, true).expect("write");

        assert_eq!(get(view.as_ref(), Table::Kv, b"a"), Some(b"old".to_vec()));
        assert_eq!(
            keys(view.as_ref(), Table::Kv, b"", None),
            owned(&[b"a", b"b"])
        );
        assert_eq!(get(view.as_ref(), Table::Meta, b"m"), Some(b"old".to_vec()));
        assert_eq!(keys(engine, Table::Kv, b"", None), owned(&[b"a", b"c"]));
        assert_eq!(get(engine, Table::Kv, b"a"), Some(b"new".to_vec()));
        assert_eq!(get(engine, Table::Meta, b"m"), None);
    }

    pub(crate) fn compact_storage_keeps_contents(engine: &dyn KvEngine) {
        let mut batch = WriteBatch::new();
        for index in 0u32..100 {
            batch.put(Table::Kv, index.to_be_bytes(), index.to_le_bytes());
        }
        batch.delete_range(Table::Kv, 10u32.to_be_bytes(), 90u32.to_be_bytes());
        engine.write(batch, false).expect("write");
        let before = collect(engine, Table::Kv, b"", None);
        engine.compact_storage().expect("compact");
        assert_eq!(before.len(), 20);
        assert_eq!(collect(engine, Table::Kv, b"", None), before);
    }

    /// Synced data, and unsynced data later covered by `sync`, survive closing and reopening.
    #[cfg(any(feature = "rocksdb", feature = "sled"))]
    pub(crate) fn reopen_keeps_synced_data<E: KvEngine>(dir: &Path, open: impl Fn(&Path) -> E) {
        let engine = open(dir);
        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, "synced", "1");
        batch.put(Table::RaftLog, "synced", "2");
        engine.write(batch, true).expect("write");
        let mut batch = WriteBatch::new();
        batch.put(Table::Meta, "later", "3");
        batch.put(Table::Kv, "doomed", "x");
        engine.write(batch, false).expect("write");
        let mut batch = WriteBatch::new();
        batch.delete_range(Table::Kv, "d", "e");
        engine.write(batch, false).expect("write");
        engine.sync().expect("sync");
        drop(engine);

        let engine = open(dir);
        assert_eq!(get(&engine, Table::Kv, b"synced"), Some(b"1".to_vec()));
        assert_eq!(get(&engine, Table::RaftLog, b"synced"), Some(b"2".to_vec()));
        assert_eq!(get(&engine, Table::Meta, b"later"), Some(b"3".to_vec()));
        assert_eq!(get(&engine, Table::Kv, b"doomed"), None);
    }

    /// One `#[test]` per contract behaviour. `$fresh` is a path to a `fn() -> (guard, engine)`;
    /// the guard (e.g. a temporary directory) lives as long as the engine.
    macro_rules! engine_contract_tests {
        ($fresh:path) => {
            $crate::engine::memory::contract::engine_contract_tests!(@tests $fresh;
                batch_ops_apply_in_order,
                tables_are_independent,
                read_view_sees_whole_batches_only,
                delete_range_removes_exactly_the_half_open_range,
                delete_range_acts_in_batch_order,
                empty_or_inverted_delete_range_removes_nothing,
                scan_visits_keys_in_ascending_byte_order_within_bounds,
                scan_stops_when_the_visitor_returns_false,
                read_view_is_unaffected_by_later_writes,
                compact_storage_keeps_contents,
            );
        };
        (@tests $fresh:path; $($check:ident),* $(,)?) => {
            $(
                #[test]
                fn $check() {
                    let (_guard, engine) = $fresh();
                    $crate::engine::memory::contract::$check(&engine);
                }
            )*
        };
    }
    pub(crate) use engine_contract_tests;

    /// The contract for engines that persist to a directory; `$open` maps `&Path` to a
    /// `Result<engine, StorageError>`.
    #[cfg(any(feature = "rocksdb", feature = "sled"))]
    macro_rules! durable_engine_contract_tests {
        ($open:expr) => {
            #[test]
            fn reopen_keeps_synced_data() {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                let open = $open;
                $crate::engine::memory::contract::reopen_keeps_synced_data(dir.path(), |path| {
                    open(path).expect("open the engine")
                });
            }
        };
    }
    #[cfg(any(feature = "rocksdb", feature = "sled"))]
    pub(crate) use durable_engine_contract_tests;
}
