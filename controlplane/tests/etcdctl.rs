//! The real `k3rs` binary driven by Debian's `etcdctl` 3.4 (`/usr/bin/etcdctl`, API v3): the
//! commands and flags users and scripts rely on, with their exact output.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::TestServer;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const ETCDCTL: &str = "/usr/bin/etcdctl";
/// etcdctl's own timeouts are 2 s (dial) and 5 s (command); this bounds the whole process.
const ETCDCTL_BOUND: Duration = Duration::from_secs(30);

/// Runs `etcdctl --endpoints=<server> args...`, feeding `stdin`; bounded by [`ETCDCTL_BOUND`].
async fn run_etcdctl(server: &TestServer, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", server.endpoint()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning etcdctl");
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("writing etcdctl's stdin");
    drop(input);
    tokio::time::timeout(ETCDCTL_BOUND, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("etcdctl {args:?} did not finish within {ETCDCTL_BOUND:?}"))
        .expect("waiting for etcdctl")
}

/// Runs etcdctl expecting success; returns its stdout.
async fn etcdctl(server: &TestServer, args: &[&str]) -> String {
    let output = run_etcdctl(server, args, "").await;
    assert!(
        output.status.success(),
        "etcdctl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("etcdctl prints UTF-8")
}

/// Runs etcdctl with `-w json` and parses its stdout.
async fn etcdctl_json(server: &TestServer, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.extend(["-w", "json"]);
    let stdout = etcdctl(server, &with_json).await;
    serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("etcdctl json {stdout:?}: {err}"))
}

/// etcdctl's json prints keys and values base64-encoded.
fn decode(field: &Value) -> String {
    let text = field
        .as_str()
        .unwrap_or_else(|| panic!("expected a base64 string, got {field}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("valid base64");
    String::from_utf8(bytes).expect("UTF-8 content")
}

/// The decoded keys of a json range response.
fn json_keys(response: &Value) -> Vec<String> {
    response["kvs"]
        .as_array()
        .map(|kvs| kvs.iter().map(|kv| decode(&kv["key"])).collect())
        .unwrap_or_default()
}

async fn put_all(server: &TestServer, pairs: &[(&str, &str)]) {
    for (key, value) in pairs {
        assert_eq!(etcdctl(server, &["put", key, value]).await, "OK\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_prints_ok_and_stores_the_value() {
    let server = TestServer::start().await;

    assert_eq!(
        etcdctl(&server, &["put", "greeting", "hello"]).await,
        "OK\n"
    );

    let mut client = server.client().await;
    let got = client.get("greeting", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prefix_prints_each_key_and_value() {
    let server = TestServer::start().await;
    put_all(&server, &[("a/1", "x"), ("a/2", "y"), ("b", "z")]).await;

    assert_eq!(
        etcdctl(&server, &["get", "a/", "--prefix"]).await,
        "a/1\nx\na/2\ny\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_limit_reports_more_and_the_total_count() {
    let server = TestServer::start().await;
    put_all(
        &server,
        &[("a/1", "x"), ("a/2", "y"), ("a/3", "z"), ("b", "w")],
    )
    .await;

    let response = etcdctl_json(&server, &["get", "a/", "--prefix", "--limit=2"]).await;
    assert_eq!(json_keys(&response), ["a/1", "a/2"]);
    assert_eq!(response["more"], Value::Bool(true));
    assert_eq!(response["count"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_rev_prints_the_value_at_that_revision() {
    let server = TestServer::start().await;
    put_all(&server, &[("k", "v1")]).await;
    let first = etcdctl_json(&server, &["get", "k"]).await["header"]["revision"]
        .as_i64()
        .expect("header revision");
    put_all(&server, &[("k", "v2")]).await;

    let rev = format!("--rev={first}");
    assert_eq!(etcdctl(&server, &["get", "k", &rev]).await, "k\nv1\n");
    assert_eq!(etcdctl(&server, &["get", "k"]).await, "k\nv2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_sort_by_and_order_sort_the_keys() {
    let server = TestServer::start().await;
    // create order: c, a, b; values: a=1 < c=2 < b=3
    put_all(&server, &[("s/c", "2"), ("s/a", "1"), ("s/b", "3")]).await;

    let cases: [(&str, &str, [&str; 3]); 5] = [
        ("CREATE", "ASCEND", ["s/c", "s/a", "s/b"]),
        ("CREATE", "DESCEND", ["s/b", "s/a", "s/c"]),
        ("MODIFY", "DESCEND", ["s/b", "s/a", "s/c"]),
        ("VALUE", "ASCEND", ["s/a", "s/c", "s/b"]),
        ("KEY", "DESCEND", ["s/c", "s/b", "s/a"]),
    ];
    for (target, order, expected) in cases {
        let sort_by = format!("--sort-by={target}");
        let order_flag = format!("--order={order}");
        let response =
            etcdctl_json(&server, &["get", "s/", "--prefix", &sort_by, &order_flag]).await;
        assert_eq!(json_keys(&response), expected, "{sort_by} {order_flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_keys_only_prints_no_values() {
    let server = TestServer::start().await;
    put_all(&server, &[("k/1", "secret-1"), ("k/2", "secret-2")]).await;

    let stdout = etcdctl(&server, &["get", "k/", "--prefix", "--keys-only"]).await;
    assert!(!stdout.contains("secret"), "values printed: {stdout:?}");
    let printed: Vec<&str> = stdout.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(printed, ["k/1", "k/2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_serializable_consistency_prints_the_value() {
    let server = TestServer::start().await;
    put_all(&server, &[("local", "value")]).await;

    assert_eq!(
        etcdctl(&server, &["get", "local", "--consistency=s"]).await,
        "local\nvalue\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_from_key_prints_every_key_from_it() {
    let server = TestServer::start().await;
    put_all(&server, &[("a", "1"), ("b", "2"), ("c", "3")]).await;

    assert_eq!(
        etcdctl(&server, &["get", "b", "--from-key"]).await,
        "b\n2\nc\n3\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_prev_kv_prints_the_count_and_the_deleted_pair() {
    let server = TestServer::start().await;
    put_all(&server, &[("k", "v"), ("other", "o")]).await;

    assert_eq!(
        etcdctl(&server, &["del", "k", "--prev-kv"]).await,
        "1\nk\nv\n"
    );
    assert_eq!(etcdctl(&server, &["get", "k"]).await, "");
    assert_eq!(etcdctl(&server, &["get", "other"]).await, "other\no\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_prefix_deletes_every_key_under_it() {
    let server = TestServer::start().await;
    put_all(&server, &[("p/1", "a"), ("p/2", "b"), ("q", "c")]).await;

    assert_eq!(etcdctl(&server, &["del", "p/", "--prefix"]).await, "2\n");
    assert_eq!(etcdctl(&server, &["get", "p/", "--prefix"]).await, "");
    assert_eq!(etcdctl(&server, &["get", "q"]).await, "q\nc\n");
}

/// The stdout of `etcdctl txn -i` fed `script`.
async fn interactive_txn(server: &TestServer, script: &str) -> String {
    let output = run_etcdctl(server, &["txn", "-i"], script).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "etcdctl txn -i failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_interactive_runs_success_ops_when_compares_hold() {
    let server = TestServer::start().await;
    put_all(&server, &[("k", "v1"), ("other", "o")]).await;

    let script =
        "val(\"k\") = \"v1\"\nver(\"k\") = \"1\"\n\nput k v2\nget other\n\nput k failed\n\n";
    let stdout = interactive_txn(&server, script).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"SUCCESS"), "stdout: {stdout:?}");
    assert!(stdout.ends_with("OK\n\nother\no\n"), "stdout: {stdout:?}");
    assert_eq!(etcdctl(&server, &["get", "k"]).await, "k\nv2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_interactive_runs_failure_ops_when_a_compare_fails() {
    let server = TestServer::start().await;
    put_all(&server, &[("k", "v1")]).await;

    // kube-apiserver style: create only if absent (mod revision 0).
    let script = "mod(\"k\") = \"0\"\n\nput k overwritten\n\nget k\n\n";
    let stdout = interactive_txn(&server, script).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"FAILURE"), "stdout: {stdout:?}");
    assert!(stdout.ends_with("k\nv1\n"), "stdout: {stdout:?}");
    assert_eq!(etcdctl(&server, &["get", "k"]).await, "k\nv1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_makes_older_revisions_unreadable() {
    let server = TestServer::start().await;
    put_all(&server, &[("k", "v1")]).await;
    let old = etcdctl_json(&server, &["get", "k"]).await["header"]["revision"]
        .as_i64()
        .expect("header revision");
    put_all(&server, &[("k", "v2"), ("k", "v3")]).await;
    let compact_to = old + 1;

    let stdout = etcdctl(&server, &["compaction", &compact_to.to_string()]).await;
    assert_eq!(stdout, format!("compacted revision {compact_to}\n"));

    let output = run_etcdctl(&server, &["get", "k", &format!("--rev={old}")], "").await;
    assert!(
        !output.status.success(),
        "a read below the compacted revision must fail"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Error: etcdserver: mvcc: required revision has been compacted"),
        "stderr: {stderr}"
    );
}

/// Parses `MAJOR.MINOR.PATCH` (ignoring any pre-release or build suffix).
fn semver(version: &str) -> (u64, u64, u64) {
    let core = version.split(['-', '+']).next().unwrap_or(version);
    let parts: Vec<u64> = core
        .split('.')
        .map(|part| {
            part.parse()
                .unwrap_or_else(|_| panic!("version {version:?} is not semver"))
        })
        .collect();
    assert_eq!(
        parts.len(),
        3,
        "version {version:?} is not MAJOR.MINOR.PATCH"
    );
    (parts[0], parts[1], parts[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_status_reports_a_recent_version_and_itself_as_leader() {
    let server = TestServer::start().await;

    let statuses = etcdctl_json(&server, &["endpoint", "status"]).await;
    let entries = statuses.as_array().expect("a list of endpoint statuses");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["Endpoint"], server.endpoint());
    let status = &entries[0]["Status"];
    let version = status["version"].as_str().expect("version string");
    assert!(
        semver(version) >= (3, 5, 13),
        "kube-apiserver needs >= 3.5.13 for watch progress requests; got {version}"
    );
    let member_id = status["header"]["member_id"].as_u64().expect("member id");
    assert_ne!(member_id, 0);
    assert_eq!(
        status["leader"].as_u64(),
        Some(member_id),
        "the only member leads"
    );
    assert!(status["raftTerm"].as_u64().expect("raft term") > 0);
    assert!(status["dbSize"].as_i64().expect("db size") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_health_says_healthy() {
    let server = TestServer::start().await;

    let output = run_etcdctl(&server, &["endpoint", "health"], "").await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "endpoint health failed: {text}");
    assert!(
        text.contains(&format!("{} is healthy", server.endpoint())),
        "output: {text}"
    );

    let json = etcdctl_json(&server, &["endpoint", "health"]).await;
    assert_eq!(json[0]["health"], Value::Bool(true), "json: {json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_list_shows_the_one_started_member() {
    let server = TestServer::start().await;

    let stdout = etcdctl(&server, &["member", "list"]).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one member: {stdout:?}");
    let fields: Vec<&str> = lines[0].split(", ").collect();
    assert_eq!(
        fields.len(),
        6,
        "ID, status, name, peer URLs, client URLs, is learner: {stdout:?}"
    );
    let peer_url = server.peer_url();
    let client_url = server.client_url();
    assert_eq!(
        fields[1..],
        [
            "started",
            "test",
            peer_url.as_str(),
            client_url.as_str(),
            "false"
        ]
    );

    let json = etcdctl_json(&server, &["member", "list"]).await;
    let members = json["members"].as_array().expect("members");
    assert_eq!(members.len(), 1);
    let id = members[0]["ID"].as_u64().expect("member ID");
    assert_eq!(
        format!("{id:x}"),
        fields[0],
        "the listed ID is the member's id in hex"
    );
    assert_eq!(json["header"]["member_id"].as_u64(), Some(id));
}
