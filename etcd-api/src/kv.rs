//! The etcd `KV` service: Range, Put, DeleteRange, Txn and Compact over [`NodeHandle`].
//!
//! Guarantees: each RPC is exactly one `NodeHandle` call, so validation, linearizability and
//! revision accounting are the store's; responses carry the header the handle filled (cluster,
//! member, revision, raft term); failures carry etcd's code and exact message. A learner
//! refuses all but serializable ranges with etcd's `rpc not supported for learner`
//! (the ranges here, the other calls in [`crate::learner_gate`]).

use raftstore::node::NodeHandle;
use tonic::{Request, Response, Status};

use crate::error::status_from;
use crate::learner_gate::refuse_on_learner;
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

/// The KV service of one member.
#[derive(Clone)]
pub struct KvService {
    handle: NodeHandle,
}

impl KvService {
    pub fn new(handle: NodeHandle) -> Self {
        Self { handle }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let request = request.into_inner();
        // The other KV calls never reach a learner (see `crate::learner_gate`).
        if !request.serializable {
            refuse_on_learner(&self.handle)?;
        }
        self.handle
            .range(request)
            .await
            .map(Response::new)
            .map_err(status_from)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.handle
            .put(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status_from)
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        self.handle
            .delete_range(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status_from)
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.handle
            .txn(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status_from)
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        self.handle
            .compact(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status_from)
    }
}
