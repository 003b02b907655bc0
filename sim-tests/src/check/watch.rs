//! etcd's watch guarantees, judged against the archive of committed changes.
//!
//! For every logical watch (a stream and the streams that resumed it), each violation is
//! tagged with the guarantee it breaks:
//! - `[ordered]`: event revisions strictly increase from response to response (and never
//!   decrease inside one), and never go below the revision the watch asked to start at;
//!   response header revisions never go back on a stream and are never below their events;
//! - `[bookmark]`: no event arrives at or below a revision a progress notification already
//!   vouched for (so a progress revision means every earlier event was delivered);
//! - `[unique]`: no (revision, key) event is delivered twice;
//! - `[atomic]`: all events of one revision come in one response;
//! - `[reliable]`: every committed change in the watched range that the filters let through,
//!   from the start revision to the last revision the watch vouched for (by an event or a
//!   progress notification), is delivered; nothing else is (no event that was never
//!   committed, none outside the range), and delivered events equal the committed ones;
//! - `[resumable]`: a stream that resumed a broken one starts right after the last revision
//!   the broken one vouched for;
//! - `[prev_kv]`: with `prev_kv`, an update or delete carries exactly the key-value before it
//!   (it may be missing only when that revision was compacted), a create carries none; without
//!   `prev_kv` none is sent;
//! - `[filter]`: NOPUT watches get no PUT, NODELETE watches no DELETE;
//! - `[compacted]`: a compacted cancel names a compact revision above the revision the watch
//!   needed and not above the cluster's, and nothing follows it;
//! - `[caught up]`: a watch still open at the end vouched for the converged revision.

use std::collections::{BTreeMap, BTreeSet};

use crate::watch_log::{Event, EventKind, Kv, Reply, WatchRecord};

/// What the watches are judged against.
pub struct Truth<'a> {
    /// Every committed change, by main revision.
    pub archive: &'a BTreeMap<i64, Vec<Event>>,
    /// The cluster's compact revision at the end (0: never compacted).
    pub compact_revision: i64,
    /// The revision every member converged to, if they did; watches open at the end must
    /// reach it.
    pub converged_revision: Option<i64>,
}

/// Each key's changes by revision, for `prev_kv`.
type KeyHistory<'a> = BTreeMap<&'a str, BTreeMap<i64, &'a Event>>;

/// Every violation of every watch in `records`.
pub fn check(records: &[WatchRecord], truth: &Truth<'_>) -> Vec<String> {
    let mut by_key: KeyHistory<'_> = BTreeMap::new();
    for (revision, events) in truth.archive {
        for event in events {
            by_key
                .entry(event.kv.key.as_str())
                .or_default()
                .insert(*revision, event);
        }
    }
    // The last record of each watcher is the one still open at the end.
    let mut last_of_watcher: BTreeMap<usize, usize> = BTreeMap::new();
    for (index, record) in records.iter().enumerate() {
        last_of_watcher.insert(record.watcher, index);
    }
    let mut violations = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let open_at_end = last_of_watcher.get(&record.watcher) == Some(&index);
        let mut checker = WatchChecker::new(index, record, truth, &by_key);
        checker.run(open_at_end);
        violations.extend(checker.violations);
    }
    violations
}

/// The state of the check of one logical watch.
struct WatchChecker<'a> {
    index: usize,
    record: &'a WatchRecord,
    truth: &'a Truth<'a>,
    by_key: &'a KeyHistory<'a>,
    /// The first revision the watch wants, once known.
    start: Option<i64>,
    /// Every revision up to this one was vouched for (by events or progress).
    through: Option<i64>,
    /// `through` came from a progress notification, not from events.
    through_by_progress: bool,
    /// The last event revision delivered.
    last_event: Option<i64>,
    delivered: BTreeSet<(i64, String)>,
    compacted: bool,
    violations: Vec<String>,
}

impl<'a> WatchChecker<'a> {
    fn new(
        index: usize,
        record: &'a WatchRecord,
        truth: &'a Truth<'a>,
        by_key: &'a KeyHistory<'a>,
    ) -> Self {
        Self {
            index,
            record,
            truth,
            by_key,
            start: None,
            through: None,
            through_by_progress: false,
            last_event: None,
            delivered: BTreeSet::new(),
            compacted: false,
            violations: Vec::new(),
        }
    }

    fn violate(&mut self, guarantee: &str, what: String) {
        let target = &self.record.target;
        self.violations.push(format!(
            "watch {} (watcher {}, {:?}..{:?}, prev_kv {}, no_put {}, no_delete {}) \
             [{guarantee}]: {what}",
            self.index,
            self.record.watcher,
            target.key,
            target.range_end,
            target.prev_kv,
            target.no_put,
            target.no_delete
        ));
    }

    fn run(&mut self, open_at_end: bool) {
        for (number, segment) in self.record.segments.iter().enumerate() {
            if self.compacted {
                self.violate(
                    "compacted",
                    format!("stream {number} was opened after the watch was compacted"),
                );
            }
            let mut segment_start = None;
            if segment.start_revision > 0 {
                segment_start = Some(segment.start_revision);
                match self.through {
                    Some(through) if segment.start_revision > through + 1 => self.violate(
                        "resumable",
                        format!(
                            "stream {number} (member {}) resumed at {} after revision {through}",
                            segment.member, segment.start_revision
                        ),
                    ),
                    _ => {}
                }
                self.start.get_or_insert(segment.start_revision);
            } else if self.through.is_some() {
                self.violate(
                    "resumable",
                    format!("stream {number} resumed from \"now\" instead of a revision"),
                );
            }
            let mut last_header = 0;
            for (position, reply) in segment.replies.iter().enumerate() {
                let at = format!(
                    "stream {number} (member {}) reply {position}",
                    segment.member
                );
                if self.compacted {
                    self.violate("compacted", format!("{at} came after the compacted cancel"));
                }
                let header = header_revision(reply);
                if header < last_header {
                    self.violate(
                        "ordered",
                        format!("{at}: header revision {header} after {last_header}"),
                    );
                }
                last_header = last_header.max(header);
                match reply {
                    Reply::Created { revision } => {
                        if segment.start_revision <= 0 {
                            segment_start = Some(revision + 1);
                            self.start.get_or_insert(revision + 1);
                            self.vouch(*revision, false);
                        }
                    }
                    Reply::Events { revision, events } => {
                        self.events(&at, *revision, events, segment_start);
                    }
                    // A stream resumed on a lagging member may vouch for less than an
                    // earlier stream did: still true, so not a violation, and it takes
                    // nothing back.
                    Reply::Progress { revision } => self.vouch(*revision, true),
                    Reply::Compacted {
                        compact_revision, ..
                    } => self.compacted_cancel(&at, *compact_revision, segment_start),
                    Reply::Canceled { .. } => {}
                }
            }
        }
        self.reliable();
        if let (true, false, Some(converged)) =
            (open_at_end, self.compacted, self.truth.converged_revision)
        {
            if self.through.is_none_or(|through| through < converged) {
                self.violate(
                    "caught up",
                    format!(
                        "open at the end, it vouched only for revision {:?}, not the converged \
                         revision {converged}",
                        self.through
                    ),
                );
            }
        }
    }

    fn vouch(&mut self, revision: i64, by_progress: bool) {
        if self.through.is_none_or(|through| revision > through) {
            self.through = Some(revision);
            self.through_by_progress = by_progress;
        }
    }

    fn events(&mut self, at: &str, header: i64, events: &[Event], segment_start: Option<i64>) {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return;
        };
        let (low, high) = (first.revision(), last.revision());
        if let Some(through) = self.through {
            if low <= through {
                let (guarantee, what) = if self.last_event == Some(low) {
                    ("atomic", "split from its earlier events of that revision")
                } else if self.through_by_progress {
                    ("bookmark", "at or below a progress notification's revision")
                } else {
                    ("ordered", "at or below a revision already delivered")
                };
                self.violate(
                    guarantee,
                    format!("{at}: event at revision {low} {what} ({through})"),
                );
            }
        }
        if let Some(start) = segment_start {
            if low < start {
                self.violate(
                    "ordered",
                    format!("{at}: event at revision {low} before the start revision {start}"),
                );
            }
        }
        if high > header {
            self.violate(
                "ordered",
                format!("{at}: event at revision {high} above the header revision {header}"),
            );
        }
        let mut previous = low;
        for event in events {
            self.event(at, event, previous);
            previous = event.revision();
        }
        self.last_event = Some(high);
        self.vouch(high, false);
    }

    fn event(&mut self, at: &str, event: &Event, previous: i64) {
        let revision = event.revision();
        let key = event.kv.key.as_str();
        if revision < previous {
            self.violate(
                "ordered",
                format!("{at}: revision {revision} after {previous} in one response"),
            );
        }
        if !self.delivered.insert((revision, key.to_string())) {
            self.violate(
                "unique",
                format!("{at}: {key:?} at revision {revision} delivered again"),
            );
        }
        let target = &self.record.target;
        if !target.passes(event.kind) {
            self.violate("filter", format!("{at}: {event:?} got through the filter"));
        }
        if !target.covers(key) {
            self.violate("reliable", format!("{at}: {key:?} is outside the range"));
        }
        let committed = self
            .truth
            .archive
            .get(&revision)
            .and_then(|events| events.iter().find(|other| other.kv.key == key));
        match committed {
            None => self.violate("reliable", format!("{at}: {event:?} was never committed")),
            Some(committed) if committed.kind != event.kind || committed.kv != event.kv => self
                .violate(
                    "reliable",
                    format!("{at}: delivered {event:?}, committed {committed:?}"),
                ),
            Some(_) => {}
        }
        self.prev_kv(at, event);
    }

    fn prev_kv(&mut self, at: &str, event: &Event) {
        let revision = event.revision();
        if !self.record.target.prev_kv {
            if event.prev_kv.is_some() {
                self.violate(
                    "prev_kv",
                    format!("{at}: {event:?} has a prev_kv nobody asked for"),
                );
            }
            return;
        }
        let expected: Option<&Kv> = self
            .by_key
            .get(event.kv.key.as_str())
            .and_then(|changes| changes.range(..revision).next_back())
            .and_then(|(_, before)| (before.kind == EventKind::Put).then_some(&before.kv));
        match (&event.prev_kv, expected) {
            (Some(got), Some(expected)) if got != expected => self.violate(
                "prev_kv",
                format!("{at}: {event:?} should carry prev_kv {expected:?}"),
            ),
            (Some(_), None) => self.violate(
                "prev_kv",
                format!("{at}: {event:?} has a prev_kv but the key did not exist before"),
            ),
            (None, Some(expected)) if revision > self.truth.compact_revision => self.violate(
                "prev_kv",
                format!("{at}: {event:?} lacks prev_kv {expected:?}"),
            ),
            _ => {}
        }
    }

    fn compacted_cancel(&mut self, at: &str, compact_revision: i64, segment_start: Option<i64>) {
        let needed = self
            .last_event
            .map(|last| last + 1)
            .or(segment_start)
            .or(self.start);
        if let Some(needed) = needed {
            if needed >= compact_revision {
                self.violate(
                    "compacted",
                    format!(
                        "{at}: canceled as compacted at {compact_revision}, but revision \
                         {needed} it needed is still readable"
                    ),
                );
            }
        }
        if compact_revision > self.truth.compact_revision {
            self.violate(
                "compacted",
                format!(
                    "{at}: compact revision {compact_revision} above the cluster's, {}",
                    self.truth.compact_revision
                ),
            );
        }
        self.compacted = true;
    }

    /// Everything committed between the start and the last vouched-for revision was delivered.
    fn reliable(&mut self) {
        let (Some(start), Some(through)) = (self.start, self.through) else {
            return;
        };
        if through < start {
            return;
        }
        let target = &self.record.target;
        let missed: Vec<String> = self
            .truth
            .archive
            .range(start..=through)
            .flat_map(|(revision, events)| events.iter().map(move |event| (revision, event)))
            .filter(|(_, event)| target.covers(&event.kv.key) && target.passes(event.kind))
            .filter(|(revision, event)| {
                !self.delivered.contains(&(**revision, event.kv.key.clone()))
            })
            .map(|(revision, event)| format!("{:?} {:?}@{revision}", event.kind, event.kv.key))
            .collect();
        if !missed.is_empty() {
            let shown = &missed[..missed.len().min(10)];
            self.violate(
                "reliable",
                format!(
                    "{} committed changes in {start}..={through} never delivered: {shown:?}",
                    missed.len()
                ),
            );
        }
    }
}

fn header_revision(reply: &Reply) -> i64 {
    match reply {
        Reply::Created { revision }
        | Reply::Events { revision, .. }
        | Reply::Progress { revision }
        | Reply::Compacted { revision, .. }
        | Reply::Canceled { revision, .. } => *revision,
    }
}

#[cfg(test)]
mod tests;
