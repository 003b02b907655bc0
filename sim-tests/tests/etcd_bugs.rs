//! Known etcd bugs as named, scripted scenarios on a simulated k3rs cluster.
//!
//! Each test runs real k3rs members (raftstore and etcd-api's gRPC servers) on turmoil with
//! one scripted client, which asks a [`Director`] for crashes, restarts and isolations at
//! exact points of its script, and checks what etcd guarantees once that bug is fixed. A
//! script returns the first broken guarantee as an error, which fails the simulation and the
//! test. Every scenario is deterministic: its seed fixes the network, the clocks and the
//! members' election timeouts.

use std::future::Future;
use std::time::Duration;

use etcd_api::pb::etcdserverpb::watch_client::WatchClient;
use etcd_api::pb::etcdserverpb::watch_request::RequestUnion;
use etcd_api::pb::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use futures::channel::mpsc;
use raftstore::node::config::InjectedFaults;
use sim_tests::client::EtcdClient;
use sim_tests::cluster::{SimCluster, SNAPSHOT_COUNT};
use sim_tests::history::{Request, Response};
use sim_tests::run::{CONNECT_TIMEOUT, MAX_LATENCY, MIN_LATENCY};
use sim_tests::script::{Director, Fault};
use sim_tests::watch_log::Event;

/// How many times a request is tried before a script gives up.
const ATTEMPTS: usize = 100;
/// The pause between two attempts.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// How long a script waits for a new leader.
const ELECTED_WITHIN: Duration = Duration::from_secs(10);

/// Runs `script` as client `c1` of a `members`-member cluster seeded by `seed`, with the
/// deliberate bugs `faults` switched on; `Err` names the first guarantee the script found
/// broken (or how the simulation broke); `Ok` the trace of [`Director::run`].
fn run_scenario<F, Fut>(
    seed: u64,
    members: usize,
    faults: InjectedFaults,
    script: F,
) -> Result<Vec<String>, String>
where
    F: FnOnce(EtcdClient, Director) -> Fut + 'static,
    Fut: Future<Output = Result<(), String>> + 'static,
{
    sim_tests::init_logging();
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .min_message_latency(MIN_LATENCY)
        .max_message_latency(MAX_LATENCY)
        .tcp_capacity(1024)
        .build();
    let cluster = SimCluster::new(members, seed, faults);
    cluster.install(&mut sim);
    let director = Director::new(&cluster);
    let names = cluster.names.clone();
    let scripted = director.clone();
    sim.client("c1", async move {
        // Channels spawn their workers: they are made inside the client's runtime.
        let client = EtcdClient::new(&names, CONNECT_TIMEOUT).map_err(|err| format!("{err:#}"))?;
        let outcome: turmoil::Result = script(client, scripted).await.map_err(Into::into);
        outcome
    });
    let mut hosts = cluster.names.clone();
    hosts.push("c1".to_string());
    director
        .run(&mut sim, &cluster, &hosts)
        .map_err(|err| format!("scenario (seed {seed}): {err:#}"))
}

/// Runs `script` on a correct cluster (see [`run_scenario`]); panics with what broke.
fn scenario<F, Fut>(seed: u64, members: usize, script: F)
where
    F: FnOnce(EtcdClient, Director) -> Fut + 'static,
    Fut: Future<Output = Result<(), String>> + 'static,
{
    if let Err(err) = run_scenario(seed, members, InjectedFaults::default(), script) {
        panic!("{err}");
    }
}

/// Fails with `message` unless `holds`.
fn ensure(holds: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(message())
    }
}

/// Sends `request` to `member` until it succeeds, at most [`ATTEMPTS`] times.
async fn until_ok(
    client: &EtcdClient,
    member: usize,
    request: &Request,
) -> Result<Response, String> {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        match client.execute(member, request).await {
            Ok(response) => return Ok(response),
            Err(err) => last = err,
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
    Err(format!(
        "{request:?} to member {member}: still failing: {last}"
    ))
}

fn put(key: &str, value: &str) -> Request {
    Request::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn get(key: &str, serializable: bool) -> Request {
    Request::Get {
        key: key.into(),
        serializable,
    }
}

/// The revision and value a Get answered.
fn read(response: &Response) -> (i64, Option<String>) {
    match response {
        Response::Get { revision, found } => (
            *revision,
            found.as_ref().map(|observed| observed.value.clone()),
        ),
        other => (other.revision(), None),
    }
}

/// An open watch: the request side (kept, or the stream ends) and the responses.
struct Watch {
    _requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
}

impl Watch {
    /// Opens a watch of `key` from `start_revision` on `member`.
    async fn open(
        client: &EtcdClient,
        member: usize,
        key: &str,
        start_revision: i64,
    ) -> Result<Self, String> {
        let (mut requests, outgoing) = mpsc::channel::<WatchRequest>(1);
        requests
            .try_send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: key.as_bytes().to_vec(),
                    start_revision,
                    ..Default::default()
                })),
            })
            .map_err(|err| err.to_string())?;
        let responses = WatchClient::new(client.channel(member))
            .watch(outgoing)
            .await
            .map_err(|status| format!("watch on member {member}: {status}"))?
            .into_inner();
        Ok(Self {
            _requests: requests,
            responses,
        })
    }

    /// The events delivered within `within`, until `want` of them came; an error if the watch
    /// was canceled or its stream ended.
    async fn events(&mut self, want: usize, within: Duration) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        let deadline = tokio::time::sleep(within);
        tokio::pin!(deadline);
        while events.len() < want {
            tokio::select! {
                biased;
                _ = &mut deadline => break,
                response = self.responses.message() => match response {
                    Ok(Some(response)) if response.canceled => {
                        return Err(format!(
                            "the watch was canceled after {} events (compact revision {}): {}",
                            events.len(), response.compact_revision, response.cancel_reason
                        ));
                    }
                    Ok(Some(response)) => {
                        events.extend(response.events.iter().map(Event::from_pb));
                    }
                    Ok(None) => return Err(format!("the watch ended after {} events", events.len())),
                    Err(status) => {
                        return Err(format!("the watch failed after {} events: {status}", events.len()));
                    }
                },
            }
        }
        Ok(events)
    }
}

/// The (revision, value) of each event.
fn revisions_and_values(events: &[Event]) -> Vec<(i64, String)> {
    events
        .iter()
        .map(|event| (event.revision(), event.kv.value.clone()))
        .collect()
}

/// Waits until some member leads and returns it.
async fn leader(director: &Director) -> Result<usize, String> {
    director
        .leader_except(&[], ELECTED_WITHIN)
        .await
        .ok_or_else(|| "no member leads".to_string())
}

/// Waits until `member` has applied `revision` (its serializable reads show it).
async fn caught_up(client: &EtcdClient, member: usize, revision: i64) -> Result<(), String> {
    for _ in 0..ATTEMPTS {
        if let Ok(response) = client.execute(member, &get("k", true)).await {
            if response.revision() >= revision {
                return Ok(());
            }
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
    Err(format!("member {member} never applied revision {revision}"))
}

/// etcd #15271 (watch travelling back in time after a partition): a follower is cut off from
/// the other members while its watcher waits; the majority goes on writing, far enough for the
/// follower to need a raft snapshot when it returns. Asserted: the watch on that member
/// delivers every write made meanwhile, exactly once, in revision order — never a revision
/// lower than one it already delivered, none missed — and a watch opened there afterwards from
/// the same revision delivers the same events.
#[test]
fn a_watch_on_a_member_back_from_a_partition_neither_goes_back_nor_misses_events() {
    // More than raft's window of 256 in-flight appends (which the held link keeps) plus a raft
    // log compaction, so the leader no longer has what the isolated member needs: it gets a
    // snapshot, as a member partitioned for long does.
    const WRITES: usize = 256 + 2 * SNAPSHOT_COUNT as usize;
    scenario(21, 3, |client, director| async move {
        let first = until_ok(&client, 0, &put("k", "v0")).await?.revision();
        let leader = leader(&director).await?;
        let isolated = (leader + 1) % 3;
        caught_up(&client, isolated, first).await?;
        let mut watch = Watch::open(&client, isolated, "k", first + 1).await?;
        director.apply(Fault::Isolate(isolated)).await;
        let mut written = Vec::new();
        for i in 1..=WRITES {
            let value = format!("v{i}");
            let revision = until_ok(&client, leader, &put("k", &value))
                .await?
                .revision();
            written.push((revision, value));
        }
        let during = watch.events(1, Duration::from_millis(500)).await?;
        ensure(during.is_empty(), || {
            format!("the isolated member's watch delivered {during:?}, which it cannot know of")
        })?;
        director.apply(Fault::Rejoin(isolated)).await;
        let delivered = watch.events(WRITES, Duration::from_secs(10)).await?;
        ensure(revisions_and_values(&delivered) == written, || {
            format!(
                "the watch on member {isolated} delivered {:?}, the majority wrote {written:?}",
                revisions_and_values(&delivered)
            )
        })?;
        let installed = director
            .statuses()
            .get(&isolated)
            .map_or(0, |status| status.snapshots_installed);
        ensure(installed > 0, || {
            format!("member {isolated} caught up without a snapshot: the scenario missed its point")
        })?;
        let mut reopened = Watch::open(&client, isolated, "k", first + 1).await?;
        let again = reopened.events(WRITES, Duration::from_secs(5)).await?;
        ensure(revisions_and_values(&again) == written, || {
            format!(
                "a watch reopened on member {isolated} delivered {:?}, the majority wrote {written:?}",
                revisions_and_values(&again)
            )
        })
    });
}

/// A member's revision and compact revision, from Maintenance.HashKV at its current revision.
async fn revisions(client: &EtcdClient, member: usize) -> Result<(i64, i64), String> {
    let hashed = client.hash_kv(member, 0).await?;
    Ok((
        hashed.header.map_or(0, |header| header.revision),
        hashed.compact_revision,
    ))
}

/// Polls `member` (restarted) until it answers HashKV, then until its compact revision reaches
/// `compacted` and its revision `revision`; fails if either ever goes back, or if a first
/// answer must already show them (`acknowledged`) and does not.
async fn never_back(
    client: &EtcdClient,
    member: usize,
    revision: i64,
    compacted: i64,
    acknowledged: bool,
) -> Result<(), String> {
    let mut seen: Option<(i64, i64)> = None;
    for _ in 0..ATTEMPTS {
        match revisions(client, member).await {
            Ok((current, compact)) => {
                if let Some((last_current, last_compact)) = seen {
                    ensure(current >= last_current && compact >= last_compact, || {
                        format!(
                            "member {member} went back from revision {last_current} (compacted at \
                             {last_compact}) to {current} (compacted at {compact})"
                        )
                    })?;
                } else if acknowledged {
                    ensure(current >= revision && compact >= compacted, || {
                        format!(
                            "member {member} restarted at revision {current} compacted at \
                             {compact}, having acknowledged revision {revision} and compaction \
                             at {compacted}"
                        )
                    })?;
                }
                seen = Some((current, compact));
                if current >= revision && compact >= compacted {
                    return Ok(());
                }
            }
            Err(_) if seen.is_none() => {}
            Err(err) => return Err(format!("member {member} stopped answering: {err}")),
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
    Err(format!(
        "member {member} never reached revision {revision} compacted at {compacted} (last {seen:?})"
    ))
}

/// etcd #15141 / #14758 (revision going back after a crash during compaction): the leader
/// acknowledges a compaction and crashes at once; later every key is deleted, a compaction at
/// the last deletion (which leaves no row at or below it) is acknowledged, and a follower
/// crashes right after. Asserted: each restarted member never shows a revision
/// or compact revision lower than before (the leader, which acknowledged the compaction, not
/// even in its first answer), serves the compacted revision as compacted, and ends with the
/// same revision, compact revision and KV hash as the others.
#[test]
fn a_member_crashing_during_compaction_comes_back_without_its_revisions_going_back() {
    scenario(22, 3, crash_during_compaction);
}

/// The script of the test above, shared with the check that it replays exactly.
async fn crash_during_compaction(client: EtcdClient, director: Director) -> Result<(), String> {
    let leader = leader(&director).await?;
    let mut last = 0;
    let mut middle = 0;
    for i in 0..20 {
        last = until_ok(
            &client,
            leader,
            &put(&format!("k{}", i % 4), &format!("v{i}")),
        )
        .await?
        .revision();
        if i == 9 {
            middle = last;
        }
    }
    client.compact(leader, middle, true).await?;
    director.apply(Fault::Crash(leader)).await;
    director.apply(Fault::Restart(leader)).await;
    never_back(&client, leader, last, middle, true).await?;

    let leader = director
        .leader_except(&[], ELECTED_WITHIN)
        .await
        .ok_or("no member leads after the restart")?;
    let follower = (leader + 1) % 3;
    for i in 20..40 {
        last = until_ok(
            &client,
            leader,
            &put(&format!("k{}", i % 4), &format!("v{i}")),
        )
        .await?
        .revision();
    }
    // Every key deleted, and compacted at the last deletion: no row is left at or below
    // the revision, so a member that derived its revision from its rows would go back.
    for key in 0..4 {
        last = until_ok(
            &client,
            leader,
            &Request::Delete {
                key: format!("k{key}"),
            },
        )
        .await?
        .revision();
    }
    let (before, compacted_before) = revisions(&client, follower).await?;
    client.compact(leader, last, true).await?;
    director.apply(Fault::Crash(follower)).await;
    director.apply(Fault::Restart(follower)).await;
    never_back(&client, follower, before, compacted_before, true).await?;
    never_back(&client, follower, last, last, false).await?;

    let old = Request::Get {
        key: "k0".into(),
        serializable: true,
    };
    let mut hashes = Vec::new();
    for member in 0..3 {
        let hashed = client.hash_kv(member, last).await?;
        hashes.push((hashed.compact_revision, hashed.hash));
        // Reading below the compact revision must fail as compacted.
        let mut kv = client.kv(member);
        let range = kv
            .range(etcd_api::pb::etcdserverpb::RangeRequest {
                key: b"k0".to_vec(),
                revision: last - 1,
                serializable: true,
                ..Default::default()
            })
            .await;
        ensure(range.is_err(), || {
            format!(
                "member {member} served revision {} below its compaction at {last}",
                last - 1
            )
        })?;
        until_ok(&client, member, &old).await?;
    }
    ensure(hashes.iter().all(|hashed| *hashed == hashes[0]), || {
        format!("the members' (compact revision, hash) at {last} differ: {hashes:?}")
    })
}

/// etcd #15096 / #15182 (a watch on a future revision returning events early): watches from
/// the current revision + 3, opened on every member. Asserted: nothing is delivered while that
/// revision does not exist; once it does, each delivers exactly the events from it on.
#[test]
fn a_watch_from_a_future_revision_waits_for_it() {
    scenario(23, 3, |client, director| async move {
        let leader = leader(&director).await?;
        let current = until_ok(&client, leader, &put("k", "v0")).await?.revision();
        let mut watches = Vec::new();
        for member in 0..3 {
            caught_up(&client, member, current).await?;
            watches.push(Watch::open(&client, member, "k", current + 3).await?);
        }
        for i in 1..=2 {
            until_ok(&client, leader, &put("k", &format!("v{i}"))).await?;
            for (member, watch) in watches.iter_mut().enumerate() {
                let early = watch.events(1, Duration::from_millis(300)).await?;
                ensure(early.is_empty(), || {
                    format!(
                        "member {member}'s watch from revision {} delivered {:?} at revision {}",
                        current + 3,
                        revisions_and_values(&early),
                        current + i
                    )
                })?;
            }
        }
        let mut written = Vec::new();
        for i in 3..=4 {
            let value = format!("v{i}");
            let revision = until_ok(&client, leader, &put("k", &value))
                .await?
                .revision();
            written.push((revision, value));
        }
        ensure(written[0].0 == current + 3, || {
            format!(
                "the third put got revision {}, not {}",
                written[0].0,
                current + 3
            )
        })?;
        for (member, watch) in watches.iter_mut().enumerate() {
            let delivered = watch.events(2, Duration::from_secs(3)).await?;
            let more = watch.events(1, Duration::from_millis(300)).await?;
            ensure(
                revisions_and_values(&delivered) == written && more.is_empty(),
                || {
                    format!(
                        "member {member}'s watch from revision {} delivered {:?} then {:?}, the \
                     writes from it are {written:?}",
                        current + 3,
                        revisions_and_values(&delivered),
                        revisions_and_values(&more)
                    )
                },
            )?;
        }
        Ok(())
    });
}

/// etcd #13753 / #14012 (stale reads after a pause: a ReadIndex reused on retry, or racing a
/// leader change): the leader is cut off from the other members with a linearizable read
/// pending on it; the others elect a new leader, which acknowledges a new value; then another
/// linearizable read is sent to the old leader, and it rejoins. Asserted: the read sent after
/// the new value was acknowledged never returns the old one (it may fail); the read pending
/// across the change returns one of the two (it was concurrent with the write); and the old
/// leader's reads after it rejoined return the new value.
#[test]
fn a_cut_off_leader_never_answers_a_linearizable_read_with_a_value_overwritten_meanwhile() {
    scenario(24, 3, cut_off_leader_reads);
}

/// The script of the test above, shared with the check that it catches stale reads.
async fn cut_off_leader_reads(client: EtcdClient, director: Director) -> Result<(), String> {
    let old_leader = leader(&director).await?;
    let first = until_ok(&client, old_leader, &put("k", "v1"))
        .await?
        .revision();
    caught_up(&client, (old_leader + 1) % 3, first).await?;
    caught_up(&client, (old_leader + 2) % 3, first).await?;
    director.apply(Fault::Isolate(old_leader)).await;
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.execute(old_leader, &get("k", false)).await })
    };
    let new_leader = director
        .leader_except(&[old_leader], ELECTED_WITHIN)
        .await
        .ok_or("the majority elected no leader")?;
    let second = until_ok(&client, new_leader, &put("k", "v2"))
        .await?
        .revision();
    let after = {
        let client = client.clone();
        tokio::spawn(async move { client.execute(old_leader, &get("k", false)).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    director.apply(Fault::Rejoin(old_leader)).await;

    let after = after.await.map_err(|err| err.to_string())?;
    if let Ok(response) = &after {
        let (revision, value) = read(response);
        ensure(value.as_deref() == Some("v2") && revision >= second, || {
            format!(
                "a linearizable read sent to the old leader after v2 was acknowledged at \
                     revision {second} returned {value:?} at revision {revision}"
            )
        })?;
    }
    let pending = pending.await.map_err(|err| err.to_string())?;
    if let Ok(response) = &pending {
        let (revision, value) = read(response);
        ensure(
            matches!(value.as_deref(), Some("v1" | "v2")) && revision >= first,
            || format!("the read pending across the change returned {value:?} at {revision}"),
        )?;
    }
    let rejoined = until_ok(&client, old_leader, &get("k", false)).await?;
    let (revision, value) = read(&rejoined);
    ensure(value.as_deref() == Some("v2") && revision >= second, || {
        format!("the old leader, rejoined, read {value:?} at revision {revision}")
    })
}

/// etcd #14370 (a single-member cluster losing an acknowledged write on a crash): puts to the
/// only member are acknowledged, and it crashes right after the last, losing every write it had
/// not synced. Asserted: after the restart every acknowledged value is there, for serializable
/// and linearizable reads alike, and the revision did not go back.
#[test]
fn a_single_member_keeps_every_acknowledged_write_across_a_crash() {
    scenario(25, 1, single_member_crash);
}

/// The script of the test above, shared with the check that it catches lost writes.
async fn single_member_crash(client: EtcdClient, director: Director) -> Result<(), String> {
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let key = format!("k{i}");
        let revision = until_ok(&client, 0, &put(&key, &format!("v{i}")))
            .await?
            .revision();
        acknowledged.push((key, format!("v{i}"), revision));
    }
    director.apply(Fault::Crash(0)).await;
    director.apply(Fault::Restart(0)).await;
    let last = acknowledged.last().map_or(0, |(_, _, revision)| *revision);
    for serializable in [true, false] {
        for (key, value, _) in &acknowledged {
            let response = until_ok(&client, 0, &get(key, serializable)).await?;
            let (revision, found) = read(&response);
            ensure(
                found.as_deref() == Some(value.as_str()) && revision >= last,
                || {
                    format!(
                        "after the crash, {key} reads {found:?} at revision {revision} \
                         (serializable: {serializable}); {value} was acknowledged, the last \
                         write at revision {last}"
                    )
                },
            )?;
        }
    }
    Ok(())
}

/// The first successful read of `key` from `member` (just restarted), as (revision, value).
async fn first_read(
    client: &EtcdClient,
    member: usize,
    key: &str,
    serializable: bool,
) -> Result<(i64, Option<String>), String> {
    Ok(read(
        &until_ok(client, member, &get(key, serializable)).await?,
    ))
}

/// etcd #14045 (a restarted member serving reads before replaying its log): a member crashes
/// right after a burst of writes — the leader, having acknowledged them, then a follower, which
/// had them committed but not necessarily applied — and restarts. Asserted: the restarted
/// member's first serializable read reflects at least what it had applied (the leader:
/// everything it acknowledged) and its first linearizable read everything the cluster had
/// acknowledged.
#[test]
fn a_restarted_member_reads_nothing_older_than_it_had_applied() {
    scenario(26, 3, |client, director| async move {
        let leader = leader(&director).await?;
        let mut last = 0;
        for i in 0..30 {
            last = until_ok(&client, leader, &put("k", &format!("v{i}")))
                .await?
                .revision();
        }
        director.apply(Fault::Crash(leader)).await;
        director.apply(Fault::Restart(leader)).await;
        for serializable in [true, false] {
            let (revision, value) = first_read(&client, leader, "k", serializable).await?;
            ensure(revision >= last && value.as_deref() == Some("v29"), || {
                format!(
                    "the old leader's first read after its restart (serializable: \
                     {serializable}) returned {value:?} at revision {revision}; it had \
                     acknowledged v29 at revision {last}"
                )
            })?;
        }

        let leader = director
            .leader_except(&[], ELECTED_WITHIN)
            .await
            .ok_or("no member leads after the restart")?;
        let follower = (leader + 2) % 3;
        for i in 30..60 {
            last = until_ok(&client, leader, &put("k", &format!("v{i}")))
                .await?
                .revision();
        }
        let (applied, _) = read(&until_ok(&client, follower, &get("k", true)).await?);
        director.apply(Fault::Crash(follower)).await;
        director.apply(Fault::Restart(follower)).await;
        let (revision, value) = first_read(&client, follower, "k", true).await?;
        ensure(revision >= applied, || {
            format!(
                "the follower's first serializable read after its restart returned {value:?} \
                 at revision {revision}; it had applied revision {applied}"
            )
        })?;
        let (revision, value) = first_read(&client, follower, "k", false).await?;
        ensure(revision >= last && value.as_deref() == Some("v59"), || {
            format!(
                "the follower's first linearizable read after its restart returned {value:?} \
                 at revision {revision}; the cluster had acknowledged v59 at revision {last}"
            )
        })
    });
}

/// The stale-read scenario has teeth: with linearizable reads served from local state (a
/// deliberate bug), the cut-off leader answers with the overwritten value and the scenario
/// fails on exactly that.
#[test]
fn the_cut_off_leader_scenario_catches_linearizable_reads_served_locally() {
    let faults = InjectedFaults {
        stale_linearizable_reads: true,
        ..InjectedFaults::default()
    };
    let err = run_scenario(24, 3, faults, cut_off_leader_reads).expect_err("a stale read");
    assert!(err.contains("returned Some(\"v1\")"), "{err}");
}

/// The single-member crash scenario has teeth: with raft log appends never fsynced (a
/// deliberate bug), acknowledged writes are lost in the crash and the scenario fails.
#[test]
fn the_single_member_crash_scenario_catches_an_unsynced_raft_log() {
    let faults = InjectedFaults {
        skip_raft_log_fsync: true,
        ..InjectedFaults::default()
    };
    let err = run_scenario(25, 1, faults, single_member_crash).expect_err("a lost write");
    assert!(err.contains("after the crash"), "{err}");
}

/// Scenarios replay exactly: the crash-during-compaction scenario, run twice, applies its
/// crashes and restarts at the same simulated times and ends at the same time.
#[test]
fn the_compaction_crash_scenario_replays_exactly() {
    let run = || run_scenario(22, 3, InjectedFaults::default(), crash_during_compaction);
    let first = run().expect("the first run passes");
    let second = run().expect("the second run passes");
    assert_eq!(first, second);
    assert_eq!(first.len(), 5, "{first:?}");
}
