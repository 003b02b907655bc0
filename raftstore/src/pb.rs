//! Generated protobuf types: etcd's `mvccpb` and `etcdserverpb` (wire-compatible with etcd v3)
//! and k3rs's own `k3rspb` records (raft commands, cluster identity).

#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

pub mod k3rspb {
    include!(concat!(env!("OUT_DIR"), "/k3rspb.rs"));
}
