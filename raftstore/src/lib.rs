//! raftstore: k3rs's replicated MVCC state machine.
//!
//! Layers, bottom up: [`engine`] (atomic write batches over a few tables, with explicit
//! durability), [`raft_log`] (raft-rs's log storage kept in the engine), [`mvcc`] (etcd's
//! revisioned key-value model, applied idempotently by raft index), [`lease`] (leases: the
//! replicated table and the leader's expiry clock), [`watch`] (the hub that streams applied
//! events to watchers), and
//! [`node`] (the driver task that alone owns raft-rs's `RawNode`, and the handle the API uses).
//!
//! This crate knows nothing of gRPC, TLS, S3 or command lines.

pub mod engine;
pub mod error;
pub mod identity;
pub mod lease;
pub mod member_reset;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod node;
pub mod pb;
pub mod raft_log;
pub mod state_export;
pub mod state_image;
pub mod state_import;
pub mod watch;

pub use error::{ErrorCode, EtcdError, StorageError};
