//! Runs one member: opens its engine under the data dir, starts the raft node, binds the
//! client ports at once but accepts on them only once the member has caught up, and shuts
//! down cleanly on SIGTERM or SIGINT (in-flight requests finish or fail with `server
//! stopped`; the engine is synced).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use raftstore::engine::EngineKind;
use raftstore::identity::InitialMember;
use raftstore::node::NodeConfig;
use tokio::sync::watch;

use etcd_api::Net as _;

use crate::metrics_server::MetricsSource;
use crate::urls::listen_addr;

/// Everything needed to run a member, whichever command line it came from.
#[derive(Debug)]
pub struct MemberSettings {
    /// etcd's data dir; the engine lives in `member/<engine>` under it.
    pub data_dir: PathBuf,
    pub engine: EngineKind,
    pub node: NodeConfig,
    pub listen_client: Vec<SocketAddr>,
    /// Where other members reach this one (etcd's `--listen-peer-urls`); only listened on when
    /// the cluster has other members.
    pub listen_peer: Vec<SocketAddr>,
    /// Join the existing cluster named by the initial cluster (etcd's
    /// `--initial-cluster-state existing`) instead of creating one.
    pub join_existing: bool,
    /// This member's peer URLs, by which it finds itself in an existing cluster.
    pub advertise_peer_urls: Vec<String>,
    /// Listen for peers even while this member is alone (servers others may join).
    pub always_listen_peer: bool,
    /// TLS on the client and peer ports (`k3rs server`); plaintext when absent.
    pub tls: Option<MemberTls>,
    /// Where plain-HTTP metrics and health are served (etcd's `--listen-metrics-urls`, k3s's
    /// port 2381); nowhere when empty.
    pub listen_metrics: Vec<SocketAddr>,
}

/// The TLS configurations of a member's ports and of its channels to peers.
#[derive(Debug, Clone)]
pub struct MemberTls {
    pub client_port: Arc<rustls::ServerConfig>,
    pub peer_port: Arc<rustls::ServerConfig>,
    pub peer_client: Arc<rustls::ClientConfig>,
}

impl MemberSettings {
    /// A single-member cluster named `name` reachable at `client_url`, listening for clients
    /// where `client_url` says.
    pub fn new(
        data_dir: PathBuf,
        name: String,
        peer_url: String,
        client_url: String,
    ) -> Result<Self> {
        let listen_client = vec![listen_addr(&client_url)?];
        Ok(Self::with_listeners(
            data_dir,
            name,
            peer_url,
            client_url,
            listen_client,
            Vec::new(),
        ))
    }

    /// A single-member cluster named `name` reachable at `client_url`, listening for clients
    /// on `listen_client` and for peers on `listen_peer`.
    pub fn with_listeners(
        data_dir: PathBuf,
        name: String,
        peer_url: String,
        client_url: String,
        listen_client: Vec<SocketAddr>,
        listen_peer: Vec<SocketAddr>,
    ) -> Self {
        let node = NodeConfig {
            name: name.clone(),
            initial_cluster: vec![InitialMember {
                name,
                peer_urls: vec![peer_url.clone()],
            }],
            advertise_client_urls: vec![client_url],
            ..NodeConfig::default()
        };
        Self {
            data_dir,
            engine: EngineKind::default_kind(),
            node,
            listen_client,
            listen_peer,
            join_existing: false,
            advertise_peer_urls: vec![peer_url],
            always_listen_peer: false,
            tls: None,
            listen_metrics: Vec::new(),
        }
    }

    pub fn set_listen_peer_urls(&mut self, urls: &[String]) -> Result<()> {
        self.listen_peer = urls.iter().map(|u| listen_addr(u)).collect::<Result<_>>()?;
        Ok(())
    }

    /// Serves metrics at `urls` (plain `http://` only, as this listener has no TLS).
    pub fn set_listen_metrics_urls(&mut self, urls: &[String]) -> Result<()> {
        self.listen_metrics = urls
            .iter()
            .map(|url| {
                if !url.starts_with("http://") {
                    bail!("--listen-metrics-urls {url}: only http:// URLs are supported");
                }
                listen_addr(url)
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    pub fn set_listen_client_urls(&mut self, urls: &[String]) -> Result<()> {
        if urls.is_empty() {
            bail!("no client URL to listen on");
        }
        self.listen_client = urls.iter().map(|u| listen_addr(u)).collect::<Result<_>>()?;
        Ok(())
    }

    pub(crate) fn engine_dir(&self) -> PathBuf {
        let name = match self.engine {
            EngineKind::Memory => "memory",
            #[cfg(feature = "rocksdb")]
            EngineKind::RocksDb => "rocksdb",
            #[cfg(feature = "sled")]
            EngineKind::Sled => "sled",
        };
        self.data_dir.join("member").join(name)
    }
}

/// Binds every address in `addrs`, each with `what` in its error.
async fn bind_all(
    addrs: &[SocketAddr],
    what: &str,
) -> Result<Vec<(SocketAddr, etcd_api::net::TokioIncoming)>> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let incoming = etcd_api::TokioNet
            .listen(*addr)
            .await
            .with_context(|| format!("{what} on {addr}"))?;
        listeners.push((*addr, incoming));
    }
    Ok(listeners)
}

/// Runs the member until a signal asks it to stop or it fails; `serving` gets the member's
/// handle once it serves clients.
pub async fn run(
    settings: MemberSettings,
    serving: Option<watch::Sender<Option<raftstore::node::NodeHandle>>>,
) -> Result<()> {
    // Every port is bound before anything else, as etcd binds them: a client or peer that
    // connects during start-up waits in the backlog until the member serves instead of being
    // refused. A refused gRPC client backs off for a second or more before it tries again, and
    // a refused peer loses the first campaign of a cluster that starts together.
    let peer_listeners = bind_all(&settings.listen_peer, "listening for peers").await?;
    let client_listeners = bind_all(&settings.listen_client, "listening for clients").await?;
    create_private_dir(&settings.data_dir.join("member"))?;
    let engine_dir = settings.engine_dir();
    let engine = settings
        .engine
        .open(&engine_dir)
        .with_context(|| format!("opening the store in {}", engine_dir.display()))?;
    tracing::info!(engine = engine.kind(), dir = %engine_dir.display(), "storage engine open");

    let name = settings.node.name.clone();
    let client_urls = settings.node.advertise_client_urls.clone();
    let peer_client_tls = settings.tls.as_ref().map(|tls| tls.peer_client.clone());
    let connector = etcd_api::tls::tls_connector(etcd_api::TokioNet, peer_client_tls);
    let joining = if settings.join_existing && raftstore::identity::load(engine.as_ref())?.is_none()
    {
        Some(
            etcd_api::peer::fetch_identity(
                &connector,
                &settings.node.initial_cluster,
                &settings.advertise_peer_urls,
            )
            .await
            .map_err(anyhow::Error::msg)
            .context("joining the existing cluster")?,
        )
    } else {
        None
    };
    let transport = etcd_api::GrpcTransport::new(connector.clone());
    let running = raftstore::node::start_or_join(engine, settings.node, transport.clone(), joining)
        .with_context(|| format!("starting the member in {}", settings.data_dir.display()))?;
    let handle = &running.handle;
    let members = handle.members();
    transport
        .connect_members(handle.cluster_id(), handle.member_id(), &members)
        .map_err(anyhow::Error::msg)
        .context("connecting to the other members")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let grpc_metrics = Arc::new(etcd_api::GrpcMetrics::default());
    let (serving_tx, serving_rx) = watch::channel(false);
    let metrics_tasks = crate::metrics_server::serve(
        MetricsSource {
            handle: running.handle.clone(),
            grpc: grpc_metrics.clone(),
            serving: serving_rx,
        },
        &settings.listen_metrics,
        stop_rx.clone(),
    )
    .await?;
    let mut servers = Vec::new();
    // Peers must reach this member before it can catch up, so the peer port is served first.
    // A lone member that will never have peers closes it.
    if members.len() > 1 || settings.always_listen_peer {
        for (addr, incoming) in peer_listeners {
            let shutdown = stopped(stop_rx.clone());
            let handle = running.handle.clone();
            let tls = settings.tls.as_ref().map(|tls| tls.peer_port.clone());
            servers.push(tokio::spawn(async move {
                match tls {
                    Some(tls) => {
                        let incoming = etcd_api::tls::accept_tls(incoming, tls);
                        etcd_api::serve_peers(handle, incoming, shutdown).await
                    }
                    None => etcd_api::serve_peers(handle, incoming, shutdown).await,
                }
            }));
            tracing::info!(%addr, "listening for peers");
        }
    }
    // Nothing is accepted on the client ports before the member has caught up.
    running
        .ready()
        .await
        .context("waiting for the member to catch up")?;
    tokio::spawn(publish_attributes(
        running.handle.clone(),
        name,
        client_urls,
    ));

    for (addr, incoming) in client_listeners {
        let shutdown = stopped(stop_rx.clone());
        let handle = running.handle.clone();
        let connector = connector.clone();
        let metrics = grpc_metrics.clone();
        let tls = settings.tls.as_ref().map(|tls| tls.client_port.clone());
        servers.push(tokio::spawn(async move {
            match tls {
                Some(tls) => {
                    let incoming = etcd_api::tls::accept_tls(incoming, tls);
                    etcd_api::serve(handle, connector, metrics, incoming, shutdown).await
                }
                None => etcd_api::serve(handle, connector, metrics, incoming, shutdown).await,
            }
        }));
        tracing::info!(%addr, "ready to serve client requests");
    }
    serving_tx.send_replace(true);
    if let Some(serving) = serving {
        serving.send_replace(Some(running.handle.clone()));
    }

    let mut driver = running.driver;
    let outcome = tokio::select! {
        biased;
        signal = shutdown_signal() => {
            tracing::info!(signal = signal?, "stopping");
            Ok(())
        }
        finished = &mut driver => match finished {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(anyhow::Error::new(err).context("the raft node stopped")),
            Err(err) => Err(anyhow::Error::new(err).context("the raft node task failed")),
        },
    };
    stop_tx.send_replace(true);
    running.handle.shutdown();
    for server in servers {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "client listener ended with an error"),
            Err(err) => tracing::warn!(error = %err, "client listener task failed"),
        }
    }
    for task in metrics_tasks {
        let _ = task.await;
    }
    if !driver.is_finished() {
        match driver.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "raft node stopped with an error"),
            Err(err) => tracing::warn!(error = %err, "raft node task failed"),
        }
    }
    outcome
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Publishes this member's name and client URLs through raft, retrying (as etcd does) until it
/// succeeds or the member stops.
async fn publish_attributes(
    handle: raftstore::node::NodeHandle,
    name: String,
    client_urls: Vec<String>,
) {
    loop {
        match handle
            .publish_attributes(name.clone(), client_urls.clone())
            .await
        {
            Ok(()) => return,
            Err(raftstore::EtcdError::Stopped) => return,
            Err(err) => {
                tracing::warn!(error = %err, "publishing this member's name and client URLs failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

/// Waits for SIGTERM or SIGINT; returns its name.
pub(crate) async fn shutdown_signal() -> Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        biased;
        _ = terminate.recv() => Ok("SIGTERM"),
        _ = interrupt.recv() => Ok("SIGINT"),
    }
}

/// Creates `dir` (and parents) readable only by its owner, as etcd does for its data dir.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}
