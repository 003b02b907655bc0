//! `ExpiryClock`: the leader's deadlines for its leases.
//!
//! Guarantees:
//! - deadlines exist only while this member leads ([`ExpiryClock::promote`] …
//!   [`ExpiryClock::demote`]); a follower never reports a lease expired;
//! - on promotion every lease gets its full TTL plus `extend` from now, so a lease is never
//!   expired early because leadership moved or the member restarted;
//! - [`ExpiryClock::due`] hands out each expired lease for revocation once, then again only
//!   after [`REVOKE_RETRY`] if it still exists (its revoke may have been lost with a leader);
//! - a lease handed out for revocation stays expired: it is never renewed again and has no time
//!   left (as etcd, which answers a keep-alive of an expired lease only with "not found"), so a
//!   keep-alive can never report a TTL for a lease whose revoke is on its way.
//!
//! Time comes from `tokio::time`, so the simulation controls it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

/// How long an expired lease waits before its revoke is proposed again (etcd's
/// `expiredLeaseRetryInterval`).
pub const REVOKE_RETRY: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
pub struct ExpiryClock {
    leading: bool,
    deadlines: HashMap<i64, Instant>,
    /// (deadline, id) for every lease, soonest first.
    queue: BTreeSet<(Instant, i64)>,
    /// Leases [`ExpiryClock::due`] handed out for revocation: expired for good.
    revoking: HashSet<i64>,
}

fn seconds(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

impl ExpiryClock {
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// This member became leader: every lease in `ttls` (id, TTL seconds) expires `ttl +
    /// extend` from `now`.
    pub fn promote(
        &mut self,
        now: Instant,
        ttls: impl IntoIterator<Item = (i64, i64)>,
        extend: Duration,
    ) {
        self.demote();
        self.leading = true;
        for (id, ttl) in ttls {
            self.set(id, now + seconds(ttl) + extend);
        }
    }

    /// This member stopped leading: it forgets every deadline.
    pub fn demote(&mut self) {
        self.leading = false;
        self.deadlines.clear();
        self.queue.clear();
        self.revoking.clear();
    }

    /// Lease `id` was granted (or is renewed) with `ttl` seconds at `now`.
    pub fn start(&mut self, id: i64, ttl: i64, now: Instant) {
        if self.leading {
            self.set(id, now + seconds(ttl));
        }
    }

    /// Renews lease `id` for `ttl` seconds if it is known and not yet expired; returns whether
    /// it was.
    pub fn renew(&mut self, id: i64, ttl: i64, now: Instant) -> bool {
        if self.revoking.contains(&id) {
            return false;
        }
        match self.deadlines.get(&id) {
            Some(deadline) if *deadline > now => {
                self.set(id, now + seconds(ttl));
                true
            }
            _ => false,
        }
    }

    /// Lease `id` is gone.
    pub fn remove(&mut self, id: i64) {
        self.revoking.remove(&id);
        if let Some(deadline) = self.deadlines.remove(&id) {
            self.queue.remove(&(deadline, id));
        }
    }

    /// Time left before lease `id` expires; `None` when this member keeps no deadline for it.
    pub fn remaining(&self, id: i64, now: Instant) -> Option<Duration> {
        let deadline = self.deadlines.get(&id)?;
        if self.revoking.contains(&id) {
            return Some(Duration::ZERO);
        }
        Some(deadline.saturating_duration_since(now))
    }

    /// Up to `limit` leases whose deadline has passed, to revoke now. Each is pushed
    /// [`REVOKE_RETRY`] into the future, so it is handed out again only if it outlives its revoke.
    pub fn due(&mut self, now: Instant, limit: usize) -> Vec<i64> {
        let expired: Vec<(Instant, i64)> = self
            .queue
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .take(limit)
            .copied()
            .collect();
        for (_, id) in &expired {
            self.set(*id, now + REVOKE_RETRY);
            self.revoking.insert(*id);
        }
        expired.into_iter().map(|(_, id)| id).collect()
    }

    fn set(&mut self, id: i64, deadline: Instant) {
        if let Some(old) = self.deadlines.insert(id, deadline) {
            self.queue.remove(&(old, id));
        }
        self.queue.insert((deadline, id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_follower_keeps_no_deadlines() {
        let now = Instant::now();
        let mut clock = ExpiryClock::default();
        clock.start(1, 5, now);
        assert_eq!(clock.remaining(1, now), None);
        assert!(clock.due(now + 100 * SECOND, 10).is_empty());
        assert!(!clock.renew(1, 5, now));
    }

    #[test]
    fn promotion_gives_every_lease_its_full_ttl_plus_the_extension() {
        let now = Instant::now();
        let mut clock = ExpiryClock::default();
        clock.promote(now, [(1, 5), (2, 10)], SECOND);
        assert_eq!(clock.remaining(1, now), Some(6 * SECOND));
        assert_eq!(clock.remaining(2, now), Some(11 * SECOND));
        assert!(clock.due(now + 5 * SECOND, 10).is_empty());
        assert_eq!(clock.due(now + 6 * SECOND, 10), vec![1]);
    }

    #[test]
    fn expired_leases_are_handed_out_once_then_retried() {
        let now = Instant::now();
        let mut clock = ExpiryClock::default();
        clock.promote(now, [], SECOND);
        clock.start(3, 2, now);
        clock.start(4, 2, now);
        clock.start(5, 60, now);
        assert_eq!(clock.due(now + 2 * SECOND, 1), vec![3]);
        assert_eq!(clock.due(now + 2 * SECOND, 10), vec![4]);
        assert!(clock.due(now + 3 * SECOND, 10).is_empty());
        assert_eq!(clock.due(now + 2 * SECOND + REVOKE_RETRY, 10), vec![3, 4]);
        clock.remove(3);
        clock.remove(4);
        assert_eq!(clock.due(now + 61 * SECOND, 10), vec![5]);
    }

    #[test]
    fn renewal_works_only_before_expiry() {
        let now = Instant::now();
        let mut clock = ExpiryClock::default();
        clock.promote(now, [], SECOND);
        clock.start(1, 2, now);
        assert!(clock.renew(1, 2, now + SECOND));
        assert_eq!(clock.remaining(1, now + SECOND), Some(2 * SECOND));
        assert!(!clock.renew(1, 2, now + 3 * SECOND));
        clock.demote();
        assert_eq!(clock.remaining(1, now), None);
    }

    #[test]
    fn a_lease_handed_out_for_revocation_is_never_renewed() {
        let now = Instant::now();
        let mut clock = ExpiryClock::default();
        clock.promote(now, [], SECOND);
        clock.start(1, 2, now);
        assert_eq!(clock.due(now + 2 * SECOND, 10), vec![1]);
        // Its revoke is on its way: a keep-alive must not bring it back.
        assert!(!clock.renew(1, 2, now + 2 * SECOND));
        assert_eq!(clock.remaining(1, now + 2 * SECOND), Some(Duration::ZERO));
        // Its revoke was lost: it is handed out again, still not renewable.
        assert_eq!(clock.due(now + 2 * SECOND + REVOKE_RETRY, 10), vec![1]);
        assert!(!clock.renew(1, 2, now + 2 * SECOND + REVOKE_RETRY));
        clock.remove(1);
        assert_eq!(clock.remaining(1, now), None);
    }
}
