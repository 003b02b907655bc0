//! The real `k3rs` binary's Watch and Lease services driven by Debian's `etcdctl` 3.4
//! (`/usr/bin/etcdctl`, API v3): `watch` (with history, prefix and `prev_kv`, and interactive
//! with progress requests) and the `lease` commands, with their exact output.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::TestServer;
use etcd_client::Client;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

const ETCDCTL: &str = "/usr/bin/etcdctl";
/// etcdctl's own timeouts are 2 s (dial) and 5 s (command); this bounds a whole process.
const ETCDCTL_BOUND: Duration = Duration::from_secs(30);
/// Bound on each line a running `etcdctl watch` must print.
const LINE_BOUND: Duration = Duration::from_secs(10);

fn etcdctl_command(server: &TestServer, args: &[&str]) -> Command {
    let mut command = Command::new(ETCDCTL);
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", server.endpoint()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `etcdctl args...` to completion, bounded by [`ETCDCTL_BOUND`].
async fn run_etcdctl(server: &TestServer, args: &[&str]) -> Output {
    let child = etcdctl_command(server, args)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning etcdctl");
    timeout(ETCDCTL_BOUND, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("etcdctl {args:?} did not finish within {ETCDCTL_BOUND:?}"))
        .expect("waiting for etcdctl")
}

/// Runs etcdctl expecting success; returns its stdout.
async fn etcdctl(server: &TestServer, args: &[&str]) -> String {
    let output = run_etcdctl(server, args).await;
    assert!(
        output.status.success(),
        "etcdctl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("etcdctl prints UTF-8")
}

/// A running `etcdctl watch ...`, killed when dropped.
struct RunningWatch {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl RunningWatch {
    fn spawn(server: &TestServer, args: &[&str]) -> Self {
        let mut child = etcdctl_command(server, args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawning etcdctl watch");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        RunningWatch {
            child,
            stdin,
            stdout,
        }
    }

    /// The next `count` lines of stdout, each within [`LINE_BOUND`].
    async fn lines(&mut self, count: usize) -> Vec<String> {
        let mut lines = Vec::with_capacity(count);
        for _ in 0..count {
            let line = timeout(LINE_BOUND, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("etcdctl printed only {lines:?} within the bound"))
                .expect("reading etcdctl's stdout")
                .unwrap_or_else(|| panic!("etcdctl exited after printing {lines:?}"));
            lines.push(line);
        }
        lines
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("writing to etcdctl's stdin");
        self.stdin.flush().await.expect("flushing etcdctl's stdin");
    }
}

impl Drop for RunningWatch {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Puts `key = value` and returns the revision of the put.
async fn put(client: &mut Client, key: &str, value: &str) -> i64 {
    let response = client.put(key, value, None).await.expect("put");
    response.header().expect("put header").revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prefix_rev_prev_kv_prints_history_and_live_events() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = put(&mut client, "a/1", "v1").await;
    put(&mut client, "a/1", "v2").await;
    client.delete("a/1", None).await.expect("delete");
    put(&mut client, "b", "outside").await;

    let rev = format!("--rev={first}");
    let mut watch = RunningWatch::spawn(&server, &["watch", "--prefix", &rev, "--prev-kv", "a/"]);
    // etcdctl prints an event as its type, then prev_kv's key and value (if any), then the
    // key and value; a delete's value is empty.
    let history = [
        "PUT", "a/1", "v1", //
        "PUT", "a/1", "v1", "a/1", "v2", //
        "DELETE", "a/1", "v2", "a/1", "",
    ];
    assert_eq!(watch.lines(history.len()).await, history);

    put(&mut client, "a/2", "v3").await;
    assert_eq!(watch.lines(3).await, ["PUT", "a/2", "v3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_interactive_prints_events_and_progress() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = put(&mut client, "key", "v1").await;

    let mut watch = RunningWatch::spawn(&server, &["watch", "-i"]);
    watch.send(&format!("watch key --rev={first}")).await;
    assert_eq!(watch.lines(3).await, ["PUT", "key", "v1"]);
    let second = put(&mut client, "key", "v2").await;
    assert_eq!(watch.lines(3).await, ["PUT", "key", "v2"]);

    watch.send("progress").await;
    assert_eq!(watch.lines(1).await, [format!("progress notify: {second}")]);
}

/// The lease id in `lease <16 hex digits> ...` lines, as etcdctl prints it (`%016x`).
fn lease_id_of(line: &str) -> String {
    let hex = line
        .strip_prefix("lease ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("not a lease line: {line:?}"));
    assert_eq!(hex.len(), 16, "a zero-padded hex id: {line:?}");
    hex.to_string()
}

/// `etcdctl lease grant <ttl>`; returns the printed hex id.
async fn lease_grant(server: &TestServer, ttl: u32) -> String {
    let stdout = etcdctl(server, &["lease", "grant", &ttl.to_string()]).await;
    let hex = lease_id_of(&stdout);
    assert_eq!(stdout, format!("lease {hex} granted with TTL({ttl}s)\n"));
    hex
}

fn parse_hex_id(hex: &str) -> i64 {
    u64::from_str_radix(hex, 16).expect("a hex lease id") as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_grant_put_timetolive_and_list_print_the_lease() {
    let server = TestServer::start().await;
    let hex = lease_grant(&server, 60).await;

    let lease_flag = format!("--lease={hex}");
    assert_eq!(
        etcdctl(&server, &["put", &lease_flag, "k", "v"]).await,
        "OK\n"
    );
    let mut client = server.client().await;
    let got = client.get("k", None).await.expect("get");
    assert_eq!(got.kvs()[0].lease(), parse_hex_id(&hex));

    let stdout = etcdctl(&server, &["lease", "timetolive", &hex, "--keys"]).await;
    let remaining = stdout
        .strip_prefix(&format!("lease {hex} granted with TTL(60s), remaining("))
        .and_then(|rest| rest.strip_suffix("s), attached keys([k])\n"))
        .unwrap_or_else(|| panic!("timetolive printed {stdout:?}"));
    let remaining: i64 = remaining.parse().expect("remaining seconds");
    assert!((50..=60).contains(&remaining), "remaining {remaining}");

    assert_eq!(
        etcdctl(&server, &["lease", "list"]).await,
        format!("found 1 leases\n{hex}\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_keep_alive_once_prints_the_renewed_ttl() {
    let server = TestServer::start().await;
    let hex = lease_grant(&server, 60).await;

    assert_eq!(
        etcdctl(&server, &["lease", "keep-alive", "--once", &hex]).await,
        format!("lease {hex} keepalived with TTL(60)\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_revoke_prints_revoked_and_deletes_the_attached_keys() {
    let server = TestServer::start().await;
    let hex = lease_grant(&server, 60).await;
    let lease_flag = format!("--lease={hex}");
    assert_eq!(
        etcdctl(&server, &["put", &lease_flag, "k", "v"]).await,
        "OK\n"
    );

    assert_eq!(
        etcdctl(&server, &["lease", "revoke", &hex]).await,
        format!("lease {hex} revoked\n")
    );
    assert_eq!(etcdctl(&server, &["get", "k"]).await, "");
    assert_eq!(
        etcdctl(&server, &["lease", "timetolive", &hex]).await,
        format!("lease {hex} already expired\n")
    );

    let again = run_etcdctl(&server, &["lease", "revoke", &hex]).await;
    assert!(!again.status.success(), "revoking twice fails");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("Error: failed to revoke lease (etcdserver: requested lease not found)"),
        "stderr: {stderr}"
    );
}
