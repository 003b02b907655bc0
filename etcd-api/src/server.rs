//! The client-facing gRPC server: KV, Watch, Lease, Maintenance, Cluster and health, over any connection
//! stream the [`crate::net`] seam produces.
//!
//! Guarantees: a request message larger than etcd's gRPC receive limit (max request bytes +
//! 512 KiB) is refused with `ResourceExhausted` (see [`crate::receive_limit`]) and the server
//! goes on serving; an `:authority` written as a URL, as etcdctl sends it, is accepted
//! (see [`crate::authority`]); a learner serves only what etcd's learners serve (see
//! [`crate::learner_gate`]); responses are limited only as etcd limits them (`i32::MAX`);
//! HTTP/2 keepalive pings follow etcd's defaults.
//! `serve` does not wait for the member to be ready: call it after `RunningNode::ready`, so a
//! restarted member never serves state older than what it had committed.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, TryStreamExt};
use raftstore::node::NodeHandle;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::server::Connected;
use tonic::transport::Server;

use crate::authority::AuthorityRepair;
use crate::cluster::ClusterService;
use crate::grpc_metrics::{GrpcCounted, GrpcMetrics};
use crate::health::serving_health_service;
use crate::kv::KvService;
use crate::learner_gate::LearnerGate;
use crate::lease::LeaseService;
use crate::maintenance::MaintenanceService;
use crate::net::Connector;
use crate::pb::etcdserverpb::cluster_server::ClusterServer;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::pb::etcdserverpb::lease_server::LeaseServer;
use crate::pb::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::pb::k3rspb::raft_peer_server::RaftPeerServer;
use crate::peer::PeerService;
use crate::receive_limit::ReceiveLimitStatus;
use crate::watch::WatchService;
use crate::watch_server::WatchServer;

/// How far etcd's gRPC receive limit exceeds `max_request_bytes`, so that an oversized request
/// still reaches the server and gets etcd's own "request is too large" when it can.
pub const GRPC_RECEIVE_OVERHEAD_BYTES: usize = 512 * 1024;

/// etcd's gRPC send limit (`math.MaxInt32`).
pub const GRPC_SEND_LIMIT_BYTES: usize = i32::MAX as usize;

/// How long a connection may be idle before the server pings it (etcd's
/// `--grpc-keepalive-interval`).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2 * 60 * 60);

/// How long the server waits for a ping's answer before closing the connection (etcd's
/// `--grpc-keepalive-timeout`).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC transport failed while serving etcd clients: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves etcd's v3 API for `handle` on the connections of `incoming` until `shutdown`
/// resolves; then stops accepting and waits for open connections to finish. Requests only the
/// leader answers are forwarded to it over channels `connector` makes. Every call is counted
/// in `metrics`.
pub async fn serve<I, IO, IE>(
    handle: NodeHandle,
    connector: Connector,
    metrics: Arc<GrpcMetrics>,
    incoming: I,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    I: Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn StdError + Send + Sync>>,
{
    let receive_limit_bytes = handle.config().max_request_bytes + GRPC_RECEIVE_OVERHEAD_BYTES;
    let kv = client_service(
        KvServer::new(KvService::new(handle.clone()))
            .max_decoding_message_size(receive_limit_bytes)
            .max_encoding_message_size(GRPC_SEND_LIMIT_BYTES),
        &handle,
        &metrics,
    );
    let watch = client_service(
        WatchServer::new(WatchService::new(handle.clone()))
            .max_decoding_message_size(receive_limit_bytes)
            .max_encoding_message_size(GRPC_SEND_LIMIT_BYTES),
        &handle,
        &metrics,
    );
    let lease = client_service(
        LeaseServer::new(LeaseService::new(handle.clone(), connector.clone()))
            .max_decoding_message_size(receive_limit_bytes)
            .max_encoding_message_size(GRPC_SEND_LIMIT_BYTES),
        &handle,
        &metrics,
    );
    let maintenance = client_service(
        MaintenanceServer::new(MaintenanceService::new(handle.clone()))
            .max_decoding_message_size(receive_limit_bytes)
            .max_encoding_message_size(GRPC_SEND_LIMIT_BYTES),
        &handle,
        &metrics,
    );
    let cluster = client_service(
        ClusterServer::new(ClusterService::new(handle.clone(), connector))
            .max_decoding_message_size(receive_limit_bytes)
            .max_encoding_message_size(GRPC_SEND_LIMIT_BYTES),
        &handle,
        &metrics,
    );
    let health = client_service(serving_health_service().await, &handle, &metrics);

    Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        // etcd's default --max-concurrent-streams: clients multiplex all watches on one connection.
        .max_concurrent_streams(u32::MAX)
        .add_service(kv)
        .add_service(watch)
        .add_service(lease)
        .add_service(maintenance)
        .add_service(cluster)
        .add_service(health)
        .serve_with_incoming_shutdown(incoming.map_ok(AuthorityRepair::new), shutdown)
        .await?;
    Ok(())
}

/// `service` as the client port serves it: counted (outermost, so refusals count too), refused
/// on a learner unless etcd's learners serve it ([`LearnerGate`]), and with etcd's status for
/// an oversized message ([`ReceiveLimitStatus`]).
fn client_service<S>(
    service: S,
    handle: &NodeHandle,
    metrics: &Arc<GrpcMetrics>,
) -> GrpcCounted<LearnerGate<ReceiveLimitStatus<S>>> {
    GrpcCounted::new(
        LearnerGate::new(ReceiveLimitStatus::new(service), handle.clone()),
        metrics.clone(),
    )
}

/// Serves the peer (raft) service for `handle` on the connections of `incoming` until
/// `shutdown` resolves.
pub async fn serve_peers<I, IO, IE>(
    handle: NodeHandle,
    incoming: I,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    I: Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn StdError + Send + Sync>>,
{
    let peer = RaftPeerServer::new(PeerService::new(handle))
        .max_decoding_message_size(crate::peer::MAX_BATCH_BYTES);
    Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(peer)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
