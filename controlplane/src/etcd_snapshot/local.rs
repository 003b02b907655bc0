//! Snapshot files in a local directory: writing one safely, listing and removing them.
//!
//! Guarantees of [`write_file`]: the snapshot is written to `.<name>.partial` (mode 0600) in
//! the target directory (created 0700 when missing), fsynced, renamed to its final name, and
//! the directory fsynced, so after a crash the final name either holds a complete snapshot or
//! does not exist; on any failure the partial file is removed and the final name never
//! appears. [`list`] never shows hidden or partial files.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::names;

/// Buffer between the snapshot writer and the file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// A snapshot file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub modified_unix: i64,
}

/// Writes `<dir>/<name>` through `write`, which streams the snapshot into the writer it is
/// given; returns the final path and its size.
pub fn write_file<F>(dir: &Path, name: &str, write: F) -> Result<(PathBuf, u64)>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the snapshot directory {}", dir.display()))?;
    let final_path = dir.join(name);
    if final_path.exists() {
        anyhow::bail!("{} exists already", final_path.display());
    }
    let partial = dir.join(names::partial_name(name));
    // A partial file left by a crash is garbage by definition.
    let _ = std::fs::remove_file(&partial);
    let result = write_partial(&partial, write).and_then(|size| {
        std::fs::rename(&partial, &final_path).with_context(|| {
            format!("renaming {} to {}", partial.display(), final_path.display())
        })?;
        Ok(size)
    });
    let size = match result {
        Ok(size) => size,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    sync_dir(dir)?;
    Ok((final_path, size))
}

fn write_partial<F>(partial: &Path, write: F) -> Result<u64>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    write(&mut out).with_context(|| format!("writing {}", partial.display()))?;
    out.flush()
        .with_context(|| format!("writing {}", partial.display()))?;
    let file = out
        .into_inner()
        .map_err(|error| error.into_error())
        .with_context(|| format!("writing {}", partial.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", partial.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("reading the size of {}", partial.display()))?
        .len();
    Ok(size)
}

/// Removes the partial files a save interrupted by a crash left in `dir`; the caller must
/// be the only one saving into `dir`. Returns their names.
pub fn remove_stale_partials(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(error).with_context(|| format!("listing {}", dir.display()));
        }
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') && name.ends_with(names::PARTIAL_SUFFIX) && remove(&entry.path())?
        {
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Makes the entries of `dir` (a rename, a removal) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .with_context(|| format!("syncing the directory {}", dir.display()))
}

/// The snapshot files in `dir` (none when it does not exist), by name.
pub fn list(dir: &Path) -> Result<Vec<LocalFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(error).with_context(|| format!("listing {}", dir.display()));
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !names::is_listable(&name) {
            continue;
        }
        let Ok(metadata) = entry.metadata() else {
            continue; // removed meanwhile
        };
        if !metadata.is_file() {
            continue;
        }
        let modified_unix = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |elapsed| elapsed.as_secs() as i64);
        files.push(LocalFile {
            path: entry.path(),
            name,
            size: metadata.len(),
            modified_unix,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Removes `path`; true when it existed.
pub fn remove(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).with_context(|| format!("removing {}", path.display())),
    }
}

/// `file:///abs/path`.
pub fn location_of(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// The path of a `file://` location, if it is one.
pub fn path_of(location: &str) -> Option<PathBuf> {
    location
        .strip_prefix("file://")
        .filter(|path| path.starts_with('/'))
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_written_snapshot_is_private_complete_and_listed() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("snapshots");
        let (path, size) = write_file(&dir, "on-demand-n-1", |out| {
            out.write_all(b"snapshot bytes")?;
            Ok(())
        })
        .expect("written");
        assert_eq!(path, dir.join("on-demand-n-1"));
        assert_eq!(size, 14);
        assert_eq!(std::fs::read(&path).expect("read"), b"snapshot bytes");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        let listed = list(&dir).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "on-demand-n-1");
        assert_eq!(listed[0].size, 14);
        assert!(
            write_file(&dir, "on-demand-n-1", |_| Ok(())).is_err(),
            "an existing snapshot is never overwritten"
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"snapshot bytes");
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("snapshots");
        let error = write_file(&dir, "on-demand-n-2", |out| {
            out.write_all(&vec![7u8; 3 * WRITE_BUFFER_BYTES])?;
            anyhow::bail!("No space left on device")
        })
        .expect_err("fails");
        assert!(format!("{error:#}").contains("No space left"), "{error:#}");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn partial_and_hidden_files_are_not_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".a-n-1.partial"), b"x").expect("write");
        std::fs::write(dir.path().join(".hidden"), b"x").expect("write");
        std::fs::create_dir(dir.path().join("subdir")).expect("mkdir");
        std::fs::write(dir.path().join("a-n-1"), b"x").expect("write");
        let names: Vec<_> = list(dir.path())
            .expect("list")
            .into_iter()
            .map(|file| file.name)
            .collect();
        assert_eq!(names, ["a-n-1"]);
        assert!(list(&dir.path().join("missing")).expect("list").is_empty());
    }

    #[test]
    fn partial_files_left_by_a_crash_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".a-n-1.partial"), b"x").expect("write");
        std::fs::write(dir.path().join("a-n-2"), b"x").expect("write");
        let removed = remove_stale_partials(dir.path()).expect("removed");
        assert_eq!(removed, [".a-n-1.partial"]);
        assert!(dir.path().join("a-n-2").exists());
        assert!(remove_stale_partials(&dir.path().join("missing"))
            .expect("nothing")
            .is_empty());
    }

    #[test]
    fn locations_are_file_urls() {
        let location = location_of(Path::new("/var/lib/k3rs/snap-1"));
        assert_eq!(location, "file:///var/lib/k3rs/snap-1");
        assert_eq!(
            path_of(&location),
            Some(PathBuf::from("/var/lib/k3rs/snap-1"))
        );
        assert_eq!(path_of("s3://bucket/x"), None);
    }
}
