//! `k3rs-bench`: a load tool that speaks the etcd v3 API to any endpoint (k3rs or etcd) and
//! reports, per test, ops/s and latency (mean, p50, p90, p99, max) and errors, as a table and as
//! JSON lines.
//!
//! Tests: `put-seq` (1 client), `put-16`, `put-64` (concurrent clients), `range-lin-16`,
//! `range-ser-16` (single-key reads), `txn-16` (kube-apiserver's update shape: compare the mod
//! revision, then put). Values are 256 bytes, keys k8s-like. Every test is bounded by its
//! operation count and by `--max-seconds`.
//!
//! Example: `k3rs-bench --endpoint http://127.0.0.1:2379 --ops 20000 put-64 range-lin-16`.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Tests to run (default: all).
    tests: Vec<String>,
}

const ALL_TESTS: [&str; 6] = [
    "put-seq",
    "put-16",
    "put-64",
    "range-lin-16",
    "range-ser-16",
    "txn-16",
];
const VALUE_BYTES: usize = 256;
const KEYSPACE: usize = 10_000;

fn key(n: usize) -> Vec<u8> {
    format!("/registry/pods/default/pod-{:05}", n % KEYSPACE).into_bytes()
}

/// Latencies of one test, and its errors.
#[derive(Default)]
struct Results {
    latencies: Vec<Duration>,
    errors: usize,
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[rank]
}

fn report(label: &str, test: &str, mut results: Results, elapsed: Duration) {
    results.latencies.sort_unstable();
    let done = results.latencies.len();
    let ops_per_second = done as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    let mean = if done == 0 {
        Duration::ZERO
    } else {
        results.latencies.iter().sum::<Duration>() / done as u32
    };
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let p50 = percentile(&results.latencies, 0.50);
    let p90 = percentile(&results.latencies, 0.90);
    let p99 = percentile(&results.latencies, 0.99);
    let max = results.latencies.last().copied().unwrap_or_default();
    println!(
        "{label:<10} {test:<14} {ops_per_second:>10.0} ops/s  mean {:>8.0}µs  p50 {:>8.0}µs  p90 {:>8.0}µs  p99 {:>8.0}µs  max {:>9.0}µs  errors {}",
        micros(mean),
        micros(p50),
        micros(p90),
        micros(p99),
        micros(max),
        results.errors
    );
    println!(
        "JSON {{\"label\":\"{label}\",\"test\":\"{test}\",\"ops\":{done},\"ops_per_second\":{ops_per_second:.1},\"mean_us\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1},\"errors\":{}}}",
        micros(mean),
        micros(p50),
        micros(p90),
        micros(p99),
        micros(max),
        results.errors
    );
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
        .any(|t| t.starts_with("range") || t.starts_with("txn"))
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
            other => bail!("unknown test {other:?}"),
        }
    }
    Ok(())
}
