//! `?watch=true`: a chunked stream of JSON lines `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|
//! ERROR, "object": ...}`, from the store's watch (the member's hub or the external etcd), as kube-apiserver's etcd3 watcher
//! produces them.
//!
//! Guarantees: without a resourceVersion (or with "0") the stream first sends every matching
//! object as ADDED at one revision, then every change after it; with a resourceVersion it
//! sends every change after that revision, in revision order, once (the hub's guarantee). A
//! change that makes an object start or stop matching the selectors is sent as ADDED or
//! DELETED. History lost to compaction ends the stream with an ERROR event carrying a `410
//! Expired` Status. Bookmarks (`allowWatchBookmarks=true`) are sent only when every earlier
//! event was. The stream ends at `timeoutSeconds` (at most 30 minutes), when the client goes
//! away (its watcher is removed with it), or, for a custom resource, when its CRD is deleted.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use raftstore::pb::mvccpb::{event::EventType, Event, KeyValue};
use raftstore::watch::{Delivery, WatchCreate, WatchMessage};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::datastore::Feed;
use tokio::sync::mpsc;

use super::object;
use super::resources::Resource;
use super::selector::Selectors;
use super::status::ApiError;
use super::storage::Store;
use super::table::{self, IncludeObject};

/// Longest a watch stays open.
pub const MAX_WATCH: Duration = Duration::from_secs(30 * 60);
/// How often a bookmark is asked for when the client allows them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);
/// Event lines waiting for a slow client before the stream stops reading the hub.
const BUFFERED_LINES: usize = 256;

/// A response body fed by a channel: it ends when the sender is dropped.
pub struct ChannelBody {
    lines: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.lines
            .poll_recv(cx)
            .map(|line| line.map(|line| Ok(Frame::data(line))))
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// Every current object as ADDED first.
    InitialState,
    /// The changes after this revision.
    After(i64),
}

/// What one watch sends.
pub struct WatchSpec {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub selectors: Selectors,
    pub start: Start,
    pub bookmarks: bool,
    pub timeout: Duration,
    /// Objects as one-row Tables (kubectl get -w).
    pub table: Option<IncludeObject>,
}

/// Starts the watch; its events arrive on the returned body.
pub fn start(store: Store, spec: WatchSpec) -> ChannelBody {
    let (sender, lines) = mpsc::channel(BUFFERED_LINES);
    tokio::spawn(async move {
        let closed = sender.clone();
        tokio::select! {
            biased;
            () = closed.closed() => {}
            () = tokio::time::sleep(spec.timeout.min(MAX_WATCH)) => {}
            () = run(&store, &spec, &sender) => {}
        }
    });
    ChannelBody { lines }
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut text = json!({ "type": kind, "object": object }).to_string();
    text.push('\n');
    Bytes::from(text)
}

async fn run(store: &Store, spec: &WatchSpec, sender: &mpsc::Sender<Bytes>) {
    if let Err(error) = stream_events(store, spec, sender).await {
        let _ = sender.send(line("ERROR", error.to_status())).await;
    }
}

fn decode(kv: &KeyValue, revision: i64) -> Option<Value> {
    match object::decode_stored(&kv.value, revision) {
        Ok(object) => Some(object),
        Err(error) => {
            tracing::warn!(key = %String::from_utf8_lossy(&kv.key), %error, "skipping an undecodable object in a watch");
            None
        }
    }
}

async fn stream_events(
    store: &Store,
    spec: &WatchSpec,
    sender: &mpsc::Sender<Bytes>,
) -> Result<(), ApiError> {
    let prefix = spec.resource.collection_prefix(spec.namespace.as_deref());
    let after = match spec.start {
        Start::After(revision) => revision,
        Start::InitialState => {
            let page = store.page(&prefix, &prefix, 0, 0, false).await?;
            for kv in &page.kvs {
                let Some(object) = decode(kv, kv.mod_revision) else {
                    continue;
                };
                if spec.selectors.matches(&object) && !send(spec, sender, "ADDED", object).await {
                    return Ok(());
                }
            }
            page.revision
        }
    };
    let mut feed = store
        .data
        .watch(WatchCreate {
            key: prefix.as_bytes().to_vec(),
            range_end: raftstore::mvcc::tree_index::prefix_end(prefix.as_bytes()),
            start_revision: after + 1,
            prev_kv: true,
            ..Default::default()
        })
        .await?;
    // A custom resource's watch ends when its CRD is deleted, as kube-apiserver's does.
    let mut definition = match super::crd::definition_key(spec.resource) {
        Some(key) => Some(
            store
                .data
                .watch(WatchCreate {
                    key: key.into_bytes(),
                    start_revision: after + 1,
                    no_put: true,
                    ..Default::default()
                })
                .await?,
        ),
        None => None,
    };
    let mut bookmarks = tokio::time::interval(BOOKMARK_INTERVAL);
    bookmarks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let delivery = tokio::select! {
            biased;
            deleted = next_of(&mut definition) => {
                if matches!(deleted.message, WatchMessage::Events { .. }) {
                    return Ok(());
                }
                continue;
            }
            delivery = feed.next() => delivery,
            _ = bookmarks.tick(), if spec.bookmarks => {
                feed.request_progress();
                continue;
            }
        };
        match delivery.message {
            WatchMessage::Created { .. } => {}
            WatchMessage::Refused { reason } => return Err(ApiError::internal(reason)),
            WatchMessage::Canceled { .. } => return Ok(()),
            WatchMessage::Compacted {
                compact_revision, ..
            } => {
                return Err(ApiError::expired(format!(
                    "too old resource version: {after} ({compact_revision})"
                )));
            }
            WatchMessage::Progress { .. } => {
                if spec.bookmarks {
                    let bookmark = json!({
                        "kind": spec.resource.kind,
                        "apiVersion": spec.resource.api_version(),
                        "metadata": { "resourceVersion": delivery.revision.to_string() },
                    });
                    if sender.send(line("BOOKMARK", bookmark)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            WatchMessage::Events { events, .. } => {
                for event in &events {
                    if let Some((kind, object)) = translate(spec, event) {
                        if !send(spec, sender, kind, object).await {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// The next delivery of `feed`; never, when there is none.
async fn next_of(feed: &mut Option<Feed>) -> Delivery {
    match feed {
        Some(feed) => feed.next().await,
        None => std::future::pending().await,
    }
}

/// The watch event of a store event, as kube's etcd3 watcher decides it.
fn translate(spec: &WatchSpec, event: &Event) -> Option<(&'static str, Value)> {
    let kv = event.kv.as_ref()?;
    let revision = kv.mod_revision;
    let previous = event
        .prev_kv
        .as_ref()
        .and_then(|prev| decode(prev, revision))
        .filter(|prev| spec.selectors.matches(prev));
    if event.r#type == EventType::Delete as i32 {
        return previous.map(|prev| ("DELETED", prev));
    }
    let current = decode(kv, revision).filter(|current| spec.selectors.matches(current));
    match (current, previous) {
        (Some(current), None) => Some(("ADDED", current)),
        (Some(current), Some(_)) => Some(("MODIFIED", current)),
        (None, Some(previous)) => Some(("DELETED", previous)),
        (None, None) => None,
    }
}

/// Sends one event; false when the client is gone.
async fn send(
    spec: &WatchSpec,
    sender: &mpsc::Sender<Bytes>,
    kind: &str,
    mut object: Value,
) -> bool {
    super::crd::serve_as(spec.resource, &mut object);
    let object = match spec.table {
        None => object,
        Some(include) => {
            let metadata = json!({ "resourceVersion": object.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!("")) });
            table::table(
                spec.resource,
                std::slice::from_ref(&object),
                metadata,
                include,
                OffsetDateTime::now_utc(),
            )
        }
    };
    sender.send(line(kind, object)).await.is_ok()
}
