//! Ops performed synchronously, with plain std calls, inside `submit`.

use std::fs;
use std::io::{self, Read, Write};
use std::net;
use std::os::unix::fs::FileExt;

use io_core::op::read_into;
use io_core::{Completion, Handle, Op, Unsupported};

/// Performs `op` now, blocking the thread, and returns its completion.
pub(crate) fn perform(mut op: Op) -> Completion {
    let result = perform_in_place(&mut op);
    Completion { result, op }
}

fn perform_in_place(op: &mut Op) -> io::Result<usize> {
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
        Op::Bind { addr, listener } => {
            *listener = Some(Handle::new(net::TcpListener::bind(*addr)?));
            Ok(0)
        }
        Op::Accept { listener, accepted } => {
            let (stream, peer) = std_of::<net::TcpListener>(listener, "accept")?.accept()?;
            *accepted = Some((Handle::new(stream), peer));
            Ok(0)
        }
        Op::Connect { addr, stream } => {
            *stream = Some(Handle::new(net::TcpStream::connect(*addr)?));
            Ok(0)
        }
        Op::Recv { stream, buf } => {
            let mut stream = std_of::<net::TcpStream>(stream, "recv")?;
            read_into(buf, |space| stream.read(space))
        }
        Op::Send { stream, buf } => std_of::<net::TcpStream>(stream, "send")?.write(buf),
        Op::Shutdown { stream, how } => std_of::<net::TcpStream>(stream, "shutdown")?
            .shutdown(*how)
            .map(|()| 0),
        Op::Close { handle } => {
            // Nothing is ever in flight here, so this is the last handle and dropping it closes
            // the descriptor (std reports no error from close(2)).
            drop(handle.take());
            Ok(0)
        }
        _ => Err(Unsupported::io_error("blocking", op.name())),
    }
}

/// The std resource behind a handle this backend issued, or a typed refusal of `op` on one it
/// did not (a handle of another backend's kind).
fn std_of<'a, R: std::any::Any>(handle: &'a Handle, op: &'static str) -> io::Result<&'a R> {
    handle.std::<R>("blocking", op)
}
