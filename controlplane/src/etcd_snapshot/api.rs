//! What `k3rs etcd-snapshot` sends the server and what it gets back: one authenticated
//! `POST /v1-k3rs/etcd-snapshot` with a JSON [`SnapshotRequest`], answered with a JSON
//! [`SnapshotResponse`] (200), or a plain-text error (400 for a bad request, 503 while the
//! member is not serving, 500 when the operation failed).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::records::SnapshotRecord;

/// The supervisor path of snapshot operations.
pub const SNAPSHOT_PATH: &str = "/v1-k3rs/etcd-snapshot";
/// The largest request body the server reads.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "lowercase")]
pub enum SnapshotRequest {
    /// Take a snapshot named `<name>-<node>-<unix time>` in `dir` (the server's snapshot
    /// directory when absent).
    Save {
        name: String,
        dir: Option<PathBuf>,
        /// The node the CLI expects to talk to; refused when it is another.
        node_name: Option<String>,
    },
    /// Every snapshot of the cluster.
    List { node_name: Option<String> },
    /// Remove these snapshots of this node (file and record).
    Delete {
        names: Vec<String>,
        node_name: Option<String>,
    },
    /// Keep the newest `retention` snapshots of this node named `name`, remove the others.
    Prune {
        name: String,
        retention: usize,
        dir: Option<PathBuf>,
        node_name: Option<String>,
    },
}

impl SnapshotRequest {
    /// The node the caller means, if it said.
    pub fn node_name(&self) -> Option<&str> {
        match self {
            Self::Save { node_name, .. }
            | Self::List { node_name }
            | Self::Delete { node_name, .. }
            | Self::Prune { node_name, .. } => node_name.as_deref(),
        }
    }
}

/// The answer to any operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResponse {
    /// save: the snapshot taken; ls: every snapshot; delete and prune: those removed.
    pub snapshots: Vec<SnapshotRecord>,
    /// Names given to delete that were not found (or not this node's), each with the reason.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Things the user should know although the operation succeeded.
    #[serde(default)]
    pub warnings: Vec<String>,
}
