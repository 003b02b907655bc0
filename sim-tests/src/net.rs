//! `TurmoilNet`: etcd-api's [`Net`] seam over turmoil's simulated TCP.
//!
//! Every socket of a simulated member or client is made here, so all its traffic goes through
//! turmoil's network (latency, holds, crashes) and its clock. Host names (`m1`, `c2`, ...) are
//! resolved by turmoil's DNS. Nothing binds a real socket.
//!
//! One-way cuts: turmoil 0.7 can only hold a link in both directions (its one-way partition
//! drops, which its TCP does not survive), so the direction is cut here, at the sockets.
//! While [`cut_oneway`]`(a, b)` holds, every socket of host `a` connected to host `b` —
//! dialled or accepted — accepts no more bytes to write (nor its shutdown): its writer waits,
//! re-checking every [`CUT_RECHECK`] of simulated time, as a TCP sender retransmitting into
//! a dead path would, and its bytes flow once [`heal_oneway`] ends the cut. Bytes from `b` to
//! `a` keep flowing. The cuts live in the simulating thread (turmoil runs every host on it),
//! so concurrent simulations on other threads do not see them.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use etcd_api::Net;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use turmoil::net::{TcpListener, TcpStream};

/// The simulated network.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilNet;

/// How often a writer held by a one-way cut looks again (simulated time).
pub const CUT_RECHECK: Duration = Duration::from_millis(10);

thread_local! {
    /// The directed (from, to) host pairs whose bytes are held.
    static CUTS: RefCell<BTreeSet<(IpAddr, IpAddr)>> = const { RefCell::new(BTreeSet::new()) };
}

/// Holds every byte host `from` writes to host `to` until [`heal_oneway`].
pub fn cut_oneway(from: IpAddr, to: IpAddr) {
    CUTS.with(|cuts| cuts.borrow_mut().insert((from, to)));
}

/// Ends every one-way cut: held writers write again.
pub fn heal_oneway() {
    CUTS.with(|cuts| cuts.borrow_mut().clear());
}

fn is_cut(from: IpAddr, to: IpAddr) -> bool {
    CUTS.with(|cuts| cuts.borrow().contains(&(from, to)))
}

/// A simulated connection, dialled or accepted (a turmoil stream tonic can take), whose
/// writes wait while a one-way cut holds its direction.
#[derive(Debug)]
pub struct SimConn {
    stream: TcpStream,
    /// (this host, the peer), when known.
    route: Option<(IpAddr, IpAddr)>,
    recheck: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SimConn {
    fn new(stream: TcpStream) -> Self {
        let route = match (stream.local_addr(), stream.peer_addr()) {
            (Ok(local), Ok(peer)) => Some((local.ip(), peer.ip())),
            _ => None,
        };
        Self {
            stream,
            route,
            recheck: None,
        }
    }

    /// Ready once no cut holds this connection's outgoing direction.
    fn poll_uncut(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.route {
                Some((from, to)) if is_cut(from, to) => {}
                _ => {
                    self.recheck = None;
                    return Poll::Ready(());
                }
            }
            let recheck = self
                .recheck
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_RECHECK)));
            ready!(recheck.as_mut().poll(cx));
            self.recheck = None;
        }
    }
}

/// Where an accepted connection came from.
#[derive(Debug, Clone, Copy)]
pub struct SimConnectInfo {
    pub remote_addr: Option<SocketAddr>,
}

impl Connected for SimConn {
    type ConnectInfo = SimConnectInfo;

    fn connect_info(&self) -> SimConnectInfo {
        SimConnectInfo {
            remote_addr: self.stream.peer_addr().ok(),
        }
    }
}

impl AsyncRead for SimConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_uncut(cx));
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_uncut(cx));
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// The connections accepted on one simulated listener.
pub type SimIncoming = Pin<Box<dyn Stream<Item = io::Result<SimConn>> + Send>>;

impl Net for TurmoilNet {
    type Conn = SimConn;
    type Incoming = SimIncoming;
    type Stream = SimConn;

    async fn listen(&self, addr: SocketAddr) -> io::Result<SimIncoming> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Box::pin(futures::stream::unfold(
            listener,
            |listener| async move {
                let accepted = listener
                    .accept()
                    .await
                    .map(|(stream, _)| SimConn::new(stream));
                Some((accepted, listener))
            },
        )))
    }

    async fn connect(&self, host: String, port: u16) -> io::Result<SimConn> {
        TcpStream::connect((host, port)).await.map(SimConn::new)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use futures::StreamExt;
    use parking_lot::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// (what, simulated time) of each byte a host received.
    type Arrivals = Arc<Mutex<Vec<(&'static str, Duration)>>>;

    fn arrived(arrivals: &Arrivals, what: &'static str) {
        arrivals
            .lock()
            .push((what, turmoil::sim_elapsed().unwrap_or_default()));
    }

    #[test]
    fn a_one_way_cut_holds_one_direction_until_it_heals() -> turmoil::Result {
        heal_oneway();
        let mut sim = turmoil::Builder::new().build();
        let arrivals = Arrivals::default();
        let server_arrivals = arrivals.clone();
        sim.host("server", move || {
            let arrivals = server_arrivals.clone();
            async move {
                let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9000));
                let mut incoming = TurmoilNet.listen(address).await?;
                if let Some(conn) = incoming.next().await {
                    let mut conn = conn?;
                    conn.read_u8().await?;
                    arrived(&arrivals, "client's byte at the server");
                    conn.write_all(b"s").await?;
                }
                Ok(())
            }
        });
        let client_arrivals = arrivals.clone();
        sim.client("client", async move {
            let mut conn = TurmoilNet.connect("server".to_string(), 9000).await?;
            conn.write_all(b"c").await?;
            conn.read_u8().await?;
            arrived(&client_arrivals, "server's byte at the client");
            Ok(())
        });
        cut_oneway(sim.lookup("server"), sim.lookup("client"));
        let cut_for = Duration::from_secs(1);
        for _ in 0..10_000 {
            if sim.elapsed() >= cut_for {
                break;
            }
            sim.step()?;
        }
        assert_eq!(
            arrivals
                .lock()
                .iter()
                .map(|(what, _)| *what)
                .collect::<Vec<_>>(),
            ["client's byte at the server"],
            "the client's bytes flow while the server's are held"
        );
        heal_oneway();
        sim.run()?;
        let arrivals = arrivals.lock();
        assert_eq!(arrivals.len(), 2, "{arrivals:?}");
        assert!(arrivals[1].1 >= cut_for, "{arrivals:?}");
        Ok(())
    }
}
