//! Command-line interface: `k3rs server` (k3s's flags) and `k3rs etcd` (etcd's flags).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::etcd_flags::EtcdArgs;
use crate::etcd_flags::EtcdTuning;
use crate::member::MemberSettings;

#[derive(Debug, Parser)]
#[command(
    name = "k3rs",
    version,
    about = "Lightweight Kubernetes datastore and cluster manager"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a server with the embedded etcd-compatible store (as `k3s server`).
    Server(ServerArgs),
    /// Run a standalone, drop-in etcd member taking etcd's own flags.
    Etcd(EtcdArgs),
}

/// `k3rs server`: the flags k3s users know.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Start a new cluster with this server as its first member (ignored when data exists).
    #[arg(long, env = "K3RS_CLUSTER_INIT")]
    pub cluster_init: bool,

    /// Folder to hold state [default: /var/lib/rancher/k3rs as root, ~/.rancher/k3rs otherwise].
    #[arg(long, short = 'd', env = "K3RS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Node name [default: the host name].
    #[arg(long, env = "K3RS_NODE_NAME")]
    pub node_name: Option<String>,

    /// Address the etcd client port listens on, in addition to nothing else for now.
    #[arg(long, default_value = "127.0.0.1")]
    pub etcd_listen_address: String,

    /// etcd client port.
    #[arg(long, default_value_t = 2379)]
    pub etcd_client_port: u16,

    #[command(flatten)]
    pub tuning: EtcdTuning,
}

impl ServerArgs {
    pub fn into_member_settings(self) -> anyhow::Result<MemberSettings> {
        let data_dir = self.data_dir.unwrap_or_else(default_data_dir);
        let node_name = self.node_name.unwrap_or_else(host_name);
        if !self.cluster_init {
            tracing::info!(
                "k3rs always runs its embedded store; --cluster-init only marks the first server"
            );
        }
        let client_url = format!(
            "http://{}:{}",
            self.etcd_listen_address, self.etcd_client_port
        );
        let etcd_dir = data_dir.join("server").join("db").join("etcd");
        let peer_url = format!("http://{}:2380", self.etcd_listen_address);
        let mut settings = MemberSettings::new(etcd_dir, node_name, peer_url, client_url)?;
        self.tuning.apply(&mut settings)?;
        Ok(settings)
    }
}

/// k3s's default: `/var/lib/rancher/k3rs` for root, `~/.rancher/k3rs` for other users.
fn default_data_dir() -> PathBuf {
    let is_root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::env::var("HOME").map(|h| h == "/root").unwrap_or(false);
    match std::env::var_os("HOME") {
        Some(home) if !is_root => PathBuf::from(home).join(".rancher").join("k3rs"),
        _ => PathBuf::from("/var/lib/rancher/k3rs"),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
