//! The archive: every committed change, read from the members' stores between simulation
//! steps — the ground truth the watch checker and the lost-write checker judge against.
//!
//! Guarantees: [`Archive::sample`] reads, from every serving member, the changes its store
//! applied since the last sample (above its compact revision, so no revision is read half
//! compacted), and keeps each main revision's events in sub-revision order. A member's
//! store holds only applied, hence committed, entries; so every archived change was
//! committed. Two members holding different changes for one revision is a violation (state
//! machine safety). Sampling after every step means a change is archived unless it is applied
//! and compacted away within one step on every member, which the operator never asks for
//! (it compacts at revisions at least a second old).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cluster::SimCluster;
use crate::watch_log::Event;

/// At most this many disagreements are described.
const MAX_VIOLATIONS: usize = 20;

/// The committed changes seen so far.
#[derive(Debug, Default)]
pub struct Archive {
    /// Main revision → its events, in sub-revision order, without `prev_kv`.
    pub revisions: BTreeMap<i64, Vec<Event>>,
    /// Simulated time each revision was first seen applied (on any member).
    pub first_seen: BTreeMap<i64, Duration>,
    /// Per member, the highest revision already read from it.
    cursors: BTreeMap<usize, i64>,
    pub violations: Vec<String>,
}

impl Archive {
    /// Reads what every serving member applied since the last sample; `now` is the
    /// simulated time.
    pub fn sample(&mut self, now: Duration, cluster: &SimCluster) {
        for (index, disk) in cluster.disks.iter().enumerate() {
            let handle = disk.handle.lock().clone();
            let Some(handle) = handle else {
                // Crashed: after a restart it may have lost unsynced rows; read it again.
                self.cursors.remove(&index);
                continue;
            };
            let Some(store) = handle.store().try_read() else {
                continue;
            };
            let current = store.current_revision();
            let cursor = self.cursors.get(&index).copied().unwrap_or(0).min(current);
            if current <= cursor {
                self.cursors.insert(index, cursor);
                continue;
            }
            let from = (cursor + 1).max(store.compact_revision() + 1);
            match store.history(from, current, usize::MAX, false) {
                Ok(history) => {
                    let mut by_revision: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
                    for event in &history.events {
                        let event = Event::from_pb(event);
                        by_revision.entry(event.revision()).or_default().push(event);
                    }
                    for (revision, events) in by_revision {
                        self.merge(now, index, revision, events);
                    }
                }
                Err(err) => self.violate(format!(
                    "member {index}: reading its history from revision {from}: {err}"
                )),
            }
            self.cursors.insert(index, current);
        }
    }

    fn merge(&mut self, now: Duration, member: usize, revision: i64, events: Vec<Event>) {
        match self.revisions.get(&revision) {
            Some(known) if *known != events => {
                let message = format!(
                    "members applied different changes at revision {revision}: {known:?} \
                     elsewhere, {events:?} on member {member}"
                );
                self.violate(message);
            }
            Some(_) => {}
            None => {
                self.revisions.insert(revision, events);
                self.first_seen.insert(revision, now);
            }
        }
    }

    fn violate(&mut self, message: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(message);
        }
    }

    /// The highest archived revision (1, the empty store's, when nothing was written).
    pub fn last_revision(&self) -> i64 {
        self.revisions.keys().next_back().copied().unwrap_or(1)
    }
}
