//! etcd's watch: many watchers over one member's applied changes, with etcd's guarantees.
//!
//! - [`hub`] holds [`WatchHub`] (the watchers, their synced/unsynced/victim states, the sync
//!   task) and [`WatchStream`] (one client stream carrying many watches).
//! - [`queue`] holds the bounded per-stream queue and the [`WatchMessage`]s it yields.
//! - [`key_range`] and [`group`] decide which watchers an event's key concerns; [`fast_hash`]
//!   hashes the hub's own keys.
//!
//! The gRPC layer turns messages into `WatchResponse`s (headers, fragmentation, periodic
//! progress); this module knows nothing of gRPC.

pub mod fast_hash;
pub mod group;
pub mod hub;
pub mod key_range;
pub mod queue;

#[cfg(test)]
mod tests;

pub use hub::{HubConfig, WatchCreate, WatchHub, WatchStream, DUPLICATE_WATCH_ID};
pub use key_range::{EmptyRange, KeyRange};
pub use queue::{Delivery, SharedDelivery, SharedEvents, SharedMessage, WatchMessage};
