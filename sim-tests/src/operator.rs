//! The operator: a client host that carries out the nemesis's administrative faults through
//! etcd's API — leader transfers (Maintenance.MoveLeader), compactions under load
//! (KV.Compact) and member replacements (Cluster.MemberRemove, MemberAdd, MemberPromote) —
//! because those are requests to a member, not changes to the network.
//!
//! Guarantees: commands run one at a time, in the order the nemesis queued them; each outcome
//! is logged (and hashed into the trace). A compaction reads the current revision first and
//! compacts at it one second later, so every change it removes was applied at least a second
//! earlier (long enough for the archive to have seen it); acknowledged compactions are listed
//! in [`AdminQueue::compactions`].
//!
//! A replacement is what an operator does for a dead machine (the nemesis has already crashed
//! the member and wiped its disk): remove its member, add a learner at the same peer URL, hand
//! the new identity to the nemesis to start the member on the empty disk
//! ([`AdminQueue::take_joiner`]), and promote the learner once the leader finds it caught up.
//! Each step is retried through the other members until it succeeds or [`REPLACE_WITHIN`]
//! passes; a retry that finds its step already done (an answer lost) goes on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use raftstore::pb::k3rspb::ClusterIdentity;

use crate::client::EtcdClient;
use crate::member::PEER_PORT;

/// How long after reading the revision a compaction is sent.
const COMPACT_AFTER: Duration = Duration::from_secs(1);
/// How often the operator looks for a command.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// How long each step of a replacement is retried: several request timeouts (7 s), because a
/// member change forwarded by a follower to a leader that cannot take it yet (one just elected,
/// whose earlier entries are not applied) is dropped and answered only by that timeout, as in
/// etcd.
pub const REPLACE_WITHIN: Duration = Duration::from_secs(30);
/// How long a whole replacement may take: its three steps, each retried for up to
/// [`REPLACE_WITHIN`].
pub const REPLACEMENT_LASTS: Duration = Duration::from_secs(3 * REPLACE_WITHIN.as_secs());
/// The pause between two attempts of a replacement step.
const RETRY_EVERY: Duration = Duration::from_millis(250);

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
    /// Replace member `member` (host `name`, member id `old_id`, crashed and wiped).
    Replace {
        member: usize,
        name: String,
        old_id: u64,
    },
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<AdminCommand>,
    log: Vec<String>,
    compactions: Vec<i64>,
    joiner: Option<(usize, ClusterIdentity)>,
    /// Replacements queued and not yet finished.
    replacing: usize,
    /// Replacements carried out to the end.
    replaced: usize,
}

/// Commands from the nemesis to the operator, and what came of them.
#[derive(Clone, Default)]
pub struct AdminQueue {
    inner: Arc<Mutex<Inner>>,
}

impl AdminQueue {
    pub fn push(&self, command: AdminCommand) {
        let mut inner = self.inner.lock();
        if matches!(command, AdminCommand::Replace { .. }) {
            inner.replacing += 1;
        }
        inner.queue.push_back(command);
    }

    /// Whether a replacement is queued or under way.
    pub fn replacing(&self) -> bool {
        self.inner.lock().replacing > 0
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

    /// A replacement member to start on its empty disk, with the identity it joins with.
    pub fn take_joiner(&self) -> Option<(usize, ClusterIdentity)> {
        self.inner.lock().joiner.take()
    }

    /// How many replacements were carried out to the end.
    pub fn replacements(&self) -> usize {
        self.inner.lock().replaced
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
            AdminCommand::Replace {
                member,
                name,
                old_id,
            } => {
                let outcome = replace(&client, &queue, *member, name, *old_id).await;
                let mut inner = queue.inner.lock();
                inner.replacing -= 1;
                inner.replaced += usize::from(outcome.is_ok());
                outcome
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

/// Retries `step` through the members other than `member` until it answers `Ok(Some(_))`, or
/// fails after [`REPLACE_WITHIN`] with the last error.
async fn retry<T, F, Fut>(client: &EtcdClient, member: usize, mut step: F) -> Result<T, String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let give_up_at = turmoil::sim_elapsed().unwrap_or_default() + REPLACE_WITHIN;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let via = (member + attempt) % client.members();
        let error = match step(via).await {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => "not yet".to_string(),
            Err(err) => err,
        };
        if via == member {
            continue;
        }
        if turmoil::sim_elapsed().unwrap_or_default() >= give_up_at {
            return Err(format!("after {attempt} attempts: {error}"));
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// Replaces crashed and wiped member `member` (see the module doc).
async fn replace(
    client: &EtcdClient,
    queue: &AdminQueue,
    member: usize,
    name: &str,
    old_id: u64,
) -> Result<(), String> {
    let peer_url = format!("http://{name}:{PEER_PORT}");
    retry(client, member, |via| async move {
        if via == member {
            return Ok(None);
        }
        match client.remove_member(via, old_id).await {
            Ok(()) => Ok(Some(())),
            Err(err) if err.contains("member not found") => Ok(Some(())),
            Err(err) => Err(err),
        }
    })
    .await
    .map_err(|err| format!("removing member {old_id:x}: {err}"))?;

    let identity = retry(client, member, |via| {
        let peer_url = peer_url.clone();
        async move {
            if via == member {
                return Ok(None);
            }
            match client.add_learner(via, vec![peer_url.clone()]).await {
                Ok(added) => Ok(added.member.map(|new| ClusterIdentity {
                    cluster_id: added.header.map_or(0, |header| header.cluster_id),
                    member_id: new.id,
                    members: added.members,
                })),
                // Added by an attempt whose answer was lost: find it.
                Err(err) if err.contains("Peer URLs already exists") => {
                    let (cluster_id, members) = client.list_members(via).await?;
                    Ok(members
                        .iter()
                        .find(|m| m.peer_ur_ls.contains(&peer_url))
                        .map(|new| ClusterIdentity {
                            cluster_id,
                            member_id: new.id,
                            members: members.clone(),
                        }))
                }
                Err(err) => Err(err),
            }
        }
    })
    .await
    .map_err(|err| format!("adding a learner at {peer_url}: {err}"))?;
    let new_id = identity.member_id;
    queue.inner.lock().joiner = Some((member, identity));

    retry(client, member, |via| async move {
        if via == member {
            return Ok(None);
        }
        match client.promote_member(via, new_id).await {
            Ok(()) => Ok(Some(())),
            // Promoted by an attempt whose answer was lost.
            Err(err) if err.ends_with("can only promote a learner member") => Ok(Some(())),
            Err(err) => Err(err),
        }
    })
    .await
    .map_err(|err| format!("promoting learner {new_id:x}: {err}"))
}
