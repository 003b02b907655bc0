//! The watch workload of one simulated watcher: prefix, single-key and whole-keyspace watches,
//! some with `prev_kv`, some filtered, some from a past revision, opened while the KV workload
//! and the faults run, and resumed after every break as etcd's clients do.
//!
//! Guarantees: every response of every stream is recorded in [`WatchLogs`] in arrival order.
//! A broken stream (member crashed or cut off, `no leader`, canceled) is resumed on a member
//! picked from the seed at the revision after the last one the watch vouched for (its last
//! event or progress notification); a compacted watch is given up and a new one opened,
//! either from "now", as kube-apiserver relists, or at exactly the compact revision the cancel
//! named (the oldest revision still readable). A progress request is sent every [`PROGRESS_EVERY`].
//! Until `close_until`, each logical watch lives a seeded time, then the watcher closes its
//! stream and opens a new one (another range, another start). Streams are closed by ending the
//! request side and reading every response until the member ends the stream, never dropped
//! before `done` turns true (see `client` on why cancelled HTTP/2 streams would break replay).

use std::time::Duration;

use etcd_api::pb::etcdserverpb::watch_client::WatchClient;
use etcd_api::pb::etcdserverpb::watch_create_request::FilterType;
use etcd_api::pb::etcdserverpb::watch_request::RequestUnion;
use etcd_api::pb::etcdserverpb::{
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use futures::channel::mpsc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::client::EtcdClient;
use crate::watch_log::{Event, Reply, WatchLogs, WatchTarget};

/// How often a watcher asks for a progress notification.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Pause before a broken stream is resumed.
const RESUME_AFTER: Duration = Duration::from_millis(200);
/// How long a logical watch lives at most before the watcher closes it (while it does).
const LIFETIME_AT_MOST: Duration = Duration::from_secs(10);

/// What one watcher does.
#[derive(Debug, Clone)]
pub struct WatcherSpec {
    pub watcher: usize,
    pub seed: u64,
    /// The keys of the KV workload (all share the first one's first byte as a prefix).
    pub keys: Vec<String>,
    /// Simulated time of the first watch.
    pub open_at: Duration,
    /// After this simulated time, watches are no longer closed to open others.
    pub close_until: Duration,
}

/// How a stream ended.
enum StreamEnd {
    /// The run is over.
    Done,
    /// Canceled as compacted at this revision: the watch is over.
    Compacted(i64),
    /// Broken: resume.
    Broken(String),
    /// Closed by the watcher: the watch is over.
    Closed,
}

/// One stream's settings.
struct Stream<'a> {
    client: &'a EtcdClient,
    logs: &'a WatchLogs,
    record: usize,
    target: &'a WatchTarget,
    has_leader: bool,
}

/// Runs watches until `done` turns true (or its sender is gone).
pub async fn run_watcher(
    spec: WatcherSpec,
    client: EtcdClient,
    logs: WatchLogs,
    mut done: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    tokio::time::sleep(spec.open_at).await;
    // The compact revision the last watch was canceled at, if it was.
    let mut compacted_at = None;
    while !*done.borrow() {
        let target = pick_target(&mut rng, &spec.keys);
        let has_leader = rng.gen_bool(0.5);
        let mut start = match (compacted_at.take(), rng.gen_range(0..3)) {
            (Some(compact_revision), 0 | 1) => compact_revision,
            (_, 0) => 0,
            (_, 1) => 1,
            _ => {
                let member = rng.gen_range(0..client.members());
                let back = rng.gen_range(0..40);
                match client.current_revision(member).await {
                    Ok(revision) => (revision - back).max(1),
                    Err(_) => 0,
                }
            }
        };
        let close_at = now() + rng.gen_range(Duration::from_secs(2)..LIFETIME_AT_MOST);
        let close_at = (close_at < spec.close_until).then_some(close_at);
        let record = logs.start(spec.watcher, target.clone());
        let stream = Stream {
            client: &client,
            logs: &logs,
            record,
            target: &target,
            has_leader,
        };
        loop {
            let member = rng.gen_range(0..client.members());
            logs.open_segment(record, member, start);
            let (end, through) = stream.run(member, start, close_at, &mut done).await;
            if let Some(through) = through {
                start = through + 1;
            }
            match end {
                StreamEnd::Done => return,
                StreamEnd::Compacted(compact_revision) => {
                    logs.end_segment(record, "compacted".to_string());
                    compacted_at = Some(compact_revision);
                    break;
                }
                StreamEnd::Broken(why) => {
                    logs.end_segment(record, why);
                    tokio::time::sleep(RESUME_AFTER).await;
                }
                StreamEnd::Closed => {
                    logs.end_segment(record, "closed by the watcher".to_string());
                    break;
                }
            }
            if *done.borrow() {
                return;
            }
        }
    }
}

fn pick_target(rng: &mut StdRng, keys: &[String]) -> WatchTarget {
    let (key, range_end) = match rng.gen_range(0..4) {
        0 => ("\0".to_string(), "\0".to_string()),
        1 => (keys[rng.gen_range(0..keys.len())].clone(), String::new()),
        _ => {
            // The keys' common one-letter prefix.
            let prefix = keys[0].chars().next().unwrap_or('k');
            let end = char::from_u32(prefix as u32 + 1).unwrap_or(prefix);
            (prefix.to_string(), end.to_string())
        }
    };
    let filter = rng.gen_range(0..6);
    WatchTarget {
        key,
        range_end,
        prev_kv: rng.gen_bool(0.5),
        no_put: filter == 0,
        no_delete: filter == 1,
    }
}

impl Stream<'_> {
    /// Opens one stream on `member` from `start` and records what it gets, closing it at
    /// `close_at` if that comes; returns how it ended and the last revision it vouched for,
    /// if any.
    async fn run(
        &self,
        member: usize,
        start: i64,
        close_at: Option<Duration>,
        done: &mut watch::Receiver<bool>,
    ) -> (StreamEnd, Option<i64>) {
        let mut through = None;
        let (mut requests, outgoing) = mpsc::channel::<WatchRequest>(8);
        let mut filters = Vec::new();
        if self.target.no_put {
            filters.push(FilterType::Noput as i32);
        }
        if self.target.no_delete {
            filters.push(FilterType::Nodelete as i32);
        }
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: self.target.key.clone().into_bytes(),
                range_end: self.target.range_end.clone().into_bytes(),
                start_revision: start,
                prev_kv: self.target.prev_kv,
                filters,
                ..Default::default()
            })),
        };
        if requests.try_send(create).is_err() {
            return (StreamEnd::Broken("request queue full".into()), through);
        }
        let mut request = tonic::Request::new(outgoing);
        if self.has_leader {
            request.metadata_mut().insert(
                "hasleader",
                tonic::metadata::MetadataValue::from_static("true"),
            );
        }
        let mut watch = WatchClient::new(self.client.channel(member));
        let opened = tokio::select! {
            biased;
            _ = done.wait_for(|done| *done) => return (StreamEnd::Done, through),
            opened = watch.watch(request) => opened,
        };
        let mut responses = match opened {
            Ok(responses) => responses.into_inner(),
            Err(status) => return (StreamEnd::Broken(describe(&status)), through),
        };
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        let mut requests = Some(requests);
        let close = async {
            match close_at {
                Some(at) => tokio::time::sleep(at.saturating_sub(now())).await,
                None => futures::future::pending().await,
            }
        };
        tokio::pin!(close);
        loop {
            let closing = requests.is_none();
            tokio::select! {
                biased;
                _ = done.wait_for(|done| *done) => return (StreamEnd::Done, through),
                message = responses.message() => {
                    let response = match message {
                        Ok(Some(response)) => response,
                        _ if closing => return (StreamEnd::Closed, through),
                        Ok(None) => return (StreamEnd::Broken("stream ended".into()), through),
                        Err(status) => return (StreamEnd::Broken(describe(&status)), through),
                    };
                    let reply = classify(&response);
                    let end = match &reply {
                        Reply::Created { revision } if start <= 0 => {
                            through = Some(*revision);
                            None
                        }
                        Reply::Events { events, .. } => {
                            let last = events.last().map_or(0, Event::revision);
                            through = Some(through.unwrap_or(0).max(last));
                            None
                        }
                        Reply::Progress { revision } => {
                            through = Some(through.unwrap_or(0).max(*revision));
                            None
                        }
                        Reply::Compacted {
                            compact_revision, ..
                        } => Some(StreamEnd::Compacted(*compact_revision)),
                        Reply::Canceled { reason, .. } => {
                            Some(StreamEnd::Broken(format!("canceled: {reason}")))
                        }
                        Reply::Created { .. } => None,
                    };
                    self.logs.reply(self.record, reply);
                    if let Some(end) = end {
                        return (end, through);
                    }
                }
                // Ending the request side ends the member's session, which then ends the stream.
                _ = &mut close, if !closing => requests = None,
                _ = progress.tick() => {
                    let request = WatchRequest {
                        request_union: Some(RequestUnion::ProgressRequest(
                            WatchProgressRequest {},
                        )),
                    };
                    // A full queue means a request is still pending: one is enough.
                    if let Some(requests) = requests.as_mut() {
                        let _ = requests.try_send(request);
                    }
                }
            }
        }
    }
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// What kind of response `response` is.
fn classify(response: &WatchResponse) -> Reply {
    let revision = response.header.as_ref().map_or(0, |h| h.revision);
    if response.canceled && response.compact_revision > 0 {
        Reply::Compacted {
            revision,
            compact_revision: response.compact_revision,
        }
    } else if response.canceled {
        Reply::Canceled {
            revision,
            reason: response.cancel_reason.clone(),
        }
    } else if response.created {
        Reply::Created { revision }
    } else if response.events.is_empty() {
        Reply::Progress { revision }
    } else {
        Reply::Events {
            revision,
            events: response.events.iter().map(Event::from_pb).collect(),
        }
    }
}
