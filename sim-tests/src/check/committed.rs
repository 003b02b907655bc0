//! Committed entries are never lost: every acknowledged change is in the archive of committed
//! changes at the revision its response named, and the archive has no holes.
//!
//! Guarantees checked:
//! - an acknowledged put or successful compare-and-put of `key` at revision `R` is archived as
//!   a PUT of `key` with that value at `R`; an acknowledged delete or compare-and-delete (that deleted) as a DELETE;
//! - every main revision from 2 to the last archived one was held by some member (a hole means
//!   a revision was lost, or the archive missed it — either way the watch checks would be
//!   judged against a wrong history).

use std::collections::BTreeMap;

use crate::history::{Operation, Request};
use crate::watch_log::{Event, EventKind};

/// Violations of the two guarantees above.
pub fn check(operations: &[Operation], archive: &BTreeMap<i64, Vec<Event>>) -> Vec<String> {
    let mut violations = Vec::new();
    for (index, operation) in operations.iter().enumerate() {
        let Some(response) = operation.response() else {
            continue;
        };
        if !response.changed() {
            continue;
        }
        let revision = response.revision();
        let key = operation.request.key();
        let (kind, value) = match &operation.request {
            Request::Put { value, .. } | Request::CompareAndPut { value, .. } => {
                (EventKind::Put, Some(value.as_str()))
            }
            Request::Delete { .. } | Request::CompareAndDelete { .. } => (EventKind::Delete, None),
            Request::Get { .. } | Request::List { .. } => continue,
        };
        let archived = archive
            .get(&revision)
            .and_then(|events| events.iter().find(|event| event.kv.key == key));
        let matches = archived.is_some_and(|event| {
            event.kind == kind && value.is_none_or(|value| event.kv.value == value)
        });
        if !matches {
            violations.push(format!(
                "acknowledged write lost: op {index} {:?} (member {}) answered revision \
                 {revision}, but the committed history has {archived:?} for that key there",
                operation.request, operation.member
            ));
        }
    }
    let last = archive.keys().next_back().copied().unwrap_or(1);
    let holes: Vec<i64> = (2..last)
        .filter(|revision| !archive.contains_key(revision))
        .collect();
    if !holes.is_empty() {
        violations.push(format!(
            "no member was seen holding revisions {:?} (of 2..={last})",
            &holes[..holes.len().min(20)]
        ));
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Outcome, Response};

    fn put_event(key: &str, value: &str, revision: i64) -> Event {
        Event::first_version(EventKind::Put, key, value, revision)
    }

    fn acknowledged_put(key: &str, value: &str, revision: i64) -> Operation {
        Operation {
            client: 0,
            member: 0,
            request: Request::Put {
                key: key.into(),
                value: value.into(),
            },
            call: 0,
            ret: Some(1),
            outcome: Some(Outcome::Ok(Response::Put { revision })),
            called_at: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn an_archived_acknowledged_write_passes() {
        let archive = BTreeMap::from([(2, vec![put_event("k", "a", 2)])]);
        assert!(check(&[acknowledged_put("k", "a", 2)], &archive).is_empty());
    }

    #[test]
    fn an_acknowledged_write_missing_from_the_history_is_lost() {
        let archive = BTreeMap::from([(2, vec![put_event("k", "b", 2)])]);
        let violations = check(&[acknowledged_put("k", "a", 2)], &archive);
        assert!(
            violations[0].contains("acknowledged write lost"),
            "{violations:?}"
        );
    }

    #[test]
    fn a_hole_in_the_revisions_is_reported() {
        let archive = BTreeMap::from([
            (2, vec![put_event("k", "a", 2)]),
            (4, vec![put_event("k", "b", 4)]),
        ]);
        let violations = check(&[], &archive);
        assert!(violations[0].contains("[3]"), "{violations:?}");
    }
}
