//! The record of every snapshot, kept in the store so that `ls` on any server lists the
//! snapshots of every server (k3s keeps ETCDSnapshotFile objects for this).
//!
//! One key per snapshot, `/k3rs/etcd-snapshots/<file name>` for a file on a node and
//! `/k3rs/etcd-snapshots/s3/<object name>` for a copy in S3 (names never hold a `/`, so the two
//! never meet), holding a JSON [`SnapshotRecord`]. Guarantees: a record is written only through raft (so every member
//! reads the same records); listing reads linearizably, falling back to this member's own
//! state when no leader is known (it then says so in a warning); a record that does not
//! decode is skipped with a warning, never fatal.

use anyhow::{Context, Result};
use raftstore::node::NodeHandle;
use raftstore::pb::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use serde::{Deserialize, Serialize};

/// Where the records live in the store.
pub const RECORD_PREFIX: &str = "/k3rs/etcd-snapshots/";

/// Whether a snapshot was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotStatus {
    Successful,
    Failed,
}

/// One snapshot, as recorded and as `ls -o json|yaml` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The file name, `<name>-<node>-<unix time>`.
    pub name: String,
    /// The node that took it.
    pub node: String,
    /// `file:///abs/path` on that node.
    pub location: String,
    pub size: u64,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub compressed: bool,
    pub status: SnapshotStatus,
    /// Why a failed snapshot failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Where S3 records live, under [`RECORD_PREFIX`].
const S3_RECORD_PREFIX: &str = "/k3rs/etcd-snapshots/s3/";

impl SnapshotRecord {
    /// Whether this is the record of a copy in S3 (location `s3://...`).
    pub fn is_s3(&self) -> bool {
        self.location.starts_with("s3://")
    }
}

/// The records in the store of a running member.
pub struct Records<'a> {
    pub handle: &'a NodeHandle,
}

impl Records<'_> {
    fn key(name: &str, s3: bool) -> Vec<u8> {
        let prefix = if s3 { S3_RECORD_PREFIX } else { RECORD_PREFIX };
        format!("{prefix}{name}").into_bytes()
    }

    /// Writes (or replaces) `record`.
    pub async fn put(&self, record: &SnapshotRecord) -> Result<()> {
        let value = serde_json::to_vec(record).context("encoding the snapshot record")?;
        self.handle
            .put(PutRequest {
                key: Self::key(&record.name, record.is_s3()),
                value,
                ..Default::default()
            })
            .await
            .with_context(|| format!("writing the record of snapshot {}", record.name))?;
        Ok(())
    }

    /// Removes the record of `name`, of a local file or an S3 copy (nothing when there is
    /// none).
    pub async fn delete(&self, name: &str, s3: bool) -> Result<()> {
        self.handle
            .delete_range(DeleteRangeRequest {
                key: Self::key(name, s3),
                ..Default::default()
            })
            .await
            .with_context(|| format!("removing the record of snapshot {name}"))?;
        Ok(())
    }

    /// Every record, by name, and a warning when they were read without a leader.
    pub async fn list(&self) -> Result<(Vec<SnapshotRecord>, Option<String>)> {
        let mut request = RangeRequest {
            key: RECORD_PREFIX.as_bytes().to_vec(),
            range_end: raftstore::mvcc::tree_index::prefix_end(RECORD_PREFIX.as_bytes()),
            ..Default::default()
        };
        let (response, warning) = match self.handle.range(request.clone()).await {
            Ok(response) => (response, None),
            Err(error) => {
                request.serializable = true;
                let response = self
                    .handle
                    .range(request)
                    .await
                    .context("reading the snapshot records")?;
                let warning = format!(
                    "the cluster did not answer ({error}); the records listed are this \
                     server's copy and may be behind"
                );
                (response, Some(warning))
            }
        };
        let mut records = Vec::new();
        for kv in response.kvs {
            match serde_json::from_slice::<SnapshotRecord>(&kv.value) {
                Ok(record) => records.push(record),
                Err(error) => tracing::warn!(
                    key = %String::from_utf8_lossy(&kv.key),
                    %error,
                    "skipping a snapshot record that does not decode"
                ),
            }
        }
        Ok((records, warning))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_json_with_lowercase_status() {
        let record = SnapshotRecord {
            name: "on-demand-n-1".into(),
            node: "n".into(),
            location: "file:///s/on-demand-n-1".into(),
            size: 10,
            created_at: "1970-01-01T00:00:01Z".into(),
            compressed: false,
            status: SnapshotStatus::Successful,
            message: String::new(),
        };
        let json = serde_json::to_string(&record).expect("encodes");
        assert!(json.contains(r#""status":"successful""#), "{json}");
        assert!(!json.contains("message"), "{json}");
        assert_eq!(
            serde_json::from_str::<SnapshotRecord>(&json).expect("decodes"),
            record
        );
    }
}
