//! `k3rs-kube-bench`: list and watch latency of a Kubernetes API (k3rs's, or any other with a
//! client-certificate kubeconfig), over HTTPS/1.1 as client-go talks to it.
//!
//! - `list-full`: `GET /api/v1/namespaces/<ns>/configmaps` of `--objects` configmaps (256-byte
//!   values), timed until the whole answer is read and parsed as JSON (as a client must),
//!   `--runs` times;
//! - `list-paged`: the same list in pages of `--limit` chained by `continue`, timed from the
//!   first request to the last page parsed;
//! - `watch-sent` / `watch-acked`: one configmap patched `--watch-events` times at
//!   `--watch-rate` per second while a `?watch=true` stream on it is read; the time from the
//!   write being sent (resp. its answer arriving) to its MODIFIED event arriving, matched by
//!   resourceVersion (an event that arrives before the answer counts as 0).
//!
//! The configmaps are created first (16 connections) when the namespace holds fewer. Each
//! figure is printed as a table row (milliseconds: mean, p50, p99, max) and as a `JSON {...}`
//! line. Every phase is bounded by `--max-seconds`.
//!
//! Example: `k3rs-kube-bench --kubeconfig /var/lib/rancher/k3rs/server/cred/admin.kubeconfig`.

mod client;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use client::{Connection, Target};

#[derive(Debug, Parser)]
#[command(name = "k3rs-kube-bench", about = "Kubernetes API list/watch latency")]
struct Args {
    /// The kubeconfig with the server and a client certificate.
    #[arg(long)]
    kubeconfig: std::path::PathBuf,
    /// Namespace holding the configmaps (created if missing).
    #[arg(long, default_value = "bench")]
    namespace: String,
    /// Configmaps to list.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Runs of each list.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Page size of `list-paged`.
    #[arg(long, default_value_t = 500)]
    limit: usize,
    /// Writes per second while watching.
    #[arg(long, default_value_t = 50)]
    watch_rate: u32,
    /// Writes made while watching.
    #[arg(long, default_value_t = 500)]
    watch_events: usize,
    /// Upper bound on each phase.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// Label printed with the results.
    #[arg(long, default_value = "k3rs")]
    label: String,
}

const VALUE_BYTES: usize = 256;
const FILL_CONNECTIONS: usize = 16;

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn report(label: &str, test: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    let count = latencies.len();
    let mean = if count == 0 {
        Duration::ZERO
    } else {
        latencies.iter().sum::<Duration>() / count as u32
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let max = latencies.last().copied().unwrap_or_default();
    println!(
        "{label:<8} {test:<14} n {count:>5}  mean {:>9.2} ms  p50 {:>9.2} ms  p99 {:>9.2} ms  max {:>9.2} ms",
        ms(mean),
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "JSON {{\"label\":\"{label}\",\"test\":\"{test}\",\"runs\":{count},\"mean_ms\":{:.3},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        ms(mean),
        ms(p50),
        ms(p99),
        ms(max)
    );
}

fn collection(args: &Args) -> String {
    format!("/api/v1/namespaces/{}/configmaps", args.namespace)
}

/// Creates the namespace and the configmaps it lacks.
async fn fill(args: &Args, target: &Target) -> Result<()> {
    let mut connection = Connection::open(target).await?;
    connection
        .checked(
            Method::POST,
            "/api/v1/namespaces",
            Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": args.namespace}})),
            &[201, 409],
        )
        .await?;
    let listed = connection
        .checked(Method::GET, &collection(args), None, &[200])
        .await?;
    let present = listed["items"].as_array().map_or(0, Vec::len);
    if present >= args.objects {
        return Ok(());
    }
    eprintln!(
        "creating {} configmaps in {}",
        args.objects - present,
        args.namespace
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let mut workers = Vec::new();
    for _ in 0..FILL_CONNECTIONS {
        let (target, next, path, objects) =
            (target.clone(), next.clone(), collection(args), args.objects);
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(&target).await?;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= objects {
                    return Ok::<(), anyhow::Error>(());
                }
                if Instant::now() > deadline {
                    bail!("filling took longer than --max-seconds");
                }
                let object = json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": format!("cm-{n:05}")},
                    "data": {"v": "x".repeat(VALUE_BYTES)},
                });
                connection
                    .checked(Method::POST, &path, Some(&object), &[201, 409])
                    .await?;
            }
        }));
    }
    for worker in workers {
        worker.await.context("a fill worker panicked")??;
    }
    Ok(())
}

/// Times `runs` lists (paged when `limit` is given); checks each saw every object.
async fn lists(args: &Args, target: &Target, limit: Option<usize>) -> Result<Vec<Duration>> {
    let mut connection = Connection::open(target).await?;
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let mut latencies = Vec::new();
    while latencies.len() < args.runs && Instant::now() < deadline {
        let started = Instant::now();
        let mut items = 0;
        let mut token = String::new();
        loop {
            let mut path = collection(args);
            if let Some(limit) = limit {
                path.push_str(&format!("?limit={limit}"));
                if !token.is_empty() {
                    path.push_str(&format!("&continue={token}"));
                }
            }
            let page = connection.checked(Method::GET, &path, None, &[200]).await?;
            items += page["items"].as_array().map_or(0, Vec::len);
            token = page["metadata"]["continue"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if token.is_empty() {
                break;
            }
        }
        latencies.push(started.elapsed());
        if items < args.objects {
            bail!(
                "a list returned {items} configmaps, fewer than {}",
                args.objects
            );
        }
    }
    Ok(latencies)
}

/// When each write was sent and answered, by the resourceVersion it made.
type Writes = HashMap<String, (Instant, Instant)>;

/// Patches one configmap at the rate while a watch reads its events; returns the sent→event
/// and answered→event latencies.
async fn watch(args: &Args, target: &Target) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let mut writer = Connection::open(target).await?;
    let name = "watched";
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": "0"}});
    writer
        .checked(Method::POST, &collection(args), Some(&object), &[201, 409])
        .await?;
    let current = writer
        .checked(
            Method::GET,
            &format!("{}/{name}", collection(args)),
            None,
            &[200],
        )
        .await?;
    let from = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let mut watcher = Connection::open(target).await?;
    let path = format!(
        "{}?watch=true&fieldSelector=metadata.name%3D{name}&resourceVersion={from}&timeoutSeconds={}",
        collection(args),
        args.max_seconds
    );
    let response = watcher.send(Method::GET, &path, "", Vec::new()).await?;
    if !response.status().is_success() {
        bail!("the watch was refused: {}", response.status());
    }
    let received: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let reader = {
        let received = received.clone();
        let mut body = response.into_body();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                let Some(chunk) = frame.data_ref() else {
                    continue;
                };
                let now = Instant::now();
                buffer.extend_from_slice(chunk);
                while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    if event["type"] == "MODIFIED" {
                        if let Some(rv) = event["object"]["metadata"]["resourceVersion"].as_str() {
                            received.lock().await.insert(rv.to_string(), now);
                        }
                    }
                }
            }
        })
    };
    let mut writes = Writes::new();
    let period = Duration::from_secs_f64(1.0 / f64::from(args.watch_rate.max(1)));
    let mut ticker = tokio::time::interval(period);
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    for n in 1..=args.watch_events {
        ticker.tick().await;
        if Instant::now() > deadline {
            break;
        }
        let sent = Instant::now();
        let patched = writer
            .checked(
                Method::PATCH,
                &format!("{}/{name}", collection(args)),
                Some(&json!({"data": {"n": n.to_string()}})),
                &[200],
            )
            .await?;
        let acked = Instant::now();
        if let Some(rv) = patched["metadata"]["resourceVersion"].as_str() {
            writes.insert(rv.to_string(), (sent, acked));
        }
    }
    let wait_until = Instant::now() + Duration::from_secs(10);
    while received.lock().await.len() < writes.len() && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    reader.abort();
    let received = received.lock().await;
    let (mut from_sent, mut from_ack) = (Vec::new(), Vec::new());
    for (rv, (sent, acked)) in &writes {
        if let Some(at) = received.get(rv) {
            from_sent.push(at.saturating_duration_since(*sent));
            from_ack.push(at.saturating_duration_since(*acked));
        }
    }
    if from_sent.len() < writes.len() {
        eprintln!(
            "{} of {} writes were not seen on the watch within 10 s",
            writes.len() - from_sent.len(),
            writes.len()
        );
    }
    Ok((from_sent, from_ack))
}

#[tokio::main]
async fn main() -> Result<()> {
    run(Args::parse()).await
}

async fn run(args: Args) -> Result<()> {
    let target = Target::from_kubeconfig(&args.kubeconfig)?;
    fill(&args, &target).await?;
    let label = &args.label;
    report(label, "list-full", lists(&args, &target, None).await?);
    report(
        label,
        &format!("list-paged{}", args.limit),
        lists(&args, &target, Some(args.limit)).await?,
    );
    let (sent, acked) = watch(&args, &target).await?;
    report(label, "watch-sent", sent);
    report(label, "watch-acked", acked);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
