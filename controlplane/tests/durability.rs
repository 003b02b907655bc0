//! Durability of the real `k3rs` binary: acknowledged writes survive `kill -9`, SIGTERM stops it
//! cleanly with its data intact, and a damaged data dir stops start-up with a message naming the
//! damage instead of being silently reset.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestServer;
use etcd_client::{Client, GetOptions};
use raftstore::engine::{EngineKind, KvEngine, Table, WriteBatch};
use tokio::time::{sleep, timeout, Instant};

/// Writers in the crash test.
const WRITERS: usize = 4;
/// Upper bound on puts in the crash test, over all writers.
const MAX_PUTS: usize = 2000;
/// The crash test's load stops by itself after this long.
const LOAD_BOUND: Duration = Duration::from_secs(3);
/// The server is killed once this many puts were acknowledged (or at [`KILL_AT_LATEST`]).
const KILL_AFTER_ACKS: usize = 300;
const KILL_AT_LATEST: Duration = Duration::from_millis(1500);
/// A single put's bound in the crash test.
const PUT_BOUND: Duration = Duration::from_secs(5);
/// How long a clean stop may take (etcd stops well within it).
const STOP_BOUND: Duration = Duration::from_secs(10);
/// How long a start on a damaged data dir may take to give up.
const REFUSAL_BOUND: Duration = Duration::from_secs(30);

/// A put the server acknowledged.
#[derive(Debug, Clone)]
struct Ack {
    key: String,
    value: String,
    revision: i64,
}

/// Puts distinct keys until told to stop, the budget or time runs out, or a put fails;
/// records every acknowledged put.
async fn write_until_stopped(
    writer: usize,
    mut client: Client,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    budget: Arc<AtomicUsize>,
    deadline: Instant,
) {
    for sequence in 0..MAX_PUTS {
        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            return;
        }
        let claimed = budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        });
        if claimed.is_err() {
            return;
        }
        let key = format!("load/{writer}/{sequence:05}");
        let value = format!("value-{writer}-{sequence}");
        match timeout(PUT_BOUND, client.put(key.clone(), value.clone(), None)).await {
            Ok(Ok(response)) => {
                let revision = response
                    .header()
                    .expect("put response has a header")
                    .revision();
                acks.lock().expect("acks lock").push(Ack {
                    key,
                    value,
                    revision,
                });
            }
            // The server was killed (or stalled): stop writing; this put is not acknowledged.
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill9_with_their_revisions() {
    let mut server = TestServer::start().await;
    let acks = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(AtomicUsize::new(MAX_PUTS));
    let started = Instant::now();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let client = server.client().await;
        writers.push(tokio::spawn(write_until_stopped(
            writer,
            client,
            acks.clone(),
            stop.clone(),
            budget.clone(),
            started + LOAD_BOUND,
        )));
    }

    while acks.lock().expect("acks lock").len() < KILL_AFTER_ACKS
        && started.elapsed() < KILL_AT_LATEST
    {
        sleep(Duration::from_millis(5)).await;
    }
    let writers_running = writers.iter().filter(|w| !w.is_finished()).count();
    let killed_after = started.elapsed();
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        timeout(Duration::from_secs(30), writer)
            .await
            .expect("writers stop once the server is gone")
            .expect("writer task");
    }
    let acks = acks.lock().expect("acks lock").clone();
    eprintln!(
        "killed after {killed_after:?} with {writers_running} writers running; {} puts acknowledged",
        acks.len()
    );
    assert!(
        writers_running > 0,
        "the server must be killed while writes are in flight"
    );
    assert!(
        !acks.is_empty(),
        "no put was acknowledged before the kill; log:\n{}",
        server.log()
    );

    let mut revisions: Vec<i64> = acks.iter().map(|ack| ack.revision).collect();
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(
        revisions.len(),
        acks.len(),
        "every acknowledged put has its own revision"
    );

    server.restart().await;
    let mut client = server.client().await;
    for ack in &acks {
        let got = client
            .get(ack.key.as_str(), None)
            .await
            .expect("get after restart");
        assert_eq!(
            got.kvs().len(),
            1,
            "acknowledged put of {} lost after kill -9",
            ack.key
        );
        let kv = &got.kvs()[0];
        assert_eq!(
            kv.value_str().expect("utf-8"),
            ack.value,
            "value of {}",
            ack.key
        );
        assert_eq!(
            kv.mod_revision(),
            ack.revision,
            "mod_revision of {}",
            ack.key
        );
        assert_eq!(
            kv.create_revision(),
            ack.revision,
            "create_revision of {}",
            ack.key
        );
    }

    let newest_ack = *revisions.last().expect("at least one ack");
    let next = client
        .put("after-crash", "v", None)
        .await
        .expect("put after restart");
    let next_revision = next.header().expect("header").revision();
    assert!(
        next_revision > newest_ack,
        "a new write after restart got revision {next_revision}, not above the acknowledged {newest_ack}"
    );
    let got = client.get("after-crash", None).await.expect("get");
    assert_eq!(got.kvs()[0].mod_revision(), next_revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_with_status_zero_within_ten_seconds() {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    client.put("k", "v", None).await.expect("put");

    let status = server.terminate(STOP_BOUND).await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}; log:\n{}",
        server.log()
    );
}

/// Every key with its value and revisions, and the store's revision.
async fn snapshot_of_store(
    client: &mut Client,
) -> (BTreeMap<String, (String, i64, i64, i64)>, i64) {
    let response = client
        .get("\0", Some(GetOptions::new().with_range("\0")))
        .await
        .expect("get");
    let kvs = response
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().expect("utf-8").to_string(),
                (
                    kv.value_str().expect("utf-8").to_string(),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                ),
            )
        })
        .collect();
    (kvs, response.header().expect("header").revision())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_is_intact_after_sigterm_and_restart() {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    for i in 0..20 {
        client
            .put(format!("key/{i:02}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    client.put("key/03", "updated", None).await.expect("update");
    client.delete("key/07", None).await.expect("delete");
    let (before, revision_before) = snapshot_of_store(&mut client).await;
    drop(client);

    let status = server.terminate(STOP_BOUND).await;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        server.log()
    );
    server.restart().await;

    let mut client = server.client().await;
    let (after, revision_after) = snapshot_of_store(&mut client).await;
    assert_eq!(after, before, "the store changed across a clean restart");
    assert_eq!(revision_after, revision_before);
    let next = client
        .put("next", "v", None)
        .await
        .expect("put")
        .header()
        .expect("h")
        .revision();
    assert_eq!(next, revision_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_and_member_ids_are_kept_across_restart() {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    let before = client.put("k", "v", None).await.expect("put");
    let before = before.header().expect("header");
    let ids_before = (before.cluster_id(), before.member_id());
    drop(client);

    let status = server.terminate(STOP_BOUND).await;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        server.log()
    );
    server.restart().await;

    let mut client = server.client().await;
    let after = client.get("k", None).await.expect("get");
    let after = after.header().expect("header");
    assert_eq!((after.cluster_id(), after.member_id()), ids_before);
}

/// Starts a server, writes `puts` keys, and stops it cleanly.
async fn stopped_server_with_data(puts: usize) -> TestServer {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    for i in 0..puts {
        client
            .put(format!("key/{i:03}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    drop(client);
    let status = server.terminate(STOP_BOUND).await;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        server.log()
    );
    server
}

fn open_engine(engine_dir: &Path) -> Arc<dyn KvEngine> {
    EngineKind::default_kind()
        .open(engine_dir)
        .unwrap_or_else(|err| panic!("opening the engine in {}: {err}", engine_dir.display()))
}

/// Keys of `table` (all of it).
fn table_keys(engine: &dyn KvEngine, table: Table) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    engine
        .scan(table, b"", None, &mut |key, _| {
            keys.push(key.to_vec());
            true
        })
        .expect("scanning the engine");
    keys
}

/// Raft log entry keys: `b'e'` + 8-byte big-endian index.
fn raft_entry_indexes(engine: &dyn KvEngine) -> Vec<u64> {
    table_keys(engine, Table::RaftLog)
        .into_iter()
        .filter(|key| key.len() == 9 && key[0] == b'e')
        .map(|key| u64::from_be_bytes(key[1..].try_into().expect("8 bytes")))
        .collect()
}

fn raft_entry_key(index: u64) -> Vec<u8> {
    let mut key = vec![b'e'];
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("reading a data dir folder") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(dir).expect("under dir").to_path_buf());
            }
        }
    }
    files.sort();
    files
}

fn assert_files_kept(data_dir: &Path, before: &[PathBuf]) {
    let after = files_under(data_dir);
    let lost: Vec<&PathBuf> = before.iter().filter(|file| !after.contains(file)).collect();
    assert!(
        lost.is_empty(),
        "start-up removed files of the damaged data dir: {lost:?}"
    );
}

/// Junk that is not a valid file of any kind (and not all zeros, which RocksDB's log reader
/// may take for padding).
fn junk(length: usize) -> Vec<u8> {
    (0..length.max(64))
        .map(|i| (i as u8).wrapping_mul(37) ^ 0xA5)
        .collect()
}

/// Every key of every table.
fn engine_contents(engine: &dyn KvEngine) -> BTreeMap<&'static str, Vec<Vec<u8>>> {
    Table::ALL
        .into_iter()
        .map(|table| (table.name(), table_keys(engine, table)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_raft_log_entry_stops_startup_naming_it() {
    let mut server = stopped_server_with_data(20).await;
    let engine_dir = server.engine_dir();

    let engine = open_engine(&engine_dir);
    let indexes = raft_entry_indexes(engine.as_ref());
    assert!(
        indexes.len() >= 3,
        "expected several raft log entries, found {indexes:?}"
    );
    let missing = indexes[indexes.len() / 2];
    let mut batch = WriteBatch::new();
    batch.delete(Table::RaftLog, raft_entry_key(missing));
    engine
        .write(batch, true)
        .expect("deleting one raft log entry");
    let damaged_contents = engine_contents(engine.as_ref());
    drop(engine);

    let (status, log) = server.start_expecting_exit(REFUSAL_BOUND).await;
    assert!(
        !status.success(),
        "start-up on a damaged raft log must fail; log:\n{log}"
    );
    assert!(
        log.to_lowercase().contains("raft log"),
        "the message must name the raft log:\n{log}"
    );
    assert!(
        log.contains("missing") && log.contains(&missing.to_string()),
        "the message must name the missing entry {missing}:\n{log}"
    );

    // Not reset: every table holds exactly what it held after the damage. (RocksDB rotates its
    // WAL, MANIFEST and OPTIONS files on every open, so file names are no measure here.)
    let engine = open_engine(&engine_dir);
    assert_eq!(
        engine_contents(engine.as_ref()),
        damaged_contents,
        "the failed start changed the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_current_file_stops_startup_naming_the_store() {
    let mut server = stopped_server_with_data(10).await;
    let engine_dir = server.engine_dir();
    let current = engine_dir.join("CURRENT");
    assert!(
        current.exists(),
        "RocksDB's CURRENT file is at {}",
        current.display()
    );
    let garbage = junk(64);
    std::fs::write(&current, &garbage).expect("overwriting CURRENT");
    let files_before = files_under(server.data_dir());

    let (status, log) = server.start_expecting_exit(REFUSAL_BOUND).await;
    assert!(
        !status.success(),
        "start-up on a damaged store must fail; log:\n{log}"
    );
    let engine_path = engine_dir.display().to_string();
    assert!(
        log.contains(&engine_path),
        "the message must name the store {engine_path}:\n{log}"
    );

    assert_files_kept(server.data_dir(), &files_before);
    assert_eq!(
        std::fs::read(&current).expect("CURRENT still there"),
        garbage,
        "CURRENT was reset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_manifest_and_table_files_stop_startup_naming_the_store() {
    let mut server = stopped_server_with_data(10).await;
    let engine_dir = server.engine_dir();
    let mut damaged = Vec::new();
    for entry in std::fs::read_dir(&engine_dir).expect("reading the engine dir") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.starts_with("MANIFEST-") || name.ends_with(".sst") {
            let length = std::fs::metadata(&path).expect("file size").len() as usize;
            std::fs::write(&path, junk(length)).expect("overwriting an engine file");
            damaged.push(path);
        }
    }
    assert!(
        damaged
            .iter()
            .any(|path| path.to_string_lossy().contains("MANIFEST-")),
        "expected a MANIFEST file in {}",
        engine_dir.display()
    );
    let files_before = files_under(server.data_dir());

    let (status, log) = server.start_expecting_exit(REFUSAL_BOUND).await;
    assert!(
        !status.success(),
        "start-up on a damaged store must fail; log:\n{log}"
    );
    let engine_path = engine_dir.display().to_string();
    assert!(
        log.contains(&engine_path),
        "the message must name the store {engine_path}:\n{log}"
    );

    assert_files_kept(server.data_dir(), &files_before);
    for path in &damaged {
        let length = std::fs::metadata(path)
            .expect("damaged file still there")
            .len() as usize;
        assert_eq!(
            std::fs::read(path).expect("read"),
            junk(length),
            "{} was reset",
            path.display()
        );
    }
}
