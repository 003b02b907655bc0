//! The `Net` seam: the only place this crate makes sockets.
//!
//! Everything above it ([`crate::serve`]) is generic over the stream of accepted connections,
//! so the same server runs over real TCP in production ([`TokioNet`]) and over a simulated
//! network in deterministic simulation (turmoil, added by the simulation crate as another
//! [`Net`] implementation wrapping its streams in a type that implements tonic's
//! [`Connected`]). Outgoing connections (peers, the leader) are made through [`Net::connect`]
//! too: [`connector`] turns a `Net` into the [`Connector`] every gRPC client channel is built
//! with, so no other module ever touches a socket.
//!
//! Guarantees of [`TokioNet`]: accepted streams have `TCP_NODELAY` set (small gRPC frames are
//! not held back by Nagle's algorithm); an accept failure is reported to the server (which
//! logs it and goes on) and, unless it concerned only the one connection, the next accept
//! waits [`ACCEPT_BACKOFF`] so that running out of file descriptors does not spin a core.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

/// Pause before accepting again after a failure of the listening socket itself
/// (e.g. no file descriptors left).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A network that can listen for connections the gRPC server accepts.
pub trait Net: Send + Sync + 'static {
    /// One accepted connection.
    type Conn: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static;
    /// The accepted connections of one listener; dropping it stops listening.
    type Incoming: Stream<Item = io::Result<Self::Conn>> + Send + 'static;

    /// Binds `addr` and returns the stream of connections accepted on it.
    fn listen(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Incoming>> + Send;

    /// One outgoing connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Connects to `host:port`.
    fn connect(
        &self,
        host: String,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Builds a gRPC channel for an endpoint, connecting through a [`Net`].
pub type Connector = Arc<dyn Fn(Endpoint) -> Channel + Send + Sync>;

/// The [`Connector`] of `net`: channels connect lazily (and reconnect) through
/// [`Net::connect`], honouring the endpoint's connect timeout; `https://` URLs are refused
/// (see [`crate::tls::tls_connector`] for channels that encrypt).
pub fn connector<N: Net + Clone>(net: N) -> Connector {
    crate::tls::tls_connector(net, None)
}

/// The host (without IPv6 brackets) and port of `uri`; the scheme's port when none is given.
pub(crate) fn uri_host_port(uri: &Uri) -> io::Result<(String, u16)> {
    let host = uri
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no host in {uri}")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Ok((host, port))
}

/// The production network: tokio TCP sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Conn = TcpStream;
    type Incoming = TokioIncoming;
    type Stream = TcpStream;

    async fn connect(&self, host: String, port: u16) -> io::Result<TcpStream> {
        let stream = TcpStream::connect((host.as_str(), port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn listen(&self, addr: SocketAddr) -> io::Result<TokioIncoming> {
        let listener = TcpListener::bind(addr).await?;
        Ok(TokioIncoming {
            listener,
            backoff: None,
        })
    }
}

/// Connections accepted on a tokio TCP listener, with `TCP_NODELAY` set.
#[derive(Debug)]
pub struct TokioIncoming {
    listener: TcpListener,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl TokioIncoming {
    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Whether an accept error concerned only the connection being accepted, not the listener.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

impl Stream for TokioIncoming {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(backoff) = this.backoff.as_mut() {
            if backoff.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.backoff = None;
        }
        match this.listener.poll_accept(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok((stream, _peer))) => {
                Poll::Ready(Some(stream.set_nodelay(true).map(|()| stream)))
            }
            Poll::Ready(Err(err)) => {
                if !is_connection_error(&err) {
                    this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
                Poll::Ready(Some(Err(err)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn accepted_streams_have_nodelay_set() {
        let mut incoming = TokioNet
            .listen("127.0.0.1:0".parse().expect("literal address"))
            .await
            .expect("bind an ephemeral port");
        let addr = incoming.local_addr().expect("bound address");
        let _client = TcpStream::connect(addr)
            .await
            .expect("connect to the listener");
        let accepted = incoming
            .next()
            .await
            .expect("stream never ends")
            .expect("accept");
        assert!(accepted.nodelay().expect("read TCP_NODELAY"));
    }

    #[test]
    fn a_reset_connection_is_not_a_listener_failure() {
        assert!(is_connection_error(&io::Error::from(
            io::ErrorKind::ConnectionReset
        )));
        assert!(!is_connection_error(&io::Error::other(
            "too many open files"
        )));
    }
}
