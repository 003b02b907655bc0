//! The etcd `Lease` service: Grant, Revoke, KeepAlive (a bidirectional stream), TimeToLive and
//! Leases over [`NodeHandle`].
//!
//! Guarantees, as etcd: KeepAlive of an unknown (or just expired) lease answers TTL 0, not an
//! error; TimeToLive of an unknown lease answers TTL −1; any other failure ends the call with
//! etcd's code and message. Each KeepAlive request is answered in order, once.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use raftstore::node::NodeHandle;
use tonic::{Request, Response, Status, Streaming};

use crate::error::status_from;
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

/// The Lease service of one member.
#[derive(Clone)]
pub struct LeaseService {
    handle: NodeHandle,
}

impl LeaseService {
    pub fn new(handle: NodeHandle) -> Self {
        Self { handle }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

/// Answers one keep-alive: the lease's TTL, or 0 when it does not exist.
async fn keep_alive_once(
    handle: &NodeHandle,
    request: LeaseKeepAliveRequest,
) -> Result<LeaseKeepAliveResponse, Status> {
    let ttl = handle
        .lease_renew(request.id)
        .await
        .map_err(status_from)?
        .unwrap_or(0);
    let revision = handle.store().read().current_revision();
    Ok(LeaseKeepAliveResponse {
        header: Some(handle.header(revision)),
        id: request.id,
        ttl,
    })
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        self.handle
            .lease_grant(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status_from)
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        self.handle
            .lease_revoke(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status_from)
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let handle = self.handle.clone();
        let requests = request.into_inner();
        // One answer per request, in order; a broken request stream or a failed renewal ends
        // the response stream with that status.
        let responses = requests
            .then(move |request| {
                let handle = handle.clone();
                async move { keep_alive_once(&handle, request?).await }
            })
            .scan(false, |failed, response| {
                let emit = (!*failed).then_some(response);
                *failed = *failed || matches!(emit, Some(Err(_)));
                futures::future::ready(emit)
            });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let described = self
            .handle
            .lease_time_to_live(request.id, request.keys)
            .await
            .map_err(status_from)?;
        let response = described.unwrap_or_else(|| LeaseTimeToLiveResponse {
            header: Some(
                self.handle
                    .header(self.handle.store().read().current_revision()),
            ),
            id: request.id,
            ttl: -1,
            ..Default::default()
        });
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(self.handle.lease_leases()))
    }
}
