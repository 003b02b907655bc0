//! Auto-deploying manifests, as k3s's deploy controller: the YAML and JSON files of
//! `<data-dir>/server/manifests` are applied once the member serves (and the `default`
//! namespace exists, waiting at most 30 s for it) and again whenever they change; objects that leave a file, and the objects of a removed file, are deleted.
//!
//! | module | job |
//! |---|---|
//! | [`files`] | which files count, their checksums, the objects they hold |
//! | [`apply`] | applying and deleting one object through the API's verbs |
//! | [`addon`] | the store's record of what each file applied |
//!
//! Guarantees:
//! - the directory is read every [`POLL`]; a file is applied when its checksum differs from
//!   what this server last applied (so every file at start), and again on every pass while
//!   some of its objects could not be applied (a kind not served yet, a namespace that does
//!   not exist yet); a file's Namespaces are applied before its other objects;
//! - every server applies its own directory; applying is idempotent (a patch that changes
//!   nothing writes nothing), so servers holding the same files agree without coordination;
//! - a file that does not parse changes nothing — its objects stay as they were — and is
//!   logged once per content with its line; the other files still apply;
//! - the objects a file's previous content named and its new content does not are deleted
//!   (only while they still carry that file's owner annotation), and so are all the objects
//!   of a file removed from the directory (one this server applied, or whose record names a
//!   path of this directory), then its record; a file disabled by `F.skip` is left alone;
//! - a file whose record disappears (another server removed its copy of the file) is applied
//!   again by every server that still has it, so a file's objects exist while any server
//!   holds the file;
//! - every created, updated and deleted object is logged at info, every error at warn.

pub mod addon;
pub mod apply;
pub mod files;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kube::datastore::Source;
use tokio::sync::watch as signal;

use crate::kube::storage::Store;
use apply::{ObjectRef, Outcome};
use files::{ManifestFile, Scan};

/// How often the directory is read.
pub const POLL: Duration = Duration::from_secs(5);

/// Half-seconds the first pass waits for the `default` namespace.
const NAMESPACE_WAITS: usize = 60;
const DEFAULT_NAMESPACE_KEY: &str = "/registry/namespaces/default";

/// The manifests directory of a data dir.
pub fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("manifests")
}

/// What a pass did with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deployed {
    /// It does not parse: nothing to retry until it changes.
    Malformed,
    /// Some object was not applied or not deleted: retried on the next pass.
    Partly,
    /// Every object applied and recorded.
    Fully,
}

/// What this server last did with a file.
struct Seen {
    checksum: String,
    deployed: Deployed,
}

/// The state of one server's deployer.
struct Deployer {
    store: Store,
    dir: PathBuf,
    seen: BTreeMap<String, Seen>,
    /// The files present at the last pass whose removals all went through.
    present: Option<BTreeSet<String>>,
}

/// Creates `dir` if needed, waits for the member to serve, then deploys the directory every
/// [`POLL`] until `stop`.
pub async fn run(mut source: Source, mut stop: signal::Receiver<bool>, dir: PathBuf) {
    if let Err(error) = std::fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), %error, "cannot create the manifests directory");
    }
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let Some(store) = source.serving(&mut stop).await else {
        return;
    };
    // The default namespaces are created beside this task; objects bound for them would
    // fail the first pass.
    for _ in 0..NAMESPACE_WAITS {
        if matches!(store.get(DEFAULT_NAMESPACE_KEY, true).await, Ok(Some(_))) {
            break;
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    let mut deployer = Deployer {
        store,
        dir,
        seen: BTreeMap::new(),
        present: None,
    };
    loop {
        deployer.pass().await;
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

impl Deployer {
    async fn pass(&mut self) {
        let scan = match files::scan(&self.dir) {
            Ok(scan) => scan,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot read the manifests directory");
                return;
            }
        };
        let recorded = self.recorded_addons(&scan).await;
        for file in &scan.files {
            let retry = match self.seen.get(&file.name) {
                Some(seen)
                    if seen.checksum == file.checksum && seen.deployed == Deployed::Malformed =>
                {
                    continue
                }
                Some(seen)
                    if seen.checksum == file.checksum && seen.deployed == Deployed::Fully =>
                {
                    if recorded
                        .as_ref()
                        .is_none_or(|names| names.contains(file.addon_name()))
                    {
                        continue;
                    }
                    tracing::info!(
                        file = %file.path.display(),
                        "the manifest's record is gone (another server removed its copy): applying it again"
                    );
                    false
                }
                Some(seen) => seen.checksum == file.checksum,
                None => false,
            };
            let deployed = self.deploy(file, retry).await;
            self.seen.insert(
                file.name.clone(),
                Seen {
                    checksum: file.checksum.clone(),
                    deployed,
                },
            );
        }
        let present: BTreeSet<String> = scan
            .files
            .iter()
            .map(|file| file.name.clone())
            .chain(scan.skipped.iter().cloned())
            .collect();
        self.seen.retain(|name, _| present.contains(name));
        if self.present.as_ref() != Some(&present) {
            if self.remove_gone(&scan).await {
                self.present = Some(present);
            } else {
                self.present = None;
            }
        }
    }

    /// The addon names recorded in the store (this member's copy), when some file this server
    /// applied could have lost its record; `None` when there is none or the read failed.
    async fn recorded_addons(&self, scan: &Scan) -> Option<BTreeSet<String>> {
        let applied = scan.files.iter().any(|file| {
            self.seen.get(&file.name).is_some_and(|seen| {
                seen.deployed == Deployed::Fully && seen.checksum == file.checksum
            })
        });
        if !applied {
            return None;
        }
        match addon::list(&self.store, true).await {
            Ok(records) => Some(
                records
                    .into_iter()
                    .map(|(_, record)| record.metadata.name)
                    .collect(),
            ),
            Err(error) => {
                tracing::debug!("listing the manifests' records: {error}");
                None
            }
        }
    }

    /// Applies one file. `retry`: the same content failed before, so its errors are logged
    /// at debug only.
    async fn deploy(&self, file: &ManifestFile, retry: bool) -> Deployed {
        let path = file.path.display().to_string();
        let documents = match files::parse(&file.name, &file.content) {
            Ok(documents) => documents,
            Err(error) => {
                tracing::warn!(file = %path, "manifest not applied: {path}: {error}");
                return Deployed::Malformed;
            }
        };
        let addon = file.addon_name();
        let mut ordered: Vec<&files::Document> = documents
            .iter()
            .filter(|d| d.object["kind"] == "Namespace")
            .collect();
        ordered.extend(documents.iter().filter(|d| d.object["kind"] != "Namespace"));
        let mut done = true;
        let mut named = Vec::new();
        for document in ordered {
            let reference = apply::object_ref(&document.object);
            match apply::apply(&self.store, addon, &document.object).await {
                Ok((_, Outcome::Unchanged)) => {
                    tracing::debug!(file = %path, object = %reference, "manifest object unchanged");
                }
                Ok((_, outcome)) => {
                    let what = if outcome == Outcome::Created {
                        "created"
                    } else {
                        "updated"
                    };
                    tracing::info!(file = %path, object = %reference, "manifest object {what}");
                }
                Err(error) => {
                    done = false;
                    if retry {
                        tracing::debug!(file = %path, object = %reference, "manifest object not applied yet: {error}");
                    } else {
                        tracing::warn!(
                            file = %path,
                            object = %reference,
                            "manifest object not applied: {path}: line {}: {reference}: {error}",
                            document.line
                        );
                    }
                }
            }
            named.push(reference);
        }
        named.sort();
        named.dedup();
        let previous = match addon::read(&self.store, addon).await {
            Ok(previous) => previous,
            Err(error) => {
                tracing::warn!(file = %path, "reading the manifest's record: {error}");
                return Deployed::Partly;
            }
        };
        if let Some((_, previous)) = previous.filter(|(_, record)| record.spec.source == path) {
            let dropped: Vec<&ObjectRef> = previous
                .status
                .objects
                .iter()
                .filter(|reference| !named.contains(reference))
                .collect();
            if !self.delete_all(&path, addon, dropped).await {
                done = false;
            }
        }
        let record = addon::Addon::new(addon, path.clone(), file.checksum.clone(), named);
        if let Err(error) = addon::write(&self.store, record).await {
            tracing::warn!(file = %path, "writing the manifest's record: {error}");
            return Deployed::Partly;
        }
        if done {
            Deployed::Fully
        } else {
            Deployed::Partly
        }
    }

    /// Deletes each object still owned by `addon`; whether all went through.
    async fn delete_all(&self, path: &str, addon: &str, objects: Vec<&ObjectRef>) -> bool {
        let mut all = true;
        for reference in objects {
            match apply::delete(&self.store, addon, reference).await {
                Ok(true) => {
                    tracing::info!(file = %path, object = %reference, "manifest object deleted");
                }
                Ok(false) => {}
                Err(error) => {
                    all = false;
                    tracing::warn!(file = %path, object = %reference, "manifest object not deleted: {error}");
                }
            }
        }
        all
    }

    /// Deletes the objects and records of this directory's files that are gone; whether all
    /// went through.
    async fn remove_gone(&self, scan: &Scan) -> bool {
        let records = match addon::list(&self.store, false).await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!("listing the manifests' records: {error}");
                return false;
            }
        };
        let mut all = true;
        for (revision, record) in records {
            let source = Path::new(&record.spec.source);
            let Some(name) = source.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if source.parent() != Some(self.dir.as_path()) || scan.has(name) {
                continue;
            }
            let path = record.spec.source.clone();
            tracing::info!(file = %path, "manifest removed: deleting its objects");
            let objects: Vec<&ObjectRef> = record.status.objects.iter().collect();
            if !self.delete_all(&path, &record.metadata.name, objects).await {
                all = false;
                continue;
            }
            if let Err(error) = addon::remove(&self.store, &record.metadata.name, revision).await {
                tracing::warn!(file = %path, "removing the manifest's record: {error}");
                all = false;
            }
        }
        all
    }
}
