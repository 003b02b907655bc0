//! etcd's MVCC model: revisioned keys, an in-memory key index over revision-keyed rows, and
//! compaction — with etcd v3's observable semantics, rule for rule.
//!
//! - [`revision`]: `(main, sub)` revisions and the 17/18-byte `Table::Kv` row keys.
//! - [`key_index`] / [`tree_index`]: each key's generations of revisions, ordered by key.
//! - [`store`]: [`MvccStore`], which applies committed raft entries (Put, DeleteRange, Txn,
//!   Compaction) idempotently by raft index and serves Range at any readable revision.
//! - [`History`]: changes between two revisions read back as watch events.
//! - [`validate`]: the request checks etcd's gRPC layer does before proposing.
//!
//! The store's own records in `Table::Meta` (consistent index, current revision, scheduled and
//! finished compact revisions) are private to this module; see `meta.rs`.

mod hash;
mod history;
pub mod key_index;
pub(crate) mod meta;
mod read;
pub mod revision;
pub mod store;
pub mod tree_index;
mod txn;
pub mod validate;

pub use hash::{Crc32c, KvHash};
pub use history::History;
pub use key_index::{Generation, KeepSet, KeyIndex, KeyRevision};
pub use revision::Revision;
pub use store::{ApplyOutcome, CommandResponse, MvccStore};
pub use tree_index::TreeIndex;

#[cfg(test)]
mod tests;
