//! `k3rs server --cluster-reset [--cluster-reset-restore-path PATH]`, as k3s: make this server
//! the only member of a new cluster, then exit telling the user what to do next.
//!
//! Guarantees:
//! - `--cluster-reset` keeps every key, revision and lease: committed entries not yet applied
//!   are applied first (the member runs alone, with no peers, until it caught up), then the
//!   membership is reset in one synced write ([`raftstore::member_reset`]), so a restart keeps
//!   the single-member cluster;
//! - with a restore path (a local file, plain or zipped, or with `--etcd-s3` the name of an
//!   object, first downloaded into the snapshot directory) the snapshot is verified completely
//!   before anything is created; the
//!   new store is built in a staging directory next to `<data-dir>/server/db/etcd`; only once
//!   it is complete is the old `etcd` directory moved to `etcd-old-<unix time>` and the staged
//!   one put in its place. Any failure before that removes the staging directory and leaves the
//!   old data exactly as it was;
//! - the restored store holds exactly the snapshot's keys, revisions, compacted revision and
//!   leases, and this server as its single member (a new cluster id, as etcd's restore gives).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftstore::engine::KvEngine;
use raftstore::state_export::ImagePoint;

use crate::member::MemberSettings;
use crate::progress::{Progress, ProgressReader};

/// How long the member may take to apply the committed entries of its log before a reset.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(300);

/// k3s's reset and restore flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ResetArgs {
    /// Forget all peers and become the only member of a new cluster, keeping the data (the
    /// way out of a lost quorum); exits when done.
    #[arg(long, env = "K3RS_CLUSTER_RESET")]
    pub cluster_reset: bool,

    /// With --cluster-reset: restore this snapshot instead of keeping the data: a file, or with
    /// --etcd-s3 the name of a snapshot in the bucket.
    #[arg(
        long,
        env = "K3RS_CLUSTER_RESET_RESTORE_PATH",
        value_name = "PATH",
        requires = "cluster_reset"
    )]
    pub cluster_reset_restore_path: Option<PathBuf>,
}

impl ResetArgs {
    pub fn requested(&self) -> bool {
        self.cluster_reset
    }
}

/// `k3rs server --cluster-reset ...`: prepares the server as a normal start would
/// (certificates, token, member name), then resets or restores and returns without serving.
/// A restore onto a data dir without certificates first takes the cluster's CAs back from
/// the snapshot's bootstrap data (sealed with the token).
pub async fn run_server(mut args: crate::cli::ServerArgs) -> Result<()> {
    if let Some(name) = &args.reset.cluster_reset_restore_path {
        let s3 = args
            .snapshots
            .s3
            .config()
            .context("checking the --etcd-s3 settings")?;
        if let Some(s3) = s3 {
            let name = name.to_str().context("the snapshot name is not UTF-8")?;
            if name.contains('/') {
                bail!(
                    "with --etcd-s3, --cluster-reset-restore-path is the name of a snapshot in \
                     the bucket (as `k3rs etcd-snapshot ls` shows it), not a path: {name:?}"
                );
            }
            let dir = args.snapshots.snapshot_dir(&args.data_dir());
            let store = crate::etcd_snapshot::s3::S3Store::connect(s3).await?;
            let path = store.download(name, &dir).await.with_context(|| {
                format!("downloading snapshot {name} to restore it; nothing was changed")
            })?;
            println!(
                "k3rs: downloaded {} to {}.",
                store.config().location_of(name),
                path.display()
            );
            args.reset.cluster_reset_restore_path = Some(path);
        }
    }
    if let Some(path) = &args.reset.cluster_reset_restore_path {
        let tls_dir = crate::server_tls::TlsDir::under(&args.data_dir().join("server"));
        if !tls_dir.has_cluster_cas() {
            let token = crate::server::given_token(&args)?;
            crate::bootstrap_store::recover_from_snapshot(path, token.as_ref(), &tls_dir)?;
        }
    }
    let plan = crate::server::prepare(&args, time::OffsetDateTime::now_utc()).await?;
    run(args.reset.clone(), plan.settings).await
}

/// Resets or restores as `args` ask, then returns (the server does not go on serving).
pub async fn run(args: ResetArgs, settings: MemberSettings) -> Result<()> {
    match args.cluster_reset_restore_path {
        Some(path) => tokio::task::spawn_blocking(move || restore(&path, &settings))
            .await
            .context("the restore task failed")?,
        None => reset_membership(settings).await,
    }
}

fn db_dir(settings: &MemberSettings) -> Result<PathBuf> {
    settings
        .data_dir
        .parent()
        .map(Path::to_path_buf)
        .with_context(|| format!("{} has no parent directory", settings.data_dir.display()))
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn next_steps(db_dir: &Path) -> String {
    format!(
        "Next steps:\n  1. start this server again without --cluster-reset;\n  2. on every other \
         server of the old cluster: stop it, remove its {} directory (keep a copy if in doubt), \
         and start it so it joins this server again.",
        db_dir.display()
    )
}

/// `--cluster-reset --cluster-reset-restore-path PATH`.
fn restore(path: &Path, settings: &MemberSettings) -> Result<()> {
    let verified = read_with_progress(path, "verifying", |input| Ok(snapshots::verify(input)?))
        .with_context(|| {
            format!(
                "snapshot {} cannot be restored; nothing was changed",
                path.display()
            )
        })?;
    let header = &verified.header;
    tracing::info!(
        snapshot = %path.display(),
        bytes = verified.bytes,
        revision = header.revision,
        keys_rows = verified.end.kv_rows,
        "snapshot verified"
    );
    let node = &settings.node;
    let me = node
        .initial_cluster
        .iter()
        .find(|member| member.name == node.name)
        .cloned()
        .with_context(|| format!("this server {:?} has no peer URL configured", node.name))?;
    let identity = raftstore::identity::new_cluster_identity(
        &[me],
        &node.name,
        &node.initial_cluster_token,
        &node.advertise_client_urls,
    )
    .map_err(anyhow::Error::msg)?;

    let db_dir = db_dir(settings)?;
    let now = unix_time();
    let staging = db_dir.join(format!("etcd-restore-{now}"));
    let engine_subdir = settings
        .engine_dir()
        .strip_prefix(&settings.data_dir)
        .map(Path::to_path_buf)
        .context("the engine directory is outside the data directory")?;
    let built = build_staged(path, settings, &staging, &engine_subdir, identity);
    if let Err(err) = built {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err.context(format!(
            "restoring {} failed; the old data in {} was not changed",
            path.display(),
            settings.data_dir.display()
        )));
    }

    let old = db_dir.join(format!("etcd-old-{now}"));
    let had_old = settings.data_dir.exists();
    if had_old {
        std::fs::rename(&settings.data_dir, &old).with_context(|| {
            format!(
                "moving the old data {} aside to {}; the restored store is left in {}",
                settings.data_dir.display(),
                old.display(),
                staging.display()
            )
        })?;
    }
    if let Err(err) = std::fs::rename(&staging, &settings.data_dir) {
        if had_old {
            let _ = std::fs::rename(&old, &settings.data_dir);
        }
        return Err(anyhow::Error::new(err).context(format!(
            "putting the restored store {} in place of {}",
            staging.display(),
            settings.data_dir.display()
        )));
    }
    println!(
        "k3rs: restored snapshot {} (revision {}, compacted at {}, {} kv rows, {} leases) into {} \
         as a new single-member cluster.",
        path.display(),
        header.revision,
        header.compact_revision,
        verified.end.kv_rows,
        verified.end.lease_rows,
        settings.data_dir.display()
    );
    if had_old {
        println!("The previous data was moved to {}.", old.display());
    }
    println!("{}", next_steps(&db_dir));
    Ok(())
}

/// Builds the restored store in `staging`; the engine is closed when this returns.
fn build_staged(
    path: &Path,
    settings: &MemberSettings,
    staging: &Path,
    engine_subdir: &Path,
    identity: raftstore::pb::k3rspb::ClusterIdentity,
) -> Result<()> {
    if staging.exists() {
        std::fs::remove_dir_all(staging)
            .with_context(|| format!("removing a stale {}", staging.display()))?;
    }
    crate::member::create_private_dir(staging)?;
    let engine_dir = staging.join(engine_subdir);
    let engine = settings
        .engine
        .open(&engine_dir)
        .with_context(|| format!("creating the new store in {}", engine_dir.display()))?;
    let restored = read_with_progress(path, "restoring", |input| {
        Ok(snapshots::import(input, engine.clone(), identity)?)
    })
    .with_context(|| format!("restoring snapshot {}", path.display()))?;
    engine.sync().context("syncing the new store")?;
    tracing::info!(rows = restored.rows, dir = %staging.display(), "new store built");
    Ok(())
}

/// Runs `read` over the snapshot bytes of `path` (plain or zipped), showing progress.
fn read_with_progress<T>(
    path: &Path,
    doing: &str,
    read: impl FnOnce(&mut dyn std::io::Read) -> Result<T>,
) -> Result<T> {
    let label = format!("{doing} {}", path.display());
    crate::etcd_snapshot::compress::read_snapshot(path, |input, size| {
        let mut counted = ProgressReader::new(input, Progress::terminal_or_log(label, Some(size)));
        let result = read(&mut counted)?;
        counted.finish();
        Ok(result)
    })
}

/// `--cluster-reset` without a snapshot.
async fn reset_membership(settings: MemberSettings) -> Result<()> {
    let engine_dir = settings.engine_dir();
    if !engine_dir.exists() {
        bail!(
            "there is no store in {} to reset; start the server without --cluster-reset to \
             create one",
            engine_dir.display()
        );
    }
    let engine = settings
        .engine
        .open(&engine_dir)
        .with_context(|| format!("opening the store in {}", engine_dir.display()))?;
    apply_committed(&engine, &settings).await?;
    let engine_for_reset = engine.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        raftstore::member_reset::reset_to_single_member(engine_for_reset)
    })
    .await
    .context("the reset task failed")?
    .with_context(|| {
        format!(
            "resetting the cluster of the store in {}",
            engine_dir.display()
        )
    })?;
    let removed: Vec<String> = outcome
        .removed
        .iter()
        .map(|member| format!("{:x}", member.id))
        .collect();
    println!(
        "k3rs: cluster membership reset: member {:x} is now the only member of cluster {:x} \
         (removed: {}); the data is kept, up to raft index {}.",
        outcome.member_id,
        outcome.cluster_id,
        if removed.is_empty() {
            "none".to_string()
        } else {
            removed.join(", ")
        },
        outcome.index
    );
    println!("{}", next_steps(&db_dir(&settings)?));
    Ok(())
}

/// Applies the committed entries of the member's log it has not applied yet, running the
/// member alone (no peers, no clients) until it has.
async fn apply_committed(engine: &Arc<dyn KvEngine>, settings: &MemberSettings) -> Result<()> {
    let point = ImagePoint::read(engine.as_ref()).context("reading the store")?;
    let log =
        raftstore::raft_log::RaftLogStore::open(engine.clone()).context("opening the raft log")?;
    let commit = log.hard_state().commit;
    drop(log);
    if point.applied_index >= commit {
        return Ok(());
    }
    tracing::info!(
        applied = point.applied_index,
        commit,
        "applying committed entries before the reset"
    );
    let running = raftstore::node::start(
        engine.clone(),
        settings.node.clone(),
        Arc::new(raftstore::node::NoPeers),
    )
    .context("starting the member alone to apply its committed entries")?;
    let mut changes = running.handle.status_changes();
    let caught_up = tokio::time::timeout(
        REPLAY_TIMEOUT,
        changes.wait_for(|status| status.applied_index >= commit),
    )
    .await
    // The status guard is dropped at once: the driver publishes through the same channel.
    .map(|waited| waited.is_ok());
    running.handle.shutdown();
    let stopped = running.driver.await;
    match caught_up {
        Ok(true) => {}
        Ok(false) | Err(_) => bail!(
            "the member did not apply its committed entries (up to raft index {commit}) within \
             {REPLAY_TIMEOUT:?}; nothing was reset"
        ),
    }
    match stopped {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(anyhow::Error::new(err).context("the member stopped with an error")),
        Err(err) => Err(anyhow::Error::new(err).context("the member task failed")),
    }
}
