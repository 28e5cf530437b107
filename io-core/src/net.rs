//! [`TcpListener`] and [`TcpStream`]: TCP with owned buffers, written once over op submission,
//! plus `futures-io` `AsyncRead`/`AsyncWrite` for the ecosystem's codecs.

use std::cell::Cell;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{self, Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;

use crate::adapter::{compat_source, Compat, SourceOps};
use crate::addr::{first_that_works, ToAddrs};
use crate::fs::missing_output;
use crate::op::{Handle, Op, SocketOptions};
use crate::{Cx, SpawnOptions, Task};

/// A TCP socket listening for connections.
///
/// # Which spawns need concurrency
///
/// A server serves a connection while it goes on accepting the next ones, so the task that
/// handles a connection must run *beside* the accept loop that spawned it: that spawn requires
/// concurrency. [`TcpListener::serve`] is the server loop, and it asks for it
/// ([`SpawnOptions::concurrent`]), so on the blocking backend, which runs every spawned task
/// inline, it fails at once with a typed error instead of serving one connection while the
/// others wait (forever, if that client waits for another one). Serve on uring or poll.
///
/// What does not need concurrency, and runs on blocking too: one connection at a time, in
/// order — accept, serve it to the end, accept the next — as sequential code, and a client and a
/// server in one run as long as each read comes after the write it waits for. A read that could
/// only be satisfied by its own thread is reported there as [`WouldDeadlock`](crate::WouldDeadlock)
/// rather than waited for forever.
///
/// ```
/// use io_core::{TcpListener, TcpStream};
///
/// let echoed = io_blocking::BlockingIo::new()
///     .run(|cx| async move {
///         let out = async {
///             let listener = TcpListener::bind(&cx, "127.0.0.1:0").await?;
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
    /// Binds to `addr` and listens with the default [`SocketOptions`] (a backlog of 1,024 and
    /// `SO_REUSEADDR`). Port 0 picks a free port (see [`TcpListener::local_addr`]); a host name
    /// is looked up first, and each address it names is tried in turn.
    pub async fn bind(cx: &Cx, addr: impl ToAddrs) -> io::Result<TcpListener> {
        TcpListener::bind_with(cx, addr, SocketOptions::default()).await
    }

    /// Binds to `addr` and listens with `options`: the backlog, `SO_REUSEADDR`, and
    /// `SO_REUSEPORT` (several listeners on one address, one per core or process, the kernel
    /// spreading connections among them).
    ///
    /// ```
    /// use io_core::{op::SocketOptions, TcpListener};
    ///
    /// let port = io_blocking::BlockingIo::new()
    ///     .run(|cx| async move {
    ///         let opts = SocketOptions::default().backlog(4096).reuse_port(true);
    ///         let first = TcpListener::bind_with(&cx, "127.0.0.1:0", opts).await.unwrap();
    ///         let addr = first.local_addr().unwrap();
    ///         // With SO_REUSEPORT on both, a second listener shares the port.
    ///         let second = TcpListener::bind_with(&cx, addr, opts).await.unwrap();
    ///         Ok(second.local_addr().unwrap().port() == addr.port())
    ///     })
    ///     .unwrap();
    /// assert!(port);
    /// ```
    pub async fn bind_with(
        cx: &Cx,
        addr: impl ToAddrs,
        options: SocketOptions,
    ) -> io::Result<TcpListener> {
        first_that_works(cx, addr, |addr| async move {
            let done = cx
                .submit(Op::Bind {
                    addr,
                    options,
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
        })
        .await
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

    /// Serves connections: accepts them in a loop and runs `handler` on each, in a task of its
    /// own spawned with [`SpawnOptions::concurrent`] (named `connection`), so connections are
    /// served at the same time and the loop keeps accepting.
    ///
    /// On a backend that runs tasks inline (blocking) it fails at once, before any connection
    /// is taken, with an error of kind [`Unsupported`](io::ErrorKind::Unsupported) that holds
    /// [`SpawnError::ConcurrencyUnavailable`](crate::SpawnError::ConcurrencyUnavailable): the
    /// task for the next connection is spawned before that connection is accepted, and waits
    /// for it.
    ///
    /// It runs until an accept fails (it returns that error) or until it is canceled (it
    /// returns the canceled error, [`Canceled::is_canceled`](crate::Canceled::is_canceled)).
    /// Either way it cancels the handlers still running and joins them before it returns: no
    /// handler outlives it, and a handler's panic resumes in it. A handler deals with its own
    /// errors (its future gives `()`): one failed connection does not stop the server.
    ///
    /// ```
    /// use io_core::{SpawnError, TcpListener};
    ///
    /// let refused = io_blocking::BlockingIo::new()
    ///     .run(|cx| async move {
    ///         let listener = TcpListener::bind(&cx, "127.0.0.1:0").await;
    ///         let listener = listener.unwrap();
    ///         let served = listener.serve(|_cx, stream| async move {
    ///             let _ = stream.write_all(b"hello".to_vec()).await;
    ///         });
    ///         Ok(served.await.unwrap_err())
    ///     })
    ///     .unwrap();
    /// let inner = refused.get_ref().and_then(|e| e.downcast_ref::<SpawnError>());
    /// assert_eq!(inner, Some(&SpawnError::ConcurrencyUnavailable));
    /// ```
    pub async fn serve<F, Fut>(&self, mut handler: F) -> io::Result<Infallible>
    where
        F: FnMut(Cx, TcpStream) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let cx = &self.cx;
        let mut handlers: Vec<Task<()>> = Vec::new();
        // Finished handlers are joined when the list reaches this length, so it holds about the
        // live ones without a scan per connection.
        let mut join_finished_at = 16;
        let failed = loop {
            if handlers.len() >= join_finished_at {
                let mut i = 0;
                while i < handlers.len() {
                    if handlers[i].is_finished() {
                        // Finished: this join returns at once (or resumes the handler's panic).
                        let _ = handlers.swap_remove(i).await;
                    } else {
                        i += 1;
                    }
                }
                join_finished_at = (handlers.len() * 2).max(16);
            }
            let (next, handed) = match next_connection::<Fut>(cx) {
                Ok(spawned) => spawned,
                Err(refused) => break refused,
            };
            match self.accept().await {
                Ok((stream, _peer)) => {
                    handed.hand(cx, handler(cx.clone(), stream));
                    handlers.push(next);
                }
                // `next` is dropped: canceled before it ever had a connection.
                Err(e) => break e,
            }
        };
        for handler in &handlers {
            handler.cancel();
        }
        for handler in handlers {
            // Shielded: the joins must happen even when serve itself was canceled.
            let _ = cx.shield(handler).await;
        }
        Err(failed)
    }

    /// Closes the listener once no accept is in flight on it.
    pub async fn close(self) -> io::Result<()> {
        close(&self.cx, self.listener).await
    }
}

/// Spawns, with concurrency required, the task that will run the handler of the next
/// connection, and returns it with where to hand it that handler.
fn next_connection<Fut>(cx: &Cx) -> io::Result<(Task<()>, Handover<Fut>)>
where
    Fut: Future<Output = ()> + 'static,
{
    let handover = Handover {
        park: cx.park("serve: a connection to handle"),
        handler: Rc::new(Cell::new(None)),
    };
    let (park, handler) = (handover.park.clone(), handover.handler.clone());
    let opts = SpawnOptions::new().name("connection").concurrent();
    let task = cx.spawn_with(opts, move |cx| async move {
        cx.suspend(park).await?;
        if let Some(handler) = handler.take() {
            handler.await;
        }
        Ok(())
    })?;
    Ok((task, handover))
}

/// Where [`TcpListener::serve`] hands a connection's handler to the task spawned for it.
struct Handover<Fut> {
    park: crate::Park,
    handler: Rc<Cell<Option<Fut>>>,
}

impl<Fut> Handover<Fut> {
    fn hand(self, cx: &Cx, handler: Fut) {
        self.handler.set(Some(handler));
        cx.ready(&self.park);
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
/// the backend and get it back with the result; or, through [`compat`](TcpStream::compat), the
/// `futures-io` traits `AsyncRead` and `AsyncWrite`, which copy through buffers the wrapper
/// keeps, so codecs written for the ecosystem work unchanged (see [`Compat`]). The two are kept
/// apart so that no owned-buffer method hides a trait method of the same name.
pub struct TcpStream {
    cx: Cx,
    stream: Handle,
}

impl TcpStream {
    fn new(cx: &Cx, stream: Handle) -> TcpStream {
        TcpStream {
            cx: cx.clone(),
            stream,
        }
    }

    /// Adopts a stream connected elsewhere (with std, or inherited); `cx`'s backend serves it.
    pub fn from_std(cx: &Cx, stream: net::TcpStream) -> TcpStream {
        let stream = Handle::new(stream);
        cx.io().adopt(&stream);
        TcpStream::new(cx, stream)
    }

    /// Connects to `addr`; a host name is looked up first, and each address it names is tried
    /// in turn (the last error is returned if none accepts).
    pub async fn connect(cx: &Cx, addr: impl ToAddrs) -> io::Result<TcpStream> {
        first_that_works(cx, addr, |addr| async move {
            let done = cx.submit(Op::Connect { addr, stream: None }).await;
            done.result?;
            match done.op {
                Op::Connect {
                    stream: Some(stream),
                    ..
                } => Ok(TcpStream::new(cx, stream)),
                op => Err(missing_output(&op)),
            }
        })
        .await
    }

    /// Receives into `buf`: up to `buf.capacity()` bytes land at its start and its length
    /// becomes the count (`0`: the peer closed its side). The buffer comes back either way.
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        stream_read(&self.cx, &self.stream, buf).await
    }

    /// Sends `buf`; returns how many bytes were sent (maybe fewer than asked).
    pub async fn write(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        stream_write(&self.cx, &self.stream, buf).await
    }

    /// Sends all of `buf`, resubmitting after short sends and interruptions
    /// ([`io::ErrorKind::Interrupted`]), like std's `write_all`.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        stream_write_all(&self.cx, &self.stream, buf).await
    }

    /// Shuts down the read half, the write half, or both.
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        stream_shutdown(&self.cx, &self.stream, how).await
    }

    /// Splits the stream into a read half and a write half, each owned, usable from two tasks
    /// at once (a reader task and a writer task). The socket closes when both halves are
    /// dropped.
    pub fn into_split(self) -> (TcpReadHalf, TcpWriteHalf) {
        let TcpStream { cx, stream } = self;
        let read = TcpReadHalf {
            cx: cx.clone(),
            stream: stream.clone(),
        };
        (read, TcpWriteHalf { cx, stream })
    }

    /// `futures-io`'s `AsyncRead` and `AsyncWrite` over this stream, for the ecosystem's codecs
    /// ([`Compat`]).
    pub fn compat(self) -> Compat<TcpStream> {
        Compat::new(self)
    }

    /// Closes the socket once no op is in flight on it.
    pub async fn close(self) -> io::Result<()> {
        close(&self.cx, self.stream).await
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

/// Receives on a connected socket (TCP, Unix stream, connected UDP).
/// (A plain function returning the op's future: no state machine of its own.)
#[inline]
pub(crate) fn stream_read(cx: &Cx, stream: &Handle, buf: Vec<u8>) -> crate::op::SubmitBuf {
    crate::op::submit_buf(
        cx,
        Op::Recv {
            stream: stream.clone(),
            buf,
        },
    )
}

/// Sends on a connected socket (TCP, Unix stream, connected UDP).
/// (A plain function returning the op's future: no state machine of its own.)
#[inline]
pub(crate) fn stream_write(cx: &Cx, stream: &Handle, buf: Vec<u8>) -> crate::op::SubmitBuf {
    crate::op::submit_buf(
        cx,
        Op::Send {
            stream: stream.clone(),
            buf,
        },
    )
}

/// Sends all of `buf` on a stream, resubmitting after short sends and interruptions.
pub(crate) async fn stream_write_all(
    cx: &Cx,
    stream: &Handle,
    buf: Vec<u8>,
) -> (io::Result<()>, Vec<u8>) {
    let total = buf.len();
    let mut sent = 0;
    let mut pending = buf;
    let mut original = None;
    while sent < total {
        let (result, back) = stream_write(cx, stream, pending).await;
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

/// Shuts a stream's halves down.
pub(crate) async fn stream_shutdown(cx: &Cx, stream: &Handle, how: Shutdown) -> io::Result<()> {
    cx.submit(Op::Shutdown {
        stream: stream.clone(),
        how,
    })
    .await
    .result
    .map(drop)
}

/// The read half of a [`TcpStream`] ([`TcpStream::into_split`]): owned reads and `AsyncRead`.
pub struct TcpReadHalf {
    cx: Cx,
    stream: Handle,
}

impl TcpReadHalf {
    /// Receives into `buf`, as [`TcpStream::read`].
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        stream_read(&self.cx, &self.stream, buf).await
    }

    /// `futures-io`'s `AsyncRead` over this half ([`Compat`]).
    pub fn compat(self) -> Compat<TcpReadHalf> {
        Compat::new(self)
    }

    /// The remote address of the connection.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.resource().peer_addr()
    }
}

/// The write half of a [`TcpStream`] ([`TcpStream::into_split`]): owned writes, `shutdown`, and
/// `AsyncWrite` (whose `poll_close` shuts the write half down).
pub struct TcpWriteHalf {
    cx: Cx,
    stream: Handle,
}

impl TcpWriteHalf {
    /// Sends `buf`, as [`TcpStream::write`].
    pub async fn write(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        stream_write(&self.cx, &self.stream, buf).await
    }

    /// Sends all of `buf`, as [`TcpStream::write_all`].
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        stream_write_all(&self.cx, &self.stream, buf).await
    }

    /// Shuts down the write half (the peer reads the end of the stream), the read half, or both.
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        stream_shutdown(&self.cx, &self.stream, how).await
    }

    /// `futures-io`'s `AsyncWrite` over this half ([`Compat`]; `poll_close` shuts the write
    /// half down).
    pub fn compat(self) -> Compat<TcpWriteHalf> {
        Compat::new(self)
    }

    /// The remote address of the connection.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.resource().peer_addr()
    }
}

compat_source!(
    TcpStream,
    |s| SourceOps::Stream(&s.stream),
    CompatRead,
    CompatWrite
);
compat_source!(TcpReadHalf, |s| SourceOps::Stream(&s.stream), CompatRead);
compat_source!(TcpWriteHalf, |s| SourceOps::Stream(&s.stream), CompatWrite);

impl fmt::Debug for TcpReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpReadHalf")
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl fmt::Debug for TcpWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpWriteHalf")
            .field("peer", &self.peer_addr().ok())
            .finish()
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
