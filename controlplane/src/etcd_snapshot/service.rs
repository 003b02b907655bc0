//! The server side of `k3rs etcd-snapshot`, also used by the schedule: save, list, delete and
//! prune, over this node's snapshot files and the cluster's snapshot records.
//!
//! Guarantees:
//! - a save writes one consistent point-in-time view of the store (the engine's read view)
//!   with [`snapshots::write_view`] through [`local::write_file`] (partial file, fsync,
//!   rename, directory fsync), zipped with `compress`, then records it; a failed save leaves
//!   no file and records the failure (status `failed` and the reason);
//! - with S3 set (the request's, else the server's `--etcd-s3`), a saved snapshot is then
//!   uploaded and recorded separately; a failed upload keeps the local snapshot, records the
//!   failure and is reported in the response's errors;
//! - saves, deletes and prunes of one server run one at a time; two saves in the same second
//!   get different names (the second waits for the next second); a save first removes the
//!   partial files an interrupted save (a crash) left in its directory;
//! - only this node's files are ever removed: delete refuses a name another node took, and
//!   prune counts only this node's successful snapshots with the given base name; in S3,
//!   prune keeps the newest `--etcd-s3-retention` of the base name across nodes;
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
use super::s3::{S3Snapshot, S3Store};
use super::s3_config::S3Config;
use crate::progress::{Progress, ProgressWriter};

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
    /// The server's `--etcd-s3` setting.
    s3: Option<S3Config>,
    /// The server's `--etcd-snapshot-compress`.
    compress: bool,
    busy: Mutex<()>,
}

impl SnapshotService {
    /// Snapshots of `node_name`, written to `default_dir` unless a request names another,
    /// zipped with `compress` unless a request says, and to S3 with `s3`.
    pub fn new(
        node_name: String,
        default_dir: PathBuf,
        member: watch::Receiver<Option<NodeHandle>>,
        compress: bool,
        s3: Option<S3Config>,
    ) -> Self {
        Self {
            node_name,
            default_dir,
            member,
            s3,
            compress,
            busy: Mutex::new(()),
        }
    }

    /// The server's own S3 setting.
    pub fn server_s3(&self) -> Option<&S3Config> {
        self.s3.as_ref()
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
        let s3 = request.s3().or(self.s3.as_ref()).cloned();
        let s3 = s3.as_ref();
        match request {
            SnapshotRequest::Save {
                name,
                dir,
                compress,
                ..
            } => {
                let compress = compress.unwrap_or(self.compress);
                self.save(&name, dir.as_deref(), compress, s3).await
            }
            SnapshotRequest::List { .. } => self.list(s3).await,
            SnapshotRequest::Delete { names, .. } => self.delete(&names, s3).await,
            SnapshotRequest::Prune {
                name,
                retention,
                dir,
                ..
            } => self.prune(&name, retention, dir.as_deref(), s3).await,
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

    /// Takes a snapshot named `<base>-<node>-<unix time>` (`.zip` when `compress`) in `dir`
    /// (default: the server's snapshot directory) and uploads it with `s3`; returns its
    /// records, and in `errors` an upload that failed.
    pub async fn save(
        &self,
        base: &str,
        dir: Option<&Path>,
        compress: bool,
        s3: Option<&S3Config>,
    ) -> Result<SnapshotResponse, ServiceError> {
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
        let suffix = if compress { names::ZIP_SUFFIX } else { "" };
        let (name, created) = self.free_name(base, suffix, &dir).await;
        let view = handle
            .engine()
            .read_view()
            .context("taking a read view of the store")?;
        let (write_dir, write_name) = (dir.clone(), name.clone());
        let written = tokio::task::spawn_blocking(move || {
            local::write_file(&write_dir, &write_name, |out| {
                let progress = Progress::log_only(format!("saving snapshot {write_name}"), None);
                if compress {
                    super::compress::write_zipped(&mut *out, &write_name, |zipped| {
                        write_counted(view.as_ref(), zipped, progress)
                    })?;
                    Ok(())
                } else {
                    write_counted(view.as_ref(), &mut *out, progress)
                }
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
            compressed: compress,
            status: SnapshotStatus::Successful,
            message: String::new(),
        };
        let path = match written {
            Ok((path, size)) => {
                record.size = size;
                tracing::info!(snapshot = %path.display(), bytes = size, "snapshot saved");
                path
            }
            Err(error) => {
                tracing::warn!(snapshot = %name, "saving a snapshot failed: {error:#}");
                record.status = SnapshotStatus::Failed;
                record.message = format!("{error:#}");
                if let Err(record_error) = records.put(&record).await {
                    tracing::warn!("recording the failed snapshot: {record_error:#}");
                }
                return Err(ServiceError::Failed(
                    error.context(format!("saving snapshot {name}")),
                ));
            }
        };
        let mut response = SnapshotResponse::default();
        if let Err(error) = records.put(&record).await {
            let warning = format!(
                "the snapshot was saved but its record was not written ({error:#}); \
                 ls on this server lists it from its file, other servers do not"
            );
            tracing::warn!("{warning}");
            response.warnings.push(warning);
        }
        response.snapshots.push(record.clone());
        if let Some(s3) = s3 {
            let mut copy = SnapshotRecord {
                location: s3.location_of(&name),
                ..record
            };
            match upload(s3, &path, &name).await {
                Ok(size) => copy.size = size,
                Err(error) => {
                    tracing::warn!(snapshot = %name, "uploading a snapshot to S3 failed: {error:#}");
                    copy.status = SnapshotStatus::Failed;
                    copy.message = format!("{error:#}");
                    response.errors.push(format!(
                        "snapshot {name} was saved locally but not uploaded to S3: {error:#}"
                    ));
                }
            }
            if let Err(error) = records.put(&copy).await {
                response.warnings.push(format!(
                    "the record of the S3 copy of {name} was not written: {error:#}"
                ));
            }
            if copy.status == SnapshotStatus::Successful {
                response.snapshots.push(copy);
            }
        }
        Ok(response)
    }

    /// A name for a snapshot taken now that no file has, waiting for the next second when
    /// this second's is taken.
    async fn free_name(&self, base: &str, suffix: &str, dir: &Path) -> (String, OffsetDateTime) {
        loop {
            let now = OffsetDateTime::now_utc();
            let name = names::file_name(base, &self.node_name, now.unix_timestamp()) + suffix;
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
            if let Err(error) = records.delete(&record.name, false).await {
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

    /// Every snapshot of the cluster, and of the S3 folder with `s3`, oldest first.
    pub async fn list(&self, s3: Option<&S3Config>) -> Result<SnapshotResponse, ServiceError> {
        let handle = self.serving()?;
        let (mut snapshots, mut warnings) = self.live_records(&handle).await?;
        for file in local::list(&self.default_dir)? {
            let recorded = snapshots.iter().any(|record| {
                !record.is_s3() && record.node == self.node_name && record.name == file.name
            });
            if !recorded {
                snapshots.push(self.record_of_file(&file));
            }
        }
        if let Some(s3) = s3 {
            match list_s3(s3).await {
                Ok(objects) => {
                    self.merge_s3_listing(&handle, s3, &objects, &mut snapshots, &mut warnings)
                        .await
                }
                Err(error) => {
                    warnings.push(format!("the snapshots in S3 are not listed: {error:#}"))
                }
            }
        }
        snapshots.sort_by(|a, b| {
            (&a.created_at, &a.name, a.is_s3(), &a.node).cmp(&(
                &b.created_at,
                &b.name,
                b.is_s3(),
                &b.node,
            ))
        });
        Ok(SnapshotResponse {
            snapshots,
            errors: Vec::new(),
            warnings,
        })
    }

    /// Drops the records of objects of `s3`'s folder that are gone, and adds the objects that
    /// have no record.
    async fn merge_s3_listing(
        &self,
        handle: &NodeHandle,
        s3: &S3Config,
        objects: &[S3Snapshot],
        snapshots: &mut Vec<SnapshotRecord>,
        warnings: &mut Vec<String>,
    ) {
        let store = Records { handle };
        let mut kept = Vec::with_capacity(snapshots.len());
        for record in snapshots.drain(..) {
            let in_folder = record.is_s3() && record.location == s3.location_of(&record.name);
            let gone = in_folder
                && record.status == SnapshotStatus::Successful
                && !objects.iter().any(|object| object.name == record.name);
            if !gone {
                kept.push(record);
                continue;
            }
            tracing::info!(snapshot = %record.name, location = %record.location, "removing the record of an S3 snapshot that is gone");
            if let Err(error) = store.delete(&record.name, true).await {
                warnings.push(format!(
                    "the S3 object of snapshot {} is gone but its record stays: {error:#}",
                    record.name
                ));
            }
        }
        *snapshots = kept;
        for object in objects {
            let location = s3.location_of(&object.name);
            if !snapshots.iter().any(|record| record.location == location) {
                snapshots.push(record_of_object(s3, object));
            }
        }
    }

    /// Removes the snapshots named (file and record, and the S3 copy with `s3`); names not
    /// found, or taken by another node, are reported in `errors` and the others are still
    /// removed.
    pub async fn delete(
        &self,
        names: &[String],
        s3: Option<&S3Config>,
    ) -> Result<SnapshotResponse, ServiceError> {
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
        let bucket = match s3 {
            Some(s3) => Some(S3Store::connect(s3.clone()).await?),
            None => None,
        };
        let mut response = SnapshotResponse {
            warnings,
            ..Default::default()
        };
        for name in names {
            let local_record = records
                .iter()
                .find(|record| &record.name == name && !record.is_s3());
            let s3_record = records
                .iter()
                .find(|record| &record.name == name && record.is_s3());
            let mut found = false;
            match local_record.filter(|record| record.node != self.node_name) {
                Some(record) => response.errors.push(format!(
                    "snapshot {name} was taken by node {}: delete it on that server",
                    record.node
                )),
                None => {
                    if let Some(deleted) = self.delete_local(&store, name, local_record).await? {
                        found = true;
                        response.snapshots.push(deleted);
                    }
                }
            }
            if let Some(bucket) = &bucket {
                let here = bucket.config().location_of(name);
                let recorded_here = s3_record.filter(|record| record.location == here);
                if bucket.delete(name).await? {
                    found = true;
                    let deleted = recorded_here.cloned().unwrap_or_else(|| {
                        record_of_object(
                            bucket.config(),
                            &S3Snapshot {
                                name: name.clone(),
                                size: 0,
                                modified_unix: 0,
                            },
                        )
                    });
                    response.snapshots.push(deleted);
                }
                if recorded_here.is_some() {
                    store.delete(name, true).await?;
                }
            } else if let Some(record) = s3_record {
                response.errors.push(format!(
                    "snapshot {name} has a copy in S3 at {}: give the S3 flags (--s3 ...) to \
                     delete it there",
                    record.location
                ));
                found = true;
            }
            if !found && local_record.is_none() {
                response.errors.push(format!(
                    "snapshot {name} not found: the cluster has no record of it, {} does \
                     not exist{} (see `k3rs etcd-snapshot ls`)",
                    self.default_dir.join(name).display(),
                    if bucket.is_some() {
                        " and S3 has no such object"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(response)
    }

    /// Removes this node's snapshot `name` (file and record); its record when it existed.
    async fn delete_local(
        &self,
        store: &Records<'_>,
        name: &str,
        record: Option<&SnapshotRecord>,
    ) -> Result<Option<SnapshotRecord>, ServiceError> {
        let path = record
            .and_then(|record| local::path_of(&record.location))
            .unwrap_or_else(|| self.default_dir.join(name));
        let file = local::list(path.parent().unwrap_or(&self.default_dir))?
            .into_iter()
            .find(|file| file.path == path);
        if record.is_none() && file.is_none() {
            return Ok(None);
        }
        if local::remove(&path)? {
            if let Some(parent) = path.parent() {
                local::sync_dir(parent)?;
            }
        }
        if record.is_some() {
            store.delete(name, false).await?;
        }
        tracing::info!(snapshot = %name, "snapshot deleted");
        Ok(record
            .cloned()
            .or_else(|| file.as_ref().map(|file| self.record_of_file(file))))
    }

    /// Keeps the newest `retention` snapshots of this node named `base` and removes the
    /// others (files in `dir` or the snapshot directory, and records), then with `s3` keeps
    /// the newest `--etcd-s3-retention` of that name in S3; returns those removed.
    pub async fn prune(
        &self,
        base: &str,
        retention: usize,
        dir: Option<&Path>,
        s3: Option<&S3Config>,
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
        let mut response = SnapshotResponse {
            warnings,
            ..Default::default()
        };
        self.prune_local(&store, &records, base, retention, &dir, now, &mut response)
            .await?;
        if let Some(s3) = s3 {
            let bucket = S3Store::connect(s3.clone()).await?;
            for object in bucket.prune(base, s3.retention as usize).await? {
                let location = s3.location_of(&object.name);
                let record = records
                    .iter()
                    .find(|record| record.is_s3() && record.location == location);
                if record.is_some() {
                    store.delete(&object.name, true).await?;
                }
                tracing::info!(snapshot = %object.name, %location, "S3 snapshot pruned");
                response.snapshots.push(
                    record
                        .cloned()
                        .unwrap_or_else(|| record_of_object(s3, &object)),
                );
            }
            for record in records.iter().filter(|record| {
                record.is_s3()
                    && record.status == SnapshotStatus::Failed
                    && SnapshotName::parse_for(&record.name, base, &self.node_name)
                        .is_some_and(|parsed| now - parsed.unix_time > FAILED_RECORD_KEEP_SECS)
            }) {
                store.delete(&record.name, true).await?;
            }
        }
        Ok(response)
    }

    #[allow(clippy::too_many_arguments)]
    async fn prune_local(
        &self,
        store: &Records<'_>,
        records: &[SnapshotRecord],
        base: &str,
        retention: usize,
        dir: &Path,
        now: i64,
        response: &mut SnapshotResponse,
    ) -> Result<(), ServiceError> {
        // name → (unix time, path, record)
        let mut mine: BTreeMap<String, (i64, PathBuf, Option<SnapshotRecord>)> = BTreeMap::new();
        for record in records
            .iter()
            .filter(|r| r.node == self.node_name && !r.is_s3())
        {
            let Some(parsed) = SnapshotName::parse_for(&record.name, base, &self.node_name) else {
                continue;
            };
            if record.status == SnapshotStatus::Failed {
                if now - parsed.unix_time > FAILED_RECORD_KEEP_SECS {
                    store.delete(&record.name, false).await?;
                }
                continue;
            }
            let path = local::path_of(&record.location).unwrap_or_else(|| dir.join(&record.name));
            mine.insert(
                record.name.clone(),
                (parsed.unix_time, path, Some(record.clone())),
            );
        }
        for file in local::list(dir)? {
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
        for (name, (unix_time, path, record)) in newest_first.into_iter().skip(retention) {
            let size = std::fs::metadata(&path).map_or(0, |metadata| metadata.len());
            local::remove(&path)?;
            if let Some(parent) = path.parent() {
                local::sync_dir(parent)?;
            }
            if record.is_some() {
                store.delete(&name, false).await?;
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
        Ok(())
    }
}

/// Streams `view` as a snapshot into `out`, counting the bytes for the log.
fn write_counted(
    view: &dyn raftstore::engine::ReadView,
    out: &mut dyn std::io::Write,
    progress: Progress,
) -> anyhow::Result<()> {
    let mut counted = ProgressWriter::new(out, progress);
    snapshots::write_view(view, &mut counted)?;
    counted.finish();
    Ok(())
}

/// Uploads the snapshot file `path` as `name`; its size.
async fn upload(s3: &S3Config, path: &Path, name: &str) -> anyhow::Result<u64> {
    S3Store::connect(s3.clone()).await?.upload(path, name).await
}

async fn list_s3(s3: &S3Config) -> anyhow::Result<Vec<S3Snapshot>> {
    S3Store::connect(s3.clone()).await?.list().await
}

/// A record for an S3 object that has none (taken by a server that did not record it, or
/// another cluster): the node is unknown.
fn record_of_object(s3: &S3Config, object: &S3Snapshot) -> SnapshotRecord {
    let unix_time = names::trailing_unix_time(&object.name).unwrap_or(object.modified_unix);
    SnapshotRecord {
        name: object.name.clone(),
        node: String::new(),
        location: s3.location_of(&object.name),
        size: object.size,
        created_at: names::rfc3339_unix(unix_time),
        compressed: object.name.ends_with(names::ZIP_SUFFIX),
        status: SnapshotStatus::Successful,
        message: String::new(),
    }
}
