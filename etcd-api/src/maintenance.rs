//! The etcd `Maintenance` service: Status, Alarm (GET), Defragment, Hash, HashKV, MoveLeader.
//!
//! Guarantees: Status reports a version kube-apiserver accepts for watch progress requests
//! (3.5.x ≥ 3.5.13), this member's raft view and the engine's size, and no errors (so
//! `etcdctl endpoint health` sees a healthy member). RPCs not built yet answer `Unimplemented`
//! with a message naming what they wait for, never a wrong answer.

use futures::stream::Empty;
use raftstore::node::NodeHandle;
use tonic::{Request, Response, Status};

use crate::error::status_from;
use crate::header::current_header;
use crate::pb::etcdserverpb::alarm_request::AlarmAction;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::pb::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};

/// The etcd server version Status reports. kube-apiserver parses it as semver and uses watch
/// progress requests only for ≥ 3.4.31 outside [3.5.0, 3.5.13).
pub const SERVER_VERSION: &str = "3.5.17";

/// The storage schema version etcd 3.5 reports.
pub const STORAGE_VERSION: &str = "3.5.0";

/// etcd's default backend quota (`--quota-backend-bytes`): 2 GiB.
pub const DB_SIZE_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;

/// The Maintenance service of one member.
#[derive(Clone)]
pub struct MaintenanceService {
    handle: NodeHandle,
}

impl MaintenanceService {
    pub fn new(handle: NodeHandle) -> Self {
        Self { handle }
    }
}

fn not_yet(rpc: &str, waits_for: &str) -> Status {
    Status::unimplemented(format!(
        "k3rs: Maintenance.{rpc} is not implemented yet: {waits_for}"
    ))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let action = request.into_inner().action;
        match AlarmAction::try_from(action) {
            // No alarm is ever raised yet (the space quota is not enforced), so none is listed.
            Ok(AlarmAction::Get) => Ok(Response::new(AlarmResponse {
                header: Some(current_header(&self.handle)),
                alarms: Vec::new(),
            })),
            Ok(AlarmAction::Activate | AlarmAction::Deactivate) => Err(not_yet(
                "Alarm ACTIVATE/DEACTIVATE",
                "alarms arrive with the backend space quota (NOSPACE)",
            )),
            Err(_) => Err(Status::invalid_argument(format!(
                "unknown alarm action {action}"
            ))),
        }
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let raft = self.handle.status();
        let db_size = i64::try_from(self.handle.engine().size_bytes()).unwrap_or(i64::MAX);
        Ok(Response::new(StatusResponse {
            header: Some(current_header(&self.handle)),
            version: SERVER_VERSION.to_string(),
            db_size,
            leader: raft.leader_id,
            raft_index: raft.commit_index,
            raft_term: raft.term,
            raft_applied_index: raft.applied_index,
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner: raft.is_learner,
            storage_version: STORAGE_VERSION.to_string(),
            db_size_quota: DB_SIZE_QUOTA_BYTES,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.handle.defragment().await.map_err(status_from)?;
        Ok(Response::new(DefragmentResponse {
            header: Some(current_header(&self.handle)),
        }))
    }

    async fn hash(&self, _request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let hash = self.handle.hash_all().map_err(status_from)?;
        Ok(Response::new(HashResponse {
            header: Some(current_header(&self.handle)),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let hashed = self
            .handle
            .hash_kv(request.into_inner().revision)
            .map_err(status_from)?;
        Ok(Response::new(HashKvResponse {
            header: Some(current_header(&self.handle)),
            hash: hashed.hash,
            compact_revision: hashed.compact_revision,
            hash_revision: hashed.hash_revision,
        }))
    }

    type SnapshotStream = Empty<Result<SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_yet(
            "Snapshot",
            "it waits for the snapshots crate (snapshot file format)",
        ))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.handle
            .move_leader(request.into_inner().target_id)
            .await
            .map_err(status_from)?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(current_header(&self.handle)),
        }))
    }

    async fn downgrade(
        &self,
        _request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(not_yet(
            "Downgrade",
            "k3rs has a single storage version, nothing to downgrade to",
        ))
    }
}
