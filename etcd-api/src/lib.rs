//! etcd-api: the etcd v3 gRPC surface of k3rs over raftstore's [`raftstore::node::NodeHandle`].
//!
//! Real etcd clients (etcdctl, Go clientv3 as kube-apiserver uses it) must not tell it from
//! etcd: services, messages and field numbers are etcd's ([`pb`]), errors carry etcd's codes and
//! exact texts ([`status_from`]), message limits and keepalives are etcd's ([`serve`]).
//! Services: `KV`, `Watch`, `Lease`, `Maintenance` (Status, Alarm GET, Defragment), `Cluster` (MemberList) and the
//! gRPC health service. Sockets are made only behind the [`net`] seam ([`TokioNet`] in
//! production, a simulated network in tests).

mod authority;
mod cluster;
mod error;
pub mod grpc_metrics;
mod header;
mod health;
mod kv;
mod leader;
mod learner_gate;
mod lease;
mod maintenance;
pub mod net;
pub mod pb;
pub mod peer;
mod receive_limit;
mod server;
pub mod tls;
mod watch;
mod watch_server;

pub use error::status_from;
pub use grpc_metrics::GrpcMetrics;
pub use maintenance::{DB_SIZE_QUOTA_BYTES, SERVER_VERSION, STORAGE_VERSION};
pub use net::{connector, Connector, Net, TokioIncoming, TokioNet};
pub use peer::GrpcTransport;
pub use server::{serve, serve_peers, ServeError};
