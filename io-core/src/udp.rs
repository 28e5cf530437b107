//! [`UdpSocket`]: UDP with owned buffers, written once over op submission.

use std::fmt;
use std::io;
use std::net::{self, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use crate::addr::{first_that_works, resolve, ToAddrs};
use crate::fs::missing_output;
use crate::op::{Handle, Op, SocketOptions};
use crate::Cx;

/// A UDP socket: datagrams sent to and received from any address, or — once
/// [`connect`](UdpSocket::connect)ed — to and from one peer.
///
/// Each send is one datagram; each receive takes one, truncated to the buffer's capacity (the
/// rest of a longer datagram is discarded, as `recv(2)` does). Buffers are owned: handed to the
/// backend and given back with the result.
///
/// ```
/// use io_core::UdpSocket;
///
/// let got = io_blocking::BlockingIo::new()
///     .run(|cx| async move {
///         let out = async {
///             let a = UdpSocket::bind(&cx, "127.0.0.1:0").await?;
///             let b = UdpSocket::bind(&cx, "127.0.0.1:0").await?;
///             let (sent, _) = a.send_to(b"ping".to_vec(), b.local_addr()?).await;
///             sent?;
///             let (from, buf) = b.recv_from(Vec::with_capacity(64)).await;
///             let (n, from) = from?;
///             assert_eq!(from, a.local_addr()?);
///             Ok::<_, std::io::Error>(buf[..n].to_vec())
///         };
///         Ok(out.await)
///     })
///     .unwrap()
///     .unwrap();
/// assert_eq!(got, b"ping");
/// ```
pub struct UdpSocket {
    cx: Cx,
    socket: Handle,
}

impl UdpSocket {
    /// Binds to `addr` (port 0 picks a free port; a host name is looked up, each address
    /// tried in turn).
    pub async fn bind(cx: &Cx, addr: impl ToAddrs) -> io::Result<UdpSocket> {
        UdpSocket::bind_with(cx, addr, SocketOptions::udp()).await
    }

    /// Binds to `addr` with `options` (`SO_REUSEADDR`, `SO_REUSEPORT`; the backlog is unused).
    pub async fn bind_with(
        cx: &Cx,
        addr: impl ToAddrs,
        options: SocketOptions,
    ) -> io::Result<UdpSocket> {
        first_that_works(cx, addr, |addr| async move {
            let done = cx
                .submit(Op::BindUdp {
                    addr,
                    options,
                    socket: None,
                })
                .await;
            done.result?;
            match done.op {
                Op::BindUdp {
                    socket: Some(socket),
                    ..
                } => Ok(UdpSocket {
                    cx: cx.clone(),
                    socket,
                }),
                op => Err(missing_output(&op)),
            }
        })
        .await
    }

    /// Adopts a socket bound elsewhere (with std, or inherited); `cx`'s backend serves it.
    pub fn from_std(cx: &Cx, socket: net::UdpSocket) -> UdpSocket {
        let socket = Handle::new(socket);
        cx.io().adopt(&socket);
        UdpSocket {
            cx: cx.clone(),
            socket,
        }
    }

    /// Connects the socket to `addr`: [`send`](UdpSocket::send) goes there, and
    /// [`recv`](UdpSocket::recv) takes datagrams only from there. A name is looked up first
    /// (its first address is used).
    pub async fn connect(&self, addr: impl ToAddrs) -> io::Result<()> {
        let addr = resolve(&self.cx, addr.to_target()?).await?[0];
        self.cx
            .submit(Op::ConnectUdp {
                socket: self.socket.clone(),
                addr,
            })
            .await
            .result
            .map(drop)
    }

    /// Sends `buf` as one datagram to `addr` (a name is looked up first; its first address
    /// is used); returns the count sent. The buffer comes back either way.
    pub async fn send_to(&self, buf: Vec<u8>, addr: impl ToAddrs) -> (io::Result<usize>, Vec<u8>) {
        let target = match addr.to_target() {
            Ok(target) => target,
            Err(e) => return (Err(e), buf),
        };
        let addr = match resolve(&self.cx, target).await {
            Ok(addrs) => addrs[0],
            Err(e) => return (Err(e), buf),
        };
        crate::op::submit_buf(
            &self.cx,
            Op::SendTo {
                socket: self.socket.clone(),
                buf,
                addr,
            },
        )
        .await
    }

    /// Receives one datagram into `buf` (up to its capacity, at its start; its length becomes
    /// the count) and the sender's address.
    pub async fn recv_from(&self, buf: Vec<u8>) -> (io::Result<(usize, SocketAddr)>, Vec<u8>) {
        let done = self
            .cx
            .submit(Op::RecvFrom {
                socket: self.socket.clone(),
                buf,
                from: None,
            })
            .await;
        let from = match &done.op {
            Op::RecvFrom { from, .. } => *from,
            _ => None,
        };
        let buf = done.op.into_buf();
        match (done.result, from) {
            (Ok(n), Some(from)) => (Ok((n, from)), buf),
            (Ok(_), None) => (
                Err(io::Error::other(
                    "the backend completed `recv_from` without the sender's address",
                )),
                buf,
            ),
            (Err(e), _) => (Err(e), buf),
        }
    }

    /// Sends `buf` as one datagram to the connected peer.
    pub async fn send(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        crate::net::stream_write(&self.cx, &self.socket, buf).await
    }

    /// Receives one datagram from the connected peer into `buf`.
    pub async fn recv(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        crate::net::stream_read(&self.cx, &self.socket, buf).await
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.resource().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.resource().peer_addr()
    }

    /// Closes the socket once no op is in flight on it.
    pub async fn close(self) -> io::Result<()> {
        crate::net::close(&self.cx, self.socket).await
    }
}

/// Panics on a backend whose sockets have no descriptor (fiber's simulated ones).
impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.expect_fd().as_raw_fd()
    }
}

/// Panics on a backend whose sockets have no descriptor, as `AsRawFd` does.
impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.expect_fd()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("addr", &self.local_addr().ok())
            .field("backend", &self.cx.backend())
            .finish()
    }
}
