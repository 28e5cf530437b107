//! Each op as the system calls it makes. Sockets are non-blocking: a call that would block
//! answers [`Attempt::Wait`] with the readiness to wait for, and the op is tried again when the
//! socket is ready. Files are served inline with std calls (see DESIGN.md, "Files inline").

use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::net::{self, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::net as unix;
use std::path::Path;

use io_core::op::{read_into, SocketOptions, UnixKind};
use io_core::{Handle, Metadata, Op, Unsupported};
use socket2::{Domain, SockAddr, SockRef, Socket, Type};

/// What one try of an op came to.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// The op ended with this result.
    Done(io::Result<usize>),
    /// The socket is not ready: try again once it is.
    Wait(Interest),
    /// Refused for now with nothing to wait for (a Unix connect to a listener whose backlog is
    /// full: `EAGAIN`, and the socket reports writable at once): try again shortly.
    Later,
}

/// The readiness an op waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// The socket an op waits on for readiness (`None` for ops that never wait).
pub(crate) fn waits_on(op: &Op) -> Option<&Handle> {
    match op {
        Op::Accept { listener, .. } | Op::AcceptUnix { listener, .. } => Some(listener),
        Op::Recv { stream, .. } | Op::Send { stream, .. } => Some(stream),
        Op::Connect { stream, .. } | Op::ConnectUnix { stream, .. } => stream.as_ref(),
        Op::SendTo { socket, .. }
        | Op::RecvFrom { socket, .. }
        | Op::SendToUnix { socket, .. }
        | Op::RecvFromUnix { socket, .. } => Some(socket),
        _ => None,
    }
}

/// The readiness a socket op waits for when it would block (`None` for ops that never wait, and
/// for a connect not begun: its socket does not exist yet).
pub(crate) fn interest(op: &Op) -> Option<Interest> {
    match op {
        Op::Accept { .. }
        | Op::Recv { .. }
        | Op::AcceptUnix { .. }
        | Op::RecvFrom { .. }
        | Op::RecvFromUnix { .. } => Some(Interest::Read),
        Op::Send { .. }
        | Op::SendTo { .. }
        | Op::SendToUnix { .. }
        | Op::Connect {
            stream: Some(_), ..
        }
        | Op::ConnectUnix {
            stream: Some(_), ..
        } => Some(Interest::Write),
        _ => None,
    }
}

/// The first try of an op (a connect starts here: its socket is made and the connect begun).
/// `Op::Close` is the table's business and never reaches here.
pub(crate) fn first_try(op: &mut Op) -> Attempt {
    match op {
        Op::Connect { addr, stream } => start_connect(*addr, stream),
        Op::ConnectUnix { path, stream } => connect_unix(path, stream),
        _ => retry(op),
    }
}

/// Tries the op again (or the first time): its system call, once.
pub(crate) fn retry(op: &mut Op) -> Attempt {
    let result = match op {
        Op::Nop => Ok(0),
        Op::Open {
            path,
            options,
            file,
        } => open_without_waiting(options, path)
            .map(|opened| *file = Some(Handle::new(opened)))
            .map(|()| 0),
        Op::ReadAt { file, buf, offset } => std_of::<fs::File>(file, "read_at")
            .and_then(|file| read_into(buf, |space| file.read_at(space, *offset))),
        Op::WriteAt { file, buf, offset } => {
            std_of::<fs::File>(file, "write_at").and_then(|file| file.write_at(buf, *offset))
        }
        Op::SyncAll { file } => std_of::<fs::File>(file, "sync_all")
            .and_then(fs::File::sync_all)
            .map(|()| 0),
        Op::Len { file, len } => std_of::<fs::File>(file, "len")
            .and_then(fs::File::metadata)
            .map(|meta| *len = meta.len())
            .map(|()| 0),
        Op::SetLen { file, len } => std_of::<fs::File>(file, "set_len")
            .and_then(|file| file.set_len(*len))
            .map(|()| 0),
        Op::Stat { file, metadata } => std_of::<fs::File>(file, "stat")
            .and_then(fs::File::metadata)
            .map(|meta| *metadata = Some(Metadata::from_std(&meta)))
            .map(|()| 0),
        Op::Bind {
            addr,
            options,
            listener,
        } => bind(*addr, options)
            .map(|bound| *listener = Some(bound))
            .map(|()| 0),
        Op::BindUdp {
            addr,
            options,
            socket,
        } => bind_udp(*addr, options)
            .map(|bound| *socket = Some(bound))
            .map(|()| 0),
        Op::ConnectUdp { socket, addr } => std_of::<net::UdpSocket>(socket, "connect_udp")
            .and_then(|socket| socket.connect(*addr))
            .map(|()| 0),
        Op::BindUnix {
            path,
            kind,
            backlog,
            socket,
        } => bind_unix(path, *kind, *backlog)
            .map(|bound| *socket = Some(bound))
            .map(|()| 0),
        Op::Accept { listener, accepted } => {
            return would_block(Interest::Read, || {
                let (stream, peer) = std_of::<net::TcpListener>(listener, "accept")?.accept()?;
                stream.set_nonblocking(true)?;
                *accepted = Some((Handle::new(stream), peer));
                Ok(0)
            })
        }
        Op::AcceptUnix { listener, accepted } => {
            return would_block(Interest::Read, || {
                let (stream, _) =
                    std_of::<unix::UnixListener>(listener, "accept_unix")?.accept()?;
                stream.set_nonblocking(true)?;
                *accepted = Some(Handle::new(stream));
                Ok(0)
            })
        }
        Op::Connect { stream, .. } => return finish_connect(stream),
        Op::ConnectUnix { path, stream } => return connect_unix(path, stream),
        Op::Recv { stream, buf } => {
            return would_block(Interest::Read, || {
                let fd = connected(stream, "recv")?;
                let socket = SockRef::from(&fd);
                recv_into(buf, |room| socket.recv(room).map(|n| (n, ()))).map(|((), n)| n)
            })
        }
        Op::Send { stream, buf } => {
            return would_block(Interest::Write, || {
                SockRef::from(&connected(stream, "send")?).send(buf)
            })
        }
        Op::Shutdown { stream, how } => connected(stream, "shutdown")
            .and_then(|fd| SockRef::from(&fd).shutdown(*how))
            .map(|()| 0),
        Op::SendTo { socket, buf, addr } => {
            let to = SockAddr::from(*addr);
            return would_block(Interest::Write, || {
                SockRef::from(std_of::<net::UdpSocket>(socket, "send_to")?).send_to(buf, &to)
            });
        }
        Op::RecvFrom { socket, buf, from } => {
            return would_block(Interest::Read, || {
                let socket = SockRef::from(std_of::<net::UdpSocket>(socket, "recv_from")?);
                let (sender, n) = recv_into(buf, |room| socket.recv_from(room))?;
                *from = sender.as_socket();
                Ok(n)
            })
        }
        Op::SendToUnix { socket, buf, path } => {
            return would_block(Interest::Write, || {
                std_of::<unix::UnixDatagram>(socket, "send_to_unix")?.send_to(buf, &*path)
            })
        }
        Op::RecvFromUnix { socket, buf, from } => {
            return would_block(Interest::Read, || {
                let socket = SockRef::from(std_of::<unix::UnixDatagram>(socket, "recv_from_unix")?);
                let (sender, n) = recv_into(buf, |room| socket.recv_from(room))?;
                *from = sender.as_pathname().map(Path::to_path_buf);
                Ok(n)
            })
        }
        _ => Err(Unsupported::io_error("poll", op.name())),
    };
    Attempt::Done(result)
}

/// Runs a non-blocking call, again if a signal interrupted it; `WouldBlock` means wait for
/// `interest`.
#[inline]
fn would_block(interest: Interest, mut call: impl FnMut() -> io::Result<usize>) -> Attempt {
    loop {
        match call() {
            Ok(n) => return Attempt::Done(Ok(n)),
            // The system call's own error number first: `kind` decodes it through a long match,
            // and this is every socket op that waits.
            Err(err) => match err.raw_os_error() {
                Some(libc::EAGAIN) => return Attempt::Wait(interest),
                Some(libc::EINTR) => continue,
                _ if err.kind() == io::ErrorKind::Interrupted => continue,
                _ if err.kind() == io::ErrorKind::WouldBlock => return Attempt::Wait(interest),
                _ => return Attempt::Done(Err(err)),
            },
        }
    }
}

/// Receives with `recv` into the spare room of `buf` from its start, up to its capacity; its
/// length becomes the count received (0 on an error), as [`read_into`] does, but without zeroing
/// the room first (see DESIGN.md, "Receives into the buffer's room"). `recv` answers the count
/// and what else it learned (a sender's address).
fn recv_into<T>(
    buf: &mut Vec<u8>,
    recv: impl FnOnce(&mut [MaybeUninit<u8>]) -> io::Result<(usize, T)>,
) -> io::Result<(T, usize)> {
    buf.clear();
    let (received, also) = recv(buf.spare_capacity_mut())?;
    // SAFETY: every `recv` passed here is a socket2 `recv`/`recv_from` on the room it was
    // given, which returns the count of bytes it initialized at the start of that room: the
    // spare room starts at index 0 (the vector was cleared) and is at least that long.
    unsafe { buf.set_len(received) };
    Ok((also, received))
}

/// The descriptor of the socket behind a handle, for the ops every connected socket serves the
/// same way (one call, whatever the socket's type; a handle with no descriptor, from another
/// backend, is refused with the typed error).
#[inline]
fn connected<'a>(handle: &'a Handle, op: &'static str) -> io::Result<BorrowedFd<'a>> {
    handle
        .as_fd()
        .ok_or_else(|| Unsupported::io_error("poll", op))
}

/// A socket of `domain` and `kind` with `options`' address reuse, bound to `addr`, non-blocking.
fn bound_socket(addr: SocketAddr, kind: Type, options: &SocketOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, None)?;
    socket.set_reuse_address(options.reuse_addr)?;
    if options.reuse_port {
        set_reuse_port(&socket)?;
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin")))]
fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))]
fn set_reuse_port(_: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT does not exist on this system",
    ))
}

/// The backlog as `listen(2)` takes it (the kernel caps it at its own limit anyway).
fn backlog(backlog: u32) -> i32 {
    i32::try_from(backlog).unwrap_or(i32::MAX)
}

/// A TCP listener on `addr` with `options`, non-blocking (its accepts wait for readiness).
fn bind(addr: SocketAddr, options: &SocketOptions) -> io::Result<Handle> {
    let socket = bound_socket(addr, Type::STREAM, options)?;
    socket.listen(backlog(options.backlog))?;
    Ok(Handle::new(net::TcpListener::from(socket)))
}

/// A UDP socket on `addr` with `options`' address reuse, non-blocking.
fn bind_udp(addr: SocketAddr, options: &SocketOptions) -> io::Result<Handle> {
    let socket = bound_socket(addr, Type::DGRAM, options)?;
    Ok(Handle::new(net::UdpSocket::from(socket)))
}

/// A Unix stream listener (listening with `backlog`) or datagram socket bound to `path`,
/// non-blocking. std's `UnixListener::bind` listens with a fixed backlog: the socket comes from
/// socket2.
fn bind_unix(path: &Path, kind: UnixKind, backlog_len: u32) -> io::Result<Handle> {
    let address = SockAddr::unix(path)?;
    let socket = match kind {
        UnixKind::Listener => Socket::new(Domain::UNIX, Type::STREAM, None)?,
        UnixKind::Datagram => Socket::new(Domain::UNIX, Type::DGRAM, None)?,
    };
    socket.set_nonblocking(true)?;
    socket.bind(&address)?;
    Ok(match kind {
        UnixKind::Listener => {
            socket.listen(backlog(backlog_len))?;
            Handle::new(unix::UnixListener::from(std::os::fd::OwnedFd::from(socket)))
        }
        UnixKind::Datagram => {
            Handle::new(unix::UnixDatagram::from(std::os::fd::OwnedFd::from(socket)))
        }
    })
}

/// A Unix connect, begun (its socket made, non-blocking, into the op's output slot, so dropping
/// the op closes it) or tried again. A listener with room connects at once (Linux never
/// answers `EINPROGRESS` here; other systems may, and then the socket's writability ends it);
/// one whose backlog is full answers `EAGAIN` without queuing anything, and the socket reports
/// writable at once: there is nothing to wait for, so the connect is tried again shortly
/// ([`Attempt::Later`]).
fn connect_unix(path: &Path, stream: &mut Option<Handle>) -> Attempt {
    if stream.is_none() {
        let socket = match Socket::new(Domain::UNIX, Type::STREAM, None)
            .and_then(|socket| socket.set_nonblocking(true).map(|()| socket))
        {
            Ok(socket) => socket,
            Err(err) => return Attempt::Done(Err(err)),
        };
        let socket = unix::UnixStream::from(std::os::fd::OwnedFd::from(socket));
        *stream = Some(Handle::new(socket));
    }
    let socket = stream
        .as_ref()
        .and_then(|handle| handle.get::<unix::UnixStream>())
        .expect("made above");
    let begun = SockAddr::unix(path).and_then(|address| SockRef::from(socket).connect(&address));
    match begun {
        Ok(()) => Attempt::Done(Ok(0)),
        Err(err) if err.raw_os_error() == Some(libc::EISCONN) => Attempt::Done(Ok(0)),
        Err(err)
            if err.raw_os_error() == Some(libc::EINPROGRESS)
                || err.raw_os_error() == Some(libc::EALREADY) =>
        {
            Attempt::Wait(Interest::Write)
        }
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Attempt::Later
        }
        Err(err) => {
            *stream = None;
            Attempt::Done(Err(err))
        }
    }
}

/// Makes a non-blocking socket and begins connecting it. While the connect is in progress the
/// socket sits in the op's output slot (so the op owns it, and dropping the op closes it).
fn start_connect(addr: SocketAddr, stream: &mut Option<Handle>) -> Attempt {
    let socket = match Socket::new(Domain::for_address(addr), Type::STREAM, None) {
        Ok(socket) => socket,
        Err(err) => return Attempt::Done(Err(err)),
    };
    if let Err(err) = socket.set_nonblocking(true) {
        return Attempt::Done(Err(err));
    }
    let begun = socket.connect(&addr.into());
    *stream = Some(Handle::new(net::TcpStream::from(socket)));
    match begun {
        Ok(()) => Attempt::Done(Ok(0)),
        // A non-blocking connect answers EINPROGRESS (std's `ErrorKind::InProgress` is not
        // stable yet), or EINTR if a signal came: it goes on either way.
        Err(err)
            if err.raw_os_error() == Some(libc::EINPROGRESS)
                || matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
        {
            Attempt::Wait(Interest::Write)
        }
        Err(err) => {
            *stream = None;
            Attempt::Done(Err(err))
        }
    }
}

/// A connect in progress, once its socket is writable: the socket's pending error
/// (`SO_ERROR`), or connected, or (a spurious wake) still in progress.
fn finish_connect(stream: &mut Option<Handle>) -> Attempt {
    let outcome = match stream.as_ref() {
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a connect without its socket",
        )),
        Some(handle) => std_of::<net::TcpStream>(handle, "connect").and_then(|socket| match socket
            .take_error(
        )? {
            Some(err) => Err(err),
            None => socket.peer_addr().map(Some).or_else(|err| {
                if err.kind() == io::ErrorKind::NotConnected {
                    Ok(None)
                } else {
                    Err(err)
                }
            }),
        }),
    };
    match outcome {
        Ok(Some(_peer)) => Attempt::Done(Ok(0)),
        Ok(None) => Attempt::Wait(Interest::Write),
        Err(err) => {
            *stream = None;
            Attempt::Done(Err(err))
        }
    }
}

/// The std resource behind a handle this backend issued, or a typed refusal of `op` on one it
/// did not (a handle of another backend's kind).
fn std_of<'a, R: std::any::Any>(handle: &'a Handle, op: &'static str) -> io::Result<&'a R> {
    handle.std::<R>("poll", op)
}

/// Opens a file on the loop's thread without ever waiting in `open(2)`: a FIFO with no writer
/// (or a device that waits for a carrier) would block the whole loop. `O_NONBLOCK` makes such an
/// open return at once (a FIFO opened for writing with no reader fails with `ENXIO` instead of
/// waiting); the flag is cleared again, so reads and writes on the file behave as usual.
fn open_without_waiting(options: &io_core::OpenOptions, path: &Path) -> io::Result<fs::File> {
    let file = options.to_std().custom_flags(libc::O_NONBLOCK).open(path)?;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is the open descriptor `file` owns for the length of these calls; F_GETFL and
    // F_SETFL read and set its status flags and touch no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}
