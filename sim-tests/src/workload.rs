//! The workload of one simulated client: etcd and kube-apiserver traffic on a small key set,
//! recorded into the [`History`].
//!
//! Each step picks, from the client's seeded RNG, a member and one of: put, linearizable get,
//! serializable get, delete, or kube-apiserver's read-then-update (a linearizable get, then a
//! txn on the mod_revision it saw). Values are unique (`c<client>-<n>`), so the checkers can
//! tell every write apart. The client stops invoking at `stop_at` (simulated time).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::EtcdClient;
use crate::history::{History, Outcome, Request, Response};

/// What one client does.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub client: usize,
    pub seed: u64,
    pub keys: Vec<String>,
    /// Simulated time at which the client stops invoking.
    pub stop_at: Duration,
    /// Longest pause between two operations.
    pub max_think: Duration,
}

/// Runs the workload until `spec.stop_at`.
pub async fn run_workload(spec: WorkloadSpec, client: EtcdClient, history: History) {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut written = 0u64;
    while turmoil::sim_elapsed().unwrap_or_default() < spec.stop_at {
        let member = rng.gen_range(0..client.members());
        let key = spec.keys[rng.gen_range(0..spec.keys.len())].clone();
        let roll = rng.gen_range(0..100);
        let mut value = || {
            written += 1;
            format!("c{}-{written}", spec.client)
        };
        let failed = if roll < 25 {
            let request = Request::Put {
                key,
                value: value(),
            };
            record(&client, &history, spec.client, member, request)
                .await
                .is_none()
        } else if roll < 45 {
            let request = Request::Get {
                key,
                serializable: false,
            };
            record(&client, &history, spec.client, member, request)
                .await
                .is_none()
        } else if roll < 55 {
            let request = Request::Get {
                key,
                serializable: true,
            };
            record(&client, &history, spec.client, member, request)
                .await
                .is_none()
        } else if roll < 65 {
            let request = Request::Delete { key };
            record(&client, &history, spec.client, member, request)
                .await
                .is_none()
        } else {
            // kube-apiserver's update: read, then write only if nobody wrote in between.
            let read = Request::Get {
                key: key.clone(),
                serializable: false,
            };
            match record(&client, &history, spec.client, member, read).await {
                Some(Response::Get { found, .. }) => {
                    let request = Request::CompareAndPut {
                        key,
                        expected: found.map_or(0, |kv| kv.mod_revision),
                        value: value(),
                    };
                    record(&client, &history, spec.client, member, request)
                        .await
                        .is_none()
                }
                _ => true,
            }
        };
        let pause = if failed {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(rng.gen_range(0..=spec.max_think.as_millis() as u64))
        };
        tokio::time::sleep(pause).await;
    }
}

/// Executes `request` on `member`, recording its invocation and outcome; returns the response
/// if there was one.
async fn record(
    client: &EtcdClient,
    history: &History,
    client_index: usize,
    member: usize,
    request: Request,
) -> Option<Response> {
    let id = history.invoke(client_index, member, request.clone());
    match client.execute(member, &request).await {
        Ok(response) => {
            history.complete(id, Outcome::Ok(response.clone()));
            Some(response)
        }
        Err(error) => {
            history.complete(id, Outcome::Unknown(error));
            None
        }
    }
}
