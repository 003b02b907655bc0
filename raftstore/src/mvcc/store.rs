//! `MvccStore`: etcd's revisioned key-value store over a [`KvEngine`], applied by raft index.
//!
//! Guarantees:
//! - an empty store is at revision 1; an applied entry that changes something moves the current
//!   revision up by exactly one, and one that changes nothing (a Range-only or no-op Txn, a
//!   DeleteRange that finds nothing, a Compaction, a failed request) leaves it;
//! - [`MvccStore::apply`] is idempotent by raft index: entries at or below the consistent index
//!   are skipped; otherwise the changed rows, the new current revision and the consistent index
//!   go to the engine in one atomic batch (not synced: the raft log is the durable copy);
//! - a Compaction removes the compacted rows from the engine in that same batch, so when apply
//!   returns the compaction is physically done; its scheduled and finished revisions are
//!   recorded, and [`MvccStore::open`] finishes one that was scheduled but never finished;
//! - [`MvccStore::open`] rebuilds exactly the key index the store had, from `Table::Kv`, and
//!   the lease table from `Table::Lease` and the keys' latest versions;
//! - leases are part of the applied state: a LeaseGrant writes its record, and a Put, Delete or
//!   Txn moves each key it changes to the lease its new version names, in the same batch; a
//!   LeaseRevoke deletes every attached key at one revision and removes the record;
//! - after a storage failure inside `apply` the in-memory index may be ahead of the engine: the
//!   store then refuses all further use (reopen it from the engine).

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;

use super::key_index::{KeyIndex, KeyIndexError};
use super::meta;
use super::read::{header, Reader};
use super::revision::{decode_row_key, hex, Revision};
use super::tree_index::TreeIndex;
use super::txn::{check_txn_puts, check_txn_ranges, txn_path, Change, WriteTxn};
use crate::engine::{KvEngine, ReadView, Table, WriteBatch};
use crate::error::{EtcdError, StorageError};
use crate::lease::{LeaseTable, MAX_LEASE_TTL};
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::pb::k3rspb::raft_command::Request;
use crate::pb::mvccpb::{Event, KeyValue};

/// The response to an applied command, for its proposer.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    /// A command that changes no MVCC state (membership records).
    Empty,
    /// A membership change: the members after it.
    Members(Vec<crate::pb::etcdserverpb::Member>),
}

/// What applying one raft entry did.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOutcome {
    /// The command's response; `None` for an entry without a command or a skipped entry.
    pub response: Option<CommandResponse>,
    /// One event per change, in sub-revision order: PUTs carry the new key-value, DELETEs only
    /// `key` and `mod_revision`; `prev_kv` is the key-value before the change when there was one.
    pub events: Vec<Event>,
    /// The store's current revision after the entry.
    pub revision: i64,
}

impl ApplyOutcome {
    /// The outcome of an entry that was already applied (at or below the consistent index).
    pub fn skipped(revision: i64) -> Self {
        Self {
            response: None,
            events: Vec::new(),
            revision,
        }
    }
}

/// What a successfully executed command leaves to be committed.
struct Effect {
    response: Option<CommandResponse>,
    changes: Vec<Change>,
    /// Further ops for the batch (a compaction's row deletions and meta records).
    batch: WriteBatch,
    /// The compact revision after the command, when it compacted.
    compacted: Option<i64>,
}

impl Effect {
    fn response(response: CommandResponse, changes: Vec<Change>) -> Self {
        Self {
            response: Some(response),
            changes,
            batch: WriteBatch::new(),
            compacted: None,
        }
    }
}

/// etcd's MVCC store: the key index in memory, the rows in the engine.
pub struct MvccStore {
    engine: Arc<dyn KvEngine>,
    index: TreeIndex,
    current_revision: i64,
    /// etcd's `compactMainRev`: the last compaction's revision, -1 when never compacted.
    compacted: i64,
    consistent_index: u64,
    leases: LeaseTable,
    /// Why the store refuses use after a storage failure in `apply`.
    poisoned: Option<String>,
}

impl MvccStore {
    /// Reads meta (current revision, compacted revision scheduled/finished, consistent index),
    /// finishes a compaction that was scheduled but not finished, and rebuilds the key index by
    /// scanning `Table::Kv` in order. Undecodable rows or meta are a StorageError naming the row.
    pub fn open(engine: Arc<dyn KvEngine>) -> Result<Self, StorageError> {
        let meta = meta::read(engine.as_ref())?;
        let current_revision = meta.current_revision.unwrap_or(1);
        let compacted = meta.finished_compact_revision.unwrap_or(-1);
        if compacted > current_revision {
            return Err(StorageError::corrupt(format!(
                "finished compact revision {compacted} is above the current revision {current_revision}"
            )));
        }
        let (index, attachments) = rebuild_index(engine.as_ref(), current_revision)?;
        let leases = LeaseTable::load(engine.as_ref(), attachments)?;
        let mut store = Self {
            engine,
            index,
            current_revision,
            compacted,
            consistent_index: meta.consistent_index,
            leases,
            poisoned: None,
        };
        if let Some(scheduled) = meta.scheduled_compact_revision {
            if scheduled > compacted {
                if scheduled > current_revision {
                    return Err(StorageError::corrupt(format!(
                        "scheduled compact revision {scheduled} is above the current revision {current_revision}"
                    )));
                }
                let mut batch = WriteBatch::new();
                store.compaction_ops(scheduled, &mut batch)?;
                store.engine.write(batch, false)?;
                store.compacted = scheduled;
            }
        }
        Ok(store)
    }

    /// The current revision: 1 on an empty store.
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision of the last compaction: 0 when never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.compacted.max(0)
    }

    /// The revision of the last compaction as etcd keeps it: -1 when never compacted.
    pub fn compacted_raw(&self) -> i64 {
        self.compacted
    }

    /// Raft index of the last applied entry: 0 on a new store.
    pub fn consistent_index(&self) -> u64 {
        self.consistent_index
    }

    pub fn engine(&self) -> &Arc<dyn KvEngine> {
        &self.engine
    }

    /// etcd's Range at `req.revision` (`<= 0`: current). The header carries only `revision`: the
    /// current revision. Below the compacted revision → Compacted (the compacted revision itself
    /// is readable); above the current one → FutureRevision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        if let Some(reason) = &self.poisoned {
            return Err(EtcdError::Internal(format!(
                "mvcc store unusable: {reason}"
            )));
        }
        let current = self.current_revision;
        if req.revision > current {
            return Err(EtcdError::FutureRevision);
        }
        let at_rev = if req.revision <= 0 {
            current
        } else {
            req.revision
        };
        if at_rev < self.compacted {
            return Err(EtcdError::Compacted);
        }
        Ok(self.reader().range(req, at_rev, current)?)
    }

    /// Applies one committed raft entry at `index`. Skips (returns
    /// `Ok(Ok(ApplyOutcome::skipped(..)))`) when `index <= consistent_index` (replay is
    /// idempotent). Otherwise executes `request` (`None` = an entry with no command, e.g. raft's
    /// empty entries) and writes the changed rows, the new current revision and the consistent
    /// index in ONE WriteBatch with `sync = false` (the raft log is the durable copy).
    ///
    /// `Ok(Err(e))`: the request failed deterministically (e.g. lease not found, compacted); the
    /// consistent index is still recorded. `Err`: storage failure; the store is then unusable.
    pub fn apply(
        &mut self,
        index: u64,
        request: Option<&Request>,
    ) -> Result<Result<ApplyOutcome, EtcdError>, StorageError> {
        if let Some(reason) = &self.poisoned {
            return Err(StorageError::corrupt(format!(
                "mvcc store unusable: {reason}"
            )));
        }
        if index <= self.consistent_index {
            return Ok(Ok(ApplyOutcome::skipped(self.current_revision)));
        }
        let result = self
            .execute(request)
            .and_then(|executed| self.commit(index, executed));
        if let Err(err) = &result {
            self.poisoned = Some(format!(
                "a storage failure while applying raft index {index}: {err}"
            ));
        }
        result
    }

    /// The leases granted and not yet revoked, with their attached keys.
    pub fn leases(&self) -> &LeaseTable {
        &self.leases
    }

    fn lease_exists(&self, id: i64) -> bool {
        self.leases.contains(id)
    }

    fn reader(&self) -> Reader<'_> {
        Reader::committed(&self.index, self.engine.as_ref(), self.current_revision)
    }

    fn execute(
        &mut self,
        request: Option<&Request>,
    ) -> Result<Result<Effect, EtcdError>, StorageError> {
        match request {
            None => Ok(Ok(Effect {
                response: None,
                changes: Vec::new(),
                batch: WriteBatch::new(),
                compacted: None,
            })),
            Some(Request::Put(put)) => self.execute_put(put),
            Some(Request::DeleteRange(delete)) => self.execute_delete_range(delete),
            Some(Request::Txn(txn)) => self.execute_txn(txn),
            Some(Request::Compaction(compaction)) => self.execute_compaction(compaction),
            Some(Request::LeaseGrant(grant)) => Ok(self.execute_lease_grant(grant)),
            Some(Request::LeaseRevoke(revoke)) => self.execute_lease_revoke(revoke),
            // Applied to the membership by the driver; nothing changes here.
            Some(Request::MemberAttributes(_) | Request::MemberUpdate(_)) => {
                Ok(Ok(Effect::response(CommandResponse::Empty, Vec::new())))
            }
        }
    }

    fn execute_put(&mut self, req: &PutRequest) -> Result<Result<Effect, EtcdError>, StorageError> {
        if req.lease != 0 && !self.lease_exists(req.lease) {
            return Ok(Err(EtcdError::LeaseNotFound));
        }
        if (req.ignore_value || req.ignore_lease)
            && self.index.get(&req.key, self.current_revision).is_none()
        {
            return Ok(Err(EtcdError::KeyNotFound));
        }
        let mut write = WriteTxn::new(&mut self.index, self.engine.as_ref(), self.current_revision);
        let response = write.put(req)?;
        Ok(Ok(Effect::response(
            CommandResponse::Put(response),
            write.into_changes(),
        )))
    }

    fn execute_delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<Result<Effect, EtcdError>, StorageError> {
        let mut write = WriteTxn::new(&mut self.index, self.engine.as_ref(), self.current_revision);
        let response = write.delete_range(req)?;
        Ok(Ok(Effect::response(
            CommandResponse::DeleteRange(response),
            write.into_changes(),
        )))
    }

    fn execute_txn(&mut self, req: &TxnRequest) -> Result<Result<Effect, EtcdError>, StorageError> {
        let begin = self.current_revision;
        let path = {
            let reader = self.reader();
            let path = txn_path(&reader, req, begin)?;
            let lease_exists = |id: i64| self.lease_exists(id);
            if let Err(err) = check_txn_puts(&self.index, req, &path, begin, &lease_exists) {
                return Ok(Err(err));
            }
            if let Err(err) = check_txn_ranges(req, &path, begin, self.compacted) {
                return Ok(Err(err));
            }
            path
        };
        let mut write = WriteTxn::new(&mut self.index, self.engine.as_ref(), begin);
        let mut response = write.txn(req, &path)?;
        let changes = write.into_changes();
        let revision = if changes.is_empty() { begin } else { begin + 1 };
        response.header = header(revision);
        Ok(Ok(Effect::response(
            CommandResponse::Txn(response),
            changes,
        )))
    }

    fn execute_compaction(
        &mut self,
        req: &CompactionRequest,
    ) -> Result<Result<Effect, EtcdError>, StorageError> {
        let revision = req.revision;
        if revision <= self.compacted {
            return Ok(Err(EtcdError::Compacted));
        }
        if revision > self.current_revision {
            return Ok(Err(EtcdError::FutureRevision));
        }
        let mut batch = WriteBatch::new();
        self.compaction_ops(revision, &mut batch)?;
        let response = CompactionResponse {
            header: header(self.current_revision),
        };
        Ok(Ok(Effect {
            response: Some(CommandResponse::Compaction(response)),
            changes: Vec::new(),
            batch,
            compacted: Some(revision),
        }))
    }

    /// Grants the lease exactly as proposed: the proposer chose the ID and raised the TTL.
    fn execute_lease_grant(&mut self, req: &LeaseGrantRequest) -> Result<Effect, EtcdError> {
        if req.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        if req.id == 0 {
            return Err(EtcdError::Internal(
                "a lease grant reached the log without an ID".into(),
            ));
        }
        if self.leases.contains(req.id) {
            return Err(EtcdError::LeaseExists);
        }
        let mut batch = WriteBatch::new();
        self.leases.grant(req.id, req.ttl, &mut batch);
        let response = LeaseGrantResponse {
            header: header(self.current_revision),
            id: req.id,
            ttl: req.ttl,
            error: String::new(),
        };
        Ok(Effect {
            response: Some(CommandResponse::LeaseGrant(response)),
            changes: Vec::new(),
            batch,
            compacted: None,
        })
    }

    /// Revokes a lease: every attached key is deleted, all at one revision.
    fn execute_lease_revoke(
        &mut self,
        req: &LeaseRevokeRequest,
    ) -> Result<Result<Effect, EtcdError>, StorageError> {
        let Some(entry) = self.leases.get(req.id) else {
            return Ok(Err(EtcdError::LeaseNotFound));
        };
        let keys: Vec<Vec<u8>> = entry.keys.iter().cloned().collect();
        let mut write = WriteTxn::new(&mut self.index, self.engine.as_ref(), self.current_revision);
        for key in keys {
            write.delete_range(&DeleteRangeRequest {
                key,
                ..Default::default()
            })?;
        }
        let changes = write.into_changes();
        let mut batch = WriteBatch::new();
        self.leases.revoke(req.id, &mut batch);
        let revision = self.current_revision + i64::from(!changes.is_empty());
        let response = LeaseRevokeResponse {
            header: header(revision),
        };
        Ok(Ok(Effect {
            response: Some(CommandResponse::LeaseRevoke(response)),
            changes,
            batch,
            compacted: None,
        }))
    }

    /// Compacts the key index at `revision` and adds to `batch` the scheduled revision, the
    /// deletion of every row at or below it that the index no longer needs, and the finished
    /// revision.
    fn compaction_ops(
        &mut self,
        revision: i64,
        batch: &mut WriteBatch,
    ) -> Result<(), StorageError> {
        meta::put_i64(batch, meta::SCHEDULED_COMPACT_REVISION, revision);
        let keep = self.index.compact(revision);
        let end = revision.checked_add(1).map(Revision::main_prefix);
        self.engine.try_scan(
            Table::Kv,
            &[],
            end.as_ref().map(|end| end.as_slice()),
            &mut |key, _| {
                if !keep.contains(&decode_row_key(key)?.revision) {
                    batch.delete(Table::Kv, key);
                }
                Ok(true)
            },
        )?;
        meta::put_i64(batch, meta::FINISHED_COMPACT_REVISION, revision);
        Ok(())
    }

    /// Writes the effect of an executed entry (or only the consistent index, for a failed one)
    /// in one batch, then makes it the store's state.
    fn commit(
        &mut self,
        index: u64,
        executed: Result<Effect, EtcdError>,
    ) -> Result<Result<ApplyOutcome, EtcdError>, StorageError> {
        let effect = match executed {
            Ok(effect) => effect,
            Err(err) => {
                let mut batch = WriteBatch::new();
                meta::put_u64(&mut batch, meta::CONSISTENT_INDEX, index);
                self.engine.write(batch, false)?;
                self.consistent_index = index;
                return Ok(Err(err));
            }
        };
        let Effect {
            response,
            changes,
            mut batch,
            compacted,
        } = effect;
        let revision = if changes.is_empty() {
            self.current_revision
        } else {
            self.current_revision + 1
        };
        for (sub, change) in changes.iter().enumerate() {
            let from = change.prev.as_ref().map_or(0, |prev| prev.lease);
            let to = if change.is_put() { change.kv.lease } else { 0 };
            self.leases.move_key(&change.kv.key, from, to);
            let rev = Revision::new(revision, sub as i64);
            let value = change.kv.encode_to_vec();
            if change.is_put() {
                batch.put(Table::Kv, rev.to_key(), value);
            } else {
                batch.put(Table::Kv, rev.to_tombstone_key(), value);
            }
        }
        if !changes.is_empty() {
            meta::put_i64(&mut batch, meta::CURRENT_REVISION, revision);
        }
        meta::put_u64(&mut batch, meta::CONSISTENT_INDEX, index);
        self.engine.write(batch, false)?;
        self.current_revision = revision;
        self.consistent_index = index;
        if let Some(compacted) = compacted {
            self.compacted = compacted;
        }
        let events = changes.into_iter().map(Change::into_event).collect();
        Ok(Ok(ApplyOutcome {
            response,
            events,
            revision,
        }))
    }

    /// The in-memory key index (for the watch hub's `since` and for hashing).
    pub fn tree_index(&self) -> &TreeIndex {
        &self.index
    }
}

/// Live keys whose latest version has a lease, with that lease's ID.
type LeaseAttachments = HashMap<Vec<u8>, i64>;

/// Rebuilds the key index from every row of `Table::Kv`, in revision order, as etcd does: the
/// first put row of a key restores its generation (creation revision and version from the row);
/// later rows replay puts and tombstones; a tombstone of a key with no indexed put (its puts
/// were compacted away, and compaction kept the tombstone at the compact revision) restores a
/// deleted generation holding just it; a tombstone of a key already deleted is skipped. Also
/// returns
/// the lease each live key's latest version names.
fn rebuild_index(
    view: &dyn ReadView,
    current_revision: i64,
) -> Result<(TreeIndex, LeaseAttachments), StorageError> {
    let mut index = TreeIndex::new();
    let mut attachments = LeaseAttachments::new();
    view.try_scan(Table::Kv, &[], None, &mut |key, value| {
        restore_row(&mut index, &mut attachments, key, value, current_revision)?;
        Ok(true)
    })?;
    Ok((index, attachments))
}

fn restore_row(
    index: &mut TreeIndex,
    attachments: &mut LeaseAttachments,
    row_key: &[u8],
    value: &[u8],
    current_revision: i64,
) -> Result<(), StorageError> {
    let row = decode_row_key(row_key)?;
    if row.revision.main > current_revision {
        return Err(StorageError::corrupt(format!(
            "kv row {} is at revision {}, above the stored current revision {current_revision}",
            hex(row_key),
            row.revision
        )));
    }
    let kv = KeyValue::decode(value)
        .map_err(|err| StorageError::io(format!("decoding kv row {}", hex(row_key)), err))?;
    if row.tombstone || kv.lease == 0 {
        attachments.remove(&kv.key);
    } else {
        attachments.insert(kv.key.clone(), kv.lease);
    }
    let refused = |err: KeyIndexError| {
        StorageError::corrupt(format!(
            "kv row {} (key {:?}) does not follow the key's history: {err}",
            hex(row_key),
            String::from_utf8_lossy(&kv.key)
        ))
    };
    match index.key_index_mut(&kv.key) {
        Some(key_index) if row.tombstone => match key_index.tombstone(row.revision) {
            Ok(()) | Err(KeyIndexError::NotLive) => Ok(()),
            Err(err) => Err(refused(err)),
        },
        Some(key_index) => key_index.put(row.revision).map_err(refused),
        None if row.tombstone => {
            index.insert_restored(kv.key, KeyIndex::restore_tombstone(row.revision));
            Ok(())
        }
        None => {
            let restored = KeyIndex::restore(kv.create_revision, row.revision, kv.version);
            index.insert_restored(kv.key, restored);
            Ok(())
        }
    }
}
