//! The watch checker catches each broken guarantee in a hand-made history.

use super::*;
use crate::watch_log::{Segment, WatchTarget};

fn kv(key: &str, value: &str, create: i64, revision: i64, version: i64) -> Kv {
    Kv {
        key: key.into(),
        value: value.into(),
        create_revision: create,
        mod_revision: revision,
        version,
        lease: 0,
    }
}

fn put(key: &str, value: &str, create: i64, revision: i64, version: i64) -> Event {
    Event {
        kind: EventKind::Put,
        kv: kv(key, value, create, revision, version),
        prev_kv: None,
    }
}

fn delete(key: &str, revision: i64) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: Kv {
            key: key.into(),
            mod_revision: revision,
            ..Kv::default()
        },
        prev_kv: None,
    }
}

fn with_prev(mut event: Event, prev: Kv) -> Event {
    event.prev_kv = Some(prev);
    event
}

/// Committed: 2 put a, 3 put b, 4 put a again + put b again (one txn), 5 delete a, 6 put c.
fn archive() -> BTreeMap<i64, Vec<Event>> {
    BTreeMap::from([
        (2, vec![put("a", "a1", 2, 2, 1)]),
        (3, vec![put("b", "b1", 3, 3, 1)]),
        (4, vec![put("a", "a2", 2, 4, 2), put("b", "b2", 3, 4, 2)]),
        (5, vec![delete("a", 5)]),
        (6, vec![put("c", "c1", 6, 6, 1)]),
    ])
}

fn everything(prev_kv: bool) -> WatchTarget {
    WatchTarget {
        key: "\0".into(),
        range_end: "\0".into(),
        prev_kv,
        no_put: false,
        no_delete: false,
    }
}

fn segment(member: usize, start_revision: i64, replies: Vec<Reply>) -> Segment {
    Segment {
        member,
        start_revision,
        replies,
        ended: None,
    }
}

fn events(revision: i64, events: Vec<Event>) -> Reply {
    Reply::Events { revision, events }
}

fn record(target: WatchTarget, segments: Vec<Segment>) -> WatchRecord {
    WatchRecord {
        watcher: 0,
        target,
        segments,
    }
}

/// The correct deliveries of revisions 2..=6 to a watch of everything from revision 2.
fn good_replies() -> Vec<Reply> {
    vec![
        Reply::Created { revision: 1 },
        events(2, vec![put("a", "a1", 2, 2, 1)]),
        events(3, vec![put("b", "b1", 3, 3, 1)]),
        events(4, vec![put("a", "a2", 2, 4, 2), put("b", "b2", 3, 4, 2)]),
        events(5, vec![delete("a", 5)]),
        events(6, vec![put("c", "c1", 6, 6, 1)]),
    ]
}

fn judge(records: &[WatchRecord]) -> Vec<String> {
    let archive = archive();
    let truth = Truth {
        archive: &archive,
        compact_revision: 0,
        converged_revision: Some(6),
    };
    check(records, &truth)
}

fn assert_caught(records: &[WatchRecord], guarantee: &str) {
    let violations = judge(records);
    let tag = format!("[{guarantee}]");
    assert!(
        violations.iter().any(|v| v.contains(&tag)),
        "expected a {tag} violation, got {violations:#?}"
    );
}

#[test]
fn a_correct_history_passes() {
    let watch = record(everything(false), vec![segment(0, 2, good_replies())]);
    assert_eq!(judge(&[watch]), Vec::<String>::new());
}

#[test]
fn a_watch_resumed_after_the_last_seen_revision_passes() {
    let mut first = good_replies();
    let rest = first.split_off(3);
    let mut second = vec![Reply::Created { revision: 3 }];
    second.extend(rest);
    let watch = record(
        everything(false),
        vec![segment(0, 2, first), segment(1, 4, second)],
    );
    assert_eq!(judge(&[watch]), Vec::<String>::new());
}

#[test]
fn events_out_of_order_are_caught() {
    let mut replies = good_replies();
    replies.swap(2, 3);
    assert_caught(
        &[record(everything(false), vec![segment(0, 2, replies)])],
        "ordered",
    );
}

#[test]
fn an_event_before_the_start_revision_is_caught() {
    let watch = record(everything(false), vec![segment(0, 3, good_replies())]);
    assert_caught(&[watch], "ordered");
}

#[test]
fn a_header_revision_going_back_is_caught() {
    let mut replies = good_replies();
    replies.push(Reply::Progress { revision: 5 });
    assert_caught(
        &[record(everything(false), vec![segment(0, 2, replies)])],
        "ordered",
    );
}

#[test]
fn an_event_delivered_twice_is_caught() {
    let mut first = good_replies();
    first.truncate(4);
    let mut second = vec![Reply::Created { revision: 6 }];
    // Resumed one revision too early: revision 4 comes again.
    second.extend(good_replies().split_off(3));
    let watch = record(
        everything(false),
        vec![segment(0, 2, first), segment(1, 4, second)],
    );
    assert_caught(&[watch], "unique");
}

#[test]
fn a_revision_split_over_two_responses_is_caught() {
    let mut replies = good_replies();
    replies[3] = events(4, vec![put("a", "a2", 2, 4, 2)]);
    replies.insert(4, events(4, vec![put("b", "b2", 3, 4, 2)]));
    assert_caught(
        &[record(everything(false), vec![segment(0, 2, replies)])],
        "atomic",
    );
}

#[test]
fn a_missed_event_is_caught() {
    let mut replies = good_replies();
    replies.remove(4);
    assert_caught(
        &[record(everything(false), vec![segment(0, 2, replies)])],
        "reliable",
    );
}

#[test]
fn an_event_never_committed_is_caught() {
    let mut replies = good_replies();
    replies[5] = events(6, vec![put("c", "phantom", 6, 6, 1)]);
    assert_caught(
        &[record(everything(false), vec![segment(0, 2, replies)])],
        "reliable",
    );
}

#[test]
fn a_watch_resumed_past_a_gap_is_caught() {
    let mut first = good_replies();
    let rest = first.split_off(4);
    let mut second = vec![Reply::Created { revision: 4 }];
    second.extend(rest);
    // The first stream vouched for revision 3 only; resuming at 5 skips revision 4.
    let watch = record(
        everything(false),
        vec![segment(0, 2, first[..3].to_vec()), segment(1, 5, second)],
    );
    assert_caught(&[watch], "resumable");
}

#[test]
fn an_event_below_a_progress_notification_is_caught() {
    let mut replies = good_replies();
    replies.insert(4, Reply::Progress { revision: 5 });
    assert_caught(
        &[record(everything(false), vec![segment(0, 2, replies)])],
        "bookmark",
    );
}

#[test]
fn a_progress_notification_past_an_undelivered_event_is_caught() {
    let mut replies = good_replies();
    replies.truncate(4);
    replies.push(Reply::Progress { revision: 6 });
    assert_caught(
        &[record(everything(false), vec![segment(0, 2, replies)])],
        "reliable",
    );
}

#[test]
fn correct_prev_kvs_pass_and_wrong_or_missing_ones_are_caught() {
    let good = vec![
        Reply::Created { revision: 1 },
        events(2, vec![put("a", "a1", 2, 2, 1)]),
        events(3, vec![put("b", "b1", 3, 3, 1)]),
        events(
            4,
            vec![
                with_prev(put("a", "a2", 2, 4, 2), kv("a", "a1", 2, 2, 1)),
                with_prev(put("b", "b2", 3, 4, 2), kv("b", "b1", 3, 3, 1)),
            ],
        ),
        events(5, vec![with_prev(delete("a", 5), kv("a", "a2", 2, 4, 2))]),
        events(6, vec![put("c", "c1", 6, 6, 1)]),
    ];
    let watch = |replies| record(everything(true), vec![segment(0, 2, replies)]);
    assert_eq!(judge(&[watch(good.clone())]), Vec::<String>::new());

    let mut wrong = good.clone();
    wrong[4] = events(5, vec![with_prev(delete("a", 5), kv("a", "a1", 2, 2, 1))]);
    assert_caught(&[watch(wrong)], "prev_kv");

    let mut missing = good.clone();
    missing[4] = events(5, vec![delete("a", 5)]);
    assert_caught(&[watch(missing)], "prev_kv");

    let mut on_create = good.clone();
    on_create[5] = events(
        6,
        vec![with_prev(put("c", "c1", 6, 6, 1), kv("c", "x", 1, 1, 1))],
    );
    assert_caught(&[watch(on_create)], "prev_kv");

    // Not asked for: none may be sent.
    let unasked = record(everything(false), vec![segment(0, 2, good)]);
    assert_caught(&[unasked], "prev_kv");
}

#[test]
fn filtered_events_that_get_through_are_caught() {
    let no_delete = WatchTarget {
        no_delete: true,
        ..everything(false)
    };
    assert_caught(
        &[record(
            no_delete.clone(),
            vec![segment(0, 2, good_replies())],
        )],
        "filter",
    );
    let mut filtered = good_replies();
    filtered.remove(4);
    assert_eq!(
        judge(&[record(no_delete, vec![segment(0, 2, filtered.clone())])]),
        Vec::<String>::new()
    );
    let no_put = WatchTarget {
        no_put: true,
        ..everything(false)
    };
    assert_caught(&[record(no_put, vec![segment(0, 2, filtered)])], "filter");
}

#[test]
fn a_compacted_cancel_for_a_readable_revision_is_caught() {
    let archive = archive();
    let truth = Truth {
        archive: &archive,
        compact_revision: 4,
        converged_revision: None,
    };
    let compacted = |start, compact_revision| {
        record(
            everything(false),
            vec![segment(
                0,
                start,
                vec![
                    Reply::Created { revision: 6 },
                    Reply::Compacted {
                        revision: 6,
                        compact_revision,
                    },
                ],
            )],
        )
    };
    assert_eq!(check(&[compacted(2, 4)], &truth), Vec::<String>::new());
    // Revision 4 itself is still readable at compact revision 4.
    let at_compacted = check(&[compacted(4, 4)], &truth);
    assert!(
        at_compacted.iter().any(|v| v.contains("[compacted]")),
        "{at_compacted:?}"
    );
    // The cluster never compacted past 4.
    let beyond = check(&[compacted(2, 5)], &truth);
    assert!(
        beyond.iter().any(|v| v.contains("[compacted]")),
        "{beyond:?}"
    );
}

#[test]
fn a_watch_at_a_compacted_revision_that_silently_skips_events_is_caught() {
    // Opened at 2 after a compaction at 4, it should have been canceled; it sent only what
    // was left instead.
    let mut replies = good_replies();
    replies.drain(1..3);
    assert_caught(
        &[record(everything(false), vec![segment(0, 2, replies)])],
        "reliable",
    );
}

#[test]
fn a_watch_open_at_the_end_that_never_caught_up_is_caught() {
    let mut replies = good_replies();
    replies.truncate(3);
    assert_caught(
        &[record(everything(false), vec![segment(0, 2, replies)])],
        "caught up",
    );
}

#[test]
fn a_single_key_watch_gets_only_its_key() {
    let target = WatchTarget {
        key: "b".into(),
        range_end: String::new(),
        ..everything(false)
    };
    let replies = vec![
        Reply::Created { revision: 1 },
        events(3, vec![put("b", "b1", 3, 3, 1)]),
        events(4, vec![put("b", "b2", 3, 4, 2)]),
        Reply::Progress { revision: 6 },
    ];
    assert_eq!(
        judge(&[record(target.clone(), vec![segment(0, 0, replies.clone())])]),
        Vec::<String>::new()
    );
    let mut leaked = replies;
    leaked[2] = events(4, vec![put("a", "a2", 2, 4, 2), put("b", "b2", 3, 4, 2)]);
    assert_caught(&[record(target, vec![segment(0, 0, leaked)])], "reliable");
}
