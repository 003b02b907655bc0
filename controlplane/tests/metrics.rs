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
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Samples of a text exposition: `name{labels}` (as written) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            (
                series.to_string(),
                value.parse().expect("a numeric sample value"),
            )
        })
        .collect()
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
    let put = "grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Put\"";
    assert!(sample(&samples, &format!("grpc_server_started_total{{{put}}}")) >= f64::from(puts));
    assert!(
        sample(
            &samples,
            &format!("grpc_server_handled_total{{{put},grpc_code=\"OK\"}}")
        ) >= f64::from(puts)
    );
    let range = "grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Range\"";
    assert!(
        sample(
            &samples,
            &format!("grpc_server_handled_total{{{range},grpc_code=\"OK\"}}")
        ) >= 2.0
    );

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
    let revoke =
        "grpc_type=\"unary\",grpc_service=\"etcdserverpb.Lease\",grpc_method=\"LeaseRevoke\"";
    assert_eq!(
        sample(
            &samples,
            &format!("grpc_server_handled_total{{{revoke},grpc_code=\"NotFound\"}}")
        ),
        1.0
    );
    assert_eq!(sample(&samples, "etcd_debugging_lease_granted_total"), 1.0);
    assert_eq!(sample(&samples, "k3rs_leases_held"), 1.0);
}
