//! Request checks done at the API edge before proposing, exactly as etcd's v3rpc does them.
//!
//! - Range: empty key → EmptyKey; a sort order or target outside its enum → InvalidSortOption.
//! - Put: empty key → EmptyKey; `ignore_value` with a value → ValueProvided; `ignore_lease`
//!   with a lease → LeaseProvided.
//! - DeleteRange: empty key → EmptyKey.
//! - Txn (etcd's `checkTxnRequest`, then `checkIntervals` on success and on failure):
//!   more than `max_txn_ops` in compare, success or failure → TooManyOps, where a nested Txn's
//!   budget is what its parent left (`max - parent's largest list`); a compare with an empty key
//!   → EmptyKey; each op checked as above, recursively; an op with no request → KeyNotFound.
//!   Then duplicates: within one branch (nested Txns included), a key put twice, or a put inside
//!   a range deleted on the same branch or an outer level → DuplicateKey; the then and else
//!   branches of one nested Txn may put the same key. As in etcd, a delete whose `range_end` is
//!   not after its key (including `"\0"`, "every key from here") overlaps no put.
//!
//! Checks stop at the first failure, in etcd's order.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::error::EtcdError;
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::{
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

pub fn check_range(req: &RangeRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if SortOrder::try_from(req.sort_order).is_err()
        || SortTarget::try_from(req.sort_target).is_err()
    {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

pub fn check_put(req: &PutRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete_range(req: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

pub fn check_txn(req: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_request(req, max_txn_ops)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn_request(req: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    let largest = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    if largest > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if req.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        check_request_op(op, max_txn_ops - largest)?;
    }
    Ok(())
}

fn check_request_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(request_op::Request::RequestRange(range)) => check_range(range),
        Some(request_op::Request::RequestPut(put)) => check_put(put),
        Some(request_op::Request::RequestDeleteRange(delete)) => check_delete_range(delete),
        Some(request_op::Request::RequestTxn(txn)) => check_txn_request(txn, max_txn_ops),
        None => Err(EtcdError::KeyNotFound),
    }
}

/// etcd's `checkIntervals`: the keys put and the ranges deleted by `ops` and the Txns nested in
/// them, or DuplicateKey.
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, DeletedRanges), EtcdError> {
    let mut deleted = DeletedRanges::default();
    for op in ops {
        if let Some(request_op::Request::RequestDeleteRange(delete)) = &op.request {
            deleted.insert_delete(&delete.key, &delete.range_end);
        }
    }
    let mut puts: BTreeSet<Vec<u8>> = BTreeSet::new();
    for op in ops {
        let Some(request_op::Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let (puts_then, deleted_then) = check_intervals(&nested.success)?;
        let (puts_else, deleted_else) = check_intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted.contains(key) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        puts.extend(puts_then.iter().cloned());
        for key in puts_else {
            // The then and else branches exclude each other: the same key in both is fine.
            if (puts.contains(&key) && !puts_then.contains(&key)) || deleted.contains(&key) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(key);
        }
        deleted.extend(deleted_then);
        deleted.extend(deleted_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(put)) = &op.request else {
            continue;
        };
        if puts.contains(&put.key) || deleted.contains(&put.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, deleted))
}

/// The union of deleted key ranges, as disjoint half-open intervals `begin → end`.
#[derive(Debug, Default)]
struct DeletedRanges {
    intervals: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl DeletedRanges {
    /// Adds a DeleteRange's keys: the single key when `range_end` is empty, else
    /// `[key, range_end)`, which is empty when `range_end <= key` (as in etcd's interval tree,
    /// where such a range overlaps nothing).
    fn insert_delete(&mut self, key: &[u8], range_end: &[u8]) {
        if range_end.is_empty() {
            let mut end = Vec::with_capacity(key.len() + 1);
            end.extend_from_slice(key);
            end.push(0);
            self.insert(key.to_vec(), end);
        } else {
            self.insert(key.to_vec(), range_end.to_vec());
        }
    }

    fn insert(&mut self, mut begin: Vec<u8>, mut end: Vec<u8>) {
        if end <= begin {
            return;
        }
        let overlapping_before = self
            .intervals
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(begin.as_slice())))
            .next_back()
            .filter(|(_, before_end)| before_end.as_slice() >= begin.as_slice())
            .map(|(before_begin, _)| before_begin.clone());
        if let Some(before_begin) = overlapping_before {
            if let Some(before_end) = self.intervals.remove(&before_begin) {
                end = end.max(before_end);
            }
            begin = before_begin;
        }
        loop {
            let next = self
                .intervals
                .range::<[u8], _>((
                    Bound::Included(begin.as_slice()),
                    Bound::Included(end.as_slice()),
                ))
                .next()
                .map(|(next_begin, _)| next_begin.clone());
            let Some(next_begin) = next else {
                break;
            };
            if let Some(next_end) = self.intervals.remove(&next_begin) {
                end = end.max(next_end);
            }
        }
        self.intervals.insert(begin, end);
    }

    fn extend(&mut self, other: DeletedRanges) {
        for (begin, end) in other.intervals {
            self.insert(begin, end);
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.intervals
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .is_some_and(|(_, end)| key < end.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::Compare;

    const MAX_OPS: usize = 128;

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }
    }

    fn delete(key: &str, range_end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: key.into(),
                    range_end: range_end.into(),
                    ..Default::default()
                },
            )),
        }
    }

    fn range(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
        }
    }

    fn txn(success: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure: vec![],
        }
    }

    fn compare(key: &str) -> Compare {
        Compare {
            key: key.into(),
            ..Default::default()
        }
    }

    #[test]
    fn range_without_key_is_refused() {
        assert_eq!(
            check_range(&RangeRequest::default()),
            Err(EtcdError::EmptyKey)
        );
    }

    #[test]
    fn range_with_unknown_sort_order_or_target_is_refused() {
        let order = RangeRequest {
            key: b"k".to_vec(),
            sort_order: 3,
            ..Default::default()
        };
        assert_eq!(check_range(&order), Err(EtcdError::InvalidSortOption));
        let target = RangeRequest {
            key: b"k".to_vec(),
            sort_target: 5,
            ..Default::default()
        };
        assert_eq!(check_range(&target), Err(EtcdError::InvalidSortOption));
        let known = RangeRequest {
            key: b"k".to_vec(),
            sort_order: 2,
            sort_target: 4,
            ..Default::default()
        };
        assert_eq!(check_range(&known), Ok(()));
    }

    #[test]
    fn put_checks_key_value_and_lease_flags() {
        assert_eq!(check_put(&PutRequest::default()), Err(EtcdError::EmptyKey));
        let with_value = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(check_put(&with_value), Err(EtcdError::ValueProvided));
        let with_lease = PutRequest {
            key: b"k".to_vec(),
            lease: 7,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(check_put(&with_lease), Err(EtcdError::LeaseProvided));
        let plain_flags = PutRequest {
            key: b"k".to_vec(),
            ignore_value: true,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(check_put(&plain_flags), Ok(()));
    }

    #[test]
    fn delete_range_without_key_is_refused() {
        assert_eq!(
            check_delete_range(&DeleteRangeRequest::default()),
            Err(EtcdError::EmptyKey)
        );
    }

    #[test]
    fn txn_with_more_ops_than_allowed_is_refused() {
        let ops: Vec<RequestOp> = (0..=MAX_OPS).map(|i| range(&format!("k{i}"))).collect();
        assert_eq!(
            check_txn(&txn(ops.clone()), MAX_OPS),
            Err(EtcdError::TooManyOps)
        );
        let failure = TxnRequest {
            failure: ops,
            ..Default::default()
        };
        assert_eq!(check_txn(&failure, MAX_OPS), Err(EtcdError::TooManyOps));
        let compares = TxnRequest {
            compare: (0..=MAX_OPS).map(|_| compare("k")).collect(),
            ..Default::default()
        };
        assert_eq!(check_txn(&compares, MAX_OPS), Err(EtcdError::TooManyOps));
        let exactly: Vec<RequestOp> = (0..MAX_OPS).map(|i| range(&format!("k{i}"))).collect();
        assert_eq!(check_txn(&txn(exactly), MAX_OPS), Ok(()));
    }

    #[test]
    fn nested_txn_gets_the_budget_its_parent_left() {
        // The parent uses 2 of 4: a nested txn may hold 2 ops but not 3.
        let fits = txn(vec![
            nested(vec![range("a"), range("b")], vec![]),
            range("c"),
        ]);
        assert_eq!(check_txn(&fits, 4), Ok(()));
        let too_big = txn(vec![
            nested(vec![range("a"), range("b"), range("d")], vec![]),
            range("c"),
        ]);
        assert_eq!(check_txn(&too_big, 4), Err(EtcdError::TooManyOps));
    }

    #[test]
    fn txn_compare_without_key_is_refused() {
        let request = TxnRequest {
            compare: vec![compare("")],
            ..Default::default()
        };
        assert_eq!(check_txn(&request, MAX_OPS), Err(EtcdError::EmptyKey));
    }

    #[test]
    fn txn_ops_are_checked_recursively() {
        let bad_put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        let op = RequestOp {
            request: Some(request_op::Request::RequestPut(bad_put)),
        };
        assert_eq!(
            check_txn(&txn(vec![nested(vec![], vec![op])]), MAX_OPS),
            Err(EtcdError::ValueProvided)
        );
        assert_eq!(
            check_txn(&txn(vec![nested(vec![range("")], vec![])]), MAX_OPS),
            Err(EtcdError::EmptyKey)
        );
    }

    #[test]
    fn txn_op_without_request_is_key_not_found() {
        let empty = RequestOp { request: None };
        assert_eq!(
            check_txn(&txn(vec![empty]), MAX_OPS),
            Err(EtcdError::KeyNotFound)
        );
    }

    #[test]
    fn same_key_put_twice_in_a_branch_is_duplicate() {
        assert_eq!(
            check_txn(&txn(vec![put("a"), put("a")]), MAX_OPS),
            Err(EtcdError::DuplicateKey)
        );
    }

    #[test]
    fn same_key_in_success_and_failure_is_allowed() {
        let request = TxnRequest {
            compare: vec![],
            success: vec![put("a")],
            failure: vec![put("a")],
        };
        assert_eq!(check_txn(&request, MAX_OPS), Ok(()));
    }

    #[test]
    fn put_inside_a_deleted_range_is_duplicate() {
        assert_eq!(
            check_txn(&txn(vec![delete("a", "c"), put("b")]), MAX_OPS),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![put("b"), delete("a", "c")]), MAX_OPS),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![delete("b", ""), put("b")]), MAX_OPS),
            Err(EtcdError::DuplicateKey)
        );
    }

    #[test]
    fn put_outside_a_deleted_range_is_allowed() {
        assert_eq!(
            check_txn(&txn(vec![delete("a", "c"), put("c")]), MAX_OPS),
            Ok(())
        );
        assert_eq!(
            check_txn(&txn(vec![delete("b", ""), put("ba")]), MAX_OPS),
            Ok(())
        );
        assert_eq!(
            check_txn(&txn(vec![delete("a", "c"), delete("b", "")]), MAX_OPS),
            Ok(())
        );
    }

    #[test]
    fn delete_from_key_with_nul_end_overlaps_no_put_as_in_etcd() {
        assert_eq!(
            check_txn(&txn(vec![delete("a", "\0"), put("b")]), MAX_OPS),
            Ok(())
        );
        assert_eq!(
            check_txn(&txn(vec![delete("c", "a"), put("c")]), MAX_OPS),
            Ok(())
        );
    }

    #[test]
    fn nested_put_of_a_key_put_outside_is_duplicate() {
        let request = txn(vec![put("a"), nested(vec![put("a")], vec![])]);
        assert_eq!(check_txn(&request, MAX_OPS), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn nested_put_inside_an_outer_delete_is_duplicate() {
        let request = txn(vec![delete("a", "z"), nested(vec![], vec![put("m")])]);
        assert_eq!(check_txn(&request, MAX_OPS), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn outer_put_inside_a_nested_delete_is_duplicate() {
        let request = txn(vec![nested(vec![delete("a", "z")], vec![]), put("m")]);
        assert_eq!(check_txn(&request, MAX_OPS), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn nested_then_and_else_may_put_the_same_key() {
        let request = txn(vec![nested(vec![put("a")], vec![put("a")])]);
        assert_eq!(check_txn(&request, MAX_OPS), Ok(()));
    }

    #[test]
    fn two_nested_txns_putting_the_same_key_are_duplicate() {
        let request = txn(vec![
            nested(vec![put("a")], vec![]),
            nested(vec![], vec![put("a")]),
        ]);
        assert_eq!(check_txn(&request, MAX_OPS), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn put_in_a_later_nested_txn_inside_an_earlier_nested_delete_is_duplicate() {
        let request = txn(vec![
            nested(vec![delete("a", "c")], vec![]),
            nested(vec![put("b")], vec![]),
        ]);
        assert_eq!(check_txn(&request, MAX_OPS), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn put_in_an_earlier_nested_txn_than_the_nested_delete_passes_as_in_etcd() {
        // etcd checks a nested txn's puts only against deletes collected so far.
        let request = txn(vec![
            nested(vec![put("b")], vec![]),
            nested(vec![delete("a", "c")], vec![]),
        ]);
        assert_eq!(check_txn(&request, MAX_OPS), Ok(()));
    }

    #[test]
    fn deep_nesting_is_checked() {
        let inner = nested(vec![put("k")], vec![]);
        let middle = nested(vec![inner], vec![]);
        let request = txn(vec![middle, put("k")]);
        assert_eq!(check_txn(&request, MAX_OPS), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn failure_branch_is_checked_for_duplicates() {
        let request = TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![put("a"), put("a")],
        };
        assert_eq!(check_txn(&request, MAX_OPS), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn deleted_ranges_merge_and_answer_membership() {
        let mut ranges = DeletedRanges::default();
        ranges.insert(b"b".to_vec(), b"d".to_vec());
        ranges.insert(b"f".to_vec(), b"h".to_vec());
        ranges.insert(b"c".to_vec(), b"g".to_vec());
        assert_eq!(ranges.intervals.len(), 1);
        for key in ["b", "c", "d", "e", "f", "g", "gz"] {
            assert!(ranges.contains(key.as_bytes()), "{key}");
        }
        for key in ["a", "h", "i"] {
            assert!(!ranges.contains(key.as_bytes()), "{key}");
        }
    }
}
