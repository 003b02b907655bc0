//! `WatchHub`: every watcher of a member, fed by the apply path and by the store's history.
//!
//! Each watcher is in exactly one state, as in etcd's watchable store:
//! - **synced**: it has every event up to the hub's revision queued; the apply path hands it new
//!   events directly ([`WatchHub::notify`]);
//! - **unsynced**: it starts in the past or fell behind; the sync task reads its missing events
//!   from the store, oldest first, a bounded batch at a time, until it catches up (a watcher
//!   whose stream is full waits, unsynced, for room: it is never parked with history);
//! - **victim**: its stream's queue was full; it holds the one message that did not fit, takes
//!   no new events, and is retried as soon as the queue has room — then it becomes synced, or
//!   unsynced if it missed revisions meanwhile.
//!
//! Guarantees:
//! - a watcher gets every change in its range from its start revision on, exactly once, in
//!   revision order, and all the events of one revision in one message;
//! - the hub's revision only moves in [`WatchHub::notify`], after the store applied that
//!   revision, and every read of history and every new synced watcher is decided under the same
//!   lock — so the hand-over from history to live events has no gap and no duplicate;
//! - a progress message never runs ahead: it is sent only for watchers that are synced, and is
//!   stamped with the hub's revision, all of whose events are already queued before it;
//! - memory per watcher is bounded: a stream queues at most `queue_capacity` event messages, a
//!   victim holds one, and history is read at most `sync_batch_events` events at a time; the
//!   events of a revision (or of a round of history) are shared by every watcher they concern,
//!   and so is the list of which of them concern a key or range;
//! - work per applied revision is proportional to the watchers it concerns: watchers of one
//!   range are matched once, and parked watchers are retried only on streams with room, in
//!   turn (each stream resumes after the last watcher it served, so none starves).
//! - a watcher whose next revision was compacted away gets one `Compacted` message and is
//!   removed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{watch, Notify};

use super::fast_hash::{FastMap, FastSet};
use super::group::{WatcherGroup, WatcherKey};
use super::key_range::KeyRange;
use super::queue::{
    Delivery, EventSlice, Filters, Queued, SharedDelivery, StreamQueue, WatchMessage,
};
use crate::error::StorageError;
use crate::mvcc::MvccStore;
use crate::pb::mvccpb::Event;

/// Limits of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// Event messages a stream may have waiting before its watchers are parked (etcd: 128).
    pub queue_capacity: usize,
    /// Most events read from the store in one round of catching up.
    pub sync_batch_events: usize,
    /// Pause between rounds of catching up and retrying parked watchers (etcd: 100 ms).
    pub sync_interval: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 128,
            // etcd's watchBatchMaxRevs: it also bounds one catching-up message.
            sync_batch_events: 1_000,
            sync_interval: Duration::from_millis(100),
        }
    }
}

/// A request to watch, as etcd's `WatchCreateRequest` after the gRPC layer read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchCreate {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// First revision wanted; 0 (or less) means "after the current revision".
    pub start_revision: i64,
    /// A client-chosen watch id; 0 lets the stream pick the next free one.
    pub watch_id: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

/// etcd's text for a client-chosen watch id already in use on the stream.
pub const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

#[derive(Debug)]
enum State {
    Synced,
    Unsynced,
    /// Parked with the messages that did not fit in its stream's queue.
    Victim(Vec<Queued>),
}

#[derive(Debug)]
struct Watcher {
    range: KeyRange,
    /// The next revision this watcher needs.
    next_revision: i64,
    prev_kv: bool,
    filters: Filters,
    state: State,
}

impl Watcher {
    /// The message carrying the events of `batch` at `selected[from..]` that this watcher
    /// wants, or `None` when its filters leave none.
    fn events(
        &self,
        watch_id: i64,
        batch: &Arc<Vec<Event>>,
        selected: &Arc<[u32]>,
        from: usize,
    ) -> Option<Queued> {
        let slice = EventSlice {
            batch: Arc::clone(batch),
            selected: Arc::clone(selected),
            from,
            filters: self.filters,
            with_prev_kv: self.prev_kv,
        };
        let slice = slice.non_empty()?;
        Some(Queued::Events { watch_id, slice })
    }

    /// Parks this watcher, taken out of `group`, with the message its full queue refused.
    fn park(
        &mut self,
        key: WatcherKey,
        refused: Queued,
        group: &mut WatcherGroup,
        victims: &mut BTreeSet<WatcherKey>,
    ) {
        group.remove(key, &self.range);
        self.state = State::Victim(vec![refused]);
        victims.insert(key);
    }
}

struct StreamEntry {
    queue: Arc<StreamQueue>,
    next_watch_id: i64,
    watch_ids: BTreeSet<i64>,
    /// The last parked watcher retried; the next retry starts after it.
    retried_last: i64,
}

#[derive(Default)]
struct HubState {
    /// The last revision published by `notify` (the store's revision when the hub started).
    revision: i64,
    next_stream_id: u64,
    streams: FastMap<u64, StreamEntry>,
    watchers: FastMap<WatcherKey, Watcher>,
    synced: WatcherGroup,
    unsynced: WatcherGroup,
    victims: BTreeSet<WatcherKey>,
}

/// The watchers of one member.
pub struct WatchHub {
    state: Mutex<HubState>,
    store: Arc<RwLock<MvccStore>>,
    config: HubConfig,
    /// Wakes the sync task: new unsynced watchers, or room in a full queue.
    wake: Arc<Notify>,
}

impl WatchHub {
    pub fn new(store: Arc<RwLock<MvccStore>>, config: HubConfig) -> Arc<Self> {
        let revision = store.read().current_revision();
        Arc::new(Self {
            state: Mutex::new(HubState {
                revision,
                ..Default::default()
            }),
            store,
            config,
            wake: Arc::new(Notify::new()),
        })
    }

    /// The last revision published to watchers.
    pub fn revision(&self) -> i64 {
        self.state.lock().revision
    }

    /// Opens a stream that carries many watches; they end when it is dropped.
    pub fn open_stream(self: &Arc<Self>) -> WatchStream {
        let queue = Arc::new(StreamQueue::new(
            self.config.queue_capacity,
            Arc::clone(&self.wake),
        ));
        let mut state = self.state.lock();
        let id = state.next_stream_id;
        state.next_stream_id += 1;
        state.streams.insert(
            id,
            StreamEntry {
                queue: Arc::clone(&queue),
                next_watch_id: 0,
                watch_ids: BTreeSet::new(),
                retried_last: i64::MIN,
            },
        );
        WatchStream {
            hub: Arc::clone(self),
            id,
            queue,
        }
    }

    /// Publishes the events of one applied revision. Call after the store applied it, without
    /// holding the store's lock, in revision order.
    pub fn notify(&self, revision: i64, events: Vec<Event>) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        state.revision = state.revision.max(revision);
        if events.is_empty() || state.synced.is_empty() {
            return;
        }
        let batch = Arc::new(events);
        let mut refused = Vec::new();
        let HubState {
            synced,
            watchers,
            streams,
            ..
        } = state;
        synced.for_each_selection(&batch, |selected, keys| {
            for &key in keys {
                let Some(watcher) = watchers.get_mut(&key) else {
                    continue;
                };
                if revision < watcher.next_revision {
                    continue; // a watcher that starts in the future
                }
                watcher.next_revision = revision + 1;
                let Some(item) = watcher.events(key.1, &batch, selected, 0) else {
                    continue;
                };
                let Some(stream) = streams.get(&key.0) else {
                    continue;
                };
                if let Err(item) = stream.queue.try_push_events(revision, item) {
                    refused.push((key, item));
                }
            }
        });
        if refused.is_empty() {
            return;
        }
        for (key, item) in refused {
            if let Some(watcher) = state.watchers.get_mut(&key) {
                watcher.park(key, item, &mut state.synced, &mut state.victims);
            }
        }
        self.wake.notify_one();
    }

    /// The store was replaced by a raft snapshot at `revision`: every watcher catches up from
    /// the new store (its history may have been compacted away, which cancels it).
    pub fn restored(&self, revision: i64) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        state.revision = revision;
        let keys: Vec<WatcherKey> = state.watchers.keys().copied().collect();
        for key in keys {
            let Some(watcher) = state.watchers.get_mut(&key) else {
                continue;
            };
            if matches!(watcher.state, State::Synced) {
                state.synced.remove(key, &watcher.range);
                watcher.state = State::Unsynced;
                state.unsynced.insert(key, &watcher.range);
            }
        }
        self.wake.notify_one();
    }

    /// Runs the sync task until `shutdown` turns true: catches unsynced watchers up from the
    /// store and retries parked ones, whenever woken and at least every `sync_interval`.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.sync_interval) => {}
            }
            if *shutdown.borrow() {
                return;
            }
            self.retry_victims();
            // Each round reads a bounded batch; yield between rounds so others run.
            loop {
                match self.sync_unsynced() {
                    Ok(true) => tokio::task::yield_now().await,
                    Ok(false) => break,
                    Err(err) => {
                        tracing::error!(error = %err, "reading history for watchers failed; retrying");
                        break;
                    }
                }
            }
        }
    }

    /// Tries to queue the parked messages of the victims of every stream that has room; each
    /// stream's turn resumes after the last victim it served and stops when its queue is full.
    pub(crate) fn retry_victims(&self) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let mut next_stream = state.victims.first().map(|key| key.0);
        while let Some(stream_id) = next_stream {
            next_stream = stream_id.checked_add(1).and_then(|after| {
                state
                    .victims
                    .range((after, i64::MIN)..)
                    .next()
                    .map(|key| key.0)
            });
            let Some(stream) = state.streams.get(&stream_id) else {
                // Its watchers went with the stream; nothing of it should be left.
                state.victims.retain(|key| key.0 != stream_id);
                continue;
            };
            if stream.queue.free_slots() == 0 {
                continue;
            }
            let queue = Arc::clone(&stream.queue);
            let mut last = stream.retried_last;
            // Each turn of the loop either takes a victim out of the set or stops: it ends.
            loop {
                let ahead = state
                    .victims
                    .range((stream_id, last.saturating_add(1))..=(stream_id, i64::MAX))
                    .next()
                    .copied();
                let Some(key) = ahead.or_else(|| {
                    state
                        .victims
                        .range((stream_id, i64::MIN)..=(stream_id, i64::MAX))
                        .next()
                        .copied()
                }) else {
                    break;
                };
                if !retry_victim(state, key, &queue) {
                    break;
                }
                last = key.1;
            }
            if let Some(stream) = state.streams.get_mut(&stream_id) {
                stream.retried_last = last;
            }
        }
        // No wake-up here for unsynced watchers: the sync task catches them up right after
        // this, and one whose stream is full is woken by its queue draining. Waking itself
        // while such a watcher waited spun the task forever without yielding time (a watcher
        // that fell far behind on a slow stream then froze its member).
    }

    /// One round of catching up: cancels watchers whose history was compacted away, reads the
    /// next batch of history for those whose stream has room and queues it, oldest watchers
    /// first. A watcher whose stream fills up during the round is left as it was (unsynced, at
    /// the same revision) rather than parked with part of the batch, so no round's history
    /// stays in memory for a stream that cannot take it. Returns whether another round could
    /// make progress now.
    pub(crate) fn sync_unsynced(&self) -> Result<bool, StorageError> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.unsynced.is_empty() {
            return Ok(false);
        }
        let store = self.store.read();
        let revision = state.revision;
        let compacted = store.compact_revision();
        let members: Vec<WatcherKey> = state.unsynced.members().collect();
        let mut oldest = i64::MAX;
        let mut any_prev_kv = false;
        // The watchers this round serves: behind, and with room in their stream.
        let min_free_slots = (self.config.queue_capacity / 4).max(1);
        let mut serving: FastSet<WatcherKey> = FastSet::default();
        for key in members {
            let Some(watcher) = state.watchers.get(&key) else {
                continue;
            };
            if watcher.next_revision < compacted {
                let range = watcher.range.clone();
                state.unsynced.remove(key, &range);
                state.watchers.remove(&key);
                if let Some(stream) = state.streams.get_mut(&key.0) {
                    stream.watch_ids.remove(&key.1);
                    stream.queue.push_control(
                        revision,
                        WatchMessage::Compacted {
                            watch_id: key.1,
                            compact_revision: compacted,
                        },
                    );
                }
            } else if watcher.next_revision > revision {
                let range = watcher.range.clone();
                state.unsynced.remove(key, &range);
                state.synced.insert(key, &range);
                if let Some(watcher) = state.watchers.get_mut(&key) {
                    watcher.state = State::Synced;
                }
            } else if let Some(stream) = state.streams.get(&key.0) {
                // A stream nearly full would take a message or two of a round read for it.
                if stream.queue.free_slots() >= min_free_slots {
                    oldest = oldest.min(watcher.next_revision);
                    any_prev_kv |= watcher.prev_kv;
                    serving.insert(key);
                } else {
                    stream.queue.want_room();
                }
            }
        }
        if serving.is_empty() {
            // Caught up, or every stream is full: the next room in one wakes the task.
            return Ok(false);
        }
        let history =
            store.history(oldest, revision, self.config.sync_batch_events, any_prev_kv)?;
        drop(store);
        let batch = Arc::new(history.events);
        let through = history.through;
        let mut full: FastSet<WatcherKey> = FastSet::default();
        let mut delivered = false;
        let HubState {
            unsynced,
            watchers,
            streams,
            ..
        } = state;
        unsynced.for_each_selection(&batch, |selected, keys| {
            // Oldest first: whoever a full stream turns away now is served first next round.
            let mut order: Vec<(i64, WatcherKey)> = keys
                .iter()
                .filter(|key| serving.contains(key))
                .filter_map(|key| Some((watchers.get(key)?.next_revision, *key)))
                .filter(|(next_revision, _)| *next_revision <= through)
                .collect();
            order.sort_unstable();
            for (next_revision, key) in order {
                let Some(watcher) = watchers.get_mut(&key) else {
                    continue;
                };
                // The batch is in revision order: skip what this watcher already has.
                let from = selected.partition_point(|&index| {
                    batch
                        .get(index as usize)
                        .and_then(|event| event.kv.as_ref())
                        .map_or(0, |kv| kv.mod_revision)
                        < next_revision
                });
                let Some(item) = watcher.events(key.1, &batch, selected, from) else {
                    continue;
                };
                let Some(stream) = streams.get(&key.0) else {
                    continue;
                };
                if stream.queue.try_push_events(revision, item).is_ok() {
                    delivered = true;
                } else {
                    full.insert(key);
                }
            }
        });
        let members: Vec<WatcherKey> = state.unsynced.members().collect();
        for key in members {
            if !serving.contains(&key) || full.contains(&key) {
                continue;
            }
            let Some(watcher) = state.watchers.get_mut(&key) else {
                continue;
            };
            if watcher.next_revision <= through {
                // Everything of this round it wanted is queued.
                watcher.next_revision = through + 1;
                delivered = true;
            }
            if watcher.next_revision > revision {
                state.unsynced.remove(key, &watcher.range);
                state.synced.insert(key, &watcher.range);
                watcher.state = State::Synced;
            }
        }
        Ok(delivered && !state.unsynced.is_empty() && through < revision)
    }

    fn create(&self, stream_id: u64, request: WatchCreate) -> Option<i64> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let revision = state.revision;
        let stream = state.streams.get_mut(&stream_id)?;
        let refuse = |stream: &StreamEntry, reason: String| {
            stream
                .queue
                .push_control(revision, WatchMessage::Refused { reason });
            None
        };
        let range = match KeyRange::new(&request.key, &request.range_end) {
            Ok(range) => range,
            Err(err) => return refuse(stream, err.to_string()),
        };
        let watch_id = if request.watch_id == 0 {
            while stream.watch_ids.contains(&stream.next_watch_id) {
                stream.next_watch_id += 1;
            }
            stream.next_watch_id += 1;
            stream.next_watch_id - 1
        } else if stream.watch_ids.contains(&request.watch_id) {
            return refuse(stream, DUPLICATE_WATCH_ID.to_string());
        } else {
            request.watch_id
        };
        stream.watch_ids.insert(watch_id);
        stream
            .queue
            .push_control(revision, WatchMessage::Created { watch_id });
        let next_revision = if request.start_revision <= 0 {
            revision + 1
        } else {
            request.start_revision
        };
        let key = (stream_id, watch_id);
        let in_past = next_revision <= revision;
        let watcher = Watcher {
            range: range.clone(),
            next_revision,
            prev_kv: request.prev_kv,
            filters: Filters {
                no_put: request.no_put,
                no_delete: request.no_delete,
            },
            state: if in_past {
                State::Unsynced
            } else {
                State::Synced
            },
        };
        if in_past {
            state.unsynced.insert(key, &range);
            self.wake.notify_one();
        } else {
            state.synced.insert(key, &range);
        }
        state.watchers.insert(key, watcher);
        Some(watch_id)
    }

    fn cancel(&self, stream_id: u64, watch_id: i64) -> bool {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let revision = state.revision;
        let key = (stream_id, watch_id);
        if !remove_watcher(state, key) {
            return false;
        }
        if let Some(stream) = state.streams.get(&stream_id) {
            stream
                .queue
                .push_control(revision, WatchMessage::Canceled { watch_id });
        }
        true
    }

    /// Queues a progress message with `watch_id` on the stream if every watcher in `which` is
    /// synced; returns whether they were.
    fn progress(&self, stream_id: u64, which: Option<i64>, watch_id: i64) -> bool {
        let state = self.state.lock();
        let Some(stream) = state.streams.get(&stream_id) else {
            return false;
        };
        let mut watched = match which {
            Some(id) => vec![id],
            None => stream.watch_ids.iter().copied().collect(),
        };
        watched.retain(|id| state.watchers.contains_key(&(stream_id, *id)));
        if watched.is_empty() {
            // Nothing to report on: etcd sends nothing either.
            return true;
        }
        let all_synced = watched
            .iter()
            .all(|id| state.synced.contains(&(stream_id, *id)));
        if all_synced {
            stream
                .queue
                .push_control(state.revision, WatchMessage::Progress { watch_id });
        }
        all_synced
    }

    fn close_stream(&self, stream_id: u64) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let Some(stream) = state.streams.remove(&stream_id) else {
            return;
        };
        for watch_id in stream.watch_ids {
            remove_watcher(state, (stream_id, watch_id));
        }
    }

    /// Watchers by state: (synced, unsynced, parked).
    pub fn watcher_counts(&self) -> (usize, usize, usize) {
        let state = self.state.lock();
        (
            state.synced.len(),
            state.unsynced.len(),
            state.victims.len(),
        )
    }
}

/// Queues what victim `key` holds on `queue`; then it is synced, or unsynced if it missed
/// revisions meanwhile. False (the victim keeps what did not fit) when the queue is full.
fn retry_victim(state: &mut HubState, key: WatcherKey, queue: &StreamQueue) -> bool {
    let Some(watcher) = state.watchers.get_mut(&key) else {
        state.victims.remove(&key);
        return true;
    };
    let State::Victim(pending) = std::mem::replace(&mut watcher.state, State::Synced) else {
        state.victims.remove(&key);
        return true;
    };
    let mut pending = pending.into_iter();
    let mut left = Vec::new();
    for item in pending.by_ref() {
        if let Err(item) = queue.try_push_events(state.revision, item) {
            left.push(item);
            break;
        }
    }
    left.extend(pending);
    if !left.is_empty() {
        watcher.state = State::Victim(left);
        return false;
    }
    state.victims.remove(&key);
    if watcher.next_revision <= state.revision {
        watcher.state = State::Unsynced;
        state.unsynced.insert(key, &watcher.range);
    } else {
        watcher.state = State::Synced;
        state.synced.insert(key, &watcher.range);
    }
    true
}

/// Removes a watcher from every group and its stream's ids; false if it did not exist.
fn remove_watcher(state: &mut HubState, key: WatcherKey) -> bool {
    let Some(watcher) = state.watchers.remove(&key) else {
        return false;
    };
    state.synced.remove(key, &watcher.range);
    state.unsynced.remove(key, &watcher.range);
    state.victims.remove(&key);
    if let Some(stream) = state.streams.get_mut(&key.0) {
        stream.watch_ids.remove(&key.1);
    }
    true
}

/// One client stream of watches. Dropping it removes all its watchers.
pub struct WatchStream {
    hub: Arc<WatchHub>,
    id: u64,
    queue: Arc<StreamQueue>,
}

impl WatchStream {
    /// Creates a watch; a `Created` (or `Refused`) message is queued before any of its events.
    /// Returns the watch id, or `None` when refused.
    pub fn watch(&self, request: WatchCreate) -> Option<i64> {
        self.hub.create(self.id, request)
    }

    /// Cancels a watch, queueing `Canceled`; false (and nothing queued) if it does not exist.
    pub fn cancel(&self, watch_id: i64) -> bool {
        self.hub.cancel(self.id, watch_id)
    }

    /// etcd's progress request: if every watcher of the stream is synced, queues
    /// `Progress { watch_id: -1 }` and returns true; otherwise returns false and queues nothing.
    pub fn request_progress_all(&self) -> bool {
        self.hub.progress(self.id, None, -1)
    }

    /// A periodic progress notification for one watcher: queued only if it is synced.
    pub fn request_progress(&self, watch_id: i64) -> bool {
        self.hub.progress(self.id, Some(watch_id), watch_id)
    }

    /// The next message for this stream, waiting for one.
    pub async fn next(&self) -> Delivery {
        self.queue.pop().await
    }

    /// The next message if one is waiting.
    pub fn try_next(&self) -> Option<Delivery> {
        self.queue.try_pop()
    }

    /// The next message, its events still shared with the other watchers, waiting for one.
    pub async fn next_shared(&self) -> SharedDelivery {
        self.queue.pop_shared().await
    }

    /// The next message, its events still shared, if one is waiting.
    pub fn try_next_shared(&self) -> Option<SharedDelivery> {
        self.queue.try_pop_shared()
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.hub.close_stream(self.id);
    }
}
