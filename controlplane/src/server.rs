//! `k3rs server`: a k3s-style server — certificates and the join token under
//! `<data-dir>/server/`, joining the cluster at `--server` when it has no data yet, then the
//! embedded etcd member with mTLS on its client and peer ports, the supervisor API (with the
//! snapshot operations of `k3rs etcd-snapshot`) and the Kubernetes API on the HTTPS port with
//! an admin kubeconfig, scheduled snapshots, and (on the leader) promotion of caught-up
//! learners.
//!
//! Guarantees: the member's name (`<node-name>-<8 hex>`, as k3s names members) is chosen once
//! and kept in `server/db/name`, so a restart is the same member; the token file is written
//! once (mode 0600) and a later `--token` that does not match it is refused before anything
//! starts; the token's secret is never logged.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftstore::identity::InitialMember;
use raftstore::node::NodeHandle;
use rand::RngCore;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::bootstrap_store;
use crate::cli::ServerArgs;
use crate::etcd_snapshot::schedule;
use crate::etcd_snapshot::service::SnapshotService;
use crate::join::{self, SupervisorClient};
use crate::kube::datastore::Source;
use crate::kube::node::NodeIdentity;
use crate::kube::{kubeconfig, Authenticator, KubeApi};
use crate::member::{create_private_dir, MemberSettings, MemberTls};
use crate::pki::write_file;
use crate::server_tls::{ServerNames, ServerTls, TlsDir};
use crate::supervisor::{self, CriticalSettings, Supervisor};
use crate::token::{self, Token};

/// Everything `k3rs server` derives from its flags and data dir before starting the member.
pub struct ServerPlan {
    pub tls_dir: TlsDir,
    pub tls: ServerTls,
    pub token: Token,
    pub settings: MemberSettings,
    pub critical: CriticalSettings,
    /// Where the supervisor API listens.
    pub supervisor_addrs: Vec<SocketAddr>,
}

/// Runs `k3rs server` until a signal stops it.
pub async fn run(args: ServerArgs) -> Result<()> {
    let s3 = args
        .snapshots
        .s3
        .config()
        .context("checking the --etcd-s3 settings")?;
    let plan = prepare(&args, OffsetDateTime::now_utc()).await?;
    let (serving_tx, serving_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let snapshots = Arc::new(SnapshotService::new(
        args.node_name(),
        args.snapshots.snapshot_dir(&args.data_dir()),
        serving_rx.clone(),
        args.snapshots.etcd_snapshot_compress,
        s3,
    ));
    let supervisor = Arc::new(Supervisor {
        tls_dir: plan.tls_dir.clone(),
        token: plan.token.clone(),
        critical: plan.critical.clone(),
        member: serving_rx.clone(),
        snapshots: snapshots.clone(),
        external_datastore: false,
    });
    let scheduler = tokio::spawn(schedule::run(
        snapshots,
        args.snapshots.clone(),
        stop_rx.clone(),
    ));
    let bootstrap_data = supervisor.bootstrap_data()?;
    let keeper = tokio::spawn(bootstrap_store::keep_in_store(
        serving_rx.clone(),
        stop_rx.clone(),
        plan.token.clone(),
        bootstrap_data,
    ));
    let (kube, api_tasks) = if args.disable_apiserver {
        (None, Vec::new())
    } else {
        let kube = Arc::new(KubeApi::new(
            Source::Embedded(serving_rx.clone()),
            Authenticator::new(plan.tls.client_verifier.clone()),
        ));
        let defaults = tokio::spawn(crate::kube::create_defaults(
            Source::Embedded(serving_rx.clone()),
            stop_rx.clone(),
        ));
        let heartbeat = tokio::spawn(crate::kube::node::run(
            Source::Embedded(serving_rx.clone()),
            stop_rx.clone(),
            NodeIdentity {
                name: args.node_name(),
                ip: args.node_ip.unwrap_or_else(default_node_ip),
            },
        ));
        let manifests = tokio::spawn(crate::kube::manifests::run(
            Source::Embedded(serving_rx.clone()),
            stop_rx.clone(),
            crate::kube::manifests::dir_of(&args.data_dir()),
        ));
        let snapshot_files = tokio::spawn(crate::kube::snapshot_files::run(
            Source::Embedded(serving_rx.clone()),
            stop_rx.clone(),
        ));
        (
            Some(kube),
            vec![defaults, heartbeat, manifests, snapshot_files],
        )
    };
    let supervisor_tasks = supervisor::serve(
        supervisor,
        kube,
        &plan.supervisor_addrs,
        plan.tls.supervisor.clone(),
        stop_rx.clone(),
    )
    .await?;
    let promoter = tokio::spawn(promote_learners(serving_rx, stop_rx));
    let outcome = crate::member::run(plan.settings, Some(serving_tx)).await;
    stop_tx.send_replace(true);
    for task in supervisor_tasks {
        let _ = task.await;
    }
    let _ = promoter.await;
    for task in api_tasks {
        let _ = task.await;
    }
    let _ = keeper.await;
    let _ = scheduler.await;
    outcome
}

/// Writes certificates and the token as needed (joining the cluster at `--server` when this
/// server has no data yet) and works out the member's settings.
pub async fn prepare(args: &ServerArgs, now: OffsetDateTime) -> Result<ServerPlan> {
    let server_dir = args.data_dir().join("server");
    create_private_dir(&server_dir.join("db"))?;
    let node_ip = args.node_ip.unwrap_or_else(default_node_ip);
    let node_name = args.node_name();
    let given_token = given_token(args)?;
    let critical = CriticalSettings {
        heartbeat_interval_ms: args.tuning.heartbeat_interval,
        election_timeout_ms: args.tuning.election_timeout,
        max_request_bytes: args.tuning.max_request_bytes,
        max_txn_ops: args.tuning.max_txn_ops,
    };
    let etcd_dir = server_dir.join("db").join("etcd");
    let has_data = etcd_dir.join("member").exists();
    let tls_dir = TlsDir::under(&server_dir);

    let supervisor_client = match (&args.server, has_data) {
        (Some(url), false) => {
            let token = given_token
                .clone()
                .context("--server needs the cluster's token (--token or --token-file)")?;
            let (client, _ca) = SupervisorClient::connect(url, token).await?;
            let data = client.bootstrap_data().await?;
            join::adopt_bootstrap_data(&data, &critical, &tls_dir)?;
            tracing::info!(server = %url, "received the cluster's certificate authorities");
            Some(client)
        }
        (Some(url), true) => {
            check_same_cluster(url, &tls_dir, &etcd_dir).await?;
            tracing::info!(server = %url, "this server has data: restarting as a member, not joining");
            None
        }
        (None, _) => None,
    };

    let mut extra_names = vec![node_ip.to_string()];
    extra_names.extend(args.advertise_address.map(|ip| ip.to_string()));
    extra_names.extend(args.bind_address.map(|ip| ip.to_string()));
    extra_names.extend(args.tls_san.iter().cloned());
    let names = ServerNames {
        node_name: node_name.clone(),
        extra: extra_names,
    };
    let tls = tls_dir.prepare(&names, now)?;
    let token = ensure_token_file(&server_dir, given_token, &tls_dir)?;
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

    let member_name = member_name(&server_dir.join("db"), &node_name)?;
    let client_url = format!("https://{}", socket(node_ip, args.etcd_client_port));
    let peer_url = format!("https://{}", socket(node_ip, args.etcd_peer_port));
    let listen_ips = listen_ips(args.bind_address, node_ip);
    let on_ports = |port: u16| -> Vec<SocketAddr> {
        listen_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect()
    };
    let mut settings = MemberSettings::with_listeners(
        etcd_dir,
        member_name.clone(),
        peer_url.clone(),
        client_url,
        on_ports(args.etcd_client_port),
        on_ports(args.etcd_peer_port),
    );
    settings.always_listen_peer = true;
    settings.listen_metrics = metrics_ips(args.bind_address, node_ip, args.etcd_expose_metrics)
        .into_iter()
        .map(|ip| SocketAddr::new(ip, args.etcd_metrics_port))
        .collect();
    settings.tls = Some(MemberTls {
        client_port: tls.etcd_client_port.clone(),
        peer_port: tls.etcd_peer_port.clone(),
        peer_client: tls.etcd_peer_client.clone(),
    });
    args.tuning.apply(&mut settings)?;

    if let Some(client) = supervisor_client {
        let members = client.members().await?;
        let initial = join::add_self_as_learner(
            &members,
            tls.etcd_client.clone(),
            &node_name,
            &member_name,
            &peer_url,
        )
        .await?;
        let mut initial_cluster: Vec<InitialMember> = Vec::new();
        for (name, url) in initial {
            match initial_cluster
                .iter_mut()
                .find(|member| member.name == name)
            {
                Some(member) => member.peer_urls.push(url),
                None => initial_cluster.push(InitialMember {
                    name,
                    peer_urls: vec![url],
                }),
            }
        }
        settings.node.initial_cluster = initial_cluster;
        settings.join_existing = true;
    }
    Ok(ServerPlan {
        tls_dir,
        tls,
        token,
        settings,
        critical,
        supervisor_addrs: on_ports(args.https_listen_port),
    })
}

/// How often the leader looks for learners to promote.
const PROMOTE_INTERVAL: Duration = Duration::from_secs(5);
/// A learner that has not caught up for this long is removed (k3s: 5 minutes).
const STALLED_LEARNER_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The member once it serves; `None` when `stop` turns true (or the member ends) first.
pub(crate) async fn serving_member(
    serving: &mut watch::Receiver<Option<NodeHandle>>,
    stop: &mut watch::Receiver<bool>,
) -> Option<NodeHandle> {
    tokio::select! {
        biased;
        _ = stop.wait_for(|stop| *stop) => None,
        handle = serving.wait_for(Option::is_some) => handle.ok().and_then(|handle| handle.clone()),
    }
}

/// On the leader, promotes every learner that has caught up and removes one that has not
/// caught up for [`STALLED_LEARNER_TIMEOUT`], until `stop`.
async fn promote_learners(
    mut serving: watch::Receiver<Option<NodeHandle>>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(handle) = serving_member(&mut serving, &mut stop).await else {
        return;
    };
    let mut waiting_since: std::collections::BTreeMap<u64, tokio::time::Instant> =
        std::collections::BTreeMap::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(PROMOTE_INTERVAL) => {}
        }
        if !handle.status().is_leader() {
            waiting_since.clear();
            continue;
        }
        let learners: Vec<_> = handle
            .members()
            .into_iter()
            .filter(|member| member.is_learner)
            .collect();
        waiting_since.retain(|id, _| learners.iter().any(|member| member.id == *id));
        for learner in learners {
            match handle.member_promote(learner.id).await {
                Ok(_) => {
                    tracing::info!(member = %learner.name, id = learner.id, "promoted learner to voter");
                    waiting_since.remove(&learner.id);
                }
                Err(error) => {
                    let since = *waiting_since
                        .entry(learner.id)
                        .or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() < STALLED_LEARNER_TIMEOUT {
                        tracing::debug!(member = %learner.name, %error, "learner not promoted yet");
                        continue;
                    }
                    tracing::warn!(member = %learner.name, id = learner.id, "removing a learner that made no progress for 5 minutes");
                    if let Err(error) = handle.member_remove(learner.id).await {
                        tracing::warn!(member = %learner.name, %error, "removing the stalled learner failed");
                    }
                    waiting_since.remove(&learner.id);
                }
            }
        }
    }
}

/// `host:port`, with brackets around an IPv6 host.
fn socket(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// The addresses the etcd ports listen on: the bind address alone when given (so several
/// servers can share a machine on 127.0.0.N), otherwise loopback and the node IP.
fn listen_ips(bind: Option<IpAddr>, node_ip: IpAddr) -> Vec<IpAddr> {
    match bind {
        Some(ip) => vec![ip],
        None if node_ip.is_loopback() => vec![node_ip],
        None => vec![IpAddr::V4(Ipv4Addr::LOCALHOST), node_ip],
    }
}

/// Where etcd metrics are served, as k3s serves them: loopback (or the bind address when
/// given), plus the node IP with `--etcd-expose-metrics`.
fn metrics_ips(bind: Option<IpAddr>, node_ip: IpAddr, expose: bool) -> Vec<IpAddr> {
    let local = bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut ips = vec![local];
    if expose && node_ip != local {
        ips.push(node_ip);
    }
    ips
}

/// The source address of the default route (no packet is sent), else 127.0.0.1.
pub(crate) fn default_node_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        socket.connect("8.8.8.8:53")?;
        Ok(socket.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The token from `--token`, `K3S_TOKEN` or `--token-file`, if any.
pub(crate) fn given_token(args: &ServerArgs) -> Result<Option<Token>> {
    let text = args
        .token
        .clone()
        .or_else(|| std::env::var("K3S_TOKEN").ok())
        .filter(|text| !text.trim().is_empty());
    match (text, &args.token_file) {
        (Some(_), Some(_)) => bail!("give either --token or --token-file, not both"),
        (Some(text), None) => Token::parse(&text).map(Some).context("reading --token"),
        (None, Some(path)) => token::read_token_file(path).map(Some),
        (None, None) => Ok(None),
    }
}

/// Refuses to start when `--server` names a server of another cluster than the one this data
/// dir holds (its `/cacerts` differs from our cluster CA). An unreachable `--server` is only
/// logged: after a power cut the servers restart in any order.
async fn check_same_cluster(url: &str, tls_dir: &TlsDir, etcd_dir: &Path) -> Result<()> {
    let ours = tls_dir.cluster_ca_pem()?;
    match SupervisorClient::fetch_cluster_ca(url).await {
        Ok(theirs) if token::ca_hash(&theirs) == token::ca_hash(&ours) => Ok(()),
        Ok(_) => bail!(
            "--server {url} belongs to another cluster: its CA differs from this server's \
             ({}), whose data dir holds a cluster already. Fix --server, or remove {} to \
             leave this cluster and join {url}'s",
            tls_dir.stem("server-ca").with_extension("crt").display(),
            etcd_dir.display()
        ),
        Err(error) => {
            tracing::warn!(
                server = %url,
                "could not check that --server is of this server's cluster: {error:#}"
            );
            Ok(())
        }
    }
}

/// The cluster's token as stored in `server/token`; written (with `server/node-token`) on
/// first start from the given secret or a new one.
pub(crate) fn ensure_token_file(
    server_dir: &Path,
    given: Option<Token>,
    tls_dir: &TlsDir,
) -> Result<Token> {
    let ca_bundle = tls_dir.cluster_ca_pem()?;
    let path = server_dir.join("token");
    if path.exists() {
        let stored = token::read_token_file(&path)?;
        if let Some(given) = &given {
            if given.secret != stored.secret {
                bail!(
                    "the token given does not match the token of this server's cluster in {}; \
                     start it with that token (or none)",
                    path.display()
                );
            }
        }
        stored
            .check_ca(&ca_bundle, "this server")
            .with_context(|| format!("checking {}", path.display()))?;
        return Ok(stored);
    }
    if let Some(given) = &given {
        given.check_ca(&ca_bundle, "this server").context(
            "the token pins another cluster's CA; give only its secret to start a new cluster",
        )?;
    }
    let secret = given.map_or_else(token::generate_secret, |token| token.secret);
    let token = Token::pinned(&ca_bundle, &secret);
    let text = format!("{}\n", token.to_text());
    write_file(&path, text.as_bytes(), 0o600)?;
    write_file(&server_dir.join("node-token"), text.as_bytes(), 0o600)?;
    tracing::info!(token_file = %path.display(), "wrote the cluster's join token");
    Ok(token)
}

/// This server's member name, `<node-name>-<8 hex>`, chosen on first start and kept in
/// `<db>/name`.
fn member_name(db_dir: &Path, node_name: &str) -> Result<String> {
    let path = db_dir.join("name");
    match std::fs::read_to_string(&path) {
        Ok(name) if !name.trim().is_empty() => return Ok(name.trim().to_string()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", path.display()));
        }
    }
    let mut suffix = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let name = format!("{node_name}-{:08x}", u32::from_be_bytes(suffix));
    write_file(&path, format!("{name}\n").as_bytes(), 0o600)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn metrics_are_on_loopback_unless_exposed() {
        assert_eq!(metrics_ips(None, NODE, false), vec![LOOPBACK]);
        assert_eq!(metrics_ips(None, NODE, true), vec![LOOPBACK, NODE]);
    }

    #[test]
    fn metrics_follow_the_bind_address() {
        let bind = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(metrics_ips(Some(bind), NODE, false), vec![bind]);
        assert_eq!(metrics_ips(Some(bind), bind, true), vec![bind]);
        assert_eq!(metrics_ips(Some(bind), NODE, true), vec![bind, NODE]);
    }
}
