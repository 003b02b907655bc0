//! `k3rs etcd`: etcd's own flags (and `ETCD_*` environment variables), so k3rs can replace an
//! etcd member and be benchmarked with the same command line.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::member::MemberSettings;
use crate::urls::split_list;
use raftstore::identity::InitialMember;

#[derive(Debug, clap::Args)]
pub struct EtcdArgs {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory [default: ${name}.etcd].
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,

    /// Client URLs of this member advertised to the cluster.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,

    /// URLs to listen on for peer traffic (peers arrive with replication).
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,

    /// Peer URLs of this member advertised to the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping, `name=peerURL,...` [default: NAME=ADVERTISED PEER URL].
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Initial cluster token, seeding member and cluster ids.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,

    /// Additional plain-HTTP URLs to serve /metrics and /health on (e.g. http://127.0.0.1:2381).
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,

    /// `new` or `existing` (joining an existing cluster arrives with replication).
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,

    #[command(flatten)]
    pub tuning: EtcdTuning,
}

/// Flags that tune the store, shared by `k3rs etcd` and `k3rs server`.
#[derive(Debug, clap::Args)]
pub struct EtcdTuning {
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// Number of committed transactions between raft log compactions.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 10_000)]
    pub snapshot_count: u64,

    /// Entries kept behind the applied index when the raft log is compacted, so that a slightly
    /// slow follower catches up from the log rather than from a snapshot.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5_000
    )]
    pub experimental_snapshot_catchup_entries: u64,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1536 * 1024)]
    pub max_request_bytes: usize,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,

    /// Period of watch progress notifications, for watchers that ask for them (Go duration).
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m",
        value_parser = crate::go_duration::parse
    )]
    pub experimental_watch_progress_notify_interval: std::time::Duration,

    /// Storage engine: rocksdb (default), sled (pure Rust, when built with it) or memory
    /// (not durable; for tests).
    #[arg(long, env = "K3RS_STORAGE_ENGINE")]
    pub storage_engine: Option<String>,
}

impl EtcdTuning {
    pub fn apply(&self, settings: &mut MemberSettings) -> Result<()> {
        let node = &mut settings.node;
        node.heartbeat_interval_ms = self.heartbeat_interval;
        node.election_timeout_ms = self.election_timeout;
        node.snapshot_count = self.snapshot_count;
        node.snapshot_catchup_entries = self.experimental_snapshot_catchup_entries;
        node.max_request_bytes = self.max_request_bytes;
        node.max_txn_ops = self.max_txn_ops;
        node.watch_progress_notify_interval = self.experimental_watch_progress_notify_interval;
        if let Some(name) = &self.storage_engine {
            settings.engine =
                raftstore::engine::EngineKind::parse(name).map_err(anyhow::Error::msg)?;
        }
        node.validate()
            .map_err(anyhow::Error::msg)
            .context("invalid etcd settings")
    }
}

impl EtcdArgs {
    pub fn into_member_settings(self) -> Result<MemberSettings> {
        let join_existing = match self.initial_cluster_state.as_str() {
            "new" => false,
            "existing" => true,
            other => bail!("--initial-cluster-state={other}: expected new or existing"),
        };
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)));
        let peer_urls = split_list(&self.initial_advertise_peer_urls);
        let initial_cluster = match &self.initial_cluster {
            Some(list) => parse_initial_cluster(list)?,
            None => vec![InitialMember {
                name: self.name.clone(),
                peer_urls: peer_urls.clone(),
            }],
        };
        let listen_client = split_list(&self.listen_client_urls);
        let mut settings = MemberSettings::new(
            data_dir,
            self.name.clone(),
            peer_urls.first().cloned().unwrap_or_default(),
            listen_client.first().cloned().unwrap_or_default(),
        )?;
        settings.set_listen_client_urls(&listen_client)?;
        settings.set_listen_peer_urls(&split_list(&self.listen_peer_urls))?;
        if let Some(urls) = &self.listen_metrics_urls {
            settings.set_listen_metrics_urls(&split_list(urls))?;
        }
        settings.join_existing = join_existing;
        settings.advertise_peer_urls = peer_urls.clone();
        settings.node.initial_cluster = initial_cluster;
        settings.node.initial_cluster_token = self.initial_cluster_token.clone();
        settings.node.advertise_client_urls = split_list(&self.advertise_client_urls);
        self.tuning.apply(&mut settings)?;
        Ok(settings)
    }
}

/// Parses `name1=http://a:2380,name1=http://b:2380,name2=http://c:2380`.
fn parse_initial_cluster(list: &str) -> Result<Vec<InitialMember>> {
    let mut members: Vec<InitialMember> = Vec::new();
    for item in split_list(list) {
        let Some((name, url)) = item.split_once('=') else {
            bail!("--initial-cluster item {item:?} is not NAME=PEER_URL");
        };
        match members.iter_mut().find(|m| m.name == name) {
            Some(member) => member.peer_urls.push(url.to_string()),
            None => members.push(InitialMember {
                name: name.to_string(),
                peer_urls: vec![url.to_string()],
            }),
        }
    }
    if members.is_empty() {
        bail!("--initial-cluster is empty");
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_groups_urls_by_name() {
        let members = parse_initial_cluster("a=http://x:2380,b=http://y:2380,a=http://z:2380")
            .expect("valid list");
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].peer_urls, vec!["http://x:2380", "http://z:2380"]);
    }

    #[test]
    fn initial_cluster_item_without_equals_is_refused() {
        assert!(parse_initial_cluster("http://x:2380").is_err());
    }
}
