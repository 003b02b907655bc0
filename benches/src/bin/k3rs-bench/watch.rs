//! `watch-latency`: `--watchers` watches on one prefix, spread over `--watch-streams` gRPC
//! streams (each on its own connection), while puts arrive at `--watch-rate` per second; the
//! latency of a delivery is the time from sending the put to that watcher receiving its event.
//! Every (put, watcher) pair counts once; a delivery that never comes (within the bound) is an
//! error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_api::pb::etcdserverpb::kv_client::KvClient;
use etcd_api::pb::etcdserverpb::watch_client::WatchClient;
use etcd_api::pb::etcdserverpb::watch_request::RequestUnion;
use etcd_api::pb::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};
use raftstore::mvcc::tree_index::prefix_end;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::report::{report, Results};
use crate::VALUE_BYTES;

const WATCH_PREFIX: &str = "/registry/events/bench/";
/// How long deliveries may trail the last put.
const DRAIN: Duration = Duration::from_secs(10);

/// The shape of the watch load.
pub struct WatchLoad {
    pub watchers: usize,
    pub streams: usize,
    pub puts_per_second: u32,
    pub puts: usize,
}

fn put_key(n: usize) -> Vec<u8> {
    format!("{WATCH_PREFIX}{n:08}").into_bytes()
}

fn put_index(key: &[u8]) -> Option<usize> {
    std::str::from_utf8(key.strip_prefix(WATCH_PREFIX.as_bytes())?)
        .ok()?
        .parse()
        .ok()
}

/// Runs the watch test against `endpoint` and prints its figures under `label`.
pub async fn run(endpoint: &str, label: &str, load: &WatchLoad, max_seconds: u64) -> Result<()> {
    if load.streams == 0 || load.watchers < load.streams || load.puts_per_second == 0 {
        bail!("--watchers must be at least --watch-streams (at least 1), --watch-rate above 0");
    }
    let target =
        Endpoint::from_shared(endpoint.to_string())?.connect_timeout(Duration::from_secs(5));
    // Bounded in time as every test: no more puts than the rate allows in `max_seconds`.
    let total_puts = load
        .puts
        .min(load.puts_per_second as usize * max_seconds as usize);
    let started = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..total_puts).map(|_| AtomicU64::new(0)).collect());

    let mut receivers = Vec::new();
    for stream in 0..load.streams {
        let watchers =
            load.watchers / load.streams + usize::from(stream < load.watchers % load.streams);
        let channel = target
            .connect()
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        // The create requests are queued before the call: etcd (grpc-go) sends the response
        // headers only once the first watch exists, so the call would not return before.
        let (requests, outgoing) = mpsc::channel(watchers.max(1));
        for _ in 0..watchers {
            let create = WatchCreateRequest {
                key: WATCH_PREFIX.as_bytes().to_vec(),
                range_end: prefix_end(WATCH_PREFIX.as_bytes()),
                ..Default::default()
            };
            requests
                .send(WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(create)),
                })
                .await
                .context("queueing a watch creation")?;
        }
        let mut responses = WatchClient::new(channel)
            .watch(ReceiverStream::new(outgoing))
            .await
            .context("opening a watch stream")?
            .into_inner();
        let mut created = 0;
        while created < watchers {
            let response = responses
                .message()
                .await
                .context("waiting for watches to be created")?
                .context("the watch stream ended while creating watches")?;
            created += usize::from(response.created);
        }
        let (sent_at, expected) = (sent_at.clone(), watchers * total_puts);
        let deadline = started + Duration::from_secs(max_seconds) + DRAIN;
        receivers.push(tokio::spawn(async move {
            let _keep_open = requests;
            let mut latencies = Vec::with_capacity(expected);
            while latencies.len() < expected {
                let left = deadline.saturating_duration_since(Instant::now());
                let Ok(Ok(Some(response))) = tokio::time::timeout(left, responses.message()).await
                else {
                    break;
                };
                let now = started.elapsed().as_nanos() as u64;
                for event in &response.events {
                    let Some(n) = event.kv.as_ref().and_then(|kv| put_index(&kv.key)) else {
                        continue;
                    };
                    if let Some(sent) = sent_at.get(n).map(|at| at.load(Ordering::Acquire)) {
                        latencies.push(Duration::from_nanos(now.saturating_sub(sent)));
                    }
                }
            }
            (latencies, expected)
        }));
    }

    let channel = target.connect().await.context("connecting the writer")?;
    let writer = KvClient::new(channel);
    let interval = Duration::from_secs_f64(1.0 / f64::from(load.puts_per_second));
    let load_started = Instant::now();
    let mut puts = Vec::with_capacity(total_puts);
    for n in 0..total_puts {
        tokio::time::sleep_until((load_started + interval * n as u32).into()).await;
        sent_at[n].store(started.elapsed().as_nanos() as u64, Ordering::Release);
        let mut writer = writer.clone();
        puts.push(tokio::spawn(async move {
            writer
                .put(PutRequest {
                    key: put_key(n),
                    value: vec![b'e'; VALUE_BYTES],
                    ..Default::default()
                })
                .await
                .is_ok()
        }));
    }
    let mut put_errors = 0;
    for put in puts {
        put_errors += usize::from(!put.await.unwrap_or(false));
    }
    let mut results = Results::default();
    for receiver in receivers {
        let (latencies, expected) = receiver.await.context("a watch receiver failed")?;
        results.errors += expected.saturating_sub(latencies.len());
        results.latencies.extend(latencies);
    }
    results.errors += put_errors;
    let elapsed = load_started.elapsed();
    report(label, "watch-latency", results, elapsed);
    Ok(())
}
