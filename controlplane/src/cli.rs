//! Command-line interface: `k3rs server` (k3s's flags), `k3rs etcd-snapshot` (k3s's snapshot
//! CLI), `k3rs etcd` (etcd's flags) and `k3rs kubectl` (kubectl against this cluster).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::etcd_flags::EtcdArgs;
use crate::etcd_flags::EtcdTuning;

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
    Server(Box<ServerArgs>),
    /// Save, list, delete or prune snapshots through the running server (as `k3s
    /// etcd-snapshot`).
    EtcdSnapshot(crate::etcd_snapshot::cli::EtcdSnapshotArgs),
    /// Run a standalone, drop-in etcd member taking etcd's own flags.
    Etcd(EtcdArgs),
    /// Run kubectl against this cluster (as `k3s kubectl`): every argument goes to kubectl.
    Kubectl(crate::kubectl::KubectlArgs),
}

/// `k3rs server`: the flags k3s users know.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Load configuration from FILE, then FILE.d/*.yaml [default: /etc/rancher/k3rs/config.yaml].
    #[arg(long, short = 'c', env = "K3RS_CONFIG_FILE", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Start a new cluster with this server as its first member (ignored when data exists).
    #[arg(long, env = "K3RS_CLUSTER_INIT")]
    pub cluster_init: bool,

    /// Folder to hold state [default: /var/lib/rancher/k3rs as root, ~/.rancher/k3rs otherwise].
    #[arg(long, short = 'd', env = "K3RS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Node name [default: the host name].
    #[arg(long, env = "K3RS_NODE_NAME")]
    pub node_name: Option<String>,

    /// Shared secret used to join a server to the cluster (also read from K3S_TOKEN).
    #[arg(long, short = 't', env = "K3RS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// File containing the token.
    #[arg(long, env = "K3RS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Server to connect to, to join its cluster (https://SERVER:6443).
    #[arg(long, short = 's', env = "K3RS_URL")]
    pub server: Option<String>,

    /// IP address to advertise for this node [default: the address of the default route, else 127.0.0.1].
    #[arg(long, env = "K3RS_NODE_IP")]
    pub node_ip: Option<IpAddr>,

    /// IP address the supervisor advertises to members of the cluster [default: node-ip].
    #[arg(long, env = "K3RS_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<IpAddr>,

    /// IP address to listen on [default: 127.0.0.1 and node-ip].
    #[arg(long, env = "K3RS_BIND_ADDRESS")]
    pub bind_address: Option<IpAddr>,

    /// Additional host names or IPv4/IPv6 addresses as subject alternative names on the
    /// server's certificates (repeatable, or comma-separated).
    #[arg(long, env = "K3RS_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,

    /// Write the admin kubeconfig to FILE [default: /etc/rancher/k3rs/k3rs.yaml as root,
    /// ~/.kube/k3rs.yaml otherwise]; it is also written to DATA_DIR/server/cred/admin.kubeconfig.
    #[arg(long, short = 'o', env = "K3RS_KUBECONFIG_OUTPUT", value_name = "FILE")]
    pub write_kubeconfig: Option<PathBuf>,

    /// File mode of the kubeconfig written to --write-kubeconfig (octal, like chmod).
    #[arg(
        long,
        env = "K3RS_KUBECONFIG_MODE",
        default_value = "0600",
        value_name = "MODE"
    )]
    pub write_kubeconfig_mode: String,

    /// Do not serve the Kubernetes API (nor register this server as a node): the HTTPS port
    /// serves the supervisor alone, and the server writes nothing to the store of its own.
    #[arg(long, env = "K3RS_DISABLE_APISERVER")]
    pub disable_apiserver: bool,

    /// HTTPS listen port of the supervisor and the Kubernetes API.
    #[arg(long, env = "K3RS_HTTPS_LISTEN_PORT", default_value_t = 6443)]
    pub https_listen_port: u16,

    /// etcd client port.
    #[arg(long, env = "K3RS_ETCD_CLIENT_PORT", default_value_t = 2379)]
    pub etcd_client_port: u16,

    /// etcd peer port.
    #[arg(long, env = "K3RS_ETCD_PEER_PORT", default_value_t = 2380)]
    pub etcd_peer_port: u16,

    /// Pass an etcd flag to the embedded store, as NAME=VALUE (repeatable; for instance
    /// heartbeat-interval=500).
    #[arg(long, value_name = "NAME=VALUE")]
    pub etcd_arg: Vec<String>,

    /// Expose etcd metrics and health (port 2381) on the node IP too, not only on loopback
    /// (or the bind address).
    #[arg(long, env = "K3RS_ETCD_EXPOSE_METRICS")]
    pub etcd_expose_metrics: bool,

    /// Port of the plain-HTTP etcd metrics and health listener (tests run several servers).
    #[arg(
        long,
        env = "K3RS_ETCD_METRICS_PORT",
        default_value_t = crate::metrics_server::DEFAULT_METRICS_PORT,
        hide = true
    )]
    pub etcd_metrics_port: u16,

    #[command(flatten)]
    pub datastore: crate::datastore::DatastoreArgs,

    #[command(flatten)]
    pub tuning: EtcdTuning,

    #[command(flatten)]
    pub reset: crate::cluster_reset::ResetArgs,

    #[command(flatten)]
    pub snapshots: crate::etcd_snapshot::schedule::ScheduleArgs,
}

impl ServerArgs {
    /// The data dir, defaulted as k3s does.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// The node name, defaulted to the host name.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(host_name)
    }
}

/// k3s's default: `/var/lib/rancher/k3rs` for root, `~/.rancher/k3rs` for other users.
pub fn default_data_dir() -> PathBuf {
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
