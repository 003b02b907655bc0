//! The etcd `Watch` service: one bidirectional stream carries many watches.
//!
//! Each stream is served by one task that reads the client's requests (create, cancel,
//! progress) and sends what the member's [`WatchHub`](raftstore::watch::WatchHub) queued for
//! it, as etcd's `serverWatchStream` does:
//! - a create is answered `created` (or `created` + `canceled` with etcd's reason) before any of
//!   its events; a cancel of a live watch is answered `canceled`;
//! - a progress request is answered with watch id −1 and the hub's revision once every watcher
//!   of the stream is synced (at once if they are, else as soon as they are);
//! - watchers created with `progress_notify` get a progress notification every
//!   `watch_progress_notify_interval` in which they got no events;
//! - a response of at least max-request-bytes + 512 KiB (etcd's gRPC receive limit) with two
//!   or more events is split into fragments when the watch asked for it;
//! - with the `hasleader` metadata the stream is refused without a leader, and ended after three
//!   election timeouts without one.
//!
//! The outbound channel is small: a client that stops reading blocks its own stream only, and
//! the hub parks its watchers rather than buffering without bound. Events go out as
//! [`WatchReply`]s encoded straight from the events the hub shares between watchers (see
//! [`crate::watch_server`]); only a watch that asked for fragments gets copies, to split them.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use prost::Message as _;
use raftstore::node::NodeHandle;
use raftstore::watch::{SharedDelivery, SharedMessage, WatchCreate, WatchMessage, WatchStream};
use raftstore::EtcdError;
use tokio::sync::mpsc;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::status_from;
use crate::pb::etcdserverpb::watch_create_request::FilterType;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::watch_server::WatchReply;

/// Responses buffered between a stream's task and gRPC. gRPC encodes every response waiting
/// into one write, so a few suffice; more would only hold more memory for a slow client.
const OUTBOUND_CAPACITY: usize = 8;

/// Most queued messages sent in one go before the stream's task looks at requests and timers.
const SEND_BATCH: usize = 64;

/// How often a stream waiting to answer a progress request checks again.
const DEFERRED_PROGRESS_RETRY: Duration = Duration::from_millis(50);

/// Election timeouts without a leader after which a `hasleader` stream is ended.
const LEADERLESS_ELECTIONS: u32 = 3;

/// The Watch service of one member.
#[derive(Clone)]
pub struct WatchService {
    handle: NodeHandle,
}

impl WatchService {
    pub fn new(handle: NodeHandle) -> Self {
        Self { handle }
    }
}

/// The responses of one Watch stream.
pub type WatchReplies = Pin<Box<dyn Stream<Item = Result<WatchReply, Status>> + Send>>;

/// Whether the client asked, as kube-apiserver does, to be served only while there is a leader.
fn requires_leader<T>(request: &Request<T>) -> bool {
    request
        .metadata()
        .get("hasleader")
        .is_some_and(|value| value.as_bytes() == b"true")
}

impl WatchService {
    /// Serves one Watch stream.
    pub async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchReplies>, Status> {
        let requires_leader = requires_leader(&request);
        if requires_leader && !self.handle.status().has_leader() {
            return Err(status_from(EtcdError::NoLeader));
        }
        let (outbound, responses) = mpsc::channel(OUTBOUND_CAPACITY);
        let session = Session {
            stream: self.handle.watch_hub().open_stream(),
            handle: self.handle.clone(),
            outbound,
            watches: HashMap::new(),
            progress_deferred: false,
            requires_leader,
        };
        tokio::spawn(session.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }
}

/// What a stream remembers of each of its watches.
#[derive(Debug, Clone, Copy, Default)]
struct WatchSettings {
    fragment: bool,
    progress_notify: bool,
    /// No events were sent since the last periodic progress tick.
    quiet: bool,
}

/// One client stream.
struct Session {
    stream: WatchStream,
    handle: NodeHandle,
    outbound: mpsc::Sender<Result<WatchReply, Status>>,
    watches: HashMap<i64, WatchSettings>,
    /// A progress request is waiting for every watcher to be synced.
    progress_deferred: bool,
    requires_leader: bool,
}

impl Session {
    async fn run(mut self, mut requests: Streaming<WatchRequest>) {
        let config = self.handle.config();
        let progress_every = config.watch_progress_notify_interval;
        let election_timeout = Duration::from_millis(config.election_timeout_ms);
        let mut progress_ticks = interval_at(Instant::now() + progress_every, progress_every);
        progress_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut deferred_ticks = tokio::time::interval(DEFERRED_PROGRESS_RETRY);
        let mut leader_ticks = interval_at(Instant::now() + election_timeout, election_timeout);
        let mut leaderless = 0;
        loop {
            tokio::select! {
                _ = self.outbound.closed() => break,
                request = requests.next() => match request {
                    Some(Ok(request)) => self.on_request(request),
                    // The client closed its side or the connection broke: the watches end.
                    Some(Err(_)) | None => break,
                },
                delivery = self.stream.next_shared() => {
                    if !self.send_batch(delivery).await {
                        break;
                    }
                    self.retry_deferred_progress();
                }
                _ = progress_ticks.tick() => self.notify_quiet_watches(),
                _ = deferred_ticks.tick(), if self.progress_deferred => {
                    self.retry_deferred_progress();
                }
                _ = leader_ticks.tick(), if self.requires_leader => {
                    leaderless = if self.handle.status().has_leader() { 0 } else { leaderless + 1 };
                    if leaderless >= LEADERLESS_ELECTIONS {
                        let _ = self.outbound.send(Err(status_from(EtcdError::NoLeader))).await;
                        break;
                    }
                }
            }
        }
    }

    fn on_request(&mut self, request: WatchRequest) {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create),
            Some(RequestUnion::CancelRequest(cancel)) => {
                self.stream.cancel(cancel.watch_id);
            }
            // One answer per request: a request while one is deferred adds nothing.
            Some(RequestUnion::ProgressRequest(_)) if !self.progress_deferred => {
                self.progress_deferred = !self.stream.request_progress_all();
            }
            Some(RequestUnion::ProgressRequest(_)) | None => {}
        }
    }

    fn create(&mut self, create: WatchCreateRequest) {
        let has_filter = |filter: FilterType| create.filters.contains(&(filter as i32));
        let request = WatchCreate {
            no_put: has_filter(FilterType::Noput),
            no_delete: has_filter(FilterType::Nodelete),
            key: create.key,
            range_end: create.range_end,
            start_revision: create.start_revision,
            watch_id: create.watch_id,
            prev_kv: create.prev_kv,
        };
        if let Some(watch_id) = self.stream.watch(request) {
            self.watches.insert(
                watch_id,
                WatchSettings {
                    fragment: create.fragment,
                    progress_notify: create.progress_notify,
                    quiet: true,
                },
            );
        }
    }

    /// Answers a deferred progress request once every watcher is synced.
    fn retry_deferred_progress(&mut self) {
        if self.progress_deferred && self.stream.request_progress_all() {
            self.progress_deferred = false;
        }
    }

    /// The periodic progress notification, for watches that asked and got no events lately.
    fn notify_quiet_watches(&mut self) {
        for (watch_id, settings) in &mut self.watches {
            if settings.progress_notify && settings.quiet {
                self.stream.request_progress(*watch_id);
            }
            settings.quiet = true;
        }
    }

    /// Sends `first` and what else is queued, up to [`SEND_BATCH`] messages; false once the
    /// client is gone.
    async fn send_batch(&mut self, first: SharedDelivery) -> bool {
        let mut next = Some(first);
        let mut sent = 0;
        while let Some(delivery) = next {
            if !self.send(delivery).await {
                return false;
            }
            sent += 1;
            next = if sent < SEND_BATCH {
                self.stream.try_next_shared()
            } else {
                None
            };
        }
        true
    }

    /// Sends one queued message as one response (or its fragments); false once the client is
    /// gone.
    async fn send(&mut self, delivery: SharedDelivery) -> bool {
        let header = Some(self.handle.header(delivery.revision));
        let mut response = WatchResponse {
            header,
            ..Default::default()
        };
        let message = match delivery.message {
            SharedMessage::Events { watch_id, events } => {
                response.watch_id = watch_id;
                let mut fragment = false;
                if let Some(settings) = self.watches.get_mut(&watch_id) {
                    settings.quiet = false;
                    fragment = settings.fragment;
                }
                if !fragment {
                    let reply = WatchReply::Shared { response, events };
                    return self.outbound.send(Ok(reply)).await.is_ok();
                }
                WatchMessage::Events {
                    watch_id,
                    events: events.to_vec(),
                }
            }
            SharedMessage::Other(message) => message,
        };
        let mut fragment = false;
        match message {
            WatchMessage::Created { watch_id } => {
                response.watch_id = watch_id;
                response.created = true;
            }
            WatchMessage::Refused { reason } => {
                response.watch_id = -1;
                response.created = true;
                response.canceled = true;
                response.cancel_reason = reason;
            }
            WatchMessage::Events { watch_id, events } => {
                response.watch_id = watch_id;
                response.events = events;
                if let Some(settings) = self.watches.get_mut(&watch_id) {
                    settings.quiet = false;
                    fragment = settings.fragment;
                }
            }
            WatchMessage::Compacted {
                watch_id,
                compact_revision,
            } => {
                response.watch_id = watch_id;
                response.canceled = true;
                response.compact_revision = compact_revision;
                self.watches.remove(&watch_id);
            }
            WatchMessage::Canceled { watch_id } => {
                response.watch_id = watch_id;
                response.canceled = true;
                self.watches.remove(&watch_id);
            }
            WatchMessage::Progress { watch_id } => response.watch_id = watch_id,
        }
        // etcd splits at its gRPC receive limit, not at max-request-bytes itself.
        let limit =
            self.handle.config().max_request_bytes + crate::server::GRPC_RECEIVE_OVERHEAD_BYTES;
        let parts = if fragment {
            fragments(response, limit)
        } else {
            vec![response]
        };
        for part in parts {
            if self
                .outbound
                .send(Ok(WatchReply::Whole(part)))
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }
}

/// etcd's fragmentation: a response under `limit` bytes, or with fewer than two events, goes
/// whole; otherwise events are packed into parts that stay under `limit` (a part holds at least
/// one event), every part but the last marked `fragment`.
fn fragments(response: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if response.encoded_len() < limit || response.events.len() < 2 {
        return vec![response];
    }
    let mut template = response;
    let events = std::mem::take(&mut template.events);
    let empty_len = template.encoded_len();
    let mut parts = Vec::new();
    let mut current = Vec::new();
    let mut current_len = empty_len;
    for event in events {
        // Each event is one length-delimited field 11 of the response.
        let event_len = event.encoded_len();
        let field_len = 1 + prost::length_delimiter_len(event_len) + event_len;
        if !current.is_empty() && current_len + field_len >= limit {
            parts.push(std::mem::take(&mut current));
            current_len = empty_len;
        }
        current_len += field_len;
        current.push(event);
    }
    parts.push(current);
    let last = parts.len() - 1;
    parts
        .into_iter()
        .enumerate()
        .map(|(index, events)| WatchResponse {
            events,
            fragment: index < last,
            ..template.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::mvccpb::{Event, KeyValue};

    fn event_of(size: usize) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: b"k".to_vec(),
                value: vec![b'v'; size],
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn response_with(events: Vec<Event>) -> WatchResponse {
        WatchResponse {
            watch_id: 4,
            events,
            ..Default::default()
        }
    }

    #[test]
    fn small_responses_and_single_events_are_not_split() {
        let small = response_with(vec![event_of(10), event_of(10)]);
        assert_eq!(fragments(small.clone(), 1024), vec![small]);
        let single = response_with(vec![event_of(5000)]);
        assert_eq!(fragments(single.clone(), 1024), vec![single]);
    }

    #[test]
    fn large_responses_are_split_in_order_with_fragment_on_all_but_the_last() {
        let events: Vec<Event> = (0..10).map(|_| event_of(300)).collect();
        let parts = fragments(response_with(events.clone()), 1024);
        assert!(parts.len() > 1, "{} parts", parts.len());
        for (index, part) in parts.iter().enumerate() {
            assert_eq!(part.fragment, index + 1 < parts.len());
            assert_eq!(part.watch_id, 4);
            assert!(part.encoded_len() < 1024 || part.events.len() == 1);
        }
        let rejoined: Vec<Event> = parts.into_iter().flat_map(|part| part.events).collect();
        assert_eq!(rejoined, events);
    }
}
