//! `SnapshotError`: why a snapshot could not be written, read or restored, worded so that the
//! person holding the file knows what to do next.

use raftstore::StorageError;

use crate::format::FORMAT_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing the bytes failed (the message names what was being done).
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
    /// The file is something else than a k3rs snapshot.
    #[error("not a k3rs snapshot: {0}")]
    Foreign(String),
    #[error(
        "snapshot format version {found} is newer than this k3rs reads (up to version \
         {FORMAT_VERSION}): restore it with a newer k3rs (the release that wrote it, or later)"
    )]
    UnsupportedVersion { found: u32 },
    #[error(
        "the snapshot is truncated: it ends after {offset} bytes, {missing}; the file is \
         incomplete (an interrupted save, upload or copy): copy it again or use another snapshot"
    )]
    Truncated { offset: u64, missing: String },
    #[error(
        "the snapshot is damaged at byte {offset}: {reason}; it cannot be restored: use another \
         snapshot"
    )]
    Damaged { offset: u64, reason: String },
    /// The store being read or written failed.
    #[error("{context}: {cause}")]
    Storage {
        context: String,
        cause: StorageError,
    },
}

impl SnapshotError {
    pub(crate) fn io(context: impl Into<String>, cause: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            cause,
        }
    }

    pub(crate) fn storage(context: impl Into<String>, cause: StorageError) -> Self {
        Self::Storage {
            context: context.into(),
            cause,
        }
    }

    pub(crate) fn damaged(offset: u64, reason: impl Into<String>) -> Self {
        Self::Damaged {
            offset,
            reason: reason.into(),
        }
    }

    /// True when the snapshot itself is at fault (foreign, damaged, truncated, too new), as
    /// opposed to the disk or the store around it.
    pub fn is_bad_snapshot(&self) -> bool {
        matches!(
            self,
            Self::Foreign(_)
                | Self::UnsupportedVersion { .. }
                | Self::Truncated { .. }
                | Self::Damaged { .. }
        )
    }
}
