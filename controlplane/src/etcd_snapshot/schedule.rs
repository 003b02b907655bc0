//! Scheduled snapshots of `k3rs server` (`--etcd-snapshot-schedule-cron` and friends).
//!
//! Guarantees: at each time the cron expression names (UTC, computed from the wall clock and
//! waited for with `tokio::time`), a serving voter saves `<name>-<node>-<unix time>` (`.zip`
//! with `--etcd-snapshot-compress`) into the snapshot directory, uploads it with `--etcd-s3`,
//! then prunes this node's snapshots of that name to the retention (and S3's to
//! `--etcd-s3-retention`); a
//! learner, or a member not serving yet, skips that time. A failed save is logged (and
//! recorded as failed by the save) and the schedule goes on. Nothing runs with
//! `--etcd-disable-snapshots`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::cron::Cron;
use super::s3_config::S3Args;
use super::service::SnapshotService;

/// k3s's snapshot flags of `k3rs server`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScheduleArgs {
    /// Snapshot schedule as a 5-field cron expression (minute hour day-of-month month
    /// day-of-week), in UTC.
    #[arg(
        long,
        env = "K3RS_ETCD_SNAPSHOT_SCHEDULE_CRON",
        default_value = "0 */12 * * *",
        value_parser = Cron::parse,
        value_name = "CRON"
    )]
    pub etcd_snapshot_schedule_cron: Cron,

    /// Number of scheduled snapshots of this node to keep.
    #[arg(long, env = "K3RS_ETCD_SNAPSHOT_RETENTION", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub etcd_snapshot_retention: u32,

    /// Directory to save snapshots to [default: ${data-dir}/server/db/snapshots].
    #[arg(long, env = "K3RS_ETCD_SNAPSHOT_DIR", value_name = "DIR")]
    pub etcd_snapshot_dir: Option<PathBuf>,

    /// Base name of scheduled snapshots.
    #[arg(long, env = "K3RS_ETCD_SNAPSHOT_NAME", default_value = "etcd-snapshot")]
    pub etcd_snapshot_name: String,

    /// Take no scheduled snapshots.
    #[arg(long, env = "K3RS_ETCD_DISABLE_SNAPSHOTS")]
    pub etcd_disable_snapshots: bool,

    /// Compress snapshots (a zip with one entry, `.zip` suffix).
    #[arg(long, env = "K3RS_ETCD_SNAPSHOT_COMPRESS")]
    pub etcd_snapshot_compress: bool,

    #[command(flatten)]
    pub s3: S3Args,
}

impl ScheduleArgs {
    /// The snapshot directory: the flag (made absolute) or `<data-dir>/server/db/snapshots`.
    pub fn snapshot_dir(&self, data_dir: &Path) -> PathBuf {
        match &self.etcd_snapshot_dir {
            Some(dir) if dir.is_absolute() => dir.clone(),
            Some(dir) => std::env::current_dir()
                .map(|cwd| cwd.join(dir))
                .unwrap_or_else(|_| dir.clone()),
            None => default_snapshot_dir(data_dir),
        }
    }
}

/// `<data-dir>/server/db/snapshots`.
pub fn default_snapshot_dir(data_dir: &Path) -> PathBuf {
    let data_dir = if data_dir.is_absolute() {
        data_dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(data_dir))
            .unwrap_or_else(|_| data_dir.to_path_buf())
    };
    data_dir.join("server").join("db").join("snapshots")
}

/// Runs the schedule of `args` until `stop` turns true.
pub async fn run(
    service: Arc<SnapshotService>,
    args: ScheduleArgs,
    mut stop: watch::Receiver<bool>,
) {
    if args.etcd_disable_snapshots {
        tracing::info!("scheduled snapshots are disabled");
        return;
    }
    let cron = args.etcd_snapshot_schedule_cron;
    let retention = args.etcd_snapshot_retention as usize;
    loop {
        let now = OffsetDateTime::now_utc();
        let Some(next) = cron.next_after(now) else {
            tracing::warn!(schedule = %cron, "the snapshot schedule never fires");
            return;
        };
        tracing::debug!(schedule = %cron, next = %super::names::rfc3339(next), "next scheduled snapshot");
        let wait = Duration::try_from(next - now).unwrap_or(Duration::ZERO);
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(wait) => {}
        }
        // The sleep may end a little early by the wall clock; never fire before the time.
        let early = next - OffsetDateTime::now_utc();
        if let Ok(early) = Duration::try_from(early) {
            tokio::time::sleep(early).await;
        }
        take_one(
            &service,
            &args.etcd_snapshot_name,
            retention,
            args.etcd_snapshot_compress,
        )
        .await;
    }
}

/// One scheduled snapshot and the prune after it.
async fn take_one(service: &SnapshotService, name: &str, retention: usize, compress: bool) {
    let Some(handle) = service.handle() else {
        tracing::info!("skipping a scheduled snapshot: the store is not serving yet");
        return;
    };
    if handle.status().is_learner {
        tracing::info!("skipping a scheduled snapshot: this member is a learner");
        return;
    }
    let s3 = service.server_s3();
    match service.save(name, None, compress, s3).await {
        Ok(saved) => {
            for record in saved.snapshots {
                tracing::info!(snapshot = %record.name, location = %record.location, bytes = record.size, "scheduled snapshot saved");
            }
            for error in saved.errors {
                tracing::warn!("scheduled snapshot: {error}");
            }
        }
        Err(error) => {
            tracing::warn!("scheduled snapshot failed: {error}");
            return;
        }
    }
    match service.prune(name, retention, None, s3).await {
        Ok(pruned) => {
            for record in pruned.snapshots {
                tracing::info!(snapshot = %record.name, "pruned by retention");
            }
        }
        Err(error) => tracing::warn!("pruning snapshots after a scheduled one: {error}"),
    }
}
