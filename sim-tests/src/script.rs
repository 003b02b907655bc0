//! `Director`: lets one scripted client (a named scenario) ask for faults at exact points of
//! its script — crash or restart a member, cut a member off from the other members — which only
//! the simulation's step loop can apply, and lets it see which member leads.
//!
//! Guarantees: [`Director::apply`] returns once the fault has been applied between two steps
//! of the simulation, so the script's next request is sent after it; faults are applied in the
//! order asked. An isolation holds the member's messages to and from every other member (as
//! the nemesis's partitions do: turmoil's TCP does not retransmit, so held messages model
//! real TCP retransmitting until the network heals); clients still reach it. A crash is
//! [`SimCluster::crash`]: the member's unsynced writes are lost.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use parking_lot::Mutex;
use raftstore::node::NodeStatus;

use crate::cluster::SimCluster;
use crate::member::MemberDisk;

/// How often [`Director::apply`] looks whether its fault was applied.
const POLL_EVERY: Duration = Duration::from_millis(1);

/// A fault a script asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Crash member `i`, losing its unsynced writes.
    Crash(usize),
    /// Start member `i` again on what its disk kept.
    Restart(usize),
    /// Hold every message between member `i` and the other members.
    Isolate(usize),
    /// Deliver member `i`'s held messages and let it reach the other members again.
    Rejoin(usize),
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Fault>,
    asked: u64,
    applied: u64,
}

/// Faults asked by a script, applied by the step loop ([`Director::run`]).
#[derive(Clone)]
pub struct Director {
    inner: Arc<Mutex<Inner>>,
    disks: Vec<MemberDisk>,
}

impl Director {
    pub fn new(cluster: &SimCluster) -> Self {
        Self {
            inner: Arc::default(),
            disks: cluster.disks.clone(),
        }
    }

    /// Asks for `fault` and waits until it has been applied.
    pub async fn apply(&self, fault: Fault) {
        let ticket = {
            let mut inner = self.inner.lock();
            inner.queue.push_back(fault);
            inner.asked += 1;
            inner.asked
        };
        while self.inner.lock().applied < ticket {
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// The raft status of every member that is serving, by index.
    pub fn statuses(&self) -> BTreeMap<usize, NodeStatus> {
        crate::member::serving_statuses(&self.disks)
    }

    /// The serving member that leads in the highest term, if any.
    pub fn leader(&self) -> Option<usize> {
        crate::member::highest_leader(self.statuses())
    }

    /// Waits (at most `within`) until a serving member other than those in `except` leads.
    pub async fn leader_except(&self, except: &[usize], within: Duration) -> Option<usize> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            let leader = self
                .statuses()
                .into_iter()
                .filter(|(index, status)| status.is_leader() && !except.contains(index))
                .max_by_key(|(_, status)| status.term)
                .map(|(index, _)| index);
            if leader.is_some() {
                return leader;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Steps `sim` to the end, applying the faults asked between steps. `hosts` are every host
    /// of the simulation (a crash cuts the member's links to all of them). Returns the trace:
    /// each fault with the simulated time it was applied at, then the time the script ended
    /// (the same seed and script always give the same trace).
    pub fn run(
        &self,
        sim: &mut turmoil::Sim<'_>,
        cluster: &SimCluster,
        hosts: &[String],
    ) -> Result<Vec<String>> {
        let mut trace = Vec::new();
        loop {
            let finished = sim
                .step()
                .map_err(|err| anyhow!("the simulation failed at {:?}: {err}", sim.elapsed()))?;
            if finished {
                trace.push(format!("finished at {:?}", sim.elapsed()));
                return Ok(trace);
            }
            loop {
                let Some(fault) = self.inner.lock().queue.pop_front() else {
                    break;
                };
                apply(sim, cluster, hosts, fault);
                trace.push(format!("{fault:?} at {:?}", sim.elapsed()));
                self.inner.lock().applied += 1;
            }
        }
    }
}

fn apply(sim: &mut turmoil::Sim<'_>, cluster: &SimCluster, hosts: &[String], fault: Fault) {
    match fault {
        Fault::Crash(member) => cluster.crash(sim, member, hosts),
        Fault::Restart(member) => cluster.restart(sim, member),
        Fault::Isolate(member) => {
            for other in others(cluster, member) {
                sim.hold(cluster.names[member].as_str(), other);
            }
        }
        Fault::Rejoin(member) => {
            for other in others(cluster, member) {
                sim.release(cluster.names[member].as_str(), other);
            }
        }
    }
}

/// The names of the members other than `member`.
fn others(cluster: &SimCluster, member: usize) -> impl Iterator<Item = &str> {
    cluster
        .names
        .iter()
        .enumerate()
        .filter(move |(index, _)| *index != member)
        .map(|(_, name)| name.as_str())
}
