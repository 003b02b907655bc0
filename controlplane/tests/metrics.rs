//! The etcd metrics port the k3s way: `k3rs server` serves Prometheus text, `/health`,
//! `/readyz` and `/livez` over plain HTTP on 2381, with etcd's metric names.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::k3rs_server::{K3rsServer, Ports, DEFAULT_METRICS_PORT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Start-up bound for one server.
const READY: Duration = Duration::from_secs(90);

/// One HTTP answer: status code, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// `GET path` over a fresh HTTP/1.1 connection to `addr` (bounded).
async fn get(addr: &str, path: &str) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connecting");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("sending the request");
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .expect("reading the answer");
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the answer within 10 s");
    let text = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|coding| coding == "chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &str) -> String {
    let mut payload = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return payload;
        }
        payload.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// Samples of a text exposition: `name{labels}` (labels in name order, as [`series`] writes
/// them) → value. Label values here never hold `,` or `"`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let series = match series.split_once('{') {
                None => series.to_string(),
                Some((name, labels)) => {
                    let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                    labels.sort_unstable();
                    format!("{name}{{{}}}", labels.join(","))
                }
            };
            (series, value.parse().expect("a numeric sample value"))
        })
        .collect()
}

/// `name{labels}` with the labels in name order.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels
        .iter()
        .map(|(label, value)| format!("{label}=\"{value}\""))
        .collect();
    labels.sort_unstable();
    format!("{name}{{{}}}", labels.join(","))
}

/// The `grpc_server_handled_total` series of a unary method with `code`.
fn handled(service: &str, method: &str, code: &str) -> String {
    series(
        "grpc_server_handled_total",
        &[
            ("grpc_type", "unary"),
            ("grpc_service", service),
            ("grpc_method", method),
            ("grpc_code", code),
        ],
    )
}

fn sample(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series}; samples: {samples:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served_on_2381_with_etcd_names() {
    let ports = Ports {
        metrics: DEFAULT_METRICS_PORT,
        ..Ports::pick()
    };
    let mut server = K3rsServer::new("127.0.0.1", "metrics-1", ports);
    server.start(&["--cluster-init"]);
    server.wait_healthy(READY).await;
    let puts = 5;
    for n in 0..puts {
        server.etcdctl_ok(&["put", &format!("/registry/m{n}"), "v"]);
    }
    for _ in 0..2 {
        server.etcdctl_ok(&["get", "/registry/m0"]);
    }
    let addr = server.metrics_addr();
    assert_eq!(addr, "127.0.0.1:2381");

    let metrics = get(&addr, "/metrics").await;

    assert_eq!(metrics.status, 200, "{}", metrics.body);
    assert_eq!(
        metrics.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples = samples(&metrics.body);
    assert_eq!(sample(&samples, "etcd_server_has_leader"), 1.0);
    assert_eq!(sample(&samples, "etcd_server_is_leader"), 1.0);
    assert_eq!(sample(&samples, "etcd_server_is_learner"), 0.0);
    assert!(sample(&samples, "etcd_server_leader_changes_seen_total") >= 1.0);
    let applied = sample(&samples, "etcd_server_proposals_applied_total");
    assert!(applied >= f64::from(puts), "applied {applied}");
    assert!(sample(&samples, "etcd_server_proposals_committed_total") >= applied);
    assert_eq!(sample(&samples, "etcd_server_proposals_pending"), 0.0);
    assert!(samples
        .keys()
        .any(|series| series.starts_with("etcd_server_id{server_id=\"")));
    let fsyncs = sample(&samples, "etcd_disk_wal_fsync_duration_seconds_count");
    assert!(fsyncs > 0.0);
    assert_eq!(
        sample(
            &samples,
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        fsyncs
    );
    assert!(samples.contains_key("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}"));
    assert!(samples.contains_key("etcd_disk_wal_fsync_duration_seconds_sum"));
    assert!(sample(&samples, "etcd_disk_backend_commit_duration_seconds_count") >= f64::from(puts));
    assert!(sample(&samples, "etcd_mvcc_db_total_size_in_bytes") > 0.0);
    assert!(sample(&samples, "etcd_debugging_mvcc_keys_total") >= f64::from(puts));
    assert!(sample(&samples, "etcd_mvcc_put_total") >= f64::from(puts));
    assert!(sample(&samples, "etcd_mvcc_range_total") >= 2.0);
    assert_eq!(sample(&samples, "etcd_debugging_mvcc_watcher_total"), 0.0);
    assert_eq!(sample(&samples, "etcd_debugging_lease_granted_total"), 0.0);
    let started_puts = series(
        "grpc_server_started_total",
        &[
            ("grpc_type", "unary"),
            ("grpc_service", "etcdserverpb.KV"),
            ("grpc_method", "Put"),
        ],
    );
    assert!(sample(&samples, &started_puts) >= f64::from(puts));
    let kv = "etcdserverpb.KV";
    assert!(sample(&samples, &handled(kv, "Put", "OK")) >= f64::from(puts));
    assert_eq!(sample(&samples, &handled(kv, "Put", "Unavailable")), 0.0);
    assert!(sample(&samples, &handled(kv, "Range", "OK")) >= 2.0);

    let health = get(&addr, "/health").await;
    assert_eq!(health.status, 200, "{}", health.body);
    let health: serde_json::Value = serde_json::from_str(&health.body).expect("JSON health");
    assert_eq!(health, serde_json::json!({"health": "true", "reason": ""}));

    let ready = get(&addr, "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok"));
    let live = get(&addr, "/livez").await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok"));
    assert_eq!(get(&addr, "/nothing-here").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_counted_by_their_grpc_code() {
    let mut server = K3rsServer::new("127.0.0.1", "metrics-2", Ports::pick());
    server.start(&["--cluster-init"]);
    server.wait_healthy(READY).await;
    // Revoking a lease that does not exist is etcd's NotFound.
    let refused = server.etcdctl(&["lease", "revoke", "1234"]);
    assert!(!refused.status.success());
    server.etcdctl_ok(&["lease", "grant", "60"]);

    let metrics = get(&server.metrics_addr(), "/metrics").await;

    let samples = samples(&metrics.body);
    let lease = "etcdserverpb.Lease";
    assert_eq!(
        sample(&samples, &handled(lease, "LeaseRevoke", "NotFound")),
        1.0
    );
    assert_eq!(sample(&samples, &handled(lease, "LeaseGrant", "OK")), 1.0);
    assert_eq!(sample(&samples, "etcd_debugging_lease_granted_total"), 1.0);
    assert_eq!(sample(&samples, "k3rs_leases_held"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_listen_metrics_urls_serves_the_same_endpoints() {
    let metrics_addr = format!("127.0.0.1:{}", common::free_port());
    let server = common::TestServer::start_with_args(&[
        "--listen-metrics-urls",
        &format!("http://{metrics_addr}"),
    ])
    .await;
    let mut client = server.client().await;
    client.put("k", "v", None).await.expect("put");

    let metrics = get(&metrics_addr, "/metrics").await;

    assert_eq!(metrics.status, 200);
    let samples = samples(&metrics.body);
    assert_eq!(sample(&samples, "etcd_server_has_leader"), 1.0);
    assert!(sample(&samples, &handled("etcdserverpb.KV", "Put", "OK")) >= 1.0);
    assert!(sample(&samples, "etcd_mvcc_put_total") >= 1.0);
    assert!(sample(&samples, "etcd_disk_wal_fsync_duration_seconds_count") > 0.0);
    let health = get(&metrics_addr, "/health").await;
    assert_eq!(health.status, 200, "{}", health.body);
}

/// A member whose cluster's other member never starts: no leader, so not ready and unhealthy,
/// while the metrics port (bound before catching up) still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_false_without_a_leader() {
    if common::is_reference_run() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let (peer, absent_peer, client) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let metrics_addr = format!("127.0.0.1:{}", common::free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_k3rs"))
        .arg("etcd")
        .args(["--name", "a", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &url(client)])
        .args(["--advertise-client-urls", &url(client)])
        .args(["--listen-peer-urls", &url(peer)])
        .args(["--initial-advertise-peer-urls", &url(peer)])
        .args([
            "--initial-cluster",
            &format!("a={},b={}", url(peer), url(absent_peer)),
        ])
        .args(["--listen-metrics-urls", &format!("http://{metrics_addr}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning k3rs etcd");
    let _child = common::KillOnDrop(child);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&metrics_addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics port not open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let live = get(&metrics_addr, "/livez").await;
    let ready = get(&metrics_addr, "/readyz").await;
    let health = get(&metrics_addr, "/health").await;
    let metrics = get(&metrics_addr, "/metrics").await;

    assert_eq!(live.status, 200);
    assert_eq!(ready.status, 503);
    assert_eq!(health.status, 503, "{}", health.body);
    let health: serde_json::Value = serde_json::from_str(&health.body).expect("JSON health");
    assert_eq!(health["health"], "false");
    assert_ne!(health["reason"], "");
    assert_eq!(
        sample(&samples(&metrics.body), "etcd_server_has_leader"),
        0.0
    );
}
