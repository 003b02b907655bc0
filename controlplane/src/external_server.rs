//! `k3rs server --datastore-endpoint URLS`: a server whose Kubernetes API keeps its objects
//! in an external etcd instead of an embedded member, as k3s does with an external datastore.
//!
//! Guarantees:
//! - No embedded member starts: nothing listens on the etcd client, peer or metrics ports and
//!   nothing is written under `server/db/etcd`. Certificates, token, admin kubeconfig, the
//!   supervisor and the Kubernetes API (with its defaults, Node and Lease heartbeat) are the
//!   same as with the embedded store.
//! - Flags that need the embedded etcd are refused before anything is written:
//!   `--cluster-init`, `--server`, `--cluster-reset`.
//! - At start the datastore must answer a read within [`CONNECT_WAIT`] (an endpoint that
//!   refuses the TLS handshake — unknown CA, missing or foreign client certificate — fails at
//!   once); otherwise the server exits non-zero naming each endpoint and its error. Once
//!   running, an unreachable datastore makes API requests `503 ServiceUnavailable` with that
//!   message until it answers again.
//! - Servers on the same datastore share one cluster: the first stores its CAs in the
//!   datastore sealed with the token's secret (`/bootstrap/<hash>`, as the embedded store
//!   keeps them); a server started with that token and no CAs of its own takes them, so every
//!   server's kubeconfig and certificates are of one cluster.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftstore::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftstore::pb::etcdserverpb::{
    request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::bootstrap_seal;
use crate::cli::ServerArgs;
use crate::etcd_snapshot::service::SnapshotService;
use crate::kube::datastore::Source;
use crate::kube::node::NodeIdentity;
use crate::kube::{kubeconfig, Authenticator, KubeApi};
use crate::member::create_private_dir;
use crate::remote_etcd::{RemoteError, RemoteEtcd};
use crate::server_tls::{ServerNames, TlsDir};
use crate::supervisor::{self, CriticalSettings, Supervisor};
use crate::token::Token;

/// Longest the server waits at start for the datastore to answer.
pub const CONNECT_WAIT: Duration = Duration::from_secs(15);
/// Pause between attempts at start.
const CONNECT_RETRY: Duration = Duration::from_millis(500);

/// Refuses the flags k3s refuses with an external datastore.
fn check_flags(args: &ServerArgs) -> Result<()> {
    if args.cluster_init {
        bail!(
            "--cluster-init cannot be used with --datastore-endpoint: it starts an embedded \
             etcd, and this server uses the external datastore instead"
        );
    }
    if args.server.is_some() {
        bail!(
            "--server cannot be used with --datastore-endpoint: servers on an external \
             datastore do not join each other; start every server with the same \
             --datastore-endpoint (and --token)"
        );
    }
    if args.reset.requested() {
        bail!(
            "--cluster-reset is for the embedded etcd; this server uses an external datastore \
             (--datastore-endpoint): restore that datastore with its own tools"
        );
    }
    Ok(())
}

/// Runs the server against the external datastore until a signal stops it.
pub async fn run(args: ServerArgs) -> Result<()> {
    check_flags(&args)?;
    let datastore = args.datastore.resolve()?;
    let remote = RemoteEtcd::new(&datastore.urls, datastore.tls)?;
    wait_for_datastore(&remote).await?;
    tracing::info!(endpoints = %remote.urls(), "using the external datastore");

    let now = OffsetDateTime::now_utc();
    let server_dir = args.data_dir().join("server");
    create_private_dir(&server_dir)?;
    let tls_dir = TlsDir::under(&server_dir);
    let given_token = crate::server::given_token(&args)?;
    let secret = given_token.as_ref().map(|token| token.secret.clone());
    if !tls_dir.has_cluster_cas() {
        if let Some(secret) = &secret {
            adopt_stored_cas(&remote, secret, &tls_dir).await?;
        }
    }
    let node_ip = args.node_ip.unwrap_or_else(crate::server::default_node_ip);
    let node_name = args.node_name();
    let mut extra = vec![node_ip.to_string()];
    extra.extend(args.advertise_address.map(|ip| ip.to_string()));
    extra.extend(args.bind_address.map(|ip| ip.to_string()));
    extra.extend(args.tls_san.iter().cloned());
    let tls = tls_dir.prepare(
        &ServerNames {
            node_name: node_name.clone(),
            extra,
        },
        now,
    )?;
    let token = crate::server::ensure_token_file(&server_dir, given_token, &tls_dir)?;
    kubeconfig::write(
        &tls_dir,
        &server_dir,
        &kubeconfig::server_url(args.bind_address, args.https_listen_port),
        &args
            .write_kubeconfig
            .clone()
            .unwrap_or_else(kubeconfig::default_output),
        kubeconfig::parse_mode(&args.write_kubeconfig_mode)?,
    )?;

    let (_no_member_tx, no_member) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let supervisor = Arc::new(Supervisor {
        tls_dir: tls_dir.clone(),
        token: token.clone(),
        critical: CriticalSettings {
            heartbeat_interval_ms: args.tuning.heartbeat_interval,
            election_timeout_ms: args.tuning.election_timeout,
            max_request_bytes: args.tuning.max_request_bytes,
            max_txn_ops: args.tuning.max_txn_ops,
        },
        member: no_member.clone(),
        snapshots: Arc::new(SnapshotService::new(
            node_name.clone(),
            args.snapshots.snapshot_dir(&args.data_dir()),
            no_member,
            false,
            None,
        )),
        external_datastore: true,
    });
    store_cas(&remote, &token, &supervisor).await;

    let source = Source::External(remote);
    let (kube, mut tasks) = if args.disable_apiserver {
        (None, Vec::new())
    } else {
        let kube = Arc::new(KubeApi::new(
            source.clone(),
            Authenticator::new(tls.client_verifier.clone()),
        ));
        let defaults = tokio::spawn(crate::kube::create_defaults(
            source.clone(),
            stop_rx.clone(),
        ));
        let heartbeat = tokio::spawn(crate::kube::node::run(
            source.clone(),
            stop_rx.clone(),
            NodeIdentity {
                name: node_name,
                ip: node_ip,
            },
        ));
        let manifests = tokio::spawn(crate::kube::manifests::run(
            source,
            stop_rx.clone(),
            crate::kube::manifests::dir_of(&args.data_dir()),
        ));
        (Some(kube), vec![defaults, heartbeat, manifests])
    };
    let listen_ips = match args.bind_address {
        Some(ip) => vec![ip],
        None if node_ip.is_loopback() => vec![node_ip],
        None => vec![std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), node_ip],
    };
    let addrs: Vec<std::net::SocketAddr> = listen_ips
        .into_iter()
        .map(|ip| std::net::SocketAddr::new(ip, args.https_listen_port))
        .collect();
    tasks.extend(
        supervisor::serve(
            supervisor,
            kube,
            &addrs,
            tls.supervisor.clone(),
            stop_rx.clone(),
        )
        .await?,
    );
    let signal = crate::member::shutdown_signal().await;
    stop_tx.send_replace(true);
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!(signal = signal?, "stopped");
    Ok(())
}

/// Waits until the datastore answers a read, at most [`CONNECT_WAIT`]; a TLS refusal ends
/// the wait at once.
async fn wait_for_datastore(remote: &RemoteEtcd) -> Result<()> {
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    loop {
        let probe = remote
            .range(RangeRequest {
                key: b"/registry/".to_vec(),
                limit: 1,
                keys_only: true,
                ..Default::default()
            })
            .await;
        let error = match probe {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let permanent = match &error {
            RemoteError::Unreachable { tls_refused, .. } => *tls_refused,
            RemoteError::Etcd(_) => false,
        };
        if !permanent && matches!(error, RemoteError::Unreachable { .. }) {
            if let Some(refusal) = remote.tls_refusal().await {
                bail!(
                    "cannot use the datastore at {} (--datastore-endpoint): TLS refused: \
                     {refusal}",
                    remote.urls()
                );
            }
        }
        if permanent || tokio::time::Instant::now() + CONNECT_RETRY > deadline {
            bail!(
                "cannot use the datastore at {} (--datastore-endpoint): {error}",
                remote.urls()
            );
        }
        tracing::info!(%error, "waiting for the datastore");
        tokio::time::sleep(CONNECT_RETRY).await;
    }
}

/// Writes the CAs sealed in the datastore for `secret` under `tls_dir`, if there are any.
async fn adopt_stored_cas(remote: &RemoteEtcd, secret: &str, tls_dir: &TlsDir) -> Result<()> {
    let key = bootstrap_seal::bootstrap_key(secret);
    let stored = remote
        .range(RangeRequest {
            key: key.clone().into_bytes(),
            ..Default::default()
        })
        .await
        .context("reading the cluster's bootstrap data from the datastore")?;
    let Some(kv) = stored.kvs.first() else {
        return Ok(());
    };
    let data = bootstrap_seal::open(secret, &kv.value)
        .with_context(|| format!("opening the bootstrap data at {key} with the token"))?;
    crate::join::write_cas(&data, tls_dir)?;
    tracing::info!("took the cluster's certificate authorities from the datastore");
    Ok(())
}

/// Stores this server's CAs sealed with the token's secret unless the datastore has them
/// already; failures are logged (the API works without them; only later servers miss them).
async fn store_cas(remote: &RemoteEtcd, token: &Token, supervisor: &Supervisor) {
    let stored = async {
        let data = supervisor.bootstrap_data()?;
        let key = bootstrap_seal::bootstrap_key(&token.secret).into_bytes();
        let value = bootstrap_seal::seal(&token.secret, &data)?;
        remote
            .txn(TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Create as i32,
                    key: key.clone(),
                    range_end: Vec::new(),
                    target_union: Some(TargetUnion::CreateRevision(0)),
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key,
                        value,
                        ..Default::default()
                    })),
                }],
                failure: Vec::new(),
            })
            .await
            .context("writing the bootstrap data")?;
        Ok::<(), anyhow::Error>(())
    };
    if let Err(error) = stored.await {
        tracing::warn!("keeping the cluster's CAs in the datastore: {error:#}");
    }
}
