//! The etcd `Lease` service: Grant, Revoke, KeepAlive (a bidirectional stream), TimeToLive and
//! Leases over [`NodeHandle`].
//!
//! Guarantees, as etcd: KeepAlive of an unknown (or just expired) lease answers TTL 0, not an
//! error; TimeToLive of an unknown lease answers TTL −1; any other failure ends the call with
//! etcd's code and message. Each KeepAlive request is answered in order, once. KeepAlive and
//! TimeToLive are answered by the leader: a follower forwards them to its peer service.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use raftstore::node::NodeHandle;
use raftstore::EtcdError;
use tonic::{Request, Response, Status, Streaming};

use crate::error::status_from;
use crate::header::current_header;
use crate::leader::LeaderLink;
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
    leader: Arc<LeaderLink>,
}

impl LeaseService {
    pub fn new(handle: NodeHandle, connector: crate::net::Connector) -> Self {
        Self {
            leader: Arc::new(LeaderLink::new(handle.clone(), connector)),
            handle,
        }
    }
}

/// Renews lease `id` here if this member leads, else on the leader: its TTL, 0 if unknown.
async fn renew(handle: &NodeHandle, leader: &LeaderLink, id: i64) -> Result<i64, Status> {
    match handle.lease_renew(id).await {
        Ok(ttl) => Ok(ttl.unwrap_or(0)),
        Err(EtcdError::NotLeader) => {
            let mut client = leader.leader().map_err(status_from)?;
            let forwarded = client
                .lease_renew(LeaseKeepAliveRequest { id })
                .await?
                .into_inner();
            Ok(forwarded.ttl)
        }
        Err(err) => Err(status_from(err)),
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

/// The answer to a keep-alive of lease `id` renewed to `ttl` (`None`: unknown, answered TTL 0).
pub(crate) fn keep_alive_response(
    handle: &NodeHandle,
    id: i64,
    ttl: Option<i64>,
) -> LeaseKeepAliveResponse {
    LeaseKeepAliveResponse {
        header: Some(current_header(handle)),
        id,
        ttl: ttl.unwrap_or(0),
    }
}

/// The answer to a TimeToLive of lease `id`: as described, or TTL −1 when it does not exist.
pub(crate) fn time_to_live_response(
    handle: &NodeHandle,
    id: i64,
    described: Option<LeaseTimeToLiveResponse>,
) -> LeaseTimeToLiveResponse {
    described.unwrap_or_else(|| LeaseTimeToLiveResponse {
        header: Some(current_header(handle)),
        id,
        ttl: -1,
        ..Default::default()
    })
}

/// Answers one keep-alive: the lease's TTL, or 0 when it does not exist.
async fn keep_alive_once(
    handle: &NodeHandle,
    leader: &LeaderLink,
    request: LeaseKeepAliveRequest,
) -> Result<LeaseKeepAliveResponse, Status> {
    let ttl = renew(handle, leader, request.id).await?;
    Ok(keep_alive_response(handle, request.id, Some(ttl)))
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
        let leader = Arc::clone(&self.leader);
        let requests = request.into_inner();
        // One answer per request, in order; a broken request stream or a failed renewal ends
        // the response stream with that status.
        let responses = requests
            .then(move |request| {
                let handle = handle.clone();
                let leader = Arc::clone(&leader);
                async move { keep_alive_once(&handle, &leader, request?).await }
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
        let described = match self
            .handle
            .lease_time_to_live(request.id, request.keys)
            .await
        {
            Ok(described) => described,
            Err(EtcdError::NotLeader) => {
                let mut client = self.leader.leader().map_err(status_from)?;
                let forwarded = client.lease_time_to_live(request).await?.into_inner();
                return Ok(Response::new(forwarded));
            }
            Err(err) => return Err(status_from(err)),
        };
        Ok(Response::new(time_to_live_response(
            &self.handle,
            request.id,
            described,
        )))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(self.handle.lease_leases()))
    }
}
