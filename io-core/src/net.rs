//! [`TcpListener`] and [`TcpStream`]: TCP with owned buffers, written once over op submission,
//! plus `futures-io` `AsyncRead`/`AsyncWrite` for the ecosystem's codecs.

use std::fmt;
use std::io;
use std::net::{self, Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use crate::adapter::{futures_io_through_adapter, Adapter, OpSource};
use crate::fs::missing_output;
use crate::op::{Handle, Op};
use crate::Cx;

/// A TCP socket listening for connections.
///
/// ```
/// use io_core::{TcpListener, TcpStream};
///
/// let echoed = io_blocking::BlockingIo::new()
///     .run(|cx| async move {
///         let out = async {
///             let listener = TcpListener::bind(&cx, "127.0.0.1:0".parse().unwrap()).await?;
///             // Blocking runs everything inline: connect first (the kernel completes the
///             // handshake into the listen backlog), then accept.
///             let client = TcpStream::connect(&cx, listener.local_addr()?).await?;
///             let (server, _peer) = listener.accept().await?;
///             client.write_all(b"ping".to_vec()).await.0?;
///             let (n, buf) = server.read(Vec::with_capacity(16)).await;
///             n?;
///             Ok::<_, std::io::Error>(buf)
///         };
///         Ok(out.await)
///     })
///     .unwrap()
///     .unwrap();
/// assert_eq!(echoed, b"ping");
/// ```
pub struct TcpListener {
    cx: Cx,
    listener: Handle,
}

impl TcpListener {
    /// Binds to `addr` and listens (port 0 picks a free port; see [`TcpListener::local_addr`]).
    pub async fn bind(cx: &Cx, addr: SocketAddr) -> io::Result<TcpListener> {
        let done = cx
            .submit(Op::Bind {
                addr,
                listener: None,
            })
            .await;
        done.result?;
        match done.op {
            Op::Bind {
                listener: Some(listener),
                ..
            } => Ok(TcpListener {
                cx: cx.clone(),
                listener,
            }),
            op => Err(missing_output(&op)),
        }
    }

    /// Adopts a listener bound elsewhere (with std, or inherited); `cx`'s backend serves it.
    pub fn from_std(cx: &Cx, listener: net::TcpListener) -> TcpListener {
        let listener = Handle::new(listener);
        cx.io().adopt(&listener);
        TcpListener {
            cx: cx.clone(),
            listener,
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.resource().local_addr()
    }

    /// Waits for one connection. Canceled while waiting, it returns a canceled error — unless a
    /// connection was accepted meanwhile, which is then returned, never dropped.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let done = self
            .cx
            .submit(Op::Accept {
                listener: self.listener.clone(),
                accepted: None,
            })
            .await;
        done.result?;
        match done.op {
            Op::Accept {
                accepted: Some((stream, peer)),
                ..
            } => Ok((TcpStream::new(&self.cx, stream), peer)),
            op => Err(missing_output(&op)),
        }
    }

    /// Closes the listener once no accept is in flight on it.
    pub async fn close(self) -> io::Result<()> {
        close(&self.cx, self.listener).await
    }
}

/// Panics on a backend whose sockets have no descriptor (none of today's).
impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.expect_fd().as_raw_fd()
    }
}

/// Panics on a backend whose sockets have no descriptor, as `AsRawFd` does.
impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.expect_fd()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.local_addr().ok())
            .field("backend", &self.cx.backend())
            .finish()
    }
}

/// A connected TCP socket.
///
/// Two ways to use it: the owned-buffer methods ([`read`](TcpStream::read),
/// [`write`](TcpStream::write), [`write_all`](TcpStream::write_all)), which hand a buffer to
/// the backend and get it back with the result; or the `futures-io` traits `AsyncRead` and
/// `AsyncWrite`, which copy through buffers the stream keeps, so codecs written for the
/// ecosystem work unchanged.
///
/// With the traits, a read in flight survives a dropped read future: the next `poll_read`
/// resumes it, so no received byte is lost. `poll_write` reports bytes written only once the
/// backend has sent them (until then it is `Pending`; poll it again with the same bytes), and
/// `poll_flush` waits until every byte handed over has been sent.
pub struct TcpStream {
    cx: Cx,
    stream: Handle,
    adapter: Adapter,
}

impl TcpStream {
    fn new(cx: &Cx, stream: Handle) -> TcpStream {
        TcpStream {
            cx: cx.clone(),
            stream,
            adapter: Adapter::default(),
        }
    }

    /// Adopts a stream connected elsewhere (with std, or inherited); `cx`'s backend serves it.
    pub fn from_std(cx: &Cx, stream: net::TcpStream) -> TcpStream {
        let stream = Handle::new(stream);
        cx.io().adopt(&stream);
        TcpStream::new(cx, stream)
    }

    /// Connects to `addr`.
    pub async fn connect(cx: &Cx, addr: SocketAddr) -> io::Result<TcpStream> {
        let done = cx.submit(Op::Connect { addr, stream: None }).await;
        done.result?;
        match done.op {
            Op::Connect {
                stream: Some(stream),
                ..
            } => Ok(TcpStream::new(cx, stream)),
            op => Err(missing_output(&op)),
        }
    }

    /// Receives into `buf`: up to `buf.capacity()` bytes land at its start and its length
    /// becomes the count (`0`: the peer closed its side). The buffer comes back either way.
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let done = self
            .cx
            .submit(Op::Recv {
                stream: self.stream.clone(),
                buf,
            })
            .await;
        (done.result, done.op.into_buf())
    }

    /// Sends `buf`; returns how many bytes were sent (maybe fewer than asked).
    pub async fn write(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let done = self
            .cx
            .submit(Op::Send {
                stream: self.stream.clone(),
                buf,
            })
            .await;
        (done.result, done.op.into_buf())
    }

    /// Sends all of `buf`, resubmitting after short sends and interruptions
    /// ([`io::ErrorKind::Interrupted`]), like std's `write_all`.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let total = buf.len();
        let mut sent = 0;
        let mut pending = buf;
        let mut original = None;
        while sent < total {
            let (result, back) = self.write(pending).await;
            if result
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::Interrupted)
            {
                pending = back;
                continue;
            }
            let n = match result {
                Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                other => other,
            };
            match n {
                Ok(n) => {
                    sent += n;
                    if sent < total {
                        // Rare: a short send. Keep the original to hand back, send the rest.
                        let tail = back[n..].to_vec();
                        original.get_or_insert(back);
                        pending = tail;
                    } else {
                        return (Ok(()), original.unwrap_or(back));
                    }
                }
                Err(e) => return (Err(e), original.unwrap_or(back)),
            }
        }
        (Ok(()), original.unwrap_or(pending))
    }

    /// Shuts down the read half, the write half, or both.
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.cx
            .submit(Op::Shutdown {
                stream: self.stream.clone(),
                how,
            })
            .await
            .result
            .map(drop)
    }

    /// Closes the socket once no op is in flight on it. Bytes written through `AsyncWrite` are
    /// flushed first (a flush error is reported, and the socket is closed anyway); a trait read
    /// left pending is dropped and canceled.
    pub async fn close(self) -> io::Result<()> {
        let TcpStream {
            cx,
            stream,
            adapter,
        } = self;
        let flushed = adapter.finish().await;
        let closed = close(&cx, stream).await;
        flushed.and(closed)
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.resource().local_addr()
    }

    /// The remote address of the connection.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.resource().peer_addr()
    }

    /// Sets `TCP_NODELAY` (send small writes at once instead of coalescing them).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.stream.resource().set_nodelay(on)
    }
}

/// Submits an async close of `handle` on `cx`'s backend.
pub(crate) async fn close(cx: &Cx, handle: Handle) -> io::Result<()> {
    cx.submit(Op::Close {
        handle: Some(handle),
    })
    .await
    .result
    .map(drop)
}

/// The stream's ops for the `futures-io` adapter (no offsets on a stream).
struct StreamOps<'a>(&'a Handle);

impl OpSource for StreamOps<'_> {
    fn read_op(&self, buf: Vec<u8>, _offset: u64) -> Op {
        Op::Recv {
            stream: self.0.clone(),
            buf,
        }
    }

    fn write_op(&self, buf: Vec<u8>, _offset: u64) -> Op {
        Op::Send {
            stream: self.0.clone(),
            buf,
        }
    }

    fn close_op(&self) -> Option<Op> {
        Some(Op::Shutdown {
            stream: self.0.clone(),
            how: Shutdown::Write,
        })
    }

    fn positional(&self) -> bool {
        false
    }
}

// `poll_close` flushes, then shuts the write half down.
futures_io_through_adapter!(TcpStream, StreamOps, stream);

/// Panics on a backend whose sockets have no descriptor (none of today's).
impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.expect_fd().as_raw_fd()
    }
}

/// Panics on a backend whose sockets have no descriptor, as `AsRawFd` does.
impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.expect_fd()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("peer", &self.peer_addr().ok())
            .field("backend", &self.cx.backend())
            .finish()
    }
}
