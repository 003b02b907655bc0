//! The lease workload of one simulated client: grant a lease, attach keys to it, keep it alive
//! for a while through members picked from the seed (so keep-alives cross leader changes),
//! then revoke it or let it expire — recording what the cluster acknowledged and when each
//! request was sent, for the lease checker.
//!
//! Guarantees: every acknowledged grant, attached put, keep-alive answered with a TTL and
//! revoke is in the lease's [`LeaseRecord`], with the simulated time its request was sent
//! (the cluster acted on it no earlier). No lease is granted after `grant_until`, and every
//! lease stops being kept alive within [`KEEP_ALIVE_AT_MOST`], so all of them end before
//! the run does. Keep-alive streams are closed by ending the request side and reading every
//! answer, never by dropping them (see `client` on why cancelled streams break replay).

use std::sync::Arc;
use std::time::Duration;

use etcd_api::pb::etcdserverpb::lease_client::LeaseClient;
use etcd_api::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest,
};
use futures::channel::mpsc;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::EtcdClient;

/// The longest a lease is kept alive.
pub const KEEP_ALIVE_AT_MOST: Duration = Duration::from_secs(3);
/// How often a kept-alive lease is renewed.
const RENEW_EVERY: Duration = Duration::from_millis(500);

/// What one lease client does.
#[derive(Debug, Clone)]
pub struct LeaseSpec {
    pub client: usize,
    pub seed: u64,
    /// Simulated time after which no lease is granted.
    pub grant_until: Duration,
}

/// A key put with the lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    pub key: String,
    pub value: String,
    /// The put's revision; `None` when its outcome is unknown.
    pub revision: Option<i64>,
}

/// What became of one granted lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseRecord {
    pub client: usize,
    pub id: i64,
    /// (when the request was sent, TTL answered) of the grant and of every keep-alive
    /// answered with a positive TTL: the lease cannot expire before any `sent + ttl`.
    pub renewals: Vec<(Duration, i64)>,
    pub keys: Vec<LeaseKey>,
    /// When a revoke was sent, and its header revision if it was acknowledged.
    pub revoke: Option<(Duration, Option<i64>)>,
}

impl LeaseRecord {
    /// The earliest time the lease may expire.
    pub fn expires_no_earlier_than(&self) -> Duration {
        self.renewals
            .iter()
            .map(|(sent, ttl)| *sent + Duration::from_secs(u64::try_from(*ttl).unwrap_or(0)))
            .max()
            .unwrap_or_default()
    }
}

/// Every lease of a simulation.
#[derive(Clone, Default)]
pub struct LeaseLogs {
    records: Arc<Mutex<Vec<LeaseRecord>>>,
}

impl LeaseLogs {
    fn update(&self, index: usize, change: impl FnOnce(&mut LeaseRecord)) {
        if let Some(record) = self.records.lock().get_mut(index) {
            change(record);
        }
    }

    pub fn records(&self) -> Vec<LeaseRecord> {
        self.records.lock().clone()
    }
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Grants, uses and ends leases until `spec.grant_until`.
pub async fn run_leases(spec: LeaseSpec, client: EtcdClient, logs: LeaseLogs) {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut written = 0u64;
    while now() < spec.grant_until {
        let member = rng.gen_range(0..client.members());
        let ttl = rng.gen_range(2..=4);
        let sent = now();
        let granted = LeaseClient::new(client.channel(member))
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await;
        let Ok(granted) = granted.map(tonic::Response::into_inner) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let index = {
            let mut records = logs.records.lock();
            records.push(LeaseRecord {
                client: spec.client,
                id: granted.id,
                renewals: vec![(sent, granted.ttl)],
                keys: Vec::new(),
                revoke: None,
            });
            records.len() - 1
        };
        for _ in 0..rng.gen_range(1..=2) {
            written += 1;
            let key = format!("l{}/{written}", spec.client);
            let value = format!("l{}-{written}", spec.client);
            let member = rng.gen_range(0..client.members());
            let put = client
                .kv(member)
                .put(PutRequest {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    lease: granted.id,
                    ..Default::default()
                })
                .await;
            let revision = put
                .ok()
                .and_then(|put| put.into_inner().header)
                .map(|header| header.revision);
            logs.update(index, |record| {
                record.keys.push(LeaseKey {
                    key,
                    value,
                    revision,
                })
            });
        }
        let keep_until = now() + rng.gen_range(Duration::ZERO..=KEEP_ALIVE_AT_MOST);
        while now() < keep_until {
            let member = rng.gen_range(0..client.members());
            keep_alive(&client, member, &logs, index, granted.id, keep_until).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if rng.gen_bool(0.5) {
            let member = rng.gen_range(0..client.members());
            let sent = now();
            logs.update(index, |record| record.revoke = Some((sent, None)));
            let revoked = LeaseClient::new(client.channel(member))
                .lease_revoke(LeaseRevokeRequest { id: granted.id })
                .await;
            if let Ok(revoked) = revoked {
                let revision = revoked.into_inner().header.map(|header| header.revision);
                logs.update(index, |record| record.revoke = Some((sent, revision)));
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..500))).await;
    }
}

/// Renews lease `id` through `member` every [`RENEW_EVERY`] until `until` or the stream
/// breaks (the caller then goes on through another member); records every renewal answered
/// with a TTL.
async fn keep_alive(
    client: &EtcdClient,
    member: usize,
    logs: &LeaseLogs,
    index: usize,
    id: i64,
    until: Duration,
) {
    let (mut requests, outgoing) = mpsc::channel::<LeaseKeepAliveRequest>(4);
    let mut answers = match LeaseClient::new(client.channel(member))
        .lease_keep_alive(outgoing)
        .await
    {
        Ok(answers) => answers.into_inner(),
        Err(_) => return,
    };
    // Send times of the requests not answered yet, oldest first (one answer per request).
    let mut pending = std::collections::VecDeque::new();
    let record = |pending: &mut std::collections::VecDeque<Duration>, ttl: i64| {
        if let Some(sent) = pending.pop_front() {
            if ttl > 0 {
                logs.update(index, |record| record.renewals.push((sent, ttl)));
            }
        }
    };
    let mut renew = tokio::time::interval(RENEW_EVERY);
    loop {
        tokio::select! {
            biased;
            answer = answers.message() => match answer {
                Ok(Some(answer)) => record(&mut pending, answer.ttl),
                Ok(None) | Err(_) => return,
            },
            _ = renew.tick() => {
                if now() >= until {
                    break;
                }
                if requests.try_send(LeaseKeepAliveRequest { id }).is_ok() {
                    pending.push_back(now());
                }
            }
        }
    }
    // Close the request side and read every answer: the member then ends the stream.
    drop(requests);
    loop {
        match answers.message().await {
            Ok(Some(answer)) => record(&mut pending, answer.ttl),
            Ok(None) | Err(_) => return,
        }
    }
}
