//! Checkers that judge a whole simulated history.
//!
//! [`check_history`] runs them all: per-key linearizability of linearizable operations
//! ([`wgl`] over the [`register`] model; etcd keys are independent registers, and
//! linearizability is compositional, so each key is checked alone), then the cross-key
//! revision checks of [`revisions`]. Serializable reads are left out of the linearizability
//! check (they may be stale by design) and judged by the revision checks instead; so are
//! kube-apiserver's paginated lists, which span keys: [`lists`] judges each against the
//! archive's snapshot at its revision, the revision checks their place in real time.
//! [`committed`] (no acknowledged write missing from the committed history), [`watch`]
//! (etcd's watch guarantees), [`lists`] and [`leases`] (no early expiry, revokes and ends) judge against
//! the archive of committed changes; the run calls them.

pub mod committed;
pub mod leases;
pub mod lists;
pub mod register;
pub mod revisions;
pub mod watch;
pub mod wgl;

use std::collections::BTreeMap;

use crate::history::{Operation, Request};
use register::{KeyOp, KeyRegister, KeyState};
use wgl::{Timed, Verdict};

/// Every violation in `operations`, described; empty when the history is correct.
pub fn check_history(operations: &[Operation]) -> Vec<String> {
    let mut violations = linearizability(operations);
    violations.extend(revisions::check(operations));
    violations
}

fn linearizability(operations: &[Operation]) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<(usize, Timed<KeyOp>)>> = BTreeMap::new();
    for (index, operation) in operations.iter().enumerate() {
        // Serializable reads may be stale; lists span keys: the revision checks judge both.
        if !operation.request.single_key()
            || matches!(
                operation.request,
                Request::Get {
                    serializable: true,
                    ..
                }
            )
        {
            continue;
        }
        let op = KeyOp::new(operation.request.clone(), operation.outcome.as_ref());
        // A read that failed tells nothing; leave it out.
        if op.response.is_none() && !operation.request.writes() {
            continue;
        }
        let ret = op.response.as_ref().and(operation.ret);
        by_key.entry(operation.request.key()).or_default().push((
            index,
            Timed {
                call: operation.call,
                ret,
                op,
            },
        ));
    }
    let mut violations = Vec::new();
    for (key, ops) in by_key {
        let (indices, timed): (Vec<usize>, Vec<Timed<KeyOp>>) = ops.into_iter().unzip();
        match wgl::check(&KeyRegister, KeyState::default(), &timed) {
            Ok(()) => {}
            Err(Verdict::GaveUp { steps }) => violations.push(format!(
                "key {key:?}: the linearizability search gave up after {steps} steps"
            )),
            Err(Verdict::NotLinearizable {
                stuck_at,
                linearized,
            }) => {
                let op = indices[stuck_at];
                violations.push(format!(
                    "key {key:?} is not linearizable: after {linearized} operations no order \
                     can place op {op} {:?} -> {:?} (member {}, client {})",
                    operations[op].request,
                    operations[op].outcome,
                    operations[op].member,
                    operations[op].client
                ));
            }
        }
    }
    violations
}
