//! Response headers for RPCs that do not go through the MVCC store (Maintenance, Cluster).
//!
//! Guarantee: the header names this member's cluster and id, the store's current revision and
//! the current raft term, as etcd fills it.

use raftstore::node::NodeHandle;
use raftstore::pb::etcdserverpb::ResponseHeader;

/// The header of a response that reads no key: revision = the store's current revision.
pub(crate) fn current_header(handle: &NodeHandle) -> ResponseHeader {
    let revision = handle.store().read().current_revision();
    handle.header(revision)
}
