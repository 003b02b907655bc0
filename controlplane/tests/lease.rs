//! The Lease API of the real `k3rs` binary, driven with the `etcd-client` crate (and the raw
//! generated client where the crate turns an answer into an error): grant rules and errors,
//! attaching keys, revoke, keep-alive, time-to-live, expiry on time, durability across a
//! restart, and moving keys between leases — each checked against etcd's documented (and
//! observed) behaviour.

mod common;

use std::time::Duration;

use common::{assert_grpc_error, TestServer};
use etcd_api::pb::etcdserverpb::lease_client::LeaseClient as RawLeaseClient;
use etcd_api::pb::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use etcd_client::{
    Client, EventType, GetOptions, LeaseGrantOptions, LeaseKeepAliveStream, LeaseTimeToLiveOptions,
    LeaseTimeToLiveResponse, PutOptions, WatchOptions,
};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// Bound on any single stream read that must be answered.
const RESPONSE_BOUND: Duration = Duration::from_secs(10);
/// A TTL long enough that no lease expires during a test.
const LONG_TTL: i64 = 600;
/// etcd's minimum TTL with the default 1 s election timeout: ⌈1.5 × 1 s⌉.
const MIN_TTL: i64 = 2;
/// etcd's maximum TTL (9e9 s).
const MAX_TTL: i64 = 9_000_000_000;
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";

/// Grants a lease of `ttl` seconds with a server-chosen id and returns the id.
async fn grant(client: &mut Client, ttl: i64) -> i64 {
    client
        .lease_grant(ttl, None)
        .await
        .expect("lease grant")
        .id()
}

/// Puts `key = value` attached to `lease`; returns the revision.
async fn put_with_lease(client: &mut Client, key: &str, value: &str, lease: i64) -> i64 {
    let response = client
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put with lease");
    response.header().expect("put header").revision()
}

async fn time_to_live_with_keys(client: &mut Client, lease: i64) -> LeaseTimeToLiveResponse {
    client
        .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .expect("lease time to live")
}

/// The keys attached to `lease`, sorted (etcd lists them in no particular order).
async fn attached_keys(client: &mut Client, lease: i64) -> Vec<String> {
    let response = time_to_live_with_keys(client, lease).await;
    let mut keys: Vec<String> = response
        .keys()
        .iter()
        .map(|key| String::from_utf8(key.clone()).expect("utf-8 key"))
        .collect();
    keys.sort();
    keys
}

/// The lease `key` is attached to (0 for none); panics if the key is absent.
async fn lease_of(client: &mut Client, key: &str) -> i64 {
    let response = client.get(key, None).await.expect("get");
    response.kvs().first().expect("the key exists").lease()
}

async fn exists(client: &mut Client, key: &str) -> bool {
    !client.get(key, None).await.expect("get").kvs().is_empty()
}

/// The ids of every lease the server lists.
async fn listed_leases(client: &mut Client) -> Vec<i64> {
    let response = client.leases().await.expect("lease leases");
    response.leases().iter().map(|lease| lease.id()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_with_server_chosen_id_echoes_the_ttl() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let response = client.lease_grant(60, None).await.expect("lease grant");
    assert_ne!(response.id(), 0, "the server picks a non-zero id");
    assert_eq!(response.ttl(), 60);

    let status = time_to_live_with_keys(&mut client, response.id()).await;
    assert_eq!(status.id(), response.id());
    assert_eq!(status.granted_ttl(), 60);
    assert!((58..=60).contains(&status.ttl()), "ttl {}", status.ttl());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_with_client_chosen_id_uses_that_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let response = client
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(0x1234)))
        .await
        .expect("lease grant");
    assert_eq!((response.id(), response.ttl()), (0x1234, 60));
    assert_eq!(listed_leases(&mut client).await, [0x1234]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_of_an_existing_id_fails_lease_already_exists() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let id = grant(&mut client, 60).await;

    let result = client
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(id)))
        .await;
    assert_grpc_error(
        result,
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_below_the_minimum_ttl_is_raised_to_the_minimum() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let response = client.lease_grant(1, None).await.expect("lease grant");
    assert_eq!(response.ttl(), MIN_TTL, "the grant reports the raised TTL");
    let status = time_to_live_with_keys(&mut client, response.id()).await;
    assert_eq!(status.granted_ttl(), MIN_TTL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_above_the_maximum_ttl_fails_too_large() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let result = client.lease_grant(MAX_TTL + 1, None).await;
    assert_grpc_error(result, Code::OutOfRange, "etcdserver: too large lease TTL");

    let at_limit = client.lease_grant(MAX_TTL, None).await.expect("grant");
    assert_eq!(at_limit.ttl(), MAX_TTL, "the maximum itself is allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_an_unknown_lease_fails_lease_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let result = client
        .put("k", "v", Some(PutOptions::new().with_lease(0x7777)))
        .await;
    assert_grpc_error(result, Code::NotFound, LEASE_NOT_FOUND);
    assert!(!exists(&mut client, "k").await, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_a_lease_attaches_the_key() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let lease = grant(&mut client, LONG_TTL).await;
    put_with_lease(&mut client, "k/1", "v", lease).await;
    put_with_lease(&mut client, "k/2", "v", lease).await;

    assert_eq!(lease_of(&mut client, "k/1").await, lease);
    assert_eq!(attached_keys(&mut client, lease).await, ["k/1", "k/2"]);
    assert_eq!(listed_leases(&mut client).await, [lease]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_deletes_every_attached_key_in_one_revision() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let lease = grant(&mut client, LONG_TTL).await;
    for key in ["v/1", "v/2", "v/3"] {
        put_with_lease(&mut client, key, "v", lease).await;
    }
    client.put("v/free", "v", None).await.expect("put");
    let (_watcher, mut stream) = client
        .watch("v/", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");

    client.lease_revoke(lease).await.expect("revoke");
    let after = client
        .get("v/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("get");
    let revision = after.header().expect("header").revision();
    let remaining: Vec<&[u8]> = after.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(remaining, [&b"v/free"[..]], "only the unleased key is left");

    let response = timeout(RESPONSE_BOUND, stream.message())
        .await
        .expect("the deletes are watched within the bound")
        .expect("watch stream")
        .expect("open watch stream");
    let events: Vec<(EventType, Vec<u8>, i64)> = response
        .events()
        .iter()
        .map(|event| {
            let kv = event.kv().expect("kv");
            (event.event_type(), kv.key().to_vec(), kv.mod_revision())
        })
        .collect();
    let mut keys: Vec<Vec<u8>> = events.iter().map(|(_, key, _)| key.clone()).collect();
    keys.sort();
    assert_eq!(keys, [b"v/1".to_vec(), b"v/2".to_vec(), b"v/3".to_vec()]);
    assert!(
        events
            .iter()
            .all(|(kind, _, at)| *kind == EventType::Delete && *at == revision),
        "one response, all DELETE at revision {revision}: {events:?}"
    );
    assert!(listed_leases(&mut client).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_of_an_unknown_lease_fails_lease_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    assert_grpc_error(
        client.lease_revoke(0x7777).await,
        Code::NotFound,
        LEASE_NOT_FOUND,
    );
}

async fn next_keep_alive(stream: &mut LeaseKeepAliveStream) -> (i64, i64) {
    let response = timeout(RESPONSE_BOUND, stream.message())
        .await
        .expect("a keep-alive answer within the bound")
        .expect("keep-alive stream")
        .expect("open keep-alive stream");
    (response.id(), response.ttl())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_renews_the_ttl_over_one_stream() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let lease = grant(&mut client, 10).await;
    sleep(Duration::from_millis(2200)).await;
    let before = time_to_live_with_keys(&mut client, lease).await.ttl();
    assert!(before <= 8, "two seconds passed: ttl {before}");

    // The crate sends the first keep-alive itself and checks its answer.
    let (mut keeper, mut stream) = timeout(RESPONSE_BOUND, client.lease_keep_alive(lease))
        .await
        .expect("keep-alive opens within the bound")
        .expect("keep-alive");
    let after = time_to_live_with_keys(&mut client, lease).await.ttl();
    assert!(after >= 9, "renewed to the granted 10 s: ttl {after}");

    for _ in 0..2 {
        keeper.keep_alive().await.expect("sending a keep-alive");
        assert_eq!(next_keep_alive(&mut stream).await, (lease, 10));
    }
}

async fn queue_keep_alive(requests: &mpsc::Sender<LeaseKeepAliveRequest>, id: i64) {
    requests
        .send(LeaseKeepAliveRequest { id })
        .await
        .expect("queueing a keep-alive");
}

async fn next_raw_keep_alive(
    responses: &mut tonic::Streaming<LeaseKeepAliveResponse>,
) -> LeaseKeepAliveResponse {
    timeout(RESPONSE_BOUND, responses.message())
        .await
        .expect("a keep-alive answer within the bound")
        .expect("the keep-alive stream did not fail")
        .expect("the keep-alive stream is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_of_an_unknown_lease_answers_ttl_zero() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let lease = grant(&mut client, 60).await;

    // The first request is queued before the call: a gRPC server may hold back the response
    // headers (which the call waits for) until it has something to answer.
    let (requests, receiver) = mpsc::channel(4);
    queue_keep_alive(&requests, 0x7777).await;
    let mut raw = RawLeaseClient::new(server.raw_channel().await);
    let mut responses = timeout(
        RESPONSE_BOUND,
        raw.lease_keep_alive(ReceiverStream::new(receiver)),
    )
    .await
    .expect("keep-alive opens within the bound")
    .expect("opening a raw keep-alive stream")
    .into_inner();

    let unknown = next_raw_keep_alive(&mut responses).await;
    assert_eq!(
        (unknown.id, unknown.ttl),
        (0x7777, 0),
        "TTL 0, not an error"
    );
    queue_keep_alive(&requests, lease).await;
    let known = next_raw_keep_alive(&mut responses).await;
    assert_eq!((known.id, known.ttl), (lease, 60), "the stream still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_to_live_of_an_unknown_lease_answers_ttl_minus_one() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let response = time_to_live_with_keys(&mut client, 0x7777).await;
    assert_eq!((response.id(), response.ttl()), (0x7777, -1));
    assert!(response.keys().is_empty());
}

/// TTL of the expiry test (at least etcd's minimum).
const EXPIRY_TTL: Duration = Duration::from_secs(3);
/// How early and how late (after the TTL) a lease may expire.
const EXPIRY_EARLY: Duration = Duration::from_millis(500);
const EXPIRY_LATE: Duration = Duration::from_secs(1);
const EXPIRY_POLL: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expires_on_time_and_its_keys_are_deleted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_watcher, mut stream) = client
        .watch("e/", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");

    let grant_sent = Instant::now();
    let lease = grant(&mut client, EXPIRY_TTL.as_secs() as i64).await;
    let granted = Instant::now();
    put_with_lease(&mut client, "e/1", "v", lease).await;
    put_with_lease(&mut client, "e/2", "v", lease).await;

    // `last_present`: when the last read that still saw the key was sent; `gone`: when the
    // first read that no longer saw it answered. The lease started between `grant_sent` and
    // `granted`, so a server expiring within [TTL - early, TTL + late] passes both checks.
    let give_up = granted + EXPIRY_TTL + EXPIRY_LATE + Duration::from_secs(2);
    let mut last_present = None;
    let gone = loop {
        let sent = Instant::now();
        if !exists(&mut client, "e/1").await {
            break Instant::now();
        }
        last_present = Some(sent);
        assert!(sent < give_up, "the lease never expired");
        sleep(EXPIRY_POLL).await;
    };
    assert!(
        gone - grant_sent >= EXPIRY_TTL - EXPIRY_EARLY,
        "expired too early: {:?} after the grant",
        gone - grant_sent
    );
    let last_present = last_present.expect("the key was read before it expired");
    assert!(
        last_present - granted <= EXPIRY_TTL + EXPIRY_LATE,
        "expired too late: still there {:?} after the grant",
        last_present - granted
    );
    assert!(!exists(&mut client, "e/2").await);

    let mut deleted = Vec::new();
    while deleted.len() < 2 {
        let response = timeout(RESPONSE_BOUND, stream.message())
            .await
            .expect("watch response within the bound")
            .expect("watch stream")
            .expect("open watch stream");
        for event in response.events() {
            if event.event_type() == EventType::Delete {
                deleted.push(event.kv().expect("kv").key().to_vec());
            }
        }
    }
    deleted.sort();
    assert_eq!(deleted, [b"e/1".to_vec(), b"e/2".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_attached_keys_survive_a_restart() {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    let lease = grant(&mut client, LONG_TTL).await;
    put_with_lease(&mut client, "s/1", "v", lease).await;
    put_with_lease(&mut client, "s/2", "v", lease).await;
    drop(client);

    server.terminate(Duration::from_secs(10)).await;
    server.restart().await;
    let mut client = server.client().await;

    let status = time_to_live_with_keys(&mut client, lease).await;
    assert_eq!(status.granted_ttl(), LONG_TTL);
    assert!(status.ttl() > 0, "still alive: ttl {}", status.ttl());
    assert_eq!(attached_keys(&mut client, lease).await, ["s/1", "s/2"]);
    assert_eq!(lease_of(&mut client, "s/1").await, lease);
    assert_eq!(listed_leases(&mut client).await, [lease]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_another_lease_moves_the_key() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let old = grant(&mut client, LONG_TTL).await;
    let new = grant(&mut client, LONG_TTL).await;
    put_with_lease(&mut client, "k", "v1", old).await;
    put_with_lease(&mut client, "k", "v2", new).await;

    assert_eq!(lease_of(&mut client, "k").await, new);
    assert!(attached_keys(&mut client, old).await.is_empty());
    assert_eq!(attached_keys(&mut client, new).await, ["k"]);

    client.lease_revoke(old).await.expect("revoke old");
    assert!(
        exists(&mut client, "k").await,
        "the old lease no longer owns k"
    );
    client.lease_revoke(new).await.expect("revoke new");
    assert!(!exists(&mut client, "k").await, "the new lease owns k");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_without_a_lease_detaches_the_key() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let lease = grant(&mut client, LONG_TTL).await;
    put_with_lease(&mut client, "k", "v1", lease).await;
    client
        .put("k", "v2", None)
        .await
        .expect("put without lease");

    assert_eq!(lease_of(&mut client, "k").await, 0);
    assert!(attached_keys(&mut client, lease).await.is_empty());
    client.lease_revoke(lease).await.expect("revoke");
    assert!(
        exists(&mut client, "k").await,
        "a detached key outlives the lease"
    );
}
