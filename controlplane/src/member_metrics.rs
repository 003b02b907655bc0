//! The member's metrics as Prometheus text, under etcd's metric names wherever etcd has the
//! same metric (so dashboards and alerts written for etcd work unchanged).
//!
//! Guarantees: rendering only reads atomics, the raft status and (briefly) the store and
//! watch hub locks; it never waits on raft. Counters only grow while the process runs;
//! `etcd_server_proposals_committed_total` and `_applied_total` are gauges of the raft
//! indexes, as in etcd.

use etcd_api::grpc_metrics::GrpcMetrics;
use raftstore::metrics::{get, Metrics};
use raftstore::node::NodeHandle;

use crate::exposition::{Exposition, Kind};

/// Everything `/metrics` shows, rendered as text exposition.
pub fn render(handle: &NodeHandle, grpc: &GrpcMetrics) -> String {
    let mut out = Exposition::default();
    server(&mut out, handle);
    disk(&mut out, handle.metrics());
    mvcc(&mut out, handle);
    lease(&mut out, handle);
    grpc_counts(&mut out, grpc);
    out.finish()
}

fn flag(value: bool) -> f64 {
    if value {
        1.0
    } else {
        0.0
    }
}

fn server(out: &mut Exposition, handle: &NodeHandle) {
    let status = handle.status();
    let metrics = handle.metrics();
    out.single(
        Kind::Gauge,
        "etcd_server_has_leader",
        "Whether a leader exists: 1 if it does, 0 if not.",
        flag(status.has_leader()),
    );
    out.single(
        Kind::Gauge,
        "etcd_server_is_leader",
        "Whether this member is the leader: 1 if it is, 0 if not.",
        flag(status.is_leader()),
    );
    out.single(
        Kind::Gauge,
        "etcd_server_is_learner",
        "Whether this member is a learner: 1 if it is, 0 if not.",
        flag(status.is_learner),
    );
    out.single(
        Kind::Counter,
        "etcd_server_leader_changes_seen_total",
        "Leader changes this member has seen.",
        get(&metrics.leader_changes_seen) as f64,
    );
    out.single(
        Kind::Gauge,
        "etcd_server_proposals_committed_total",
        "The raft index committed, as this member knows it.",
        status.commit_index as f64,
    );
    out.single(
        Kind::Gauge,
        "etcd_server_proposals_applied_total",
        "The raft index this member has applied.",
        status.applied_index as f64,
    );
    out.single(
        Kind::Gauge,
        "etcd_server_proposals_pending",
        "Proposals handed to raft and not answered yet.",
        get(&metrics.proposals_pending) as f64,
    );
    out.single(
        Kind::Counter,
        "etcd_server_proposals_failed_total",
        "Proposals that failed (no leader, leader changed, timed out, stopped).",
        get(&metrics.proposals_failed) as f64,
    );
    let id = format!("{:x}", handle.member_id());
    let id_labels: &[(&str, &str)] = &[("server_id", &id)];
    out.family(
        Kind::Gauge,
        "etcd_server_id",
        "This member's id, in hex, as the label server_id; always 1.",
        [(id_labels, 1.0)],
    );
    let version_labels: &[(&str, &str)] = &[("server_version", etcd_api::SERVER_VERSION)];
    out.family(
        Kind::Gauge,
        "etcd_server_version",
        "The etcd version this member reports, as the label server_version; always 1.",
        [(version_labels, 1.0)],
    );
    out.single(
        Kind::Gauge,
        "etcd_server_quota_backend_bytes",
        "The storage quota this member reports, in bytes.",
        etcd_api::DB_SIZE_QUOTA_BYTES as f64,
    );
}

fn disk(out: &mut Exposition, metrics: &Metrics) {
    out.histogram(
        "etcd_disk_wal_fsync_duration_seconds",
        "Latency of synced raft log appends (entries and hard state, one fsync).",
        &metrics.wal_fsync.snapshot(),
    );
    out.histogram(
        "etcd_disk_backend_commit_duration_seconds",
        "Latency of writing one applied entry's changes to the state tables.",
        &metrics.backend_commit.snapshot(),
    );
}

fn mvcc(out: &mut Exposition, handle: &NodeHandle) {
    let metrics = handle.metrics();
    out.single(
        Kind::Gauge,
        "etcd_mvcc_db_total_size_in_bytes",
        "Size of the storage engine's files, in bytes.",
        handle.engine().size_bytes() as f64,
    );
    let (keys, current, compacted) = {
        let store = handle.store().read();
        (
            store.tree_index().len(),
            store.current_revision(),
            store.compacted_raw(),
        )
    };
    out.single(
        Kind::Gauge,
        "etcd_debugging_mvcc_keys_total",
        "Keys in the key index, deleted ones included until compacted.",
        keys as f64,
    );
    out.single(
        Kind::Gauge,
        "etcd_debugging_mvcc_current_revision",
        "The store's current revision.",
        current as f64,
    );
    out.single(
        Kind::Gauge,
        "etcd_debugging_mvcc_compact_revision",
        "The revision of the last compaction; -1 before the first.",
        compacted as f64,
    );
    for (name, help, counter) in [
        (
            "etcd_mvcc_put_total",
            "Puts applied, those inside transactions included.",
            &metrics.puts,
        ),
        (
            "etcd_mvcc_delete_total",
            "Delete-ranges applied, those inside transactions included.",
            &metrics.deletes,
        ),
        (
            "etcd_mvcc_txn_total",
            "Transactions applied.",
            &metrics.txns,
        ),
        (
            "etcd_mvcc_range_total",
            "Ranges served, those inside applied transactions included.",
            &metrics.ranges,
        ),
    ] {
        out.single(Kind::Counter, name, help, get(counter) as f64);
    }
    let (synced, unsynced, victims) = handle.watch_hub().watcher_counts();
    out.single(
        Kind::Gauge,
        "etcd_debugging_mvcc_watcher_total",
        "Watchers on this member.",
        (synced + unsynced + victims) as f64,
    );
    out.single(
        Kind::Gauge,
        "etcd_debugging_mvcc_slow_watcher_total",
        "Watchers behind the store's revision (catching up or waiting for their client).",
        (unsynced + victims) as f64,
    );
}

fn lease(out: &mut Exposition, handle: &NodeHandle) {
    let metrics = handle.metrics();
    out.single(
        Kind::Counter,
        "etcd_debugging_lease_granted_total",
        "Leases granted.",
        get(&metrics.leases_granted) as f64,
    );
    out.single(
        Kind::Counter,
        "etcd_debugging_lease_revoked_total",
        "Leases revoked, by clients or by expiry.",
        get(&metrics.leases_revoked) as f64,
    );
    out.single(
        Kind::Gauge,
        "k3rs_leases_held",
        "Leases granted and not yet revoked.",
        handle.store().read().leases().len() as f64,
    );
}

/// Labels in name order, as etcd's Go client writes them; every code of every method, zeros
/// included, as grpc-prometheus initialises them.
fn grpc_counts(out: &mut Exposition, grpc: &GrpcMetrics) {
    let rows = grpc.read();
    let started: Vec<[(&str, &str); 3]> = rows
        .iter()
        .map(|row| {
            [
                ("grpc_method", row.method),
                ("grpc_service", row.service),
                ("grpc_type", row.grpc_type.label()),
            ]
        })
        .collect();
    out.family(
        Kind::Counter,
        "grpc_server_started_total",
        "RPCs started on the server.",
        started
            .iter()
            .zip(&rows)
            .map(|(labels, row)| (&labels[..], row.started as f64)),
    );
    let handled: Vec<([(&str, &str); 4], u64)> = rows
        .iter()
        .flat_map(|row| {
            row.handled.iter().map(move |(code, count)| {
                (
                    [
                        ("grpc_code", *code),
                        ("grpc_method", row.method),
                        ("grpc_service", row.service),
                        ("grpc_type", row.grpc_type.label()),
                    ],
                    *count,
                )
            })
        })
        .collect();
    out.family(
        Kind::Counter,
        "grpc_server_handled_total",
        "RPCs completed on the server, by status code.",
        handled
            .iter()
            .map(|(labels, count)| (&labels[..], *count as f64)),
    );
}
