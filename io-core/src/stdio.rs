//! The standard streams over op submission: [`stdin`], [`stdout`], [`stderr`], with owned
//! buffers, and `futures-io`'s `AsyncRead` / `AsyncWrite` through `compat()`.
//!
//! Real backends other than blocking read and write them on their thread pool (a terminal, a
//! pipe and a file cannot all be polled, and a read of stdin may wait for ever); blocking does it
//! inline; fiber simulates them per host (input given to the world, output captured), so a run
//! stays deterministic.
//!
//! A stdin read whose caller has gone (canceled while it waits, or its future dropped) takes
//! nothing: stdin is read into one queue per process, and bytes leave it only for a read that
//! is still waiting, in order. `AsyncRead` on [`Stdin`]'s `compat()` never reads ahead of its caller, so a
//! dropped `Stdin` holds no byte another reader could want.

use std::fmt;
use std::io;

use crate::adapter::{compat_source, Compat, SourceOps};
use crate::offload::{Offload, StdStream, Stdio};
use crate::op::Op;
use crate::Cx;

/// The process's standard input on `cx`'s backend.
pub fn stdin(cx: &Cx) -> Stdin {
    Stdin {
        cx: cx.clone(),
        stream: StdStream::In,
    }
}

/// The process's standard output on `cx`'s backend. Each write is flushed.
pub fn stdout(cx: &Cx) -> Stdout {
    Stdout {
        cx: cx.clone(),
        stream: StdStream::Out,
    }
}

/// The process's standard error on `cx`'s backend. Each write is flushed.
///
/// ```
/// io_blocking::BlockingIo::new()
///     .run(|cx| async move {
///         let (written, _) = io_core::stdio::stderr(&cx).write_all(b"to stderr\n".to_vec()).await;
///         written.unwrap();
///         Ok(())
///     })
///     .unwrap();
/// ```
pub fn stderr(cx: &Cx) -> Stdout {
    Stdout {
        cx: cx.clone(),
        stream: StdStream::Err,
    }
}

async fn submit(cx: &Cx, stream: StdStream, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    crate::op::submit_buf(cx, Op::Offload(Offload::Stdio(Stdio::new(stream, buf)))).await
}

/// Standard input ([`stdin`]).
pub struct Stdin {
    cx: Cx,
    stream: StdStream,
}

impl Stdin {
    /// `futures-io`'s `AsyncRead` over stdin ([`Compat`]; it never reads ahead of its caller).
    pub fn compat(self) -> Compat<Stdin> {
        Compat::new(self)
    }

    /// Reads into `buf` (up to its capacity, which must not be 0; `0` read: end of input).
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if buf.capacity() == 0 {
            let err = io::Error::new(
                io::ErrorKind::InvalidInput,
                "a stdin read into a buffer with no capacity",
            );
            return (Err(err), buf);
        }
        submit(&self.cx, self.stream, buf).await
    }
}

/// Standard output or error ([`stdout`], [`stderr`]).
pub struct Stdout {
    cx: Cx,
    stream: StdStream,
}

impl Stdout {
    /// Writes `buf` (maybe not all of it) and flushes; returns how many bytes were written.
    pub async fn write(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        submit(&self.cx, self.stream, buf).await
    }

    /// `futures-io`'s `AsyncWrite` over the stream ([`Compat`]).
    pub fn compat(self) -> Compat<Stdout> {
        Compat::new(self)
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut done = 0;
        while done < buf.len() {
            let rest = buf[done..].to_vec();
            let (result, _) = self.write(rest).await;
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }
}

compat_source!(Stdin, |s| SourceOps::Std(s.stream), CompatRead);
compat_source!(Stdout, |s| SourceOps::Std(s.stream), CompatWrite);

impl fmt::Debug for Stdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stdin")
            .field("backend", &self.cx.backend())
            .finish()
    }
}

impl fmt::Debug for Stdout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stdout")
            .field("stream", &self.stream)
            .field("backend", &self.cx.backend())
            .finish()
    }
}
