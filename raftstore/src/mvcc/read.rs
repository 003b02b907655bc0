//! `Reader`: reads of the MVCC state at a revision — etcd's Range and Compare semantics.
//!
//! A reader sees the committed rows in the engine plus, inside a write, the changes that write
//! has made so far (its *pending* changes, all at main revision `pending_main`), so the reads of
//! a Txn see its own earlier writes. It never checks revisions against the compacted or current
//! revision: callers resolve and check the revision first.
//!
//! Range follows etcd's applier: `count` is every key in the range at the revision, regardless
//! of `limit` and of the min/max revision filters; when a sort order is set or any filter is, the
//! whole range is read, filtered, sorted and then cut to `limit`; otherwise `limit + 1` keys are
//! read to learn `more`. A sort target other than KEY with order NONE sorts ascending. Sorting is
//! stable (etcd's is stable for up to 12 results; beyond that its order of equal elements is
//! unspecified).

use std::cmp::Ordering;

use prost::Message;

use super::revision::{hex, Revision};
use super::tree_index::{range_end_of, TreeIndex};
use super::txn::Change;
use crate::engine::{ReadView, Table};
use crate::error::StorageError;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::{Compare, RangeRequest, RangeResponse, ResponseHeader};
use crate::pb::mvccpb::KeyValue;

/// A response header carrying only a revision; the API layer fills in the rest.
pub(super) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// Reads at a revision over the index, the engine, and a write's pending changes.
pub(super) struct Reader<'a> {
    pub index: &'a TreeIndex,
    pub engine: &'a dyn ReadView,
    /// Changes made so far by the write in progress, by sub revision.
    pub pending: &'a [Change],
    /// The main revision of the pending changes.
    pub pending_main: i64,
}

impl<'a> Reader<'a> {
    /// A reader of committed state only (`current` is the store's current revision).
    pub fn committed(index: &'a TreeIndex, engine: &'a dyn ReadView, current: i64) -> Self {
        Self {
            index,
            engine,
            pending: &[],
            pending_main: current.saturating_add(1),
        }
    }

    /// The key-value stored at `rev`.
    pub fn fetch(&self, rev: Revision) -> Result<KeyValue, StorageError> {
        if rev.main == self.pending_main {
            let change = usize::try_from(rev.sub)
                .ok()
                .and_then(|sub| self.pending.get(sub));
            return match change {
                Some(change) if change.is_put() => Ok(change.kv.clone()),
                _ => Err(StorageError::corrupt(format!(
                    "the key index points at revision {rev}, which the write in progress did not put"
                ))),
            };
        }
        let row_key = rev.to_key();
        let value = self.engine.get(Table::Kv, &row_key)?.ok_or_else(|| {
            StorageError::corrupt(format!(
                "the key index points at revision {rev} but kv row {} is missing",
                hex(&row_key)
            ))
        })?;
        KeyValue::decode(value.as_slice())
            .map_err(|err| StorageError::io(format!("decoding kv row {}", hex(&row_key)), err))
    }

    /// etcd's Range of `req` at `at_rev` (already resolved and checked); the header carries
    /// `header_revision`.
    pub fn range(
        &self,
        req: &RangeRequest,
        at_rev: i64,
        header_revision: i64,
    ) -> Result<RangeResponse, StorageError> {
        let end = range_end_of(&req.range_end);
        if req.count_only {
            let count = self.index.count(&req.key, end, at_rev);
            return Ok(RangeResponse {
                header: header(header_revision),
                kvs: Vec::new(),
                more: false,
                count: count as i64,
            });
        }
        let filtered = has_revision_filters(req);
        let read_whole_range = req.sort_order != SortOrder::None as i32 || filtered;
        let fetch_limit = if read_whole_range || req.limit <= 0 {
            0
        } else {
            usize::try_from(req.limit.saturating_add(1)).unwrap_or(usize::MAX)
        };
        let (revisions, total) = self.index.revisions(&req.key, end, at_rev, fetch_limit);
        let mut kvs = revisions
            .into_iter()
            .map(|rev| self.fetch(rev))
            .collect::<Result<Vec<_>, _>>()?;
        if filtered {
            kvs.retain(|kv| passes_revision_filters(req, kv));
        }
        sort_kvs(&mut kvs, req);
        let mut more = false;
        if req.limit > 0 && kvs.len() as u64 > req.limit as u64 {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Vec::new();
            }
        }
        Ok(RangeResponse {
            header: header(header_revision),
            kvs,
            more,
            count: total as i64,
        })
    }

    /// etcd's Compare at `at_rev`: every key in the range must satisfy it; a range with no key
    /// compares one all-zero key-value, except that a VALUE compare then fails.
    pub fn compare(&self, compare: &Compare, at_rev: i64) -> Result<bool, StorageError> {
        let target = CompareTarget::try_from(compare.target).ok();
        let needs_row = matches!(target, Some(CompareTarget::Value | CompareTarget::Lease));
        let mut any_key = false;
        for (_, seen) in self
            .index
            .range_at(&compare.key, range_end_of(&compare.range_end), at_rev)
        {
            any_key = true;
            let ordering = if needs_row {
                let kv = self.fetch(seen.modified)?;
                compare_ordering(compare, target, &CompareFields::of(&kv))
            } else {
                let fields = CompareFields {
                    version: seen.version,
                    create_revision: seen.created,
                    mod_revision: seen.modified.main,
                    lease: 0,
                    value: &[],
                };
                compare_ordering(compare, target, &fields)
            };
            if !result_holds(compare.result, ordering) {
                return Ok(false);
            }
        }
        if any_key {
            return Ok(true);
        }
        if target == Some(CompareTarget::Value) {
            return Ok(false);
        }
        let zero = CompareFields {
            version: 0,
            create_revision: 0,
            mod_revision: 0,
            lease: 0,
            value: &[],
        };
        Ok(result_holds(
            compare.result,
            compare_ordering(compare, target, &zero),
        ))
    }
}

/// The fields of a key-value a compare looks at.
struct CompareFields<'v> {
    version: i64,
    create_revision: i64,
    mod_revision: i64,
    lease: i64,
    value: &'v [u8],
}

impl<'v> CompareFields<'v> {
    fn of(kv: &'v KeyValue) -> Self {
        Self {
            version: kv.version,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            lease: kv.lease,
            value: &kv.value,
        }
    }
}

/// How the key-value compares to the compare's operand. A target union that does not match the
/// target compares against zero (or the empty value); an unknown target compares equal — both
/// as etcd does.
fn compare_ordering(
    compare: &Compare,
    target: Option<CompareTarget>,
    kv: &CompareFields<'_>,
) -> Ordering {
    let operand = |pick: fn(&TargetUnion) -> Option<i64>| {
        compare.target_union.as_ref().and_then(pick).unwrap_or(0)
    };
    match target {
        Some(CompareTarget::Value) => {
            let value: &[u8] = match &compare.target_union {
                Some(TargetUnion::Value(value)) => value,
                _ => &[],
            };
            kv.value.cmp(value)
        }
        Some(CompareTarget::Create) => kv.create_revision.cmp(&operand(|union| match union {
            TargetUnion::CreateRevision(rev) => Some(*rev),
            _ => None,
        })),
        Some(CompareTarget::Mod) => kv.mod_revision.cmp(&operand(|union| match union {
            TargetUnion::ModRevision(rev) => Some(*rev),
            _ => None,
        })),
        Some(CompareTarget::Version) => kv.version.cmp(&operand(|union| match union {
            TargetUnion::Version(version) => Some(*version),
            _ => None,
        })),
        Some(CompareTarget::Lease) => kv.lease.cmp(&operand(|union| match union {
            TargetUnion::Lease(lease) => Some(*lease),
            _ => None,
        })),
        None => Ordering::Equal,
    }
}

/// Whether `ordering` satisfies the compare's result; an unknown result holds (as in etcd).
fn result_holds(result: i32, ordering: Ordering) -> bool {
    match CompareResult::try_from(result) {
        Ok(CompareResult::Equal) => ordering == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ordering != Ordering::Equal,
        Ok(CompareResult::Greater) => ordering == Ordering::Greater,
        Ok(CompareResult::Less) => ordering == Ordering::Less,
        Err(_) => true,
    }
}

fn has_revision_filters(req: &RangeRequest) -> bool {
    req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
}

fn passes_revision_filters(req: &RangeRequest, kv: &KeyValue) -> bool {
    let too_new_mod = req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision;
    let too_old_mod = req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision;
    let too_new_create =
        req.max_create_revision != 0 && kv.create_revision > req.max_create_revision;
    let too_old_create =
        req.min_create_revision != 0 && kv.create_revision < req.min_create_revision;
    !(too_new_mod || too_old_mod || too_new_create || too_old_create)
}

/// Sorts as etcd's applier does. Unknown orders or targets (rejected by the API's validation)
/// leave the key order.
fn sort_kvs(kvs: &mut [KeyValue], req: &RangeRequest) {
    let Ok(target) = SortTarget::try_from(req.sort_target) else {
        return;
    };
    let mut order = SortOrder::try_from(req.sort_order).ok();
    if target != SortTarget::Key && order == Some(SortOrder::None) {
        order = Some(SortOrder::Ascend);
    }
    let by: fn(&KeyValue, &KeyValue) -> Ordering = match target {
        SortTarget::Key => |a, b| a.key.cmp(&b.key),
        SortTarget::Version => |a, b| a.version.cmp(&b.version),
        SortTarget::Create => |a, b| a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => |a, b| a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => |a, b| a.value.cmp(&b.value),
    };
    match order {
        // Key order is the order the index reads in.
        Some(SortOrder::Ascend) if target != SortTarget::Key => kvs.sort_by(by),
        Some(SortOrder::Descend) => kvs.sort_by(|a, b| by(b, a)),
        _ => {}
    }
}
