//! Joining a server to an existing cluster the k3s way (`--server URL --token TOKEN`).
//!
//! Steps: fetch `/cacerts` without trusting anything and check its hash against the token;
//! fetch the bootstrap data (CAs and critical settings) over TLS verified by that CA with the
//! token's secret; check the critical settings; write the CAs; then (once this server's own
//! certificates exist) add this server as a learner through the etcd API of a member, replacing
//! a stale entry of the same node (a rebuilt server), and start with state `existing`.
//!
//! Guarantees: nothing is written before the CA hash, the secret and the critical settings
//! have been checked; "too many learner members" is waited out (other servers joining at the
//! same time are promoted one by one) rather than failing; every request has a deadline.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::time::{sleep, timeout, Instant};

use etcd_api::pb::etcdserverpb::cluster_client::ClusterClient;
use etcd_api::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use etcd_api::pb::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberRemoveRequest, StatusRequest,
};

use crate::pki::write_pair;
use crate::pki::CertAndKey;
use crate::server_tls::{
    crypto_provider, root_store_from_pem, TlsDir, CLUSTER_CAS, OPTIONAL_CLUSTER_CAS,
};
use crate::supervisor::{BootstrapData, CriticalSettings, DbInfo, MemberInfo, BOOTSTRAP_PATH};
use crate::token::Token;

/// Deadline of one supervisor request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a joiner waits for its turn while other learners catch up.
const LEARNER_QUEUE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long a member with this server's node name gets to answer before it counts as gone.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between two attempts to add this server while another learner is pending.
const LEARNER_QUEUE_POLL: Duration = Duration::from_secs(2);

/// The supervisor of the server named by `--server`.
pub struct SupervisorClient {
    url: String,
    host: String,
    port: u16,
    token: Token,
    tls: Arc<rustls::ClientConfig>,
}

impl SupervisorClient {
    /// Fetches `/cacerts` from `url`, checks it against `token`, and returns a client that
    /// trusts that CA from then on.
    pub async fn connect(url: &str, token: Token) -> Result<(Self, Vec<u8>)> {
        let (host, port) = parse_https_url(url)?;
        if token.ca_hash.is_none() {
            tracing::warn!(
                "the token is a bare secret: the cluster CA at {url} is not verified; use the \
                 full token (K10...) from server/token on an existing server"
            );
        }
        let insecure = Self::unverified(url, host, port, token.clone())?;
        let ca_bundle = insecure.get("/cacerts", false).await?;
        token.check_ca(&ca_bundle, url)?;
        let tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_root_certificates(root_store_from_pem(&ca_bundle)?)
            .with_no_client_auth();
        let client = Self {
            tls: Arc::new(tls),
            ..insecure
        };
        Ok((client, ca_bundle.to_vec()))
    }

    /// The CA bundle `url` serves on `/cacerts`, fetched without verifying the server (it is
    /// only compared with a hash or a CA this server already has).
    pub async fn fetch_cluster_ca(url: &str) -> Result<Bytes> {
        let (host, port) = parse_https_url(url)?;
        let no_credentials = Token {
            ca_hash: None,
            user: crate::token::SERVER_USER.to_string(),
            secret: String::new(),
        };
        let unverified = Self::unverified(url, host, port, no_credentials)?;
        unverified.get("/cacerts", false).await
    }

    fn unverified(url: &str, host: String, port: u16, token: Token) -> Result<Self> {
        Ok(Self {
            url: url.to_string(),
            host,
            port,
            token,
            tls: Arc::new(insecure_client_config()?),
        })
    }

    /// The cluster's CAs and critical settings.
    pub async fn bootstrap_data(&self) -> Result<BootstrapData> {
        let body = self.get(BOOTSTRAP_PATH, true).await?;
        serde_json::from_slice(&body)
            .with_context(|| format!("reading the bootstrap data from {}", self.url))
    }

    /// The cluster's members.
    pub async fn members(&self) -> Result<Vec<MemberInfo>> {
        let body = self.get("/db/info", true).await?;
        let info: DbInfo = serde_json::from_slice(&body)
            .with_context(|| format!("reading the member list from {}", self.url))?;
        Ok(info.members)
    }

    /// POSTs `body` as JSON to `path` with the token's secret and decodes the JSON answer,
    /// waiting at most `deadline`.
    pub async fn post_json<T, R>(&self, path: &str, body: &T, deadline: Duration) -> Result<R>
    where
        T: serde::Serialize,
        R: serde::de::DeserializeOwned,
    {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let body = Bytes::from(serde_json::to_vec(body).context("encoding the request")?);
        let answer = timeout(deadline, self.request_once(Method::POST, path, body, true))
            .await
            .map_err(|_| anyhow!("{url} did not answer within {deadline:?}"))?
            .with_context(|| format!("POST {url}"))?;
        serde_json::from_slice(&answer).with_context(|| format!("reading the answer of {url}"))
    }

    async fn get(&self, path: &str, authenticate: bool) -> Result<Bytes> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        timeout(
            REQUEST_TIMEOUT,
            self.request_once(Method::GET, path, Bytes::new(), authenticate),
        )
        .await
        .map_err(|_| anyhow!("{url} did not answer within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("GET {url}"))
    }

    async fn request_once(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        authenticate: bool,
    ) -> Result<Bytes> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .context("connecting")?;
        let name = ServerName::try_from(self.host.clone()).context("server name")?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, format!("{}:{}", self.host, self.port));
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if authenticate {
            let credentials = format!("{}:{}", self.token.user, self.token.secret);
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            request = request.header(AUTHORIZATION, format!("Basic {encoded}"));
        }
        let response = sender
            .send_request(request.body(Full::new(body)).context("request")?)
            .await
            .context("sending the request")?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        match status {
            StatusCode::OK => Ok(body),
            StatusCode::UNAUTHORIZED => bail!(
                "the token was refused (401): the server refused the token's secret; is the \
                 token from this cluster's server/token?"
            ),
            other => bail!(
                "the server answered {other}: {}",
                String::from_utf8_lossy(&body).trim_end()
            ),
        }
    }
}

/// Checks the cluster's critical settings against ours and writes its CAs under `tls_dir`.
pub fn adopt_bootstrap_data(
    data: &BootstrapData,
    ours: &CriticalSettings,
    tls_dir: &TlsDir,
) -> Result<()> {
    data.critical.check_matches(ours)?;
    write_cas(data, tls_dir)
}

/// Writes the CAs of `data` under `tls_dir`, after checking that every one is there and
/// parses (nothing is written otherwise).
pub fn write_cas(data: &BootstrapData, tls_dir: &TlsDir) -> Result<()> {
    let mut pairs = Vec::new();
    for (stem, _) in CLUSTER_CAS {
        let Some(pair) = data.cas.get(stem) else {
            if OPTIONAL_CLUSTER_CAS.contains(&stem) {
                tracing::warn!(
                    ca = stem,
                    "the bootstrap data lacks this CA: generating one"
                );
                continue;
            }
            bail!("the bootstrap data lacks the {stem} CA");
        };
        let files = CertAndKey {
            cert_pem: pair.cert.clone(),
            key_pem: pair.key.clone(),
        };
        crate::pki::CertAuthority::from_pem(files.clone())
            .with_context(|| format!("reading the {stem} CA of the bootstrap data"))?;
        pairs.push((stem, files));
    }
    crate::member::create_private_dir(&tls_dir.root.join("etcd"))?;
    for (stem, files) in pairs {
        write_pair(&tls_dir.stem(stem), &files)?;
    }
    Ok(())
}

/// Adds this server (`node_name`, reachable at `peer_url`) as a learner through the etcd API
/// of the cluster's members, removing a stale entry of the same node first; returns the
/// members as `name=peerURL` pairs for the initial cluster, this server included as `name`.
pub async fn add_self_as_learner(
    members: &[MemberInfo],
    etcd_client_tls: Arc<rustls::ClientConfig>,
    node_name: &str,
    name: &str,
    peer_url: &str,
) -> Result<Vec<(String, String)>> {
    let connector = etcd_api::tls::tls_connector(etcd_api::TokioNet, Some(etcd_client_tls));
    let endpoints: Vec<String> = members
        .iter()
        .filter(|member| !member.is_learner)
        .flat_map(|member| member.client_urls.clone())
        .collect();
    anyhow::ensure!(
        !endpoints.is_empty(),
        "the cluster lists no voting member with a client URL"
    );
    let channel = |endpoint: &str| -> Result<tonic::transport::Channel> {
        let endpoint = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .with_context(|| format!("client URL {endpoint}"))?
            .connect_timeout(REQUEST_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        Ok(connector(endpoint))
    };
    let deadline = Instant::now() + LEARNER_QUEUE_TIMEOUT;
    let mut last_error = None;
    loop {
        for endpoint in &endpoints {
            let mut client = ClusterClient::new(channel(endpoint)?);
            let answers = |url: &str| {
                let channel = channel(url);
                async move {
                    let Ok(channel) = channel else { return false };
                    let mut maintenance = MaintenanceClient::new(channel);
                    timeout(PROBE_TIMEOUT, maintenance.status(StatusRequest {}))
                        .await
                        .is_ok_and(|status| status.is_ok())
                }
            };
            match try_add(&mut client, node_name, name, peer_url, answers).await {
                Ok(members) => return Ok(members),
                Err(JoinAttempt::Refused(error)) => return Err(error),
                Err(JoinAttempt::Wait(reason)) => {
                    tracing::info!(reason, "waiting for another learner to be promoted");
                    last_error = Some(anyhow!(reason));
                    break;
                }
                Err(JoinAttempt::Failed(error)) => {
                    tracing::warn!(%endpoint, error = format!("{error:#}"), "adding this server failed");
                    last_error = Some(error);
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(last_error
                .unwrap_or_else(|| anyhow!("no member answered"))
                .context("adding this server to the cluster"));
        }
        sleep(LEARNER_QUEUE_POLL).await;
    }
}

enum JoinAttempt {
    /// Retry later: another learner is catching up.
    Wait(String),
    /// Retry on another member or later.
    Failed(anyhow::Error),
    /// Give up: retrying cannot help.
    Refused(anyhow::Error),
}

/// Adds this server as a learner through `client` unless it is listed already, first removing
/// the entries a rebuilt server left (same peer URL, or same node name and no longer answering
/// on its client URLs — `answers` probes one); a running member with this node name elsewhere
/// refuses the join. Returns the members as `(name, peer URL)` pairs.
async fn try_add<F, Fut>(
    client: &mut ClusterClient<tonic::transport::Channel>,
    node_name: &str,
    name: &str,
    peer_url: &str,
    answers: F,
) -> Result<Vec<(String, String)>, JoinAttempt>
where
    F: Fn(&str) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let listed = client
        .member_list(MemberListRequest { linearizable: true })
        .await
        .map_err(|status| JoinAttempt::Failed(anyhow!("member list: {}", status.message())))?
        .into_inner()
        .members;
    let prefix = format!("{node_name}-");
    let mine = listed
        .iter()
        .find(|member| member.peer_ur_ls.iter().any(|url| url == peer_url));
    let already_added = mine.is_some_and(|member| member.name.is_empty() || member.name == name);
    let mut members = listed.clone();
    if !already_added {
        // A rebuilt server: its old entry (same node name or same peer URL) goes first.
        let stale: Vec<_> = listed
            .iter()
            .filter(|member| {
                member.name.starts_with(&prefix)
                    || member.peer_ur_ls.iter().any(|url| url == peer_url)
            })
            .collect();
        for other in &stale {
            let elsewhere = !other.peer_ur_ls.iter().any(|url| url == peer_url);
            for url in other.client_ur_ls.iter().filter(|_| elsewhere) {
                if answers(url).await {
                    return Err(JoinAttempt::Refused(anyhow!(
                        "a running member of the cluster already has node name {node_name:?} \
                         ({} at {url}); give this server another --node-name",
                        other.name
                    )));
                }
            }
        }
        for stale in stale {
            tracing::info!(member = %stale.name, id = stale.id, "removing this node's stale member entry");
            client
                .member_remove(MemberRemoveRequest { id: stale.id })
                .await
                .map_err(|status| {
                    JoinAttempt::Failed(anyhow!(
                        "removing the stale member {}: {}",
                        stale.name,
                        status.message()
                    ))
                })?;
        }
        let added = client
            .member_add(MemberAddRequest {
                peer_ur_ls: vec![peer_url.to_string()],
                is_learner: true,
            })
            .await;
        match added {
            Ok(response) => {
                tracing::info!(peer_url, "added this server as a learner");
                members = response.into_inner().members;
            }
            Err(status) if status.message().contains("too many learner members") => {
                return Err(JoinAttempt::Wait(status.message().to_string()));
            }
            Err(status) => {
                return Err(JoinAttempt::Failed(anyhow!(
                    "member add: {}",
                    status.message()
                )));
            }
        }
    }
    Ok(members
        .into_iter()
        .flat_map(|member| {
            let is_me = member.peer_ur_ls.iter().any(|url| url == peer_url);
            let member_name = if is_me { name.to_string() } else { member.name };
            member
                .peer_ur_ls
                .into_iter()
                .map(move |url| (member_name.clone(), url))
        })
        .collect())
}

/// `https://HOST:PORT` → (HOST, PORT).
fn parse_https_url(url: &str) -> Result<(String, u16)> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("--server {url} is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        bail!("--server {url} must be an https:// URL (https://SERVER:6443)");
    }
    let host = uri
        .host()
        .ok_or_else(|| anyhow!("--server {url} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(6443)))
}

/// A client config that accepts any server certificate: for fetching `/cacerts`, whose
/// content is then checked against the token, and for `--etcd-s3-skip-ssl-verify`.
pub(crate) fn insecure_client_config() -> Result<rustls::ClientConfig> {
    let provider = crypto_provider();
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer { provider }))
            .with_no_client_auth(),
    )
}

#[derive(Debug)]
struct AcceptAnyServer {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
