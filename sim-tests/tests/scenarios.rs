//! Named scenarios: known etcd bugs, replayed step by step on a simulated k3rs cluster.
//!
//! Each runs a 3-member cluster on turmoil with one scripted client and checks what etcd
//! (after the fix of that bug) answers.

use std::sync::Arc;
use std::time::Duration;

use etcd_api::pb::etcdserverpb::watch_client::WatchClient;
use etcd_api::pb::etcdserverpb::watch_request::RequestUnion;
use etcd_api::pb::etcdserverpb::{WatchCreateRequest, WatchRequest};
use futures::channel::mpsc;
use parking_lot::Mutex;
use raftstore::node::config::InjectedFaults;
use sim_tests::client::EtcdClient;
use sim_tests::cluster::SimCluster;
use sim_tests::history::{Request, Response};
use sim_tests::run::CONNECT_TIMEOUT;
use sim_tests::watch_log::{Event, EventKind};

/// What a scenario's watch saw: the revision it started at and its events.
type Watched = Arc<Mutex<Option<(i64, Vec<Event>)>>>;

/// Sends `request` to member 0 until it succeeds (the cluster may still be electing).
async fn until_ok(client: &EtcdClient, request: Request) -> Response {
    loop {
        match client.execute(0, &request).await {
            Ok(response) => return response,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn put(value: &str) -> Request {
    Request::Put {
        key: "k".into(),
        value: value.into(),
    }
}

/// etcd #18089: put, put, delete (revision D), put, compact at D, watch from D: the watch
/// must deliver the DELETE at D, then the PUT after it (D is the compact revision, so it is
/// still watchable).
#[test]
fn a_watch_opened_at_the_compacted_revision_gets_the_delete_there() {
    let mut sim = turmoil::Builder::new()
        .rng_seed(7)
        .simulation_duration(Duration::from_secs(60))
        .build();
    let cluster = SimCluster::new(3, 7, InjectedFaults::default());
    cluster.install(&mut sim);
    let seen: Watched = Arc::default();
    let names = cluster.names.clone();
    let result = seen.clone();
    sim.client("c1", async move {
        let client = EtcdClient::new(&names, CONNECT_TIMEOUT).map_err(|err| format!("{err:#}"))?;
        until_ok(&client, put("v1")).await;
        until_ok(&client, put("v2")).await;
        let deleted = until_ok(&client, Request::Delete { key: "k".into() })
            .await
            .revision();
        until_ok(&client, put("v3")).await;
        client.compact(0, deleted, true).await?;
        let (mut requests, outgoing) = mpsc::channel::<WatchRequest>(1);
        requests
            .try_send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: b"k".to_vec(),
                    start_revision: deleted,
                    ..Default::default()
                })),
            })
            .map_err(|err| err.to_string())?;
        let mut responses = WatchClient::new(client.channel(0))
            .watch(outgoing)
            .await
            .map_err(|status| status.to_string())?
            .into_inner();
        let mut events = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(3));
        tokio::pin!(deadline);
        while events.len() < 2 {
            tokio::select! {
                biased;
                _ = &mut deadline => break,
                response = responses.message() => match response {
                    Ok(Some(response)) => events.extend(response.events.iter().map(Event::from_pb)),
                    _ => break,
                },
            }
        }
        *result.lock() = Some((deleted, events));
        drop(requests);
        let done: turmoil::Result = Ok(());
        done
    });
    sim.run().expect("the scenario runs");
    let (deleted, events) = seen.lock().take().expect("the client finished");
    let got: Vec<(EventKind, i64)> = events
        .iter()
        .map(|event| (event.kind, event.revision()))
        .collect();
    assert_eq!(
        got,
        vec![(EventKind::Delete, deleted), (EventKind::Put, deleted + 1)],
        "watch from the compact revision {deleted}"
    );
}

/// etcd's initial election tick advance: members of a new cluster start with all but two ticks
/// of their election timeout elapsed, so most new clusters serve their first write before one
/// election timeout has passed. Without it no member may campaign before a whole timeout, so
/// no cluster could. (Some seeds still take longer: a first campaign sent before the peers
/// listen is lost, and the member waits out a whole timeout again.)
#[test]
fn most_new_clusters_serve_their_first_write_within_one_election_timeout() {
    let mut first_writes = Vec::new();
    let mut election_timeout = Duration::ZERO;
    for seed in 1..=9 {
        let mut sim = turmoil::Builder::new()
            .rng_seed(seed)
            .simulation_duration(Duration::from_secs(30))
            .build();
        let cluster = SimCluster::new(3, seed, InjectedFaults::default());
        cluster.install(&mut sim);
        election_timeout = cluster.election_timeout();
        let names = cluster.names.clone();
        let first_write = Arc::new(Mutex::new(None));
        let result = first_write.clone();
        sim.client("c1", async move {
            let started = tokio::time::Instant::now();
            let client =
                EtcdClient::new(&names, CONNECT_TIMEOUT).map_err(|err| format!("{err:#}"))?;
            while client.execute(0, &put("v1")).await.is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            *result.lock() = Some(started.elapsed());
            let done: turmoil::Result = Ok(());
            done
        });
        sim.run().expect("the scenario runs");
        let took = first_write.lock().take().expect("the client finished");
        first_writes.push((seed, took));
    }
    let in_time = first_writes
        .iter()
        .filter(|(_, took)| *took < election_timeout)
        .count();
    assert!(
        in_time * 2 > first_writes.len(),
        "only {in_time} of {} new clusters served their first write within the election \
         timeout {election_timeout:?}: {first_writes:?}",
        first_writes.len()
    );
}
