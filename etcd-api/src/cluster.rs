//! The etcd `Cluster` service: MemberList, MemberAdd, MemberPromote, MemberRemove.
//!
//! Guarantees: MemberList shows the members this node knows, with a current header; with
//! `linearizable` it first waits for a ReadIndex round, so the list is no older than the
//! leader's at the time of the call. Changes go through raft as conf changes and answer once
//! applied here; a promotion is checked by the leader (a follower forwards it); MemberUpdate
//! changes a member's peer URLs through raft and every member reconnects to them.

use std::sync::Arc;

use raftstore::node::NodeHandle;
use raftstore::EtcdError;
use tonic::{Request, Response, Status};

use crate::error::status_from;
use crate::header::current_header;
use crate::leader::LeaderLink;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

/// The Cluster service of one member.
#[derive(Clone)]
pub struct ClusterService {
    handle: NodeHandle,
    leader: Arc<LeaderLink>,
}

impl ClusterService {
    pub fn new(handle: NodeHandle, connector: crate::net::Connector) -> Self {
        Self {
            leader: Arc::new(LeaderLink::new(handle.clone(), connector)),
            handle,
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let request = request.into_inner();
        let (member, members) = self
            .handle
            .member_add(request.peer_ur_ls, request.is_learner)
            .await
            .map_err(status_from)?;
        Ok(Response::new(MemberAddResponse {
            header: Some(current_header(&self.handle)),
            member: Some(member),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let members = self
            .handle
            .member_remove(request.into_inner().id)
            .await
            .map_err(status_from)?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(current_header(&self.handle)),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let request = request.into_inner();
        let members = self
            .handle
            .member_update(request.id, request.peer_ur_ls)
            .await
            .map_err(status_from)?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(current_header(&self.handle)),
            members,
        }))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.handle.read_barrier().await.map_err(status_from)?;
        }
        Ok(Response::new(MemberListResponse {
            header: Some(current_header(&self.handle)),
            members: self.handle.members(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let request = request.into_inner();
        let members = match self.handle.member_promote(request.id).await {
            Ok(members) => members,
            // Only the leader knows whether the learner caught up: ask it.
            Err(EtcdError::NotLeader) => {
                let mut leader = self.leader.leader().map_err(status_from)?;
                return Ok(Response::new(
                    leader.member_promote(request).await?.into_inner(),
                ));
            }
            Err(err) => return Err(status_from(err)),
        };
        Ok(Response::new(MemberPromoteResponse {
            header: Some(current_header(&self.handle)),
            members,
        }))
    }
}
