//! Leases, judged against the archive of committed changes and the time each revision was
//! first applied.
//!
//! Guarantees checked, for every key put with a granted lease and acknowledged at revision R:
//! - `[lease put]`: the committed history has that PUT at R, with the value and the lease;
//! - `[expired early]`: the key is deleted (the lease ended) no earlier than the lease may
//!   expire — the latest `sent + TTL` of its grant and of every keep-alive answered with a TTL,
//!   whichever member answered and whoever led — unless a revoke had been sent by then;
//! - `[revoke]`: an acknowledged revoke answered at revision V deleted the key at or below V;
//! - `[lease end]`: every lease ended before the run did, so no such key is left in the
//!   converged state.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::audit::MvccState;
use crate::leases::LeaseRecord;
use crate::watch_log::{Event, EventKind};

/// What leases are judged against.
pub struct LeaseTruth<'a> {
    pub archive: &'a BTreeMap<i64, Vec<Event>>,
    /// Simulated time each revision was first seen applied.
    pub first_seen: &'a BTreeMap<i64, Duration>,
    /// The converged state, if the members converged.
    pub end: Option<&'a MvccState>,
}

/// Every violation in `records`.
pub fn check(records: &[LeaseRecord], truth: &LeaseTruth<'_>) -> Vec<String> {
    let mut violations = Vec::new();
    for record in records {
        let mut violate = |guarantee: &str, what: String| {
            violations.push(format!(
                "lease {:x} (client {}) [{guarantee}]: {what}",
                record.id, record.client
            ));
        };
        for key in &record.keys {
            let Some(revision) = key.revision else {
                continue;
            };
            let put = truth
                .archive
                .get(&revision)
                .and_then(|events| events.iter().find(|event| event.kv.key == key.key));
            let put_ok = put.is_some_and(|event| {
                event.kind == EventKind::Put
                    && event.kv.value == key.value
                    && event.kv.lease == record.id
            });
            if !put_ok {
                violate(
                    "lease put",
                    format!(
                        "put of {:?} acknowledged at {revision}, committed: {put:?}",
                        key.key
                    ),
                );
            }
            let deleted = truth
                .archive
                .range(revision + 1..)
                .find(|(_, events)| {
                    events
                        .iter()
                        .any(|event| event.kv.key == key.key && event.kind == EventKind::Delete)
                })
                .map(|(deleted, _)| *deleted);
            let Some(deleted) = deleted else {
                if truth
                    .end
                    .is_some_and(|end| end.kvs.iter().any(|kv| kv.key == key.key))
                {
                    violate(
                        "lease end",
                        format!("{:?} is still there at the end", key.key),
                    );
                }
                continue;
            };
            let Some(&at) = truth.first_seen.get(&deleted) else {
                continue;
            };
            let revoked_by_then = record.revoke.is_some_and(|(sent, _)| sent <= at);
            let earliest = record.expires_no_earlier_than();
            if !revoked_by_then && at < earliest {
                violate(
                    "expired early",
                    format!(
                        "{:?} deleted at revision {deleted}, applied at {at:?}, but a renewal \
                         keeps the lease until {earliest:?} (renewals: {:?})",
                        key.key, record.renewals
                    ),
                );
            }
            if let Some((_, Some(revoked))) = record.revoke {
                if deleted > revoked {
                    violate(
                        "revoke",
                        format!(
                            "revoke answered at revision {revoked}, but {:?} was deleted at \
                             {deleted}",
                            key.key
                        ),
                    );
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::LeaseKey;
    use crate::watch_log::Kv;

    const LEASE: i64 = 0x77;

    fn event(kind: EventKind, revision: i64) -> Event {
        Event {
            kind,
            kv: Kv {
                key: "l/1".into(),
                value: if kind == EventKind::Put {
                    "v".into()
                } else {
                    String::new()
                },
                create_revision: if kind == EventKind::Put { revision } else { 0 },
                mod_revision: revision,
                version: i64::from(kind == EventKind::Put),
                lease: if kind == EventKind::Put { LEASE } else { 0 },
            },
            prev_kv: None,
        }
    }

    fn record(renewed_at_ms: u64, revoke: Option<(Duration, Option<i64>)>) -> LeaseRecord {
        LeaseRecord {
            client: 0,
            id: LEASE,
            renewals: vec![
                (Duration::from_millis(1_000), 2),
                (Duration::from_millis(renewed_at_ms), 2),
            ],
            keys: vec![LeaseKey {
                key: "l/1".into(),
                value: "v".into(),
                revision: Some(2),
            }],
            revoke,
        }
    }

    fn judge(record: &LeaseRecord, deleted_at_ms: u64) -> Vec<String> {
        let archive = BTreeMap::from([
            (2, vec![event(EventKind::Put, 2)]),
            (3, vec![event(EventKind::Delete, 3)]),
        ]);
        let first_seen = BTreeMap::from([
            (2, Duration::from_millis(1_100)),
            (3, Duration::from_millis(deleted_at_ms)),
        ]);
        check(
            std::slice::from_ref(record),
            &LeaseTruth {
                archive: &archive,
                first_seen: &first_seen,
                end: None,
            },
        )
    }

    #[test]
    fn a_lease_expiring_after_its_last_renewal_passes() {
        assert_eq!(judge(&record(2_000, None), 4_200), Vec::<String>::new());
    }

    #[test]
    fn a_lease_expiring_before_its_last_renewal_ran_out_is_caught() {
        let violations = judge(&record(2_000, None), 3_900);
        assert!(violations[0].contains("[expired early]"), "{violations:?}");
    }

    #[test]
    fn a_revoked_lease_may_end_at_once_but_not_after_the_revoke_answered() {
        let revoked = record(2_000, Some((Duration::from_millis(2_500), Some(3))));
        assert_eq!(judge(&revoked, 2_600), Vec::<String>::new());
        let late = record(2_000, Some((Duration::from_millis(2_500), Some(2))));
        let violations = judge(&late, 2_600);
        assert!(violations[0].contains("[revoke]"), "{violations:?}");
    }
}
