//! `k3rs-bench`: a load tool that speaks the etcd v3 API to any endpoint (k3rs or etcd) and
//! reports, per test, ops/s and latency (mean, p50, p90, p99, max) and errors, as a table and as
//! JSON lines.
//!
//! Tests: `put-seq` (1 client), `put-16`, `put-64` (concurrent clients), `range-lin-16`,
//! `range-ser-16` (single-key reads), `txn-16` (kube-apiserver's update shape: compare the mod
//! revision, then put), `list-paginated` (a full list of 10,000 keys in pages of 500 at one
//! revision, as kube-apiserver lists), `watch-latency` (put-to-event latency over many
//! watchers of one prefix, one connection per stream) and `watch-fanout` (10,000 watchers of one
//! key multiplexed on a few streams and connections, as kube-apiserver's client does). Values are 256 bytes, keys k8s-like. Every test is bounded by its operation
//! count and by `--max-seconds`.
//!
//! Example: `k3rs-bench --endpoint http://127.0.0.1:2379 --ops 20000 put-64 range-lin-16`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use report::{report, Results};

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd_api::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_api::pb::etcdserverpb::kv_client::KvClient;
use etcd_api::pb::etcdserverpb::{
    request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Parser)]
#[command(name = "k3rs-bench", about = "etcd v3 load tool")]
struct Args {
    /// Client URL of the member to load.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    endpoint: String,
    /// Operations per test.
    #[arg(long, default_value_t = 10_000)]
    ops: usize,
    /// Upper bound on one test's duration.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Label printed with the results (e.g. the server's name).
    #[arg(long, default_value = "target")]
    label: String,
    /// watch-latency and watch-fanout: watchers.
    #[arg(long, default_value_t = 10_000)]
    watchers: usize,
    /// watch-latency: gRPC streams (connections) the watchers are spread over.
    #[arg(long, default_value_t = 100)]
    watch_streams: usize,
    /// watch-latency: puts per second on the watched prefix.
    #[arg(long, default_value_t = 100)]
    watch_rate: u32,
    /// watch-latency: puts made (bounded by the rate and --max-seconds).
    #[arg(long, default_value_t = 1_000)]
    watch_puts: usize,
    /// watch-fanout: watch streams the watchers are multiplexed on.
    #[arg(long, default_value_t = 16)]
    fanout_streams: usize,
    /// watch-fanout: gRPC connections the streams share.
    #[arg(long, default_value_t = 4)]
    fanout_connections: usize,
    /// watch-fanout: puts per second on the watched key.
    #[arg(long, default_value_t = 10)]
    fanout_rate: u32,
    /// watch-fanout: puts made (bounded by the rate and --max-seconds).
    #[arg(long, default_value_t = 100)]
    fanout_puts: usize,
    /// The server's process id: the watch tests report its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Tests to run (default: all).
    tests: Vec<String>,
}

mod list;
mod report;
mod watch;

const ALL_TESTS: [&str; 9] = [
    "put-seq",
    "put-16",
    "put-64",
    "range-lin-16",
    "range-ser-16",
    "txn-16",
    "list-paginated",
    "watch-latency",
    "watch-fanout",
];
const VALUE_BYTES: usize = 256;
const KEYSPACE: usize = 10_000;
const KEY_PREFIX: &str = "/registry/pods/default/";

fn key(n: usize) -> Vec<u8> {
    format!("{KEY_PREFIX}pod-{:05}", n % KEYSPACE).into_bytes()
}

/// Runs `ops` operations over `clients` concurrent clients (each on its own connection).
async fn run_test(
    args: &Args,
    test: &str,
    clients: usize,
    op: impl Fn(KvClient<Channel>, usize) -> BoxedOp + Send + Sync + 'static,
) -> Result<()> {
    let endpoint = Endpoint::from_shared(args.endpoint.clone())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Results::default()));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.endpoint))?;
        let client = KvClient::new(channel);
        let (op, next, results, ops) = (op.clone(), next.clone(), results.clone(), args.ops);
        workers.push(tokio::spawn(async move {
            let mut local = Results::default();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= ops || Instant::now() >= deadline {
                    break;
                }
                let began = Instant::now();
                match op(client.clone(), n).await {
                    Ok(()) => local.latencies.push(began.elapsed()),
                    Err(_) => local.errors += 1,
                }
            }
            let mut shared = results.lock().await;
            shared.latencies.extend(local.latencies);
            shared.errors += local.errors;
        }));
    }
    for worker in workers {
        worker.await.context("a worker failed")?;
    }
    let elapsed = started.elapsed();
    let results = std::mem::take(&mut *results.lock().await);
    report(&args.label, test, results, elapsed);
    Ok(())
}

type BoxedOp =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tonic::Status>> + Send>>;

fn put_op(mut client: KvClient<Channel>, n: usize) -> BoxedOp {
    Box::pin(async move {
        client
            .put(PutRequest {
                key: key(n),
                value: vec![b'v'; VALUE_BYTES],
                ..Default::default()
            })
            .await
            .map(|_| ())
    })
}

fn range_op(serializable: bool) -> impl Fn(KvClient<Channel>, usize) -> BoxedOp + Send + Sync {
    move |mut client, n| {
        Box::pin(async move {
            client
                .range(RangeRequest {
                    key: key(n),
                    serializable,
                    ..Default::default()
                })
                .await
                .map(|_| ())
        })
    }
}

/// kube-apiserver's update: read the object's mod revision, then put if it is unchanged.
fn txn_op(mut client: KvClient<Channel>, n: usize) -> BoxedOp {
    Box::pin(async move {
        let current = client
            .range(RangeRequest {
                key: key(n),
                ..Default::default()
            })
            .await?
            .into_inner();
        let mod_revision = current.kvs.first().map_or(0, |kv| kv.mod_revision);
        let put = RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key(n),
                value: vec![b'u'; VALUE_BYTES],
                ..Default::default()
            })),
        };
        client
            .txn(TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Mod as i32,
                    key: key(n),
                    target_union: Some(TargetUnion::ModRevision(mod_revision)),
                    ..Default::default()
                }],
                success: vec![put],
                failure: Vec::new(),
            })
            .await
            .map(|_| ())
    })
}

/// Fills the keyspace once so reads find their keys.
async fn preload(args: &Args) -> Result<()> {
    let channel = Endpoint::from_shared(args.endpoint.clone())?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.endpoint))?;
    let mut client = KvClient::new(channel);
    for n in 0..KEYSPACE {
        client
            .put(PutRequest {
                key: key(n),
                value: vec![b'v'; VALUE_BYTES],
                ..Default::default()
            })
            .await
            .context("preloading keys")?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tests: Vec<String> = if args.tests.is_empty() {
        ALL_TESTS.iter().map(|t| t.to_string()).collect()
    } else {
        args.tests.clone()
    };
    if let Some(unknown) = tests.iter().find(|t| !ALL_TESTS.contains(&t.as_str())) {
        bail!("unknown test {unknown:?}; known: {}", ALL_TESTS.join(", "));
    }
    if tests
        .iter()
        .any(|t| t.starts_with("range") || t.starts_with("txn") || t.starts_with("list"))
    {
        preload(&args).await?;
    }
    for test in &tests {
        match test.as_str() {
            "put-seq" => run_test(&args, test, 1, put_op).await?,
            "put-16" => run_test(&args, test, 16, put_op).await?,
            "put-64" => run_test(&args, test, 64, put_op).await?,
            "range-lin-16" => run_test(&args, test, 16, range_op(false)).await?,
            "range-ser-16" => run_test(&args, test, 16, range_op(true)).await?,
            "txn-16" => run_test(&args, test, 16, txn_op).await?,
            "list-paginated" => run_test(&args, test, 1, list::list_op).await?,
            "watch-latency" => {
                let load = watch::WatchLoad {
                    test: "watch-latency",
                    target: watch::Target::Prefix,
                    watchers: args.watchers,
                    connections: args.watch_streams,
                    streams: args.watch_streams,
                    puts_per_second: args.watch_rate,
                    puts: args.watch_puts,
                    server_pid: args.server_pid,
                };
                watch::run(&args.endpoint, &args.label, &load, args.max_seconds).await?
            }
            "watch-fanout" => {
                let load = watch::WatchLoad {
                    test: "watch-fanout",
                    target: watch::Target::Key,
                    watchers: args.watchers,
                    connections: args.fanout_connections,
                    streams: args.fanout_streams,
                    puts_per_second: args.fanout_rate,
                    puts: args.fanout_puts,
                    server_pid: args.server_pid,
                };
                watch::run(&args.endpoint, &args.label, &load, args.max_seconds).await?
            }
            other => bail!("unknown test {other:?}"),
        }
    }
    Ok(())
}
