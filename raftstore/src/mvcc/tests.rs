//! Behaviour of `MvccStore` against etcd's rules: revisions, Range options, Put options,
//! DeleteRange, Txn compares and nesting, compaction, and reopening from the engine.

use std::sync::Arc;

use super::meta;
use super::revision::{decode_row_key, Revision};
use super::store::{ApplyOutcome, CommandResponse, MvccStore};
use crate::engine::memory::MemoryEngine;
use crate::engine::{KvEngine, ReadView, Table, WriteBatch};
use crate::error::EtcdError;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::{
    request_op, response_op, CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader,
    TxnRequest, TxnResponse,
};
use crate::pb::k3rspb::raft_command::Request;
use crate::pb::mvccpb::{event::EventType, KeyValue};

struct Harness {
    engine: Arc<MemoryEngine>,
    store: MvccStore,
    next_index: u64,
}

impl Harness {
    fn new() -> Self {
        let engine = Arc::new(MemoryEngine::new());
        let store = MvccStore::open(engine.clone()).expect("open empty store");
        Self {
            engine,
            store,
            next_index: 1,
        }
    }

    fn apply(&mut self, request: Request) -> Result<ApplyOutcome, EtcdError> {
        let index = self.next_index;
        self.next_index += 1;
        self.store
            .apply(index, Some(&request))
            .expect("no storage failure")
    }

    fn put(&mut self, key: &str, value: &str) -> ApplyOutcome {
        self.apply(Request::Put(put_request(key, value)))
            .expect("put succeeds")
    }

    fn delete(&mut self, key: &str, range_end: &str) -> ApplyOutcome {
        let request = DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            prev_kv: false,
        };
        self.apply(Request::DeleteRange(request))
            .expect("delete succeeds")
    }

    fn txn(&mut self, request: TxnRequest) -> Result<(TxnResponse, ApplyOutcome), EtcdError> {
        let outcome = self.apply(Request::Txn(request))?;
        match outcome.response.clone() {
            Some(CommandResponse::Txn(response)) => Ok((response, outcome)),
            other => panic!("txn answered {other:?}"),
        }
    }

    fn compact(&mut self, revision: i64) -> Result<ApplyOutcome, EtcdError> {
        self.apply(Request::Compaction(CompactionRequest {
            revision,
            physical: false,
        }))
    }

    fn range(&self, request: RangeRequest) -> Result<RangeResponse, EtcdError> {
        self.store.range(&request)
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        let response = self.range(range_request(key, "")).expect("range succeeds");
        response.kvs.into_iter().next()
    }

    fn reopen(&mut self) {
        self.store =
            MvccStore::open(self.engine.clone() as Arc<dyn KvEngine>).expect("reopen store");
    }

    fn kv_row_revisions(&self) -> Vec<(Revision, bool)> {
        let mut rows = Vec::new();
        self.engine
            .scan(Table::Kv, &[], None, &mut |key, _| {
                let row = decode_row_key(key).expect("valid row key");
                rows.push((row.revision, row.tombstone));
                true
            })
            .expect("scan");
        rows
    }
}

fn put_request(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn range_request(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..Default::default()
    }
}

fn all_keys() -> RangeRequest {
    range_request("\0", "\0")
}

fn keys_of(response: &RangeResponse) -> Vec<String> {
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).expect("utf8 test keys"))
        .collect()
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put_request(key, value))),
    }
}

fn delete_op(key: &str, range_end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.into(),
                range_end: range_end.into(),
                prev_kv: true,
            },
        )),
    }
}

fn range_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(range_request(key, ""))),
    }
}

fn txn_op(request: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestTxn(request)),
    }
}

fn compare(
    key: &str,
    result: CompareResult,
    target: CompareTarget,
    operand: TargetUnion,
) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        target_union: Some(operand),
        range_end: Vec::new(),
    }
}

fn only_header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn range_response(op: &response_op::Response) -> &RangeResponse {
    match op {
        response_op::Response::ResponseRange(range) => range,
        other => panic!("expected a range response, got {other:?}"),
    }
}

// ---- revisions ----

#[test]
fn empty_store_is_at_revision_one() {
    let harness = Harness::new();
    assert_eq!(harness.store.current_revision(), 1);
    assert_eq!(harness.store.compact_revision(), 0);
    assert_eq!(harness.store.consistent_index(), 0);
    let response = harness.range(all_keys()).expect("range");
    assert_eq!(response.header, only_header(1));
    assert!(response.kvs.is_empty());
}

#[test]
fn each_put_bumps_the_revision_by_one() {
    let mut harness = Harness::new();
    assert_eq!(harness.put("a", "1").revision, 2);
    assert_eq!(harness.put("a", "2").revision, 3);
    assert_eq!(harness.put("b", "1").revision, 4);
    assert_eq!(harness.store.current_revision(), 4);
}

#[test]
fn delete_of_nothing_does_not_bump_the_revision() {
    let mut harness = Harness::new();
    harness.put("a", "1");
    let outcome = harness.delete("zzz", "");
    assert_eq!(outcome.revision, 2);
    assert!(outcome.events.is_empty());
    match outcome.response {
        Some(CommandResponse::DeleteRange(response)) => {
            assert_eq!(response.deleted, 0);
            assert_eq!(response.header, only_header(2));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn read_only_txn_does_not_bump_the_revision() {
    let mut harness = Harness::new();
    harness.put("a", "1");
    let (response, outcome) = harness
        .txn(TxnRequest {
            compare: vec![],
            success: vec![range_op("a")],
            failure: vec![],
        })
        .expect("txn");
    assert_eq!(outcome.revision, 2);
    assert_eq!(response.header, only_header(2));
    assert_eq!(harness.store.current_revision(), 2);
}

#[test]
fn txn_deleting_nothing_does_not_bump_the_revision() {
    let mut harness = Harness::new();
    harness.put("a", "1");
    let (response, outcome) = harness
        .txn(TxnRequest {
            compare: vec![],
            success: vec![delete_op("x", "")],
            failure: vec![],
        })
        .expect("txn");
    assert_eq!(outcome.revision, 2);
    assert_eq!(response.header, only_header(2));
}

#[test]
fn failed_request_records_the_consistent_index_but_not_a_revision() {
    let mut harness = Harness::new();
    let request = PutRequest {
        key: b"a".to_vec(),
        lease: 5,
        ..Default::default()
    };
    assert_eq!(
        harness.apply(Request::Put(request)),
        Err(EtcdError::LeaseNotFound)
    );
    assert_eq!(harness.store.consistent_index(), 1);
    assert_eq!(harness.store.current_revision(), 1);
    harness.reopen();
    assert_eq!(harness.store.consistent_index(), 1);
}

#[test]
fn entry_without_command_records_the_consistent_index() {
    let mut harness = Harness::new();
    let outcome = harness
        .store
        .apply(1, None)
        .expect("storage")
        .expect("apply");
    assert_eq!(
        outcome,
        ApplyOutcome {
            response: None,
            events: Vec::new(),
            revision: 1
        }
    );
    assert_eq!(harness.store.consistent_index(), 1);
    harness.reopen();
    assert_eq!(harness.store.consistent_index(), 1);
}

#[test]
fn entries_at_or_below_the_consistent_index_are_skipped() {
    let mut harness = Harness::new();
    let request = Request::Put(put_request("a", "1"));
    harness
        .store
        .apply(5, Some(&request))
        .expect("storage")
        .expect("put");
    let replay = harness
        .store
        .apply(5, Some(&request))
        .expect("storage")
        .expect("skip");
    assert_eq!(replay, ApplyOutcome::skipped(2));
    let older = harness
        .store
        .apply(3, Some(&request))
        .expect("storage")
        .expect("skip");
    assert_eq!(older, ApplyOutcome::skipped(2));
    assert_eq!(harness.store.current_revision(), 2);
    assert_eq!(harness.get("a").expect("a exists").version, 1);
}

#[test]
fn apply_writes_one_unsynced_batch() {
    let mut harness = Harness::new();
    harness.put("a", "1");
    assert_eq!(harness.engine.unsynced_batches(), 1);
    harness.delete("a", "");
    assert_eq!(harness.engine.unsynced_batches(), 2);
}

// ---- range ----

fn abc_store() -> Harness {
    let mut harness = Harness::new();
    harness.put("a", "3"); // rev 2
    harness.put("b", "2"); // rev 3
    harness.put("c", "1"); // rev 4
    harness.put("a", "4"); // rev 5
    harness
}

#[test]
fn range_without_end_reads_one_key() {
    let harness = abc_store();
    let response = harness.range(range_request("a", "")).expect("range");
    assert_eq!(keys_of(&response), ["a"]);
    assert_eq!(response.count, 1);
    let kv = &response.kvs[0];
    assert_eq!(
        (
            kv.value.as_slice(),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        ),
        (&b"4"[..], 2, 5, 2)
    );
}

#[test]
fn range_end_nul_reads_every_key_from_key() {
    let harness = abc_store();
    assert_eq!(
        keys_of(&harness.range(range_request("b", "\0")).expect("range")),
        ["b", "c"]
    );
    assert_eq!(
        keys_of(&harness.range(all_keys()).expect("range")),
        ["a", "b", "c"]
    );
}

#[test]
fn range_end_not_after_key_is_empty() {
    let harness = abc_store();
    let response = harness.range(range_request("c", "a")).expect("range");
    assert!(response.kvs.is_empty());
    assert_eq!(response.count, 0);
    assert!(harness
        .range(range_request("b", "b"))
        .expect("range")
        .kvs
        .is_empty());
}

#[test]
fn range_header_is_the_current_revision_even_in_the_past() {
    let harness = abc_store();
    let response = harness
        .range(RangeRequest {
            revision: 3,
            ..all_keys()
        })
        .expect("range");
    assert_eq!(response.header, only_header(5));
    assert_eq!(keys_of(&response), ["a", "b"]);
    assert_eq!(response.kvs[0].value, b"3");
}

#[test]
fn range_limit_cuts_and_sets_more_but_count_is_all() {
    let harness = abc_store();
    let response = harness
        .range(RangeRequest {
            limit: 2,
            ..all_keys()
        })
        .expect("range");
    assert_eq!(keys_of(&response), ["a", "b"]);
    assert!(response.more);
    assert_eq!(response.count, 3);
    let exact = harness
        .range(RangeRequest {
            limit: 3,
            ..all_keys()
        })
        .expect("range");
    assert!(!exact.more);
    assert_eq!(exact.kvs.len(), 3);
}

#[test]
fn range_count_only_returns_no_kvs() {
    let harness = abc_store();
    let response = harness
        .range(RangeRequest {
            count_only: true,
            limit: 1,
            ..all_keys()
        })
        .expect("range");
    assert!(response.kvs.is_empty());
    assert_eq!(response.count, 3);
    assert!(!response.more);
}

#[test]
fn range_keys_only_drops_values() {
    let harness = abc_store();
    let response = harness
        .range(RangeRequest {
            keys_only: true,
            ..all_keys()
        })
        .expect("range");
    assert_eq!(keys_of(&response), ["a", "b", "c"]);
    assert!(response
        .kvs
        .iter()
        .all(|kv| kv.value.is_empty() && kv.mod_revision > 0));
}

#[test]
fn range_sorts_by_each_target_and_order() {
    let harness = abc_store();
    let sorted = |order: SortOrder, target: SortTarget| {
        let request = RangeRequest {
            sort_order: order as i32,
            sort_target: target as i32,
            ..all_keys()
        };
        keys_of(&harness.range(request).expect("range"))
    };
    assert_eq!(sorted(SortOrder::Descend, SortTarget::Key), ["c", "b", "a"]);
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Key), ["a", "b", "c"]);
    assert_eq!(
        sorted(SortOrder::Ascend, SortTarget::Value),
        ["c", "b", "a"]
    );
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Value),
        ["a", "b", "c"]
    );
    assert_eq!(sorted(SortOrder::Ascend, SortTarget::Mod), ["b", "c", "a"]);
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Create),
        ["c", "b", "a"]
    );
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Version),
        ["a", "b", "c"]
    );
    // Equal versions keep key order, ascending.
    assert_eq!(
        sorted(SortOrder::Ascend, SortTarget::Version),
        ["b", "c", "a"]
    );
}

#[test]
fn range_sort_target_without_order_sorts_ascending() {
    let harness = abc_store();
    let request = RangeRequest {
        sort_target: SortTarget::Mod as i32,
        ..all_keys()
    };
    assert_eq!(
        keys_of(&harness.range(request).expect("range")),
        ["b", "c", "a"]
    );
}

#[test]
fn range_sorted_with_limit_reads_everything_before_cutting() {
    let harness = abc_store();
    let request = RangeRequest {
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Key as i32,
        limit: 1,
        ..all_keys()
    };
    let response = harness.range(request).expect("range");
    assert_eq!(keys_of(&response), ["c"]);
    assert!(response.more);
    assert_eq!(response.count, 3);
}

#[test]
fn range_target_without_order_sorts_only_the_keys_the_limit_read() {
    // etcd reads limit + 1 keys in key order when the order is NONE, then sorts them.
    let mut harness = Harness::new();
    harness.put("d", "x"); // rev 2
    harness.put("a", "x"); // rev 3
    harness.put("b", "x"); // rev 4
    harness.put("c", "x"); // rev 5
    let request = RangeRequest {
        sort_target: SortTarget::Mod as i32,
        limit: 2,
        ..all_keys()
    };
    let response = harness.range(request).expect("range");
    assert_eq!(keys_of(&response), ["a", "b"]);
    assert!(response.more);
}

#[test]
fn range_filters_by_mod_and_create_revision() {
    let harness = abc_store();
    let filtered = |request: RangeRequest| {
        let response = harness.range(request).expect("range");
        assert_eq!(response.count, 3, "count ignores filters");
        keys_of(&response)
    };
    assert_eq!(
        filtered(RangeRequest {
            min_mod_revision: 4,
            ..all_keys()
        }),
        ["a", "c"]
    );
    assert_eq!(
        filtered(RangeRequest {
            max_mod_revision: 4,
            ..all_keys()
        }),
        ["b", "c"]
    );
    assert_eq!(
        filtered(RangeRequest {
            min_create_revision: 3,
            ..all_keys()
        }),
        ["b", "c"]
    );
    assert_eq!(
        filtered(RangeRequest {
            max_create_revision: 3,
            ..all_keys()
        }),
        ["a", "b"]
    );
    assert_eq!(
        filtered(RangeRequest {
            min_mod_revision: 4,
            max_create_revision: 3,
            ..all_keys()
        }),
        ["a"]
    );
}

#[test]
fn range_filter_with_limit_cuts_after_filtering() {
    let harness = abc_store();
    let response = harness
        .range(RangeRequest {
            min_mod_revision: 3,
            limit: 1,
            ..all_keys()
        })
        .expect("range");
    assert_eq!(keys_of(&response), ["a"]);
    assert!(response.more);
    assert_eq!(response.count, 3);
}

#[test]
fn range_above_current_revision_is_a_future_revision() {
    let harness = abc_store();
    assert_eq!(
        harness.range(RangeRequest {
            revision: 6,
            ..all_keys()
        }),
        Err(EtcdError::FutureRevision)
    );
    assert!(harness
        .range(RangeRequest {
            revision: 5,
            ..all_keys()
        })
        .is_ok());
}

#[test]
fn range_at_compacted_revision_is_allowed_but_below_fails() {
    let mut harness = abc_store();
    harness.compact(3).expect("compact");
    let at = harness
        .range(RangeRequest {
            revision: 3,
            ..all_keys()
        })
        .expect("range at compacted revision");
    assert_eq!(keys_of(&at), ["a", "b"]);
    assert_eq!(at.kvs[0].value, b"3");
    assert_eq!(
        harness.range(RangeRequest {
            revision: 2,
            ..all_keys()
        }),
        Err(EtcdError::Compacted)
    );
    assert!(harness
        .range(RangeRequest {
            revision: 0,
            ..all_keys()
        })
        .is_ok());
    assert!(harness
        .range(RangeRequest {
            revision: -4,
            ..all_keys()
        })
        .is_ok());
}

#[test]
fn range_does_not_see_deleted_keys_after_their_delete() {
    let mut harness = abc_store();
    harness.delete("b", ""); // rev 6
    assert_eq!(
        keys_of(&harness.range(all_keys()).expect("range")),
        ["a", "c"]
    );
    let before = harness
        .range(RangeRequest {
            revision: 5,
            ..all_keys()
        })
        .expect("range");
    assert_eq!(keys_of(&before), ["a", "b", "c"]);
}

// ---- put ----

#[test]
fn put_sets_create_mod_and_version() {
    let mut harness = Harness::new();
    harness.put("k", "1");
    harness.put("k", "2");
    let kv = harness.get("k").expect("k exists");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        (2, 3, 2, 0)
    );
}

#[test]
fn put_after_delete_starts_a_new_life() {
    let mut harness = Harness::new();
    harness.put("k", "1");
    harness.delete("k", "");
    harness.put("k", "2");
    let kv = harness.get("k").expect("k exists");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (4, 4, 1));
}

#[test]
fn put_returns_prev_kv_when_asked() {
    let mut harness = Harness::new();
    harness.put("k", "old");
    let request = PutRequest {
        prev_kv: true,
        ..put_request("k", "new")
    };
    let outcome = harness.apply(Request::Put(request)).expect("put");
    match outcome.response {
        Some(CommandResponse::Put(response)) => {
            assert_eq!(response.header, only_header(3));
            assert_eq!(response.prev_kv.expect("prev kv").value, b"old");
        }
        other => panic!("unexpected {other:?}"),
    }
    let plain = harness.put("k", "newer");
    match plain.response {
        Some(CommandResponse::Put(response)) => assert_eq!(response.prev_kv, None),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn put_ignore_value_keeps_the_old_value() {
    let mut harness = Harness::new();
    harness.put("k", "kept");
    let request = PutRequest {
        key: b"k".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    harness.apply(Request::Put(request)).expect("put");
    let kv = harness.get("k").expect("k exists");
    assert_eq!((kv.value.as_slice(), kv.version), (&b"kept"[..], 2));
}

#[test]
fn put_ignore_value_on_missing_key_is_key_not_found() {
    let mut harness = Harness::new();
    let request = PutRequest {
        key: b"k".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(
        harness.apply(Request::Put(request)),
        Err(EtcdError::KeyNotFound)
    );
    assert_eq!(harness.store.current_revision(), 1);
}

#[test]
fn put_ignore_lease_on_missing_key_is_key_not_found() {
    let mut harness = Harness::new();
    let request = PutRequest {
        key: b"k".to_vec(),
        ignore_lease: true,
        ..Default::default()
    };
    assert_eq!(
        harness.apply(Request::Put(request)),
        Err(EtcdError::KeyNotFound)
    );
}

#[test]
fn put_ignore_lease_keeps_the_old_lease_and_takes_the_new_value() {
    let mut harness = Harness::new();
    harness.put("k", "1");
    let request = PutRequest {
        ignore_lease: true,
        ..put_request("k", "2")
    };
    harness.apply(Request::Put(request)).expect("put");
    let kv = harness.get("k").expect("k exists");
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"2"[..], 0));
}

#[test]
fn put_with_unknown_lease_is_lease_not_found() {
    let mut harness = Harness::new();
    let request = PutRequest {
        lease: 42,
        ..put_request("k", "v")
    };
    assert_eq!(
        harness.apply(Request::Put(request)),
        Err(EtcdError::LeaseNotFound)
    );
    assert!(harness.get("k").is_none());
}

#[test]
fn put_lease_check_comes_before_the_missing_key_check() {
    let mut harness = Harness::new();
    let request = PutRequest {
        key: b"k".to_vec(),
        lease: 42,
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(
        harness.apply(Request::Put(request)),
        Err(EtcdError::LeaseNotFound)
    );
}

#[test]
fn put_events_carry_the_new_and_previous_kv() {
    let mut harness = Harness::new();
    let first = harness.put("k", "1");
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.events[0].r#type, EventType::Put as i32);
    assert_eq!(first.events[0].prev_kv, None);
    let second = harness.put("k", "2");
    let event = &second.events[0];
    assert_eq!(
        event
            .kv
            .as_ref()
            .map(|kv| (kv.value.as_slice(), kv.mod_revision)),
        Some((&b"2"[..], 3))
    );
    assert_eq!(
        event.prev_kv.as_ref().map(|kv| kv.value.as_slice()),
        Some(&b"1"[..])
    );
}

// ---- delete range ----

#[test]
fn delete_range_counts_and_returns_prev_kvs() {
    let mut harness = abc_store();
    let request = DeleteRangeRequest {
        key: b"a".to_vec(),
        range_end: b"c".to_vec(),
        prev_kv: true,
    };
    let outcome = harness
        .apply(Request::DeleteRange(request))
        .expect("delete");
    assert_eq!(outcome.revision, 6);
    match &outcome.response {
        Some(CommandResponse::DeleteRange(response)) => {
            assert_eq!(response.deleted, 2);
            assert_eq!(response.header, only_header(6));
            let prev: Vec<_> = response
                .prev_kvs
                .iter()
                .map(|kv| (kv.key.as_slice(), kv.value.as_slice()))
                .collect();
            assert_eq!(prev, [(&b"a"[..], &b"4"[..]), (&b"b"[..], &b"2"[..])]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(keys_of(&harness.range(all_keys()).expect("range")), ["c"]);
}

#[test]
fn delete_events_carry_only_key_and_mod_revision() {
    let mut harness = abc_store();
    let outcome = harness.delete("a", "c");
    assert_eq!(outcome.events.len(), 2);
    for (event, key) in outcome.events.iter().zip(["a", "b"]) {
        assert_eq!(event.r#type, EventType::Delete as i32);
        assert_eq!(
            event.kv,
            Some(KeyValue {
                key: key.into(),
                mod_revision: 6,
                ..Default::default()
            })
        );
        assert_eq!(
            event.prev_kv.as_ref().map(|kv| kv.key.as_slice()),
            Some(key.as_bytes())
        );
    }
}

#[test]
fn tombstone_row_holds_key_and_mod_revision() {
    let mut harness = Harness::new();
    harness.put("k", "v");
    harness.delete("k", "");
    let row = harness
        .engine
        .get(Table::Kv, &Revision::new(3, 0).to_tombstone_key())
        .expect("get");
    let kv = <KeyValue as prost::Message>::decode(row.expect("tombstone row").as_slice())
        .expect("decode");
    assert_eq!(
        kv,
        KeyValue {
            key: b"k".to_vec(),
            mod_revision: 3,
            ..Default::default()
        }
    );
}

// ---- txn ----

fn txn_outcome(harness: &mut Harness, compare: Compare) -> bool {
    let request = TxnRequest {
        compare: vec![compare],
        success: vec![],
        failure: vec![],
    };
    harness.txn(request).expect("txn").0.succeeded
}

#[test]
fn txn_compares_version() {
    let mut harness = abc_store();
    assert!(txn_outcome(
        &mut harness,
        compare(
            "a",
            CompareResult::Equal,
            CompareTarget::Version,
            TargetUnion::Version(2)
        )
    ));
    assert!(txn_outcome(
        &mut harness,
        compare(
            "a",
            CompareResult::Greater,
            CompareTarget::Version,
            TargetUnion::Version(1)
        )
    ));
    assert!(!txn_outcome(
        &mut harness,
        compare(
            "a",
            CompareResult::Less,
            CompareTarget::Version,
            TargetUnion::Version(2)
        )
    ));
}

#[test]
fn txn_compares_create_revision() {
    let mut harness = abc_store();
    assert!(txn_outcome(
        &mut harness,
        compare(
            "b",
            CompareResult::Equal,
            CompareTarget::Create,
            TargetUnion::CreateRevision(3)
        )
    ));
    assert!(txn_outcome(
        &mut harness,
        compare(
            "b",
            CompareResult::NotEqual,
            CompareTarget::Create,
            TargetUnion::CreateRevision(2)
        )
    ));
}

#[test]
fn txn_compares_mod_revision() {
    let mut harness = abc_store();
    assert!(txn_outcome(
        &mut harness,
        compare(
            "a",
            CompareResult::Equal,
            CompareTarget::Mod,
            TargetUnion::ModRevision(5)
        )
    ));
    assert!(txn_outcome(
        &mut harness,
        compare(
            "a",
            CompareResult::Greater,
            CompareTarget::Mod,
            TargetUnion::ModRevision(4)
        )
    ));
    assert!(!txn_outcome(
        &mut harness,
        compare(
            "a",
            CompareResult::Equal,
            CompareTarget::Mod,
            TargetUnion::ModRevision(2)
        )
    ));
}

#[test]
fn txn_compares_value() {
    let mut harness = abc_store();
    assert!(txn_outcome(
        &mut harness,
        compare(
            "c",
            CompareResult::Equal,
            CompareTarget::Value,
            TargetUnion::Value(b"1".to_vec())
        )
    ));
    assert!(txn_outcome(
        &mut harness,
        compare(
            "c",
            CompareResult::Less,
            CompareTarget::Value,
            TargetUnion::Value(b"2".to_vec())
        )
    ));
    assert!(!txn_outcome(
        &mut harness,
        compare(
            "c",
            CompareResult::Greater,
            CompareTarget::Value,
            TargetUnion::Value(b"1".to_vec())
        )
    ));
}

#[test]
fn txn_compares_lease() {
    let mut harness = abc_store();
    assert!(txn_outcome(
        &mut harness,
        compare(
            "a",
            CompareResult::Equal,
            CompareTarget::Lease,
            TargetUnion::Lease(0)
        )
    ));
    assert!(!txn_outcome(
        &mut harness,
        compare(
            "a",
            CompareResult::Equal,
            CompareTarget::Lease,
            TargetUnion::Lease(9)
        )
    ));
}

#[test]
fn txn_missing_key_compares_as_zero() {
    let mut harness = abc_store();
    assert!(txn_outcome(
        &mut harness,
        compare(
            "zz",
            CompareResult::Equal,
            CompareTarget::Mod,
            TargetUnion::ModRevision(0)
        )
    ));
    assert!(txn_outcome(
        &mut harness,
        compare(
            "zz",
            CompareResult::Equal,
            CompareTarget::Version,
            TargetUnion::Version(0)
        )
    ));
    assert!(txn_outcome(
        &mut harness,
        compare(
            "zz",
            CompareResult::Equal,
            CompareTarget::Create,
            TargetUnion::CreateRevision(0)
        )
    ));
    assert!(txn_outcome(
        &mut harness,
        compare(
            "zz",
            CompareResult::Equal,
            CompareTarget::Lease,
            TargetUnion::Lease(0)
        )
    ));
}

#[test]
fn txn_value_compare_on_missing_key_is_false() {
    let mut harness = abc_store();
    assert!(!txn_outcome(
        &mut harness,
        compare(
            "zz",
            CompareResult::Equal,
            CompareTarget::Value,
            TargetUnion::Value(Vec::new())
        )
    ));
    assert!(!txn_outcome(
        &mut harness,
        compare(
            "zz",
            CompareResult::NotEqual,
            CompareTarget::Value,
            TargetUnion::Value(b"x".to_vec())
        )
    ));
}

#[test]
fn txn_compare_with_range_end_needs_every_key_to_match() {
    let mut harness = abc_store();
    let mut all_created_after_1 = compare(
        "a",
        CompareResult::Greater,
        CompareTarget::Create,
        TargetUnion::CreateRevision(1),
    );
    all_created_after_1.range_end = b"\0".to_vec();
    assert!(txn_outcome(&mut harness, all_created_after_1));
    let mut all_version_1 = compare(
        "a",
        CompareResult::Equal,
        CompareTarget::Version,
        TargetUnion::Version(1),
    );
    all_version_1.range_end = b"d".to_vec();
    assert!(!txn_outcome(&mut harness, all_version_1.clone()));
    all_version_1.key = b"b".to_vec();
    assert!(txn_outcome(&mut harness, all_version_1));
}

#[test]
fn txn_target_union_of_another_kind_compares_with_zero() {
    let mut harness = abc_store();
    // MOD compared against a VERSION operand: etcd compares mod_revision with 0.
    assert!(txn_outcome(
        &mut harness,
        compare(
            "a",
            CompareResult::Greater,
            CompareTarget::Mod,
            TargetUnion::Version(100)
        )
    ));
}

#[test]
fn txn_runs_success_or_failure_branch() {
    let mut harness = abc_store();
    let request = |expected: i64| TxnRequest {
        compare: vec![compare(
            "a",
            CompareResult::Equal,
            CompareTarget::Mod,
            TargetUnion::ModRevision(expected),
        )],
        success: vec![put_op("s", "yes")],
        failure: vec![put_op("f", "no"), range_op("a")],
    };
    let (failed, outcome) = harness.txn(request(4)).expect("txn");
    assert!(!failed.succeeded);
    assert_eq!(failed.responses.len(), 2);
    assert_eq!(outcome.revision, 6);
    assert!(harness.get("f").is_some() && harness.get("s").is_none());
    let (succeeded, _) = harness.txn(request(5)).expect("txn");
    assert!(succeeded.succeeded);
    assert!(harness.get("s").is_some());
}

#[test]
fn txn_is_one_revision_with_sub_revisions_in_op_order() {
    let mut harness = abc_store();
    let request = TxnRequest {
        compare: vec![],
        success: vec![put_op("x", "1"), delete_op("a", ""), put_op("y", "2")],
        failure: vec![],
    };
    let (response, outcome) = harness.txn(request).expect("txn");
    assert_eq!(outcome.revision, 6);
    assert_eq!(response.header, only_header(6));
    let kinds: Vec<_> = outcome
        .events
        .iter()
        .map(|event| (event.r#type, event.kv.as_ref().map(|kv| kv.key.clone())))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventType::Put as i32, Some(b"x".to_vec())),
            (EventType::Delete as i32, Some(b"a".to_vec())),
            (EventType::Put as i32, Some(b"y".to_vec())),
        ]
    );
    let rows: Vec<_> = harness
        .kv_row_revisions()
        .into_iter()
        .filter(|(rev, _)| rev.main == 6)
        .collect();
    assert_eq!(
        rows,
        [
            (Revision::new(6, 0), false),
            (Revision::new(6, 1), true),
            (Revision::new(6, 2), false)
        ]
    );
}

#[test]
fn txn_reads_see_its_own_earlier_writes() {
    let mut harness = abc_store();
    let request = TxnRequest {
        compare: vec![],
        success: vec![
            range_op("a"),
            put_op("a", "new"),
            range_op("a"),
            delete_op("b", ""),
            range_op("b"),
        ],
        failure: vec![],
    };
    let (response, _) = harness.txn(request).expect("txn");
    let ops: Vec<_> = response
        .responses
        .iter()
        .map(|op| op.response.clone().expect("response"))
        .collect();
    let before = range_response(&ops[0]);
    assert_eq!(before.kvs[0].value, b"4");
    assert_eq!(before.header, only_header(5));
    match &ops[1] {
        response_op::Response::ResponsePut(put) => assert_eq!(put.header, only_header(6)),
        other => panic!("unexpected {other:?}"),
    }
    let after = range_response(&ops[2]);
    assert_eq!(after.kvs[0].value, b"new");
    assert_eq!((after.kvs[0].version, after.kvs[0].mod_revision), (3, 6));
    assert_eq!(after.header, only_header(6));
    match &ops[3] {
        response_op::Response::ResponseDeleteRange(delete) => {
            assert_eq!(delete.deleted, 1);
            assert_eq!(delete.header, only_header(6));
            assert_eq!(delete.prev_kvs[0].value, b"2");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(range_response(&ops[4]).kvs.is_empty());
}

#[test]
fn txn_compares_see_the_state_before_the_txn_even_when_nested() {
    let mut harness = abc_store();
    // The nested compare runs after the outer put in op order, but sees the state before it.
    let nested = TxnRequest {
        compare: vec![compare(
            "a",
            CompareResult::Equal,
            CompareTarget::Value,
            TargetUnion::Value(b"4".to_vec()),
        )],
        success: vec![put_op("seen-old", "1")],
        failure: vec![put_op("seen-new", "1")],
    };
    let request = TxnRequest {
        compare: vec![],
        success: vec![put_op("a", "5"), txn_op(nested)],
        failure: vec![],
    };
    harness.txn(request).expect("txn");
    assert!(harness.get("seen-old").is_some());
    assert!(harness.get("seen-new").is_none());
}

#[test]
fn nested_txn_runs_its_branch_with_an_empty_header() {
    let mut harness = abc_store();
    let nested = TxnRequest {
        compare: vec![compare(
            "zz",
            CompareResult::Greater,
            CompareTarget::Version,
            TargetUnion::Version(0),
        )],
        success: vec![put_op("then", "1")],
        failure: vec![put_op("else", "1"), range_op("a")],
    };
    let request = TxnRequest {
        compare: vec![],
        success: vec![txn_op(nested), put_op("outer", "1")],
        failure: vec![],
    };
    let (response, outcome) = harness.txn(request).expect("txn");
    assert_eq!(outcome.revision, 6);
    match &response.responses[0].response {
        Some(response_op::Response::ResponseTxn(inner)) => {
            assert!(!inner.succeeded);
            assert_eq!(inner.header, Some(ResponseHeader::default()));
            assert_eq!(inner.responses.len(), 2);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        harness.get("else").is_some()
            && harness.get("then").is_none()
            && harness.get("outer").is_some()
    );
    assert_eq!(harness.get("outer").expect("outer").mod_revision, 6);
}

#[test]
fn txn_with_a_failing_put_changes_nothing() {
    let mut harness = abc_store();
    let leased = PutRequest {
        lease: 3,
        ..put_request("leased", "v")
    };
    let request = TxnRequest {
        compare: vec![],
        success: vec![
            put_op("x", "1"),
            RequestOp {
                request: Some(request_op::Request::RequestPut(leased)),
            },
        ],
        failure: vec![],
    };
    assert_eq!(
        harness.txn(request).map(|(response, _)| response),
        Err(EtcdError::LeaseNotFound)
    );
    assert!(harness.get("x").is_none());
    assert_eq!(harness.store.current_revision(), 5);
}

#[test]
fn txn_put_ignore_value_on_a_key_missing_before_the_txn_is_key_not_found() {
    let mut harness = abc_store();
    let ignore = PutRequest {
        key: b"zz".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    let request = TxnRequest {
        compare: vec![],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(ignore)),
        }],
        failure: vec![],
    };
    assert_eq!(
        harness.txn(request).map(|(response, _)| response),
        Err(EtcdError::KeyNotFound)
    );
}

#[test]
fn txn_range_revisions_are_checked_before_running() {
    let mut harness = abc_store();
    harness.compact(3).expect("compact");
    let at = |revision: i64| TxnRequest {
        compare: vec![],
        success: vec![
            put_op("x", "1"),
            RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    revision,
                    ..all_keys()
                })),
            },
        ],
        failure: vec![],
    };
    assert_eq!(
        harness.txn(at(6)).map(|(r, _)| r),
        Err(EtcdError::FutureRevision)
    );
    assert_eq!(
        harness.txn(at(2)).map(|(r, _)| r),
        Err(EtcdError::Compacted)
    );
    assert_eq!(
        harness.txn(at(-1)).map(|(r, _)| r),
        Err(EtcdError::Compacted),
        "etcd: a negative revision is below the compacted one"
    );
    assert!(harness.get("x").is_none());
    let (response, _) = harness.txn(at(3)).expect("txn at the compacted revision");
    let range = range_response(response.responses[1].response.as_ref().expect("range"));
    assert_eq!(keys_of(range), ["a", "b"]);
    assert_eq!(range.header, only_header(6));
}

// ---- compaction ----

#[test]
fn compaction_removes_old_rows_physically() {
    let mut harness = Harness::new();
    harness.put("a", "1"); // 2
    harness.put("a", "2"); // 3
    harness.put("b", "1"); // 4
    harness.delete("b", ""); // 5
    harness.put("c", "1"); // 6
    let outcome = harness.compact(5).expect("compact");
    assert_eq!(outcome.revision, 6);
    assert!(outcome.events.is_empty());
    match outcome.response {
        Some(CommandResponse::Compaction(response)) => assert_eq!(response.header, only_header(6)),
        other => panic!("unexpected {other:?}"),
    }
    // b's tombstone at the compact revision stays, so a watch from 5 still sees the delete
    // (etcd #18089); the next compaction removes it.
    assert_eq!(
        harness.kv_row_revisions(),
        [
            (Revision::new(3, 0), false),
            (Revision::new(5, 0), true),
            (Revision::new(6, 0), false)
        ]
    );
    assert_eq!(harness.store.compact_revision(), 5);
    assert_eq!(
        keys_of(
            &harness
                .range(RangeRequest {
                    revision: 5,
                    ..all_keys()
                })
                .expect("range")
        ),
        ["a"]
    );
    harness.compact(6).expect("compact");
    assert_eq!(
        harness.kv_row_revisions(),
        [(Revision::new(3, 0), false), (Revision::new(6, 0), false)]
    );
}

#[test]
fn compaction_keeps_a_tombstone_above_its_revision() {
    let mut harness = Harness::new();
    harness.put("a", "1"); // 2
    harness.put("a", "2"); // 3
    harness.delete("a", ""); // 4
    harness.compact(3).expect("compact");
    assert_eq!(
        harness.kv_row_revisions(),
        [(Revision::new(3, 0), false), (Revision::new(4, 0), true)]
    );
    assert_eq!(
        harness
            .range(RangeRequest {
                revision: 3,
                ..all_keys()
            })
            .expect("range")
            .kvs[0]
            .value,
        b"2"
    );
}

#[test]
fn compaction_at_or_below_the_compacted_revision_fails() {
    let mut harness = abc_store();
    harness.compact(3).expect("compact");
    assert_eq!(harness.compact(3), Err(EtcdError::Compacted));
    assert_eq!(harness.compact(2), Err(EtcdError::Compacted));
    assert_eq!(harness.store.compact_revision(), 3);
}

#[test]
fn compaction_above_the_current_revision_is_a_future_revision() {
    let mut harness = abc_store();
    assert_eq!(harness.compact(6), Err(EtcdError::FutureRevision));
    assert!(harness.compact(5).is_ok());
}

#[test]
fn compaction_at_zero_on_a_new_store_succeeds_as_in_etcd() {
    let mut harness = Harness::new();
    assert!(harness.compact(0).is_ok());
    assert_eq!(harness.compact(0), Err(EtcdError::Compacted));
}

#[test]
fn compaction_records_scheduled_and_finished_revisions() {
    let mut harness = abc_store();
    harness.compact(4).expect("compact");
    let read = meta::read(harness.engine.as_ref()).expect("meta");
    assert_eq!(read.scheduled_compact_revision, Some(4));
    assert_eq!(read.finished_compact_revision, Some(4));
}

// ---- reopening ----

#[test]
fn reopen_rebuilds_identical_state() {
    let mut harness = Harness::new();
    for round in 0..4 {
        for key in ["a", "b", "c", "d"] {
            harness.put(key, &format!("{key}{round}"));
        }
        harness.delete("b", "");
        let request = TxnRequest {
            compare: vec![],
            success: vec![
                put_op("t", "x"),
                delete_op("c", "d"),
                put_op("u", &round.to_string()),
            ],
            failure: vec![],
        };
        harness.txn(request).expect("txn");
    }
    harness.compact(9).expect("compact");
    harness.put("e", "1");
    harness.compact(20).expect("compact");
    let index = harness.store.tree_index().clone();
    let (current, compacted, consistent) = (
        harness.store.current_revision(),
        harness.store.compact_revision(),
        harness.store.consistent_index(),
    );
    harness.reopen();
    assert_eq!(harness.store.tree_index(), &index);
    assert_eq!(harness.store.current_revision(), current);
    assert_eq!(harness.store.compact_revision(), compacted);
    assert_eq!(harness.store.consistent_index(), consistent);
    assert_eq!(harness.compact(20), Err(EtcdError::Compacted));
}

#[test]
fn reopen_of_a_fully_compacted_store_keeps_its_revision() {
    let mut harness = Harness::new();
    harness.put("a", "1");
    harness.delete("a", "");
    harness.compact(3).expect("compact");
    // Only the tombstone at the compact revision is left; reopened, the index still knows
    // the key as deleted at 3.
    assert_eq!(harness.kv_row_revisions(), [(Revision::new(3, 0), true)]);
    harness.reopen();
    let restored = harness
        .store
        .tree_index()
        .key_index(b"a")
        .expect("a's tombstone");
    assert_eq!(restored.modified(), Revision::new(3, 0));
    assert!(!restored.is_live());
    assert_eq!(restored.get(3), None);
    assert_eq!(harness.store.current_revision(), 3);
    assert_eq!(harness.put("b", "1").revision, 4);
    harness.compact(4).expect("compact");
    assert_eq!(harness.kv_row_revisions(), [(Revision::new(4, 0), false)]);
}

#[test]
fn open_finishes_a_scheduled_compaction() {
    let mut harness = abc_store();
    let mut batch = WriteBatch::new();
    meta::put_i64(&mut batch, meta::SCHEDULED_COMPACT_REVISION, 5);
    harness.engine.write(batch, false).expect("write");
    harness.reopen();
    assert_eq!(harness.store.compact_revision(), 5);
    assert_eq!(
        harness.range(RangeRequest {
            revision: 4,
            ..all_keys()
        }),
        Err(EtcdError::Compacted)
    );
    let rows: Vec<_> = harness
        .kv_row_revisions()
        .into_iter()
        .map(|(rev, _)| rev.main)
        .collect();
    assert_eq!(
        rows,
        [3, 4, 5],
        "the row of a's first version (2) is compacted away"
    );
    assert_eq!(
        meta::read(harness.engine.as_ref())
            .expect("meta")
            .finished_compact_revision,
        Some(5)
    );
}

#[test]
fn open_names_an_undecodable_row() {
    let harness = abc_store();
    let mut batch = WriteBatch::new();
    batch.put(Table::Kv, b"short".to_vec(), b"x".to_vec());
    harness.engine.write(batch, false).expect("write");
    let err = MvccStore::open(harness.engine.clone())
        .err()
        .expect("open fails");
    assert!(err.to_string().contains("73686f7274"), "{err}");
}

#[test]
fn open_names_a_row_with_an_undecodable_value() {
    let harness = abc_store();
    let mut batch = WriteBatch::new();
    batch.put(
        Table::Kv,
        Revision::new(5, 1).to_key().to_vec(),
        vec![0xff, 0xff],
    );
    harness.engine.write(batch, false).expect("write");
    let err = MvccStore::open(harness.engine.clone())
        .err()
        .expect("open fails");
    assert!(
        err.to_string().contains("decoding kv row 0000000000000005"),
        "{err}"
    );
}

#[test]
fn open_refuses_meta_of_the_wrong_length() {
    let harness = abc_store();
    let mut batch = WriteBatch::new();
    batch.put(Table::Meta, meta::CONSISTENT_INDEX.to_vec(), vec![1, 2, 3]);
    harness.engine.write(batch, false).expect("write");
    let err = MvccStore::open(harness.engine.clone())
        .err()
        .expect("open fails");
    assert!(err.to_string().contains("consistent_index"), "{err}");
}

// ---- leases ----

fn grant(harness: &mut Harness, id: i64, ttl: i64) -> Result<ApplyOutcome, EtcdError> {
    harness.apply(Request::LeaseGrant(LeaseGrantRequest { ttl, id }))
}

fn revoke(harness: &mut Harness, id: i64) -> Result<ApplyOutcome, EtcdError> {
    harness.apply(Request::LeaseRevoke(LeaseRevokeRequest { id }))
}

fn put_with_lease(harness: &mut Harness, key: &str, lease: i64) -> ApplyOutcome {
    harness
        .apply(Request::Put(PutRequest {
            lease,
            ..put_request(key, "v")
        }))
        .expect("put with lease")
}

fn lease_keys(harness: &Harness, id: i64) -> Vec<Vec<u8>> {
    harness
        .store
        .leases()
        .get(id)
        .expect("lease exists")
        .keys
        .iter()
        .cloned()
        .collect()
}

#[test]
fn a_put_with_an_unknown_lease_is_refused_and_changes_nothing() {
    let mut harness = Harness::new();
    let err = harness
        .apply(Request::Put(PutRequest {
            lease: 42,
            ..put_request("k", "v")
        }))
        .expect_err("no such lease");
    assert_eq!(err, EtcdError::LeaseNotFound);
    assert_eq!(harness.store.current_revision(), 1);
}

#[test]
fn a_lease_grant_changes_no_revision_and_refuses_a_duplicate_id() {
    let mut harness = Harness::new();
    let granted = grant(&mut harness, 7, 60).expect("granted");
    assert_eq!(granted.revision, 1);
    match granted.response {
        Some(CommandResponse::LeaseGrant(response)) => {
            assert_eq!((response.id, response.ttl), (7, 60));
        }
        other => panic!("grant answered {other:?}"),
    }
    assert_eq!(
        grant(&mut harness, 7, 60).expect_err("dup"),
        EtcdError::LeaseExists
    );
}

#[test]
fn keys_follow_the_lease_of_their_latest_version() {
    let mut harness = Harness::new();
    grant(&mut harness, 1, 60).expect("granted");
    grant(&mut harness, 2, 60).expect("granted");
    put_with_lease(&mut harness, "a", 1);
    put_with_lease(&mut harness, "b", 1);
    put_with_lease(&mut harness, "b", 2);
    harness
        .apply(Request::Put(PutRequest {
            ignore_lease: true,
            ..put_request("a", "again")
        }))
        .expect("put keeping the lease");
    assert_eq!(lease_keys(&harness, 1), vec![b"a".to_vec()]);
    assert_eq!(lease_keys(&harness, 2), vec![b"b".to_vec()]);
    harness.put("b", "no lease now");
    assert!(lease_keys(&harness, 2).is_empty());
    harness.delete("a", "");
    assert!(lease_keys(&harness, 1).is_empty());
}

#[test]
fn a_revoke_deletes_every_attached_key_at_one_revision() {
    let mut harness = Harness::new();
    grant(&mut harness, 9, 60).expect("granted");
    for key in ["x", "y", "z"] {
        put_with_lease(&mut harness, key, 9);
    }
    harness.put("untouched", "v");
    let before = harness.store.current_revision();
    let revoked = revoke(&mut harness, 9).expect("revoked");
    assert_eq!(revoked.revision, before + 1);
    let deleted: Vec<_> = revoked
        .events
        .iter()
        .map(|event| {
            assert_eq!(event.r#type, EventType::Delete as i32);
            let kv = event.kv.as_ref().expect("kv");
            assert_eq!(kv.mod_revision, before + 1);
            kv.key.clone()
        })
        .collect();
    assert_eq!(deleted, vec![b"x".to_vec(), b"y".to_vec(), b"z".to_vec()]);
    assert!(harness.get("x").is_none());
    assert!(harness.get("untouched").is_some());
    assert!(!harness.store.leases().contains(9));
    assert_eq!(
        revoke(&mut harness, 9).expect_err("gone"),
        EtcdError::LeaseNotFound
    );
}

#[test]
fn a_revoke_of_a_lease_without_keys_changes_no_revision() {
    let mut harness = Harness::new();
    grant(&mut harness, 3, 60).expect("granted");
    let revoked = revoke(&mut harness, 3).expect("revoked");
    assert_eq!(revoked.revision, 1);
    assert!(revoked.events.is_empty());
}

#[test]
fn reopen_restores_leases_and_their_keys() {
    let mut harness = Harness::new();
    grant(&mut harness, 5, 100).expect("granted");
    grant(&mut harness, 6, 200).expect("granted");
    put_with_lease(&mut harness, "a", 5);
    put_with_lease(&mut harness, "b", 5);
    put_with_lease(&mut harness, "b", 6);
    put_with_lease(&mut harness, "c", 6);
    harness.delete("c", "");
    revoke(&mut harness, 6).expect("revoked");
    let leases_before = harness.store.leases().clone();
    harness.reopen();
    assert_eq!(harness.store.leases(), &leases_before);
    assert_eq!(
        harness.store.leases().ttls().collect::<Vec<_>>(),
        vec![(5, 100)]
    );
    assert_eq!(lease_keys(&harness, 5), vec![b"a".to_vec()]);
}

#[test]
fn history_reads_back_the_events_watchers_saw() {
    let mut harness = Harness::new();
    let mut seen = Vec::new();
    for key in ["a", "b", "a"] {
        seen.extend(harness.put(key, key).events);
    }
    seen.extend(harness.delete("a", "").events);
    let history = harness
        .store
        .history(2, harness.store.current_revision(), 100, true)
        .expect("history");
    assert_eq!(history.through, harness.store.current_revision());
    assert_eq!(history.events, seen);
    let bounded = harness.store.history(2, 5, 1, false).expect("history");
    assert_eq!(bounded.through, 2, "stops at the end of a revision");
    assert_eq!(bounded.events.len(), 1);
}

#[test]
fn hash_kv_is_the_same_for_the_same_history_and_refuses_bad_revisions() {
    let build = || {
        let mut harness = Harness::new();
        for round in 0..3 {
            for key in ["a", "b", "c"] {
                harness.put(key, &format!("{key}{round}"));
            }
        }
        harness.delete("b", "");
        harness
    };
    let mut first = build();
    let second = build();
    let current = first.store.current_revision();
    let at_current = first.store.hash_kv(0).expect("hash");
    assert_eq!(at_current, second.store.hash_kv(current).expect("hash"));
    assert_eq!(at_current.hash_revision, current);
    assert_eq!(at_current.compact_revision, -1);
    assert_ne!(
        at_current.hash,
        first.store.hash_kv(current - 1).expect("hash").hash
    );
    assert_eq!(
        first.store.hash_kv(current + 1),
        Err(EtcdError::FutureRevision)
    );
    // Compaction drops rows no reader can see, and the hash at a later revision ignores them.
    let before = first.store.hash_kv(current).expect("hash");
    first.compact(current - 2).expect("compacted");
    let after = first.store.hash_kv(current).expect("hash");
    assert_eq!(after.compact_revision, current - 2);
    assert_eq!(first.store.hash_kv(current - 3), Err(EtcdError::Compacted));
    assert_ne!(before.compact_revision, after.compact_revision);
}
