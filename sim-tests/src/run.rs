//! Runs one seeded simulation end to end and judges it.
//!
//! Timeline (simulated time): the cluster starts and the clients start their workload at
//! once; from [`FAULTS_FROM`] the nemesis applies faults for `safety`; then it heals everything
//! and the workload goes on for `liveness`; then the auditor waits for the members to
//! converge. The verdict collects every violation: checker findings (linearizability,
//! revisions), two leaders in one term, a client that made no progress in the second half of
//! the liveness phase, members that did not converge.
//!
//! Determinism: turmoil's RNG (hence tokio's, with `tokio_unstable`), the workload's, the
//! nemesis's and the members' election timeouts all derive from the one seed; the
//! [`SimReport::trace_hash`] covers the whole history, the faults, the leaders observed and
//! the final state, so two runs of a seed can be compared.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use parking_lot::Mutex;
use raftstore::node::config::InjectedFaults;

use crate::check::check_history;
use crate::client::EtcdClient;
use crate::cluster::SimCluster;
use crate::history::{History, Operation, Outcome, Request};
use crate::nemesis::Nemesis;
use crate::workload::{run_workload, WorkloadSpec};

/// When the nemesis starts.
pub const FAULTS_FROM: Duration = Duration::from_secs(3);
/// Normal one-way network latency bounds.
pub const MIN_LATENCY: Duration = Duration::from_millis(1);
pub const MAX_LATENCY: Duration = Duration::from_millis(10);
/// How long a client waits for a connection to a member.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the auditor waits for the members to converge.
pub const CONVERGE_WITHIN: Duration = Duration::from_secs(15);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimSpec {
    pub seed: u64,
    pub members: usize,
    pub clients: usize,
    pub keys: usize,
    /// How long faults are applied.
    pub safety: Duration,
    /// How long the workload goes on after the faults are healed.
    pub liveness: Duration,
    pub faults: InjectedFaults,
}

impl SimSpec {
    /// The CI shape: `members` members, 3 clients, 4 keys, 15 s of faults, 10 s healed.
    pub fn new(seed: u64, members: usize) -> Self {
        Self {
            seed,
            members,
            clients: 3,
            keys: 4,
            safety: Duration::from_secs(15),
            liveness: Duration::from_secs(10),
            faults: InjectedFaults::default(),
        }
    }
}

/// The outcome of one simulation.
#[derive(Debug)]
pub struct SimReport {
    pub seed: u64,
    pub trace_hash: u64,
    pub operations: usize,
    pub succeeded: usize,
    pub unknown: usize,
    pub faults: Vec<String>,
    pub leaders: Vec<String>,
    pub violations: Vec<String>,
    /// The whole history, for comparing two runs.
    pub history: Vec<Operation>,
}

impl SimReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// A short account, for logs and failure messages.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {} operations ({} ok, {} unknown), {} faults, trace {:016x}, {} violations",
            self.seed,
            self.operations,
            self.succeeded,
            self.unknown,
            self.faults.len(),
            self.trace_hash,
            self.violations.len()
        )
    }
}

/// Runs `spec`. `Err` means the simulation itself broke (a member's raft node failed).
pub fn run(spec: &SimSpec) -> Result<SimReport> {
    let heal_at = FAULTS_FROM + spec.safety;
    let stop_at = heal_at + spec.liveness;
    let mut sim = turmoil::Builder::new()
        .rng_seed(spec.seed)
        .simulation_duration(stop_at + CONVERGE_WITHIN + Duration::from_secs(30))
        .min_message_latency(MIN_LATENCY)
        .max_message_latency(MAX_LATENCY)
        .tcp_capacity(1024)
        .build();

    let cluster = SimCluster::new(spec.members, spec.seed, spec.faults);
    cluster.install(&mut sim);

    let history = History::default();
    let keys: Vec<String> = (0..spec.keys).map(|k| format!("k{k}")).collect();
    for client in 0..spec.clients {
        let workload = WorkloadSpec {
            client,
            seed: spec
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(client as u64),
            keys: keys.clone(),
            stop_at,
            max_think: Duration::from_millis(50),
        };
        let names = cluster.names.clone();
        let history = history.clone();
        sim.client(format!("c{}", client + 1).as_str(), async move {
            // Channels spawn their workers: they are made inside the client's runtime.
            let etcd =
                EtcdClient::new(&names, CONNECT_TIMEOUT).map_err(|err| format!("{err:#}"))?;
            run_workload(workload, etcd, history).await;
            let done: turmoil::Result = Ok(());
            done
        });
    }
    let audit: Arc<Mutex<Option<crate::audit::Verdict>>> = Arc::default();
    {
        let names = cluster.names.clone();
        let audit = audit.clone();
        sim.client("auditor", async move {
            tokio::time::sleep(stop_at + CONNECT_TIMEOUT).await;
            let etcd =
                EtcdClient::new(&names, CONNECT_TIMEOUT).map_err(|err| format!("{err:#}"))?;
            let verdict = crate::audit::converge(etcd, stop_at + CONVERGE_WITHIN).await;
            *audit.lock() = Some(verdict);
            let done: turmoil::Result = Ok(());
            done
        });
    }

    let mut hosts = cluster.names.clone();
    hosts.extend((1..=spec.clients).map(|client| format!("c{client}")));
    hosts.push("auditor".to_string());
    let mut nemesis = Nemesis::new(spec.seed, FAULTS_FROM, heal_at, MAX_LATENCY, hosts);
    let mut observer = LeaderObserver::default();
    loop {
        let finished = sim
            .step()
            .map_err(|err| anyhow!("the simulation failed at {:?}: {err}", sim.elapsed()))?;
        let now = sim.elapsed();
        observer.observe(now, &cluster);
        if finished {
            break;
        }
        nemesis.tick(now, &mut sim, &cluster);
    }

    let operations = history.operations();
    let mut violations = check_history(&operations);
    violations.extend(observer.violations.iter().cloned());
    violations.extend(liveness(&operations, spec, heal_at + spec.liveness / 2));
    let audit = audit.lock().take();
    match &audit {
        Some(Ok(_)) => {}
        Some(Err(err)) => violations.push(err.clone()),
        None => violations.push("the auditor never finished".to_string()),
    }

    let mut hasher = DefaultHasher::new();
    operations.hash(&mut hasher);
    nemesis.log.hash(&mut hasher);
    observer.log.hash(&mut hasher);
    audit.hash(&mut hasher);
    let succeeded = operations
        .iter()
        .filter(|op| op.response().is_some())
        .count();
    let unknown = operations
        .iter()
        .filter(|op| matches!(op.outcome, Some(Outcome::Unknown(_)) | None))
        .count();
    Ok(SimReport {
        seed: spec.seed,
        trace_hash: hasher.finish(),
        operations: operations.len(),
        succeeded,
        unknown,
        faults: nemesis.log,
        leaders: observer.log,
        violations,
        history: operations,
    })
}

/// Every client must have completed a write and a linearizable read invoked after `from`.
fn liveness(operations: &[Operation], spec: &SimSpec, from: Duration) -> Vec<String> {
    let mut violations = Vec::new();
    for client in 0..spec.clients {
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
            violations.push(format!(
                "client {client} made no progress after the faults healed (from {from:?}: \
                 write {wrote}, linearizable read {read}); failures: {failures:?}"
            ));
        }
    }
    violations
}

/// Watches the members' raft status between steps: logs leadership changes and checks that
/// no two members lead in the same term.
#[derive(Default)]
struct LeaderObserver {
    last: BTreeMap<usize, (u64, u64)>,
    leader_of_term: BTreeMap<u64, usize>,
    log: Vec<String>,
    violations: Vec<String>,
}

impl LeaderObserver {
    fn observe(&mut self, now: Duration, cluster: &SimCluster) {
        for (member, status) in cluster.statuses() {
            let seen = (status.leader_id, status.term);
            if self.last.get(&member) == Some(&seen) {
                continue;
            }
            self.last.insert(member, seen);
            self.log.push(format!(
                "{}ms member {member} term {} leader {:x}",
                now.as_millis(),
                status.term,
                status.leader_id
            ));
            if status.is_leader() {
                match self.leader_of_term.get(&status.term) {
                    Some(other) if *other != member => self.violations.push(format!(
                        "two leaders in term {}: members {other} and {member}",
                        status.term
                    )),
                    Some(_) => {}
                    None => {
                        self.leader_of_term.insert(status.term, member);
                    }
                }
            }
        }
    }
}
