//! Ops performed synchronously, with plain std calls, inside `submit`.

use std::io::{self, Read, Write};
use std::net;
use std::os::unix::fs::FileExt;

use io_core::{Completion, Op};

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
            *file = Some(options.to_std().open(path)?);
            Ok(0)
        }
        Op::ReadAt { file, buf, offset } => read_into(buf, |space| file.read_at(space, *offset)),
        Op::WriteAt { file, buf, offset } => file.write_at(buf, *offset),
        Op::SyncAll { file } => file.sync_all().map(|()| 0),
        Op::Len { file, len } => {
            *len = file.metadata()?.len();
            Ok(0)
        }
        Op::Bind { addr, listener } => {
            *listener = Some(net::TcpListener::bind(*addr)?);
            Ok(0)
        }
        Op::Accept { listener, accepted } => {
            *accepted = Some(listener.accept()?);
            Ok(0)
        }
        Op::Connect { addr, stream } => {
            *stream = Some(net::TcpStream::connect(*addr)?);
            Ok(0)
        }
        Op::Recv { stream, buf } => read_into(buf, |space| (&**stream).read(space)),
        Op::Send { stream, buf } => (&**stream).write(buf),
        Op::Shutdown { stream, how } => stream.shutdown(*how).map(|()| 0),
        Op::Close { fd } => {
            // Nothing is ever in flight here, so this is the last handle and dropping it closes
            // the descriptor (std reports no error from close(2)).
            drop(fd.take());
            Ok(0)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the blocking backend does not know the op `{}`", op.name()),
        )),
    }
}

/// Reads into the spare room of `buf` from its start, up to its capacity; its length becomes the
/// count read.
fn read_into(
    buf: &mut Vec<u8>,
    read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    buf.resize(buf.capacity(), 0);
    let result = read(buf);
    buf.truncate(*result.as_ref().unwrap_or(&0));
    result
}
