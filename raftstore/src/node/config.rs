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
    /// Seeds the node's randomness (raft election timeouts in simulation).
    pub seed: u64,
    /// Period of the progress notifications watchers ask for (etcd's
    /// `--experimental-watch-progress-notify-interval`).
    pub watch_progress_notify_interval: Duration,
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
        }
    }
}

impl NodeConfig {
    /// Election timeout in ticks (at least 2, as raft requires it to exceed the heartbeat).
    pub fn election_ticks(&self) -> usize {
        let ticks = self.election_timeout_ms / self.heartbeat_interval_ms.max(1);
        usize::try_from(ticks.max(2)).unwrap_or(usize::MAX)
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
