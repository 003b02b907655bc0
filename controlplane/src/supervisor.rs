//! The supervisor API on the HTTPS port (6443), as k3s serves it to joining servers; the
//! Kubernetes API ([`crate::kube`]) shares the port and takes its own paths.
//!
//! - `GET /cacerts`: the cluster CA bundle, unauthenticated (a joiner checks its hash against
//!   the token before trusting anything else);
//! - `GET /ping`: `pong`; `GET /readyz`: `ok` once the member serves;
//! - `GET /v1-k3rs/server-bootstrap`: the cluster CAs with their keys and the critical
//!   settings, for basic auth `server:<token secret>` only;
//! - `GET /db/info`: the etcd member list (same auth);
//! - `POST /v1-k3rs/etcd-snapshot`: a snapshot operation of `k3rs etcd-snapshot` (same auth;
//!   a JSON body of at most 64 KiB, see [`crate::etcd_snapshot::api`]).
//!
//! With an external datastore (`--datastore-endpoint`) there is no embedded member: `/readyz`
//! is `ok` from the start, and the bootstrap, `/db/info` and snapshot endpoints answer `400`
//! with a message saying why (servers share the datastore instead of joining, and snapshots
//! are the datastore's own business).
//!
//! Guarantees: a wrong or missing secret gets `401` and nothing else; secrets are compared in
//! constant time; every connection is TLS (handshake bounded by
//! [`etcd_api::tls::HANDSHAKE_TIMEOUT`]) and served until the shutdown signal.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::etcd_snapshot::api::{SnapshotRequest, MAX_REQUEST_BYTES, SNAPSHOT_PATH};
use crate::etcd_snapshot::service::{ServiceError, SnapshotService};
use crate::http_response::{text, with_type};
use crate::kube::KubeApi;
use crate::pki::{read_pair, CertAndKey};
use crate::server_tls::{TlsDir, CLUSTER_CAS};
use crate::token::{Token, SERVER_USER};

/// Path of the bootstrap endpoint.
pub const BOOTSTRAP_PATH: &str = "/v1-k3rs/server-bootstrap";

/// What a joining server receives: the cluster's CAs and the settings it must share.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootstrapData {
    /// CA certificate and key by file stem under `server/tls` (`server-ca`, `etcd/peer-ca`...).
    pub cas: BTreeMap<String, PemPair>,
    pub critical: CriticalSettings,
}

/// A certificate and key in PEM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PemPair {
    pub cert: String,
    pub key: String,
}

/// Settings every server of a cluster must share; a joiner whose values differ is refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CriticalSettings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
}

impl CriticalSettings {
    /// Refuses `ours` unless it equals the cluster's, naming the first setting that differs.
    pub fn check_matches(&self, ours: &CriticalSettings) -> Result<()> {
        let pairs = [
            (
                "--heartbeat-interval",
                self.heartbeat_interval_ms.to_string(),
                ours.heartbeat_interval_ms.to_string(),
            ),
            (
                "--election-timeout",
                self.election_timeout_ms.to_string(),
                ours.election_timeout_ms.to_string(),
            ),
            (
                "--max-request-bytes",
                self.max_request_bytes.to_string(),
                ours.max_request_bytes.to_string(),
            ),
            (
                "--max-txn-ops",
                self.max_txn_ops.to_string(),
                ours.max_txn_ops.to_string(),
            ),
        ];
        for (flag, cluster, here) in pairs {
            anyhow::ensure!(
                cluster == here,
                "critical configuration value mismatch: {flag} is {cluster} in the cluster \
                 but {here} here; start this server with {flag}={cluster}"
            );
        }
        Ok(())
    }
}

/// One member as `/db/info` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    pub name: String,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner")]
    pub is_learner: bool,
}

/// `/db/info`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DbInfo {
    pub members: Vec<MemberInfo>,
}

/// What the supervisor serves from.
pub struct Supervisor {
    pub tls_dir: TlsDir,
    pub token: Token,
    pub critical: CriticalSettings,
    /// The running member, once it serves.
    pub member: watch::Receiver<Option<raftstore::node::NodeHandle>>,
    /// Snapshot operations of this server.
    pub snapshots: Arc<SnapshotService>,
    /// The server uses an external datastore: no member, nothing to join or snapshot.
    pub external_datastore: bool,
}

/// What the member-only endpoints answer on a server with an external datastore.
const NO_EMBEDDED_JOIN: &str = "this server uses an external datastore (--datastore-endpoint) \
    and has no embedded etcd to join: start the other server with the same \
    --datastore-endpoint (and --token) instead of --server\n";
const NO_EMBEDDED_SNAPSHOTS: &str = "etcd snapshots are for the embedded etcd: this server uses \
    an external datastore (--datastore-endpoint); take snapshots with that datastore's own \
    tools (etcdctl snapshot save)\n";

impl Supervisor {
    /// The CAs (read from `server/tls`) and critical settings a joining server needs.
    pub fn bootstrap_data(&self) -> Result<BootstrapData> {
        let mut cas = BTreeMap::new();
        for (stem, _) in CLUSTER_CAS {
            let CertAndKey { cert_pem, key_pem } = read_pair(&self.tls_dir.stem(stem))?;
            cas.insert(
                stem.to_string(),
                PemPair {
                    cert: cert_pem,
                    key: key_pem,
                },
            );
        }
        Ok(BootstrapData {
            cas,
            critical: self.critical.clone(),
        })
    }

    fn is_authorized(&self, request: &Request<Incoming>) -> bool {
        let Some(header) = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
        else {
            return false;
        };
        let Some(encoded) = header.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let expected = format!("{SERVER_USER}:{}", self.token.secret);
        constant_time_eq(&decoded, expected.as_bytes())
    }

    /// Answers `request`: the snapshot operations (which read a body and take time) here,
    /// everything else in [`Self::answer`].
    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() != SNAPSHOT_PATH {
            return self.answer(&request);
        }
        if request.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        if !self.is_authorized(&request) {
            return unauthorized();
        }
        if self.external_datastore {
            return text(StatusCode::BAD_REQUEST, NO_EMBEDDED_SNAPSHOTS);
        }
        let body = match Limited::new(request.into_body(), MAX_REQUEST_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(error) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the request: {error}\n"),
                );
            }
        };
        let operation: SnapshotRequest = match serde_json::from_slice(&body) {
            Ok(operation) => operation,
            Err(error) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("not a snapshot operation: {error}\n"),
                );
            }
        };
        match self.snapshots.answer(operation).await {
            Ok(response) => json(&response).unwrap_or_else(internal),
            Err(error) => {
                let status = match &error {
                    ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
                    ServiceError::NotServing => StatusCode::SERVICE_UNAVAILABLE,
                    ServiceError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                text(status, &format!("{error}\n"))
            }
        }
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        let handle = self.member.borrow().clone();
        match request.uri().path() {
            "/cacerts" => match self.tls_dir.cluster_ca_pem() {
                Ok(pem) => with_type(StatusCode::OK, "text/plain", pem),
                Err(error) => internal(error),
            },
            "/ping" => text(StatusCode::OK, "pong"),
            "/readyz" if self.external_datastore => text(StatusCode::OK, "ok"),
            "/readyz" => match handle {
                Some(_) => text(StatusCode::OK, "ok"),
                None => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            },
            BOOTSTRAP_PATH | "/db/info" if !self.is_authorized(request) => unauthorized(),
            BOOTSTRAP_PATH | "/db/info" if self.external_datastore => {
                text(StatusCode::BAD_REQUEST, NO_EMBEDDED_JOIN)
            }
            BOOTSTRAP_PATH => match self.bootstrap_data().and_then(|data| json(&data)) {
                Ok(response) => response,
                Err(error) => internal(error),
            },
            "/db/info" => match handle {
                None => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
                Some(handle) => {
                    let members = handle
                        .members()
                        .into_iter()
                        .map(|member| MemberInfo {
                            id: member.id,
                            name: member.name,
                            peer_urls: member.peer_ur_ls,
                            client_urls: member.client_ur_ls,
                            is_learner: member.is_learner,
                        })
                        .collect();
                    json(&DbInfo { members }).unwrap_or_else(internal)
                }
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// Serves `supervisor` and the Kubernetes API `kube` (when enabled) on `addrs` until `stop`
/// turns true.
pub async fn serve(
    supervisor: Arc<Supervisor>,
    kube: Option<Arc<KubeApi>>,
    addrs: &[SocketAddr],
    tls: Arc<rustls::ServerConfig>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    use etcd_api::Net as _;
    let mut tasks = Vec::new();
    for addr in addrs {
        let incoming = etcd_api::TokioNet
            .listen(*addr)
            .await
            .with_context(|| format!("listening for the supervisor API on {addr}"))?;
        let connections = etcd_api::tls::accept_tls(incoming, tls.clone());
        let supervisor = supervisor.clone();
        let kube = kube.clone();
        let mut stop = stop.clone();
        tracing::info!(%addr, "supervisor and Kubernetes API listening");
        let connections_task = async move {
            let mut connections = std::pin::pin!(connections);
            loop {
                let next = tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop) => return,
                    next = connections.next() => next,
                };
                let Some(Ok(conn)) = next else { return };
                let supervisor = supervisor.clone();
                let kube = kube.clone();
                let user = Arc::new(
                    kube.as_ref()
                        .and_then(|kube| kube.authenticate(conn.peer_certificates().as_deref())),
                );
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let supervisor = supervisor.clone();
                        let kube = kube.clone();
                        let user = user.clone();
                        async move {
                            let response = match &kube {
                                Some(kube) if crate::kube::is_api_path(request.uri().path()) => {
                                    kube.respond(request, user.as_ref().as_ref()).await
                                }
                                _ => supervisor.respond(request).await.map(BodyExt::boxed),
                            };
                            Ok::<_, Infallible>(response)
                        }
                    });
                    if let Err(error) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), service)
                        .await
                    {
                        tracing::debug!(%error, "supervisor connection ended with an error");
                    }
                });
            }
        };
        tasks.push(tokio::spawn(connections_task));
    }
    Ok(tasks)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Basic realm=\"k3rs\""),
    );
    response
}

fn json<T: Serialize>(value: &T) -> Result<Response<Full<Bytes>>> {
    let body = serde_json::to_vec(value).context("encoding JSON")?;
    Ok(with_type(StatusCode::OK, "application/json", body))
}

fn internal(error: anyhow::Error) -> Response<Full<Bytes>> {
    tracing::warn!(error = format!("{error:#}"), "supervisor request failed");
    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
}
