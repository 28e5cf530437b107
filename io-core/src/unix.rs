//! Unix domain sockets: [`UnixListener`] and [`UnixStream`] (streams), [`UnixDatagram`]
//! (datagrams), with owned buffers, written once over op submission. Addresses are paths.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::adapter::{compat_source, Compat, SourceOps};
use crate::fs::missing_output;
use crate::net::{close, stream_read, stream_shutdown, stream_write, stream_write_all};
use crate::op::{Handle, Op, SocketOptions, UnixKind};
use crate::Cx;

async fn bind(cx: &Cx, path: &Path, kind: UnixKind, backlog: u32) -> io::Result<Handle> {
    let done = cx
        .submit(Op::BindUnix {
            path: path.to_path_buf(),
            kind,
            backlog,
            socket: None,
        })
        .await;
    done.result?;
    match done.op {
        Op::BindUnix {
            socket: Some(socket),
            ..
        } => Ok(socket),
        op => Err(missing_output(&op)),
    }
}

/// A Unix stream socket listening at a path.
///
/// The path must not exist when binding ([`AddrInUse`](io::ErrorKind::AddrInUse) otherwise);
/// closing the listener does not remove it (as with std: remove it with
/// [`crate::fs::remove_file`] when done).
///
/// ```
/// use io_core::{UnixListener, UnixStream};
///
/// let path = std::env::temp_dir().join(format!("io-core-unix-doc-{}", std::process::id()));
/// let got = io_blocking::BlockingIo::new()
///     .run(|cx| {
///         let path = path.clone();
///         async move {
///             let out = async {
///                 let listener = UnixListener::bind(&cx, &path).await?;
///                 let client = UnixStream::connect(&cx, &path).await?;
///                 let server = listener.accept().await?;
///                 client.write_all(b"ping".to_vec()).await.0?;
///                 let (n, buf) = server.read(Vec::with_capacity(16)).await;
///                 n?;
///                 Ok::<_, std::io::Error>(buf)
///             };
///             Ok(out.await)
///         }
///     })
///     .unwrap()
///     .unwrap();
/// assert_eq!(got, b"ping");
/// std::fs::remove_file(&path).unwrap();
/// ```
pub struct UnixListener {
    cx: Cx,
    listener: Handle,
}

impl UnixListener {
    /// Binds to `path` and listens with the default backlog (1,024).
    pub async fn bind(cx: &Cx, path: impl AsRef<Path>) -> io::Result<UnixListener> {
        UnixListener::bind_with(cx, path, SocketOptions::default().backlog).await
    }

    /// Binds to `path` and listens with `backlog`.
    pub async fn bind_with(
        cx: &Cx,
        path: impl AsRef<Path>,
        backlog: u32,
    ) -> io::Result<UnixListener> {
        let listener = bind(cx, path.as_ref(), UnixKind::Listener, backlog).await?;
        Ok(UnixListener {
            cx: cx.clone(),
            listener,
        })
    }

    /// Waits for one connection. Canceled while waiting, it returns a canceled error — unless a
    /// connection was accepted meanwhile, which is then returned, never dropped.
    pub async fn accept(&self) -> io::Result<UnixStream> {
        let done = self
            .cx
            .submit(Op::AcceptUnix {
                listener: self.listener.clone(),
                accepted: None,
            })
            .await;
        done.result?;
        match done.op {
            Op::AcceptUnix {
                accepted: Some(stream),
                ..
            } => Ok(UnixStream::new(&self.cx, stream)),
            op => Err(missing_output(&op)),
        }
    }

    /// The path the listener is bound to.
    pub fn local_path(&self) -> io::Result<Option<PathBuf>> {
        self.listener.resource().unix_local_path()
    }

    /// Closes the listener once no accept is in flight on it.
    pub async fn close(self) -> io::Result<()> {
        close(&self.cx, self.listener).await
    }
}

/// A connected Unix stream socket: owned-buffer reads and writes, or — through
/// [`compat`](UnixStream::compat) — `futures-io`'s `AsyncRead`/`AsyncWrite`, as
/// [`TcpStream`](crate::TcpStream).
pub struct UnixStream {
    cx: Cx,
    stream: Handle,
}

impl UnixStream {
    fn new(cx: &Cx, stream: Handle) -> UnixStream {
        UnixStream {
            cx: cx.clone(),
            stream,
        }
    }

    /// Connects to the listener bound at `path`: [`NotFound`](io::ErrorKind::NotFound) if
    /// nothing is there, [`ConnectionRefused`](io::ErrorKind::ConnectionRefused) if nobody
    /// listens.
    pub async fn connect(cx: &Cx, path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let done = cx
            .submit(Op::ConnectUnix {
                path: path.as_ref().to_path_buf(),
                stream: None,
            })
            .await;
        done.result?;
        match done.op {
            Op::ConnectUnix {
                stream: Some(stream),
                ..
            } => Ok(UnixStream::new(cx, stream)),
            op => Err(missing_output(&op)),
        }
    }

    /// Receives into `buf` (`0`: the peer closed its side). The buffer comes back either way.
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        stream_read(&self.cx, &self.stream, buf).await
    }

    /// Sends `buf`; returns how many bytes were sent.
    pub async fn write(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        stream_write(&self.cx, &self.stream, buf).await
    }

    /// Sends all of `buf`.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        stream_write_all(&self.cx, &self.stream, buf).await
    }

    /// Shuts down the read half, the write half, or both.
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        stream_shutdown(&self.cx, &self.stream, how).await
    }

    /// The path this end is bound to (`None` for a connecting client, which is unnamed).
    pub fn local_path(&self) -> io::Result<Option<PathBuf>> {
        self.stream.resource().unix_local_path()
    }

    /// The peer's path (the listener's, seen from a client; `None` seen from the server).
    pub fn peer_path(&self) -> io::Result<Option<PathBuf>> {
        self.stream.resource().unix_peer_path()
    }

    /// `futures-io`'s `AsyncRead` and `AsyncWrite` over this stream ([`Compat`]).
    pub fn compat(self) -> Compat<UnixStream> {
        Compat::new(self)
    }

    /// Closes the socket once no op is in flight on it.
    pub async fn close(self) -> io::Result<()> {
        close(&self.cx, self.stream).await
    }
}

compat_source!(
    UnixStream,
    |s| SourceOps::Stream(&s.stream),
    CompatRead,
    CompatWrite
);

/// A Unix datagram socket bound to a path.
pub struct UnixDatagram {
    cx: Cx,
    socket: Handle,
}

impl UnixDatagram {
    /// Binds a datagram socket to `path` (which must not exist).
    pub async fn bind(cx: &Cx, path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        let socket = bind(cx, path.as_ref(), UnixKind::Datagram, 0).await?;
        Ok(UnixDatagram {
            cx: cx.clone(),
            socket,
        })
    }

    /// Sends `buf` as one datagram to the socket bound at `path`.
    pub async fn send_to(
        &self,
        buf: Vec<u8>,
        path: impl AsRef<Path>,
    ) -> (io::Result<usize>, Vec<u8>) {
        crate::op::submit_buf(
            &self.cx,
            Op::SendToUnix {
                socket: self.socket.clone(),
                buf,
                path: path.as_ref().to_path_buf(),
            },
        )
        .await
    }

    /// Receives one datagram into `buf` and the sender's path (`None`: an unnamed sender).
    pub async fn recv_from(&self, buf: Vec<u8>) -> (io::Result<(usize, Option<PathBuf>)>, Vec<u8>) {
        let done = self
            .cx
            .submit(Op::RecvFromUnix {
                socket: self.socket.clone(),
                buf,
                from: None,
            })
            .await;
        let from = match &done.op {
            Op::RecvFromUnix { from, .. } => from.clone(),
            _ => None,
        };
        let buf = done.op.into_buf();
        (done.result.map(|n| (n, from)), buf)
    }

    /// The path the socket is bound to.
    pub fn local_path(&self) -> io::Result<Option<PathBuf>> {
        self.socket.resource().unix_local_path()
    }

    /// Closes the socket once no op is in flight on it.
    pub async fn close(self) -> io::Result<()> {
        close(&self.cx, self.socket).await
    }
}

macro_rules! fd_of {
    ($ty:ty, $field:ident) => {
        /// Panics on a backend whose sockets have no descriptor (fiber's simulated ones).
        impl AsRawFd for $ty {
            fn as_raw_fd(&self) -> RawFd {
                self.$field.expect_fd().as_raw_fd()
            }
        }

        /// Panics on a backend whose sockets have no descriptor, as `AsRawFd` does.
        impl AsFd for $ty {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.$field.expect_fd()
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field(
                        "path",
                        &self.$field.resource().unix_local_path().ok().flatten(),
                    )
                    .field("backend", &self.cx.backend())
                    .finish()
            }
        }
    };
}

fd_of!(UnixListener, listener);
fd_of!(UnixStream, stream);
fd_of!(UnixDatagram, socket);
