//! `TurmoilNet`: etcd-api's [`Net`] seam over turmoil's simulated TCP.
//!
//! Every socket of a simulated member or client is made here, so all its traffic goes through
//! turmoil's network (latency, holds, crashes) and its clock. Host names (`m1`, `c2`, ...) are
//! resolved by turmoil's DNS. Nothing binds a real socket.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use etcd_api::Net;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use turmoil::net::{TcpListener, TcpStream};

/// The simulated network.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilNet;

/// An accepted simulated connection (a turmoil stream tonic's server can take).
#[derive(Debug)]
pub struct SimConn(TcpStream);

/// Where an accepted connection came from.
#[derive(Debug, Clone, Copy)]
pub struct SimConnectInfo {
    pub remote_addr: Option<SocketAddr>,
}

impl Connected for SimConn {
    type ConnectInfo = SimConnectInfo;

    fn connect_info(&self) -> SimConnectInfo {
        SimConnectInfo {
            remote_addr: self.0.peer_addr().ok(),
        }
    }
}

impl AsyncRead for SimConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// The connections accepted on one simulated listener.
pub type SimIncoming = Pin<Box<dyn Stream<Item = io::Result<SimConn>> + Send>>;

impl Net for TurmoilNet {
    type Conn = SimConn;
    type Incoming = SimIncoming;
    type Stream = TcpStream;

    async fn listen(&self, addr: SocketAddr) -> io::Result<SimIncoming> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Box::pin(futures::stream::unfold(
            listener,
            |listener| async move {
                let accepted = listener.accept().await.map(|(stream, _)| SimConn(stream));
                Some((accepted, listener))
            },
        )))
    }

    async fn connect(&self, host: String, port: u16) -> io::Result<TcpStream> {
        TcpStream::connect((host, port)).await
    }
}
