//! etcd's leases, split by who decides what.
//!
//! - [`LeaseTable`]: the replicated part, owned by the MVCC store and changed only by applied
//!   raft entries — which leases exist, their granted TTL, and the keys attached to each. Every
//!   member holds the same table at the same raft index.
//! - [`ExpiryClock`]: the leader's private part — when each lease expires. Only the leader keeps
//!   deadlines and, when one passes, proposes a revoke, so every member deletes the same keys at
//!   the same revision. A new leader (after an election or a restart) gives every lease its full
//!   TTL plus an election timeout, so no lease expires early because of a failover.

pub mod clock;
pub mod table;

pub use clock::ExpiryClock;
pub use table::{LeaseTable, MAX_LEASE_TTL};
