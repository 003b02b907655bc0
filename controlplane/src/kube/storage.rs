//! The store as kube-apiserver's etcd3 storage uses it: one key per object, JSON values, and
//! the three transaction shapes — create `mod_revision(key) == 0 → put`, update
//! `mod_revision(key) == rv → put`, delete `mod_revision(key) == rv → delete` — each reading
//! the key back in its failure branch so a refusal says what is there now.
//!
//! Guarantees: every write is one transaction of the store (through raft when embedded), so a create never replaces
//! an object, and an update or delete never acts on a version other than the one it was
//! decided on; reads are linearizable unless a caller asks for a serializable one.

use raftstore::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftstore::pb::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use raftstore::pb::mvccpb::KeyValue;

use super::datastore::Datastore;
use super::status::ApiError;

/// One page read from the store.
pub struct Page {
    pub kvs: Vec<KeyValue>,
    /// More keys follow the last one returned.
    pub more: bool,
    /// The revision the page was read at.
    pub revision: i64,
}

/// The outcome of a conditional write.
pub enum Written {
    /// Written at this revision.
    At(i64),
    /// The condition failed; this is the key now (`None`: it does not exist).
    Refused(Option<KeyValue>),
}

/// The object keys of a serving store (the embedded member or an external etcd).
#[derive(Clone)]
pub struct Store {
    pub data: Datastore,
}

fn mod_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::ModRevision(revision)),
    }
}

fn read_back(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

impl Store {
    pub fn new(data: Datastore) -> Self {
        Self { data }
    }

    /// The key, if it exists.
    pub async fn get(&self, key: &str, serializable: bool) -> Result<Option<KeyValue>, ApiError> {
        let response = self
            .data
            .range(RangeRequest {
                key: key.as_bytes().to_vec(),
                serializable,
                ..Default::default()
            })
            .await?;
        Ok(response.kvs.into_iter().next())
    }

    /// Keys from `start` up to the end of `prefix`, at `revision` (0: the latest), at most
    /// `limit` (0: all).
    pub async fn page(
        &self,
        prefix: &str,
        start: &str,
        revision: i64,
        limit: i64,
        serializable: bool,
    ) -> Result<Page, ApiError> {
        let response = self
            .data
            .range(RangeRequest {
                key: start.as_bytes().to_vec(),
                range_end: raftstore::mvcc::tree_index::prefix_end(prefix.as_bytes()),
                revision,
                limit,
                serializable,
                ..Default::default()
            })
            .await?;
        let revision = if revision > 0 {
            revision
        } else {
            response.header.as_ref().map_or(0, |header| header.revision)
        };
        Ok(Page {
            kvs: response.kvs,
            more: response.more,
            revision,
        })
    }

    /// Writes `value` at `key` if the key's mod_revision is `expected` (0: it does not exist).
    pub async fn put_if(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
    ) -> Result<Written, ApiError> {
        let key = key.as_bytes();
        let put = RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value,
                ..Default::default()
            })),
        };
        self.txn(key, expected, put).await
    }

    /// Deletes `key` if its mod_revision is `expected`.
    pub async fn delete_if(&self, key: &str, expected: i64) -> Result<Written, ApiError> {
        let key = key.as_bytes();
        let delete = RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: key.to_vec(),
                    ..Default::default()
                },
            )),
        };
        self.txn(key, expected, delete).await
    }

    /// Deletes every key under `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), ApiError> {
        self.data
            .delete_range(DeleteRangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: raftstore::mvcc::tree_index::prefix_end(prefix.as_bytes()),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    async fn txn(&self, key: &[u8], expected: i64, op: RequestOp) -> Result<Written, ApiError> {
        let response = self
            .data
            .txn(TxnRequest {
                compare: vec![mod_revision_is(key, expected)],
                success: vec![op],
                failure: vec![read_back(key)],
            })
            .await?;
        if response.succeeded {
            let revision = response.header.as_ref().map_or(0, |header| header.revision);
            return Ok(Written::At(revision));
        }
        let current = response
            .responses
            .into_iter()
            .find_map(|op| match op.response {
                Some(response_op::Response::ResponseRange(range)) => range.kvs.into_iter().next(),
                _ => None,
            });
        Ok(Written::Refused(current))
    }
}
