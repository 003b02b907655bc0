//! The member's own counters and latency histograms, for the metrics endpoint.
//!
//! Guarantees: recording never takes a lock or allocates (one or two relaxed atomic adds), so
//! it is safe on the raft driver's and the engine's hot paths; a [`HistogramSnapshot`] is
//! internally consistent enough for Prometheus (bucket counts are cumulative and never
//! exceed `count` as read). Durations are measured by callers with `tokio::time::Instant`, so
//! the simulation stays deterministic. Gauges that the raft status already holds (leader, term,
//! indexes) are not duplicated here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::mvcc::CommandResponse;
use crate::pb::etcdserverpb::response_op::Response as OpResponse;
use crate::pb::etcdserverpb::ResponseOp;

/// etcd's latency buckets for disk operations (`prometheus.ExponentialBuckets(0.001, 2, 14)`):
/// 1 ms doubling up to 8.192 s.
pub const DISK_BUCKETS_SECONDS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// A fixed-bucket latency histogram of [`DISK_BUCKETS_SECONDS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is above the largest bound.
    buckets: [AtomicU64; DISK_BUCKETS_SECONDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A histogram as read at one moment, in Prometheus's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative, ascending.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = DISK_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DISK_BUCKETS_SECONDS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The cumulative view. `count` is at least every bucket's count even while observations
    /// are being recorded concurrently.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0u64;
        let buckets = DISK_BUCKETS_SECONDS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, slot)| {
                cumulative += slot.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        let overflow = self.buckets[DISK_BUCKETS_SECONDS.len()].load(Ordering::Relaxed);
        let count = self
            .count
            .load(Ordering::Relaxed)
            .max(cumulative + overflow);
        HistogramSnapshot {
            buckets,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count,
        }
    }
}

/// Counters of one member, shared by its driver, handle and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Leader changes this member has seen (etcd_server_leader_changes_seen_total).
    pub leader_changes_seen: AtomicU64,
    /// Proposals refused or failed after being handed to raft (etcd_server_proposals_failed_total).
    pub proposals_failed: AtomicU64,
    /// Proposals handed to raft and not yet answered (etcd_server_proposals_pending).
    pub proposals_pending: AtomicU64,
    /// Synced raft log appends: entries and hard state written and fsynced in one engine write
    /// (etcd_disk_wal_fsync_duration_seconds).
    pub wal_fsync: Histogram,
    /// Applies of committed entries to the state tables (etcd_disk_backend_commit_duration_seconds).
    pub backend_commit: Histogram,
    /// Key-value writes applied, counting those inside transactions (etcd_mvcc_put_total).
    pub puts: AtomicU64,
    /// Delete-range operations applied, counting those inside transactions (etcd_mvcc_delete_total).
    pub deletes: AtomicU64,
    /// Transactions applied (etcd_mvcc_txn_total).
    pub txns: AtomicU64,
    /// Ranges served, counting those inside applied transactions (etcd_mvcc_range_total).
    pub ranges: AtomicU64,
    /// Leases granted (etcd_debugging_lease_granted_total).
    pub leases_granted: AtomicU64,
    /// Leases revoked, by clients or by expiry (etcd_debugging_lease_revoked_total).
    pub leases_revoked: AtomicU64,
}

impl Metrics {
    /// Counts what an applied command did, from its response.
    pub fn record_applied(&self, response: &CommandResponse) {
        match response {
            CommandResponse::Put(_) => add(&self.puts, 1),
            CommandResponse::DeleteRange(_) => add(&self.deletes, 1),
            CommandResponse::Txn(txn) => self.record_txn(&txn.responses),
            CommandResponse::LeaseGrant(_) => add(&self.leases_granted, 1),
            CommandResponse::LeaseRevoke(_) => add(&self.leases_revoked, 1),
            CommandResponse::Compaction(_)
            | CommandResponse::Empty
            | CommandResponse::Members(_) => {}
        }
    }

    fn record_txn(&self, responses: &[ResponseOp]) {
        add(&self.txns, 1);
        for op in responses {
            match &op.response {
                Some(OpResponse::ResponsePut(_)) => add(&self.puts, 1),
                Some(OpResponse::ResponseDeleteRange(_)) => add(&self.deletes, 1),
                Some(OpResponse::ResponseRange(_)) => add(&self.ranges, 1),
                Some(OpResponse::ResponseTxn(nested)) => self.record_txn(&nested.responses),
                None => {}
            }
        }
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{PutResponse, RangeResponse, TxnResponse};

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(20));

        let snapshot = histogram.snapshot();

        assert_eq!(snapshot.buckets.len(), 14);
        assert_eq!(snapshot.buckets[0], (0.001, 2), "a bound is inclusive");
        assert_eq!(snapshot.buckets[1], (0.002, 2));
        assert_eq!(snapshot.buckets[2], (0.004, 3));
        assert_eq!(snapshot.buckets[13], (8.192, 3));
        assert_eq!(snapshot.count, 4, "+Inf holds the 20 s observation");
        assert!((snapshot.sum_seconds - 20.0045).abs() < 1e-9);
    }

    #[test]
    fn txn_counts_the_operations_of_its_taken_branch() {
        let metrics = Metrics::default();
        let op = |response| ResponseOp {
            response: Some(response),
        };
        let nested = TxnResponse {
            responses: vec![op(OpResponse::ResponsePut(PutResponse::default()))],
            ..Default::default()
        };
        let txn = TxnResponse {
            responses: vec![
                op(OpResponse::ResponsePut(PutResponse::default())),
                op(OpResponse::ResponseRange(RangeResponse::default())),
                op(OpResponse::ResponseTxn(nested)),
            ],
            ..Default::default()
        };

        metrics.record_applied(&CommandResponse::Txn(txn));

        assert_eq!(get(&metrics.txns), 2);
        assert_eq!(get(&metrics.puts), 2);
        assert_eq!(get(&metrics.ranges), 1);
        assert_eq!(get(&metrics.deletes), 0);
    }
}
