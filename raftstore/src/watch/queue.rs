//! `StreamQueue`: what the hub has for one watch stream, waiting to be sent.
//!
//! Guarantees:
//! - messages come out in the order they went in, each stamped with the hub's revision at the
//!   moment it went in — so header revisions on a stream never go backwards;
//! - at most `capacity` event messages wait at once: [`StreamQueue::try_push_events`] refuses
//!   more, and the hub then parks the watcher (a victim) instead of growing memory; once the
//!   queue has drained to half, the hub is woken to refill it (many messages per wake-up, not
//!   one); control
//!   messages (created, canceled, progress) are always accepted, and there is at most one per
//!   client request;
//! - events are shared between watchers until the stream's own task copies them out in
//!   [`StreamQueue::pop`], so publishing a revision to many watchers costs no copies on the apply
//!   path; [`StreamQueue::pop_shared`] hands them out still shared, for a reader that encodes
//!   them straight from the batch (the gRPC layer) and so never copies them at all.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::pb::mvccpb::{event::EventType, Event};

/// One response's worth of news for a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMessage {
    /// The watch was created.
    Created { watch_id: i64 },
    /// The create request was refused (etcd answers `created` and `canceled` with watch id −1
    /// and the reason).
    Refused { reason: String },
    /// Events of one or more whole revisions, in order.
    Events { watch_id: i64, events: Vec<Event> },
    /// The watcher needs history that compaction removed; it is gone.
    Compacted {
        watch_id: i64,
        compact_revision: i64,
    },
    /// The watch was canceled by request.
    Canceled { watch_id: i64 },
    /// Every event up to the stamped revision was delivered (watch id −1: for the whole stream).
    Progress { watch_id: i64 },
}

/// A message with the hub revision it was stamped with.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub revision: i64,
    pub message: WatchMessage,
}

/// The event types a watcher asked not to get (etcd's `NOPUT` / `NODELETE` filters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Filters {
    pub no_put: bool,
    pub no_delete: bool,
}

impl Filters {
    pub fn wants(self, event: &Event) -> bool {
        let is_put = event.r#type == EventType::Put as i32;
        !(is_put && self.no_put || !is_put && self.no_delete)
    }
}

/// Events of a shared batch chosen for one watcher: the selection (shared by every watcher of
/// the same key or range) from `from` on, less what its filters drop.
#[derive(Debug, Clone)]
pub(super) struct EventSlice {
    pub batch: Arc<Vec<Event>>,
    pub selected: Arc<[u32]>,
    pub from: usize,
    pub filters: Filters,
    pub with_prev_kv: bool,
}

impl EventSlice {
    /// The slice, unless it would carry no event.
    pub fn non_empty(self) -> Option<Self> {
        let any = self.events().any(|event| self.filters.wants(event));
        any.then_some(self)
    }

    fn events(&self) -> impl Iterator<Item = &Event> + '_ {
        self.selected
            .get(self.from..)
            .unwrap_or_default()
            .iter()
            .filter_map(|&index| self.batch.get(index as usize))
    }

    fn materialize(&self) -> Vec<Event> {
        self.events()
            .filter(|event| self.filters.wants(event))
            .map(|event| {
                if self.with_prev_kv {
                    event.clone()
                } else {
                    Event {
                        r#type: event.r#type,
                        kv: event.kv.clone(),
                        prev_kv: None,
                    }
                }
            })
            .collect()
    }
}

/// The events of one message, still shared with every watcher they concern: read them with
/// [`SharedEvents::iter`], leaving out each event's `prev_kv` unless
/// [`SharedEvents::with_prev_kv`].
#[derive(Debug, Clone)]
pub struct SharedEvents(EventSlice);

impl SharedEvents {
    /// All of `events`, as a watcher with (or without) `prev_kv` gets them.
    pub fn new(events: Vec<Event>, with_prev_kv: bool) -> Self {
        let selected: Vec<u32> = (0..events.len() as u32).collect();
        SharedEvents(EventSlice {
            batch: Arc::new(events),
            selected: Arc::from(selected),
            from: 0,
            filters: Filters::default(),
            with_prev_kv,
        })
    }

    /// The events, in order (filters applied; `prev_kv` as stored).
    pub fn iter(&self) -> impl Iterator<Item = &Event> + '_ {
        let filters = self.0.filters;
        self.0.events().filter(move |event| filters.wants(event))
    }

    /// Whether the watcher asked for each event's previous key-value.
    pub fn with_prev_kv(&self) -> bool {
        self.0.with_prev_kv
    }

    /// Copies of the events, as the watcher gets them.
    pub fn to_vec(&self) -> Vec<Event> {
        self.0.materialize()
    }
}

/// A message whose events (if any) are still shared.
#[derive(Debug, Clone)]
pub enum SharedMessage {
    Events { watch_id: i64, events: SharedEvents },
    Other(WatchMessage),
}

/// A [`SharedMessage`] with the hub revision it was stamped with.
#[derive(Debug, Clone)]
pub struct SharedDelivery {
    pub revision: i64,
    pub message: SharedMessage,
}

impl SharedDelivery {
    /// The delivery with its events copied out.
    pub fn materialize(self) -> Delivery {
        let message = match self.message {
            SharedMessage::Events { watch_id, events } => WatchMessage::Events {
                watch_id,
                events: events.to_vec(),
            },
            SharedMessage::Other(message) => message,
        };
        Delivery {
            revision: self.revision,
            message,
        }
    }
}

/// A message as queued: events still shared.
#[derive(Debug, Clone)]
pub(super) enum Queued {
    Control(WatchMessage),
    Events { watch_id: i64, slice: EventSlice },
}

#[derive(Default)]
struct Inner {
    items: VecDeque<(i64, Queued)>,
    event_items: usize,
    /// A message was refused, or the hub skipped the stream while catching up: wake it once
    /// the queue has drained to half.
    room_wanted: bool,
}

pub(super) struct StreamQueue {
    inner: Mutex<Inner>,
    capacity: usize,
    ready: Notify,
    /// Woken when a queue that refused a message (or that the hub skipped while catching up)
    /// has drained to half its capacity, so the hub refills it with many messages per wake-up,
    /// not one.
    room: Arc<Notify>,
}

impl StreamQueue {
    pub fn new(capacity: usize, room: Arc<Notify>) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            room,
        }
    }

    /// Queues an event message unless `capacity` are already waiting; gives it back if so.
    pub fn try_push_events(&self, revision: i64, item: Queued) -> Result<(), Queued> {
        let mut inner = self.inner.lock();
        if inner.event_items >= self.capacity {
            inner.room_wanted = true;
            return Err(item);
        }
        inner.event_items += 1;
        inner.items.push_back((revision, item));
        drop(inner);
        self.ready.notify_one();
        Ok(())
    }

    /// How many more event messages would be accepted now.
    pub fn free_slots(&self) -> usize {
        self.capacity.saturating_sub(self.inner.lock().event_items)
    }

    /// Asks for the hub to be woken once the queue has drained to half its capacity (at once
    /// if it already has).
    pub fn want_room(&self) {
        let mut inner = self.inner.lock();
        if inner.event_items <= self.capacity / 2 {
            drop(inner);
            self.room.notify_one();
        } else {
            inner.room_wanted = true;
        }
    }

    /// Queues a control message; always accepted.
    pub fn push_control(&self, revision: i64, message: WatchMessage) {
        self.inner
            .lock()
            .items
            .push_back((revision, Queued::Control(message)));
        self.ready.notify_one();
    }

    /// The next message, waiting for one. Only the stream's own task may call this.
    pub async fn pop(&self) -> Delivery {
        self.pop_shared().await.materialize()
    }

    /// The next message if one is waiting.
    pub fn try_pop(&self) -> Option<Delivery> {
        self.try_pop_shared().map(SharedDelivery::materialize)
    }

    /// The next message, its events still shared, waiting for one. Only the stream's own task
    /// may call this.
    pub async fn pop_shared(&self) -> SharedDelivery {
        loop {
            if let Some(delivery) = self.try_pop_shared() {
                return delivery;
            }
            self.ready.notified().await;
        }
    }

    /// The next message, its events still shared, if one is waiting.
    pub fn try_pop_shared(&self) -> Option<SharedDelivery> {
        let mut inner = self.inner.lock();
        let (revision, item) = inner.items.pop_front()?;
        let message = match item {
            Queued::Control(message) => SharedMessage::Other(message),
            Queued::Events { watch_id, slice } => {
                inner.event_items -= 1;
                let wake = inner.room_wanted && inner.event_items <= self.capacity / 2;
                if wake {
                    inner.room_wanted = false;
                }
                drop(inner);
                if wake {
                    self.room.notify_one();
                }
                SharedMessage::Events {
                    watch_id,
                    events: SharedEvents(slice),
                }
            }
        };
        Some(SharedDelivery { revision, message })
    }

    /// Event messages waiting.
    #[cfg(test)]
    pub fn event_backlog(&self) -> usize {
        self.inner.lock().event_items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::mvccpb::KeyValue;

    fn event(key: &str, with_prev: bool) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            }),
            prev_kv: with_prev.then(KeyValue::default),
        }
    }

    fn events_item(watch_id: i64, batch: &Arc<Vec<Event>>, selected: Vec<u32>) -> Queued {
        Queued::Events {
            watch_id,
            slice: EventSlice {
                batch: Arc::clone(batch),
                selected: Arc::from(selected),
                from: 0,
                filters: Filters::default(),
                with_prev_kv: false,
            },
        }
    }

    #[test]
    fn event_messages_are_bounded_but_control_messages_are_not() {
        let room = Arc::new(Notify::new());
        let queue = StreamQueue::new(2, room);
        let batch = Arc::new(vec![event("a", true)]);
        assert!(queue
            .try_push_events(2, events_item(0, &batch, vec![0]))
            .is_ok());
        assert!(queue
            .try_push_events(3, events_item(0, &batch, vec![0]))
            .is_ok());
        assert!(queue
            .try_push_events(4, events_item(0, &batch, vec![0]))
            .is_err());
        queue.push_control(4, WatchMessage::Canceled { watch_id: 0 });
        assert_eq!(queue.event_backlog(), 2);
        let first = queue.try_pop().expect("first");
        assert_eq!(first.revision, 2);
        assert!(queue
            .try_push_events(5, events_item(0, &batch, vec![0]))
            .is_ok());
    }

    #[test]
    fn popped_events_are_the_selected_ones_in_order_without_unwanted_prev_kv() {
        let queue = StreamQueue::new(8, Arc::new(Notify::new()));
        let batch = Arc::new(vec![event("a", true), event("b", true), event("c", true)]);
        queue
            .try_push_events(7, events_item(3, &batch, vec![0, 2]))
            .expect("room");
        let delivery = queue.try_pop().expect("queued");
        assert_eq!(delivery.revision, 7);
        let WatchMessage::Events { watch_id, events } = delivery.message else {
            panic!("expected events, got {:?}", delivery.message);
        };
        assert_eq!(watch_id, 3);
        let keys: Vec<_> = events
            .iter()
            .map(|e| e.kv.as_ref().expect("kv").key.clone())
            .collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec()]);
        assert!(events.iter().all(|e| e.prev_kv.is_none()));
    }

    #[tokio::test]
    async fn a_queue_that_refused_wakes_the_hub_once_drained_to_half() {
        let room = Arc::new(Notify::new());
        let queue = StreamQueue::new(4, Arc::clone(&room));
        let batch = Arc::new(vec![event("a", false)]);
        for revision in 2..6 {
            queue
                .try_push_events(revision, events_item(0, &batch, vec![0]))
                .expect("room");
        }
        assert!(queue
            .try_push_events(6, events_item(0, &batch, vec![0]))
            .is_err());
        assert_eq!(queue.free_slots(), 0);
        let _ = queue.pop().await;
        assert_eq!(queue.free_slots(), 1);
        let woken = room.notified();
        let _ = queue.pop().await;
        tokio::time::timeout(std::time::Duration::from_secs(1), woken)
            .await
            .expect("the hub is woken when room appears");
    }
}
