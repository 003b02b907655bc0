//! Watch fan-out: 10,000 watchers on one prefix, each on its own stream with its own reader
//! task, fed by the apply path as the driver feeds it (store apply, then `WatchHub::notify`).
//!
//! Reports events delivered per second (watchers × events / wall time), delivery latency
//! (p50/p99/max, from publish to the reader having the event) and resident memory per watcher.
//! Bounded: 10,000 watchers × 1,000 events, and a 120 s deadline.
//!
//! Run: `cargo bench --workspace --bench watch_fanout`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use raftstore::engine::memory::MemoryEngine;
use raftstore::mvcc::MvccStore;
use raftstore::pb::etcdserverpb::PutRequest;
use raftstore::pb::k3rspb::raft_command::Request;
use raftstore::watch::{HubConfig, WatchCreate, WatchHub, WatchMessage};
use tokio::sync::mpsc;

const WATCHERS: usize = 10_000;
const EVENTS: usize = 1_000;
const DEADLINE: Duration = Duration::from_secs(120);

/// Resident set size of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[rank]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let engine = Arc::new(MemoryEngine::new());
    let store = Arc::new(RwLock::new(MvccStore::open(engine).expect("open store")));
    let hub = WatchHub::new(Arc::clone(&store), HubConfig::default());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(Arc::clone(&hub).run(stop_rx));

    let start = Instant::now();
    let before = resident_bytes();
    let (latencies_tx, mut latencies_rx) = mpsc::unbounded_channel::<Vec<Duration>>();
    for _ in 0..WATCHERS {
        let stream = hub.open_stream();
        stream
            .watch(WatchCreate {
                key: b"/registry/pods/".to_vec(),
                range_end: b"/registry/pods0".to_vec(),
                ..Default::default()
            })
            .expect("watch created");
        let latencies_tx = latencies_tx.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(EVENTS);
            while latencies.len() < EVENTS {
                let delivery = stream.next().await;
                if let WatchMessage::Events { events, .. } = delivery.message {
                    let now = start.elapsed();
                    for event in events {
                        let kv = event.kv.expect("kv");
                        let sent = u64::from_be_bytes(kv.value[..8].try_into().expect("8 bytes"));
                        latencies.push(now.saturating_sub(Duration::from_nanos(sent)));
                    }
                }
            }
            let _ = latencies_tx.send(latencies);
        });
    }
    drop(latencies_tx);
    tokio::task::yield_now().await;
    let per_watcher = resident_bytes().saturating_sub(before) / WATCHERS as u64;

    let publish_started = Instant::now();
    let publisher = tokio::task::spawn_blocking({
        let store = Arc::clone(&store);
        let hub = Arc::clone(&hub);
        move || {
            for n in 0..EVENTS {
                let mut value = (start.elapsed().as_nanos() as u64).to_be_bytes().to_vec();
                value.resize(256, b'v');
                let request = Request::Put(PutRequest {
                    key: format!("/registry/pods/default/pod-{}", n % 100).into_bytes(),
                    value,
                    ..Default::default()
                });
                let outcome = store
                    .write()
                    .apply(n as u64 + 1, Some(&request))
                    .expect("storage")
                    .expect("put");
                hub.notify(outcome.revision, outcome.events);
            }
        }
    });

    let mut all = Vec::with_capacity(WATCHERS * EVENTS);
    let mut readers_done = 0;
    let collected = tokio::time::timeout(DEADLINE, async {
        while let Some(latencies) = latencies_rx.recv().await {
            all.extend(latencies);
            readers_done += 1;
        }
    })
    .await;
    let elapsed = publish_started.elapsed();
    publisher.await.expect("publisher");
    if collected.is_err() {
        eprintln!("deadline passed: {readers_done} of {WATCHERS} readers finished");
    }
    all.sort_unstable();
    let delivered = all.len() as f64;
    println!("watch fan-out: {WATCHERS} watchers on one prefix, {EVENTS} events of 256 B");
    println!(
        "  delivered {} events in {:.2} s: {:.0} events/s",
        all.len(),
        elapsed.as_secs_f64(),
        delivered / elapsed.as_secs_f64()
    );
    println!(
        "  latency p50 {:?}  p99 {:?}  max {:?}",
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or_default()
    );
    println!("  resident memory per watcher (stream, watcher, reader task): {per_watcher} B");
    let (synced, unsynced, parked) = hub.watcher_counts();
    println!("  at the end: {synced} synced, {unsynced} unsynced, {parked} parked");
}
