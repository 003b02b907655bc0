//! The one seam between the Kubernetes API and its store: the embedded member (its
//! [`NodeHandle`], called directly as before) or an external etcd (`--datastore-endpoint`,
//! through [`RemoteEtcd`]). Everything in `kube/` reads, writes and watches through
//! [`Datastore`], so both stores get the same kube logic.
//!
//! Guarantees: both answer the same etcd requests with etcd's semantics (revisions, conditional
//! transactions, compaction errors); watches deliver the embedded hub's [`Delivery`] messages
//! in both cases; errors become kube `Status` errors the same way (an unreachable external
//! etcd is `503 ServiceUnavailable` naming each endpoint and its error). Membership
//! operations exist only for the embedded member: with an external etcd, k3rs owns no etcd
//! member, so deleting a Node removes none.

use raftstore::error::EtcdError;
use raftstore::node::NodeHandle;
use raftstore::pb::etcdserverpb::{
    watch_create_request::FilterType, DeleteRangeRequest, DeleteRangeResponse, RangeRequest,
    RangeResponse, TxnRequest, TxnResponse, WatchCreateRequest,
};
use raftstore::watch::{Delivery, WatchCreate, WatchStream};
use tokio::sync::watch as signal;

use super::status::ApiError;
use super::storage::Store;
use crate::remote_etcd::{RemoteError, RemoteEtcd, RemoteWatch};

/// Where the API's objects live.
#[derive(Clone)]
pub enum Datastore {
    /// This server's embedded member.
    Embedded(NodeHandle),
    /// An external etcd.
    External(RemoteEtcd),
}

/// Where the API gets its [`Datastore`] from: the embedded member once it serves, or the
/// external etcd from the start.
#[derive(Clone)]
pub enum Source {
    Embedded(signal::Receiver<Option<NodeHandle>>),
    External(RemoteEtcd),
}

impl Source {
    /// The store now, if it serves.
    pub fn now(&self) -> Option<Store> {
        match self {
            Source::Embedded(member) => member
                .borrow()
                .clone()
                .map(|handle| Store::new(Datastore::Embedded(handle))),
            Source::External(remote) => Some(Store::new(Datastore::External(remote.clone()))),
        }
    }

    /// The store once it serves; `None` when `stop` turns true (or the member ends) first.
    pub async fn serving(&mut self, stop: &mut signal::Receiver<bool>) -> Option<Store> {
        match self {
            Source::Embedded(member) => crate::server::serving_member(member, stop)
                .await
                .map(|handle| Store::new(Datastore::Embedded(handle))),
            Source::External(remote) => Some(Store::new(Datastore::External(remote.clone()))),
        }
    }
}

impl From<RemoteError> for ApiError {
    fn from(error: RemoteError) -> Self {
        match error {
            RemoteError::Unreachable { .. } => ApiError::unavailable(error.to_string()),
            RemoteError::Etcd(status) => match known_etcd_error(status.message()) {
                Some(etcd) => etcd.into(),
                None => ApiError::internal(format!("datastore: {}", status.message())),
            },
        }
    }
}

/// The store error whose text etcd answered with (Go clients match on the text too).
fn known_etcd_error(message: &str) -> Option<EtcdError> {
    [
        EtcdError::Compacted,
        EtcdError::FutureRevision,
        EtcdError::RequestTooLarge,
        EtcdError::NoLeader,
        EtcdError::LeaderChanged,
        EtcdError::Stopped,
        EtcdError::Timeout,
        EtcdError::TooManyRequests,
    ]
    .into_iter()
    .find(|error| error.to_string() == message)
}

/// A watch on either store.
pub enum Feed {
    Embedded(WatchStream),
    External(Box<RemoteWatch>),
}

impl Feed {
    /// The next message of the watch.
    pub async fn next(&mut self) -> Delivery {
        match self {
            Feed::Embedded(stream) => stream.next().await,
            Feed::External(remote) => remote.next().await,
        }
    }

    /// Asks for a progress notification of every watcher of the stream.
    pub fn request_progress(&self) {
        match self {
            Feed::Embedded(stream) => {
                stream.request_progress_all();
            }
            Feed::External(remote) => {
                remote.request_progress();
            }
        }
    }
}

impl Datastore {
    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, ApiError> {
        match self {
            Datastore::Embedded(handle) => Ok(handle.range(request).await?),
            Datastore::External(remote) => Ok(remote.range(request).await?),
        }
    }

    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, ApiError> {
        match self {
            Datastore::Embedded(handle) => Ok(handle.txn(request).await?),
            Datastore::External(remote) => Ok(remote.txn(request).await?),
        }
    }

    pub async fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ApiError> {
        match self {
            Datastore::Embedded(handle) => Ok(handle.delete_range(request).await?),
            Datastore::External(remote) => Ok(remote.delete_range(request).await?),
        }
    }

    /// Opens a watch of `create` (prev_kv honoured) and waits for it to be created.
    pub async fn watch(&self, create: WatchCreate) -> Result<Feed, ApiError> {
        match self {
            Datastore::Embedded(handle) => {
                let stream = handle.watch_hub().open_stream();
                if stream.watch(create).is_none() {
                    return Err(ApiError::internal("the watch was refused"));
                }
                Ok(Feed::Embedded(stream))
            }
            Datastore::External(remote) => {
                let watch = remote
                    .watch(WatchCreateRequest {
                        key: create.key,
                        range_end: create.range_end,
                        start_revision: create.start_revision,
                        prev_kv: create.prev_kv,
                        filters: [
                            (create.no_put, FilterType::Noput),
                            (create.no_delete, FilterType::Nodelete),
                        ]
                        .into_iter()
                        .filter(|(on, _)| *on)
                        .map(|(_, filter)| filter as i32)
                        .collect(),
                        ..Default::default()
                    })
                    .await?;
                Ok(Feed::External(Box::new(watch)))
            }
        }
    }

    /// Whether this server runs the cluster-wide checks (lapsed node leases): the leader of
    /// the embedded store; with an external etcd every server does (their writes are
    /// conditional, so two servers never both apply a change).
    pub fn runs_cluster_checks(&self) -> bool {
        match self {
            Datastore::Embedded(handle) => handle.status().is_leader(),
            Datastore::External(_) => true,
        }
    }

    /// The embedded member, when there is one.
    pub fn member(&self) -> Option<&NodeHandle> {
        match self {
            Datastore::Embedded(handle) => Some(handle),
            Datastore::External(_) => None,
        }
    }
}
