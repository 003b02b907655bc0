//! The operator: a client host that carries out the nemesis's administrative faults through
//! etcd's API — leader transfers (Maintenance.MoveLeader) and compactions under load
//! (KV.Compact) — because those are requests to a member, not changes to the network.
//!
//! Guarantees: commands run one at a time, in the order the nemesis queued them; each outcome
//! is logged (and hashed into the trace). A compaction reads the current revision first and
//! compacts at it one second later, so every change it removes was applied at least a second
//! earlier (long enough for the archive to have seen it); acknowledged compactions are listed
//! in [`AdminQueue::compactions`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::client::EtcdClient;

/// How long after reading the revision a compaction is sent.
const COMPACT_AFTER: Duration = Duration::from_secs(1);
/// How often the operator looks for a command.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// An administrative fault.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AdminCommand {
    /// MoveLeader to `target_id` (member `target`), sent to member `via`.
    MoveLeader {
        via: usize,
        target: usize,
        target_id: u64,
    },
    /// Compact at the current revision of member `via`.
    Compact { via: usize, physical: bool },
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<AdminCommand>,
    log: Vec<String>,
    compactions: Vec<i64>,
}

/// Commands from the nemesis to the operator, and what came of them.
#[derive(Clone, Default)]
pub struct AdminQueue {
    inner: Arc<Mutex<Inner>>,
}

impl AdminQueue {
    pub fn push(&self, command: AdminCommand) {
        self.inner.lock().queue.push_back(command);
    }

    fn pop(&self) -> Option<AdminCommand> {
        self.inner.lock().queue.pop_front()
    }

    fn log(&self, line: String) {
        self.inner.lock().log.push(line);
    }

    /// What the operator did, with outcomes and simulated times.
    pub fn outcomes(&self) -> Vec<String> {
        self.inner.lock().log.clone()
    }

    /// The revisions of acknowledged compactions.
    pub fn compactions(&self) -> Vec<i64> {
        self.inner.lock().compactions.clone()
    }
}

/// Carries out queued commands until `stop_at` (simulated time).
pub async fn run_operator(client: EtcdClient, queue: AdminQueue, stop_at: Duration) {
    let now = || turmoil::sim_elapsed().unwrap_or_default();
    while now() < stop_at {
        let Some(command) = queue.pop() else {
            tokio::time::sleep(POLL_EVERY).await;
            continue;
        };
        let outcome = match &command {
            AdminCommand::MoveLeader { via, target_id, .. } => {
                client.move_leader(*via, *target_id).await
            }
            AdminCommand::Compact { via, physical } => {
                compact(&client, &queue, *via, *physical).await
            }
        };
        queue.log(format!(
            "{}ms {command:?}: {}",
            now().as_millis(),
            outcome.err().unwrap_or_else(|| "ok".to_string())
        ));
    }
}

/// Compacts at `via`'s current revision, read [`COMPACT_AFTER`] earlier.
async fn compact(
    client: &EtcdClient,
    queue: &AdminQueue,
    via: usize,
    physical: bool,
) -> Result<(), String> {
    let revision = client
        .current_revision(via)
        .await
        .map_err(|err| format!("reading the revision: {err}"))?;
    tokio::time::sleep(COMPACT_AFTER).await;
    client
        .compact(via, revision, physical)
        .await
        .map_err(|err| format!("compacting at {revision}: {err}"))?;
    queue.inner.lock().compactions.push(revision);
    Ok(())
}
