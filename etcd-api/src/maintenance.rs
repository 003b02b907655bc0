//! The etcd `Maintenance` service: Status, Alarm (GET), Defragment, Hash, HashKV, MoveLeader,
//! Snapshot.
//!
//! Guarantees: Status reports a version kube-apiserver accepts for watch progress requests
//! (3.5.x ≥ 3.5.13), this member's raft view and the engine's size, and no errors (so
//! `etcdctl endpoint health` sees a healthy member). Snapshot streams a k3rs snapshot of one
//! point-in-time view of the store as etcd streams its own: messages of 32 KiB with the bytes
//! still to come in `remaining_bytes`, then one message with the SHA-256 of everything before
//! it (`etcdctl snapshot save` writes exactly these bytes, a k3rs snapshot file); it is
//! encoded twice from the same view (once to count, once to send), on a blocking thread, with
//! at most [`SNAPSHOT_QUEUE_MESSAGES`] messages queued, so neither memory nor writers wait on
//! the store's size. RPCs not built yet answer `Unimplemented`
//! with a message naming what they wait for, never a wrong answer.

use std::io::Write;

use raftstore::engine::ReadView;
use raftstore::node::NodeHandle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::status_from;
use crate::header::current_header;
use crate::pb::etcdserverpb::alarm_request::AlarmAction;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::pb::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, ResponseHeader, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
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

    type SnapshotStream = ReceiverStream<Result<SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let view = self
            .handle
            .engine()
            .read_view()
            .map_err(|err| Status::internal(format!("etcdserver: taking a snapshot: {err}")))?;
        let header = current_header(&self.handle);
        let (tx, rx) = mpsc::channel(SNAPSHOT_QUEUE_MESSAGES);
        tokio::task::spawn_blocking(move || {
            if let Err(status) = send_snapshot(view.as_ref(), header, &tx) {
                tracing::warn!(error = %status.message(), "sending a snapshot failed");
                let _ = tx.blocking_send(Err(status));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
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

/// etcd sends a snapshot in messages of this many bytes.
pub const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;

/// Snapshot messages queued ahead of a slow client.
pub const SNAPSHOT_QUEUE_MESSAGES: usize = 8;

type SnapshotSender = mpsc::Sender<Result<SnapshotResponse, Status>>;

/// Encodes the snapshot of `view` twice: to learn its size, then into messages for `tx`.
fn send_snapshot(
    view: &dyn ReadView,
    header: ResponseHeader,
    tx: &SnapshotSender,
) -> Result<(), Status> {
    let failed = |err: snapshots::SnapshotError| {
        Status::internal(format!("etcdserver: snapshot failed: {err}"))
    };
    let total = snapshots::encoded_len(view).map_err(failed)?;
    let body_bytes = total.saturating_sub(snapshots::format::DIGEST_BYTES as u64);
    let chunks = SnapshotChunks {
        tx,
        header: Some(header),
        body_bytes,
        sent_body: 0,
        pending: Vec::with_capacity(SNAPSHOT_CHUNK_BYTES),
        digest: Vec::new(),
    };
    let (chunks, written) = snapshots::write_view(view, chunks).map_err(failed)?;
    chunks.finish()?;
    tracing::info!(
        bytes = written.bytes,
        kv_rows = written.end.kv_rows,
        "sent a snapshot"
    );
    Ok(())
}

/// Cuts the snapshot's bytes into etcd's messages: the body in [`SNAPSHOT_CHUNK_BYTES`]
/// pieces counting down `remaining_bytes`, then the digest alone.
struct SnapshotChunks<'a> {
    tx: &'a SnapshotSender,
    header: Option<ResponseHeader>,
    body_bytes: u64,
    sent_body: u64,
    pending: Vec<u8>,
    digest: Vec<u8>,
}

impl SnapshotChunks<'_> {
    fn send(&mut self, blob: Vec<u8>, remaining_bytes: u64) -> std::io::Result<()> {
        let message = SnapshotResponse {
            header: self.header.take(),
            remaining_bytes,
            blob,
            version: STORAGE_VERSION.to_string(),
        };
        self.tx.blocking_send(Ok(message)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client stopped receiving the snapshot",
            )
        })
    }

    fn send_pending(&mut self) -> std::io::Result<()> {
        let blob = std::mem::replace(&mut self.pending, Vec::with_capacity(SNAPSHOT_CHUNK_BYTES));
        self.sent_body += blob.len() as u64;
        let remaining = self.body_bytes - self.sent_body;
        self.send(blob, remaining)
    }

    /// Sends the digest once every body byte went out.
    fn finish(mut self) -> Result<(), Status> {
        if self.sent_body != self.body_bytes || self.digest.len() != snapshots::format::DIGEST_BYTES
        {
            return Err(Status::internal(format!(
                "etcdserver: snapshot size changed while sending ({} of {} bytes, {} digest bytes)",
                self.sent_body,
                self.body_bytes,
                self.digest.len()
            )));
        }
        let digest = std::mem::take(&mut self.digest);
        self.send(digest, 0)
            .map_err(|err| Status::aborted(err.to_string()))
    }
}

impl Write for SnapshotChunks<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let body_left = self.body_bytes - self.sent_body - self.pending.len() as u64;
            if body_left == 0 {
                self.digest.extend_from_slice(rest);
                break;
            }
            let room = SNAPSHOT_CHUNK_BYTES - self.pending.len();
            let take = rest
                .len()
                .min(room)
                .min(usize::try_from(body_left).unwrap_or(usize::MAX));
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == SNAPSHOT_CHUNK_BYTES || take as u64 == body_left {
                self.send_pending()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
