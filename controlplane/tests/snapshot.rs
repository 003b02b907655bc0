//! Snapshots as users take and restore them: `etcdctl snapshot save` against a running
//! `k3rs server`, `k3rs server --cluster-reset --cluster-reset-restore-path FILE` onto a data
//! dir, and `k3rs server --cluster-reset` on the survivor of a lost quorum. Every process is a
//! real `k3rs` (or etcd, where a comparison says something); every wait is bounded.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::cluster::TestCluster;
use common::free_port;
use common::k3rs_server::{etcdctl_with, K3rsServer, Ports};
use sha2::{Digest, Sha256};
use tokio::time::{sleep, Instant};

const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
const RESET_TIMEOUT: Duration = Duration::from_secs(120);

/// One key as `etcdctl get -w json` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    key: Vec<u8>,
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

fn field(value: &serde_json::Value, name: &str) -> i64 {
    value
        .get(name)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
}

fn bytes_field(value: &serde_json::Value, name: &str) -> Vec<u8> {
    let text = value.get(name).and_then(|v| v.as_str()).unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("etcdctl base64")
}

/// Every key and the current revision, as etcdctl reads them from `server`.
fn everything(server: &K3rsServer) -> (Vec<Key>, i64) {
    let output = server.etcdctl_ok(&["get", "", "--prefix", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_str(&output).expect("etcdctl json");
    let revision = field(&json["header"], "revision");
    let keys = json
        .get("kvs")
        .and_then(|kvs| kvs.as_array())
        .map(|kvs| {
            kvs.iter()
                .map(|kv| Key {
                    key: bytes_field(kv, "key"),
                    value: bytes_field(kv, "value"),
                    create_revision: field(kv, "create_revision"),
                    mod_revision: field(kv, "mod_revision"),
                    version: field(kv, "version"),
                    lease: field(kv, "lease"),
                })
                .collect()
        })
        .unwrap_or_default();
    (keys, revision)
}

/// Writes keys with history: overwrites, a delete, a lease, a compaction. Returns the lease
/// ID as etcdctl prints it (hex).
fn write_history(server: &K3rsServer) -> String {
    let granted = server.etcdctl_ok(&["lease", "grant", "3600"]);
    let lease = granted
        .split_whitespace()
        .nth(1)
        .expect("lease ID in etcdctl's answer")
        .to_string();
    for n in 0..12 {
        server.etcdctl_ok(&[
            "put",
            &format!("/registry/pods/p{n:02}"),
            &format!("v1-{n}"),
        ]);
    }
    for n in 0..4 {
        server.etcdctl_ok(&[
            "put",
            &format!("/registry/pods/p{n:02}"),
            &format!("v2-{n}"),
        ]);
    }
    server.etcdctl_ok(&["del", "/registry/pods/p11"]);
    server.etcdctl_ok(&[
        "put",
        &format!("--lease={lease}"),
        "/registry/leases/holder",
        "me",
    ]);
    server.etcdctl_ok(&["put", "/registry/marker", "before-compact"]);
    let (_, revision) = everything(server);
    server.etcdctl_ok(&["compact", &(revision - 3).to_string()]);
    server.etcdctl_ok(&["put", "/registry/marker", "after-compact"]);
    lease
}

/// True when the last 32 bytes of `bytes` are the SHA-256 of the bytes before them.
fn ends_in_its_sha256(bytes: &[u8]) -> bool {
    let Some(split) = bytes.len().checked_sub(32) else {
        return false;
    };
    let (body, digest) = bytes.split_at(split);
    Sha256::digest(body).as_slice() == digest
}

fn db_dir(server: &K3rsServer) -> std::path::PathBuf {
    server.data_dir().join("server").join("db")
}

/// Runs `k3rs server` with `args` until it exits by itself: success and its output.
async fn run_to_exit(server: &mut K3rsServer, args: &[&str]) -> (bool, String) {
    server.start(args);
    let status = server.wait_exit(RESET_TIMEOUT).await;
    (status.success(), server.logs())
}

/// Starts `server` without the Kubernetes API, whose own writes (its node and lease) would
/// change the store these tests compare.
async fn start_healthy(server: &mut K3rsServer) {
    server.start(&["--disable-apiserver"]);
    server.wait_healthy(HEALTHY_TIMEOUT).await;
}

#[tokio::test]
async fn etcdctl_snapshot_save_then_restore_gives_back_every_key_revision_and_lease() {
    let mut source = K3rsServer::new("127.0.0.1", "source", Ports::pick());
    start_healthy(&mut source).await;
    await_bootstrap_record(&source).await;
    let lease = write_history(&source);
    let (saved_keys, saved_revision) = everything(&source);

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("saved.db");
    let file_arg = file.to_str().expect("utf-8 path").to_string();
    let output = source.etcdctl_ok(&["snapshot", "save", &file_arg]);
    assert!(output.contains("Snapshot saved at"), "{output}");
    let bytes = std::fs::read(&file).expect("snapshot file");
    assert!(
        ends_in_its_sha256(&bytes),
        "the stream ends in its SHA-256, as etcd's"
    );
    // A write after the snapshot is not in it.
    source.etcdctl_ok(&["put", "/registry/after", "x"]);
    source.kill9();

    // Restored on a new machine with the old cluster's token, as k3s documents it: the store
    // holds exactly the snapshot (its sealed bootstrap data included, so nothing is added).
    let token = std::fs::read_to_string(source.token_file()).expect("token file");
    let mut restored = K3rsServer::new("127.0.0.1", "restored", Ports::pick());
    let (ok, output) = run_to_exit(
        &mut restored,
        &[
            "--cluster-reset",
            "--cluster-reset-restore-path",
            &file_arg,
            "--token",
            token.trim(),
        ],
    )
    .await;
    assert!(ok, "restore failed: {output}");
    assert!(output.contains("without --cluster-reset"), "{output}");
    assert!(
        output.contains(&db_dir(&restored).display().to_string()),
        "{output}"
    );

    start_healthy(&mut restored).await;
    let (keys, revision) = everything(&restored);
    assert_eq!(revision, saved_revision, "current revision");
    assert_eq!(
        keys, saved_keys,
        "every key, value, revision, version and lease"
    );
    let leases = restored.etcdctl_ok(&["lease", "list"]);
    assert!(leases.contains(&lease), "lease {lease} survives: {leases}");
    let ttl = restored.etcdctl_ok(&["lease", "timetolive", &lease]);
    assert!(ttl.contains("remaining"), "{ttl}");
    let compacted = restored.etcdctl(&["get", "/registry/marker", "--rev=2"]);
    assert!(
        String::from_utf8_lossy(&compacted.stderr).contains("compacted"),
        "the compacted revision is kept: {compacted:?}"
    );
    let members = restored.etcdctl_ok(&["member", "list"]);
    assert_eq!(members.lines().count(), 1, "{members}");
    restored.etcdctl_ok(&["put", "/registry/new", "y"]);
    assert_eq!(everything(&restored).1, saved_revision + 1);
}

#[tokio::test]
async fn a_corrupt_snapshot_is_refused_and_the_old_data_stays() {
    let mut server = K3rsServer::new("127.0.0.1", "node", Ports::pick());
    start_healthy(&mut server).await;
    write_history(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("saved.db");
    let file_arg = file.to_str().expect("utf-8").to_string();
    server.etcdctl_ok(&["snapshot", "save", &file_arg]);
    server.etcdctl_ok(&["put", "/only/in/old", "data"]);
    let before = everything(&server);
    server.kill9();

    let mut bytes = std::fs::read(&file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, &bytes).expect("write the corrupt copy");
    let entries = common::sorted_entries(&db_dir(&server));

    let (ok, output) = run_to_exit(
        &mut server,
        &["--cluster-reset", "--cluster-reset-restore-path", &file_arg],
    )
    .await;
    assert!(!ok, "a corrupt snapshot must be refused: {output}");
    assert!(output.contains("damaged"), "{output}");
    assert!(output.contains("nothing was changed"), "{output}");
    assert_eq!(
        common::sorted_entries(&db_dir(&server)),
        entries,
        "no directory added or moved"
    );

    start_healthy(&mut server).await;
    assert_eq!(
        everything(&server),
        before,
        "the old data is served as before"
    );
}

#[tokio::test]
async fn foreign_files_are_refused_and_an_etcd_snapshot_is_named() {
    let mut server = K3rsServer::new("127.0.0.1", "node", Ports::pick());
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a snapshot").expect("write");
    let text_arg = text.to_str().expect("utf-8").to_string();
    let (ok, output) = run_to_exit(
        &mut server,
        &["--cluster-reset", "--cluster-reset-restore-path", &text_arg],
    )
    .await;
    assert!(!ok, "{output}");
    assert!(output.contains("not a k3rs snapshot"), "{output}");
    assert!(!db_dir(&server).join("etcd").exists(), "no store created");

    // etcd's own stream ends in its SHA-256 just as k3rs's does; k3rs names such a file.
    if !Path::new("/usr/bin/etcd").exists() {
        return;
    }
    let client_url = format!("http://127.0.0.1:{}", free_port());
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let mut etcd = Command::new("/usr/bin/etcd")
        .arg("--data-dir")
        .arg(dir.path().join("etcd"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning etcd");
    let file = dir.path().join("etcd.db");
    let file_arg = file.to_str().expect("utf-8").to_string();
    let deadline = Instant::now() + HEALTHY_TIMEOUT;
    let saved = loop {
        let output = etcdctl_with(&client_url, None, &["snapshot", "save", &file_arg]);
        if output.status.success() || Instant::now() > deadline {
            break output;
        }
        sleep(Duration::from_millis(200)).await;
    };
    let _ = etcd.kill();
    let _ = etcd.wait();
    assert!(saved.status.success(), "etcdctl against etcd: {saved:?}");
    let bytes = std::fs::read(&file).expect("etcd's snapshot");
    assert!(
        ends_in_its_sha256(&bytes),
        "etcd's stream ends in its SHA-256"
    );
    let (ok, output) = run_to_exit(
        &mut server,
        &["--cluster-reset", "--cluster-reset-restore-path", &file_arg],
    )
    .await;
    assert!(!ok, "{output}");
    assert!(output.contains("bbolt"), "{output}");
}

#[tokio::test]
async fn cluster_reset_on_the_survivor_of_a_lost_quorum_serves_alone_and_stays_single() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let mut client = cluster.client(leader).await;
    for n in 0..20 {
        client
            .put(format!("k{n:02}"), format!("v{n}"), None)
            .await
            .expect("put");
    }
    drop(client);
    // The survivor is member 0; it must hold every write before the others are lost (a
    // follower that lagged would lose what only the lost members had, as raft allows).
    let mut survivor = cluster.client(0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let local = survivor
            .get(
                "k19",
                Some(etcd_client::GetOptions::new().with_serializable()),
            )
            .await
            .expect("serializable get");
        if !local.kvs().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member 0 never applied the last put"
        );
        sleep(Duration::from_millis(50)).await;
    }
    drop(survivor);
    for member in &mut cluster.members {
        member.kill9();
    }

    // The survivor's data, placed where `k3rs server` keeps it.
    let mut server = K3rsServer::new("127.0.0.1", "m1", Ports::pick());
    std::fs::create_dir_all(db_dir(&server)).expect("db dir");
    std::fs::rename(cluster.members[0].data_dir(), db_dir(&server).join("etcd"))
        .expect("moving the member's data");

    let (ok, output) = run_to_exit(&mut server, &["--cluster-reset"]).await;
    assert!(ok, "cluster reset failed: {output}");
    assert!(output.contains("only member"), "{output}");

    for start in 0..2 {
        start_healthy(&mut server).await;
        let members = server.etcdctl_ok(&["member", "list"]);
        assert_eq!(members.lines().count(), 1, "start {start}: {members}");
        let (keys, _) = everything(&server);
        let kept: Vec<&Key> = keys.iter().filter(|k| k.key.starts_with(b"k")).collect();
        assert_eq!(kept.len(), 20, "start {start}: the data is kept");
        assert_eq!(kept[7].value, b"v7");
        server.etcdctl_ok(&["put", &format!("after-reset-{start}"), "ok"]);
        server.kill9();
    }
}

/// Polls until the server has written its sealed bootstrap data into the store.
async fn await_bootstrap_record(server: &K3rsServer) {
    let deadline = tokio::time::Instant::now() + HEALTHY_TIMEOUT;
    loop {
        let keys = server.etcdctl_ok(&["get", "/bootstrap/", "--prefix", "--keys-only"]);
        if !keys.trim().is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no /bootstrap/ record appeared in the store"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_restore_onto_a_new_machine_with_the_token_keeps_the_cluster_certificates() {
    let mut source = K3rsServer::new("127.0.0.1", "source", Ports::pick());
    source.start(&[
        "--cluster-init",
        "--token",
        "restore-secret",
        "--disable-apiserver",
    ]);
    source.wait_healthy(HEALTHY_TIMEOUT).await;
    source.etcdctl_ok(&["put", "/registry/kept", "yes"]);
    await_bootstrap_record(&source).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("saved.db");
    let file_arg = file.to_str().expect("utf-8 path").to_string();
    source.etcdctl_ok(&["snapshot", "save", &file_arg]);
    source.kill9();

    // Another token cannot open the sealed CAs: refused, nothing written.
    let mut wrong = K3rsServer::new("127.0.0.1", "wrong", Ports::pick());
    let (ok, output) = run_to_exit(
        &mut wrong,
        &[
            "--cluster-reset",
            "--cluster-reset-restore-path",
            &file_arg,
            "--token",
            "another-secret",
        ],
    )
    .await;
    assert!(!ok, "a restore with another token must fail: {output}");
    assert!(output.contains("sealed with another token"), "{output}");
    assert!(!wrong.tls_file("server-ca.crt").exists());
    assert!(!db_dir(&wrong).join("etcd").exists());

    let mut restored = K3rsServer::new("127.0.0.1", "restored", Ports::pick());
    let (ok, output) = run_to_exit(
        &mut restored,
        &[
            "--cluster-reset",
            "--cluster-reset-restore-path",
            &file_arg,
            "--token",
            "restore-secret",
        ],
    )
    .await;
    assert!(ok, "restore failed: {output}");
    assert!(
        output.contains("recovered the cluster's certificate authorities"),
        "{output}"
    );
    for ca in ["server-ca.crt", "etcd/server-ca.crt", "etcd/peer-ca.crt"] {
        assert_eq!(
            std::fs::read(restored.tls_file(ca)).expect("restored CA"),
            std::fs::read(source.tls_file(ca)).expect("source CA"),
            "{ca} comes back from the snapshot"
        );
    }
    start_healthy(&mut restored).await;
    // A client holding the old cluster's certificate is served by the restored cluster.
    let old_client = etcdctl_with(
        &restored.client_url(),
        Some(&source),
        &["get", "/registry/kept", "--print-value-only"],
    );
    assert!(old_client.status.success(), "{old_client:?}");
    assert_eq!(String::from_utf8_lossy(&old_client.stdout).trim(), "yes");
}
