//! snapshots: k3rs snapshot files — the format, saving a store into one, checking one, and
//! restoring one into a new store.
//!
//! - [`format`]: the file layout, which is also exactly the byte stream of etcd's
//!   `Maintenance.Snapshot` (ending in the SHA-256 of everything before it), so a file saved by
//!   `etcdctl snapshot save` from k3rs is a k3rs snapshot;
//! - [`writer`] / [`reader`]: streaming, bounded-memory writer and checking reader;
//! - [`save`]: a snapshot of one point-in-time view of a store;
//! - [`restore`]: verify a file, and rebuild a single-member store from it.
//!
//! Guarantees every part keeps: no whole store in memory; a truncated, altered or foreign file
//! is refused with an error that says what is wrong before any restore writes raft state.

pub mod error;
pub mod format;
pub mod lookup;
pub mod reader;
pub mod restore;
pub mod save;
pub mod writer;

pub use error::SnapshotError;
pub use format::SnapshotHeader;
pub use lookup::values_with_prefix;
pub use reader::{verify, SnapshotReader, Verified};
pub use restore::{import, import_file, open_file, verify_file, Restored};
pub use save::{encoded_len, header_of, write_view};
pub use writer::{SnapshotWriter, Written};

#[cfg(test)]
mod tests;
