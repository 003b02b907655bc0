//! kube-apiserver's paginated lists, judged against the archive of committed changes.
//!
//! A list reads its first page linearizably and every next page at the first page's header
//! revision `R`, from the last key returned + `\0`. Guarantees checked, for every list that
//! completed:
//! - `[paged]`: no page holds more than the limit; every page but the last says `more`, the
//!   last does not; keys are in the prefix and strictly increase across pages (no key twice,
//!   none out of order); a later page's header revision is at least `R`;
//! - `[snapshot]`: every page reflects the snapshot at `R`: no key-value has a mod_revision
//!   above `R`, and the union of the pages is exactly the prefix's keys at `R` as the
//!   committed history tells, each with the value and mod_revision of its latest change at or
//!   below `R`.
//!
//! Where the list stands in real time (its revision against other operations') is judged by
//! [`revisions`](super::revisions).

use std::collections::BTreeMap;

use crate::history::{Observed, Operation, Request, Response};
use crate::watch_log::{Event, EventKind};

/// Every violation of the guarantees above.
pub fn check(operations: &[Operation], archive: &BTreeMap<i64, Vec<Event>>) -> Vec<String> {
    let mut by_key: BTreeMap<&str, BTreeMap<i64, &Event>> = BTreeMap::new();
    for (revision, events) in archive {
        for event in events {
            by_key
                .entry(event.kv.key.as_str())
                .or_default()
                .insert(*revision, event);
        }
    }
    let last_archived = archive.keys().next_back().copied().unwrap_or(1);
    let mut violations = Vec::new();
    for (index, operation) in operations.iter().enumerate() {
        let (Request::List { prefix, limit }, Some(Response::List { revision, pages })) =
            (&operation.request, operation.response())
        else {
            continue;
        };
        let revision = *revision;
        let mut violate = |tag: &str, what: String| {
            violations.push(format!(
                "[{tag}] op {index} list of {prefix:?} on member {} at revision {revision}: {what}",
                operation.member
            ))
        };
        let mut listed: BTreeMap<&str, &Observed> = BTreeMap::new();
        let mut previous: Option<&str> = None;
        for (number, page) in pages.iter().enumerate() {
            let last = number + 1 == pages.len();
            if page.kvs.len() as i64 > *limit && *limit > 0 {
                violate(
                    "paged",
                    format!("page {number} holds {} keys", page.kvs.len()),
                );
            }
            if page.more == last {
                violate(
                    "paged",
                    format!("page {number} of {} says more: {}", pages.len(), page.more),
                );
            }
            if page.header < revision {
                violate(
                    "paged",
                    format!(
                        "page {number} was answered at header revision {}",
                        page.header
                    ),
                );
            }
            for (key, seen) in &page.kvs {
                if !key.starts_with(prefix.as_str()) {
                    violate("paged", format!("page {number} holds {key:?}"));
                }
                if previous.is_some_and(|previous| previous >= key.as_str()) {
                    violate(
                        "paged",
                        format!("page {number} returns {key:?} after {previous:?}"),
                    );
                }
                previous = Some(key);
                if seen.mod_revision > revision {
                    violate(
                        "snapshot",
                        format!(
                            "page {number} returns {key:?} {seen:?}, above the list's revision"
                        ),
                    );
                }
                listed.insert(key, seen);
            }
        }
        if revision > last_archived {
            violate(
                "snapshot",
                format!("no member was seen holding the list's revision (last {last_archived})"),
            );
            continue;
        }
        let mut expected: BTreeMap<&str, Observed> = BTreeMap::new();
        for (key, changes) in by_key.range(prefix.as_str()..) {
            if !key.starts_with(prefix.as_str()) {
                break;
            }
            if let Some((_, event)) = changes.range(..=revision).next_back() {
                if event.kind == EventKind::Put {
                    expected.insert(
                        key,
                        Observed {
                            value: event.kv.value.clone(),
                            mod_revision: event.kv.mod_revision,
                        },
                    );
                }
            }
        }
        for (key, want) in &expected {
            match listed.get(key) {
                None => violate(
                    "snapshot",
                    format!("{key:?} is missing, but it held {want:?} at that revision"),
                ),
                Some(seen) if *seen != want => violate(
                    "snapshot",
                    format!("{key:?} is listed as {seen:?}, but it held {want:?} there"),
                ),
                Some(_) => {}
            }
        }
        for (key, seen) in &listed {
            if !expected.contains_key(key) {
                violate(
                    "snapshot",
                    format!("{key:?} is listed as {seen:?}, but it did not exist there"),
                );
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Outcome, Page};

    fn event(kind: EventKind, key: &str, value: &str, revision: i64) -> Event {
        Event::first_version(kind, key, value, revision)
    }

    fn archive() -> BTreeMap<i64, Vec<Event>> {
        BTreeMap::from([
            (2, vec![event(EventKind::Put, "k0", "a", 2)]),
            (3, vec![event(EventKind::Put, "k1", "b", 3)]),
            (4, vec![event(EventKind::Put, "k2", "c", 4)]),
            (5, vec![event(EventKind::Delete, "k1", "", 5)]),
            (6, vec![event(EventKind::Put, "l1/1", "x", 6)]),
        ])
    }

    fn page(header: i64, kvs: &[(&str, &str, i64)], more: bool) -> Page {
        Page {
            header,
            kvs: kvs
                .iter()
                .map(|(key, value, mod_revision)| {
                    (
                        key.to_string(),
                        Observed {
                            value: value.to_string(),
                            mod_revision: *mod_revision,
                        },
                    )
                })
                .collect(),
            more,
        }
    }

    fn list(revision: i64, pages: Vec<Page>) -> Operation {
        Operation {
            client: 0,
            member: 0,
            request: Request::List {
                prefix: "k".into(),
                limit: 2,
            },
            call: 0,
            ret: Some(1),
            outcome: Some(Outcome::Ok(Response::List { revision, pages })),
            called_at: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn pages_at_one_revision_that_list_its_snapshot_pass() {
        let at_4 = list(
            4,
            vec![
                page(4, &[("k0", "a", 2), ("k1", "b", 3)], true),
                page(6, &[("k2", "c", 4)], false),
            ],
        );
        let at_5 = list(5, vec![page(5, &[("k0", "a", 2), ("k2", "c", 4)], false)]);
        assert!(check(&[at_4, at_5], &archive()).is_empty());
    }

    #[test]
    fn a_page_from_another_revision_is_caught() {
        // The second page read k2 as of now, not as of revision 3.
        let mixed = list(
            3,
            vec![
                page(3, &[("k0", "a", 2), ("k1", "b", 3)], true),
                page(6, &[("k2", "c", 4)], false),
            ],
        );
        let violations = check(&[mixed], &archive());
        assert!(
            violations.iter().any(|v| v.contains("[snapshot]")),
            "{violations:?}"
        );
    }

    #[test]
    fn a_missing_or_repeated_key_is_caught() {
        let missing = list(4, vec![page(4, &[("k0", "a", 2), ("k2", "c", 4)], false)]);
        assert!(check(&[missing], &archive())[0].contains("\"k1\" is missing"));
        let repeated = list(
            4,
            vec![
                page(4, &[("k0", "a", 2), ("k1", "b", 3)], true),
                page(4, &[("k1", "b", 3), ("k2", "c", 4)], false),
            ],
        );
        assert!(check(&[repeated], &archive())[0].contains("[paged]"));
    }
}
