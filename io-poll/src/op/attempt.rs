//! Each op as the system calls it makes. Sockets are non-blocking: a call that would block
//! answers [`Attempt::Wait`] with the readiness to wait for, and the op is tried again when the
//! socket is ready. Files are served inline with std calls (see DESIGN.md, "Files inline").

use std::fs;
use std::io::{self, Write};
use std::net::{self, SocketAddr};
use std::os::unix::fs::FileExt;

use io_core::op::read_into;
use io_core::{Handle, Op, Unsupported};
use socket2::{Domain, SockRef, Socket, Type};

/// What one try of an op came to.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// The op ended with this result.
    Done(io::Result<usize>),
    /// The socket is not ready: try again once it is.
    Wait(Interest),
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
        Op::Accept { listener, .. } => Some(listener),
        Op::Recv { stream, .. } | Op::Send { stream, .. } => Some(stream),
        Op::Connect { stream, .. } => stream.as_ref(),
        _ => None,
    }
}

/// The readiness a socket op waits for when it would block (`None` for ops that never wait, and
/// for a connect not begun: its socket does not exist yet).
pub(crate) fn interest(op: &Op) -> Option<Interest> {
    match op {
        Op::Accept { .. } | Op::Recv { .. } => Some(Interest::Read),
        Op::Send { .. }
        | Op::Connect {
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
        } => options
            .to_std()
            .open(path)
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
        Op::Bind { addr, listener, .. } => {
            bind(*addr).map(|bound| *listener = Some(bound)).map(|()| 0)
        }
        Op::Accept { listener, accepted } => {
            return would_block(Interest::Read, || {
                let (stream, peer) = std_of::<net::TcpListener>(listener, "accept")?.accept()?;
                stream.set_nonblocking(true)?;
                *accepted = Some((Handle::new(stream), peer));
                Ok(0)
            })
        }
        Op::Connect { stream, .. } => return finish_connect(stream),
        Op::Recv { stream, buf } => {
            return would_block(Interest::Read, || {
                recv_into(std_of::<net::TcpStream>(stream, "recv")?, buf)
            })
        }
        Op::Send { stream, buf } => {
            return would_block(Interest::Write, || {
                std_of::<net::TcpStream>(stream, "send")?.write(buf)
            })
        }
        Op::Shutdown { stream, how } => std_of::<net::TcpStream>(stream, "shutdown")
            .and_then(|stream| stream.shutdown(*how))
            .map(|()| 0),
        _ => Err(Unsupported::io_error("poll", op.name())),
    };
    Attempt::Done(result)
}

/// Runs a non-blocking call, again if a signal interrupted it; `WouldBlock` means wait for
/// `interest`.
fn would_block(interest: Interest, mut call: impl FnMut() -> io::Result<usize>) -> Attempt {
    loop {
        match call() {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Attempt::Wait(interest),
            result => return Attempt::Done(result),
        }
    }
}

/// Receives into the spare room of `buf` from its start, up to its capacity; its length becomes
/// the count received (0 on an error), as [`read_into`] does, but without zeroing the room first
/// (see DESIGN.md, "Receives into the buffer's room").
fn recv_into(stream: &net::TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    let received = SockRef::from(stream).recv(buf.spare_capacity_mut())?;
    // SAFETY: `recv` initialized the first `received` bytes of the spare room, which starts at
    // index 0 (the vector was cleared) and is at least that long.
    unsafe { buf.set_len(received) };
    Ok(received)
}

/// A listener on `addr`, non-blocking (its accepts wait for readiness).
fn bind(addr: SocketAddr) -> io::Result<Handle> {
    let listener = net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(Handle::new(listener))
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
