//! The auditor: after the workload stops, waits for every member to reach the same MVCC state.
//!
//! Guarantee: [`converge`] returns `Ok` only when every member answered Maintenance.HashKV at
//! its current revision with the same revision, hash and compact revision; otherwise, at the
//! deadline, it describes what each member last answered.

use std::time::Duration;

use crate::client::EtcdClient;

/// What one member answered: (revision, hash, compact revision) or an error.
type Answer = Result<(i64, u32, i64), String>;

/// The converged (revision, hash), or why the members did not converge.
pub type Verdict = Result<(i64, u32), String>;

/// Polls every member until all agree or `deadline` (simulated time) passes.
pub async fn converge(client: EtcdClient, deadline: Duration) -> Verdict {
    loop {
        let mut answers: Vec<Answer> = Vec::new();
        for member in 0..client.members() {
            answers.push(client.hash_kv(member, 0).await.map(|response| {
                let revision = response.header.map_or(0, |h| h.revision);
                (revision, response.hash, response.compact_revision)
            }));
        }
        if let Some(Ok(first)) = answers.first() {
            if answers.iter().all(|answer| answer.as_ref() == Ok(first)) {
                return Ok((first.0, first.1));
            }
        }
        if turmoil::sim_elapsed().unwrap_or_default() >= deadline {
            return Err(format!(
                "members did not converge; last HashKV answers (revision, hash, compact \
                 revision): {answers:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
