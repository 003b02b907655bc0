//! The standard gRPC health service (`grpc.health.v1.Health`), as etcd registers it.
//!
//! Guarantee: once [`serving_health_service`] returns, the overall server (`""`) and the KV
//! service (`etcdserverpb.KV`) report SERVING — the names etcd's own health checks and load
//! balancers probe.

use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::ServingStatus;

use crate::kv::KvService;
use crate::pb::etcdserverpb::kv_server::KvServer;

/// A health service reporting the whole server and its KV service as SERVING.
pub(crate) async fn serving_health_service() -> HealthServer<impl Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    reporter.set_serving::<KvServer<KvService>>().await;
    service
}
