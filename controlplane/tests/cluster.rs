//! Three `k3rs etcd` members started with etcd's cluster flags replicate every write: a write
//! on any member is on all of them at the same revision, a kill -9 of the leader under load
//! loses no acknowledged write, and without a quorum requests fail with etcd's errors instead
//! of hanging or succeeding.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::TestCluster;
use etcd_client::GetOptions;
use tokio::time::{sleep, timeout, Instant};

/// Bound on electing a new leader after the old one died.
const ELECTION_BOUND: Duration = Duration::from_secs(15);

/// Serializable read of `key` on member `index`: (value, mod revision), if present.
async fn local_get(cluster: &TestCluster, index: usize, key: &str) -> Option<(String, i64)> {
    let mut client = cluster.client(index).await;
    let response = client
        .get(key, Some(GetOptions::new().with_serializable()))
        .await
        .ok()?;
    response.kvs().first().map(|kv| {
        (
            String::from_utf8_lossy(kv.value()).into_owned(),
            kv.mod_revision(),
        )
    })
}

/// Waits until member `index` has `key` at exactly `expected`.
async fn await_replicated(cluster: &TestCluster, index: usize, key: &str, expected: (String, i64)) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = local_get(cluster, index, key).await;
        if seen.as_ref() == Some(&expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {index} has {key:?} = {seen:?}, expected {expected:?}; logs:\n{}",
            cluster.logs()
        );
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_any_member_is_on_every_member_at_one_revision() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader(ELECTION_BOUND).await;
    let follower = (leader + 1) % 3;
    let mut client = cluster.client(follower).await;
    let put = client
        .put("replicated", "yes", None)
        .await
        .expect("put via a follower");
    let revision = put.header().expect("header").revision();
    for index in 0..3 {
        await_replicated(&cluster, index, "replicated", ("yes".into(), revision)).await;
    }
    // A linearizable read on a follower sees the write at once.
    let mut other = cluster.client((leader + 2) % 3).await;
    let read = other
        .get("replicated", None)
        .await
        .expect("linearizable get");
    assert_eq!(read.kvs()[0].mod_revision(), revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader(ELECTION_BOUND).await;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    let endpoints = cluster.endpoints();
    let writer = tokio::spawn(async move {
        // Writes through every member, recording each acknowledged (key → value, revision).
        let mut acked = BTreeMap::new();
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < Duration::from_secs(8) && n < 2_000 {
            let endpoint = &endpoints[(n as usize) % endpoints.len()];
            let key = format!("load/{n:05}");
            let value = format!("v{n}");
            let attempt = timeout(Duration::from_secs(3), async {
                let mut client = common::connect(endpoint).await;
                client.put(key.as_str(), value.as_str(), None).await
            })
            .await;
            if let Ok(Ok(put)) = attempt {
                let revision = put.header().expect("header").revision();
                acked.insert(key, (value, revision));
            }
            n += 1;
        }
        acked
    });
    sleep(Duration::from_secs(2)).await;
    cluster.members[leader].kill9();
    let acked = writer.await.expect("writer task");
    assert!(
        acked.len() > 20,
        "too few writes acknowledged: {}",
        acked.len()
    );

    let new_leader = cluster.leader(ELECTION_BOUND).await;
    assert!(survivors.contains(&new_leader));
    cluster.restart(leader).await;
    for index in 0..3 {
        for (key, expected) in &acked {
            await_replicated(&cluster, index, key, expected.clone()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_writes_fail_with_etcds_errors_and_resume_after() {
    let mut cluster = TestCluster::start(3).await;
    cluster.members[1].kill9();
    cluster.members[2].kill9();
    let mut client = cluster.client(0).await;
    let started = Instant::now();
    let failed = timeout(Duration::from_secs(30), client.put("lonely", "no", None))
        .await
        .expect("the write must fail in bounded time, not hang");
    let status = common::grpc_status(failed);
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        [
            "etcdserver: request timed out",
            "etcdserver: no leader",
            "etcdserver: leader changed"
        ]
        .contains(&status.message()),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let read = timeout(Duration::from_secs(30), client.get("lonely", None))
        .await
        .expect("the linearizable read must fail in bounded time");
    assert_eq!(common::grpc_status(read).code(), tonic::Code::Unavailable);

    cluster.restart(1).await;
    let mut client = cluster.client(0).await;
    let put = client
        .put("lonely", "again", None)
        .await
        .expect("quorum is back");
    let revision = put.header().expect("header").revision();
    await_replicated(&cluster, 1, "lonely", ("again".into(), revision)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_work_through_followers_and_survive_the_leaders_death() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader(ELECTION_BOUND).await;
    let follower = (leader + 1) % 3;
    let mut client = cluster.client(follower).await;
    let lease = client
        .lease_grant(6, None)
        .await
        .expect("grant via a follower")
        .id();
    client
        .put(
            "leased",
            "v",
            Some(etcd_client::PutOptions::new().with_lease(lease)),
        )
        .await
        .expect("put with the lease via a follower");
    let (mut keeper, mut answers) = client
        .lease_keep_alive(lease)
        .await
        .expect("keep-alive stream via a follower");
    keeper.keep_alive().await.expect("keep-alive sent");
    let answer = timeout(Duration::from_secs(10), answers.message())
        .await
        .expect("keep-alive answered in time")
        .expect("keep-alive answered")
        .expect("stream open");
    assert_eq!(
        answer.ttl(),
        6,
        "renewed on the leader through the follower"
    );
    let described = client
        .lease_time_to_live(
            lease,
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .expect("time-to-live via a follower");
    assert_eq!(described.keys(), [b"leased".to_vec()]);

    cluster.members[leader].kill9();
    let killed_at = Instant::now();
    let new_leader = cluster.leader(ELECTION_BOUND).await;
    assert!(
        local_get(&cluster, new_leader, "leased").await.is_some(),
        "a failover must not expire the lease early"
    );
    // The new leader gives the lease its full TTL again and then expires it.
    let deadline = killed_at + ELECTION_BOUND + Duration::from_secs(12);
    while local_get(&cluster, new_leader, "leased").await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the lease never expired after failover"
        );
        sleep(Duration::from_millis(200)).await;
    }
    let survivor = (0..3)
        .find(|i| *i != leader && *i != new_leader)
        .expect("a third member");
    let deadline = Instant::now() + Duration::from_secs(10);
    while local_get(&cluster, survivor, "leased").await.is_some() {
        assert!(Instant::now() < deadline, "the revoke did not replicate");
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_hashes_the_same_state_at_a_revision() {
    let cluster = TestCluster::start(3).await;
    let mut client = cluster.client(0).await;
    let mut last = 0;
    for n in 0..30 {
        let key = format!("h/{}", n % 7);
        last = client
            .put(key.as_str(), format!("v{n}"), None)
            .await
            .expect("put")
            .header()
            .expect("header")
            .revision();
    }
    client.delete("h/3", None).await.expect("delete");
    let mut hashes = Vec::new();
    for index in 0..3 {
        await_replicated(&cluster, index, "h/1", ("v29".into(), last)).await;
        let mut member = cluster.client(index).await;
        let hashed = member.hash_kv(last).await.expect("hash kv");
        hashes.push(hashed.hash());
    }
    assert!(hashes.iter().all(|hash| *hash == hashes[0]), "{hashes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_move_leader_hands_leadership_to_the_named_member() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader(ELECTION_BOUND).await;
    let target = (leader + 1) % 3;
    let target_id = cluster.member_id(target).await;
    let output = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &cluster.members[leader].endpoint(),
            "--command-timeout=15s",
            "move-leader",
            &format!("{target_id:x}"),
        ])
        .output()
        .expect("running etcdctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "etcdctl failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Leadership transferred"), "{stdout}");
    assert_eq!(cluster.leader(ELECTION_BOUND).await, target);
    // A follower cannot move leadership: etcd's "not leader".
    let follower = (0..3).find(|i| *i != target).expect("a follower");
    let mut client = cluster.client(follower).await;
    let refused = client.move_leader(target_id).await;
    common::assert_grpc_error(
        refused,
        tonic::Code::FailedPrecondition,
        "etcdserver: not leader",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_the_compacted_log_catches_up_from_a_snapshot() {
    if common::is_reference_run() {
        // etcd 3.4 keeps a fixed 5,000 entries for catch-up (no flag), too many for this test.
        return;
    }
    let mut cluster = TestCluster::start_with_args(
        3,
        &[
            "--snapshot-count",
            "20",
            "--experimental-snapshot-catchup-entries",
            "5",
        ],
    )
    .await;
    let leader = cluster.leader(ELECTION_BOUND).await;
    let lagging = (leader + 1) % 3;
    let lagging_id = cluster.member_id(lagging).await;
    cluster.members[lagging].kill9();
    let mut client = cluster.client(leader).await;
    let lease = client.lease_grant(600, None).await.expect("grant").id();
    // About 2.5 MiB of values, so the snapshot is streamed in several chunks.
    for n in 0..40 {
        client
            .put(format!("bulk/{n:02}"), vec![b'x'; 64 * 1024], None)
            .await
            .expect("bulk put while a member is down");
    }
    let mut last = (String::new(), 0);
    for n in 0..150 {
        let value = format!("v{n}");
        let options = (n % 10 == 0).then(|| etcd_client::PutOptions::new().with_lease(lease));
        let put = client
            .put(format!("snap/{}", n % 40), value.as_str(), options)
            .await
            .expect("put while a member is down");
        last = (value, put.header().expect("header").revision());
    }
    client.compact(last.1 - 50, None).await.expect("compact");
    // A membership change the member misses too: it moves to a new peer URL while down.
    let new_port = common::free_port();
    let new_url = format!("http://127.0.0.1:{new_port}");
    client
        .member_update(lagging_id, vec![new_url.clone()])
        .await
        .expect("member update while the member is down");
    cluster.members[lagging].peer_port = new_port;

    cluster.restart(lagging).await;
    await_replicated(&cluster, lagging, "snap/29", last.clone()).await;
    let mut hashes = Vec::new();
    for index in 0..3 {
        let mut member = cluster.client(index).await;
        hashes.push(member.hash_kv(last.1).await.expect("hash kv").hash());
    }
    assert!(hashes.iter().all(|hash| *hash == hashes[0]), "{hashes:?}");
    let mut lagging_client = cluster.client(lagging).await;
    let described = lagging_client
        .lease_time_to_live(
            lease,
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .expect("time-to-live");
    assert_eq!(
        described.keys().len(),
        4,
        "the lease and its keys came with the snapshot"
    );
    let listed = lagging_client.member_list().await.expect("member list");
    let own = listed
        .members()
        .iter()
        .find(|member| member.id() == lagging_id)
        .expect("listed");
    assert_eq!(
        own.peer_urls(),
        [new_url],
        "the membership came with the snapshot"
    );
    let streamed = cluster.members[leader].logs();
    assert!(
        streamed.contains("streaming a raft snapshot"),
        "the leader did not stream a snapshot; logs:\n{streamed}"
    );
    let installed = cluster.members[lagging].logs();
    assert!(
        common::is_reference_run() || installed.contains("installed a raft snapshot"),
        "the member caught up without a snapshot; logs:\n{installed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_lists_every_members_name_and_client_urls() {
    let cluster = TestCluster::start(3).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    for index in 0..3 {
        let mut client = cluster.client(index).await;
        loop {
            let listed = client.member_list().await.expect("member list");
            let mut seen: Vec<(String, Vec<String>)> = listed
                .members()
                .iter()
                .map(|member| (member.name().to_string(), member.client_urls().to_vec()))
                .collect();
            seen.sort();
            let expected: Vec<(String, Vec<String>)> = cluster
                .members
                .iter()
                .map(|member| {
                    (
                        member.name.clone(),
                        vec![format!("http://{}", member.endpoint())],
                    )
                })
                .collect();
            if seen == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member {index} lists {seen:?}, expected {expected:?}"
            );
            sleep(Duration::from_millis(100)).await;
        }
    }
}

/// etcdctl's `--cluster` forms dial every member's client URL, and grpc-go then sends the URL
/// (`http://127.0.0.1:PORT`) as the HTTP/2 authority; every member must answer them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_endpoint_status_and_hash_cover_the_whole_cluster() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader(ELECTION_BOUND).await;
    let mut client = cluster.client(leader).await;
    client.put("k", "v", None).await.expect("put");
    let url = format!("http://{}", cluster.members[leader].endpoint());
    let status = etcdctl(&url, &["endpoint", "status", "--cluster", "-w", "json"]);
    let mut leaders = Vec::new();
    for member in &cluster.members {
        let line = status
            .split("},{")
            .find(|entry| entry.contains(&format!("\"Endpoint\":\"http://{}\"", member.endpoint())))
            .unwrap_or_else(|| panic!("no status for {}: {status}", member.endpoint()));
        leaders.push(line.contains(&format!("\"leader\":{}", member_id_field(line))));
    }
    assert_eq!(
        leaders.iter().filter(|is_leader| **is_leader).count(),
        1,
        "exactly one member reports itself leader: {status}"
    );
    let hashes = etcdctl(&url, &["endpoint", "hash", "--cluster"]);
    assert_eq!(hashes.lines().count(), 3, "{hashes}");
    for member in &cluster.members {
        assert!(
            hashes.contains(&format!("http://{}, ", member.endpoint())),
            "{hashes}"
        );
    }
}

/// The `"member_id":N` value of one member's JSON status line.
fn member_id_field(status: &str) -> &str {
    let start = status.find("\"member_id\":").expect("member_id") + "\"member_id\":".len();
    let rest = &status[start..];
    &rest[..rest.find([',', '}']).expect("end of member_id")]
}

/// Runs etcdctl 3.4 against `endpoint`; panics with its output if it fails.
fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--command-timeout=20s"])
        .args(args)
        .output()
        .expect("running etcdctl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "etcdctl {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_is_promoted_and_an_old_member_is_removed_under_load() {
    let mut cluster = TestCluster::start(3).await;
    let endpoints = cluster.endpoints();
    let writer = tokio::spawn(async move {
        let mut acked = BTreeMap::new();
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < Duration::from_secs(12) && n < 3_000 {
            // Through the first member, which stays.
            let attempt = timeout(Duration::from_secs(3), async {
                let mut client = common::connect(&endpoints[0]).await;
                client
                    .put(format!("member/{n:05}"), format!("v{n}"), None)
                    .await
            })
            .await;
            if let Ok(Ok(put)) = attempt {
                acked.insert(
                    format!("member/{n:05}"),
                    (format!("v{n}"), put.header().expect("header").revision()),
                );
            }
            n += 1;
        }
        acked
    });

    let joiner = cluster.prepare_member();
    let peer_url = cluster.members[joiner].peer_url();
    let first = cluster.members[0].endpoint();
    // etcd refuses membership changes until its peers were connected for 5 s ("unhealthy
    // cluster"); operators retry, and so does this test, within a bound.
    let name = cluster.members[joiner].name.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &first, "member", "add", &name, "--learner"])
            .args(["--peer-urls", &peer_url])
            .output()
            .expect("running etcdctl");
        let stdout = String::from_utf8_lossy(&output.stdout);
        if output.status.success() {
            assert!(stdout.contains("added to cluster"), "{stdout}");
            break;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("unhealthy cluster"), "{stderr}");
        assert!(
            Instant::now() < deadline,
            "member add kept failing: {stderr}"
        );
        sleep(Duration::from_millis(500)).await;
    }
    cluster.start_joining(joiner).await;

    let listed = etcdctl(&first, &["member", "list"]);
    let joiner_id = listed
        .lines()
        .find(|line| line.contains(&peer_url))
        .and_then(|line| line.split(',').next())
        .expect("the learner is listed")
        .to_string();
    assert!(
        listed
            .lines()
            .any(|l| l.contains(&peer_url) && l.trim_end().ends_with("true")),
        "{listed}"
    );
    assert_a_learner_serves_only_what_etcds_learners_serve(&cluster.members[joiner].endpoint())
        .await;
    // Promotion is refused until the learner caught up; retry within a bound, as operators do.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &first, "member", "promote", &joiner_id])
            .output()
            .expect("running etcdctl");
        if output.status.success() {
            break;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("in sync with leader"), "{stderr}");
        assert!(Instant::now() < deadline, "the learner never caught up");
        sleep(Duration::from_millis(300)).await;
    }
    let old = cluster.members[2].endpoint();
    let old_id = etcdctl(&old, &["endpoint", "status", "-w", "fields"])
        .lines()
        .find(|line| line.starts_with("\"MemberID\""))
        .and_then(|line| line.split(':').nth(1))
        .map(|id| format!("{:x}", id.trim().parse::<u64>().expect("member id")))
        .expect("member id of the third member");
    let removed = etcdctl(&first, &["member", "remove", &old_id]);
    assert!(removed.contains("removed from cluster"), "{removed}");

    let acked = writer.await.expect("writer");
    assert!(
        acked.len() > 20,
        "too few writes acknowledged: {}",
        acked.len()
    );
    for index in [0, 1, joiner] {
        for (key, expected) in &acked {
            await_replicated(&cluster, index, key, expected.clone()).await;
        }
    }
    let members = etcdctl(&first, &["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    assert!(
        !members.contains(&cluster.members[2].peer_url()),
        "{members}"
    );
}

/// etcd's learner rule: Status, Snapshot and serializable ranges are served; every other call,
/// unary or stream, of every service is refused with etcd's error.
async fn assert_a_learner_serves_only_what_etcds_learners_serve(learner: &str) {
    use common::assert_grpc_error;
    const REFUSED: &str = "etcdserver: rpc not supported for learner";
    let mut client = common::connect(learner).await;
    client.status().await.expect("a learner answers Status");
    client
        .get("member/00000", Some(GetOptions::new().with_serializable()))
        .await
        .expect("a learner answers serializable ranges");
    // etcd 3.5's code (3.4 answered Unavailable).
    let refused = tonic::Code::FailedPrecondition;
    assert_grpc_error(client.get("member/00000", None).await, refused, REFUSED);
    assert_grpc_error(client.put("on-learner", "no", None).await, refused, REFUSED);
    assert_grpc_error(client.delete("on-learner", None).await, refused, REFUSED);
    assert_grpc_error(client.lease_grant(10, None).await, refused, REFUSED);
    assert_grpc_error(client.member_list().await, refused, REFUSED);
    assert_grpc_error(
        client
            .alarm(
                etcd_client::AlarmAction::Get,
                etcd_client::AlarmType::None,
                None,
            )
            .await,
        refused,
        REFUSED,
    );
    assert_grpc_error(client.watch("member/", None).await, refused, REFUSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_member_that_would_cost_the_quorum_is_refused() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader(ELECTION_BOUND).await;
    let down = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    cluster.members[down].kill9();
    // Give the leader a few election timeouts to notice the member is gone.
    sleep(Duration::from_secs(4)).await;
    let mut client = cluster.client(leader).await;
    let other_id = cluster.member_id(other).await;
    // Removing the other live member would leave one reachable voter of two.
    let refused = client.member_remove(other_id).await;
    let status = common::grpc_status(refused);
    assert!(
        [
            "etcdserver: re-configuration failed due to not enough started members",
            "etcdserver: unhealthy cluster"
        ]
        .contains(&status.message()),
        "{status:?}"
    );
    let listed = client.member_list().await.expect("member list");
    assert_eq!(listed.members().len(), 3, "nothing was removed");
    let put = client.put("still", "writable", None).await;
    assert!(put.is_ok(), "the cluster keeps its quorum: {put:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_moved_to_new_peer_urls_keeps_replicating() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader(ELECTION_BOUND).await;
    let moved = (leader + 1) % 3;
    let moved_id = cluster.member_id(moved).await;
    let new_port = common::free_port();
    let new_url = format!("http://127.0.0.1:{new_port}");
    let updated = etcdctl(
        &cluster.members[leader].endpoint(),
        &[
            "member",
            "update",
            &format!("{moved_id:x}"),
            "--peer-urls",
            &new_url,
        ],
    );
    assert!(updated.contains("updated in cluster"), "{updated}");
    // Give the member a moment to apply the update before it restarts on the new port.
    sleep(Duration::from_secs(1)).await;
    cluster.members[moved].kill9();
    cluster.members[moved].peer_port = new_port;
    cluster.restart(moved).await;

    let mut client = cluster.client(leader).await;
    let put = client.put("moved", "along", None).await.expect("put");
    let revision = put.header().expect("header").revision();
    await_replicated(&cluster, moved, "moved", ("along".into(), revision)).await;
    let listed = etcdctl(&cluster.members[leader].endpoint(), &["member", "list"]);
    assert!(listed.contains(&new_url), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_requires_a_leader_is_refused_without_one() {
    use etcd_api::pb::etcdserverpb::watch_client::WatchClient;
    use etcd_api::pb::etcdserverpb::watch_request::RequestUnion;
    use etcd_api::pb::etcdserverpb::{WatchCreateRequest, WatchRequest};

    let mut cluster = TestCluster::start(3).await;
    cluster.members[1].kill9();
    cluster.members[2].kill9();
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "http://{}",
        cluster.members[0].endpoint()
    ))
    .expect("endpoint")
    .connect()
    .await
    .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })),
        };
        // kube-apiserver's metadata: serve this watch only while there is a leader.
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        sender.send(create).await.expect("queueing the create");
        let mut request =
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
        request
            .metadata_mut()
            .insert("hasleader", "true".parse().expect("metadata value"));
        let opened = timeout(
            Duration::from_secs(5),
            WatchClient::new(channel.clone()).watch(request),
        )
        .await
        .expect("answered in time");
        match opened {
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable);
                assert_eq!(status.message(), "etcdserver: no leader");
                return;
            }
            // The member may still believe in its leader for an election timeout or two.
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the watch kept being accepted without a leader"
                );
                sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// etcd binds its ports before anything else: while a new member waits for the cluster it
/// joins to answer, clients and peers that connect are held in the backlog instead of being
/// refused (a refused gRPC client backs off for a second or more), and nothing is answered
/// before the member has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_waiting_to_join_holds_connections_and_answers_nothing() {
    use etcd_api::pb::etcdserverpb::maintenance_client::MaintenanceClient;
    use etcd_api::pb::etcdserverpb::StatusRequest;

    let dir = tempfile::tempdir().expect("tempdir");
    let (client_port, peer_port) = (common::free_port(), common::free_port());
    // Nobody listens here: the cluster to join never answers.
    let absent_peer = format!("http://127.0.0.1:{}", common::free_port());
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let joining = std::process::Command::new(env!("CARGO_BIN_EXE_k3rs"))
        .arg("etcd")
        .args(["--name", "m2"])
        .arg("--data-dir")
        .arg(dir.path().join("m2"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args([
            "--initial-cluster",
            &format!("m1={absent_peer},m2={peer_url}"),
        ])
        .args(["--initial-cluster-state", "existing"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning k3rs");
    let mut joining = common::KillOnDrop(joining);

    let deadline = Instant::now() + Duration::from_secs(10);
    for port in [client_port, peer_port] {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "port {port} never accepted a connection"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }
    let channel = tonic::transport::Endpoint::from_shared(client_url)
        .expect("endpoint")
        .connect_lazy();
    let answer = timeout(
        Duration::from_secs(2),
        MaintenanceClient::new(channel).status(StatusRequest {}),
    )
    .await;
    assert!(
        answer.is_err(),
        "a member that has not joined yet must hold the request, not answer or refuse it: {answer:?}"
    );
    assert!(
        joining.0.try_wait().expect("polling the member").is_none(),
        "the member gave up waiting for the cluster early"
    );
}
