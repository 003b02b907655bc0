//! The server side of `k3rs etcd-snapshot`, also used by the schedule: save, list, delete and
//! prune, over this node's snapshot files and the cluster's snapshot records.
//!
//! Guarantees:
//! - a save writes one consistent point-in-time view of the store (the engine's read view)
//!   with [`snapshots::write_view`] through [`local::write_file`] (partial file, fsync,
//!   rename, directory fsync), then records it; a failed save leaves no file and records the
//!   failure (status `failed` and the reason);
//! - saves, deletes and prunes of one server run one at a time; two saves in the same second
//!   get different names (the second waits for the next second); a save first removes the
//!   partial files an interrupted save (a crash) left in its directory;
//! - only this node's files are ever removed: delete refuses a name another node took, and
//!   prune counts only this node's successful snapshots with the given base name;
//! - this node's records whose file vanished are removed when `ls` or `prune` runs (`ls` then
//!   does not list them); files in the snapshot directory without a record are listed;
//!   failed records are kept 24 hours, then removed by the prune of their base name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use raftstore::node::NodeHandle;
use time::OffsetDateTime;
use tokio::sync::{watch, Mutex};

use super::api::{SnapshotRequest, SnapshotResponse};
use super::local;
use super::names::{self, SnapshotName};
use super::records::{Records, SnapshotRecord, SnapshotStatus};

/// How long the record of a failed snapshot is kept (k3s: 24 hours).
const FAILED_RECORD_KEEP_SECS: i64 = 24 * 60 * 60;

/// Why an operation was not done.
#[derive(Debug)]
pub enum ServiceError {
    /// The request itself is wrong; nothing was done.
    BadRequest(String),
    /// The store does not serve yet.
    NotServing,
    /// The operation failed; the message says where.
    Failed(anyhow::Error),
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadRequest(message) => f.write_str(message),
            Self::NotServing => f.write_str(
                "the server's store is not serving yet (starting or joining); try again shortly",
            ),
            Self::Failed(error) => write!(f, "{error:#}"),
        }
    }
}

impl From<anyhow::Error> for ServiceError {
    fn from(error: anyhow::Error) -> Self {
        Self::Failed(error)
    }
}

/// Snapshots of one server.
pub struct SnapshotService {
    node_name: String,
    default_dir: PathBuf,
    member: watch::Receiver<Option<NodeHandle>>,
    busy: Mutex<()>,
}

impl SnapshotService {
    /// Snapshots of `node_name`, written to `default_dir` unless a request names another.
    pub fn new(
        node_name: String,
        default_dir: PathBuf,
        member: watch::Receiver<Option<NodeHandle>>,
    ) -> Self {
        Self {
            node_name,
            default_dir,
            member,
            busy: Mutex::new(()),
        }
    }

    /// The running member, if it serves.
    pub fn handle(&self) -> Option<NodeHandle> {
        self.member.borrow().clone()
    }

    fn serving(&self) -> Result<NodeHandle, ServiceError> {
        self.handle().ok_or(ServiceError::NotServing)
    }

    /// Runs one request of the CLI.
    pub async fn answer(&self, request: SnapshotRequest) -> Result<SnapshotResponse, ServiceError> {
        if let Some(expected) = request.node_name() {
            if expected != self.node_name {
                return Err(ServiceError::BadRequest(format!(
                    "--node-name {expected} does not match this server's node name {}: is \
                     --etcd-server the server you mean?",
                    self.node_name
                )));
            }
        }
        match request {
            SnapshotRequest::Save { name, dir, .. } => {
                let (record, warnings) = self.save(&name, dir.as_deref()).await?;
                Ok(SnapshotResponse {
                    snapshots: vec![record],
                    errors: Vec::new(),
                    warnings,
                })
            }
            SnapshotRequest::List { .. } => self.list().await,
            SnapshotRequest::Delete { names, .. } => self.delete(&names).await,
            SnapshotRequest::Prune {
                name,
                retention,
                dir,
                ..
            } => self.prune(&name, retention, dir.as_deref()).await,
        }
    }

    fn dir_or_default(&self, dir: Option<&Path>) -> Result<PathBuf, ServiceError> {
        match dir {
            None => Ok(self.default_dir.clone()),
            Some(dir) if dir.is_absolute() => Ok(dir.to_path_buf()),
            Some(dir) => Err(ServiceError::BadRequest(format!(
                "the snapshot directory {} is not an absolute path",
                dir.display()
            ))),
        }
    }

    /// Takes a snapshot named `<base>-<node>-<unix time>` in `dir` (default: the server's
    /// snapshot directory); returns its record and warnings.
    pub async fn save(
        &self,
        base: &str,
        dir: Option<&Path>,
    ) -> Result<(SnapshotRecord, Vec<String>), ServiceError> {
        names::check_name(base, "snapshot name").map_err(ServiceError::BadRequest)?;
        let dir = self.dir_or_default(dir)?;
        let handle = self.serving()?;
        let _busy = self.busy.lock().await;
        // Saves run one at a time: a partial file now is what a crash left.
        match local::remove_stale_partials(&dir) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(
                    ?removed,
                    "removed partial snapshot files left by an interrupted save"
                )
            }
            Ok(_) => {}
            Err(error) => tracing::warn!("removing partial snapshot files: {error:#}"),
        }
        let (name, created) = self.free_name(base, &dir).await;
        let view = handle
            .engine()
            .read_view()
            .context("taking a read view of the store")?;
        let (write_dir, write_name) = (dir.clone(), name.clone());
        let written = tokio::task::spawn_blocking(move || {
            local::write_file(&write_dir, &write_name, |out| {
                snapshots::write_view(view.as_ref(), out)?;
                Ok(())
            })
        })
        .await
        .context("the snapshot task failed")
        .and_then(|result| result);
        let records = Records { handle: &handle };
        let mut record = SnapshotRecord {
            name: name.clone(),
            node: self.node_name.clone(),
            location: local::location_of(&dir.join(&name)),
            size: 0,
            created_at: names::rfc3339(created),
            compressed: false,
            status: SnapshotStatus::Successful,
            message: String::new(),
        };
        match written {
            Ok((path, size)) => {
                record.size = size;
                tracing::info!(snapshot = %path.display(), bytes = size, "snapshot saved");
                let mut warnings = Vec::new();
                if let Err(error) = records.put(&record).await {
                    let warning = format!(
                        "the snapshot was saved but its record was not written ({error:#}); \
                         ls on this server lists it from its file, other servers do not"
                    );
                    tracing::warn!("{warning}");
                    warnings.push(warning);
                }
                Ok((record, warnings))
            }
            Err(error) => {
                tracing::warn!(snapshot = %name, "saving a snapshot failed: {error:#}");
                record.status = SnapshotStatus::Failed;
                record.message = format!("{error:#}");
                if let Err(record_error) = records.put(&record).await {
                    tracing::warn!("recording the failed snapshot: {record_error:#}");
                }
                Err(ServiceError::Failed(
                    error.context(format!("saving snapshot {name}")),
                ))
            }
        }
    }

    /// A name for a snapshot taken now that no file has, waiting for the next second when
    /// this second's is taken.
    async fn free_name(&self, base: &str, dir: &Path) -> (String, OffsetDateTime) {
        loop {
            let now = OffsetDateTime::now_utc();
            let name = names::file_name(base, &self.node_name, now.unix_timestamp());
            if !dir.join(&name).exists() {
                return (name, now);
            }
            let to_next_second = 1_000_000_000 - u64::from(now.nanosecond()) + 1_000_000;
            tokio::time::sleep(Duration::from_nanos(to_next_second)).await;
        }
    }

    /// The cluster's records after removing this node's whose file vanished; warnings.
    async fn live_records(
        &self,
        handle: &NodeHandle,
    ) -> Result<(Vec<SnapshotRecord>, Vec<String>), ServiceError> {
        let records = Records { handle };
        let (listed, warning) = records.list().await?;
        let mut warnings: Vec<String> = warning.into_iter().collect();
        let mut live = Vec::new();
        for record in listed {
            let vanished = record.node == self.node_name
                && record.status == SnapshotStatus::Successful
                && local::path_of(&record.location).is_some_and(|path| !path.exists());
            if !vanished {
                live.push(record);
                continue;
            }
            tracing::info!(snapshot = %record.name, location = %record.location, "removing the record of a snapshot whose file is gone");
            if let Err(error) = records.delete(&record.name).await {
                warnings.push(format!(
                    "the file of snapshot {} is gone but its record stays: {error:#}",
                    record.name
                ));
            }
        }
        Ok((live, warnings))
    }

    /// A record for a file of this node that has none.
    fn record_of_file(&self, file: &local::LocalFile) -> SnapshotRecord {
        let unix_time = names::trailing_unix_time(&file.name).unwrap_or(file.modified_unix);
        SnapshotRecord {
            name: file.name.clone(),
            node: self.node_name.clone(),
            location: local::location_of(&file.path),
            size: file.size,
            created_at: names::rfc3339_unix(unix_time),
            compressed: file.name.ends_with(names::ZIP_SUFFIX),
            status: SnapshotStatus::Successful,
            message: String::new(),
        }
    }

    /// Every snapshot of the cluster, oldest first.
    pub async fn list(&self) -> Result<SnapshotResponse, ServiceError> {
        let handle = self.serving()?;
        let (mut snapshots, warnings) = self.live_records(&handle).await?;
        for file in local::list(&self.default_dir)? {
            let recorded = snapshots
                .iter()
                .any(|record| record.node == self.node_name && record.name == file.name);
            if !recorded {
                snapshots.push(self.record_of_file(&file));
            }
        }
        snapshots.sort_by(|a, b| {
            (&a.created_at, &a.name, &a.node).cmp(&(&b.created_at, &b.name, &b.node))
        });
        Ok(SnapshotResponse {
            snapshots,
            errors: Vec::new(),
            warnings,
        })
    }

    /// Removes the snapshots named (file and record); names not found, or taken by another
    /// node, are reported in `errors` and the others are still removed.
    pub async fn delete(&self, names: &[String]) -> Result<SnapshotResponse, ServiceError> {
        if names.is_empty() {
            return Err(ServiceError::BadRequest(
                "name the snapshots to delete".to_string(),
            ));
        }
        for name in names {
            names::check_name(name, "snapshot name").map_err(ServiceError::BadRequest)?;
        }
        let handle = self.serving()?;
        let _busy = self.busy.lock().await;
        let (records, warnings) = self.live_records(&handle).await?;
        let store = Records { handle: &handle };
        let mut response = SnapshotResponse {
            warnings,
            ..Default::default()
        };
        for name in names {
            let record = records.iter().find(|record| &record.name == name);
            if let Some(record) = record.filter(|record| record.node != self.node_name) {
                response.errors.push(format!(
                    "snapshot {name} was taken by node {}: delete it on that server",
                    record.node
                ));
                continue;
            }
            let path = record
                .and_then(|record| local::path_of(&record.location))
                .unwrap_or_else(|| self.default_dir.join(name));
            let file = local::list(path.parent().unwrap_or(&self.default_dir))?
                .into_iter()
                .find(|file| file.path == path);
            if record.is_none() && file.is_none() {
                response.errors.push(format!(
                    "snapshot {name} not found: the cluster has no record of it and {} does \
                     not exist (see `k3rs etcd-snapshot ls`)",
                    path.display()
                ));
                continue;
            }
            if local::remove(&path)? {
                if let Some(parent) = path.parent() {
                    local::sync_dir(parent)?;
                }
            }
            if record.is_some() {
                store.delete(name).await?;
            }
            tracing::info!(snapshot = %name, "snapshot deleted");
            let deleted = record
                .cloned()
                .or_else(|| file.as_ref().map(|file| self.record_of_file(file)));
            response.snapshots.extend(deleted);
        }
        Ok(response)
    }

    /// Keeps the newest `retention` snapshots of this node named `base` and removes the
    /// others (files in `dir` or the snapshot directory, and records); returns those removed.
    pub async fn prune(
        &self,
        base: &str,
        retention: usize,
        dir: Option<&Path>,
    ) -> Result<SnapshotResponse, ServiceError> {
        names::check_name(base, "snapshot name").map_err(ServiceError::BadRequest)?;
        if retention == 0 {
            return Err(ServiceError::BadRequest(
                "the retention must be at least 1 (use delete to remove every snapshot)"
                    .to_string(),
            ));
        }
        let dir = self.dir_or_default(dir)?;
        let handle = self.serving()?;
        let _busy = self.busy.lock().await;
        let (records, warnings) = self.live_records(&handle).await?;
        let store = Records { handle: &handle };
        let now = OffsetDateTime::now_utc().unix_timestamp();

        // name → (unix time, path, record)
        let mut mine: BTreeMap<String, (i64, PathBuf, Option<SnapshotRecord>)> = BTreeMap::new();
        for record in records.into_iter().filter(|r| r.node == self.node_name) {
            let Some(parsed) = SnapshotName::parse_for(&record.name, base, &self.node_name) else {
                continue;
            };
            if record.status == SnapshotStatus::Failed {
                if now - parsed.unix_time > FAILED_RECORD_KEEP_SECS {
                    store.delete(&record.name).await?;
                }
                continue;
            }
            let path = local::path_of(&record.location).unwrap_or_else(|| dir.join(&record.name));
            mine.insert(record.name.clone(), (parsed.unix_time, path, Some(record)));
        }
        for file in local::list(&dir)? {
            if let Some(parsed) = SnapshotName::parse_for(&file.name, base, &self.node_name) {
                mine.entry(file.name.clone()).or_insert((
                    parsed.unix_time,
                    file.path.clone(),
                    None,
                ));
            }
        }
        let mut newest_first: Vec<_> = mine.into_iter().collect();
        newest_first.sort_by(|(a_name, (a_time, ..)), (b_name, (b_time, ..))| {
            (b_time, b_name).cmp(&(a_time, a_name))
        });
        let mut response = SnapshotResponse {
            warnings,
            ..Default::default()
        };
        for (name, (unix_time, path, record)) in newest_first.into_iter().skip(retention) {
            let size = std::fs::metadata(&path).map_or(0, |metadata| metadata.len());
            local::remove(&path)?;
            if let Some(parent) = path.parent() {
                local::sync_dir(parent)?;
            }
            if record.is_some() {
                store.delete(&name).await?;
            }
            tracing::info!(snapshot = %name, "snapshot pruned");
            response
                .snapshots
                .push(record.unwrap_or_else(|| SnapshotRecord {
                    name: name.clone(),
                    node: self.node_name.clone(),
                    location: local::location_of(&path),
                    size,
                    created_at: names::rfc3339_unix(unix_time),
                    compressed: name.ends_with(names::ZIP_SUFFIX),
                    status: SnapshotStatus::Successful,
                    message: String::new(),
                }));
        }
        Ok(response)
    }
}
