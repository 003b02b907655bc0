//! Leases on a running single-member node, with tokio's clock paused so that expiry is exact
//! and the tests take no wall time: expiry on time with the keys deleted at one revision,
//! keep-alive, time-to-live, and the full TTL a lease gets again after a restart.

use std::sync::Arc;
use std::time::Duration;

use raftstore::engine::memory::MemoryEngine;
use raftstore::engine::KvEngine;
use raftstore::node::{start, NoPeers, NodeConfig, NodeHandle, RunningNode};
use raftstore::pb::etcdserverpb::{LeaseGrantRequest, PutRequest, RangeRequest};
use raftstore::pb::mvccpb::event::EventType;
use raftstore::watch::{WatchCreate, WatchMessage};
use raftstore::EtcdError;
use tokio::time::{sleep, Instant};

async fn started(engine: &Arc<MemoryEngine>) -> RunningNode {
    let engine: Arc<dyn KvEngine> = engine.clone();
    let node = start(engine, NodeConfig::default(), Arc::new(NoPeers)).expect("node starts");
    node.ready().await.expect("node ready");
    node
}

async fn stopped(node: RunningNode) {
    node.handle.shutdown();
    node.driver
        .await
        .expect("driver task")
        .expect("driver stops cleanly");
}

async fn grant(handle: &NodeHandle, id: i64, ttl: i64) -> i64 {
    let response = handle
        .lease_grant(LeaseGrantRequest { ttl, id })
        .await
        .expect("lease granted");
    response.id
}

async fn put(handle: &NodeHandle, key: &str, lease: i64) -> i64 {
    let response = handle
        .put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })
        .await
        .expect("put");
    response.header.expect("header").revision
}

async fn exists(handle: &NodeHandle, key: &str) -> bool {
    let response = handle
        .range(RangeRequest {
            key: key.into(),
            ..Default::default()
        })
        .await
        .expect("range");
    response.count == 1
}

#[tokio::test(start_paused = true)]
async fn a_lease_expires_on_time_and_its_keys_go_at_one_revision() {
    let engine = Arc::new(MemoryEngine::new());
    let node = started(&engine).await;
    let handle = &node.handle;
    let granted_at = Instant::now();
    let lease = grant(handle, 0, 5).await;
    assert_ne!(lease, 0, "the server picks an id");
    for key in ["job/a", "job/b", "job/c"] {
        put(handle, key, lease).await;
    }
    let stream = handle.watch_hub().open_stream();
    stream
        .watch(WatchCreate {
            key: b"job/".to_vec(),
            range_end: b"job0".to_vec(),
            ..Default::default()
        })
        .expect("watch");

    sleep(Duration::from_millis(4_800).saturating_sub(granted_at.elapsed())).await;
    assert!(exists(handle, "job/a").await, "alive before its TTL");
    let deadline = granted_at + Duration::from_secs(6);
    while exists(handle, "job/a").await {
        assert!(Instant::now() < deadline, "the lease outlived TTL + 1 s");
        sleep(Duration::from_millis(50)).await;
    }
    assert!(
        granted_at.elapsed() >= Duration::from_secs(5),
        "expired early"
    );
    assert!(!exists(handle, "job/b").await && !exists(handle, "job/c").await);
    let mut deletes = Vec::new();
    while let Some(delivery) = stream.try_next() {
        if let WatchMessage::Events { events, .. } = delivery.message {
            deletes.push(events);
        }
    }
    assert_eq!(deletes.len(), 1, "one message: {deletes:?}");
    let revisions: Vec<i64> = deletes[0]
        .iter()
        .map(|event| {
            assert_eq!(event.r#type, EventType::Delete as i32);
            event.kv.as_ref().expect("kv").mod_revision
        })
        .collect();
    assert_eq!(revisions.len(), 3);
    assert!(revisions.iter().all(|rev| *rev == revisions[0]));
    assert_eq!(handle.lease_time_to_live(lease, false).await, Ok(None));
    stopped(node).await;
}

#[tokio::test(start_paused = true)]
async fn keep_alive_postpones_expiry_and_unknown_leases_renew_to_nothing() {
    let engine = Arc::new(MemoryEngine::new());
    let node = started(&engine).await;
    let handle = &node.handle;
    let lease = grant(handle, 77, 3).await;
    assert_eq!(lease, 77, "the client's id is kept");
    put(handle, "held", lease).await;
    for _ in 0..5 {
        sleep(Duration::from_secs(2)).await;
        assert_eq!(handle.lease_renew(lease).await, Ok(Some(3)));
    }
    assert!(
        exists(handle, "held").await,
        "kept alive for 10 s with a 3 s TTL"
    );
    assert_eq!(handle.lease_renew(12345).await, Ok(None));
    stopped(node).await;
}

#[tokio::test(start_paused = true)]
async fn time_to_live_counts_down_and_lists_keys() {
    let engine = Arc::new(MemoryEngine::new());
    let node = started(&engine).await;
    let handle = &node.handle;
    let lease = grant(handle, 0, 60).await;
    put(handle, "b", lease).await;
    put(handle, "a", lease).await;
    sleep(Duration::from_millis(10_500)).await;
    let described = handle
        .lease_time_to_live(lease, true)
        .await
        .expect("answered")
        .expect("exists");
    assert_eq!(described.granted_ttl, 60);
    assert_eq!(described.ttl, 49, "whole seconds left, rounded down");
    assert_eq!(described.keys, vec![b"a".to_vec(), b"b".to_vec()]);
    let listed: Vec<i64> = handle.lease_leases().leases.iter().map(|l| l.id).collect();
    assert_eq!(listed, vec![lease]);
    stopped(node).await;
}

#[tokio::test(start_paused = true)]
async fn grant_refuses_duplicates_and_huge_ttls_and_raises_tiny_ones() {
    let engine = Arc::new(MemoryEngine::new());
    let node = started(&engine).await;
    let handle = &node.handle;
    let raised = handle
        .lease_grant(LeaseGrantRequest { ttl: 1, id: 5 })
        .await
        .expect("granted");
    assert_eq!(
        raised.ttl, 2,
        "⌈1.5 election timeouts⌉ with etcd's defaults"
    );
    assert_eq!(
        handle
            .lease_grant(LeaseGrantRequest { ttl: 10, id: 5 })
            .await,
        Err(EtcdError::LeaseExists)
    );
    assert_eq!(
        handle
            .lease_grant(LeaseGrantRequest {
                ttl: 9_000_000_001,
                id: 0
            })
            .await,
        Err(EtcdError::LeaseTtlTooLarge)
    );
    stopped(node).await;
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_a_lease_gets_its_full_ttl_again_and_keeps_its_keys() {
    let engine = Arc::new(MemoryEngine::new());
    let node = started(&engine).await;
    let lease = grant(&node.handle, 0, 10).await;
    put(&node.handle, "pod", lease).await;
    sleep(Duration::from_secs(8)).await;
    stopped(node).await;
    engine.crash();

    let node = started(&engine).await;
    let restarted_at = Instant::now();
    let described = node
        .handle
        .lease_time_to_live(lease, true)
        .await
        .expect("answered")
        .expect("the lease survived");
    assert_eq!(described.keys, vec![b"pod".to_vec()]);
    assert!(
        described.ttl >= 10,
        "full TTL plus an election timeout: {}",
        described.ttl
    );
    sleep(Duration::from_secs(9)).await;
    assert!(
        exists(&node.handle, "pod").await,
        "not expired early by the restart"
    );
    while exists(&node.handle, "pod").await {
        assert!(
            restarted_at.elapsed() < Duration::from_secs(13),
            "expired at most TTL + election timeout + 1 s after the restart"
        );
        sleep(Duration::from_millis(100)).await;
    }
    stopped(node).await;
}
