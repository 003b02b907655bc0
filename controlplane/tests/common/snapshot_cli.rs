//! `k3rs etcd-snapshot` as the snapshot tests run it: against one server's supervisor URL,
//! with its data dir for the token, and the environment cleared of settings that would change
//! what is asked.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use super::k3rs_server::{K3rsServer, Ports};

pub const READY: Duration = Duration::from_secs(90);
pub const RESET_TIMEOUT: Duration = Duration::from_secs(120);

/// `k3rs etcd-snapshot <args>` against `server`, with its data dir (for the token) and its
/// supervisor URL.
pub fn snapshot_cli(server: &K3rsServer, args: &[&str]) -> Output {
    let data_dir = server.data_dir();
    let (subcommand, rest) = args.split_first().expect("a subcommand");
    Command::new(env!("CARGO_BIN_EXE_k3rs"))
        .args(["etcd-snapshot", subcommand])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--etcd-server", &server.supervisor_url()])
        .args(rest)
        .env_remove("K3RS_ETCD_TOKEN")
        .env_remove("K3RS_NODE_NAME")
        .env_remove("K3RS_ETCD_SNAPSHOT_DIR")
        .env_remove("K3RS_ETCD_SNAPSHOT_RETENTION")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("running k3rs etcd-snapshot")
}

/// Like [`snapshot_cli`], panicking with the output unless it succeeds; returns stdout.
pub fn snapshot_ok(server: &K3rsServer, args: &[&str]) -> String {
    let output = snapshot_cli(server, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "k3rs etcd-snapshot {args:?} failed: {stdout}{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.logs()
    );
    stdout
}

/// Saves and returns the snapshot's name from `Snapshot <name> saved.` (the first line; an
/// upload to S3 adds a second).
pub fn save(server: &K3rsServer, args: &[&str]) -> String {
    let mut all = vec!["save"];
    all.extend_from_slice(args);
    let stdout = snapshot_ok(server, &all);
    stdout
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("Snapshot "))
        .and_then(|rest| rest.strip_suffix(" saved."))
        .unwrap_or_else(|| panic!("unexpected save output {stdout:?}"))
        .to_string()
}

/// `ls -o json`: (name, node, location, size, status) of each snapshot.
pub fn list_json(server: &K3rsServer) -> Vec<serde_json::Value> {
    let stdout = snapshot_ok(server, &["ls", "-o", "json"]);
    serde_json::from_str::<Vec<serde_json::Value>>(&stdout).expect("ls -o json is a JSON list")
}

pub fn names_in(list: &[serde_json::Value]) -> Vec<String> {
    let mut names: Vec<String> = list
        .iter()
        .map(|entry| entry["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

pub fn snapshot_dir(server: &K3rsServer) -> PathBuf {
    server
        .data_dir()
        .join("server")
        .join("db")
        .join("snapshots")
}

/// A new single server; with no `args`, scheduled snapshots are off so that only the test's
/// own snapshots exist.
pub async fn first_server(node_name: &str, args: &[&str]) -> K3rsServer {
    let mut server = K3rsServer::new("127.0.0.1", node_name, Ports::pick());
    let mut all = vec!["--cluster-init"];
    if args.is_empty() {
        all.push("--etcd-disable-snapshots");
    }
    all.extend_from_slice(args);
    server.start(&all);
    server.wait_healthy(READY).await;
    server
}
