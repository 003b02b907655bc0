//! The verdict on one simulated run: every checker applied to what the run recorded.
//!
//! Guarantee: [`judge`] returns every violation found — linearizability and revision order of
//! the KV history, paginated lists against the committed history, raft safety, members
//! disagreeing on a revision, acknowledged writes missing from the committed history, a
//! client that made no progress once the faults healed, members that did not converge (or a
//! compact revision that went back), watch guarantees and lease guarantees — and nothing when
//! the run is correct.

use std::time::Duration;

use crate::archive::Archive;
use crate::audit::Verdict;
use crate::check::{check_history, committed, leases, lists, watch};
use crate::history::{Operation, Outcome, Request};
use crate::leases::LeaseRecord;
use crate::raft_observer::RaftObserver;
use crate::watch_log::WatchRecord;

/// Everything a run recorded.
pub struct Evidence<'a> {
    pub operations: &'a [Operation],
    pub watches: &'a [WatchRecord],
    pub leases: &'a [LeaseRecord],
    pub archive: &'a Archive,
    pub raft: &'a RaftObserver,
    /// The auditor's verdict, if it finished.
    pub audit: Option<&'a Verdict>,
    /// Revisions of acknowledged compactions.
    pub compactions: &'a [i64],
    /// KV clients, numbered from 0.
    pub clients: usize,
    /// From this simulated time on, every KV client must make progress.
    pub progress_from: Duration,
}

/// Every violation in `evidence`, described.
pub fn judge(evidence: &Evidence<'_>) -> Vec<String> {
    let operations = evidence.operations;
    let archive = evidence.archive;
    let mut violations = check_history(operations);
    violations.extend(evidence.raft.violations.iter().cloned());
    violations.extend(archive.violations.iter().cloned());
    violations.extend(committed::check(operations, &archive.revisions));
    violations.extend(lists::check(operations, &archive.revisions));
    violations.extend(liveness(
        operations,
        evidence.clients,
        evidence.progress_from,
    ));
    let acknowledged = evidence.compactions.iter().copied().max().unwrap_or(0);
    let converged = match evidence.audit {
        Some(Ok(converged)) => Some(converged),
        Some(Err(err)) => {
            violations.push(err.clone());
            None
        }
        None => {
            violations.push("the auditor never finished".to_string());
            None
        }
    };
    let compact_revision = match converged {
        Some(converged) => {
            if converged.state.compact_revision < acknowledged {
                violations.push(format!(
                    "the compact revision went back: {} at the end, {acknowledged} acknowledged",
                    converged.state.compact_revision
                ));
            }
            converged.state.compact_revision
        }
        None => acknowledged,
    };
    violations.extend(watch::check(
        evidence.watches,
        &watch::Truth {
            archive: &archive.revisions,
            compact_revision,
            converged_revision: converged.map(|converged| converged.state.revision),
        },
    ));
    violations.extend(leases::check(
        evidence.leases,
        &leases::LeaseTruth {
            archive: &archive.revisions,
            first_seen: &archive.first_seen,
            end: converged.map(|converged| &converged.state),
        },
    ));
    violations
}

/// Every client must have completed a write and a linearizable read invoked after `from`.
fn liveness(operations: &[Operation], clients: usize, from: Duration) -> Vec<String> {
    let mut violations = Vec::new();
    for client in 0..clients {
        let late = || {
            operations
                .iter()
                .filter(move |op| op.client == client && op.called_at >= from)
                .filter(|op| op.response().is_some())
        };
        let wrote = late().any(|op| op.request.writes());
        let read = late().any(|op| {
            matches!(
                op.request,
                Request::Get {
                    serializable: false,
                    ..
                }
            )
        });
        if !wrote || !read {
            let failures: Vec<String> = operations
                .iter()
                .filter(|op| op.client == client && op.called_at >= from)
                .filter_map(|op| match &op.outcome {
                    Some(Outcome::Unknown(err)) => Some(format!("member {}: {err}", op.member)),
                    _ => None,
                })
                .take(5)
                .collect();
            let last = operations.iter().rfind(|op| op.client == client).map(|op| {
                format!(
                    "{:?} to member {}: {:?} -> {:?}",
                    op.called_at, op.member, op.request, op.outcome
                )
            });
            violations.push(format!(
                "client {client} made no progress after the faults healed (from {from:?}: \
                 write {wrote}, linearizable read {read}); failures: {failures:?}; last \
                 operation: {last:?}"
            ));
        }
    }
    violations
}
