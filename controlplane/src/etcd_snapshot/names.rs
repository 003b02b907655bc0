//! Snapshot file names, as k3s makes them: `<name>-<node>-<unix time>` (a `.zip` suffix when
//! compressed), and the temporary `.<final name>.partial` a save writes first.
//!
//! Guarantees: [`file_name`] and [`SnapshotName::parse_for`] agree (a name made for a base
//! name and node parses back to them and its time); a partial or hidden file is never taken
//! for a snapshot; [`check_name`] refuses anything that could leave the snapshot directory.

use time::OffsetDateTime;

/// Suffix of compressed snapshots.
pub const ZIP_SUFFIX: &str = ".zip";
/// Suffix of a snapshot being written.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The file name of a snapshot of `node` named `base`, taken at `unix_time`.
pub fn file_name(base: &str, node: &str, unix_time: i64) -> String {
    format!("{base}-{node}-{unix_time}")
}

/// The temporary name a save writes `final_name` under.
pub fn partial_name(final_name: &str) -> String {
    format!(".{final_name}{PARTIAL_SUFFIX}")
}

/// Whether a file in a snapshot directory may be listed as a snapshot (not hidden, not a
/// partial save).
pub fn is_listable(file_name: &str) -> bool {
    !file_name.starts_with('.') && !file_name.ends_with(PARTIAL_SUFFIX)
}

/// Refuses names that are empty, hidden or contain a path separator (a name given to the
/// CLI must stay inside the snapshot directory).
pub fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if name.starts_with('.') || name.contains('/') || name.contains('\0') {
        return Err(format!(
            "{what} {name:?} is not a snapshot name (no '/', no leading '.')"
        ));
    }
    Ok(())
}

/// A snapshot file name taken apart for one base name and node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotName {
    pub unix_time: i64,
    pub compressed: bool,
}

impl SnapshotName {
    /// `file_name` as a snapshot of `node` named `base`, if it is one.
    pub fn parse_for(file_name: &str, base: &str, node: &str) -> Option<Self> {
        let rest = file_name.strip_prefix(&format!("{base}-{node}-"))?;
        let (digits, compressed) = match rest.strip_suffix(ZIP_SUFFIX) {
            Some(digits) => (digits, true),
            None => (rest, false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            unix_time: digits.parse().ok()?,
            compressed,
        })
    }
}

/// The unix time at the end of any snapshot name (`...-<digits>[.zip]`), if there is one.
pub fn trailing_unix_time(file_name: &str) -> Option<i64> {
    let stem = file_name.strip_suffix(ZIP_SUFFIX).unwrap_or(file_name);
    let (_, digits) = stem.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `time` as RFC 3339 in UTC, to the second (`2026-11-28T18:00:00Z`).
pub fn rfc3339(time: OffsetDateTime) -> String {
    let time = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// `unix_time` as RFC 3339 (the epoch when out of range).
pub fn rfc3339_unix(unix_time: i64) -> String {
    rfc3339(OffsetDateTime::from_unix_timestamp(unix_time).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_base_node_and_unix_time_and_parse_back() {
        let name = file_name("etcd-snapshot", "node-1", 1_764_352_800);
        assert_eq!(name, "etcd-snapshot-node-1-1764352800");
        assert_eq!(
            SnapshotName::parse_for(&name, "etcd-snapshot", "node-1"),
            Some(SnapshotName {
                unix_time: 1_764_352_800,
                compressed: false
            })
        );
        assert_eq!(
            SnapshotName::parse_for(&format!("{name}.zip"), "etcd-snapshot", "node-1"),
            Some(SnapshotName {
                unix_time: 1_764_352_800,
                compressed: true
            })
        );
        assert_eq!(trailing_unix_time(&name), Some(1_764_352_800));
    }

    #[test]
    fn other_names_nodes_and_partials_are_not_taken() {
        let name = file_name("on-demand", "node-1", 100);
        assert_eq!(SnapshotName::parse_for(&name, "on-demand", "node-2"), None);
        assert_eq!(
            SnapshotName::parse_for(&name, "etcd-snapshot", "node-1"),
            None
        );
        // A node called `node` must not claim node-1's snapshots.
        assert_eq!(SnapshotName::parse_for(&name, "on-demand", "node"), None);
        assert_eq!(
            SnapshotName::parse_for("on-demand-node-1-12x", "on-demand", "node-1"),
            None
        );
        assert_eq!(
            SnapshotName::parse_for("on-demand-node-1-", "on-demand", "node-1"),
            None
        );
        let partial = partial_name(&name);
        assert_eq!(partial, ".on-demand-node-1-100.partial");
        assert!(!is_listable(&partial));
        assert!(is_listable(&name));
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        assert!(check_name("on-demand", "name").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "/etc/passwd"] {
            assert!(check_name(bad, "name").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_unix(1_764_352_800), "2025-11-28T18:00:00Z");
    }
}
