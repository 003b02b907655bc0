//! The watch tests: `--watchers` watches spread over gRPC streams, while puts arrive at a fixed
//! rate; the latency of a delivery is the time from sending the put to that watcher receiving
//! its event, and ops/s counts deliveries per second (from the first put to the last delivery).
//! Every (put, watcher) pair counts once; a delivery that never comes (within the bound) is an
//! error.
//!
//! - `watch-latency`: watches on one prefix, each stream on its own connection, one new key per
//!   put.
//! - `watch-fanout`: watches on one key, multiplexed as kube-apiserver's client does: many
//!   watches per stream, several streams per connection; every put rewrites that key.
//!
//! Both also report the memory queued for the watchers: the largest number of events owed
//! (acknowledged puts × watchers − deliveries) seen while the test ran, and, with
//! `--server-pid`, the server's resident memory before, at its peak and after.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_api::pb::etcdserverpb::kv_client::KvClient;
use etcd_api::pb::etcdserverpb::watch_client::WatchClient;
use etcd_api::pb::etcdserverpb::watch_request::RequestUnion;
use etcd_api::pb::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use raftstore::mvcc::tree_index::prefix_end;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use crate::report::{report, Results};
use crate::VALUE_BYTES;

const WATCH_PREFIX: &str = "/registry/events/bench/";
const FANOUT_KEY: &str = "/registry/configmaps/bench/fanout";
/// How long deliveries may trail the last put.
const DRAIN: Duration = Duration::from_secs(10);
/// How often the backlog and the server's memory are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Digits of the put number at the start of each value.
const INDEX_DIGITS: usize = 8;

/// What the watchers watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One prefix; each put writes a new key under it.
    Prefix,
    /// One key, rewritten by every put.
    Key,
}

/// The shape of a watch load.
pub struct WatchLoad {
    pub test: &'static str,
    pub target: Target,
    pub watchers: usize,
    /// gRPC connections the streams are spread over.
    pub connections: usize,
    /// Watch streams the watchers are spread over.
    pub streams: usize,
    pub puts_per_second: u32,
    pub puts: usize,
    /// The server's process, for its resident memory.
    pub server_pid: Option<u32>,
}

impl WatchLoad {
    fn put_key(&self, n: usize) -> Vec<u8> {
        match self.target {
            Target::Prefix => format!("{WATCH_PREFIX}{n:08}").into_bytes(),
            Target::Key => FANOUT_KEY.as_bytes().to_vec(),
        }
    }

    fn create_request(&self) -> WatchCreateRequest {
        match self.target {
            Target::Prefix => WatchCreateRequest {
                key: WATCH_PREFIX.as_bytes().to_vec(),
                range_end: prefix_end(WATCH_PREFIX.as_bytes()),
                ..Default::default()
            },
            Target::Key => WatchCreateRequest {
                key: FANOUT_KEY.as_bytes().to_vec(),
                ..Default::default()
            },
        }
    }
}

/// The value of put `n`: its number, then padding.
fn put_value(n: usize) -> Vec<u8> {
    let mut value = format!("{n:0INDEX_DIGITS$}").into_bytes();
    value.resize(VALUE_BYTES.max(INDEX_DIGITS), b'e');
    value
}

fn put_index(value: &[u8]) -> Option<usize> {
    std::str::from_utf8(value.get(..INDEX_DIGITS)?)
        .ok()?
        .parse()
        .ok()
}

/// Resident memory of `pid` in KiB (0 if it cannot be read).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Opens one watch stream on `channel` carrying `watchers` watches, and waits until every one
/// is created. The returned sender keeps the stream open.
async fn open_stream(
    channel: Channel,
    watchers: usize,
    create: &WatchCreateRequest,
) -> Result<(mpsc::Sender<WatchRequest>, Streaming<WatchResponse>)> {
    // The create requests are queued before the call: etcd (grpc-go) sends the response
    // headers only once the first watch exists, so the call would not return before.
    let (requests, outgoing) = mpsc::channel(watchers.max(1));
    for _ in 0..watchers {
        requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create.clone())),
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
        if response.canceled {
            bail!("a watch was refused: {}", response.cancel_reason);
        }
        created += usize::from(response.created);
    }
    Ok((requests, responses))
}

/// What the receivers and the sampler share.
struct Shared {
    started: Instant,
    /// When each put was sent, in ns since `started` (0: not yet).
    sent_at: Vec<AtomicU64>,
    /// The receivers' deadline in ns since `started` (0: the load has not started).
    deadline_ns: AtomicU64,
    delivered: AtomicU64,
    acknowledged: AtomicU64,
    /// The latest delivery, in ns since `started`.
    last_delivery_ns: AtomicU64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }
}

/// Receives one stream's events until it has `expected` of them or the deadline passes.
async fn receive(
    shared: Arc<Shared>,
    mut responses: Streaming<WatchResponse>,
    requests: mpsc::Sender<WatchRequest>,
    expected: usize,
    bound: Duration,
) -> Vec<Duration> {
    let _keep_open = requests;
    let mut latencies = Vec::with_capacity(expected);
    while latencies.len() < expected {
        let deadline_ns = shared.deadline_ns.load(Ordering::Acquire);
        let left = if deadline_ns == 0 {
            bound
        } else {
            Duration::from_nanos(deadline_ns.saturating_sub(shared.now_ns()))
        };
        let response = match tokio::time::timeout(left, responses.message()).await {
            Ok(Ok(Some(response))) => response,
            // The stream ended or failed: what is missing counts as errors.
            Ok(Ok(None) | Err(_)) => break,
            // Timed out before the load started: wait again, now with the real deadline.
            Err(_) if shared.deadline_ns.load(Ordering::Acquire) == 0 => continue,
            Err(_) => break,
        };
        let now = shared.now_ns();
        let before = latencies.len();
        for event in &response.events {
            let Some(n) = event.kv.as_ref().and_then(|kv| put_index(&kv.value)) else {
                continue;
            };
            if let Some(sent) = shared.sent_at.get(n).map(|at| at.load(Ordering::Acquire)) {
                latencies.push(Duration::from_nanos(now.saturating_sub(sent)));
            }
        }
        let got = (latencies.len() - before) as u64;
        if got > 0 {
            shared.delivered.fetch_add(got, Ordering::Relaxed);
            shared.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
        }
    }
    latencies
}

/// Runs a watch test against `endpoint` and prints its figures under `label`.
pub async fn run(endpoint: &str, label: &str, load: &WatchLoad, max_seconds: u64) -> Result<()> {
    if load.streams == 0
        || load.connections == 0
        || load.watchers < load.streams
        || load.connections > load.streams
        || load.puts_per_second == 0
    {
        bail!(
            "{}: need watchers ≥ streams ≥ connections ≥ 1 and a rate above 0",
            load.test
        );
    }
    let target =
        Endpoint::from_shared(endpoint.to_string())?.connect_timeout(Duration::from_secs(5));
    // Bounded in time as every test: no more puts than the rate allows in `max_seconds`.
    let total_puts = load
        .puts
        .min(load.puts_per_second as usize * max_seconds as usize);
    let shared = Arc::new(Shared {
        started: Instant::now(),
        sent_at: (0..total_puts).map(|_| AtomicU64::new(0)).collect(),
        deadline_ns: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        acknowledged: AtomicU64::new(0),
        last_delivery_ns: AtomicU64::new(0),
    });
    let rss_before = load.server_pid.map(rss_kib);

    let mut channels = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        channels.push(
            target
                .connect()
                .await
                .with_context(|| format!("connecting to {endpoint}"))?,
        );
    }
    let create = load.create_request();
    let bound = Duration::from_secs(max_seconds) + DRAIN;
    let mut receivers = Vec::with_capacity(load.streams);
    for stream in 0..load.streams {
        let watchers =
            load.watchers / load.streams + usize::from(stream < load.watchers % load.streams);
        let channel = channels[stream % load.connections].clone();
        let (requests, responses) = open_stream(channel, watchers, &create).await?;
        let expected = watchers * total_puts;
        receivers.push((
            expected,
            tokio::spawn(receive(
                shared.clone(),
                responses,
                requests,
                expected,
                bound,
            )),
        ));
    }

    // The sampler: the events owed to watchers, and the server's memory.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (shared, sampling, pid, watchers) = (
            shared.clone(),
            sampling.clone(),
            load.server_pid,
            load.watchers as u64,
        );
        tokio::spawn(async move {
            let (mut max_backlog, mut rss_peak) = (0u64, 0u64);
            while sampling.load(Ordering::Acquire) {
                let owed = shared.acknowledged.load(Ordering::Acquire) * watchers;
                let backlog = owed.saturating_sub(shared.delivered.load(Ordering::Acquire));
                max_backlog = max_backlog.max(backlog);
                if let Some(pid) = pid {
                    rss_peak = rss_peak.max(rss_kib(pid));
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            (max_backlog, rss_peak)
        })
    };

    let channel = target.connect().await.context("connecting the writer")?;
    let writer = KvClient::new(channel);
    let interval = Duration::from_secs_f64(1.0 / f64::from(load.puts_per_second));
    let load_started = Instant::now();
    let load_started_ns = shared.now_ns();
    let deadline = load_started_ns + (Duration::from_secs(max_seconds) + DRAIN).as_nanos() as u64;
    shared.deadline_ns.store(deadline, Ordering::Release);
    let mut puts = Vec::with_capacity(total_puts);
    for n in 0..total_puts {
        tokio::time::sleep_until((load_started + interval * n as u32).into()).await;
        shared.sent_at[n].store(shared.now_ns(), Ordering::Release);
        let (mut writer, shared, key) = (writer.clone(), shared.clone(), load.put_key(n));
        puts.push(tokio::spawn(async move {
            let done = writer
                .put(PutRequest {
                    key,
                    value: put_value(n),
                    ..Default::default()
                })
                .await
                .is_ok();
            if done {
                shared.acknowledged.fetch_add(1, Ordering::AcqRel);
            }
            done
        }));
    }
    let mut put_errors = 0;
    for put in puts {
        put_errors += usize::from(!put.await.unwrap_or(false));
    }
    let mut results = Results::default();
    for (expected, receiver) in receivers {
        let latencies = receiver.await.context("a watch receiver failed")?;
        results.errors += expected.saturating_sub(latencies.len());
        results.latencies.extend(latencies);
    }
    results.errors += put_errors;
    sampling.store(false, Ordering::Release);
    let (max_backlog, rss_peak) = sampler.await.context("the sampler failed")?;
    let last_ns = shared.last_delivery_ns.load(Ordering::Acquire);
    let elapsed = if last_ns > load_started_ns {
        Duration::from_nanos(last_ns - load_started_ns)
    } else {
        load_started.elapsed()
    };
    report(label, load.test, results, elapsed);

    let rss_after = load.server_pid.map(rss_kib);
    let kib = |value: Option<u64>| value.map_or("null".to_string(), |v| v.to_string());
    let rss_peak = load.server_pid.map(|_| rss_peak);
    println!(
        "{label:<10} {:<14} memory: at most {max_backlog} events owed to watchers; server RSS before {} KiB, peak {} KiB, after {} KiB",
        load.test,
        kib(rss_before),
        kib(rss_peak),
        kib(rss_after),
    );
    println!(
        "JSON {{\"label\":\"{label}\",\"test\":\"{}-memory\",\"max_backlog_events\":{max_backlog},\"rss_before_kib\":{},\"rss_peak_kib\":{},\"rss_after_kib\":{}}}",
        load.test,
        kib(rss_before),
        kib(rss_peak),
        kib(rss_after),
    );
    Ok(())
}
