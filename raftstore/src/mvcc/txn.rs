//! `WriteTxn`: one write (a Put, a DeleteRange or a whole Txn) executed against the key index,
//! as etcd's applier and `storeTxnWrite` do it.
//!
//! Guarantees:
//! - every change gets revision `(begin + 1, n)` where `n` counts the changes before it, and is
//!   recorded in the key index at once, so later reads of the same write see it;
//! - reads inside a write are at `begin`, or `begin + 1` once the write changed something;
//! - a Txn's compares, on every level, are evaluated against the state before the Txn
//!   ([`txn_path`]), and its puts and ranges are checked against that state before anything runs
//!   ([`check_txn_puts`], [`check_txn_ranges`]) — so a Txn either fails with nothing changed or
//!   runs to the end;
//! - response headers carry only a revision: a Put's is `begin + 1`; a DeleteRange's is
//!   `begin + 1` once the write changed something, else `begin`; a Range's is its read revision;
//!   a nested Txn's header is empty (revision 0), exactly as etcd leaves it.
//!
//! Index updates can only fail on a broken invariant (a revision not after the key's last
//! change): those are reported as corrupt storage.

use super::key_index::KeyIndexError;
use super::read::{header, Reader};
use super::revision::Revision;
use super::tree_index::{range_end_of, TreeIndex};
use crate::engine::ReadView;
use crate::error::{EtcdError, StorageError};
use crate::pb::etcdserverpb::{
    request_op, response_op, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};

/// One change made by a write.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Change {
    pub kind: EventType,
    /// For a put, the new key-value; for a delete, only `key` and `mod_revision` (the row etcd's
    /// watchers see, and the tombstone row's value).
    pub kv: KeyValue,
    /// The key-value before the change, when the key existed.
    pub prev: Option<KeyValue>,
}

impl Change {
    pub fn is_put(&self) -> bool {
        self.kind == EventType::Put
    }

    pub fn into_event(self) -> Event {
        Event {
            r#type: self.kind as i32,
            kv: Some(self.kv),
            prev_kv: self.prev,
        }
    }
}

fn index_failure(key: &[u8], err: KeyIndexError) -> StorageError {
    StorageError::corrupt(format!(
        "key index refused a change of key {:?}: {err}",
        String::from_utf8_lossy(key)
    ))
}

/// A write in progress at revision `begin + 1`.
pub(super) struct WriteTxn<'a> {
    index: &'a mut TreeIndex,
    engine: &'a dyn ReadView,
    begin: i64,
    changes: Vec<Change>,
}

impl<'a> WriteTxn<'a> {
    /// A write on a store whose current revision is `begin`.
    pub fn new(index: &'a mut TreeIndex, engine: &'a dyn ReadView, begin: i64) -> Self {
        Self {
            index,
            engine,
            begin,
            changes: Vec::new(),
        }
    }

    pub fn into_changes(self) -> Vec<Change> {
        self.changes
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            index: &*self.index,
            engine: self.engine,
            pending: &self.changes,
            pending_main: self.begin + 1,
        }
    }

    /// The revision reads see now: `begin`, or `begin + 1` once this write changed something.
    fn read_revision(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin
        } else {
            self.begin + 1
        }
    }

    fn next_revision(&self) -> Revision {
        Revision::new(self.begin + 1, self.changes.len() as i64)
    }

    /// A Range inside the write; its revision was checked by [`check_txn_ranges`].
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StorageError> {
        let current = self.read_revision();
        let at_rev = if req.revision <= 0 {
            current
        } else {
            req.revision
        };
        self.reader().range(req, at_rev, current)
    }

    /// A Put whose lease and `ignore_*` flags were already checked. Should a flag find no
    /// previous key-value anyway (only a request that failed validation can do this), the empty
    /// value and no lease are used.
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, StorageError> {
        let rev = self.next_revision();
        let (prev, created, version) = match self.index.get(&req.key, rev.main) {
            Some(seen) => (
                Some(self.reader().fetch(seen.modified)?),
                seen.created,
                seen.version,
            ),
            None => (None, rev.main, 0),
        };
        let value = if req.ignore_value {
            prev.as_ref().map(|kv| kv.value.clone()).unwrap_or_default()
        } else {
            req.value.clone()
        };
        let lease = if req.ignore_lease {
            prev.as_ref().map_or(0, |kv| kv.lease)
        } else {
            req.lease
        };
        self.index
            .put(&req.key, rev)
            .map_err(|err| index_failure(&req.key, err))?;
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: created,
            mod_revision: rev.main,
            version: version + 1,
            value,
            lease,
        };
        let response = PutResponse {
            header: header(rev.main),
            prev_kv: if req.prev_kv { prev.clone() } else { None },
        };
        self.changes.push(Change {
            kind: EventType::Put,
            kv,
            prev,
        });
        Ok(response)
    }

    /// A DeleteRange: tombstones every key of the range that exists now.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, StorageError> {
        let at_rev = self.read_revision();
        let doomed: Vec<(Vec<u8>, Revision)> = self
            .index
            .range_at(&req.key, range_end_of(&req.range_end), at_rev)
            .map(|(key, seen)| (key.to_vec(), seen.modified))
            .collect();
        let deleted = doomed.len() as i64;
        let mut prev_kvs = Vec::new();
        for (key, modified) in doomed {
            let prev = self.reader().fetch(modified)?;
            let rev = self.next_revision();
            self.index
                .tombstone(&key, rev)
                .map_err(|err| index_failure(&key, err))?;
            if req.prev_kv {
                prev_kvs.push(prev.clone());
            }
            let kv = KeyValue {
                key,
                mod_revision: rev.main,
                ..Default::default()
            };
            self.changes.push(Change {
                kind: EventType::Delete,
                kv,
                prev: Some(prev),
            });
        }
        Ok(DeleteRangeResponse {
            header: header(self.read_revision()),
            deleted,
            prev_kvs,
        })
    }

    /// Runs `req` along `path` (from [`txn_path`], checked). The top-level header is left for
    /// the caller; nested Txns get etcd's empty header.
    pub fn txn(&mut self, req: &TxnRequest, path: &[bool]) -> Result<TxnResponse, StorageError> {
        let mut cursor = 0;
        self.txn_at(req, path, &mut cursor)
    }

    fn txn_at(
        &mut self,
        req: &TxnRequest,
        path: &[bool],
        cursor: &mut usize,
    ) -> Result<TxnResponse, StorageError> {
        let succeeded = *path
            .get(*cursor)
            .expect("the txn path has an entry for every txn on the taken branches");
        *cursor += 1;
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(request_op::Request::RequestRange(range)) => {
                    Some(response_op::Response::ResponseRange(self.range(range)?))
                }
                Some(request_op::Request::RequestPut(put)) => {
                    Some(response_op::Response::ResponsePut(self.put(put)?))
                }
                Some(request_op::Request::RequestDeleteRange(delete)) => Some(
                    response_op::Response::ResponseDeleteRange(self.delete_range(delete)?),
                ),
                Some(request_op::Request::RequestTxn(nested)) => Some(
                    response_op::Response::ResponseTxn(self.txn_at(nested, path, cursor)?),
                ),
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse {
            header: Some(ResponseHeader::default()),
            succeeded,
            responses,
        })
    }
}

/// Evaluates the compares of `req` and of every nested Txn on the branches taken, all against
/// the state `reader` sees at `at_rev`; returns the outcomes in depth-first order.
pub(super) fn txn_path(
    reader: &Reader<'_>,
    req: &TxnRequest,
    at_rev: i64,
) -> Result<Vec<bool>, StorageError> {
    let mut path = Vec::new();
    push_path(reader, req, at_rev, &mut path)?;
    Ok(path)
}

fn push_path(
    reader: &Reader<'_>,
    req: &TxnRequest,
    at_rev: i64,
    path: &mut Vec<bool>,
) -> Result<(), StorageError> {
    let mut succeeded = true;
    for compare in &req.compare {
        if !reader.compare(compare, at_rev)? {
            succeeded = false;
            break;
        }
    }
    path.push(succeeded);
    for op in if succeeded {
        &req.success
    } else {
        &req.failure
    } {
        if let Some(request_op::Request::RequestTxn(nested)) = &op.request {
            push_path(reader, nested, at_rev, path)?;
        }
    }
    Ok(())
}

/// Visits every non-Txn op on the branches `path` takes, depth first, in op order.
fn visit_taken_ops<E>(
    req: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
    visit: &mut dyn FnMut(&RequestOp) -> Result<(), E>,
) -> Result<(), E> {
    let succeeded = *path
        .get(*cursor)
        .expect("the txn path has an entry for every txn on the taken branches");
    *cursor += 1;
    for op in if succeeded {
        &req.success
    } else {
        &req.failure
    } {
        match &op.request {
            Some(request_op::Request::RequestTxn(nested)) => {
                visit_taken_ops(nested, path, cursor, visit)?
            }
            _ => visit(op)?,
        }
    }
    Ok(())
}

/// etcd's `checkPut` over the taken branches, against the state before the Txn: a put with
/// `ignore_value` or `ignore_lease` needs the key to exist (else KeyNotFound), and a non-zero
/// lease must exist (else LeaseNotFound).
pub(super) fn check_txn_puts(
    index: &TreeIndex,
    req: &TxnRequest,
    path: &[bool],
    at_rev: i64,
    lease_exists: &dyn Fn(i64) -> bool,
) -> Result<(), EtcdError> {
    let mut cursor = 0;
    visit_taken_ops(req, path, &mut cursor, &mut |op| {
        let Some(request_op::Request::RequestPut(put)) = &op.request else {
            return Ok(());
        };
        if (put.ignore_value || put.ignore_lease) && index.get(&put.key, at_rev).is_none() {
            return Err(EtcdError::KeyNotFound);
        }
        if put.lease != 0 && !lease_exists(put.lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        Ok(())
    })
}

/// etcd's `checkRange` over the taken branches: a range at a revision above `current` is a
/// future revision, one below `compacted` (etcd's compact revision, -1 when never compacted) is
/// compacted; revision 0 always passes.
pub(super) fn check_txn_ranges(
    req: &TxnRequest,
    path: &[bool],
    current: i64,
    compacted: i64,
) -> Result<(), EtcdError> {
    let mut cursor = 0;
    visit_taken_ops(req, path, &mut cursor, &mut |op| {
        let Some(request_op::Request::RequestRange(range)) = &op.request else {
            return Ok(());
        };
        match range.revision {
            0 => Ok(()),
            rev if rev > current => Err(EtcdError::FutureRevision),
            rev if rev < compacted => Err(EtcdError::Compacted),
            _ => Ok(()),
        }
    })
}
