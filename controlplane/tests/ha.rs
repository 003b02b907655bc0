//! High availability the k3s way: `k3rs server --cluster-init` on 127.0.0.1, then servers on
//! 127.0.0.2 and 127.0.0.3 joining with `--server https://127.0.0.1:PORT --token-file ...`;
//! etcdctl with the generated certificates; refused tokens; restart and rebuild.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::k3rs_server::{etcdctl_tls, etcdctl_with, K3rsServer, Ports};

/// Start-up, join and catch-up bound for one server.
const READY: Duration = Duration::from_secs(90);

/// `member list -w simple` lines: `id, started, name, peer urls, client urls, is learner`.
fn members(server: &K3rsServer) -> Vec<Vec<String>> {
    server
        .etcdctl_ok(&["member", "list"])
        .lines()
        .map(|line| line.split(", ").map(str::to_string).collect())
        .collect()
}

/// Waits until `server` lists exactly `names` (by node-name prefix) as started voters.
async fn await_voters(server: &K3rsServer, node_names: &[&str]) {
    let deadline = tokio::time::Instant::now() + READY;
    loop {
        let listed = members(server);
        let voters: Vec<&str> = listed
            .iter()
            .filter(|member| member.len() == 6 && member[1] == "started" && member[5] == "false")
            .map(|member| member[2].as_str())
            .collect();
        let all_there = listed.len() == node_names.len()
            && node_names.iter().all(|node| {
                voters
                    .iter()
                    .any(|name| name.starts_with(&format!("{node}-")))
            });
        if all_there {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not {node_names:?} as voters within {READY:?}: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Puts `key` = `v`, retrying (bounded) while an election runs; whether it was acknowledged.
async fn put_with_retries(server: &K3rsServer, key: &str) -> bool {
    for _ in 0..20 {
        if server.etcdctl(&["put", key, "v"]).status.success() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Puts `load-<n>` through `endpoints` until `stop` (at most 5,000 puts), each with a bounded
/// etcdctl run; returns the keys whose put was acknowledged.
fn background_puts(endpoints: &str, certs: &[PathBuf; 3], stop: &AtomicBool) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for n in 0..5_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("load-{n:05}");
        let output = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoints])
            .args(["--command-timeout=5s", "--dial-timeout=2s"])
            .arg(format!("--cacert={}", certs[0].display()))
            .arg(format!("--cert={}", certs[1].display()))
            .arg(format!("--key={}", certs[2].display()))
            .args(["put", &key, "v"])
            .output()
            .expect("running etcdctl");
        if output.status.success() {
            acknowledged.push(key);
        }
    }
    acknowledged
}

/// The first server, then two joiners with the first one's token file.
async fn three_servers(ports: Ports) -> Vec<K3rsServer> {
    let mut first = K3rsServer::new("127.0.0.1", "node-1", ports);
    first.start(&["--cluster-init"]);
    first.wait_healthy(READY).await;
    let token_file = first.token_file().display().to_string();
    let url = first.supervisor_url();
    let mut servers = vec![first];
    for (ip, name) in [("127.0.0.2", "node-2"), ("127.0.0.3", "node-3")] {
        let mut server = K3rsServer::new(ip, name, ports);
        server.start(&["--server", &url, "--token-file", &token_file]);
        server.wait_healthy(READY).await;
        servers.push(server);
    }
    await_voters(&servers[0], &["node-1", "node-2", "node-3"]).await;
    servers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_join_with_the_token_and_serve_only_clients_with_certificates() {
    let ports = Ports::pick();
    let servers = three_servers(ports).await;

    // The token file is the k3s format, private to its owner.
    let token = std::fs::read_to_string(servers[0].token_file()).expect("token file");
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "{token}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(servers[0].token_file())
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    for key in [
        "etcd/server-ca.key",
        "etcd/peer-ca.key",
        "etcd/client.key",
        "server-ca.key",
    ] {
        let mode = std::fs::metadata(servers[1].tls_file(key))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    // A write on one server is read on every other, through mTLS.
    servers[1].etcdctl_ok(&["put", "joined", "yes"]);
    for server in &servers {
        let got = server.etcdctl_ok(&["get", "joined", "--print-value-only"]);
        assert_eq!(got.trim(), "yes", "on {}", server.node_name);
    }
    // Peer and client URLs are https on the node's own address.
    for member in members(&servers[0]) {
        assert!(member[3].starts_with("https://127.0.0."), "{member:?}");
        assert!(member[4].starts_with("https://127.0.0."), "{member:?}");
    }

    // Without a client certificate, or in plaintext, the client port refuses.
    let endpoint = servers[0].client_url();
    let plain = etcdctl_with(&endpoint, None, &["get", "joined"]);
    assert!(
        !plain.status.success(),
        "no client certificate must be refused"
    );
    let http = etcdctl_with(
        &endpoint.replace("https://", "http://"),
        Some(&servers[0]),
        &["get", "joined"],
    );
    assert!(!http.status.success(), "plaintext must be refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_or_setting_is_refused_and_nothing_changes() {
    let ports = Ports::pick();
    let mut first = K3rsServer::new("127.0.0.1", "node-1", ports);
    first.start(&["--cluster-init", "--token", "first-secret"]);
    first.wait_healthy(READY).await;
    let url = first.supervisor_url();
    let real = std::fs::read_to_string(first.token_file()).expect("token file");
    let real = real.trim();
    let (hash_part, _) = real.split_once("::").expect("K10 token");
    let foreign = format!("K10{}::server:first-secret", "0".repeat(64));
    let wrong_secret = format!("{hash_part}::server:not-the-secret");
    let cases = [
        (
            vec!["--token", foreign.as_str()],
            "does not match the token",
        ),
        (
            vec!["--token", wrong_secret.as_str()],
            "refused the token's secret",
        ),
        (
            vec!["--token", real, "--election-timeout", "2000"],
            "critical configuration value mismatch: --election-timeout",
        ),
    ];
    for (index, (args, reason)) in cases.into_iter().enumerate() {
        let mut joiner = K3rsServer::new("127.0.0.2", &format!("bad-{index}"), ports);
        let mut all_args = vec!["--server", url.as_str()];
        all_args.extend(args);
        joiner.start(&all_args);
        let status = joiner.wait_exit(READY).await;
        assert!(!status.success(), "joiner {index} must fail");
        let log = joiner.logs();
        assert!(log.contains(reason), "expected {reason:?} in:\n{log}");
        // Nothing written: no certificate authority taken, no member added.
        assert!(
            !joiner.tls_file("etcd/peer-ca.key").exists(),
            "case {index}"
        );
        assert_eq!(
            members(&first).len(),
            1,
            "case {index}: {:?}",
            members(&first)
        );
    }

    // Another machine taking the node name of a running server is refused; that server stays.
    let mut twin = K3rsServer::new("127.0.0.2", "node-1", ports);
    twin.start(&["--server", url.as_str(), "--token", real]);
    let status = twin.wait_exit(READY).await;
    assert!(!status.success(), "a second node-1 must not join");
    let log = twin.logs();
    assert!(log.contains("already has node name \"node-1\""), "{log}");
    assert_eq!(members(&first).len(), 1, "{:?}", members(&first));
    first.etcdctl_ok(&["put", "still", "serving"]);

    // A server whose data dir holds another cluster, pointed at this one with its token,
    // refuses to start and keeps its own data.
    let mut other = K3rsServer::new("127.0.0.3", "other", ports);
    other.start(&["--cluster-init"]);
    other.wait_healthy(READY).await;
    other.etcdctl_ok(&["put", "mine", "kept"]);
    other.kill9();
    other.start(&["--server", url.as_str(), "--token", real]);
    let status = other.wait_exit(READY).await;
    assert!(
        !status.success(),
        "a server of another cluster must not start"
    );
    let log = other.logs();
    assert!(
        log.contains(&format!("--server {url} belongs to another cluster")),
        "{log}"
    );
    assert_eq!(members(&first).len(), 1, "{:?}", members(&first));
    other.start(&["--cluster-init"]);
    other.wait_healthy(READY).await;
    let kept = other.etcdctl_ok(&["get", "mine", "--print-value-only"]);
    assert_eq!(kept.trim(), "kept");

    // The client port demands a client certificate of its own cluster: trusting the right CA
    // is not enough, and another cluster's client certificate is refused.
    let endpoint = first.client_url();
    let no_certificate = etcdctl_tls(&endpoint, Some(&first), None, &["get", "mine"]);
    assert!(!no_certificate.status.success(), "{no_certificate:?}");
    let foreign = etcdctl_tls(&endpoint, Some(&first), Some(&other), &["get", "mine"]);
    assert!(!foreign.status.success(), "{foreign:?}");
    let own = etcdctl_tls(&endpoint, Some(&first), Some(&first), &["get", "mine"]);
    assert!(own.status.success(), "{own:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_restart_with_their_command_line_and_a_rebuilt_one_rejoins() {
    let ports = Ports::pick();
    let mut servers = three_servers(ports).await;

    // A writer keeps putting through all three endpoints (etcdctl fails over) while each
    // server in turn is killed with -9 and restarted; every put it saw acknowledged must
    // survive on every server.
    let endpoints: Vec<String> = servers.iter().map(K3rsServer::client_url).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, endpoints) = (stop.clone(), endpoints.join(","));
        let certs = [
            servers[0].tls_file("etcd/server-ca.crt"),
            servers[0].tls_file("etcd/client.crt"),
            servers[0].tls_file("etcd/client.key"),
        ];
        std::thread::spawn(move || background_puts(&endpoints, &certs, &stop))
    };
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        servers[round].kill9();
        let survivor = &servers[(round + 1) % 3];
        for index in 0..5 {
            let key = format!("round-{round}-{index}");
            if put_with_retries(survivor, &key).await {
                acknowledged.push(key);
            }
        }
        servers[round].restart();
        servers[round].wait_healthy(READY).await;
    }
    await_voters(&servers[0], &["node-1", "node-2", "node-3"]).await;
    stop.store(true, Ordering::Relaxed);
    let loaded = writer.join().expect("the writer thread");
    eprintln!(
        "background writer: {} puts acknowledged across three kill -9 rounds",
        loaded.len()
    );
    assert_eq!(
        acknowledged.len(),
        15,
        "two of three servers up must take every write"
    );
    assert!(
        loaded.len() >= 10,
        "the background writer got only {} puts through",
        loaded.len()
    );
    for server in &servers {
        let listed = server.etcdctl_ok(&["get", "load-", "--prefix", "--keys-only"]);
        let present: std::collections::HashSet<&str> =
            listed.lines().filter(|line| !line.is_empty()).collect();
        for key in &loaded {
            assert!(
                present.contains(key.as_str()),
                "acknowledged {key} lost on {}",
                server.node_name
            );
        }
        for key in &acknowledged {
            let value = server.etcdctl_ok(&["get", key, "--print-value-only", "--consistency=l"]);
            assert_eq!(value.trim(), "v", "{key} on {}", server.node_name);
        }
    }

    // Remove node-3 through the etcd API: it stops. Wipe it and start it again with the same
    // name: it rejoins as a new member in place of the old entry.
    let listed = members(&servers[0]);
    let node3 = listed
        .iter()
        .find(|member| member[2].starts_with("node-3-"))
        .expect("node-3 listed");
    servers[0].etcdctl_ok(&["member", "remove", &node3[0]]);
    // A removed member stops by itself.
    servers[2].wait_exit(READY).await;
    servers[2].wipe();
    servers[2].restart();
    servers[2].wait_healthy(READY).await;
    await_voters(&servers[0], &["node-1", "node-2", "node-3"]).await;
    let value = servers[2].etcdctl_ok(&["get", "round-0-0", "--print-value-only"]);
    assert_eq!(value.trim(), "v");
}
