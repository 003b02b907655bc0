//! A client of an external etcd (`--datastore-endpoint`) over the etcd v3 gRPC API, with the
//! tonic stubs `etcd-api` generates: KV range / txn / delete-range and watch streams.
//!
//! Guarantees:
//! - Endpoints are tried in turn: a call goes to the endpoint that answered last; when that
//!   one cannot be reached (connection refused, TLS failure, no answer within
//!   [`REQUEST_TIMEOUT`], or etcd's own `Unavailable`), the next one is tried, each at most
//!   once per call. An answer of etcd (including its errors) is never retried elsewhere.
//! - etcd's error statuses come back unchanged ([`RemoteError::Etcd`]), so callers match on
//!   etcd's texts as Go clients do; when no endpoint answers, [`RemoteError::Unreachable`]
//!   names each endpoint with its error chain, and TLS failures say which flag to check.
//! - A retried write may have been applied by the endpoint that failed to answer; the kube
//!   layer's writes are conditional transactions (or idempotent prefix deletes), so a retry
//!   is never applied twice: at worst the retried create of an object that was written is
//!   answered `AlreadyExists` (etcd's Go client retries writes only when they were not sent;
//!   this one cannot tell).
//! - Answers and watch responses of any size are taken (no 4 MiB gRPC limit), as
//!   kube-apiserver's etcd client takes them.
//! - A watch is one bidirectional stream to one endpoint; its end (etcd gone, stream reset)
//!   ends the watch with a `Canceled` message, as kube-apiserver's clients expect a watch to
//!   end at any time and resume it.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_api::pb::etcdserverpb::kv_client::KvClient;
use etcd_api::pb::etcdserverpb::watch_client::WatchClient;
use etcd_api::pb::etcdserverpb::{
    watch_request, DeleteRangeRequest, DeleteRangeResponse, RangeRequest, RangeResponse,
    TxnRequest, TxnResponse, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use raftstore::watch::{Delivery, WatchMessage};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Longest one unary call may take on one endpoint before the next is tried.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a TCP (and TLS) connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests a watch stream may have waiting to be sent (its create and progress requests).
const WATCH_REQUESTS: usize = 8;

/// Why a call failed.
#[derive(Debug, Clone)]
pub enum RemoteError {
    /// etcd answered with this error status (etcd's code and text).
    Etcd(Status),
    /// No endpoint answered: each endpoint with its error; `tls_refused` when a TLS
    /// handshake failed (a setting to fix, not an outage to wait out).
    Unreachable { failures: String, tls_refused: bool },
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Etcd(status) => write!(f, "{}", status.message()),
            RemoteError::Unreachable { failures, .. } => {
                write!(f, "the datastore is unavailable: {failures}")
            }
        }
    }
}

impl std::error::Error for RemoteError {}

/// The external etcd, shared by every user of the server (cheap to clone).
#[derive(Clone)]
pub struct RemoteEtcd {
    inner: Arc<Inner>,
}

struct Inner {
    /// Each endpoint's URL and its lazily connected channel.
    endpoints: Vec<(String, Channel)>,
    /// The TLS client configuration of `https://` endpoints.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The endpoint that answered last.
    current: AtomicUsize,
}

impl fmt::Debug for RemoteEtcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<&str> = self
            .inner
            .endpoints
            .iter()
            .map(|(url, _)| url.as_str())
            .collect();
        f.debug_struct("RemoteEtcd")
            .field("endpoints", &urls)
            .finish()
    }
}

impl RemoteEtcd {
    /// A client of `urls` (`http://` or `https://host:port`), encrypting with `tls` (needed
    /// for `https://` URLs). Nothing is dialled until the first call.
    pub fn new(urls: &[String], tls: Option<Arc<rustls::ClientConfig>>) -> anyhow::Result<Self> {
        anyhow::ensure!(!urls.is_empty(), "no datastore endpoint given");
        let connector = etcd_api::tls::tls_connector(etcd_api::TokioNet, tls.clone());
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in urls {
            let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
                .map_err(|error| anyhow::anyhow!("datastore endpoint {url}: {error}"))?
                .connect_timeout(CONNECT_TIMEOUT)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10));
            endpoints.push((url.clone(), connector(endpoint)));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints,
                tls,
                current: AtomicUsize::new(0),
            }),
        })
    }

    /// The endpoints' URLs, comma-separated.
    pub fn urls(&self) -> String {
        let urls: Vec<&str> = self
            .inner
            .endpoints
            .iter()
            .map(|(url, _)| url.as_str())
            .collect();
        urls.join(",")
    }

    /// Runs `call` on the endpoints in turn, from the one that answered last, until one
    /// answers.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, RemoteError>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let count = self.inner.endpoints.len();
        let first = self.inner.current.load(Ordering::Relaxed) % count;
        let mut failures = Vec::new();
        let mut tls_refused = false;
        for offset in 0..count {
            let index = (first + offset) % count;
            let (url, channel) = &self.inner.endpoints[index];
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, call(channel.clone())).await;
            match outcome {
                Ok(Ok(answer)) => {
                    self.inner.current.store(index, Ordering::Relaxed);
                    return Ok(answer);
                }
                Ok(Err(status)) if !is_unreachable(&status) => {
                    self.inner.current.store(index, Ordering::Relaxed);
                    return Err(RemoteError::Etcd(status));
                }
                Ok(Err(status)) => {
                    tls_refused |= tls_error(&status).is_some();
                    failures.push(format!("{url}: {}", describe(&status)));
                }
                Err(_) => failures.push(format!(
                    "{url}: no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )),
            }
            tracing::debug!(endpoint = %url, "datastore endpoint failed; trying the next one");
        }
        Err(RemoteError::Unreachable {
            failures: failures.join("; "),
            tls_refused,
        })
    }

    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, RemoteError> {
        self.call(|channel| {
            let request = request.clone();
            async move {
                kv(channel)
                    .range(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await
    }

    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, RemoteError> {
        self.call(|channel| {
            let request = request.clone();
            async move {
                kv(channel)
                    .txn(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await
    }

    pub async fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, RemoteError> {
        self.call(|channel| {
            let request = request.clone();
            async move {
                kv(channel)
                    .delete_range(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await
    }

    /// Opens a watch stream on the first endpoint that answers and creates `create` on it.
    pub async fn watch(&self, create: WatchCreateRequest) -> Result<RemoteWatch, RemoteError> {
        self.call(|channel| {
            let create = create.clone();
            async move {
                let (requests, receiver) = mpsc::channel(WATCH_REQUESTS);
                let first = WatchRequest {
                    request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
                };
                requests
                    .send(first)
                    .await
                    .map_err(|_| Status::internal("the watch request queue closed"))?;
                let responses = WatchClient::new(channel)
                    .max_decoding_message_size(usize::MAX)
                    .watch(ReceiverStream::new(receiver))
                    .await?
                    .into_inner();
                Ok(RemoteWatch {
                    requests,
                    responses,
                })
            }
        })
        .await
    }
}

impl RemoteEtcd {
    /// Why the TLS session with an `https://` endpoint fails, if it does: with TLS 1.3 a
    /// server refuses a client certificate only after the handshake, which gRPC reports as a
    /// bare transport error, so this opens a session itself, sends the HTTP/2 preface and
    /// reads the server's answer (bounded by [`CONNECT_TIMEOUT`] per step).
    pub async fn tls_refusal(&self) -> Option<String> {
        let tls = self.inner.tls.clone()?;
        for (url, _) in &self.inner.endpoints {
            if let Some(reason) = tls_probe(url, tls.clone()).await {
                return Some(format!("{url}: {reason}"));
            }
        }
        None
    }
}

/// The TLS error of one session with the `https://` endpoint `url`, if any.
async fn tls_probe(url: &str, tls: Arc<rustls::ClientConfig>) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = url.strip_prefix("https://")?;
    let uri: tonic::transport::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).ok()?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority))
        .await
        .ok()?
        .ok()?;
    let tls_text = |error: &std::io::Error| {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(|tls| with_hint(tls.to_string()))
    };
    let connector = tokio_rustls::TlsConnector::from(tls);
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return tls_text(&error),
        Err(_) => return None,
    };
    let answered = tokio::time::timeout(CONNECT_TIMEOUT, async move {
        // The HTTP/2 client preface and an empty SETTINGS frame; a gRPC server answers with
        // its own SETTINGS.
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await?;
        stream.flush().await?;
        let mut buffer = [0u8; 64];
        stream.read(&mut buffer).await
    })
    .await;
    match answered {
        Ok(Ok(read)) if read > 0 => None,
        Ok(Err(error)) if tls_text(&error).is_some() => tls_text(&error),
        // With TLS 1.3 a server that refuses the client's certificate does so after the
        // handshake and may just close the session.
        Ok(_) => Some(with_hint(
            "the TLS session was closed right after the handshake (alert or no answer)".to_string(),
        )),
        Err(_) => None,
    }
}

/// A TLS error's text with the flags that decide it.
fn with_hint(tls: String) -> String {
    if tls.contains("invalid peer certificate") {
        format!("{tls} (the datastore's certificate is not signed by --datastore-cafile)")
    } else if tls.contains("alert") {
        format!(
            "{tls} (the datastore refused this client: check --datastore-certfile and \
             --datastore-keyfile)"
        )
    } else {
        tls
    }
}

/// A KV client that takes answers of any size, as kube-apiserver's etcd client does (tonic's
/// default limit, 4 MiB, would refuse a large list).
fn kv(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// Whether `status` says the endpoint could not be reached or cannot serve now (so another
/// endpoint may), rather than etcd refusing the request.
fn is_unreachable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        // Statuses made on this side from a transport failure carry it as their source;
        // those etcd sent never do.
        Code::Unknown | Code::Internal | Code::Cancelled => {
            std::error::Error::source(status).is_some()
        }
        _ => false,
    }
}

/// The rustls error somewhere in `status`'s sources, if any.
fn tls_error(status: &Status) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(tls) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        source = error.source();
    }
    None
}

/// `status` with its error chain, and for a TLS failure the flags that decide it.
pub fn describe(status: &Status) -> String {
    let mut text = status.message().to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        let part = error.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = error.source();
    }
    if let Some(tls) = tls_error(status) {
        let hinted = with_hint(tls.clone());
        match text.find(&tls) {
            Some(at) => text.replace_range(at..at + tls.len(), &hinted),
            None => {
                text.push_str(": ");
                text.push_str(&hinted);
            }
        }
    }
    text
}

/// One watch on the external etcd: its messages as the embedded hub's [`Delivery`]s.
pub struct RemoteWatch {
    requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
}

impl RemoteWatch {
    /// The next message; a `Canceled` one (watch id −1) once the stream ended.
    pub async fn next(&mut self) -> Delivery {
        let response = match self.responses.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return ended(0),
            Err(status) => {
                tracing::info!(error = %describe(&status), "a datastore watch ended");
                return ended(0);
            }
        };
        let revision = response.header.as_ref().map_or(0, |header| header.revision);
        let watch_id = response.watch_id;
        let message = if response.created && response.canceled {
            WatchMessage::Refused {
                reason: response.cancel_reason,
            }
        } else if response.created {
            WatchMessage::Created { watch_id }
        } else if response.compact_revision > 0 {
            WatchMessage::Compacted {
                watch_id,
                compact_revision: response.compact_revision,
            }
        } else if response.canceled {
            WatchMessage::Canceled { watch_id }
        } else if response.events.is_empty() {
            WatchMessage::Progress { watch_id }
        } else {
            WatchMessage::Events {
                watch_id,
                events: response.events,
            }
        };
        Delivery { revision, message }
    }

    /// Asks etcd for a progress notification (false if the stream is gone or busy).
    pub fn request_progress(&self) -> bool {
        self.requests
            .try_send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::ProgressRequest(
                    WatchProgressRequest {},
                )),
            })
            .is_ok()
    }
}

fn ended(revision: i64) -> Delivery {
    Delivery {
        revision,
        message: WatchMessage::Canceled { watch_id: -1 },
    }
}
