//! The auditor: after the workload stops, waits for every member to reach the same MVCC state.
//!
//! Guarantee: [`converge`] returns `Ok` only when every member answered Maintenance.HashKV at
//! its current revision with the same revision, hash and compact revision, *and* every
//! member's store, read directly at one instant, holds the same [`MvccState`]: the same
//! current and compact revision and the same keys with the same create and mod revision,
//! version, value and lease. Otherwise, at the deadline, it describes what each member last
//! answered and where their states differ.

use std::time::Duration;

use etcd_api::pb::etcdserverpb::RangeRequest;

use crate::client::EtcdClient;
use crate::member::MemberDisk;
use crate::watch_log::Kv;

/// What one member answered: (revision, hash, compact revision) or an error.
type Answer = Result<(i64, u32, i64), String>;

/// Everything a member's MVCC store says at its current revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MvccState {
    pub revision: i64,
    pub compact_revision: i64,
    /// Every key, in key order.
    pub kvs: Vec<Kv>,
}

/// The state every member converged to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Converged {
    pub hash: u32,
    pub state: MvccState,
}

/// The converged state, or why the members did not converge.
pub type Verdict = Result<Converged, String>;

/// The MVCC state of the member on `disk`, read at one instant.
pub fn mvcc_state(disk: &MemberDisk) -> Result<MvccState, String> {
    let handle = disk.handle.lock().clone().ok_or("not serving")?;
    let store = handle.store().read();
    let everything = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let range = store
        .range(&everything)
        .map_err(|err| format!("reading every key: {err}"))?;
    Ok(MvccState {
        revision: store.current_revision(),
        compact_revision: store.compact_revision(),
        kvs: range.kvs.iter().map(Kv::from_pb).collect(),
    })
}

/// Where `b` differs from `a`, briefly.
fn difference(a: &MvccState, b: &MvccState) -> String {
    if (a.revision, a.compact_revision) != (b.revision, b.compact_revision) {
        return format!(
            "revision {} vs {}, compact revision {} vs {}",
            a.revision, b.revision, a.compact_revision, b.compact_revision
        );
    }
    match a.kvs.iter().zip(&b.kvs).find(|(x, y)| x != y) {
        Some((x, y)) => format!("{x:?} vs {y:?}"),
        None => format!("{} keys vs {}", a.kvs.len(), b.kvs.len()),
    }
}

/// Polls every member until all agree or `deadline` (simulated time) passes.
pub async fn converge(client: EtcdClient, disks: Vec<MemberDisk>, deadline: Duration) -> Verdict {
    loop {
        let mut answers: Vec<Answer> = Vec::new();
        for member in 0..client.members() {
            answers.push(client.hash_kv(member, 0).await.map(|response| {
                let revision = response.header.map_or(0, |h| h.revision);
                (revision, response.hash, response.compact_revision)
            }));
        }
        let mut differences = Vec::new();
        if let Some(Ok(first)) = answers.first() {
            if answers.iter().all(|answer| answer.as_ref() == Ok(first)) {
                // No await from here on: the states are read at one instant.
                let states: Vec<Result<MvccState, String>> = disks.iter().map(mvcc_state).collect();
                match states.first() {
                    Some(Ok(state)) if states.iter().all(|other| other.as_ref() == Ok(state)) => {
                        return Ok(Converged {
                            hash: first.1,
                            state: state.clone(),
                        });
                    }
                    Some(Ok(state)) => {
                        for (member, other) in states.iter().enumerate().skip(1) {
                            match other {
                                Ok(other) if other != state => differences
                                    .push(format!("member {member}: {}", difference(state, other))),
                                Ok(_) => {}
                                Err(err) => differences.push(format!("member {member}: {err}")),
                            }
                        }
                    }
                    Some(Err(err)) => differences.push(format!("member 0: {err}")),
                    None => {}
                }
            }
        }
        if turmoil::sim_elapsed().unwrap_or_default() >= deadline {
            return Err(format!(
                "members did not converge; last HashKV answers (revision, hash, compact \
                 revision): {answers:?}; MVCC states against member 0: {differences:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
