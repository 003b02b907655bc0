//! Real-process chaos, outside the simulation: three `k3rs etcd` members on loopback under a
//! write load and a prefix watch, with members (the leader included) killed with -9 and
//! restarted at random for a bounded time. Afterwards no acknowledged write may be missing on
//! any member, and the watch — resumed after every broken stream from the revision after the
//! last one it saw — must have delivered every write exactly once, in revision order.
//!
//! The kill schedule comes from a seed printed at the start (`K3RS_CHAOS_SEED` replays it;
//! `K3RS_CHAOS_SECONDS` lengthens the run). Process timing still varies from run to run.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::TestCluster;
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{sleep, timeout, Instant};

const PREFIX: &str = "chaos/";
/// How long members are killed and restarted, unless `K3RS_CHAOS_SECONDS` says otherwise.
const DEFAULT_CHAOS: Duration = Duration::from_secs(20);
/// Bound on one put or watch (re)creation.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on the watch catching up once the load has stopped.
const CATCH_UP: Duration = Duration::from_secs(60);
const WRITERS: usize = 2;
/// Upper bound on the puts of one writer.
const MAX_PUTS: usize = 20_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|text| text.parse().ok())
}

/// Puts `chaos/w<writer>/<n>` through the members in turn until `stop`; returns the
/// acknowledged keys with the revision each put was given.
async fn writer(
    writer: usize,
    endpoints: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Vec<(String, i64)> {
    let mut clients = Vec::new();
    for endpoint in &endpoints {
        clients.push(common::connect(endpoint).await);
    }
    let mut acknowledged = Vec::new();
    for n in 0..MAX_PUTS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("{PREFIX}w{writer}/{n:06}");
        let client = &mut clients[n % endpoints.len()];
        if let Ok(Ok(response)) = timeout(OP_TIMEOUT, client.put(key.as_str(), "v", None)).await {
            let revision = response.header().map_or(0, |header| header.revision());
            acknowledged.push((key, revision));
        }
    }
    acknowledged
}

/// What the watch saw: (key, mod revision) in delivery order, and how often it was resumed.
#[derive(Default)]
struct Watched {
    events: Vec<(String, i64)>,
    resumes: usize,
}

/// Watches the prefix from revision `start`, moving to the next member whenever the stream
/// breaks, until it has delivered revision `until` (read from `until` once set) or `stop_at`.
async fn watch_all(
    endpoints: Vec<String>,
    start: i64,
    until: Arc<std::sync::atomic::AtomicI64>,
    stop_at: Arc<std::sync::Mutex<Option<Instant>>>,
) -> Watched {
    let mut watched = Watched::default();
    let mut next = start;
    let mut member = 0;
    loop {
        let deadline = *stop_at.lock().expect("deadline lock");
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return watched;
        }
        let target = until.load(Ordering::Relaxed);
        if target > 0 && next > target {
            return watched;
        }
        let mut client: Client = common::connect(&endpoints[member % endpoints.len()]).await;
        member += 1;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(next)
            .with_progress_notify();
        let Ok(Ok((_watcher, mut stream))) =
            timeout(OP_TIMEOUT, client.watch(PREFIX, Some(options))).await
        else {
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        loop {
            match timeout(Duration::from_secs(2), stream.message()).await {
                Ok(Ok(Some(response))) => {
                    if response.canceled() {
                        panic!("the watch was canceled: {}", response.cancel_reason());
                    }
                    for event in response.events() {
                        let kv = event.kv().expect("an event carries its key");
                        assert_eq!(event.event_type(), EventType::Put, "only puts are made");
                        watched
                            .events
                            .push((kv.key_str().expect("utf-8").to_string(), kv.mod_revision()));
                        next = kv.mod_revision() + 1;
                    }
                }
                // A quiet stream: check whether the run is over.
                Err(_) => {
                    let target = until.load(Ordering::Relaxed);
                    let deadline = *stop_at.lock().expect("deadline lock");
                    if (target > 0 && next > target)
                        || deadline.is_some_and(|deadline| Instant::now() >= deadline)
                    {
                        return watched;
                    }
                }
                // Broken or ended (its member was killed): resume on another member.
                Ok(_) => {
                    watched.resumes += 1;
                    break;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_random_members_loses_no_acknowledged_write_and_no_watch_event() {
    let seed = env_u64("K3RS_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_secs())
    });
    let chaos = env_u64("K3RS_CHAOS_SECONDS").map_or(DEFAULT_CHAOS, Duration::from_secs);
    eprintln!("chaos seed {seed} (replay the kill schedule with K3RS_CHAOS_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let mut cluster = TestCluster::start(3).await;
    let endpoints = cluster.endpoints();
    let mut probe = cluster
        .client(cluster.leader(Duration::from_secs(30)).await)
        .await;
    let start = probe
        .get("chaos-probe", None)
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision()
        + 1;
    drop(probe);

    let until = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let stop_at = Arc::new(std::sync::Mutex::new(None));
    let watch = tokio::spawn(watch_all(
        endpoints.clone(),
        start,
        until.clone(),
        stop_at.clone(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|index| tokio::spawn(writer(index, endpoints.clone(), stop.clone())))
        .collect();

    // One member down at a time, so the other two keep a quorum and the load goes on.
    let deadline = Instant::now() + chaos;
    let mut kills = 0;
    while Instant::now() < deadline {
        sleep(Duration::from_millis(rng.gen_range(500..2_500))).await;
        let victim = if rng.gen_bool(0.4) {
            cluster.leader(Duration::from_secs(30)).await
        } else {
            rng.gen_range(0..cluster.members.len())
        };
        cluster.members[victim].kill9();
        kills += 1;
        sleep(Duration::from_millis(rng.gen_range(200..2_000))).await;
        cluster.restart(victim).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer task"));
    }

    // Every member holds every acknowledged write.
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let mut leader_client = cluster.client(leader).await;
    let last = leader_client
        .get("chaos-probe", None)
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision();
    until.store(last, Ordering::Relaxed);
    *stop_at.lock().expect("deadline lock") = Some(Instant::now() + CATCH_UP);
    let mut stored: Vec<BTreeMap<String, i64>> = Vec::new();
    for index in 0..cluster.members.len() {
        let mut client = cluster.client(index).await;
        let response = client
            .get(PREFIX, Some(GetOptions::new().with_prefix()))
            .await
            .expect("linearizable range on every member");
        stored.push(
            response
                .kvs()
                .iter()
                .map(|kv| (kv.key_str().expect("utf-8").to_string(), kv.mod_revision()))
                .collect(),
        );
    }
    let mut lost = 0;
    for (index, keys) in stored.iter().enumerate() {
        for (key, revision) in &acknowledged {
            match keys.get(key) {
                Some(stored_revision) => assert_eq!(stored_revision, revision, "{key}"),
                None => {
                    lost += 1;
                    eprintln!("acknowledged {key} (revision {revision}) missing on member {index}");
                }
            }
        }
    }
    assert_eq!(stored[0], stored[1], "members 0 and 1 differ");
    assert_eq!(stored[0], stored[2], "members 0 and 2 differ");

    // The watch delivered exactly the writes that happened, once each, in revision order.
    let watched = watch.await.expect("watch task");
    let revisions: Vec<i64> = watched
        .events
        .iter()
        .map(|(_, revision)| *revision)
        .collect();
    assert!(
        revisions.windows(2).all(|pair| pair[0] < pair[1]),
        "watch events out of order or repeated"
    );
    let delivered: BTreeMap<String, i64> = watched.events.iter().cloned().collect();
    assert_eq!(
        delivered.len(),
        watched.events.len(),
        "a key delivered twice"
    );
    assert_eq!(
        delivered, stored[0],
        "the watch must deliver every stored write and nothing else"
    );
    eprintln!(
        "chaos: {} s, {kills} kills (leader included), {} puts acknowledged, {} watch events, \
         {} watch resumes, {lost} acknowledged writes lost",
        chaos.as_secs(),
        acknowledged.len(),
        watched.events.len(),
        watched.resumes
    );
    assert_eq!(lost, 0, "acknowledged writes were lost");
    assert!(kills >= 3, "only {kills} kills in {chaos:?}");
    assert!(
        acknowledged.len() >= 50,
        "the load got only {} puts through",
        acknowledged.len()
    );
}
