//! Runs one seeded simulation end to end and judges it.
//!
//! Timeline (simulated time): the cluster starts and the clients start their workload at
//! once, the watchers open their first watches at seeded times before the faults heal; from
//! [`FAULTS_FROM`] the nemesis applies faults for `safety` (the operator carrying out its
//! leader transfers and compactions); then it heals everything and the workload goes on for
//! `liveness`; then the auditor lets the operator finish a replacement still under way (its
//! member is down until then), waits for the members to converge, gives the watchers
//! [`WATCH_CATCH_UP`] to catch up and ends the run. Between steps the raft statuses are
//! checked ([`RaftObserver`]) and the committed changes archived ([`Archive`]). The verdict
//! collects every violation: linearizability and revision checks of the KV history, watch
//! guarantees, acknowledged writes missing from the committed history, raft safety, members
//! disagreeing on a revision, a client that made no progress in the second half of the
//! liveness phase, members whose MVCC states did not converge.
//!
//! Determinism: turmoil's RNG (hence tokio's, with `tokio_unstable`), the workload's, the
//! nemesis's and the members' election timeouts all derive from the one seed; the
//! [`SimReport::trace_hash`] covers the whole history, the faults, the leaders observed and
//! the final state, so two runs of a seed can be compared.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use parking_lot::Mutex;
use raftstore::node::config::InjectedFaults;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::archive::Archive;
use crate::audit::Verdict;
use crate::client::EtcdClient;
use crate::cluster::SimCluster;
use crate::history::{History, Outcome};
use crate::leases::{run_leases, LeaseLogs, LeaseSpec, KEEP_ALIVE_AT_MOST};
use crate::nemesis::Nemesis;
use crate::operator::{run_operator, AdminQueue, REPLACEMENT_LASTS};
use crate::raft_observer::RaftObserver;
use crate::report;
pub use crate::report::SimReport;
use crate::verdict::{judge, Evidence};
use crate::watch_log::WatchLogs;
use crate::watcher::{run_watcher, WatcherSpec};
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
/// How long watchers get to catch up once the members converged.
pub const WATCH_CATCH_UP: Duration = Duration::from_secs(2);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimSpec {
    pub seed: u64,
    pub members: usize,
    pub clients: usize,
    /// Watch clients, each with one logical watch open at a time.
    pub watchers: usize,
    /// Lease clients.
    pub lease_clients: usize,
    pub keys: usize,
    /// How long faults are applied.
    pub safety: Duration,
    /// How long the workload goes on after the faults are healed.
    pub liveness: Duration,
    pub faults: InjectedFaults,
}

impl SimSpec {
    /// The CI shape: `members` members, 3 clients, 3 watchers, 1 lease client, 4 keys, 15 s
    /// of faults, 10 s healed.
    pub fn new(seed: u64, members: usize) -> Self {
        Self {
            seed,
            members,
            clients: 3,
            watchers: 3,
            lease_clients: 1,
            keys: 4,
            safety: Duration::from_secs(15),
            liveness: Duration::from_secs(10),
            faults: InjectedFaults::default(),
        }
    }
}

/// Runs `spec`; a simulation that broke — [`run`] failed, or something in it panicked (raft-rs
/// panics on a log that lost acknowledged entries) — is a failed report.
pub fn run_judged(spec: &SimSpec) -> SimReport {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(spec))) {
        Ok(Ok(report)) => report,
        Ok(Err(err)) => SimReport::broken(spec.seed, format!("{err:#}")),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|message| message.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            SimReport::broken(spec.seed, format!("panicked: {message}"))
        }
    }
}

/// Runs `spec`. `Err` means the simulation itself broke (a member's raft node failed).
pub fn run(spec: &SimSpec) -> Result<SimReport> {
    let heal_at = FAULTS_FROM + spec.safety;
    let stop_at = heal_at + spec.liveness;
    let mut sim = turmoil::Builder::new()
        .rng_seed(spec.seed)
        .simulation_duration(
            stop_at + REPLACEMENT_LASTS + CONVERGE_WITHIN + Duration::from_secs(30),
        )
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
    let logs = WatchLogs::default();
    let (done, watching) = tokio::sync::watch::channel(false);
    let mut open_times = StdRng::seed_from_u64(spec.seed ^ 0x0077_6174_6368);
    for watcher in 0..spec.watchers {
        let watcher_spec = WatcherSpec {
            watcher,
            seed: spec
                .seed
                .wrapping_mul(7_000_003)
                .wrapping_add(watcher as u64),
            keys: keys.clone(),
            open_at: Duration::from_millis(open_times.gen_range(0..heal_at.as_millis() as u64)),
            close_until: heal_at + spec.liveness / 2,
        };
        let names = cluster.names.clone();
        let logs = logs.clone();
        let watching = watching.clone();
        sim.client(format!("w{}", watcher + 1).as_str(), async move {
            let etcd =
                EtcdClient::new(&names, CONNECT_TIMEOUT).map_err(|err| format!("{err:#}"))?;
            run_watcher(watcher_spec, etcd, logs, watching).await;
            let done: turmoil::Result = Ok(());
            done
        });
    }
    let leases = LeaseLogs::default();
    for lease_client in 0..spec.lease_clients {
        let lease_spec = LeaseSpec {
            client: lease_client,
            seed: spec
                .seed
                .wrapping_mul(9_000_011)
                .wrapping_add(lease_client as u64),
            // Every lease ends (by its TTL of at most 4 s) well before the workload stops.
            grant_until: stop_at.saturating_sub(KEEP_ALIVE_AT_MOST + Duration::from_secs(6)),
        };
        let names = cluster.names.clone();
        let leases = leases.clone();
        sim.client(format!("l{}", lease_client + 1).as_str(), async move {
            let etcd =
                EtcdClient::new(&names, CONNECT_TIMEOUT).map_err(|err| format!("{err:#}"))?;
            run_leases(lease_spec, etcd, leases).await;
            let done: turmoil::Result = Ok(());
            done
        });
    }
    let admin = AdminQueue::default();
    {
        let names = cluster.names.clone();
        let admin = admin.clone();
        sim.client("op", async move {
            let etcd =
                EtcdClient::new(&names, CONNECT_TIMEOUT).map_err(|err| format!("{err:#}"))?;
            run_operator(etcd, admin, stop_at).await;
            let done: turmoil::Result = Ok(());
            done
        });
    }
    let audit: Arc<Mutex<Option<Verdict>>> = Arc::default();
    {
        let names = cluster.names.clone();
        let disks = cluster.disks.clone();
        let admin = admin.clone();
        let audit = audit.clone();
        sim.client("auditor", async move {
            tokio::time::sleep(stop_at + CONNECT_TIMEOUT).await;
            // A replacement still under way (its member wiped and down) is finished first.
            let give_up_at = stop_at + REPLACEMENT_LASTS;
            while admin.replacing() && turmoil::sim_elapsed().unwrap_or_default() < give_up_at {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let converge_by = turmoil::sim_elapsed().unwrap_or_default() + CONVERGE_WITHIN;
            let etcd =
                EtcdClient::new(&names, CONNECT_TIMEOUT).map_err(|err| format!("{err:#}"))?;
            let verdict = crate::audit::converge(etcd, disks, converge_by).await;
            *audit.lock() = Some(verdict);
            tokio::time::sleep(WATCH_CATCH_UP).await;
            done.send_replace(true);
            let finished: turmoil::Result = Ok(());
            finished
        });
    }

    let mut hosts = cluster.names.clone();
    hosts.extend((1..=spec.clients).map(|client| format!("c{client}")));
    hosts.extend((1..=spec.watchers).map(|watcher| format!("w{watcher}")));
    hosts.extend((1..=spec.lease_clients).map(|client| format!("l{client}")));
    hosts.push("op".to_string());
    hosts.push("auditor".to_string());
    let mut nemesis = Nemesis::new(
        spec.seed,
        FAULTS_FROM,
        heal_at,
        MAX_LATENCY,
        hosts,
        admin.clone(),
    );
    let mut raft = RaftObserver::default();
    let mut archive = Archive::default();
    loop {
        let finished = sim
            .step()
            .map_err(|err| anyhow!("the simulation failed at {:?}: {err}", sim.elapsed()))?;
        let now = sim.elapsed();
        raft.observe(now, &cluster.statuses());
        archive.sample(now, &cluster);
        if finished {
            break;
        }
        nemesis.tick(now, &mut sim, &cluster);
    }

    let operations = history.operations();
    let records = logs.records();
    let lease_records = leases.records();
    let audit = audit.lock().take();
    let violations = judge(&Evidence {
        operations: &operations,
        watches: &records,
        leases: &lease_records,
        archive: &archive,
        raft: &raft,
        audit: audit.as_ref(),
        compactions: &admin.compactions(),
        clients: spec.clients,
        progress_from: heal_at + spec.liveness / 2,
    });

    let mut hasher = DefaultHasher::new();
    operations.hash(&mut hasher);
    records.hash(&mut hasher);
    lease_records.hash(&mut hasher);
    nemesis.log.hash(&mut hasher);
    admin.outcomes().hash(&mut hasher);
    raft.log.hash(&mut hasher);
    audit.hash(&mut hasher);
    let succeeded = operations
        .iter()
        .filter(|op| op.response().is_some())
        .count();
    let unknown = operations
        .iter()
        .filter(|op| matches!(op.outcome, Some(Outcome::Unknown(_)) | None))
        .count();
    let mut faults = nemesis.log;
    faults.extend(admin.outcomes());
    let replacements = admin.replacements();
    Ok(SimReport {
        seed: spec.seed,
        trace_hash: hasher.finish(),
        operations: operations.len(),
        succeeded,
        unknown,
        watches: records.len(),
        watch_streams: records.iter().map(|record| record.segments.len()).sum(),
        watch_events: report::watch_events(&records),
        leases: lease_records.len(),
        revoked: lease_records
            .iter()
            .filter(|lease| lease.revoke.is_some())
            .count(),
        faults,
        replacements,
        snapshot_installs: raft.snapshot_installs,
        leaders: raft.log,
        watch_lines: records.iter().map(report::watch_line).collect(),
        violations,
        history: operations,
    })
}
