//! The etcd v3 wire types and gRPC services.
//!
//! Messages are raftstore's prost types (re-exported here, never duplicated); this crate adds
//! the generated tonic servers and clients (`kv_server`, `kv_client`, `maintenance_server`, ...)
//! for etcd's services, under etcd's package and service names so real clients interoperate.

/// etcd's `mvccpb` package: `KeyValue` and `Event`.
pub mod mvccpb {
    pub use raftstore::pb::mvccpb::*;
}

/// etcd's `etcdserverpb` package: raftstore's messages plus the generated services.
#[allow(clippy::all, missing_docs)]
pub mod etcdserverpb {
    pub use raftstore::pb::etcdserverpb::*;

    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// k3rs's own peer protocol (`k3rspb.RaftPeer`): raftstore's messages plus the generated
/// service.
#[allow(clippy::all, missing_docs)]
pub mod k3rspb {
    pub use raftstore::pb::k3rspb::*;

    include!(concat!(env!("OUT_DIR"), "/k3rspb.rs"));
}
