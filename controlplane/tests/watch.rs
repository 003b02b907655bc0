//! The Watch API of the real `k3rs` binary, driven with the `etcd-client` crate (and, where the
//! crate hides a field, with the raw generated client): watch ids, the ordered / unique /
//! reliable / atomic / resumable / bookmarkable guarantees, history replay, future and compacted
//! start revisions, `prev_kv`, filters, progress requests and notifications, cancellation,
//! duplicate ids, slow consumers, fragmentation, and range / from-key watches — each checked
//! against etcd's documented (and observed) behaviour.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::TestServer;
use etcd_api::pb::etcdserverpb::watch_client::WatchClient as RawWatchClient;
use etcd_api::pb::etcdserverpb::watch_request::RequestUnion;
use etcd_api::pb::etcdserverpb::{
    WatchCreateRequest, WatchRequest, WatchResponse as RawWatchResponse,
};
use etcd_client::{
    Client, DeleteOptions, Event, EventType, Txn, TxnOp, WatchFilterType, WatchOptions,
    WatchResponse, WatchStream, Watcher,
};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_stream::wrappers::ReceiverStream;

/// Bound on waiting for any single watch response that must come.
const RESPONSE_BOUND: Duration = Duration::from_secs(10);
/// How long a stream must stay quiet to show that nothing (more) is sent.
const QUIET: Duration = Duration::from_millis(700);

/// One event as the tests compare them: what happened, to which key, at which revision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    revision: i64,
    key: String,
    deleted: bool,
}

impl Seen {
    fn put(key: &str, revision: i64) -> Self {
        Seen {
            revision,
            key: key.to_string(),
            deleted: false,
        }
    }

    fn delete(key: &str, revision: i64) -> Self {
        Seen {
            revision,
            key: key.to_string(),
            deleted: true,
        }
    }
}

fn seen(event: &Event) -> Seen {
    let kv = event.kv().expect("an event carries its key-value");
    Seen {
        revision: kv.mod_revision(),
        key: kv.key_str().expect("utf-8 key").to_string(),
        deleted: event.event_type() == EventType::Delete,
    }
}

/// Puts `key = value` and returns the revision of the put.
async fn put(client: &mut Client, key: &str, value: &str) -> i64 {
    let response = client.put(key, value, None).await.expect("put");
    response.header().expect("put header").revision()
}

/// Deletes the existing `key` and returns the revision of the delete.
async fn delete(client: &mut Client, key: &str) -> i64 {
    let response = client.delete(key, None).await.expect("delete");
    assert_eq!(response.deleted(), 1, "{key} existed");
    response.header().expect("delete header").revision()
}

/// The current revision, from a read of a key nobody writes.
async fn current_revision(client: &mut Client) -> i64 {
    let response = client.get("zz-revision-probe", None).await.expect("get");
    response.header().expect("range header").revision()
}

/// Opens a watch stream with one watch (the crate waits for its `created` response).
async fn open_watch(
    client: &mut Client,
    key: &str,
    options: Option<WatchOptions>,
) -> (Watcher, WatchStream) {
    timeout(RESPONSE_BOUND, client.watch(key, options))
        .await
        .expect("the watch is created within the bound")
        .expect("creating a watch")
}

/// The next response on `stream`, which must come within [`RESPONSE_BOUND`].
async fn next_response(stream: &mut WatchStream) -> WatchResponse {
    timeout(RESPONSE_BOUND, stream.message())
        .await
        .expect("a watch response within the bound")
        .expect("the watch stream did not fail")
        .expect("the watch stream is still open")
}

/// Asserts that nothing arrives on `stream` for [`QUIET`].
async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(message) = timeout(QUIET, stream.message()).await {
        panic!("expected no more watch responses, got {message:?}");
    }
}

/// Adds a watch to an open stream and returns its id, from its `created` response.
async fn add_watch(
    watcher: &mut Watcher,
    stream: &mut WatchStream,
    key: &str,
    options: Option<WatchOptions>,
) -> i64 {
    watcher.watch(key, options).await.expect("sending a create");
    let response = next_response(stream).await;
    assert!(
        response.created(),
        "expected a created response: {response:?}"
    );
    assert!(!response.canceled(), "the watch was refused: {response:?}");
    response.watch_id()
}

/// Reads event responses until exactly `count` events arrived; every response must be a plain
/// event response (not created, canceled or empty).
async fn read_events(stream: &mut WatchStream, count: usize) -> Vec<Seen> {
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        let response = next_response(stream).await;
        assert!(
            !response.created() && !response.canceled() && !response.events().is_empty(),
            "expected events, got {response:?}"
        );
        events.extend(response.events().iter().map(seen));
    }
    assert_eq!(
        events.len(),
        count,
        "more events than expected; the last: {:?}",
        events.last()
    );
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ids_start_at_zero_per_stream_and_count_up() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let (mut watcher, mut stream) = open_watch(&mut client, "a", None).await;
    assert_eq!(watcher.watch_id(), 0, "the first watch on a stream is 0");
    let second = add_watch(&mut watcher, &mut stream, "b", None).await;
    let third = add_watch(&mut watcher, &mut stream, "c", None).await;
    assert_eq!((second, third), (1, 2));

    let (other_watcher, _other_stream) = open_watch(&mut client, "d", None).await;
    assert_eq!(
        other_watcher.watch_id(),
        0,
        "a second stream starts at 0 again"
    );

    let revision = put(&mut client, "b", "v").await;
    let response = next_response(&mut stream).await;
    assert_eq!(response.watch_id(), 1, "events carry the id of their watch");
    assert_eq!(
        response.events().iter().map(seen).collect::<Vec<_>>(),
        [Seen::put("b", revision)]
    );
}

/// Writer `writer`'s 50 operations on its own five keys: puts, every tenth a delete of the key
/// put five operations earlier. Returns every write's event.
async fn write_as_writer(mut client: Client, writer: usize) -> Vec<Seen> {
    let mut written = Vec::new();
    for step in 0..50 {
        let key = format!("o/{writer}/{}", step % 5);
        if step % 10 == 9 {
            written.push(Seen::delete(&key, delete(&mut client, &key).await));
        } else {
            written.push(Seen::put(&key, put(&mut client, &key, "v").await));
        }
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_increasing_revision_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_watcher, mut stream) =
        open_watch(&mut client, "o/", Some(WatchOptions::new().with_prefix())).await;

    let mut writers = Vec::new();
    for writer in 0..4 {
        let writer_client = server.client().await;
        writers.push(tokio::spawn(write_as_writer(writer_client, writer)));
    }
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.expect("writer task"));
    }
    written.sort();

    let events = read_events(&mut stream, written.len()).await;
    for pair in events.windows(2) {
        assert!(
            pair[0].revision < pair[1].revision,
            "events out of order: {pair:?}"
        );
    }
    assert_eq!(events, written, "every write, in revision order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_watch_sees_every_write_exactly_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let start = current_revision(&mut client).await + 1;
    let (_watcher, mut stream) = open_watch(
        &mut client,
        "u/",
        Some(WatchOptions::new().with_prefix().with_start_revision(start)),
    )
    .await;

    let mut expected = Vec::new();
    for step in 0..60 {
        let key = format!("u/{}", step % 4);
        expected.push(Seen::put(&key, put(&mut client, &key, "v").await));
        put(&mut client, &format!("outside/{step}"), "v").await;
        if step % 6 == 5 {
            expected.push(Seen::delete(&key, delete(&mut client, &key).await));
        }
    }

    assert_eq!(read_events(&mut stream, expected.len()).await, expected);
    assert_quiet(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_events_arrive_together_in_one_response() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_watcher, mut stream) =
        open_watch(&mut client, "t/", Some(WatchOptions::new().with_prefix())).await;

    let txn = Txn::new().and_then([
        TxnOp::put("t/1", "a", None),
        TxnOp::put("t/2", "b", None),
        TxnOp::put("t/3", "c", None),
    ]);
    let revision = client
        .txn(txn)
        .await
        .expect("txn")
        .header()
        .expect("txn header")
        .revision();

    let response = next_response(&mut stream).await;
    let events: Vec<Seen> = response.events().iter().map(seen).collect();
    assert_eq!(
        events,
        [
            Seen::put("t/1", revision),
            Seen::put("t/2", revision),
            Seen::put("t/3", revision)
        ],
        "one response holds the whole revision"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_delete_events_arrive_together_in_one_response() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for index in 0..5 {
        put(&mut client, &format!("d/{index}"), "v").await;
    }
    let (_watcher, mut stream) =
        open_watch(&mut client, "d/", Some(WatchOptions::new().with_prefix())).await;

    let response = client
        .delete("d/", Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("prefix delete");
    assert_eq!(response.deleted(), 5);
    let revision = response.header().expect("delete header").revision();

    let watched = next_response(&mut stream).await;
    let events: Vec<Seen> = watched.events().iter().map(seen).collect();
    let expected: Vec<Seen> = (0..5)
        .map(|index| Seen::delete(&format!("d/{index}"), revision))
        .collect();
    assert_eq!(events, expected, "one response holds the whole revision");
}

/// Puts values `from..from + count` to three keys under `prefix` in turn; returns the events.
async fn put_numbered(client: &mut Client, prefix: &str, from: usize, count: usize) -> Vec<Seen> {
    let mut written = Vec::new();
    for index in from..from + count {
        let key = format!("{prefix}{}", index % 3);
        written.push(Seen::put(&key, put(client, &key, &index.to_string()).await));
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumed_from_last_seen_plus_one_has_no_gap_or_duplicate() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let start = current_revision(&mut client).await + 1;
    let prefix = WatchOptions::new().with_prefix();

    let (watcher, mut stream) = open_watch(
        &mut client,
        "r/",
        Some(prefix.clone().with_start_revision(start)),
    )
    .await;
    let mut history = put_numbered(&mut client, "r/", 0, 30).await;
    let mut received = read_events(&mut stream, 10).await;
    drop((watcher, stream));

    history.extend(put_numbered(&mut client, "r/", 30, 30).await);
    let last_seen = received.last().expect("ten events").revision;
    let (_watcher, mut stream) = open_watch(
        &mut client,
        "r/",
        Some(prefix.with_start_revision(last_seen + 1)),
    )
    .await;
    received.extend(read_events(&mut stream, history.len() - 10).await);

    assert_eq!(received, history);
    assert_quiet(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_past_revision_replays_history_then_continues_live() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut history = put_numbered(&mut client, "h/", 0, 20).await;
    let first = history[0].revision;

    let (_watcher, mut stream) = open_watch(
        &mut client,
        "h/",
        Some(WatchOptions::new().with_prefix().with_start_revision(first)),
    )
    .await;
    history.extend(put_numbered(&mut client, "h/", 20, 20).await);

    assert_eq!(read_events(&mut stream, history.len()).await, history);
    assert_quiet(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_future_revision_delivers_from_that_revision_on() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let target = current_revision(&mut client).await + 5;
    let (_watcher, mut stream) = open_watch(
        &mut client,
        "f",
        Some(WatchOptions::new().with_start_revision(target)),
    )
    .await;

    for value in 1..=4 {
        put(&mut client, "f", &value.to_string()).await;
    }
    assert_quiet(&mut stream).await;

    let fifth = put(&mut client, "f", "5").await;
    assert_eq!(fifth, target);
    assert_eq!(read_events(&mut stream, 1).await, [Seen::put("f", target)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prev_kv_is_set_on_updates_and_deletes_not_on_creates() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_watcher, mut stream) =
        open_watch(&mut client, "p", Some(WatchOptions::new().with_prev_key())).await;

    let created = put(&mut client, "p", "v1").await;
    let updated = put(&mut client, "p", "v2").await;
    let deleted = delete(&mut client, "p").await;

    let create = next_response(&mut stream).await;
    assert!(
        create.events()[0].prev_kv().is_none(),
        "a create has no previous pair"
    );

    let update = next_response(&mut stream).await;
    let previous = update.events()[0].prev_kv().expect("an update has prev_kv");
    assert_eq!(
        (
            previous.value(),
            previous.mod_revision(),
            previous.version()
        ),
        (&b"v1"[..], created, 1)
    );

    let removal = next_response(&mut stream).await;
    let event = &removal.events()[0];
    assert_eq!(event.event_type(), EventType::Delete);
    let kv = event.kv().expect("a delete carries the key");
    assert_eq!((kv.key(), kv.mod_revision()), (&b"p"[..], deleted));
    let previous = event.prev_kv().expect("a delete has prev_kv");
    assert_eq!(
        (
            previous.value(),
            previous.mod_revision(),
            previous.version()
        ),
        (&b"v2"[..], updated, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noput_filter_delivers_only_deletes() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let options = WatchOptions::new()
        .with_prefix()
        .with_filters([WatchFilterType::NoPut]);
    let (_watcher, mut stream) = open_watch(&mut client, "n/", Some(options)).await;

    put(&mut client, "n/1", "v").await;
    put(&mut client, "n/2", "v").await;
    let deleted = delete(&mut client, "n/1").await;
    put(&mut client, "n/3", "v").await;

    assert_eq!(
        read_events(&mut stream, 1).await,
        [Seen::delete("n/1", deleted)]
    );
    assert_quiet(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodelete_filter_delivers_only_puts() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let options = WatchOptions::new()
        .with_prefix()
        .with_filters([WatchFilterType::NoDelete]);
    let (_watcher, mut stream) = open_watch(&mut client, "n/", Some(options)).await;

    let first = put(&mut client, "n/1", "v").await;
    delete(&mut client, "n/1").await;
    let second = put(&mut client, "n/2", "v").await;

    assert_eq!(
        read_events(&mut stream, 2).await,
        [Seen::put("n/1", first), Seen::put("n/2", second)]
    );
    assert_quiet(&mut stream).await;
}

/// Writes `k` four times and compacts at the third write; returns that revision.
async fn write_and_compact(client: &mut Client) -> i64 {
    put(client, "k", "v1").await;
    put(client, "k", "v2").await;
    let compacted = put(client, "k", "v3").await;
    put(client, "k", "v4").await;
    client.compact(compacted, None).await.expect("compact");
    compacted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_below_compacted_revision_is_canceled_with_compact_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let compacted = write_and_compact(&mut client).await;

    let (watcher, mut stream) = open_watch(
        &mut client,
        "k",
        Some(WatchOptions::new().with_start_revision(compacted - 1)),
    )
    .await;

    let response = next_response(&mut stream).await;
    assert!(response.canceled(), "expected a cancel: {response:?}");
    assert_eq!(response.watch_id(), watcher.watch_id());
    assert_eq!(response.compact_revision(), compacted);
    assert!(response.events().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_at_exactly_the_compacted_revision_replays_from_it() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let compacted = write_and_compact(&mut client).await;

    let (_watcher, mut stream) = open_watch(
        &mut client,
        "k",
        Some(WatchOptions::new().with_start_revision(compacted)),
    )
    .await;

    assert_eq!(
        read_events(&mut stream, 2).await,
        [Seen::put("k", compacted), Seen::put("k", compacted + 1)]
    );
}

/// Asserts `response` is a progress response: no events, not created or canceled, no compaction.
fn assert_progress(response: &WatchResponse) {
    assert!(
        response.events().is_empty()
            && !response.created()
            && !response.canceled()
            && response.compact_revision() == 0,
        "expected a progress response, got {response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_request_on_synced_stream_answers_with_current_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for index in 0..3 {
        put(&mut client, &format!("elsewhere/{index}"), "v").await;
    }
    let (mut watcher, mut stream) = open_watch(&mut client, "quiet", None).await;
    let current = current_revision(&mut client).await;

    watcher.request_progress().await.expect("progress request");
    let response = next_response(&mut stream).await;
    assert_progress(&response);
    assert_eq!(
        response.watch_id(),
        -1,
        "a progress response belongs to no watch"
    );
    assert_eq!(response.header().expect("header").revision(), current);
    assert_quiet(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_revision_covers_every_event_received_before_it() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut writer = server.client().await;
    let (mut watcher, mut stream) =
        open_watch(&mut client, "b/", Some(WatchOptions::new().with_prefix())).await;

    let written = put_numbered(&mut writer, "b/", 0, 50).await;
    watcher.request_progress().await.expect("progress request");

    let mut received = Vec::new();
    let progress_revision = loop {
        assert!(
            received.len() <= written.len(),
            "more events than writes: {received:?}"
        );
        let response = next_response(&mut stream).await;
        if response.events().is_empty() {
            assert_progress(&response);
            break response.header().expect("header").revision();
        }
        received.extend(response.events().iter().map(seen));
    };

    let last_written = written.last().expect("fifty writes").revision;
    assert!(
        progress_revision >= last_written,
        "written before the request"
    );
    let covered: Vec<Seen> = written
        .into_iter()
        .filter(|event| event.revision <= progress_revision)
        .collect();
    assert_eq!(
        received, covered,
        "every event up to the progress revision comes before it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notify_reaches_an_idle_watch() {
    let server =
        TestServer::start_with_args(&["--experimental-watch-progress-notify-interval=500ms"]).await;
    let mut client = server.client().await;
    put(&mut client, "elsewhere", "v").await;
    let options = WatchOptions::new().with_progress_notify();
    let (watcher, mut stream) = open_watch(&mut client, "idle", Some(options)).await;
    let current = current_revision(&mut client).await;

    let started = Instant::now();
    for _ in 0..2 {
        let response = timeout(Duration::from_secs(3), stream.message())
            .await
            .expect("a progress notification within 3 s at a 500 ms interval")
            .expect("the watch stream did not fail")
            .expect("the watch stream is still open");
        assert_progress(&response);
        assert_eq!(response.watch_id(), watcher.watch_id());
        assert_eq!(response.header().expect("header").revision(), current);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "notifications are paced by the interval, not sent back to back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceled_watch_answers_canceled_and_gets_no_more_events() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (mut watcher, mut stream) = open_watch(&mut client, "a", None).await;
    let kept = add_watch(&mut watcher, &mut stream, "b", None).await;

    watcher.cancel().await.expect("cancel");
    let response = next_response(&mut stream).await;
    assert!(response.canceled(), "expected a cancel: {response:?}");
    assert_eq!(response.watch_id(), watcher.watch_id());

    put(&mut client, "a", "v").await;
    let revision = put(&mut client, "b", "v").await;
    let response = next_response(&mut stream).await;
    assert_eq!(response.watch_id(), kept, "only the kept watch hears");
    assert_eq!(
        response.events().iter().map(seen).collect::<Vec<_>>(),
        [Seen::put("b", revision)]
    );
    assert_quiet(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_client_chosen_watch_id_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let options = WatchOptions::new().with_watch_id(7);
    let (mut watcher, mut stream) = open_watch(&mut client, "a", Some(options.clone())).await;
    assert_eq!(watcher.watch_id(), 7, "the client's id is used");

    watcher
        .watch("b", Some(options))
        .await
        .expect("sending a create");
    let refused = next_response(&mut stream).await;
    assert!(
        refused.created() && refused.canceled(),
        "etcd answers a duplicate id with one response both created and canceled: {refused:?}"
    );
    assert_eq!(refused.watch_id(), -1, "the refused watch gets no id");
    assert_eq!(
        refused.cancel_reason(),
        "mvcc: duplicate watch ID provided on the WatchStream"
    );

    put(&mut client, "b", "v").await;
    let revision = put(&mut client, "a", "v").await;
    let response = next_response(&mut stream).await;
    assert_eq!(response.watch_id(), 7, "the first watch still works");
    assert_eq!(
        response.events().iter().map(seen).collect::<Vec<_>>(),
        [Seen::put("a", revision)]
    );
    assert_quiet(&mut stream).await;
}

/// Puts in the slow-consumer test, their value size, and the writers sharing them.
const SLOW_PUTS: usize = 5000;
const SLOW_VALUE_BYTES: usize = 1024;
const SLOW_WRITERS: usize = 8;

/// Writes keys `s/<writer>/<n>` with 1 KiB values until the shared count runs out; returns the
/// revisions of the puts.
async fn write_slow_consumer_load(
    mut client: Client,
    writer: usize,
    puts: usize,
    deadline: Instant,
) -> Vec<i64> {
    let value = "x".repeat(SLOW_VALUE_BYTES);
    let mut revisions = Vec::with_capacity(puts);
    for sequence in 0..puts {
        assert!(Instant::now() < deadline, "the load took too long");
        let key = format!("s/{writer}/{sequence}");
        revisions.push(put(&mut client, &key, &value).await);
    }
    revisions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_still_receives_every_revision_in_order() {
    let server = TestServer::start().await;
    // The watch has a connection of its own: its unread data must not stall the writers.
    let mut watch_client = server.client().await;
    let (_watcher, mut stream) = open_watch(
        &mut watch_client,
        "s/",
        Some(WatchOptions::new().with_prefix()),
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut writers = Vec::new();
    for writer in 0..SLOW_WRITERS {
        let client = server.client().await;
        let puts = SLOW_PUTS / SLOW_WRITERS;
        writers.push(tokio::spawn(write_slow_consumer_load(
            client, writer, puts, deadline,
        )));
    }
    let mut written = BTreeSet::new();
    for writer in writers {
        written.extend(writer.await.expect("writer task"));
    }
    assert_eq!(written.len(), SLOW_PUTS, "every put has its own revision");

    let events = read_events(&mut stream, SLOW_PUTS).await;
    for pair in events.windows(2) {
        assert!(
            pair[0].revision < pair[1].revision,
            "out of order: {pair:?}"
        );
    }
    let received: BTreeSet<i64> = events.iter().map(|event| event.revision).collect();
    assert_eq!(received, written, "every put's revision arrives");
}

/// A raw watch stream: the request sender (kept open) and the response stream.
struct RawWatch {
    _requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<RawWatchResponse>,
}

impl RawWatch {
    async fn open(server: &TestServer, create: WatchCreateRequest) -> Self {
        let (sender, receiver) = mpsc::channel(4);
        sender
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await
            .expect("queueing the create");
        let mut client = RawWatchClient::new(server.raw_channel().await);
        let responses = timeout(RESPONSE_BOUND, client.watch(ReceiverStream::new(receiver)))
            .await
            .expect("the watch opens within the bound")
            .expect("opening a raw watch")
            .into_inner();
        let mut watch = RawWatch {
            _requests: sender,
            responses,
        };
        let created = watch.next().await;
        assert!(created.created, "expected created, got {created:?}");
        watch
    }

    async fn next(&mut self) -> RawWatchResponse {
        timeout(RESPONSE_BOUND, self.responses.message())
            .await
            .expect("a watch response within the bound")
            .expect("the watch stream did not fail")
            .expect("the watch stream is still open")
    }
}

/// `--max-request-bytes` for the fragment test. etcd (3.3 to 3.6) splits a fragmenting watch's
/// response only once it reaches max-request-bytes plus its 512 KiB gRPC overhead allowance, so
/// one prefix delete (with `prev_kv`) of these keys, ~576 KB, must be split, while every put
/// stays under the request limit.
const FRAGMENT_LIMIT: usize = 10_240;
const FRAGMENT_THRESHOLD: usize = FRAGMENT_LIMIT + 512 * 1024;
const FRAGMENT_KEYS: usize = 64;
const FRAGMENT_VALUE_BYTES: usize = 9_000;
const _: () = assert!(FRAGMENT_KEYS * FRAGMENT_VALUE_BYTES > FRAGMENT_THRESHOLD);

fn prefix_watch_with_prev_kv(prefix: &str, fragment: bool) -> WatchCreateRequest {
    let mut range_end = prefix.as_bytes().to_vec();
    *range_end.last_mut().expect("non-empty prefix") += 1;
    WatchCreateRequest {
        key: prefix.as_bytes().to_vec(),
        range_end,
        prev_kv: true,
        fragment,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_watch_splits_a_large_revision_and_delivers_all_its_events() {
    let limit = FRAGMENT_LIMIT.to_string();
    let server = TestServer::start_with_args(&["--max-request-bytes", &limit]).await;
    let mut client = server.client().await;
    let value = "x".repeat(FRAGMENT_VALUE_BYTES);
    for index in 0..FRAGMENT_KEYS {
        put(&mut client, &format!("big/{index:02}"), &value).await;
    }
    let mut fragmented = RawWatch::open(&server, prefix_watch_with_prev_kv("big/", true)).await;
    let mut whole = RawWatch::open(&server, prefix_watch_with_prev_kv("big/", false)).await;

    let deleted = client
        .delete("big/", Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("prefix delete");
    let revision = deleted.header().expect("delete header").revision();

    let mut parts = Vec::new();
    while parts.len() < FRAGMENT_KEYS {
        let part = fragmented.next().await;
        let last = !part.fragment;
        parts.push(part);
        if last {
            break;
        }
    }
    assert!(
        parts.len() >= 2,
        "a revision above {FRAGMENT_THRESHOLD} bytes is split, got {} response(s)",
        parts.len()
    );
    assert!(
        parts.last().is_some_and(|part| !part.fragment),
        "the last part has fragment = false"
    );
    let events: Vec<_> = parts.iter().flat_map(|part| part.events.iter()).collect();
    assert_eq!(events.len(), FRAGMENT_KEYS, "every event of the revision");
    for (index, event) in events.iter().enumerate() {
        let kv = event.kv.as_ref().expect("a delete carries the key");
        assert_eq!(kv.key, format!("big/{index:02}").into_bytes());
        assert_eq!(kv.mod_revision, revision);
        let previous = event.prev_kv.as_ref().expect("prev_kv was asked for");
        assert_eq!(previous.value.len(), FRAGMENT_VALUE_BYTES);
    }

    let unsplit = whole.next().await;
    assert!(!unsplit.fragment, "without fragment the revision is whole");
    assert_eq!(unsplit.events.len(), FRAGMENT_KEYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_watch_sees_only_keys_in_the_range() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_watcher, mut stream) =
        open_watch(&mut client, "b", Some(WatchOptions::new().with_range("d"))).await;

    let mut expected = Vec::new();
    for key in ["a", "b", "ba", "c", "czz", "d", "e"] {
        let revision = put(&mut client, key, "v").await;
        if ("b".."d").contains(&key) {
            expected.push(Seen::put(key, revision));
        }
    }

    assert_eq!(read_events(&mut stream, expected.len()).await, expected);
    assert_quiet(&mut stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_key_watch_sees_every_key_from_it() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_watcher, mut stream) =
        open_watch(&mut client, "m", Some(WatchOptions::new().with_range("\0"))).await;

    let mut expected = Vec::new();
    for key in ["a", "l\u{7f}", "m", "m0", "z", "\u{7f}"] {
        let revision = put(&mut client, key, "v").await;
        if key >= "m" {
            expected.push(Seen::put(key, revision));
        }
    }

    assert_eq!(read_events(&mut stream, expected.len()).await, expected);
    assert_quiet(&mut stream).await;
}
