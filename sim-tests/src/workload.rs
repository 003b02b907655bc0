//! The workload of one simulated client: etcd and kube-apiserver traffic on a small key set,
//! recorded into the [`History`].
//!
//! Each step picks, from the client's seeded RNG, a member and one of: put, linearizable get,
//! serializable get, delete, or one of kube-apiserver's own requests: create (a txn on
//! `mod_revision == 0`), update (a linearizable get, then a txn on the mod_revision it saw),
//! guaranteed delete (a linearizable get, then a txn deleting on the mod_revision it saw;
//! nothing when the key was absent), and a paginated list of the keys' common prefix
//! ([`LIST_LIMIT`] keys a page, every page at the first page's revision). Every txn reads the
//! key back in its failure branch, as kube-apiserver's etcd3 store does. Values are unique
//! (`c<client>-<n>`), so the checkers can tell every write apart. The client stops invoking
//! at `stop_at` (simulated time).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::EtcdClient;
use crate::history::{History, Outcome, Request, Response};

/// Keys a page of a paginated list holds at most (the key set is small: most lists page).
pub const LIST_LIMIT: i64 = 2;

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
        let failed = if roll < 20 {
            let request = Request::Put {
                key,
                value: value(),
            };
            record(&client, &history, spec.client, member, request)
                .await
                .is_none()
        } else if roll < 40 {
            let request = Request::Get {
                key,
                serializable: false,
            };
            record(&client, &history, spec.client, member, request)
                .await
                .is_none()
        } else if roll < 48 {
            let request = Request::Get {
                key,
                serializable: true,
            };
            record(&client, &history, spec.client, member, request)
                .await
                .is_none()
        } else if roll < 55 {
            let request = Request::Delete { key };
            record(&client, &history, spec.client, member, request)
                .await
                .is_none()
        } else if roll < 62 {
            // kube-apiserver's create: write only if the key does not exist.
            let request = Request::CompareAndPut {
                key,
                expected: 0,
                value: value(),
            };
            record(&client, &history, spec.client, member, request)
                .await
                .is_none()
        } else if roll < 70 {
            let prefix = common_prefix(&spec.keys);
            let request = Request::List {
                prefix,
                limit: LIST_LIMIT,
            };
            record(&client, &history, spec.client, member, request)
                .await
                .is_none()
        } else {
            // kube-apiserver's update and delete: read, then write only if nobody wrote in
            // between.
            let delete = roll >= 90;
            let read = Request::Get {
                key: key.clone(),
                serializable: false,
            };
            match record(&client, &history, spec.client, member, read).await {
                Some(Response::Get { found: None, .. }) if delete => false,
                Some(Response::Get { found, .. }) => {
                    let expected = found.map_or(0, |kv| kv.mod_revision);
                    let request = if delete {
                        Request::CompareAndDelete { key, expected }
                    } else {
                        Request::CompareAndPut {
                            key,
                            expected,
                            value: value(),
                        }
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

/// The longest prefix all `keys` share (the prefix a kube-apiserver list of them ranges over).
fn common_prefix(keys: &[String]) -> String {
    let first = keys.first().map(String::as_str).unwrap_or_default();
    let mut length = first.len();
    for key in keys {
        length = first
            .bytes()
            .zip(key.bytes())
            .take(length)
            .take_while(|(a, b)| a == b)
            .count();
    }
    first.get(..length).unwrap_or_default().to_string()
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
