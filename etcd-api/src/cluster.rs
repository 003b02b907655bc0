//! The etcd `Cluster` service: MemberList now; membership changes arrive with replication.
//!
//! Guarantees: MemberList shows the members this node knows, with a current header; with
//! `linearizable` it first waits for a ReadIndex round, so the list is no older than the
//! leader's at the time of the call. Change RPCs answer `Unimplemented`, never a wrong answer.

use raftstore::node::NodeHandle;
use tonic::{Request, Response, Status};

use crate::error::status_from;
use crate::header::current_header;
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
}

impl ClusterService {
    pub fn new(handle: NodeHandle) -> Self {
        Self { handle }
    }
}

fn membership_changes_not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "k3rs: Cluster.{rpc} is not implemented yet: membership changes arrive with replication"
    ))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(membership_changes_not_yet("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(membership_changes_not_yet("MemberRemove"))
    }

    async fn member_update(
        &self,
        _request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(membership_changes_not_yet("MemberUpdate"))
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
        _request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(membership_changes_not_yet("MemberPromote"))
    }
}
