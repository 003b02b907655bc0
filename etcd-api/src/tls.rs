//! TLS for the client and peer ports, above the [`Net`] seam: accepted connections are
//! handshaken before the gRPC server sees them, and channels to `https://` peers are encrypted.
//!
//! Guarantees:
//! - Handshakes run concurrently, each under [`HANDSHAKE_TIMEOUT`]: a slow or silent client
//!   never holds up the accept loop, and a failed handshake (plaintext client, unknown or
//!   expired certificate) closes only that connection, logged with the client's address.
//! - Both sides offer ALPN `h2`, as gRPC requires.
//! - Accepting stops (and the listener is closed) once the returned stream is dropped.
//! - A channel to an `https://` URL is always encrypted with the configured client config; an
//!   `https://` URL without one is refused rather than dialled in plaintext.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Endpoint, Uri};

use crate::net::{uri_host_port, Connector, Net};

/// Longest a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the gRPC server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// The ALPN protocol of gRPC.
const ALPN_H2: &[u8] = b"h2";

/// Sets the ALPN protocols gRPC needs on a server config.
pub fn server_config_for_grpc(mut config: rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Arc::new(config)
}

/// Sets the ALPN protocols gRPC needs on a client config.
pub fn client_config_for_grpc(mut config: rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Arc::new(config)
}

/// One accepted connection after its TLS handshake.
pub struct TlsConn<IO> {
    stream: tokio_rustls::server::TlsStream<IO>,
    remote: Option<SocketAddr>,
}

impl<IO> TlsConn<IO> {
    /// The certificate chain the client presented in the handshake (leaf first), if any.
    pub fn peer_certificates(&self) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
        self.stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|certs| certs.iter().map(|cert| cert.clone().into_owned()).collect())
    }
}

impl<IO> Connected for TlsConn<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: None,
            remote_addr: self.remote,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsConn<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsConn<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The connections of `incoming` after a successful TLS handshake with `config`.
///
/// `incoming`'s own errors are logged and skipped (the listener applies its own back-off).
pub fn accept_tls<I, IO>(
    incoming: I,
    config: Arc<rustls::ServerConfig>,
) -> impl Stream<Item = io::Result<TlsConn<IO>>> + Send + 'static
where
    I: Stream<Item = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected<ConnectInfo = TcpConnectInfo> + Unpin + Send + 'static,
{
    let (accepted_tx, accepted_rx) = mpsc::channel(ACCEPTED_BACKLOG);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let next = tokio::select! {
                biased;
                () = accepted_tx.closed() => return,
                next = incoming.next() => next,
            };
            let conn = match next {
                None => return,
                Some(Ok(conn)) => conn,
                Some(Err(error)) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    continue;
                }
            };
            let remote = conn.connect_info().remote_addr;
            let acceptor = acceptor.clone();
            let accepted_tx = accepted_tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
                    Ok(Ok(stream)) => {
                        let _ = accepted_tx.send(Ok(TlsConn { stream, remote })).await;
                    }
                    Ok(Err(error)) => {
                        tracing::info!(?remote, %error, "TLS handshake refused");
                    }
                    Err(_) => tracing::info!(?remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(accepted_rx)
}

/// A [`Connector`] whose channels connect through `net`, with TLS (`client`) for `https://`
/// URLs and in plaintext for `http://` ones.
pub fn tls_connector<N: Net + Clone>(
    net: N,
    client: Option<Arc<rustls::ClientConfig>>,
) -> Connector {
    Arc::new(move |endpoint: Endpoint| {
        let net = net.clone();
        let client = client.clone().map(TlsConnector::from);
        endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
            let net = net.clone();
            let client = client.clone();
            async move {
                let (host, port) = uri_host_port(&uri)?;
                let stream = net.connect(host.clone(), port).await?;
                if uri.scheme_str() != Some("https") {
                    return Ok::<_, io::Error>(TokioIo::new(EitherStream::Plain(stream)));
                }
                let Some(client) = client else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{uri} needs TLS, but no peer certificate is configured"),
                    ));
                };
                let name = ServerName::try_from(host)
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
                let stream = client.connect(name, stream).await?;
                Ok(TokioIo::new(EitherStream::Tls(Box::new(stream))))
            }
        }))
    })
}

/// An outgoing connection, encrypted or not.
enum EitherStream<S> {
    Plain(S),
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for EitherStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EitherStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            EitherStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for EitherStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            EitherStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            EitherStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EitherStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            EitherStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EitherStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            EitherStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
