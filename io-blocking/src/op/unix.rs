//! Unix sockets: stream listeners and connections, datagram sockets.
//!
//! What is reported as a [`WouldDeadlock`] (see [`OwnSockets`] for how the peer is known):
//! - a receive on a stream whose other end is ours — a client connected here to a listener of
//!   ours (accepted or still in its backlog), or the accepted end of such a client — when
//!   nothing arrives within the grace;
//! - a send on such a stream that the peer does not take within the grace (its buffer is full);
//! - a connect to a listener of ours whose backlog is full: only this thread could accept.
//!
//! What is not: a datagram receive (anyone who can reach the socket's path may send), a datagram
//! send to a socket of ours whose queue is full (the send may also be waiting for room that
//! datagrams queued at *other* receivers hold, which those receivers may free), an accept.
//!
//! The report names its peer as [`PeerAddr::Unix`]`(None)`: the other end is one of this run's
//! own Unix sockets, but which path (if any) it has is not tracked.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use io_core::op::{read_into, UnixKind};
use io_core::{Handle, PeerAddr, WouldDeadlock};
use socket2::{Domain, SockAddr, Socket, Type};

use super::{backlog, readable_within, std_of, write_within};
use crate::own_sockets::OwnSockets;
use crate::DEADLOCK_GRACE;

fn would_deadlock(op: &'static str) -> io::Error {
    // The other end is one of this run's own sockets; which path it has is not tracked.
    WouldDeadlock {
        op,
        peer: PeerAddr::Unix(None),
    }
    .into()
}

pub(super) fn bind(
    path: &Path,
    kind: UnixKind,
    listen_backlog: u32,
    socket: &mut Option<Handle>,
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    let bound = match kind {
        UnixKind::Listener => {
            let listener = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            listener.bind(&SockAddr::unix(path)?)?;
            listener.listen(backlog(listen_backlog))?;
            Handle::new(UnixListener::from(listener))
        }
        UnixKind::Datagram => Handle::new(UnixDatagram::bind(path)?),
    };
    own.borrow_mut().record(&bound);
    *socket = Some(bound);
    Ok(0)
}

/// Connects to the listener at `path`. If it is ours, a full backlog is reported (only this
/// thread could accept) and the new stream is recorded as a client of ours.
pub(super) fn connect(
    path: &Path,
    stream: &mut Option<Handle>,
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    let addr = SockAddr::unix(path)?;
    let to_own = own.borrow_mut().own_unix_listener(path);
    if to_own {
        // Names the client (an abstract address the kernel picks at connect), so the end our
        // listener accepts can be told to be this stream's (`OwnSockets::own_unix_peer`).
        #[cfg(target_os = "linux")]
        socket.set_passcred(true)?;
        match write_within(&socket, DEADLOCK_GRACE, || {
            socket.connect(&addr).map(|()| 0)
        })? {
            Some(_) => {}
            None => return Err(would_deadlock("connect_unix")),
        }
    } else {
        socket.connect(&addr)?;
    }
    let connected = Handle::new(UnixStream::from(socket));
    // Checked again after the connect: the path named our listener all along.
    if to_own && own.borrow_mut().own_unix_listener(path) {
        own.borrow_mut().record_unix_client(&connected);
    }
    *stream = Some(connected);
    Ok(0)
}

pub(super) fn accept(
    listener: &Handle,
    accepted: &mut Option<Handle>,
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    let (stream, _) = std_of::<UnixListener>(listener, "accept_unix")?.accept()?;
    let stream = Handle::new(stream);
    own.borrow_mut().record(&stream);
    *accepted = Some(stream);
    Ok(0)
}

pub(super) fn recv(
    stream: &Handle,
    buf: &mut Vec<u8>,
    own: &RefCell<OwnSockets>,
) -> io::Result<usize> {
    let mut stream = std_of::<UnixStream>(stream, "recv")?;
    let own_peer = own.borrow_mut().own_unix_peer(stream);
    if own_peer && !readable_within(stream, DEADLOCK_GRACE)? {
        return Err(would_deadlock("recv"));
    }
    read_into(buf, |space| stream.read(space))
}

pub(super) fn send(stream: &Handle, buf: &[u8], own: &RefCell<OwnSockets>) -> io::Result<usize> {
    let mut stream = std_of::<UnixStream>(stream, "send")?;
    let own_peer = own.borrow_mut().own_unix_peer(stream);
    if own_peer {
        write_within(stream, DEADLOCK_GRACE, || stream.write(buf))?
            .ok_or_else(|| would_deadlock("send"))
    } else {
        stream.write(buf)
    }
}

pub(super) fn shutdown(stream: &Handle, how: Shutdown) -> io::Result<usize> {
    std_of::<UnixStream>(stream, "shutdown")?
        .shutdown(how)
        .map(|()| 0)
}

pub(super) fn send_to(socket: &Handle, buf: &[u8], path: &Path) -> io::Result<usize> {
    std_of::<UnixDatagram>(socket, "send_to_unix")?.send_to(buf, path)
}

pub(super) fn recv_from(
    socket: &Handle,
    buf: &mut Vec<u8>,
    from: &mut Option<PathBuf>,
) -> io::Result<usize> {
    let socket = std_of::<UnixDatagram>(socket, "recv_from_unix")?;
    read_into(buf, |space| {
        let (n, sender) = socket.recv_from(space)?;
        *from = sender.as_pathname().map(PathBuf::from);
        Ok(n)
    })
}
