//! Settings of one member's raft node, with etcd's defaults.

use std::time::Duration;

use crate::identity::InitialMember;

/// How a node is run. `Default` gives etcd's defaults for a single member named `default`.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This member's name (etcd's `--name`).
    pub name: String,
    /// Members of the cluster when it is first created (etcd's `--initial-cluster`).
    pub initial_cluster: Vec<InitialMember>,
    /// Seeds member and cluster ids (etcd's `--initial-cluster-token`).
    pub initial_cluster_token: String,
    /// URLs clients reach this member at, as shown by MemberList.
    pub advertise_client_urls: Vec<String>,
    /// Raft tick length (etcd's `--heartbeat-interval`).
    pub heartbeat_interval_ms: u64,
    /// Election timeout (etcd's `--election-timeout`); a multiple of the heartbeat interval.
    pub election_timeout_ms: u64,
    /// Largest request accepted, encoded (etcd's `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// Most operations in one txn branch (etcd's `--max-txn-ops`).
    pub max_txn_ops: usize,
    /// Applied entries between raft log compactions (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// Entries kept behind the applied index when the log is compacted, for slow followers.
    pub snapshot_catchup_entries: u64,
    /// Most proposals folded into one raft Ready (and so one fsync).
    pub max_proposals_per_ready: usize,
    /// Requests queued for the driver before callers wait (back-pressure).
    pub proposal_queue_capacity: usize,
    /// Seeds the node's randomness. 0 (the default) leaves raft-rs to draw each election
    /// timeout at random, as in production; any other value fixes this node's election timeout
    /// (see [`NodeConfig::election_tick_range`]), so a simulation replays exactly.
    pub seed: u64,
    /// Period of the progress notifications watchers ask for (etcd's
    /// `--experimental-watch-progress-notify-interval`).
    pub watch_progress_notify_interval: Duration,
    /// Bugs switched on on purpose, so the simulation can prove its checkers catch them. Only
    /// with the `fault-injection` feature (enabled by the simulation crate alone); all off by
    /// default.
    #[cfg(feature = "fault-injection")]
    pub injected_faults: InjectedFaults,
}

/// Deliberate bugs for the simulation's checkers to catch (see `NodeConfig::injected_faults`).
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectedFaults {
    /// Linearizable reads skip the ReadIndex round and read local state, as serializable ones
    /// do: a member cut off from the others then serves stale data.
    pub stale_linearizable_reads: bool,
    /// Raft log appends and hard states are written but never fsynced: a crashed member comes
    /// back without what it acknowledged (its votes, terms and entries).
    pub skip_raft_log_fsync: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "default".to_string(),
            initial_cluster: vec![InitialMember {
                name: "default".to_string(),
                peer_urls: vec!["http://localhost:2380".to_string()],
            }],
            initial_cluster_token: "etcd-cluster".to_string(),
            advertise_client_urls: vec!["http://localhost:2379".to_string()],
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            snapshot_count: 10_000,
            snapshot_catchup_entries: 5_000,
            max_proposals_per_ready: 1024,
            proposal_queue_capacity: 8192,
            seed: 0,
            watch_progress_notify_interval: Duration::from_secs(10 * 60),
            #[cfg(feature = "fault-injection")]
            injected_faults: InjectedFaults::default(),
        }
    }
}

impl NodeConfig {
    /// Election timeout in ticks (at least 2, as raft requires it to exceed the heartbeat).
    pub fn election_ticks(&self) -> usize {
        let ticks = self.election_timeout_ms / self.heartbeat_interval_ms.max(1);
        usize::try_from(ticks.max(2)).unwrap_or(usize::MAX)
    }

    /// raft-rs's election timeout range `[min, max)` in ticks. With `seed` 0 it is raft-rs's
    /// own default, `[election, 2 × election)`, drawn from the thread's RNG at every reset; any
    /// other seed picks one value in that range from the seed and fixes it (`max = min + 1`), so
    /// the member's elections are deterministic.
    pub fn election_tick_range(&self) -> (usize, usize) {
        let election = self.election_ticks();
        if self.seed == 0 {
            return (election, election.saturating_mul(2));
        }
        let span = u64::try_from(election).unwrap_or(u64::MAX).max(1);
        let offset = usize::try_from(mix64(self.seed) % span).unwrap_or(0);
        let min = election.saturating_add(offset);
        (min, min.saturating_add(1))
    }

    pub fn tick_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms.max(1))
    }

    /// How long a request may wait for raft before `request timed out`: etcd's 5 s plus two
    /// election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(5_000 + 2 * self.election_timeout_ms)
    }

    /// The shortest lease TTL granted, in seconds: etcd's ⌈1.5 election timeouts⌉ (2 s with the
    /// defaults), so a lease outlives a leader election.
    pub fn min_lease_ttl(&self) -> i64 {
        let ticks = u64::try_from(self.election_ticks()).unwrap_or(u64::MAX);
        let millis = (3 * ticks / 2).saturating_mul(self.heartbeat_interval_ms);
        i64::try_from(millis.div_ceil(1000)).unwrap_or(i64::MAX)
    }

    /// Checks the settings make sense, naming the first that does not.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval_ms == 0 {
            return Err("heartbeat interval must be positive".into());
        }
        if self.election_timeout_ms < 5 * self.heartbeat_interval_ms {
            return Err(format!(
                "election timeout ({} ms) must be at least 5 times the heartbeat interval ({} ms)",
                self.election_timeout_ms, self.heartbeat_interval_ms
            ));
        }
        if self.max_request_bytes == 0 || self.max_txn_ops == 0 {
            return Err("max request bytes and max txn ops must be positive".into());
        }
        if self.snapshot_count == 0 {
            return Err("snapshot count must be positive".into());
        }
        if self.watch_progress_notify_interval < Duration::from_millis(100) {
            return Err(format!(
                "watch progress notify interval ({:?}) must be at least 100ms",
                self.watch_progress_notify_interval
            ));
        }
        Ok(())
    }
}

/// SplitMix64's finaliser: spreads consecutive seeds over the whole range.
fn mix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_zero_keeps_raft_rs_randomized_election_timeouts() {
        let config = NodeConfig::default();
        assert_eq!(config.election_tick_range(), (10, 20));
    }

    #[test]
    fn a_seed_fixes_the_election_timeout_within_raft_rs_range() {
        for seed in 1..200 {
            let config = NodeConfig {
                seed,
                ..NodeConfig::default()
            };
            let (min, max) = config.election_tick_range();
            assert_eq!(max, min + 1);
            assert!((10..20).contains(&min), "seed {seed} gave {min}");
            assert_eq!(config.election_tick_range(), (min, max));
        }
    }
}
