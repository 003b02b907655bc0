//! `SimReport`: what one simulated seed did and what its checkers found.

use crate::history::{Operation, Response};
use crate::watch_log::{Reply, WatchRecord};

/// The outcome of one simulation.
#[derive(Debug)]
pub struct SimReport {
    pub seed: u64,
    pub trace_hash: u64,
    pub operations: usize,
    pub succeeded: usize,
    pub unknown: usize,
    /// Logical watches opened, the streams they used, and events they got.
    pub watches: usize,
    pub watch_streams: usize,
    pub watch_events: usize,
    /// Leases granted, and of those, revoked by a client.
    pub leases: usize,
    pub revoked: usize,
    pub faults: Vec<String>,
    /// Members replaced (removed, re-added on a wiped disk and promoted) successfully.
    pub replacements: usize,
    /// Raft snapshots members installed from their leaders.
    pub snapshot_installs: u64,
    pub leaders: Vec<String>,
    /// One line per logical watch: its range and each stream's member, start and end.
    pub watch_lines: Vec<String>,
    pub violations: Vec<String>,
    /// The whole history, for comparing two runs.
    pub history: Vec<Operation>,
}

impl SimReport {
    /// The report of a seed whose simulation broke (a member's raft loop failed or panicked):
    /// a failure, with `why` as its one violation.
    pub fn broken(seed: u64, why: String) -> Self {
        Self {
            seed,
            trace_hash: 0,
            operations: 0,
            succeeded: 0,
            unknown: 0,
            watches: 0,
            watch_streams: 0,
            watch_events: 0,
            leases: 0,
            revoked: 0,
            faults: Vec::new(),
            replacements: 0,
            snapshot_installs: 0,
            leaders: Vec::new(),
            watch_lines: Vec::new(),
            violations: vec![format!("the simulation broke: {why}")],
            history: Vec::new(),
        }
    }

    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// A short account, for logs and failure messages.
    pub fn summary(&self) -> String {
        let (lists, pages) = self
            .history
            .iter()
            .filter_map(|operation| match operation.response() {
                Some(Response::List { pages, .. }) => Some(pages.len()),
                _ => None,
            })
            .fold((0, 0), |(lists, pages), more| (lists + 1, pages + more));
        format!(
            "seed {}: {} operations ({} ok, {} unknown; {} paged lists, {} pages), {} watches \
             ({} streams, {} events), {} leases ({} revoked), {} faults ({} replacements), {} \
             raft snapshots installed, trace {:016x}, {} violations",
            self.seed,
            self.operations,
            self.succeeded,
            self.unknown,
            lists,
            pages,
            self.watches,
            self.watch_streams,
            self.watch_events,
            self.leases,
            self.revoked,
            self.faults.len(),
            self.replacements,
            self.snapshot_installs,
            self.trace_hash,
            self.violations.len()
        )
    }
}

/// One line describing a logical watch: its range and each stream's member, start and end.
pub fn watch_line(record: &WatchRecord) -> String {
    let target = &record.target;
    let streams: Vec<String> = record
        .segments
        .iter()
        .map(|segment| {
            format!(
                "m{}@{} {} replies, {}",
                segment.member,
                segment.start_revision,
                segment.replies.len(),
                segment.ended.as_deref().unwrap_or("open")
            )
        })
        .collect();
    format!(
        "watcher {} {:?}..{:?} prev_kv {} no_put {} no_delete {}: {streams:?}",
        record.watcher,
        target.key,
        target.range_end,
        target.prev_kv,
        target.no_put,
        target.no_delete
    )
}

/// How many events the watches got.
pub fn watch_events(records: &[WatchRecord]) -> usize {
    records
        .iter()
        .flat_map(|record| &record.segments)
        .flat_map(|segment| &segment.replies)
        .map(|reply| match reply {
            Reply::Events { events, .. } => events.len(),
            _ => 0,
        })
        .sum()
}
