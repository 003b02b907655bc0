//! `EtcdClient`: one simulated client's gRPC channels to every member, over [`TurmoilNet`],
//! with the operations of the workload mapped onto etcd's KV API as kube-apiserver and etcdctl
//! use it.
//!
//! Guarantees: any error (transport failure, etcd error) is returned as text, never retried
//! here, so the caller records it as an outcome it does not know. Calls are never cancelled by
//! the client: a cancelled HTTP/2 stream is remembered by h2 for one *wall-clock* second, so a
//! late answer to it would be handled differently depending on the machine's speed, and the
//! simulation would no longer replay. Every call is bounded by the member instead (etcd's
//! request timeout), or ended by the connection breaking (HTTP/2 keepalive notices a crashed
//! member); connecting is bounded by the (simulated) connect timeout.

use std::time::Duration;

use anyhow::{Context, Result};
use etcd_api::pb::etcdserverpb::cluster_client::ClusterClient;
use etcd_api::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_api::pb::etcdserverpb::kv_client::KvClient;
use etcd_api::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use etcd_api::pb::etcdserverpb::request_op::Request as OpRequest;
use etcd_api::pb::etcdserverpb::response_op::Response as OpResponse;
use etcd_api::pb::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, HashKvRequest, HashKvResponse, Member,
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberPromoteRequest,
    MemberRemoveRequest, MoveLeaderRequest, PutRequest, RangeRequest, RangeResponse, RequestOp,
    TxnRequest, TxnResponse,
};
use tonic::transport::{Channel, Endpoint};

use crate::history::{Observed, Page, Request, Response};
use crate::member::CLIENT_PORT;
use crate::net::TurmoilNet;

/// How often a client pings a connection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a ping may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The most pages one paginated list reads.
pub const MAX_PAGES: usize = 64;

/// Channels from one client to every member.
#[derive(Clone)]
pub struct EtcdClient {
    channels: Vec<Channel>,
}

impl EtcdClient {
    /// Lazily connected channels to `members` (host names); connecting gives up after
    /// `connect_timeout`.
    pub fn new(members: &[String], connect_timeout: Duration) -> Result<Self> {
        let connector = etcd_api::connector(TurmoilNet);
        let channels = members
            .iter()
            .map(|member| {
                let endpoint = Endpoint::from_shared(format!("http://{member}:{CLIENT_PORT}"))
                    .with_context(|| format!("endpoint of member {member}"))?
                    .connect_timeout(connect_timeout)
                    // A crashed member sends no FIN: pings find out, as kube-apiserver's
                    // keepalive does, and fail the calls it will never answer.
                    .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                    .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                    .keep_alive_while_idle(true);
                Ok(connector(endpoint))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { channels })
    }

    pub fn members(&self) -> usize {
        self.channels.len()
    }

    /// The channel to `member` (modulo the member count).
    pub fn channel(&self, member: usize) -> Channel {
        self.channels[member % self.channels.len()].clone()
    }

    /// A KV client of `member`.
    pub fn kv(&self, member: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(member))
    }

    /// `member`'s current revision, from the header of a linearizable read.
    pub async fn current_revision(&self, member: usize) -> Result<i64, String> {
        let response = self
            .kv(member)
            .range(RangeRequest {
                key: b"\0".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await
            .map_err(|status| describe(&status))?
            .into_inner();
        Ok(header_revision(response.header.as_ref()))
    }

    /// KV.Compact at `revision` through `member`.
    pub async fn compact(
        &self,
        member: usize,
        revision: i64,
        physical: bool,
    ) -> Result<(), String> {
        self.kv(member)
            .compact(CompactionRequest { revision, physical })
            .await
            .map(|_| ())
            .map_err(|status| describe(&status))
    }

    /// Maintenance.MoveLeader to member id `target_id`, sent to `member` (which must lead).
    pub async fn move_leader(&self, member: usize, target_id: u64) -> Result<(), String> {
        MaintenanceClient::new(self.channel(member))
            .move_leader(MoveLeaderRequest { target_id })
            .await
            .map(|_| ())
            .map_err(|status| describe(&status))
    }

    /// Cluster.MemberAdd of a learner at `peer_urls`, sent to `member`.
    pub async fn add_learner(
        &self,
        member: usize,
        peer_urls: Vec<String>,
    ) -> Result<MemberAddResponse, String> {
        ClusterClient::new(self.channel(member))
            .member_add(MemberAddRequest {
                peer_ur_ls: peer_urls,
                is_learner: true,
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| describe(&status))
    }

    /// Cluster.MemberRemove of member id `id`, sent to `member`.
    pub async fn remove_member(&self, member: usize, id: u64) -> Result<(), String> {
        ClusterClient::new(self.channel(member))
            .member_remove(MemberRemoveRequest { id })
            .await
            .map(|_| ())
            .map_err(|status| describe(&status))
    }

    /// Cluster.MemberPromote of learner id `id`, sent to `member`.
    pub async fn promote_member(&self, member: usize, id: u64) -> Result<(), String> {
        ClusterClient::new(self.channel(member))
            .member_promote(MemberPromoteRequest { id })
            .await
            .map(|_| ())
            .map_err(|status| describe(&status))
    }

    /// Cluster.MemberList as `member` answers it (linearizable), with the cluster id.
    pub async fn list_members(&self, member: usize) -> Result<(u64, Vec<Member>), String> {
        let response = ClusterClient::new(self.channel(member))
            .member_list(MemberListRequest { linearizable: true })
            .await
            .map_err(|status| describe(&status))?
            .into_inner();
        Ok((
            response.header.map_or(0, |header| header.cluster_id),
            response.members,
        ))
    }

    /// Sends `request` to `member`.
    pub async fn execute(&self, member: usize, request: &Request) -> Result<Response, String> {
        let mut kv = self.kv(member);
        let status = |status: tonic::Status| format!("{:?}: {}", status.code(), status.message());
        match request {
            Request::Put { key, value } => {
                let response = kv
                    .put(PutRequest {
                        key: key.clone().into_bytes(),
                        value: value.clone().into_bytes(),
                        ..Default::default()
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                Ok(Response::Put {
                    revision: header_revision(response.header.as_ref()),
                })
            }
            Request::Get { key, serializable } => {
                let response = kv
                    .range(RangeRequest {
                        key: key.clone().into_bytes(),
                        serializable: *serializable,
                        ..Default::default()
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                Ok(Response::Get {
                    revision: header_revision(response.header.as_ref()),
                    found: observed(&response),
                })
            }
            Request::Delete { key } => {
                let response = kv
                    .delete_range(DeleteRangeRequest {
                        key: key.clone().into_bytes(),
                        ..Default::default()
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                Ok(Response::Delete {
                    revision: header_revision(response.header.as_ref()),
                    deleted: response.deleted,
                })
            }
            Request::CompareAndPut {
                key,
                expected,
                value,
            } => {
                let key = key.clone().into_bytes();
                let put = OpRequest::RequestPut(PutRequest {
                    key: key.clone(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                });
                let response = kv
                    .txn(on_mod_revision(key, *expected, put))
                    .await
                    .map_err(status)?
                    .into_inner();
                Ok(Response::CompareAndPut {
                    revision: header_revision(response.header.as_ref()),
                    succeeded: response.succeeded,
                    found: read_back(&response),
                })
            }
            Request::CompareAndDelete { key, expected } => {
                let key = key.clone().into_bytes();
                let delete = OpRequest::RequestDeleteRange(DeleteRangeRequest {
                    key: key.clone(),
                    ..Default::default()
                });
                let response = kv
                    .txn(on_mod_revision(key, *expected, delete))
                    .await
                    .map_err(status)?
                    .into_inner();
                let deleted = match response.responses.first().and_then(|r| r.response.as_ref()) {
                    Some(OpResponse::ResponseDeleteRange(delete)) if response.succeeded => {
                        delete.deleted
                    }
                    _ => 0,
                };
                Ok(Response::CompareAndDelete {
                    revision: header_revision(response.header.as_ref()),
                    succeeded: response.succeeded,
                    deleted,
                    found: read_back(&response),
                })
            }
            Request::List { prefix, limit } => self.list(member, prefix, *limit).await,
        }
    }

    /// kube-apiserver's paginated list of `prefix` on `member`: the first page linearizable,
    /// every next page from the last key + `\0` at the first page's header revision. Any
    /// failing page fails the whole list. At most [`MAX_PAGES`] pages are read.
    async fn list(&self, member: usize, prefix: &str, limit: i64) -> Result<Response, String> {
        let mut kv = self.kv(member);
        let range_end = raftstore::mvcc::tree_index::prefix_end(prefix.as_bytes());
        let mut key = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut pages = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = kv
                .range(RangeRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    limit,
                    revision,
                    ..Default::default()
                })
                .await
                .map_err(|status| describe(&status))?
                .into_inner();
            let header = header_revision(response.header.as_ref());
            if revision == 0 {
                revision = header;
            }
            let page = Page {
                header,
                kvs: response
                    .kvs
                    .iter()
                    .map(|kv| {
                        (
                            String::from_utf8_lossy(&kv.key).into_owned(),
                            Observed {
                                value: String::from_utf8_lossy(&kv.value).into_owned(),
                                mod_revision: kv.mod_revision,
                            },
                        )
                    })
                    .collect(),
                more: response.more,
            };
            pages.push(page);
            match response.kvs.last() {
                Some(last) if response.more => {
                    key = last.key.clone();
                    key.push(0);
                }
                _ => return Ok(Response::List { revision, pages }),
            }
        }
        Err(format!(
            "the list of {prefix:?} had more than {MAX_PAGES} pages"
        ))
    }

    /// Maintenance.HashKV of `member` at `revision` (0: its current revision).
    pub async fn hash_kv(&self, member: usize, revision: i64) -> Result<HashKvResponse, String> {
        let mut maintenance = MaintenanceClient::new(self.channels[member].clone());
        match maintenance.hash_kv(HashKvRequest { revision }).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
        }
    }
}

/// kube-apiserver's guarded write: `operation` if `key`'s mod_revision is `expected` (0: the
/// key is absent), else the key read back.
fn on_mod_revision(key: Vec<u8>, expected: i64, operation: OpRequest) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: key.clone(),
            target_union: Some(TargetUnion::ModRevision(expected)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(operation),
        }],
        failure: vec![RequestOp {
            request: Some(OpRequest::RequestRange(RangeRequest {
                key,
                ..Default::default()
            })),
        }],
    }
}

/// What a failed guarded write read back (`None` when it succeeded or the key is absent).
fn read_back(response: &TxnResponse) -> Option<Observed> {
    match response.responses.first().and_then(|r| r.response.as_ref()) {
        Some(OpResponse::ResponseRange(range)) if !response.succeeded => observed(range),
        _ => None,
    }
}

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

fn header_revision(header: Option<&etcd_api::pb::etcdserverpb::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision)
}

fn observed(response: &RangeResponse) -> Option<Observed> {
    response.kvs.first().map(|kv| Observed {
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        mod_revision: kv.mod_revision,
    })
}
