//! `k3rs-fill`: writes N distinct k8s-like keys (256-byte values) into any etcd v3 endpoint,
//! in transactions of up to 128 puts from a few concurrent clients, so that snapshot save and
//! restore can be measured on a large store (see `scripts/bench-snapshot.sh`).
//!
//! Example: `k3rs-fill --endpoint http://127.0.0.1:2379 --keys 1000000`.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use etcd_api::pb::etcdserverpb::kv_client::KvClient;
use etcd_api::pb::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};
use tonic::transport::Endpoint;

#[derive(Debug, Parser)]
#[command(name = "k3rs-fill", about = "fill an etcd v3 store with distinct keys")]
struct Args {
    /// Client URL of the member to fill.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    endpoint: String,
    /// Keys to write.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    /// Puts per transaction (etcd's default limit is 128).
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
}

const VALUE_BYTES: usize = 256;

fn key(n: usize) -> Vec<u8> {
    format!("/registry/configmaps/ns-{:03}/cm-{n:07}", n % 1000).into_bytes()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let channel = Endpoint::from_shared(args.endpoint.clone())?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.endpoint))?;
    let batch = args.batch.clamp(1, 128);
    let batches = args.keys.div_ceil(batch);
    let clients = args.clients.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_index in 0..clients {
        let mut client = KvClient::new(channel.clone());
        let keys = args.keys;
        tasks.push(tokio::spawn(async move {
            for batch_index in (client_index..batches).step_by(clients) {
                let first = batch_index * batch;
                let success = (first..(first + batch).min(keys))
                    .map(|n| RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: key(n),
                            value: vec![b'v'; VALUE_BYTES],
                            ..Default::default()
                        })),
                    })
                    .collect();
                client
                    .txn(TxnRequest {
                        success,
                        ..Default::default()
                    })
                    .await
                    .with_context(|| format!("writing keys from {first}"))?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a fill client failed")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "wrote {} keys in {seconds:.1} s ({:.0} keys/s)",
        args.keys,
        args.keys as f64 / seconds
    );
    Ok(())
}
