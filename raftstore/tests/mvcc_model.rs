//! Model test of `MvccStore`: random sequences of puts, deletes, range deletes, txns,
//! compactions, ranges at past revisions, replays and reopens, checked against a reference model
//! that keeps a full snapshot of the key space for every revision.
//!
//! Every response, revision, version, create and mod revision and event must match the model,
//! including after the store is reopened from its engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use raftstore::engine::memory::MemoryEngine;
use raftstore::engine::KvEngine;
use raftstore::mvcc::{validate, ApplyOutcome, CommandResponse, MvccStore};
use raftstore::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftstore::pb::etcdserverpb::{
    request_op, response_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest,
    RangeRequest, RangeResponse, RequestOp, TxnRequest,
};
use raftstore::pb::k3rspb::raft_command::Request;
use raftstore::pb::mvccpb::{event::EventType, Event, KeyValue};
use raftstore::EtcdError;

const KEYS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const MAX_TXN_OPS: usize = 128;

fn key(index: u8) -> Vec<u8> {
    KEYS[index as usize % KEYS.len()].as_bytes().to_vec()
}

fn value(index: u8) -> Vec<u8> {
    format!("v{index}").into_bytes()
}

/// Where a range or delete ends.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Only the key itself (`range_end` absent).
    Single,
    /// `range_end = "\0"`: every key from the key on.
    FromKey,
    /// An exclusive end key (may be at or before the key: an empty range).
    Before(u8),
}

impl End {
    fn range_end(self) -> Vec<u8> {
        match self {
            End::Single => Vec::new(),
            End::FromKey => vec![0],
            End::Before(index) => key(index),
        }
    }

    fn covers(self, start: &[u8], candidate: &[u8]) -> bool {
        match self {
            End::Single => candidate == start,
            End::FromKey => candidate >= start,
            End::Before(index) => candidate >= start && candidate < key(index).as_slice(),
        }
    }
}

#[derive(Debug, Clone)]
enum TxnOp {
    Put { key: u8, value: u8 },
    Delete { key: u8, end: End },
    Range { key: u8, end: End },
}

#[derive(Debug, Clone)]
struct CompareSpec {
    key: u8,
    target: CompareTarget,
    result: CompareResult,
    number: i64,
    value: u8,
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        value: u8,
        prev_kv: bool,
    },
    DeleteRange {
        key: u8,
        end: End,
        prev_kv: bool,
    },
    Txn {
        compare: Option<CompareSpec>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    },
    /// Compacts at `current - back`.
    Compact {
        back: i64,
    },
    /// Ranges at `current - back` (at most 0: the current revision).
    Range {
        key: u8,
        end: End,
        back: i64,
        limit: i64,
    },
    /// Applies the last command again at an index already applied.
    Replay,
    Reopen,
}

fn end_strategy() -> impl Strategy<Value = End> {
    prop_oneof![
        2 => Just(End::Single),
        1 => Just(End::FromKey),
        2 => (0..6u8).prop_map(End::Before),
    ]
}

fn txn_op_strategy() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        3 => (0..6u8, 0..4u8).prop_map(|(key, value)| TxnOp::Put { key, value }),
        1 => (0..6u8, end_strategy()).prop_map(|(key, end)| TxnOp::Delete { key, end }),
        2 => (0..6u8, end_strategy()).prop_map(|(key, end)| TxnOp::Range { key, end }),
    ]
}

fn compare_strategy() -> impl Strategy<Value = CompareSpec> {
    let target = prop_oneof![
        Just(CompareTarget::Version),
        Just(CompareTarget::Create),
        Just(CompareTarget::Mod),
        Just(CompareTarget::Value),
        Just(CompareTarget::Lease),
    ];
    let result = prop_oneof![
        Just(CompareResult::Equal),
        Just(CompareResult::NotEqual),
        Just(CompareResult::Greater),
        Just(CompareResult::Less),
    ];
    (0..6u8, target, result, 0..12i64, 0..4u8).prop_map(|(key, target, result, number, value)| {
        CompareSpec {
            key,
            target,
            result,
            number,
            value,
        }
    })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..6u8, 0..4u8, any::<bool>()).prop_map(|(key, value, prev_kv)| Op::Put { key, value, prev_kv }),
        2 => (0..6u8, end_strategy(), any::<bool>())
            .prop_map(|(key, end, prev_kv)| Op::DeleteRange { key, end, prev_kv }),
        3 => (
            proptest::option::of(compare_strategy()),
            proptest::collection::vec(txn_op_strategy(), 0..4),
            proptest::collection::vec(txn_op_strategy(), 0..4),
        )
            .prop_map(|(compare, success, failure)| Op::Txn { compare, success, failure }),
        1 => (-1..6i64).prop_map(|back| Op::Compact { back }),
        3 => (0..6u8, end_strategy(), -1..10i64, 0..4i64)
            .prop_map(|(key, end, back, limit)| Op::Range { key, end, back, limit }),
        1 => Just(Op::Replay),
        1 => Just(Op::Reopen),
    ]
}

/// The reference: one full snapshot of the key space per revision.
struct Model {
    /// `snapshots[r]` is the key space at revision `r`; index 0 is unused.
    snapshots: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    /// etcd's compact revision: -1 when never compacted.
    compacted: i64,
}

impl Model {
    fn new() -> Self {
        Self {
            snapshots: vec![BTreeMap::new(), BTreeMap::new()],
            compacted: -1,
        }
    }

    fn current(&self) -> i64 {
        self.snapshots.len() as i64 - 1
    }

    fn state(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        self.snapshots
            .last()
            .expect("the empty store's snapshot is always there")
    }

    fn readable_from(&self) -> i64 {
        self.compacted.max(1)
    }
}

/// A write being applied to the model at revision `begin + 1`.
struct ModelWrite {
    begin: i64,
    work: BTreeMap<Vec<u8>, KeyValue>,
    events: Vec<Event>,
}

impl ModelWrite {
    fn new(model: &Model) -> Self {
        Self {
            begin: model.current(),
            work: model.state().clone(),
            events: Vec::new(),
        }
    }

    fn read_revision(&self) -> i64 {
        if self.events.is_empty() {
            self.begin
        } else {
            self.begin + 1
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<KeyValue> {
        let revision = self.begin + 1;
        let prev = self.work.get(&key).cloned();
        let kv = KeyValue {
            key: key.clone(),
            create_revision: prev.as_ref().map_or(revision, |kv| kv.create_revision),
            mod_revision: revision,
            version: prev.as_ref().map_or(0, |kv| kv.version) + 1,
            value,
            lease: 0,
        };
        self.work.insert(key, kv.clone());
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        prev
    }

    fn delete(&mut self, start: &[u8], end: End) -> Vec<KeyValue> {
        let doomed: Vec<Vec<u8>> = self
            .work
            .keys()
            .filter(|candidate| end.covers(start, candidate))
            .cloned()
            .collect();
        let mut prev_kvs = Vec::new();
        for key in doomed {
            let prev = self.work.remove(&key).expect("collected from the map");
            let kv = KeyValue {
                key,
                mod_revision: self.begin + 1,
                ..Default::default()
            };
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(kv),
                prev_kv: Some(prev.clone()),
            });
            prev_kvs.push(prev);
        }
        prev_kvs
    }

    fn range(&self, start: &[u8], end: End) -> Vec<KeyValue> {
        self.work
            .iter()
            .filter(|(candidate, _)| end.covers(start, candidate))
            .map(|(_, kv)| kv.clone())
            .collect()
    }

    /// Commits the write to the model; returns the revision after it.
    fn commit(self, model: &mut Model) -> (i64, Vec<Event>) {
        if self.events.is_empty() {
            return (model.current(), self.events);
        }
        model.snapshots.push(self.work);
        (model.current(), self.events)
    }
}

fn compare_holds(state: &BTreeMap<Vec<u8>, KeyValue>, spec: &CompareSpec) -> bool {
    let zero = KeyValue::default();
    let kv = match state.get(&key(spec.key)) {
        Some(kv) => kv,
        None if spec.target == CompareTarget::Value => return false,
        None => &zero,
    };
    let ordering = match spec.target {
        CompareTarget::Version => kv.version.cmp(&spec.number),
        CompareTarget::Create => kv.create_revision.cmp(&spec.number),
        CompareTarget::Mod => kv.mod_revision.cmp(&spec.number),
        CompareTarget::Lease => kv.lease.cmp(&spec.number),
        CompareTarget::Value => kv.value.as_slice().cmp(value(spec.value).as_slice()),
    };
    match spec.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

fn compare_request(spec: &CompareSpec) -> Compare {
    let operand = match spec.target {
        CompareTarget::Version => TargetUnion::Version(spec.number),
        CompareTarget::Create => TargetUnion::CreateRevision(spec.number),
        CompareTarget::Mod => TargetUnion::ModRevision(spec.number),
        CompareTarget::Lease => TargetUnion::Lease(spec.number),
        CompareTarget::Value => TargetUnion::Value(value(spec.value)),
    };
    Compare {
        result: spec.result as i32,
        target: spec.target as i32,
        key: key(spec.key),
        target_union: Some(operand),
        range_end: Vec::new(),
    }
}

fn txn_op_request(op: &TxnOp) -> RequestOp {
    let request = match *op {
        TxnOp::Put { key: k, value: v } => request_op::Request::RequestPut(PutRequest {
            key: key(k),
            value: value(v),
            ..Default::default()
        }),
        TxnOp::Delete { key: k, end } => {
            request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: key(k),
                range_end: end.range_end(),
                prev_kv: true,
            })
        }
        TxnOp::Range { key: k, end } => request_op::Request::RequestRange(RangeRequest {
            key: key(k),
            range_end: end.range_end(),
            ..Default::default()
        }),
    };
    RequestOp {
        request: Some(request),
    }
}

/// Whether etcd refuses the branch as a duplicate: a key put twice, or a put inside a deleted
/// range of the branch (a delete ending at or before its key covers nothing).
fn branch_has_duplicates(ops: &[TxnOp]) -> bool {
    let puts: Vec<Vec<u8>> = ops
        .iter()
        .filter_map(|op| match op {
            TxnOp::Put { key: k, .. } => Some(key(*k)),
            _ => None,
        })
        .collect();
    let twice = puts
        .iter()
        .enumerate()
        .any(|(i, k)| puts[i + 1..].contains(k));
    let inside_delete = ops.iter().any(|op| match *op {
        TxnOp::Delete { key: start, end } => {
            let start = key(start);
            puts.iter().any(|k| match end {
                End::Single => *k == start,
                End::FromKey => false,
                End::Before(end) => *k >= start && *k < key(end),
            })
        }
        _ => false,
    });
    twice || inside_delete
}

struct Harness {
    engine: Arc<MemoryEngine>,
    store: MvccStore,
    next_index: u64,
    last_command: Option<Request>,
}

impl Harness {
    fn new() -> Self {
        let engine = Arc::new(MemoryEngine::new());
        let store = MvccStore::open(engine.clone()).expect("open");
        Self {
            engine,
            store,
            next_index: 1,
            last_command: None,
        }
    }

    fn apply(&mut self, request: Request) -> Result<ApplyOutcome, EtcdError> {
        let index = self.next_index;
        self.next_index += 1;
        let outcome = self
            .store
            .apply(index, Some(&request))
            .expect("no storage failure");
        self.last_command = Some(request);
        outcome
    }
}

fn check_range_response(
    response: &RangeResponse,
    expected: &[KeyValue],
    limit: i64,
    header_revision: i64,
) -> Result<(), TestCaseError> {
    let header = response.header.as_ref().map(|h| h.revision);
    prop_assert_eq!(header, Some(header_revision));
    prop_assert_eq!(response.count, expected.len() as i64);
    let shown = if limit > 0 {
        expected.len().min(limit as usize)
    } else {
        expected.len()
    };
    prop_assert_eq!(&response.kvs[..], &expected[..shown]);
    prop_assert_eq!(response.more, shown < expected.len());
    Ok(())
}

/// Every readable revision of the store holds the model's snapshot.
fn check_all_revisions(harness: &Harness, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(harness.store.current_revision(), model.current());
    prop_assert_eq!(harness.store.compact_revision(), model.compacted.max(0));
    for revision in model.readable_from()..=model.current() {
        let request = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision,
            ..Default::default()
        };
        let response = harness
            .store
            .range(&request)
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        let expected: Vec<KeyValue> = model.snapshots[revision as usize]
            .values()
            .cloned()
            .collect();
        check_range_response(&response, &expected, 0, model.current())?;
    }
    if model.compacted > 1 {
        let below = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: model.compacted - 1,
            ..Default::default()
        };
        prop_assert_eq!(harness.store.range(&below), Err(EtcdError::Compacted));
    }
    Ok(())
}

fn run_op(harness: &mut Harness, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::Put {
            key: k,
            value: v,
            prev_kv,
        } => {
            let request = PutRequest {
                key: key(*k),
                value: value(*v),
                prev_kv: *prev_kv,
                ..Default::default()
            };
            let outcome = harness
                .apply(Request::Put(request))
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            let mut write = ModelWrite::new(model);
            let prev = write.put(key(*k), value(*v));
            let (revision, events) = write.commit(model);
            prop_assert_eq!(outcome.revision, revision);
            prop_assert_eq!(&outcome.events, &events);
            match outcome.response {
                Some(CommandResponse::Put(response)) => {
                    prop_assert_eq!(response.header.map(|h| h.revision), Some(revision));
                    prop_assert_eq!(response.prev_kv, if *prev_kv { prev } else { None });
                }
                other => return Err(TestCaseError::fail(format!("put answered {other:?}"))),
            }
        }
        Op::DeleteRange {
            key: k,
            end,
            prev_kv,
        } => {
            let request = DeleteRangeRequest {
                key: key(*k),
                range_end: end.range_end(),
                prev_kv: *prev_kv,
            };
            let outcome = harness
                .apply(Request::DeleteRange(request))
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            let mut write = ModelWrite::new(model);
            let prev_kvs = write.delete(&key(*k), *end);
            let (revision, events) = write.commit(model);
            prop_assert_eq!(outcome.revision, revision);
            prop_assert_eq!(&outcome.events, &events);
            match outcome.response {
                Some(CommandResponse::DeleteRange(response)) => {
                    prop_assert_eq!(response.header.map(|h| h.revision), Some(revision));
                    prop_assert_eq!(response.deleted, prev_kvs.len() as i64);
                    prop_assert_eq!(
                        response.prev_kvs,
                        if *prev_kv { prev_kvs } else { Vec::new() }
                    );
                }
                other => return Err(TestCaseError::fail(format!("delete answered {other:?}"))),
            }
        }
        Op::Txn {
            compare,
            success,
            failure,
        } => {
            let request = TxnRequest {
                compare: compare.iter().map(compare_request).collect(),
                success: success.iter().map(txn_op_request).collect(),
                failure: failure.iter().map(txn_op_request).collect(),
            };
            let duplicates = branch_has_duplicates(success) || branch_has_duplicates(failure);
            let validation = validate::check_txn(&request, MAX_TXN_OPS);
            prop_assert_eq!(
                validation.clone(),
                if duplicates {
                    Err(EtcdError::DuplicateKey)
                } else {
                    Ok(())
                }
            );
            if validation.is_err() {
                return Ok(());
            }
            let outcome = harness
                .apply(Request::Txn(request))
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            let succeeded = compare
                .as_ref()
                .is_none_or(|spec| compare_holds(model.state(), spec));
            let mut write = ModelWrite::new(model);
            let Some(CommandResponse::Txn(response)) = outcome.response.clone() else {
                return Err(TestCaseError::fail(format!(
                    "txn answered {:?}",
                    outcome.response
                )));
            };
            prop_assert_eq!(response.succeeded, succeeded);
            let branch = if succeeded { success } else { failure };
            prop_assert_eq!(response.responses.len(), branch.len());
            for (op, answer) in branch.iter().zip(&response.responses) {
                match (op, answer.response.as_ref()) {
                    (
                        TxnOp::Put { key: k, value: v },
                        Some(response_op::Response::ResponsePut(put)),
                    ) => {
                        write.put(key(*k), value(*v));
                        prop_assert_eq!(
                            put.header.as_ref().map(|h| h.revision),
                            Some(write.begin + 1)
                        );
                    }
                    (
                        TxnOp::Delete { key: k, end },
                        Some(response_op::Response::ResponseDeleteRange(delete)),
                    ) => {
                        let prev_kvs = write.delete(&key(*k), *end);
                        prop_assert_eq!(delete.deleted, prev_kvs.len() as i64);
                        prop_assert_eq!(&delete.prev_kvs, &prev_kvs);
                        prop_assert_eq!(
                            delete.header.as_ref().map(|h| h.revision),
                            Some(write.read_revision())
                        );
                    }
                    (
                        TxnOp::Range { key: k, end },
                        Some(response_op::Response::ResponseRange(range)),
                    ) => {
                        let expected = write.range(&key(*k), *end);
                        check_range_response(range, &expected, 0, write.read_revision())?;
                    }
                    (op, answer) => {
                        return Err(TestCaseError::fail(format!(
                            "txn op {op:?} answered {answer:?}"
                        )));
                    }
                }
            }
            let (revision, events) = write.commit(model);
            prop_assert_eq!(outcome.revision, revision);
            prop_assert_eq!(response.header.map(|h| h.revision), Some(revision));
            prop_assert_eq!(&outcome.events, &events);
        }
        Op::Compact { back } => {
            let revision = model.current() - back;
            let outcome = harness.apply(Request::Compaction(CompactionRequest {
                revision,
                physical: true,
            }));
            if revision <= model.compacted {
                prop_assert_eq!(outcome, Err(EtcdError::Compacted));
            } else if revision > model.current() {
                prop_assert_eq!(outcome, Err(EtcdError::FutureRevision));
            } else {
                model.compacted = revision;
                let outcome = outcome.map_err(|err| TestCaseError::fail(err.to_string()))?;
                prop_assert_eq!(outcome.revision, model.current());
                prop_assert!(outcome.events.is_empty());
            }
        }
        Op::Range {
            key: k,
            end,
            back,
            limit,
        } => {
            let revision = model.current() - back;
            let request = RangeRequest {
                key: key(*k),
                range_end: end.range_end(),
                revision,
                limit: *limit,
                ..Default::default()
            };
            let response = harness.store.range(&request);
            let at = if revision <= 0 {
                model.current()
            } else {
                revision
            };
            if revision > model.current() {
                prop_assert_eq!(response, Err(EtcdError::FutureRevision));
            } else if at < model.compacted {
                prop_assert_eq!(response, Err(EtcdError::Compacted));
            } else {
                let expected: Vec<KeyValue> = model.snapshots[at as usize]
                    .iter()
                    .filter(|(candidate, _)| end.covers(&key(*k), candidate))
                    .map(|(_, kv)| kv.clone())
                    .collect();
                let response = response.map_err(|err| TestCaseError::fail(err.to_string()))?;
                check_range_response(&response, &expected, *limit, model.current())?;
            }
        }
        Op::Replay => {
            if let Some(command) = harness.last_command.clone() {
                let index = harness.next_index - 1;
                let outcome = harness
                    .store
                    .apply(index, Some(&command))
                    .expect("no storage failure");
                prop_assert_eq!(outcome, Ok(ApplyOutcome::skipped(model.current())));
            }
        }
        Op::Reopen => {
            harness.store =
                MvccStore::open(harness.engine.clone() as Arc<dyn KvEngine>).expect("reopen");
            prop_assert_eq!(harness.store.consistent_index(), harness.next_index - 1);
            check_all_revisions(harness, model)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_the_snapshot_model(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        let mut harness = Harness::new();
        let mut model = Model::new();
        for op in &ops {
            run_op(&mut harness, &mut model, op)?;
        }
        check_all_revisions(&harness, &model)?;
        harness.store = MvccStore::open(harness.engine.clone() as Arc<dyn KvEngine>).expect("reopen");
        check_all_revisions(&harness, &model)?;
    }
}
