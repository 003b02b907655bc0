//! What `k3rs etcd-snapshot` sends the server and what it gets back: one authenticated
//! `POST /v1-k3rs/etcd-snapshot` with a JSON [`SnapshotRequest`], answered with a JSON
//! [`SnapshotResponse`] (200), or a plain-text error (400 for a bad request, 503 while the
//! member is not serving, 500 when the operation failed).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::records::SnapshotRecord;
use super::s3_config::S3Config;

/// The supervisor path of snapshot operations.
pub const SNAPSHOT_PATH: &str = "/v1-k3rs/etcd-snapshot";
/// The largest request body the server reads.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// One operation. `s3`, when given, is used instead of the server's own `--etcd-s3` setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "lowercase")]
pub enum SnapshotRequest {
    /// Take a snapshot named `<name>-<node>-<unix time>` (`.zip` when compressed) in `dir`
    /// (the server's snapshot directory when absent), and upload it with S3 set.
    Save {
        name: String,
        dir: Option<PathBuf>,
        /// The node the CLI expects to talk to; refused when it is another.
        node_name: Option<String>,
        /// Zip it; absent: the server's `--etcd-snapshot-compress`.
        #[serde(default)]
        compress: Option<bool>,
        #[serde(default)]
        s3: Option<S3Config>,
    },
    /// Every snapshot of the cluster (and of the S3 folder with S3 set).
    List {
        node_name: Option<String>,
        #[serde(default)]
        s3: Option<S3Config>,
    },
    /// Remove these snapshots of this node (file and record), and their S3 copies with S3 set.
    Delete {
        names: Vec<String>,
        node_name: Option<String>,
        #[serde(default)]
        s3: Option<S3Config>,
    },
    /// Keep the newest `retention` snapshots of this node named `name`, remove the others;
    /// with S3 set, likewise in S3 with its own retention, across nodes.
    Prune {
        name: String,
        retention: usize,
        dir: Option<PathBuf>,
        node_name: Option<String>,
        #[serde(default)]
        s3: Option<S3Config>,
    },
}

impl SnapshotRequest {
    /// The node the caller means, if it said.
    pub fn node_name(&self) -> Option<&str> {
        match self {
            Self::Save { node_name, .. }
            | Self::List { node_name, .. }
            | Self::Delete { node_name, .. }
            | Self::Prune { node_name, .. } => node_name.as_deref(),
        }
    }

    /// The S3 setting the caller gave, if any.
    pub fn s3(&self) -> Option<&S3Config> {
        match self {
            Self::Save { s3, .. }
            | Self::List { s3, .. }
            | Self::Delete { s3, .. }
            | Self::Prune { s3, .. } => s3.as_ref(),
        }
    }
}

/// The answer to any operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResponse {
    /// save: the snapshot taken (and its S3 copy); ls: every snapshot; delete and prune: those
    /// removed.
    pub snapshots: Vec<SnapshotRecord>,
    /// What was not done: names given to delete that were not found (or not this node's), an
    /// upload to S3 that failed; each with the reason. The CLI exits non-zero when any.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Things the user should know although the operation succeeded.
    #[serde(default)]
    pub warnings: Vec<String>,
}
