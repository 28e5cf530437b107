//! Ops performed synchronously, with plain std calls, inside `submit`.
//!
//! A read or a write on a connection whose other end is this backend's own (see
//! [`OwnSockets`]) would block the only thread that could make it progress: it waits
//! [`DEADLOCK_GRACE`] at most and then fails with [`WouldDeadlock`] instead of hanging.

use std::cell::RefCell;
use std::fs;
use std::io::{self, Read, Write};
use std::net;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use io_core::op::read_into;
use io_core::{Completion, Handle, Op, Unsupported, WouldDeadlock};

use crate::own_sockets::OwnSockets;
use crate::DEADLOCK_GRACE;

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
        } => {
            *file = Some(Handle::new(options.to_std().open(path)?));
            Ok(0)
        }
        Op::ReadAt { file, buf, offset } => {
            let file = std_of::<fs::File>(file, "read_at")?;
            read_into(buf, |space| file.read_at(space, *offset))
        }
        Op::WriteAt { file, buf, offset } => {
            std_of::<fs::File>(file, "write_at")?.write_at(buf, *offset)
        }
        Op::SyncAll { file } => std_of::<fs::File>(file, "sync_all")?.sync_all().map(|()| 0),
        Op::Len { file, len } => {
            *len = std_of::<fs::File>(file, "len")?.metadata()?.len();
            Ok(0)
        }
        Op::Bind { addr, listener, .. } => {
            let bound = Handle::new(net::TcpListener::bind(*addr)?);
            own.borrow_mut().record(&bound);
            *listener = Some(bound);
            Ok(0)
        }
        Op::Accept { listener, accepted } => {
            let (stream, peer) = std_of::<net::TcpListener>(listener, "accept")?.accept()?;
            let stream = Handle::new(stream);
            own.borrow_mut().record(&stream);
            *accepted = Some((stream, peer));
            Ok(0)
        }
        Op::Connect { addr, stream } => {
            let connected = Handle::new(net::TcpStream::connect(*addr)?);
            own.borrow_mut().record(&connected);
            *stream = Some(connected);
            Ok(0)
        }
        Op::Recv { stream, buf } => {
            let mut stream = std_of::<net::TcpStream>(stream, "recv")?;
            let own_peer = own.borrow_mut().own_peer(stream);
            if let Some(peer) = own_peer {
                if !readable_within(stream, DEADLOCK_GRACE)? {
                    return Err(WouldDeadlock { op: "recv", peer }.into());
                }
            }
            read_into(buf, |space| stream.read(space))
        }
        Op::Send { stream, buf } => {
            let mut stream = std_of::<net::TcpStream>(stream, "send")?;
            let own_peer = own.borrow_mut().own_peer(stream);
            match own_peer {
                Some(peer) => write_within(stream, buf, DEADLOCK_GRACE)?
                    .ok_or_else(|| WouldDeadlock { op: "send", peer }.into()),
                None => stream.write(buf),
            }
        }
        Op::Shutdown { stream, how } => std_of::<net::TcpStream>(stream, "shutdown")?
            .shutdown(*how)
            .map(|()| 0),
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

/// Whether `stream` has something to read — bytes, the end of the stream, or an error — within
/// `grace`. (Bytes the peer has written may still be held back in its kernel, such as a small
/// segment Nagle's algorithm delays until an acknowledgement: hence a grace, not a glance.)
fn readable_within(stream: &net::TcpStream, grace: Duration) -> io::Result<bool> {
    let saved = stream.read_timeout()?;
    stream.set_read_timeout(Some(grace))?;
    let peeked = loop {
        match stream.peek(&mut [0; 1]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    stream.set_read_timeout(saved)?;
    Ok(!peeked.is_err_and(|e| timed_out(&e)))
}

/// Writes what `stream` takes of `buf` within `grace`: `None` if it took nothing.
fn write_within(
    mut stream: &net::TcpStream,
    buf: &[u8],
    grace: Duration,
) -> io::Result<Option<usize>> {
    let saved = stream.write_timeout()?;
    stream.set_write_timeout(Some(grace))?;
    let written = stream.write(buf);
    stream.set_write_timeout(saved)?;
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
