//! The peer service and transport: raft messages between the members of one cluster.
//!
//! Server side ([`PeerService`]): a batch is accepted only from the same cluster and for this
//! member, decoded, and handed to the raft loop; an undecodable message refuses the whole batch.
//!
//! Client side ([`GrpcTransport`], raftstore's `RaftTransport`): `send` never blocks the raft
//! loop — each peer has a bounded queue, drained by its own task that sends what is queued in
//! one call with a deadline; a snapshot message's data is streamed apart, in 1 MiB chunks whose
//! total size the receiver checks before the message reaches raft. A full queue or a failed call drops those messages and reports the
//! peer unreachable (raft retransmits what matters); the connection is re-established on the
//! next call, at most every [`RETRY_BACKOFF`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use protobuf::Message as _;
use raftstore::node::{NodeHandle, RaftTransport};
use raftstore::pb::etcdserverpb::Member;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::pb::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    MemberPromoteRequest, MemberPromoteResponse,
};
use crate::pb::k3rspb::raft_peer_client::RaftPeerClient;
use crate::pb::k3rspb::raft_peer_server::RaftPeer;
use crate::pb::k3rspb::{MembersRequest, MembersResponse, RaftAck, RaftBatch, SnapshotChunk};

/// Messages queued per peer before further ones are dropped.
pub const PEER_QUEUE_CAPACITY: usize = 4096;
/// Most messages sent in one call.
pub const MAX_BATCH_MESSAGES: usize = 512;
/// Deadline of one call to a peer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed call before the next one to that peer.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Size of one chunk of a streamed raft snapshot.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest raft snapshot a member accepts (it is assembled in memory before it is installed).
pub const MAX_SNAPSHOT_BYTES: u64 = 8 << 30;
/// Largest batch a member accepts (raft messages carry up to 1 MiB of entries each, and
/// snapshots are sent apart).
pub const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// Receives raft messages for one member.
#[derive(Clone)]
pub struct PeerService {
    handle: NodeHandle,
}

impl PeerService {
    pub fn new(handle: NodeHandle) -> Self {
        Self { handle }
    }
}

impl PeerService {
    /// The messages of `batch`, if it comes from this cluster, is for this member and decodes.
    fn accepted_messages(&self, batch: &RaftBatch) -> Result<Vec<raft::eraftpb::Message>, Status> {
        if batch.cluster_id != self.handle.cluster_id() {
            return Err(Status::failed_precondition(format!(
                "etcdserver: cluster ID mismatch (got {:x}, this member is in {:x})",
                batch.cluster_id,
                self.handle.cluster_id()
            )));
        }
        if batch.to != self.handle.member_id() {
            return Err(Status::failed_precondition(format!(
                "raft messages for member {:x} reached member {:x}",
                batch.to,
                self.handle.member_id()
            )));
        }
        batch
            .messages
            .iter()
            .map(|bytes| raft::eraftpb::Message::parse_from_bytes(bytes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| {
                Status::invalid_argument(format!(
                    "undecodable raft message from {:x}: {err}",
                    batch.from
                ))
            })
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn send(&self, request: Request<RaftBatch>) -> Result<Response<RaftAck>, Status> {
        let batch = request.into_inner();
        let messages = self.accepted_messages(&batch)?;
        self.handle
            .step(messages)
            .await
            .map_err(crate::error::status_from)?;
        Ok(Response::new(RaftAck {}))
    }

    async fn send_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftAck>, Status> {
        let mut chunks = request.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty raft snapshot stream"))?;
        let header = first
            .header
            .ok_or_else(|| Status::invalid_argument("raft snapshot stream without its message"))?;
        let mut messages = self.accepted_messages(&header)?;
        let (Some(mut message), true) = (messages.pop(), messages.is_empty()) else {
            return Err(Status::invalid_argument(
                "a raft snapshot stream carries exactly one message",
            ));
        };
        if message.get_msg_type() != raft::eraftpb::MessageType::MsgSnapshot {
            return Err(Status::invalid_argument(
                "a raft snapshot stream must carry a snapshot message",
            ));
        }
        let total = usize::try_from(first.total_bytes)
            .ok()
            .filter(|_| first.total_bytes <= MAX_SNAPSHOT_BYTES)
            .ok_or_else(|| {
                Status::resource_exhausted(format!(
                    "raft snapshot of {} bytes is larger than the {MAX_SNAPSHOT_BYTES} accepted",
                    first.total_bytes
                ))
            })?;
        let mut data = Vec::with_capacity(total.min(SNAPSHOT_CHUNK_BYTES * 64));
        data.extend_from_slice(&first.data);
        while let Some(chunk) = chunks.message().await? {
            data.extend_from_slice(&chunk.data);
            if data.len() > total {
                return Err(Status::invalid_argument(
                    "raft snapshot stream is longer than announced",
                ));
            }
        }
        if data.len() != total {
            return Err(Status::invalid_argument(format!(
                "raft snapshot stream ended after {} of {total} bytes",
                data.len()
            )));
        }
        message.mut_snapshot().set_data(data.into());
        self.handle
            .step(vec![message])
            .await
            .map_err(crate::error::status_from)?;
        Ok(Response::new(RaftAck {}))
    }

    async fn lease_renew(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        let ttl = self
            .handle
            .lease_renew(id)
            .await
            .map_err(crate::error::status_from)?;
        Ok(Response::new(crate::lease::keep_alive_response(
            &self.handle,
            id,
            ttl,
        )))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let members = self
            .handle
            .member_promote(request.into_inner().id)
            .await
            .map_err(crate::error::status_from)?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(crate::header::current_header(&self.handle)),
            members,
        }))
    }

    async fn members(
        &self,
        _request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.handle.cluster_id(),
            members: self.handle.members(),
        }))
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
            .map_err(crate::error::status_from)?;
        Ok(Response::new(crate::lease::time_to_live_response(
            &self.handle,
            request.id,
            described,
        )))
    }
}

/// Sends raft messages to the other members over gRPC.
pub struct GrpcTransport {
    connector: crate::net::Connector,
    /// (cluster id, this member's id), once known.
    ids: Mutex<Option<(u64, u64)>>,
    /// Per peer: the URL its link sends to, and the link's queue.
    peers: Mutex<HashMap<u64, (String, mpsc::Sender<raft::eraftpb::Message>)>>,
    unreachable: Arc<Mutex<HashSet<u64>>>,
}

impl GrpcTransport {
    /// A transport that knows no peer yet; messages to unknown members are dropped until
    /// [`GrpcTransport::connect_members`] names them.
    pub fn new(connector: crate::net::Connector) -> Arc<Self> {
        Arc::new(Self {
            connector,
            ids: Mutex::default(),
            peers: Mutex::default(),
            unreachable: Arc::default(),
        })
    }

    /// Starts a sender from member `member_id` of cluster `cluster_id` to every other member,
    /// at its first peer URL. Members already known keep their sender. Must be called inside a
    /// tokio runtime.
    pub fn connect_members(
        &self,
        cluster_id: u64,
        member_id: u64,
        members: &[Member],
    ) -> Result<(), String> {
        *self.ids.lock() = Some((cluster_id, member_id));
        let mut peers = self.peers.lock();
        // A removed member's link, or one to an old URL, ends when its queue is dropped.
        peers.retain(|id, (url, _)| {
            members
                .iter()
                .any(|member| member.id == *id && member.peer_ur_ls.first() == Some(url))
        });
        for member in members {
            if member.id == member_id || peers.contains_key(&member.id) {
                continue;
            }
            let url = member
                .peer_ur_ls
                .first()
                .ok_or_else(|| format!("member {:x} has no peer URL", member.id))?;
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|err| format!("peer URL {url:?} of member {:x}: {err}", member.id))?
                .connect_timeout(CALL_TIMEOUT)
                .tcp_nodelay(true);
            let client = RaftPeerClient::new((self.connector)(endpoint))
                .max_encoding_message_size(MAX_BATCH_BYTES);
            let (sender, queue) = mpsc::channel(PEER_QUEUE_CAPACITY);
            peers.insert(member.id, (url.clone(), sender));
            let link = PeerLink {
                cluster_id,
                from: member_id,
                to: member.id,
                client,
                unreachable: Arc::clone(&self.unreachable),
            };
            tokio::spawn(link.run(queue));
        }
        Ok(())
    }
}

impl RaftTransport for GrpcTransport {
    fn send(&self, messages: Vec<raft::eraftpb::Message>) {
        let peers = self.peers.lock();
        for message in messages {
            let to = message.to;
            match peers.get(&to) {
                Some((_, sender)) => {
                    if sender.try_send(message).is_err() {
                        self.unreachable.lock().insert(to);
                    }
                }
                None => {
                    tracing::debug!(to = %format!("{to:x}"), "raft message for an unknown member dropped")
                }
            }
        }
    }

    fn take_unreachable(&self) -> Vec<u64> {
        self.unreachable.lock().drain().collect()
    }

    fn members_changed(&self, members: &[Member]) {
        let ids = *self.ids.lock();
        if let Some((cluster_id, member_id)) = ids {
            if let Err(err) = self.connect_members(cluster_id, member_id, members) {
                tracing::warn!(error = %err, "cannot reach a new member");
            }
        }
    }
}

/// The sending side towards one peer.
struct PeerLink {
    cluster_id: u64,
    from: u64,
    to: u64,
    client: RaftPeerClient<Channel>,
    unreachable: Arc<Mutex<HashSet<u64>>>,
}

impl PeerLink {
    async fn run(mut self, mut queue: mpsc::Receiver<raft::eraftpb::Message>) {
        let mut failing = false;
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_MESSAGES {
                match queue.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            let (snapshots, messages): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|m| m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot);
            let mut outcome = Ok(());
            if !messages.is_empty() {
                outcome = self.send_messages(&messages).await;
            }
            for snapshot in snapshots {
                if outcome.is_ok() {
                    outcome = self.send_snapshot(snapshot).await;
                }
            }
            match outcome {
                Ok(()) => {
                    if failing {
                        tracing::info!(peer = %format!("{:x}", self.to), "peer reachable again");
                        failing = false;
                    }
                }
                Err(status) => {
                    if !failing {
                        tracing::warn!(peer = %format!("{:x}", self.to), error = %status.message(), "peer unreachable; raft messages dropped");
                        failing = true;
                    }
                    self.unreachable.lock().insert(self.to);
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
        }
    }

    fn batch_of(&self, messages: &[raft::eraftpb::Message]) -> RaftBatch {
        let mut encoded = Vec::with_capacity(messages.len());
        for message in messages {
            match message.write_to_bytes() {
                Ok(bytes) => encoded.push(bytes),
                Err(err) => tracing::error!(error = %err, "raft message not encodable; dropped"),
            }
        }
        RaftBatch {
            cluster_id: self.cluster_id,
            from: self.from,
            to: self.to,
            messages: encoded,
        }
    }

    async fn send_messages(&mut self, messages: &[raft::eraftpb::Message]) -> Result<(), Status> {
        let mut call = Request::new(self.batch_of(messages));
        call.set_timeout(CALL_TIMEOUT);
        self.client.send(call).await.map(|_| ())
    }

    /// Streams a snapshot message's data in [`SNAPSHOT_CHUNK_BYTES`] chunks, with a deadline
    /// that grows with its size.
    async fn send_snapshot(&mut self, mut message: raft::eraftpb::Message) -> Result<(), Status> {
        let data = message.get_snapshot().get_data().to_vec();
        message.mut_snapshot().set_data(Default::default());
        let header = self.batch_of(std::slice::from_ref(&message));
        let total_bytes = data.len() as u64;
        let mut chunks: Vec<SnapshotChunk> = data
            .chunks(SNAPSHOT_CHUNK_BYTES)
            .map(|piece| SnapshotChunk {
                header: None,
                total_bytes,
                data: piece.to_vec(),
            })
            .collect();
        match chunks.first_mut() {
            Some(first) => first.header = Some(header),
            None => chunks.push(SnapshotChunk {
                header: Some(header),
                total_bytes,
                data: Vec::new(),
            }),
        }
        tracing::info!(peer = %format!("{:x}", self.to), bytes = total_bytes, chunks = chunks.len(), "streaming a raft snapshot");
        // At least 1 MiB/s, never less than the usual deadline.
        let deadline = CALL_TIMEOUT + Duration::from_secs(total_bytes / (1024 * 1024));
        let mut call = Request::new(futures::stream::iter(chunks));
        call.set_timeout(deadline);
        self.client.send_snapshot(call).await.map(|_| ())
    }
}

/// How long a joining member keeps asking the existing members for the cluster.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The identity of a member joining an existing cluster: asks the other members listed in the
/// initial cluster for the cluster's members and finds this one by its peer URLs (it must have
/// been added with MemberAdd first, as in etcd).
pub async fn fetch_identity(
    connector: &crate::net::Connector,
    initial_cluster: &[raftstore::identity::InitialMember],
    own_peer_urls: &[String],
) -> Result<raftstore::pb::k3rspb::ClusterIdentity, String> {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut last_error = String::from("no other member is listed in --initial-cluster");
    loop {
        for url in initial_cluster
            .iter()
            .flat_map(|member| member.peer_urls.iter())
            .filter(|url| !own_peer_urls.contains(url))
        {
            match ask_members(connector, url).await {
                Ok(answer) => {
                    let me = answer
                        .members
                        .iter()
                        .find(|m| m.peer_ur_ls.iter().any(|u| own_peer_urls.contains(u)))
                        .ok_or_else(|| {
                            format!(
                                "the cluster at {url} has no member with peer URLs {own_peer_urls:?}; \
                                 add it first (etcdctl member add)"
                            )
                        })?;
                    return Ok(raftstore::pb::k3rspb::ClusterIdentity {
                        cluster_id: answer.cluster_id,
                        member_id: me.id,
                        members: answer.members.clone(),
                    });
                }
                Err(err) => last_error = format!("{url}: {err}"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "no existing member answered within {JOIN_TIMEOUT:?} (last: {last_error})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn ask_members(
    connector: &crate::net::Connector,
    url: &str,
) -> Result<MembersResponse, String> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|err| err.to_string())?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let channel = connector(endpoint);
    let answer = RaftPeerClient::new(channel)
        .members(MembersRequest {})
        .await
        .map_err(|status| status.message().to_string())?;
    Ok(answer.into_inner())
}
