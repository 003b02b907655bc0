//! `SimCluster`: the members of one simulated cluster — their names, configurations and the
//! disks that outlive their hosts — and what the simulation observes of them.
//!
//! Guarantees: member `i` is host `m{i+1}`, with peer URL `http://m{i+1}:2380` and client URL
//! `http://m{i+1}:2379`; every member's raft election timeout is fixed by a seed derived from
//! the simulation's seed, so elections replay exactly, and no two members share one; the raft
//! log is compacted every [`SNAPSHOT_COUNT`] applied entries, keeping
//! [`SNAPSHOT_CATCHUP_ENTRIES`] for followers.
//! [`SimCluster::crash`] stops the host and drops exactly the writes its engine had not synced.

use std::collections::BTreeMap;
use std::time::Duration;

use raftstore::identity::InitialMember;
use raftstore::node::config::InjectedFaults;
use raftstore::node::{NodeConfig, NodeStatus};

use crate::member::{run_member, MemberDisk, CLIENT_PORT, PEER_PORT};

/// Applied entries between raft log compactions in the simulation (etcd: 10,000).
pub const SNAPSHOT_COUNT: u64 = 100;
/// Entries kept behind the applied index for slow followers (etcd: 5,000).
pub const SNAPSHOT_CATCHUP_ENTRIES: u64 = 10;

/// The members of one simulated cluster.
pub struct SimCluster {
    pub names: Vec<String>,
    pub configs: Vec<NodeConfig>,
    pub disks: Vec<MemberDisk>,
}

impl SimCluster {
    /// A new cluster of `size` members; `seed` fixes their election timeouts.
    pub fn new(size: usize, seed: u64, faults: InjectedFaults) -> Self {
        let names: Vec<String> = (1..=size).map(|i| format!("m{i}")).collect();
        let initial_cluster: Vec<InitialMember> = names
            .iter()
            .map(|name| InitialMember {
                name: name.clone(),
                peer_urls: vec![format!("http://{name}:{PEER_PORT}")],
            })
            .collect();
        let mut configs: Vec<NodeConfig> = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let mut config = NodeConfig {
                name: name.clone(),
                initial_cluster: initial_cluster.clone(),
                initial_cluster_token: "sim-cluster".to_string(),
                advertise_client_urls: vec![format!("http://{name}:{CLIENT_PORT}")],
                injected_faults: faults,
                // Small, so that the raft log is compacted (and the state synced) several
                // times within a run, and a member left far enough behind needs a snapshot.
                snapshot_count: SNAPSHOT_COUNT,
                snapshot_catchup_entries: SNAPSHOT_CATCHUP_ENTRIES,
                ..NodeConfig::default()
            };
            // Fixed timeouts must differ between members, or members that always time out
            // together split the vote forever (random timeouts are what prevents that in
            // production): the first node seed whose timeout no earlier member has.
            let mut candidate = seed
                .wrapping_mul(31)
                .wrapping_add(index as u64)
                .wrapping_mul(1_000);
            loop {
                // Never 0, which would leave raft-rs to draw timeouts at random.
                config.seed = candidate.max(1);
                let taken = configs
                    .iter()
                    .any(|other| other.election_tick_range() == config.election_tick_range());
                if !taken {
                    break;
                }
                candidate = candidate.wrapping_add(1);
            }
            configs.push(config);
        }
        let disks = names.iter().map(|_| MemberDisk::new()).collect();
        Self {
            names,
            configs,
            disks,
        }
    }

    pub fn size(&self) -> usize {
        self.names.len()
    }

    /// Registers every member's software as a host of `sim`.
    pub fn install(&self, sim: &mut turmoil::Sim<'_>) {
        for ((name, config), disk) in self.names.iter().zip(&self.configs).zip(&self.disks) {
            let config = config.clone();
            let disk = disk.clone();
            sim.host(name.as_str(), move || {
                let config = config.clone();
                let disk = disk.clone();
                async move {
                    let outcome: turmoil::Result = run_member(config, disk)
                        .await
                        .map_err(|err| format!("{err:#}").into());
                    outcome
                }
            });
        }
    }

    /// Crashes member `index`: its host stops and its engine loses every unsynced write.
    ///
    /// Like a machine losing power, the host sends nothing more: its links to every other host
    /// of `hosts` are cut while its tasks are dropped, so the FINs and RSTs its sockets would
    /// send on drop are lost. (They would otherwise be sent in the order tokio drops the
    /// tasks, which depends on process-wide task ids, and the simulation would not replay.)
    /// Peers learn of the crash as with real TCP: their next segments get an RST from the
    /// restarted host.
    pub fn crash(&self, sim: &mut turmoil::Sim<'_>, index: usize, hosts: &[String]) {
        let name = self.names[index].as_str();
        let others: Vec<&str> = hosts
            .iter()
            .map(String::as_str)
            .filter(|h| *h != name)
            .collect();
        for other in &others {
            sim.partition(name, *other);
        }
        sim.crash(name);
        for other in &others {
            sim.repair(name, *other);
        }
        self.disks[index].engine.crash();
        *self.disks[index].handle.lock() = None;
    }

    /// Starts member `index` again on what its disk kept.
    pub fn restart(&self, sim: &mut turmoil::Sim<'_>, index: usize) {
        sim.bounce(self.names[index].as_str());
    }

    /// The raft status of every member that is serving, by index.
    pub fn statuses(&self) -> BTreeMap<usize, NodeStatus> {
        crate::member::serving_statuses(&self.disks)
    }

    /// The member that leads in the highest term, if any.
    pub fn leader(&self) -> Option<usize> {
        crate::member::highest_leader(self.statuses())
    }

    /// The election timeout of the configuration, for the nemesis's pacing.
    pub fn election_timeout(&self) -> Duration {
        Duration::from_millis(self.configs[0].election_timeout_ms)
    }
}
