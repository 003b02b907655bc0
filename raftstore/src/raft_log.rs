//! `RaftLogStore`: raft-rs's log, hard state and conf state, kept in [`Table::RaftLog`].
//!
//! On-engine layout (values are rust-protobuf encodings of raft-rs's `eraftpb` messages):
//! - `b'e'` + 8-byte big-endian index → `Entry`;
//! - `b"hard_state"` → `HardState`;
//! - `b"conf_state"` → `ConfState` (the latest applied configuration);
//! - `b"snapshot_meta"` → `SnapshotMetadata`: index and term of the last compacted entry, with the
//!   conf state current when it was compacted.
//!
//! Guarantees:
//! - [`RaftLogStore::open`] validates what it finds (entries contiguous from the first to the last
//!   index, each decoding to the index of its key, terms non-decreasing, the commit index within
//!   the log) and refuses a damaged log with an error naming the problem and the index;
//! - every mutation is ONE engine write; memory (first/last index, hard and conf state, the
//!   entry cache) is updated only after that write succeeded, so a failed write changes nothing;
//! - the newest entries (at most [`CACHED_ENTRIES_MAX`], [`CACHED_BYTES_MAX`] bytes) are cached,
//!   so raft's reads of recent entries do not touch the engine.
//!
//! Mutations hold the state lock across their engine write, so a reader never mixes engine
//! contents and in-memory indexes from different moments. [`raft::Storage::snapshot`] captures
//! the state machine at its applied index ([`crate::state_image`]); only the driver calls into
//! raft, so nothing is applied while it is captured. [`RaftLogStore::apply_snapshot`] installs a
//! received one together with the log's new start in one synced write.
//! A new log has first index 1 and last index 0.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState};

use crate::engine::{KvEngine, ReadView, Table, WriteBatch};
use crate::error::StorageError;

/// The most entries the cache keeps.
pub const CACHED_ENTRIES_MAX: usize = 4096;
/// The most encoded entry bytes the cache keeps.
pub const CACHED_BYTES_MAX: u64 = 32 << 20;

const ENTRY_KEY_PREFIX: u8 = b'e';
/// Every entry key sorts before this (it is the entry prefix plus one).
const ENTRY_KEYS_END: &[u8] = b"f";
const HARD_STATE_KEY: &[u8] = b"hard_state";
const CONF_STATE_KEY: &[u8] = b"conf_state";
const SNAPSHOT_META_KEY: &[u8] = b"snapshot_meta";

fn entry_key(index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = ENTRY_KEY_PREFIX;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

fn entry_index_of_key(key: &[u8]) -> Result<u64, StorageError> {
    match key {
        [ENTRY_KEY_PREFIX, index @ ..] if index.len() == 8 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(index);
            Ok(u64::from_be_bytes(bytes))
        }
        _ => Err(StorageError::corrupt(format!(
            "raft log: malformed entry key {key:02x?}"
        ))),
    }
}

fn encode<M: protobuf::Message>(message: &M, what: &str) -> Result<Vec<u8>, StorageError> {
    message
        .write_to_bytes()
        .map_err(|err| StorageError::io(format!("raft log: encoding {what}"), err))
}

fn decode_entry(index: u64, value: &[u8]) -> Result<Entry, StorageError> {
    let entry = Entry::parse_from_bytes(value)
        .map_err(|err| StorageError::io(format!("raft log: entry {index} does not decode"), err))?;
    if entry.index != index {
        return Err(StorageError::corrupt(format!(
            "raft log: the entry stored as entry {index} says it is entry {}",
            entry.index
        )));
    }
    Ok(entry)
}

fn read_record<M: protobuf::Message>(
    engine: &dyn ReadView,
    key: &[u8],
    what: &str,
) -> Result<Option<M>, StorageError> {
    let Some(bytes) = engine.get(Table::RaftLog, key)? else {
        return Ok(None);
    };
    let record = M::parse_from_bytes(&bytes).map_err(|err| {
        StorageError::io(format!("raft log: the stored {what} does not decode"), err)
    })?;
    Ok(Some(record))
}

/// The term of entry `index` as `view` holds it: the entry's own, or the compacted prefix's
/// when `index` is its last entry (index 0: term 0). `None` when the view holds neither.
pub fn term_in_view(view: &dyn ReadView, index: u64) -> Result<Option<u64>, StorageError> {
    if let Some(bytes) = view.get(Table::RaftLog, &entry_key(index))? {
        return Ok(Some(decode_entry(index, &bytes)?.term));
    }
    let meta: Option<SnapshotMetadata> = read_record(view, SNAPSHOT_META_KEY, "snapshot metadata")?;
    Ok(match meta {
        Some(meta) if meta.index == index => Some(meta.term),
        None if index == 0 => Some(0),
        _ => None,
    })
}

fn entry_bytes(entry: &Entry) -> u64 {
    u64::from(entry.compute_size())
}

/// The newest entries, contiguous and ending at the log's last index (or empty).
#[derive(Default)]
struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: u64,
}

impl EntryCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|entry| entry.index)
    }

    fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.first_index()?;
        let offset = usize::try_from(index.checked_sub(first)?).ok()?;
        self.entries.get(offset)
    }

    /// Appends `entry`, which must follow the cached ones, then evicts the oldest beyond the bounds.
    fn push(&mut self, entry: Entry) {
        self.bytes += entry_bytes(&entry);
        self.entries.push_back(entry);
        while self.entries.len() > CACHED_ENTRIES_MAX || self.bytes > CACHED_BYTES_MAX {
            let Some(evicted) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= entry_bytes(&evicted);
        }
    }

    /// Drops every entry at or after `index`.
    fn truncate_from(&mut self, index: u64) {
        while self
            .entries
            .back()
            .is_some_and(|entry| entry.index >= index)
        {
            if let Some(dropped) = self.entries.pop_back() {
                self.bytes -= entry_bytes(&dropped);
            }
        }
    }

    /// Drops every entry before `index`.
    fn drop_below(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|entry| entry.index < index)
        {
            if let Some(dropped) = self.entries.pop_front() {
                self.bytes -= entry_bytes(&dropped);
            }
        }
    }
}

struct LogState {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last compacted entry (0, 0 when nothing was compacted).
    snapshot_index: u64,
    snapshot_term: u64,
    last_index: u64,
    is_new: bool,
    cache: EntryCache,
}

impl LogState {
    fn first_index(&self) -> u64 {
        self.snapshot_index + 1
    }
}

struct Inner {
    engine: Arc<dyn KvEngine>,
    state: RwLock<LogState>,
}

/// raft-rs's log storage, kept in an engine; cheap to clone (all clones share one log).
#[derive(Clone)]
pub struct RaftLogStore {
    inner: Arc<Inner>,
}

/// What [`RaftLogStore::open`] learns by scanning the entries.
struct ScannedEntries {
    last_index: u64,
    cache: EntryCache,
}

/// Scans and validates every stored entry, given the compacted prefix's index and term.
fn scan_entries(
    engine: &dyn KvEngine,
    snapshot_index: u64,
    snapshot_term: u64,
) -> Result<ScannedEntries, StorageError> {
    let mut next_index = snapshot_index + 1;
    let mut previous_term = snapshot_term;
    let mut cache = EntryCache::default();
    let mut failure = None;
    let mut check = |key: &[u8], value: &[u8]| -> Result<(), StorageError> {
        let index = entry_index_of_key(key)?;
        if index < next_index {
            return Err(StorageError::corrupt(format!(
                "raft log: entry {index} is still present although entries up to {snapshot_index} \
                 were compacted: the log is damaged"
            )));
        }
        if index > next_index {
            return Err(StorageError::corrupt(format!(
                "raft log: entry {next_index} missing (last contiguous {}, next present {index}): \
                 the log is truncated or damaged",
                next_index - 1
            )));
        }
        let entry = decode_entry(index, value)?;
        if entry.term < previous_term {
            return Err(StorageError::corrupt(format!(
                "raft log: entry {index} has term {}, below term {previous_term} of entry {}",
                entry.term,
                index - 1
            )));
        }
        previous_term = entry.term;
        next_index = index + 1;
        cache.push(entry);
        Ok(())
    };
    engine.scan(
        Table::RaftLog,
        &[ENTRY_KEY_PREFIX],
        Some(ENTRY_KEYS_END),
        &mut |key, value| match check(key, value) {
            Ok(()) => true,
            Err(err) => {
                failure = Some(err);
                false
            }
        },
    )?;
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(ScannedEntries {
        last_index: next_index - 1,
        cache,
    })
}

impl RaftLogStore {
    /// Opens the log kept in `engine`, validating it: entry keys contiguous from first to last
    /// index, each entry decodes and its index matches its key, hard state commit <= last index,
    /// term of entries non-decreasing. Any violation is an error naming what is wrong.
    pub fn open(engine: Arc<dyn KvEngine>) -> Result<Self, StorageError> {
        let hard_state: Option<HardState> = read_record(&*engine, HARD_STATE_KEY, "hard state")?;
        let conf_state: Option<ConfState> = read_record(&*engine, CONF_STATE_KEY, "conf state")?;
        let snapshot_meta: Option<SnapshotMetadata> =
            read_record(&*engine, SNAPSHOT_META_KEY, "snapshot metadata")?;
        let (snapshot_index, snapshot_term) = snapshot_meta
            .as_ref()
            .map_or((0, 0), |meta| (meta.index, meta.term));
        let scanned = scan_entries(&*engine, snapshot_index, snapshot_term)?;

        let is_new = hard_state.is_none()
            && conf_state.is_none()
            && snapshot_meta.is_none()
            && scanned.last_index == 0;
        let hard_state = hard_state.unwrap_or_default();
        if hard_state.commit > scanned.last_index {
            return Err(StorageError::corrupt(format!(
                "raft log: hard state commit {} is beyond the last index {}: the log is truncated \
                 or damaged",
                hard_state.commit, scanned.last_index
            )));
        }
        let state = LogState {
            hard_state,
            conf_state: conf_state.unwrap_or_default(),
            snapshot_index,
            snapshot_term,
            last_index: scanned.last_index,
            is_new,
            cache: scanned.cache,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                state: RwLock::new(state),
            }),
        })
    }

    /// True when nothing was ever written (no hard state, no conf state, no entries).
    pub fn is_new(&self) -> bool {
        self.inner.state.read().is_new
    }

    /// Writes the initial conf state for a brand-new cluster (voters given), synced. Fails on a
    /// log that already holds anything.
    pub fn bootstrap(&self, conf_state: &ConfState) -> Result<(), StorageError> {
        let mut state = self.inner.state.write();
        if !state.is_new {
            return Err(StorageError::corrupt(
                "raft log: bootstrap of a log that already holds raft state",
            ));
        }
        let mut batch = WriteBatch::new();
        batch.put(
            Table::RaftLog,
            CONF_STATE_KEY,
            encode(conf_state, "conf state")?,
        );
        self.inner.engine.write(batch, true)?;
        state.conf_state = conf_state.clone();
        state.is_new = false;
        Ok(())
    }

    /// Persists a Ready's entries (replacing any conflicting suffix: entries at or after the first
    /// new index are overwritten and anything beyond the new last index removed) and hard state,
    /// in ONE engine write; `sync` fsyncs it. Updates memory only after the write succeeded.
    pub fn persist(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), StorageError> {
        let mut state = self.inner.state.write();
        let new_last_index = match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => {
                check_appendable(&state, entries, first.index)?;
                last.index
            }
            _ => state.last_index,
        };
        if let Some(hard_state) = hard_state {
            check_commit_within_log(hard_state.commit, new_last_index)?;
        }

        let mut batch = WriteBatch::new();
        for entry in entries {
            let value = encode(entry, &format!("entry {}", entry.index))?;
            batch.put(Table::RaftLog, entry_key(entry.index), value);
        }
        if new_last_index < state.last_index {
            batch.delete_range(
                Table::RaftLog,
                entry_key(new_last_index + 1),
                ENTRY_KEYS_END,
            );
        }
        if let Some(hard_state) = hard_state {
            batch.put(
                Table::RaftLog,
                HARD_STATE_KEY,
                encode(hard_state, "hard state")?,
            );
        }
        if batch.is_empty() {
            return if sync {
                self.inner.engine.sync()
            } else {
                Ok(())
            };
        }
        self.inner.engine.write(batch, sync)?;

        if let Some(first) = entries.first() {
            state.cache.truncate_from(first.index);
            for entry in entries {
                state.cache.push(entry.clone());
            }
            state.last_index = new_last_index;
        }
        if let Some(hard_state) = hard_state {
            state.hard_state = hard_state.clone();
        }
        state.is_new = false;
        Ok(())
    }

    /// Records a new commit index (from a LightReady), unsynced.
    pub fn set_commit(&self, commit: u64) -> Result<(), StorageError> {
        let mut state = self.inner.state.write();
        check_commit_within_log(commit, state.last_index)?;
        let mut hard_state = state.hard_state.clone();
        hard_state.commit = commit;
        let mut batch = WriteBatch::new();
        batch.put(
            Table::RaftLog,
            HARD_STATE_KEY,
            encode(&hard_state, "hard state")?,
        );
        self.inner.engine.write(batch, false)?;
        state.hard_state = hard_state;
        state.is_new = false;
        Ok(())
    }

    /// Persists the conf state (after a conf change is applied), unsynced.
    pub fn set_conf_state(&self, conf_state: &ConfState) -> Result<(), StorageError> {
        let mut state = self.inner.state.write();
        let mut batch = WriteBatch::new();
        batch.put(
            Table::RaftLog,
            CONF_STATE_KEY,
            encode(conf_state, "conf state")?,
        );
        self.inner.engine.write(batch, false)?;
        state.conf_state = conf_state.clone();
        state.is_new = false;
        Ok(())
    }

    /// Drops entries below `compact_index` (which must be <= the applied index the caller
    /// guarantees durable), recording the index/term of entry `compact_index - 1` as snapshot
    /// metadata, with the current conf state (the one in effect at the caller's applied index).
    /// Compacting to or below the first index does nothing. Unsynced.
    pub fn compact(&self, compact_index: u64) -> Result<(), StorageError> {
        let mut state = self.inner.state.write();
        if compact_index <= state.first_index() {
            return Ok(());
        }
        let compacted_index = compact_index - 1;
        if compacted_index > state.hard_state.commit {
            return Err(StorageError::corrupt(format!(
                "raft log: cannot compact to {compact_index}: entry {compacted_index} is beyond \
                 the commit index {}",
                state.hard_state.commit
            )));
        }
        let compacted_term = self.held_entry_term(&state, compacted_index)?;
        let mut meta = SnapshotMetadata {
            index: compacted_index,
            term: compacted_term,
            ..Default::default()
        };
        meta.set_conf_state(state.conf_state.clone());

        let mut batch = WriteBatch::new();
        batch.delete_range(Table::RaftLog, [ENTRY_KEY_PREFIX], entry_key(compact_index));
        batch.put(
            Table::RaftLog,
            SNAPSHOT_META_KEY,
            encode(&meta, "snapshot metadata")?,
        );
        self.inner.engine.write(batch, false)?;

        state.snapshot_index = compacted_index;
        state.snapshot_term = compacted_term;
        state.cache.drop_below(compact_index);
        Ok(())
    }

    /// Installs a raft snapshot received from the leader: `state` (the batch that replaces the
    /// state machine, from [`crate::state_image::install_batch`]) plus the log's new start —
    /// every entry dropped, the snapshot's index and term and conf state recorded, the commit
    /// index raised to it — in ONE synced write.
    pub fn apply_snapshot(
        &self,
        snapshot: &Snapshot,
        mut state_batch: WriteBatch,
    ) -> Result<(), StorageError> {
        let meta = snapshot.get_metadata();
        let mut state = self.inner.state.write();
        let mut hard_state = state.hard_state.clone();
        hard_state.commit = hard_state.commit.max(meta.index);
        hard_state.term = hard_state.term.max(meta.term);
        let mut record = SnapshotMetadata {
            index: meta.index,
            term: meta.term,
            ..Default::default()
        };
        record.set_conf_state(meta.get_conf_state().clone());
        state_batch.delete_range(Table::RaftLog, [ENTRY_KEY_PREFIX], ENTRY_KEYS_END);
        state_batch.put(
            Table::RaftLog,
            SNAPSHOT_META_KEY,
            encode(&record, "snapshot metadata")?,
        );
        state_batch.put(
            Table::RaftLog,
            CONF_STATE_KEY,
            encode(meta.get_conf_state(), "conf state")?,
        );
        state_batch.put(
            Table::RaftLog,
            HARD_STATE_KEY,
            encode(&hard_state, "hard state")?,
        );
        self.inner.engine.write(state_batch, true)?;
        state.snapshot_index = meta.index;
        state.snapshot_term = meta.term;
        state.last_index = meta.index;
        state.conf_state = meta.get_conf_state().clone();
        state.hard_state = hard_state;
        state.cache = EntryCache::default();
        state.is_new = false;
        Ok(())
    }

    pub fn hard_state(&self) -> HardState {
        self.inner.state.read().hard_state.clone()
    }

    pub fn conf_state(&self) -> ConfState {
        self.inner.state.read().conf_state.clone()
    }

    /// The index of the first entry still held (one past the last compacted one).
    pub fn first_index(&self) -> u64 {
        self.inner.state.read().first_index()
    }

    /// The index of the last entry (the last compacted one when no entry is held).
    pub fn last_index(&self) -> u64 {
        self.inner.state.read().last_index
    }

    /// The term of entry `index`, which must lie in `[first_index - 1, last_index]`.
    fn term_locked(&self, state: &LogState, index: u64) -> Result<u64, raft::Error> {
        if index == state.snapshot_index {
            return Ok(state.snapshot_term);
        }
        if index < state.first_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if index > state.last_index {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        self.held_entry_term(state, index).map_err(store_error)
    }

    /// The term of entry `index`, one of the held entries `[first_index, last_index]`.
    fn held_entry_term(&self, state: &LogState, index: u64) -> Result<u64, StorageError> {
        if let Some(entry) = state.cache.get(index) {
            return Ok(entry.term);
        }
        match self.inner.engine.get(Table::RaftLog, &entry_key(index))? {
            Some(value) => Ok(decode_entry(index, &value)?.term),
            None => Err(missing_entry(index, state)),
        }
    }

    /// Reads entries `[low, high)` from the engine, stopping once `max_size` bytes are exceeded
    /// (after the first entry).
    fn read_entries(
        &self,
        state: &LogState,
        low: u64,
        high: u64,
        max_size: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut entries = Vec::new();
        let mut total_bytes = 0u64;
        let mut failure = None;
        let mut next_index = low;
        self.inner.engine.scan(
            Table::RaftLog,
            &entry_key(low),
            Some(&entry_key(high)),
            &mut |key, value| {
                let entry = entry_index_of_key(key).and_then(|index| {
                    if index == next_index {
                        decode_entry(index, value)
                    } else {
                        Err(missing_entry(next_index, state))
                    }
                });
                match entry {
                    Ok(entry) => {
                        total_bytes = total_bytes.saturating_add(entry_bytes(&entry));
                        if !entries.is_empty() && total_bytes > max_size {
                            return false;
                        }
                        entries.push(entry);
                        next_index += 1;
                        true
                    }
                    Err(err) => {
                        failure = Some(err);
                        false
                    }
                }
            },
        )?;
        if let Some(err) = failure {
            return Err(err);
        }
        if entries.is_empty() {
            return Err(missing_entry(low, state));
        }
        Ok(entries)
    }
}

/// Checks that `entries` are contiguous and can follow the log's retained prefix.
fn check_appendable(
    state: &LogState,
    entries: &[Entry],
    first_new: u64,
) -> Result<(), StorageError> {
    if first_new < state.first_index() {
        return Err(StorageError::corrupt(format!(
            "raft log: cannot overwrite compacted entries (first new entry {first_new}, first \
             index {})",
            state.first_index()
        )));
    }
    if first_new > state.last_index + 1 {
        return Err(StorageError::corrupt(format!(
            "raft log: new entries start at {first_new}, leaving a gap after the last index {}",
            state.last_index
        )));
    }
    for pair in entries.windows(2) {
        if pair[1].index != pair[0].index + 1 {
            return Err(StorageError::corrupt(format!(
                "raft log: entries to persist are not contiguous ({} follows {})",
                pair[1].index, pair[0].index
            )));
        }
    }
    Ok(())
}

fn check_commit_within_log(commit: u64, last_index: u64) -> Result<(), StorageError> {
    if commit > last_index {
        return Err(StorageError::corrupt(format!(
            "raft log: commit index {commit} is beyond the last index {last_index}"
        )));
    }
    Ok(())
}

fn missing_entry(index: u64, state: &LogState) -> StorageError {
    StorageError::corrupt(format!(
        "raft log: entry {index} missing from the engine (log holds {} to {}): the log is damaged",
        state.first_index(),
        state.last_index
    ))
}

fn store_error(err: StorageError) -> raft::Error {
    raft::Error::Store(raft::StorageError::Other(Box::new(err)))
}

impl raft::Storage for RaftLogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let state = self.inner.state.read();
        Ok(RaftState::new(
            state.hard_state.clone(),
            state.conf_state.clone(),
        ))
    }

    /// Entries `[low, high)`, at most `max_size` bytes but always at least one entry.
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into().unwrap_or(raft::NO_LIMIT);
        let state = self.inner.state.read();
        if low < state.first_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > state.last_index + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if low >= high {
            return Ok(Vec::new());
        }
        let cached = state.cache.first_index().is_some_and(|first| first <= low);
        if !cached {
            return self
                .read_entries(&state, low, high, max_size)
                .map_err(store_error);
        }
        let mut entries = Vec::new();
        let mut total_bytes = 0u64;
        for index in low..high {
            let entry = state
                .cache
                .get(index)
                .expect("the cache holds every index from its first to the last");
            total_bytes = total_bytes.saturating_add(entry_bytes(entry));
            if !entries.is_empty() && total_bytes > max_size {
                break;
            }
            entries.push(entry.clone());
        }
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let state = self.inner.state.read();
        self.term_locked(&state, idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(RaftLogStore::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RaftLogStore::last_index(self))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = || raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable);
        let engine = &self.inner.engine;
        let applied = engine
            .get(Table::Meta, crate::mvcc::meta::STATE_KEYS[0])
            .ok()
            .flatten()
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        if applied < request_index {
            return Err(unavailable());
        }
        let state = self.inner.state.read();
        let term = self.term_locked(&state, applied)?;
        let data = crate::state_image::capture(engine.as_ref()).map_err(|err| {
            tracing::error!(error = %err, "capturing a raft snapshot failed");
            unavailable()
        })?;
        tracing::info!(to = %format!("{to:x}"), index = applied, bytes = data.len(), "raft snapshot captured for a lagging member");
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let meta = snapshot.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(state.conf_state.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;
    use crate::engine::memory::MemoryEngine;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("data {index}@{term}").into_bytes().into(),
            ..Default::default()
        }
    }

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|index| entry(index, term)).collect()
    }

    fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    fn voters(ids: &[u64]) -> ConfState {
        ConfState {
            voters: ids.to_vec(),
            ..Default::default()
        }
    }

    fn open(engine: &Arc<MemoryEngine>) -> RaftLogStore {
        RaftLogStore::open(engine.clone()).expect("open the raft log")
    }

    fn open_error(engine: &Arc<MemoryEngine>) -> String {
        match RaftLogStore::open(engine.clone()) {
            Ok(_) => panic!("opening the raft log must fail"),
            Err(err) => err.to_string(),
        }
    }

    fn read(
        store: &RaftLogStore,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> raft::Result<Vec<Entry>> {
        store.entries(low, high, max_size, GetEntriesContext::empty(false))
    }

    fn indexes_and_terms(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries
            .iter()
            .map(|entry| (entry.index, entry.term))
            .collect()
    }

    fn engine_with_entries(last: u64) -> Arc<MemoryEngine> {
        let engine = Arc::new(MemoryEngine::new());
        open(&engine)
            .persist(&entries(1..=last, 1), Some(&hard_state(1, 1, last)), true)
            .expect("persist");
        engine
    }

    fn engine_write(engine: &MemoryEngine, change: impl FnOnce(&mut WriteBatch)) {
        let mut batch = WriteBatch::new();
        change(&mut batch);
        engine.write(batch, true).expect("write through the engine");
    }

    fn store_error_kind(result: raft::Result<impl std::fmt::Debug>) -> raft::StorageError {
        match result {
            Err(raft::Error::Store(err)) => err,
            other => panic!("expected a storage error, got {other:?}"),
        }
    }

    #[test]
    fn new_log_is_empty_from_index_one() {
        let store = open(&Arc::new(MemoryEngine::new()));
        assert!(store.is_new());
        assert_eq!((store.first_index(), store.last_index()), (1, 0));
        assert_eq!(store.term(0).expect("term of index 0"), 0);
        assert_eq!(store.hard_state(), HardState::default());
        assert!(!store.initial_state().expect("initial state").initialized());
    }

    #[test]
    fn bootstrap_persists_the_conf_state_durably() {
        let engine = Arc::new(MemoryEngine::new());
        open(&engine)
            .bootstrap(&voters(&[1, 2, 3]))
            .expect("bootstrap");
        engine.crash();
        let store = open(&engine);
        assert!(!store.is_new());
        assert_eq!(store.conf_state(), voters(&[1, 2, 3]));
        assert!(store.initial_state().expect("initial state").initialized());
    }

    #[test]
    fn bootstrap_of_a_used_log_fails() {
        let store = open(&Arc::new(MemoryEngine::new()));
        store.bootstrap(&voters(&[1])).expect("first bootstrap");
        let err = store
            .bootstrap(&voters(&[2]))
            .expect_err("second bootstrap must fail");
        assert!(
            err.to_string().contains("already holds raft state"),
            "{err}"
        );
        assert_eq!(store.conf_state(), voters(&[1]));
    }

    #[test]
    fn persist_appends_entries_and_hard_state() {
        let store = open(&Arc::new(MemoryEngine::new()));
        store
            .persist(&entries(1..=3, 1), Some(&hard_state(1, 1, 2)), true)
            .expect("persist");
        assert_eq!((store.first_index(), store.last_index()), (1, 3));
        assert_eq!(store.hard_state(), hard_state(1, 1, 2));
        let read_back = read(&store, 1, 4, None).expect("entries");
        assert_eq!(read_back, entries(1..=3, 1));
        assert_eq!(store.term(3).expect("term"), 1);
        assert!(!store.is_new());
    }

    #[test]
    fn persist_replaces_the_conflicting_suffix() {
        let engine = Arc::new(MemoryEngine::new());
        let store = open(&engine);
        store
            .persist(&entries(1..=5, 1), None, false)
            .expect("persist");
        store
            .persist(&entries(3..=4, 2), None, false)
            .expect("overwrite");
        let expected = vec![(1, 1), (2, 1), (3, 2), (4, 2)];
        assert_eq!(store.last_index(), 4);
        assert_eq!(
            indexes_and_terms(&read(&store, 1, 5, None).expect("entries")),
            expected
        );
        assert_eq!(
            engine.get(Table::RaftLog, &entry_key(5)).expect("get"),
            None
        );
        let reopened = open(&engine);
        assert_eq!(reopened.last_index(), 4);
        assert_eq!(
            indexes_and_terms(&read(&reopened, 1, 5, None).expect("entries")),
            expected
        );
    }

    #[test]
    fn persist_rejects_a_gap_after_the_last_index() {
        let store = open(&Arc::new(MemoryEngine::new()));
        store
            .persist(&entries(1..=2, 1), None, false)
            .expect("persist");
        let err = store
            .persist(&entries(4..=5, 1), None, false)
            .expect_err("a gap must fail");
        assert!(
            err.to_string()
                .contains("start at 4, leaving a gap after the last index 2"),
            "{err}"
        );
        assert_eq!(store.last_index(), 2);
    }

    #[test]
    fn persist_rejects_a_commit_beyond_the_log() {
        let store = open(&Arc::new(MemoryEngine::new()));
        let err = store
            .persist(&entries(1..=2, 1), Some(&hard_state(1, 1, 3)), false)
            .expect_err("commit 3 of a 2-entry log must fail");
        assert!(
            err.to_string()
                .contains("commit index 3 is beyond the last index 2"),
            "{err}"
        );
        assert_eq!(store.last_index(), 0, "a rejected persist changes nothing");
    }

    #[test]
    fn a_crash_keeps_only_synced_persists() {
        let engine = Arc::new(MemoryEngine::new());
        let store = open(&engine);
        store
            .persist(&entries(1..=2, 1), Some(&hard_state(1, 1, 1)), true)
            .expect("synced persist");
        store
            .persist(&entries(3..=4, 1), Some(&hard_state(1, 1, 3)), false)
            .expect("unsynced persist");
        engine.crash();
        let reopened = open(&engine);
        assert_eq!(reopened.last_index(), 2);
        assert_eq!(reopened.hard_state(), hard_state(1, 1, 1));
    }

    #[test]
    fn reopen_restores_every_piece_of_state() {
        let engine = Arc::new(MemoryEngine::new());
        let store = open(&engine);
        store.bootstrap(&voters(&[1, 2, 3])).expect("bootstrap");
        store
            .persist(&entries(1..=6, 2), Some(&hard_state(2, 3, 4)), true)
            .expect("persist");
        store.set_commit(5).expect("set commit");
        store
            .set_conf_state(&voters(&[1, 2]))
            .expect("set conf state");
        store.compact(3).expect("compact");
        engine.sync().expect("sync");
        engine.crash();

        let reopened = open(&engine);
        assert!(!reopened.is_new());
        assert_eq!(reopened.hard_state(), hard_state(2, 3, 5));
        assert_eq!(reopened.conf_state(), voters(&[1, 2]));
        assert_eq!((reopened.first_index(), reopened.last_index()), (3, 6));
        assert_eq!(reopened.term(2).expect("term of the compacted index"), 2);
        assert_eq!(
            read(&reopened, 3, 7, None).expect("entries"),
            entries(3..=6, 2)
        );
    }

    #[test]
    fn compact_drops_older_entries_and_keeps_the_boundary_term() {
        let engine = Arc::new(MemoryEngine::new());
        let store = open(&engine);
        let mut log = entries(1..=3, 1);
        log.extend(entries(4..=6, 2));
        store
            .persist(&log, Some(&hard_state(2, 1, 6)), false)
            .expect("persist");
        store.compact(5).expect("compact");
        assert_eq!((store.first_index(), store.last_index()), (5, 6));
        assert_eq!(store.term(4).expect("term of the last compacted entry"), 2);
        assert_eq!(
            store_error_kind(store.term(3)),
            raft::StorageError::Compacted
        );
        assert_eq!(
            store_error_kind(read(&store, 4, 6, None)),
            raft::StorageError::Compacted
        );
        assert_eq!(
            read(&store, 5, 7, None).expect("entries"),
            entries(5..=6, 2)
        );
        for index in 1..=4 {
            assert_eq!(
                engine.get(Table::RaftLog, &entry_key(index)).expect("get"),
                None,
                "entry {index}"
            );
        }
    }

    #[test]
    fn compact_at_or_below_the_first_index_does_nothing() {
        let store = open(&Arc::new(MemoryEngine::new()));
        store
            .persist(&entries(1..=4, 1), Some(&hard_state(1, 1, 4)), false)
            .expect("persist");
        store.compact(3).expect("compact");
        store.compact(2).expect("compact below the first index");
        store.compact(3).expect("compact at the first index");
        assert_eq!((store.first_index(), store.last_index()), (3, 4));
        assert_eq!(store.term(2).expect("term"), 1);
    }

    #[test]
    fn compact_beyond_the_commit_index_fails() {
        let store = open(&Arc::new(MemoryEngine::new()));
        store
            .persist(&entries(1..=4, 1), Some(&hard_state(1, 1, 2)), false)
            .expect("persist");
        let err = store
            .compact(4)
            .expect_err("compacting uncommitted entries must fail");
        assert!(
            err.to_string()
                .contains("entry 3 is beyond the commit index 2"),
            "{err}"
        );
        assert_eq!(store.first_index(), 1);
    }

    #[test]
    fn compact_of_every_entry_leaves_an_empty_log_after_the_snapshot_index() {
        let engine = Arc::new(MemoryEngine::new());
        let store = open(&engine);
        store
            .persist(&entries(1..=4, 3), Some(&hard_state(3, 1, 4)), false)
            .expect("persist");
        store.compact(5).expect("compact everything");
        let reopened = open(&engine);
        assert_eq!((reopened.first_index(), reopened.last_index()), (5, 4));
        assert_eq!(reopened.term(4).expect("term"), 3);
        reopened
            .persist(&entries(5..=5, 4), None, false)
            .expect("append after the snapshot index");
        assert_eq!(reopened.last_index(), 5);
    }

    #[test]
    fn persist_below_the_first_index_fails() {
        let store = open(&Arc::new(MemoryEngine::new()));
        store
            .persist(&entries(1..=4, 1), Some(&hard_state(1, 1, 4)), false)
            .expect("persist");
        store.compact(3).expect("compact");
        let err = store
            .persist(&entries(2..=5, 2), None, false)
            .expect_err("overwriting compacted entries");
        assert!(
            err.to_string()
                .contains("cannot overwrite compacted entries"),
            "{err}"
        );
    }

    #[test]
    fn entries_honours_max_size_but_returns_at_least_one_entry() {
        let store = open(&Arc::new(MemoryEngine::new()));
        store
            .persist(&entries(1..=5, 1), None, false)
            .expect("persist");
        let one_entry_bytes = entry_bytes(&entry(1, 1));
        assert_eq!(read(&store, 1, 6, Some(0)).expect("entries").len(), 1);
        assert_eq!(
            read(&store, 1, 6, Some(2 * one_entry_bytes))
                .expect("entries")
                .len(),
            2
        );
        assert_eq!(
            read(&store, 1, 6, Some(2 * one_entry_bytes + 1))
                .expect("entries")
                .len(),
            2
        );
        assert_eq!(
            read(&store, 1, 6, Some(raft::NO_LIMIT))
                .expect("entries")
                .len(),
            5
        );
    }

    #[test]
    fn entries_beyond_the_last_index_are_unavailable() {
        let store = open(&Arc::new(MemoryEngine::new()));
        store
            .persist(&entries(1..=3, 1), None, false)
            .expect("persist");
        assert_eq!(
            store_error_kind(read(&store, 2, 5, None)),
            raft::StorageError::Unavailable
        );
        assert_eq!(
            store_error_kind(store.term(4)),
            raft::StorageError::Unavailable
        );
    }

    #[test]
    fn entries_older_than_the_cache_are_read_from_the_engine() {
        let total = CACHED_ENTRIES_MAX as u64 + 100;
        let engine = engine_with_entries(total);
        let store = open(&engine);
        assert!(
            store.inner.state.read().cache.first_index() > Some(1),
            "index 1 must not be cached"
        );
        assert_eq!(
            read(&store, 1, 4, None).expect("entries"),
            entries(1..=3, 1)
        );
        let one_entry_bytes = entry_bytes(&entry(1, 1));
        assert_eq!(
            read(&store, 1, 10, Some(one_entry_bytes)).expect("entries"),
            entries(1..=1, 1)
        );
        assert_eq!(store.term(2).expect("term"), 1);
        let newest = read(&store, total - 1, total + 1, None).expect("cached entries");
        assert_eq!(indexes_and_terms(&newest), vec![(total - 1, 1), (total, 1)]);
    }

    #[test]
    fn open_detects_an_entry_missing_in_the_middle() {
        let engine = engine_with_entries(10);
        engine_write(&engine, |batch| batch.delete(Table::RaftLog, entry_key(5)));
        let err = open_error(&engine);
        assert!(
            err.contains("entry 5 missing (last contiguous 4, next present 6)"),
            "{err}"
        );
    }

    #[test]
    fn open_detects_a_garbage_entry_value() {
        let engine = engine_with_entries(5);
        engine_write(&engine, |batch| {
            batch.put(Table::RaftLog, entry_key(3), vec![0xff; 7])
        });
        let err = open_error(&engine);
        assert!(
            err.starts_with("raft log: entry 3 does not decode: "),
            "{err}"
        );
    }

    #[test]
    fn open_detects_an_entry_stored_under_another_index() {
        let engine = engine_with_entries(5);
        let misplaced = encode(&entry(9, 1), "entry").expect("encode");
        engine_write(&engine, |batch| {
            batch.put(Table::RaftLog, entry_key(4), misplaced)
        });
        let err = open_error(&engine);
        assert!(
            err.contains("entry stored as entry 4 says it is entry 9"),
            "{err}"
        );
    }

    #[test]
    fn open_detects_decreasing_terms() {
        let engine = Arc::new(MemoryEngine::new());
        let mut log = entries(1..=2, 3);
        log.push(entry(3, 2));
        open(&engine).persist(&log, None, true).expect("persist");
        let err = open_error(&engine);
        assert!(
            err.contains("entry 3 has term 2, below term 3 of entry 2"),
            "{err}"
        );
    }

    #[test]
    fn open_detects_a_commit_index_beyond_the_log() {
        let engine = engine_with_entries(5);
        engine_write(&engine, |batch| {
            batch.delete_range(Table::RaftLog, entry_key(4), ENTRY_KEYS_END)
        });
        let err = open_error(&engine);
        assert!(
            err.contains("hard state commit 5 is beyond the last index 3"),
            "{err}"
        );
    }

    #[test]
    fn open_detects_entries_left_below_the_compacted_index() {
        let engine = engine_with_entries(5);
        open(&engine).compact(3).expect("compact");
        let stale = encode(&entry(1, 1), "entry").expect("encode");
        engine_write(&engine, |batch| {
            batch.put(Table::RaftLog, entry_key(1), stale)
        });
        let err = open_error(&engine);
        assert!(
            err.contains("entry 1 is still present although entries up to 2 were compacted"),
            "{err}"
        );
    }

    #[test]
    fn open_detects_a_missing_first_entry_after_compaction() {
        let engine = engine_with_entries(6);
        open(&engine).compact(3).expect("compact");
        engine_write(&engine, |batch| batch.delete(Table::RaftLog, entry_key(3)));
        let err = open_error(&engine);
        assert!(
            err.contains("entry 3 missing (last contiguous 2, next present 4)"),
            "{err}"
        );
    }

    #[test]
    fn a_snapshot_waits_until_the_requested_index_is_applied() {
        let store = open(&Arc::new(MemoryEngine::new()));
        assert_eq!(
            store_error_kind(store.snapshot(1, 2)),
            raft::StorageError::SnapshotTemporarilyUnavailable
        );
    }

    #[test]
    fn entries_persisted_in_the_same_engine_leave_other_tables_alone() {
        let engine = Arc::new(MemoryEngine::new());
        engine_write(&engine, |batch| {
            batch.put(Table::Kv, entry_key(1), "mvcc row")
        });
        let store = open(&engine);
        store
            .persist(&entries(1..=2, 1), None, false)
            .expect("persist");
        store
            .persist(&entries(1..=1, 2), None, false)
            .expect("truncate");
        assert_eq!(
            engine.get(Table::Kv, &entry_key(1)).expect("get"),
            Some(b"mvcc row".to_vec())
        );
    }

    /// Handles a one-voter raft-rs node's Readys until it has none, persisting each into `store`;
    /// returns the committed entries.
    fn drive_single_node(
        node: &mut raft::RawNode<RaftLogStore>,
        store: &RaftLogStore,
    ) -> Vec<Entry> {
        let mut applied = Vec::new();
        while node.has_ready() {
            let mut ready = node.ready();
            store
                .persist(ready.entries(), ready.hs(), true)
                .expect("persist a ready");
            applied.extend(ready.take_committed_entries());
            let mut light = node.advance(ready);
            if let Some(commit) = light.commit_index() {
                store.set_commit(commit).expect("set commit");
            }
            applied.extend(light.take_committed_entries());
            node.advance_apply();
        }
        applied
    }

    #[test]
    fn a_raft_node_elects_itself_and_commits_a_proposal_over_the_store() {
        let engine = Arc::new(MemoryEngine::new());
        let store = open(&engine);
        store.bootstrap(&voters(&[1])).expect("bootstrap");
        let config = raft::Config {
            id: 1,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut node = raft::RawNode::new(&config, store.clone(), &logger).expect("raw node");
        node.campaign().expect("campaign");
        drive_single_node(&mut node, &store);
        node.propose(Vec::new(), b"hello".to_vec())
            .expect("propose");
        let applied = drive_single_node(&mut node, &store);

        assert!(
            applied.iter().any(|entry| entry.data.as_ref() == b"hello"),
            "{applied:?}"
        );
        let last = store.last_index();
        assert_eq!(last, 2, "the leader's empty entry, then the proposal");
        assert_eq!(store.hard_state().commit, last);
        let reopened = open(&engine);
        assert_eq!(reopened.last_index(), last);
        assert_eq!(reopened.hard_state().commit, last);
    }
}
