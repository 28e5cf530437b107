//! Ops performed synchronously, with plain std (and socket2) calls, inside `submit`: files in
//! [`fs`], TCP and UDP in [`net`], Unix sockets in [`unix`]; offloaded work runs right here
//! ([`Offload::perform`](io_core::offload::Offload::perform)), since this backend has no other
//! thread to run it on.
//!
//! A read or a write on a socket whose only possible counterpart is this backend's own (see
//! [`OwnSockets`]) would block the only thread that could make it progress: it waits
//! [`DEADLOCK_GRACE`] at most and then fails with [`WouldDeadlock`](io_core::WouldDeadlock)
//! instead of hanging.

mod fs;
mod net;
mod unix;

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::time::Duration;

use io_core::{Completion, Handle, Op, Unsupported};
use socket2::SockRef;

use crate::own_sockets::OwnSockets;

/// Performs `op` now, blocking the thread, and returns its completion. `own` records the
/// sockets it issues.
pub(crate) fn perform(mut op: Op, own: &RefCell<OwnSockets>) -> Completion {
    let result = perform_in_place(&mut op, own);
    Completion { result, op }
}

fn perform_in_place(op: &mut Op, own: &RefCell<OwnSockets>) -> io::Result<usize> {
    match op {
        Op::Nop => Ok(0),
        Op::Open {
            path,
            options,
            file,
        } => fs::open(path, options, file),
        Op::ReadAt { file, buf, offset } => fs::read_at(file, buf, *offset),
        Op::WriteAt { file, buf, offset } => fs::write_at(file, buf, *offset),
        Op::SyncAll { file } => fs::sync_all(file),
        Op::Len { file, len } => fs::len(file, len),
        Op::SetLen { file, len } => fs::set_len(file, *len),
        Op::Stat { file, metadata } => fs::stat(file, metadata),
        Op::Bind {
            addr,
            options,
            listener,
        } => net::bind(*addr, options, listener, own),
        Op::Accept { listener, accepted } => net::accept(listener, accepted, own),
        Op::Connect { addr, stream } => net::connect(*addr, stream, own),
        Op::Recv { stream, buf } => {
            if stream.get::<std::net::TcpStream>().is_some() {
                net::recv_tcp(stream, buf, own)
            } else if stream.get::<std::net::UdpSocket>().is_some() {
                net::recv_udp(stream, buf, own)
            } else {
                unix::recv(stream, buf, own)
            }
        }
        Op::Send { stream, buf } => {
            if stream.get::<std::net::TcpStream>().is_some() {
                net::send_tcp(stream, buf, own)
            } else if stream.get::<std::net::UdpSocket>().is_some() {
                net::send_udp(stream, buf)
            } else {
                unix::send(stream, buf, own)
            }
        }
        Op::Shutdown { stream, how } => {
            if let Some(tcp) = stream.get::<std::net::TcpStream>() {
                tcp.shutdown(*how).map(|()| 0)
            } else {
                unix::shutdown(stream, *how)
            }
        }
        Op::BindUdp {
            addr,
            options,
            socket,
        } => net::bind_udp(*addr, options, socket, own),
        Op::ConnectUdp { socket, addr } => net::connect_udp(socket, *addr),
        Op::SendTo { socket, buf, addr } => net::send_to(socket, buf, *addr),
        Op::RecvFrom { socket, buf, from } => net::recv_from(socket, buf, from, own),
        Op::BindUnix {
            path,
            kind,
            backlog,
            socket,
        } => unix::bind(path, *kind, *backlog, socket, own),
        Op::ConnectUnix { path, stream } => unix::connect(path, stream, own),
        Op::AcceptUnix { listener, accepted } => unix::accept(listener, accepted, own),
        Op::SendToUnix { socket, buf, path } => unix::send_to(socket, buf, path),
        Op::RecvFromUnix { socket, buf, from } => unix::recv_from(socket, buf, from),
        // No other thread to hand it to: run it here. A `spawn_blocking` closure's panic is
        // caught into its output by `Blocking::run`.
        Op::Offload(work) => work.perform(),
        Op::Close { handle } => {
            // Nothing is ever in flight here, so this is the last handle and dropping it closes
            // the descriptor (std reports no error from close(2)).
            if let Some(handle) = handle.take() {
                own.borrow_mut().forget(&handle);
            }
            Ok(0)
        }
        _ => Err(Unsupported::io_error("blocking", op.name())),
    }
}

/// Whether `socket` has something to read — bytes, a datagram, the end of the stream, or an
/// error — within `grace`. (Bytes the peer has written may still be held back in its kernel,
/// such as a small segment Nagle's algorithm delays until an acknowledgement, or a datagram
/// still in the loopback's queue: hence a grace, not a glance.)
fn readable_within(socket: &impl AsFd, grace: Duration) -> io::Result<bool> {
    let socket = SockRef::from(socket);
    let saved = socket.read_timeout()?;
    socket.set_read_timeout(Some(grace))?;
    let peeked = loop {
        match socket.peek(&mut [MaybeUninit::uninit(); 1]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    socket.set_read_timeout(saved)?;
    Ok(!peeked.is_err_and(|e| timed_out(&e)))
}

/// Runs `write` on `socket` with a send timeout of `grace`: `None` if it took nothing.
fn write_within(
    socket: &impl AsFd,
    grace: Duration,
    write: impl FnOnce() -> io::Result<usize>,
) -> io::Result<Option<usize>> {
    let socket = SockRef::from(socket);
    let saved = socket.write_timeout()?;
    socket.set_write_timeout(Some(grace))?;
    let written = write();
    socket.set_write_timeout(saved)?;
    match written {
        Err(e) if timed_out(&e) => Ok(None),
        other => other.map(Some),
    }
}

/// Whether a socket call ended because its timeout passed (`EAGAIN` on Unix).
fn timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The std resource behind a handle this backend issued, or a typed refusal of `op` on one it
/// did not (a handle of another backend's kind).
fn std_of<'a, R: std::any::Any>(handle: &'a Handle, op: &'static str) -> io::Result<&'a R> {
    handle.std::<R>("blocking", op)
}

/// `backlog` as `listen(2)` takes it (the kernel caps it at `somaxconn` anyway).
fn backlog(backlog: u32) -> i32 {
    i32::try_from(backlog).unwrap_or(i32::MAX)
}
