//! The plain-HTTP metrics listener (k3s's etcd metrics port, 2381), as etcd serves its
//! `--listen-metrics-urls`:
//!
//! - `GET /metrics`: Prometheus text ([`crate::member_metrics`]);
//! - `GET /health`: `{"health":"true","reason":""}` (200) when a leader is known and a
//!   linearizable read point is reached within [`HEALTH_READ_TIMEOUT`]; otherwise
//!   `{"health":"false","reason":"..."}` with 503, as etcd answers;
//! - `GET /readyz`: `ok` (200) once the member serves clients, 503 before;
//! - `GET /livez`: `ok` (200) while the process runs;
//! - any other path: 404; any other method: 405.
//!
//! Guarantees: the listener is bound before the member catches up, so `/livez` and `/readyz`
//! answer during start-up; a request never waits longer than [`HEALTH_READ_TIMEOUT`]; every
//! connection is served until the shutdown signal.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use raftstore::node::NodeHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use etcd_api::grpc_metrics::GrpcMetrics;

use crate::http_response::{text, with_type};

/// k3s's port for etcd metrics.
pub const DEFAULT_METRICS_PORT: u16 = 2381;

/// How long `/health` waits for a linearizable read point.
pub const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// What the endpoints answer from.
#[derive(Clone)]
pub struct MetricsSource {
    pub handle: NodeHandle,
    pub grpc: Arc<GrpcMetrics>,
    /// True once the member serves clients.
    pub serving: watch::Receiver<bool>,
}

impl MetricsSource {
    async fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match request.uri().path() {
            "/metrics" => {
                let body = crate::member_metrics::render(&self.handle, &self.grpc);
                with_type(StatusCode::OK, crate::exposition::CONTENT_TYPE, body)
            }
            "/health" => self.health().await,
            "/readyz" if *self.serving.borrow() => text(StatusCode::OK, "ok"),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready: catching up\n"),
            "/livez" => text(StatusCode::OK, "ok"),
            _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        }
    }

    /// etcd's health check: no leader or no linearizable read point means unhealthy.
    async fn health(&self) -> Response<Full<Bytes>> {
        let unhealthy = if !*self.serving.borrow() {
            Some("NOT SERVING YET".to_string())
        } else if !self.handle.status().has_leader() {
            Some("RAFT NO LEADER".to_string())
        } else {
            match tokio::time::timeout(HEALTH_READ_TIMEOUT, self.handle.read_barrier()).await {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(format!("QGET ERROR:{error}")),
                Err(_) => Some("QGET ERROR:etcdserver: request timed out".to_string()),
            }
        };
        let (status, health, reason) = match unhealthy {
            None => (StatusCode::OK, "true", String::new()),
            Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, "false", reason),
        };
        let body = serde_json::json!({ "health": health, "reason": reason }).to_string();
        with_type(status, "application/json", body)
    }
}

/// Listens on every address of `addrs` (failing if one cannot be bound) and serves `source`
/// there until `stop` turns true.
pub async fn serve(
    source: MetricsSource,
    addrs: &[SocketAddr],
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for metrics on {addr}"))?;
        tracing::info!(%addr, "serving metrics and health over HTTP");
        tasks.push(tokio::spawn(accept(listener, source.clone(), stop.clone())));
    }
    Ok(tasks)
}

async fn accept(listener: TcpListener, source: MetricsSource, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "accepting a metrics connection failed");
                continue;
            }
        };
        let source = source.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let source = source.clone();
                async move { Ok::<_, Infallible>(source.answer(&request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "metrics connection ended with an error");
                    }
                    return;
                }
            }
            let _ = connection.await;
        });
    }
}
