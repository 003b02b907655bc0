//! The hub's guarantees, driven directly: a store on the memory engine, entries applied and
//! published in order, and watch streams read without a network.

use std::sync::Arc;

use parking_lot::RwLock;

use super::hub::{HubConfig, WatchCreate, WatchHub, WatchStream, DUPLICATE_WATCH_ID};
use super::queue::{Delivery, WatchMessage};
use crate::engine::memory::MemoryEngine;
use crate::mvcc::MvccStore;
use crate::pb::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest};
use crate::pb::k3rspb::raft_command::Request;
use crate::pb::mvccpb::{event::EventType, Event};

struct Fixture {
    store: Arc<RwLock<MvccStore>>,
    hub: Arc<WatchHub>,
    next_index: u64,
}

impl Fixture {
    fn new(config: HubConfig) -> Self {
        let engine = Arc::new(MemoryEngine::new());
        let store = Arc::new(RwLock::new(MvccStore::open(engine).expect("open")));
        let hub = WatchHub::new(Arc::clone(&store), config);
        Self {
            store,
            hub,
            next_index: 1,
        }
    }

    /// Applies `request` and publishes its events, as the driver does; returns the revision.
    fn apply(&mut self, request: Request) -> i64 {
        let index = self.next_index;
        self.next_index += 1;
        let outcome = self
            .store
            .write()
            .apply(index, Some(&request))
            .expect("no storage failure")
            .expect("request succeeds");
        self.hub.notify(outcome.revision, outcome.events);
        outcome.revision
    }

    fn put(&mut self, key: &str, value: &str) -> i64 {
        self.apply(Request::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }))
    }

    fn delete(&mut self, key: &str) -> i64 {
        self.apply(Request::DeleteRange(DeleteRangeRequest {
            key: key.into(),
            ..Default::default()
        }))
    }

    /// Runs the sync task's work until nothing is left to do now.
    fn sync(&self) {
        self.hub.retry_victims();
        for _ in 0..1000 {
            if !self.hub.sync_unsynced().expect("history readable") {
                return;
            }
        }
        panic!("catching up did not finish in 1000 rounds");
    }
}

fn watch_prefix(prefix: &str, start_revision: i64) -> WatchCreate {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    WatchCreate {
        key: prefix.into(),
        range_end: end,
        start_revision,
        ..Default::default()
    }
}

fn drain(stream: &WatchStream) -> Vec<Delivery> {
    std::iter::from_fn(|| stream.try_next()).collect()
}

/// (revision, key, type) of every event delivered to `watch_id`, in order.
fn events_of(deliveries: &[Delivery], watch_id: i64) -> Vec<(i64, String, EventType)> {
    deliveries
        .iter()
        .filter_map(|delivery| match &delivery.message {
            WatchMessage::Events {
                watch_id: id,
                events,
            } if *id == watch_id => Some(events),
            _ => None,
        })
        .flatten()
        .map(|event: &Event| {
            let kv = event.kv.as_ref().expect("kv");
            let kind = EventType::try_from(event.r#type).expect("event type");
            (
                kv.mod_revision,
                String::from_utf8_lossy(&kv.key).into_owned(),
                kind,
            )
        })
        .collect()
}

#[test]
fn watch_ids_count_from_zero_on_each_stream() {
    let fixture = Fixture::new(HubConfig::default());
    let first = fixture.hub.open_stream();
    let second = fixture.hub.open_stream();
    assert_eq!(first.watch(watch_prefix("a", 0)), Some(0));
    assert_eq!(first.watch(watch_prefix("b", 0)), Some(1));
    assert_eq!(second.watch(watch_prefix("a", 0)), Some(0));
    let created: Vec<_> = drain(&first).into_iter().map(|d| d.message).collect();
    assert_eq!(
        created,
        vec![
            WatchMessage::Created { watch_id: 0 },
            WatchMessage::Created { watch_id: 1 }
        ]
    );
}

#[test]
fn a_duplicate_client_chosen_id_is_refused_with_etcds_reason() {
    let fixture = Fixture::new(HubConfig::default());
    let stream = fixture.hub.open_stream();
    let chosen = WatchCreate {
        watch_id: 7,
        ..watch_prefix("a", 0)
    };
    assert_eq!(stream.watch(chosen.clone()), Some(7));
    assert_eq!(stream.watch(chosen), None);
    let messages: Vec<_> = drain(&stream).into_iter().map(|d| d.message).collect();
    assert_eq!(
        messages[1],
        WatchMessage::Refused {
            reason: DUPLICATE_WATCH_ID.to_string()
        }
    );
    // The automatic ids skip the chosen one when they reach it.
    for expected in 0..7 {
        assert_eq!(stream.watch(watch_prefix("x", 0)), Some(expected));
    }
    assert_eq!(stream.watch(watch_prefix("x", 0)), Some(8));
}

#[test]
fn live_events_arrive_in_order_once_with_a_revisions_events_together() {
    let mut fixture = Fixture::new(HubConfig::default());
    let stream = fixture.hub.open_stream();
    let id = stream.watch(watch_prefix("k/", 0)).expect("created");
    let mut expected = Vec::new();
    for round in 0..20 {
        let key = format!("k/{}", round % 3);
        let revision = fixture.put(&key, "v");
        expected.push((revision, key));
    }
    fixture.put("other", "v");
    let revision = fixture.apply(Request::DeleteRange(DeleteRangeRequest {
        key: b"k/".to_vec(),
        range_end: b"k0".to_vec(),
        ..Default::default()
    }));
    let deliveries = drain(&stream);
    let got = events_of(&deliveries, id);
    let puts: Vec<_> = got
        .iter()
        .filter(|(_, _, kind)| *kind == EventType::Put)
        .map(|(rev, key, _)| (*rev, key.clone()))
        .collect();
    assert_eq!(puts, expected);
    let deletes: Vec<_> = got
        .iter()
        .filter(|(_, _, kind)| *kind == EventType::Delete)
        .collect();
    assert_eq!(deletes.len(), 3);
    assert!(deletes.iter().all(|(rev, _, _)| *rev == revision));
    // The delete's three events came in one message.
    let last = deliveries.last().expect("delivered");
    assert!(matches!(&last.message, WatchMessage::Events { events, .. } if events.len() == 3));
}

#[test]
fn history_then_live_has_no_gap_and_no_duplicate() {
    let mut fixture = Fixture::new(HubConfig {
        sync_batch_events: 7,
        ..HubConfig::default()
    });
    let mut written = Vec::new();
    for n in 0..50 {
        written.push(fixture.put(&format!("h/{n}"), "v"));
    }
    let stream = fixture.hub.open_stream();
    let id = stream.watch(watch_prefix("h/", 1)).expect("created");
    // Writes land while the watcher is still catching up.
    written.push(fixture.put("h/late-1", "v"));
    fixture.hub.sync_unsynced().expect("one round");
    written.push(fixture.put("h/late-2", "v"));
    fixture.sync();
    written.push(fixture.put("h/late-3", "v"));
    let got: Vec<i64> = events_of(&drain(&stream), id)
        .into_iter()
        .map(|(rev, _, _)| rev)
        .collect();
    assert_eq!(got, written);
}

#[test]
fn a_future_start_revision_delivers_nothing_before_it() {
    let mut fixture = Fixture::new(HubConfig::default());
    let current = fixture.store.read().current_revision();
    let stream = fixture.hub.open_stream();
    let id = stream
        .watch(watch_prefix("f/", current + 3))
        .expect("created");
    fixture.put("f/1", "v");
    fixture.put("f/2", "v");
    let third = fixture.put("f/3", "v");
    let got = events_of(&drain(&stream), id);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, third);
}

#[test]
fn prev_kv_and_filters_apply_per_watcher() {
    let mut fixture = Fixture::new(HubConfig::default());
    let stream = fixture.hub.open_stream();
    let with_prev = stream
        .watch(WatchCreate {
            prev_kv: true,
            ..watch_prefix("p", 0)
        })
        .expect("created");
    let no_put = stream
        .watch(WatchCreate {
            no_put: true,
            ..watch_prefix("p", 0)
        })
        .expect("created");
    fixture.put("p", "one");
    fixture.put("p", "two");
    fixture.delete("p");
    let deliveries = drain(&stream);
    let events: Vec<&Event> = deliveries
        .iter()
        .filter_map(|d| match &d.message {
            WatchMessage::Events { watch_id, events } if *watch_id == with_prev => Some(events),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(events.len(), 3);
    assert!(events[0].prev_kv.is_none(), "a create has no prev_kv");
    assert_eq!(events[1].prev_kv.as_ref().expect("prev").value, b"one");
    assert_eq!(events[2].prev_kv.as_ref().expect("prev").value, b"two");
    let filtered = events_of(&deliveries, no_put);
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].2, EventType::Delete);
    for delivery in &deliveries {
        if let WatchMessage::Events { watch_id, events } = &delivery.message {
            if *watch_id == no_put {
                assert!(events.iter().all(|e| e.prev_kv.is_none()));
            }
        }
    }
}

#[test]
fn a_slow_stream_parks_its_watcher_and_catches_it_up_without_loss() {
    let mut fixture = Fixture::new(HubConfig {
        queue_capacity: 2,
        sync_batch_events: 5,
        ..HubConfig::default()
    });
    let stream = fixture.hub.open_stream();
    let id = stream.watch(watch_prefix("s/", 0)).expect("created");
    let mut written = Vec::new();
    for n in 0..40 {
        written.push(fixture.put(&format!("s/{n}"), "v"));
    }
    let (_, _, parked) = fixture.hub.watcher_counts();
    assert_eq!(
        parked, 1,
        "the watcher is parked, not buffered without bound"
    );
    let mut got = Vec::new();
    for _ in 0..200 {
        got.extend(events_of(&drain(&stream), id));
        fixture.sync();
        if got.len() == written.len() {
            break;
        }
    }
    let revisions: Vec<i64> = got.into_iter().map(|(rev, _, _)| rev).collect();
    assert_eq!(revisions, written);
    assert_eq!(fixture.hub.watcher_counts(), (1, 0, 0));
}

#[test]
fn a_watch_below_the_compacted_revision_is_canceled_and_at_it_is_allowed() {
    let mut fixture = Fixture::new(HubConfig::default());
    for n in 0..5 {
        fixture.put(&format!("c/{n}"), "v");
    }
    let compacted = fixture.store.read().current_revision() - 1;
    fixture.apply(Request::Compaction(CompactionRequest {
        revision: compacted,
        physical: true,
    }));
    let stream = fixture.hub.open_stream();
    let below = stream
        .watch(watch_prefix("c/", compacted - 1))
        .expect("created");
    let at = stream
        .watch(watch_prefix("c/", compacted))
        .expect("created");
    fixture.sync();
    let deliveries = drain(&stream);
    assert!(deliveries.iter().any(|d| d.message
        == WatchMessage::Compacted {
            watch_id: below,
            compact_revision: compacted
        }));
    let replayed = events_of(&deliveries, at);
    assert_eq!(
        replayed.iter().map(|(rev, _, _)| *rev).collect::<Vec<_>>(),
        vec![compacted, compacted + 1]
    );
}

#[test]
fn progress_is_sent_only_when_every_watcher_is_synced_and_never_runs_ahead() {
    let mut fixture = Fixture::new(HubConfig::default());
    for n in 0..10 {
        fixture.put(&format!("g/{n}"), "v");
    }
    let stream = fixture.hub.open_stream();
    assert!(
        stream.request_progress_all(),
        "no watchers: nothing to wait for"
    );
    let id = stream.watch(watch_prefix("g/", 2)).expect("created");
    assert!(
        !stream.request_progress_all(),
        "an unsynced watcher defers it"
    );
    fixture.sync();
    let last = fixture.put("g/last", "v");
    assert!(stream.request_progress_all());
    let deliveries = drain(&stream);
    let progress = deliveries
        .iter()
        .position(|d| d.message == WatchMessage::Progress { watch_id: -1 })
        .expect("progress sent");
    assert_eq!(deliveries[progress].revision, last);
    let before: Vec<i64> = events_of(&deliveries[..progress], id)
        .into_iter()
        .map(|(rev, _, _)| rev)
        .collect();
    assert_eq!(
        before.last(),
        Some(&last),
        "every event up to it came first"
    );
    let revisions: Vec<i64> = deliveries.iter().map(|d| d.revision).collect();
    assert!(revisions.windows(2).all(|pair| pair[0] <= pair[1]));
}

#[test]
fn a_canceled_watch_gets_no_more_events_and_a_closed_stream_leaves_nothing() {
    let mut fixture = Fixture::new(HubConfig::default());
    let stream = fixture.hub.open_stream();
    let id = stream.watch(watch_prefix("x/", 0)).expect("created");
    fixture.put("x/1", "v");
    assert!(stream.cancel(id));
    assert!(!stream.cancel(id), "a second cancel finds nothing");
    fixture.put("x/2", "v");
    let deliveries = drain(&stream);
    assert_eq!(events_of(&deliveries, id).len(), 1);
    assert_eq!(
        deliveries.last().map(|d| d.message.clone()),
        Some(WatchMessage::Canceled { watch_id: id })
    );
    let other = fixture.hub.open_stream();
    other.watch(watch_prefix("x/", 0)).expect("created");
    drop(other);
    assert_eq!(fixture.hub.watcher_counts(), (0, 0, 0));
}

#[test]
fn an_empty_range_is_refused() {
    let fixture = Fixture::new(HubConfig::default());
    let stream = fixture.hub.open_stream();
    let refused = stream.watch(WatchCreate {
        key: b"b".to_vec(),
        range_end: b"a".to_vec(),
        ..Default::default()
    });
    assert_eq!(refused, None);
    assert_eq!(
        drain(&stream)[0].message,
        WatchMessage::Refused {
            reason: "mvcc: watcher range is empty".into()
        }
    );
}

#[test]
fn many_watchers_behind_on_one_small_stream_all_catch_up_in_order_once() {
    let mut fixture = Fixture::new(HubConfig {
        queue_capacity: 4,
        sync_batch_events: 5,
        ..HubConfig::default()
    });
    let mut written = Vec::new();
    for n in 0..30 {
        written.push(fixture.put(&format!("m/{n}"), "v"));
    }
    let stream = fixture.hub.open_stream();
    let ids: Vec<i64> = (0..10)
        .map(|_| stream.watch(watch_prefix("m/", 1)).expect("created"))
        .collect();
    let mut got: Vec<Vec<i64>> = vec![Vec::new(); ids.len()];
    for round in 0..500 {
        // Live writes go on while the watchers catch up from history.
        if round < 10 {
            written.push(fixture.put(&format!("m/live-{round}"), "v"));
        }
        fixture.sync();
        let delivered = drain(&stream);
        for (index, id) in ids.iter().enumerate() {
            got[index].extend(
                events_of(&delivered, *id)
                    .into_iter()
                    .map(|(rev, _, _)| rev),
            );
        }
        if round >= 10 && got.iter().all(|revisions| revisions.len() >= written.len()) {
            break;
        }
    }
    for revisions in &got {
        assert_eq!(revisions, &written);
    }
    assert_eq!(fixture.hub.watcher_counts(), (ids.len(), 0, 0));
}
