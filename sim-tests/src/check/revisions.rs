//! Checks of etcd's one global revision order, across keys.
//!
//! Guarantees checked:
//! - every acknowledged change (put, deleting delete, successful txn) has its own revision;
//! - revisions respect real time: an operation invoked after another completed reports a
//!   revision at least as high (strictly higher if it changed the store); serializable reads,
//!   which may be stale, are exempt;
//! - every read (serializable ones included) is a snapshot: the value it returned at header
//!   revision `H` is the one the latest change to its key at or below `H` wrote, as far as the
//!   acknowledged changes tell (a paginated list's pages are judged by
//!   [`lists`](super::lists) against the archive).

use std::collections::BTreeMap;

use crate::history::{Operation, Request, Response};

/// An acknowledged change of one key.
#[derive(Debug, Clone)]
struct Change {
    op: usize,
    /// The value written; `None` for a delete.
    value: Option<String>,
}

/// Returns a description of every violation found.
pub fn check(operations: &[Operation]) -> Vec<String> {
    let mut violations = Vec::new();
    let changes = unique_changes(operations, &mut violations);
    real_time_order(operations, &mut violations);
    snapshots(operations, &changes, &mut violations);
    violations
}

/// Per key, the acknowledged changes by revision; reports revisions given twice.
fn unique_changes(
    operations: &[Operation],
    violations: &mut Vec<String>,
) -> BTreeMap<String, BTreeMap<i64, Change>> {
    let mut by_revision: BTreeMap<i64, usize> = BTreeMap::new();
    let mut changes: BTreeMap<String, BTreeMap<i64, Change>> = BTreeMap::new();
    for (index, operation) in operations.iter().enumerate() {
        let Some(response) = operation.response() else {
            continue;
        };
        if !response.changed() {
            continue;
        }
        let revision = response.revision();
        if let Some(other) = by_revision.insert(revision, index) {
            violations.push(format!(
                "revision {revision} was given to two changes: op {other} {:?} and op {index} {:?}",
                operations[other].request, operation.request
            ));
        }
        let value = match &operation.request {
            Request::Put { value, .. } | Request::CompareAndPut { value, .. } => {
                Some(value.clone())
            }
            _ => None,
        };
        changes
            .entry(operation.request.key().to_string())
            .or_default()
            .insert(revision, Change { op: index, value });
    }
    changes
}

fn exempt(operation: &Operation) -> bool {
    matches!(
        operation.request,
        Request::Get {
            serializable: true,
            ..
        }
    )
}

/// Revisions never go back across operations ordered in real time.
fn real_time_order(operations: &[Operation], violations: &mut Vec<String>) {
    // (position, op, is_return)
    let mut events: Vec<(u64, usize, bool)> = Vec::new();
    for (index, operation) in operations.iter().enumerate() {
        if exempt(operation) || operation.response().is_none() {
            continue;
        }
        events.push((operation.call, index, false));
        if let Some(ret) = operation.ret {
            events.push((ret, index, true));
        }
    }
    events.sort_unstable();
    let mut highest: Option<(i64, usize)> = None;
    let mut floor_at_call: BTreeMap<usize, Option<(i64, usize)>> = BTreeMap::new();
    for (_, index, is_return) in events {
        if !is_return {
            floor_at_call.insert(index, highest);
            continue;
        }
        let Some(response) = operations[index].response() else {
            continue;
        };
        let revision = response.revision();
        if let Some(Some((floor, before))) = floor_at_call.get(&index) {
            let ok = if response.changed() {
                revision > *floor
            } else {
                revision >= *floor
            };
            if !ok {
                violations.push(format!(
                    "revision went back: op {index} {:?} on member {} returned revision {revision} \
                     after op {before} had completed with revision {floor}",
                    operations[index].request, operations[index].member
                ));
            }
        }
        if highest.is_none_or(|(high, _)| revision > high) {
            highest = Some((revision, index));
        }
    }
}

/// Every read's result is the state of its key at the read's header revision.
fn snapshots(
    operations: &[Operation],
    changes: &BTreeMap<String, BTreeMap<i64, Change>>,
    violations: &mut Vec<String>,
) {
    let none = BTreeMap::new();
    for (index, operation) in operations.iter().enumerate() {
        let (revision, found) = match operation.response() {
            Some(Response::Get { revision, found }) => (*revision, found),
            Some(Response::CompareAndPut {
                revision,
                succeeded: false,
                found,
            })
            | Some(Response::CompareAndDelete {
                revision,
                succeeded: false,
                found,
                ..
            }) => (*revision, found),
            _ => continue,
        };
        let key = operation.request.key();
        let key_changes = changes.get(key).unwrap_or(&none);
        let latest = key_changes.range(..=revision).next_back();
        let describe = |what: String| {
            format!(
                "op {index} {:?} on member {} at revision {revision}: {what}",
                operation.request, operation.member
            )
        };
        match (found, latest) {
            (Some(seen), _) if seen.mod_revision > revision => violations.push(describe(format!(
                "returned mod_revision {} above its own revision",
                seen.mod_revision
            ))),
            (Some(seen), Some((&latest_revision, change))) => {
                if latest_revision > seen.mod_revision {
                    violations.push(describe(format!(
                        "returned {seen:?} but op {} changed the key at revision {latest_revision}",
                        change.op
                    )));
                } else if latest_revision == seen.mod_revision
                    && change.value.as_deref() != Some(seen.value.as_str())
                {
                    violations.push(describe(format!(
                        "returned {seen:?} but op {} wrote {:?} at that revision",
                        change.op, change.value
                    )));
                }
            }
            (Some(seen), None) => {
                if let Some(other) = key_changes.get(&seen.mod_revision) {
                    violations.push(describe(format!(
                        "returned {seen:?} but op {} wrote {:?} at that revision",
                        other.op, other.value
                    )));
                }
            }
            (None, Some((&latest_revision, change))) if change.value.is_some() => {
                // Absent although a known put is the latest change: only an unknown delete
                // in between could explain it.
                let unknown_delete = operations.iter().any(|other| {
                    other.response().is_none()
                        && other.request.key() == key
                        && matches!(
                            other.request,
                            Request::Delete { .. } | Request::CompareAndDelete { .. }
                        )
                });
                if !unknown_delete {
                    violations.push(describe(format!(
                        "found no value but op {} put {:?} at revision {latest_revision}",
                        change.op, change.value
                    )));
                }
            }
            _ => {}
        }
    }
}
