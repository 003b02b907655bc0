//! Raft safety, sampled from every serving member's raft status between simulation steps.
//!
//! Guarantees checked:
//! - at most one leader per term (election safety);
//! - on a running member, term, commit index and applied index never go back;
//! - across a crash and restart, a member's term never goes back either (it is in the hard
//!   state, fsynced before any vote or message that depends on it). Terms are followed by
//!   member id, so a replacement member on a wiped disk (a new id) starts afresh.
//!
//! The commit index may go back across a restart: Raft keeps it as volatile state, and raft-rs
//! (like etcd) does not fsync a hard state whose only change is the commit index, so a crash
//! can lose the last advances. That loses no committed entry — the entries themselves were
//! fsynced before they were acknowledged — which the archive checks do verify.
//!
//! Leadership changes and raft snapshot installs are logged for the trace and for failure
//! reports; installs are counted, so a test can tell that a run exercised them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use raftstore::node::NodeStatus;

/// The raft statuses seen so far, and what they broke.
#[derive(Debug, Default)]
pub struct RaftObserver {
    /// Each running member's last status, by index (removed while it is down).
    running: BTreeMap<usize, NodeStatus>,
    /// Each member's highest term ever seen, across restarts, by member id.
    highest_term: BTreeMap<u64, u64>,
    /// Members (by id) seen down since their last status.
    restarted: BTreeSet<u64>,
    leader_of_term: BTreeMap<u64, usize>,
    /// Raft snapshots the members installed from their leaders.
    pub snapshot_installs: u64,
    pub log: Vec<String>,
    pub violations: Vec<String>,
}

impl RaftObserver {
    /// Takes in the statuses of the members serving at `now` (by index).
    pub fn observe(&mut self, now: Duration, statuses: &BTreeMap<usize, NodeStatus>) {
        let at = now.as_millis();
        let down: Vec<usize> = self
            .running
            .keys()
            .filter(|member| !statuses.contains_key(member))
            .copied()
            .collect();
        for member in down {
            if let Some(last) = self.running.remove(&member) {
                self.restarted.insert(last.member_id);
            }
        }
        for (&member, status) in statuses {
            match self.running.get(&member) {
                Some(last) if last.member_id == status.member_id => {
                    for (what, before, after) in [
                        ("term", last.term, status.term),
                        ("commit index", last.commit_index, status.commit_index),
                        ("applied index", last.applied_index, status.applied_index),
                    ] {
                        if after < before {
                            self.violations.push(format!(
                                "{at}ms member {member}: {what} went back from {before} to {after}"
                            ));
                        }
                    }
                }
                _ => {
                    if let Some(&term) = self.highest_term.get(&status.member_id) {
                        let restarted = self.restarted.remove(&status.member_id);
                        if status.term < term {
                            self.violations.push(format!(
                                "{at}ms member {member}: term went back from {term} to {} \
                                 (restarted: {restarted})",
                                status.term
                            ));
                        }
                    }
                }
            }
            let installed_before = match self.running.get(&member) {
                Some(last) if last.member_id == status.member_id => last.snapshots_installed,
                _ => 0,
            };
            if status.snapshots_installed > installed_before {
                self.snapshot_installs += status.snapshots_installed - installed_before;
                self.log.push(format!(
                    "{at}ms member {member} installed a raft snapshot (applied index {})",
                    status.applied_index
                ));
            }
            let highest = self.highest_term.entry(status.member_id).or_default();
            *highest = (*highest).max(status.term);
            let leadership_changed = self
                .running
                .get(&member)
                .is_none_or(|last| (last.leader_id, last.term) != (status.leader_id, status.term));
            if leadership_changed {
                self.log.push(format!(
                    "{at}ms member {member} term {} leader {:x}",
                    status.term, status.leader_id
                ));
            }
            self.running.insert(member, *status);
            if status.is_leader() {
                match self.leader_of_term.get(&status.term) {
                    Some(other) if *other != member => self.violations.push(format!(
                        "{at}ms two leaders in term {}: members {other} and {member}",
                        status.term
                    )),
                    Some(_) => {}
                    None => {
                        self.leader_of_term.insert(status.term, member);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(member_id: u64, leader_id: u64, term: u64, commit: u64, applied: u64) -> NodeStatus {
        NodeStatus {
            member_id,
            leader_id,
            term,
            commit_index: commit,
            applied_index: applied,
            ..NodeStatus::default()
        }
    }

    fn observe(observer: &mut RaftObserver, statuses: &[(usize, NodeStatus)]) {
        observer.observe(Duration::ZERO, &statuses.iter().copied().collect());
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut observer = RaftObserver::default();
        observe(&mut observer, &[(0, status(1, 1, 2, 5, 5))]);
        observe(&mut observer, &[(1, status(2, 2, 2, 5, 5))]);
        assert!(observer.violations[0].contains("two leaders in term 2"));
    }

    #[test]
    fn leaders_of_different_terms_pass() {
        let mut observer = RaftObserver::default();
        observe(&mut observer, &[(0, status(1, 1, 2, 5, 5))]);
        observe(&mut observer, &[(1, status(2, 2, 3, 6, 6))]);
        assert!(observer.violations.is_empty(), "{:?}", observer.violations);
    }

    #[test]
    fn an_index_going_back_on_a_running_member_is_caught() {
        let mut observer = RaftObserver::default();
        observe(&mut observer, &[(0, status(1, 1, 2, 5, 5))]);
        observe(&mut observer, &[(0, status(1, 1, 2, 5, 4))]);
        assert!(observer.violations[0].contains("applied index went back"));
    }

    #[test]
    fn a_term_going_back_across_a_restart_is_caught() {
        let mut observer = RaftObserver::default();
        observe(&mut observer, &[(0, status(1, 1, 3, 9, 9))]);
        observe(&mut observer, &[]);
        // Commit and applied index may restart lower (volatile in Raft); the term may not.
        observe(&mut observer, &[(0, status(1, 2, 3, 7, 3))]);
        assert!(observer.violations.is_empty(), "{:?}", observer.violations);
        observe(&mut observer, &[]);
        observe(&mut observer, &[(0, status(1, 2, 2, 9, 9))]);
        assert!(observer.violations[0].contains("term went back"));
    }

    #[test]
    fn a_replacement_member_on_a_wiped_disk_starts_its_terms_afresh() {
        let mut observer = RaftObserver::default();
        observe(&mut observer, &[(0, status(1, 1, 5, 9, 9))]);
        observe(&mut observer, &[]);
        observe(&mut observer, &[(0, status(7, 2, 0, 0, 0))]);
        assert!(observer.violations.is_empty(), "{:?}", observer.violations);
        observe(&mut observer, &[(0, status(7, 2, 6, 9, 9))]);
        observe(&mut observer, &[(0, status(7, 2, 5, 9, 9))]);
        assert!(observer.violations[0].contains("term went back"));
    }
}
