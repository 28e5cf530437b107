//! The state behind the `futures-io` impls of [`File`](crate::File) and
//! [`TcpStream`](crate::TcpStream), written once: poll-style reads and writes over owned-buffer
//! ops.
//!
//! - A read in flight survives a dropped read future: the next `poll_read` resumes it, and bytes
//!   received beyond what the caller's slice takes wait here for the next call.
//! - `poll_write` copies the bytes into a buffer it owns, starts the write and reports them
//!   written; a later write, a flush or a close drives it to its end (resubmitting after short
//!   writes) and reports its error, if any.

use std::io;
use std::task::{Context, Poll};

use futures_lite::FutureExt;

use crate::op::{Completion, Op};
use crate::{Cx, Submit};

/// How an I/O type's reads and writes become ops. `offset` is the adapter's cursor; streams
/// ignore it.
pub(crate) trait OpSource {
    fn read_op(&self, buf: Vec<u8>, offset: u64) -> Op;
    fn write_op(&self, buf: Vec<u8>, offset: u64) -> Op;
    /// What `poll_close` runs after flushing (a stream shuts its write half down).
    fn close_op(&self) -> Option<Op>;
}

#[derive(Default)]
pub(crate) struct Adapter {
    /// Where the next read or write starts (files); past any read-ahead.
    cursor: u64,
    reading: Option<Submit>,
    /// Received bytes not handed out yet: `unread[read_pos..]`.
    unread: Vec<u8>,
    read_pos: usize,
    /// The write in flight and the offset it writes at.
    writing: Option<(Submit, u64)>,
    spare_write: Vec<u8>,
    closing: Option<Submit>,
}

impl Adapter {
    /// Drops read-ahead that was not handed out, moving the cursor back to the caller's position
    /// (a write must land where the caller believes it is).
    fn forget_read_ahead(&mut self) {
        let ahead = (self.unread.len() - self.read_pos) as u64;
        self.cursor -= ahead;
        self.unread.clear();
        self.read_pos = 0;
        self.reading = None;
    }

    /// Drives the write in flight to its end, resubmitting after short writes.
    fn poll_write_in_flight(
        &mut self,
        cx: &Cx,
        task: &mut Context<'_>,
        source: &impl OpSource,
    ) -> Poll<io::Result<()>> {
        while let Some((writing, offset)) = self.writing.as_mut() {
            let offset = *offset;
            let Completion { result, op } = match writing.poll(task) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(done) => done,
            };
            self.writing = None;
            let mut buf = op.into_buf();
            match result {
                Ok(n) if n < buf.len() && n > 0 => {
                    buf.drain(..n);
                    let next = offset + n as u64;
                    self.writing = Some((cx.submit(source.write_op(buf, next)), next));
                }
                Ok(0) if !buf.is_empty() => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Ok(_) => {
                    buf.clear();
                    self.spare_write = buf;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &Cx,
        task: &mut Context<'_>,
        source: &impl OpSource,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // A read after a write sees the written bytes.
        if self.poll_write_in_flight(cx, task, source)?.is_pending() {
            return Poll::Pending;
        }
        loop {
            if self.read_pos < self.unread.len() {
                let n = out.len().min(self.unread.len() - self.read_pos);
                out[..n].copy_from_slice(&self.unread[self.read_pos..self.read_pos + n]);
                self.read_pos += n;
                return Poll::Ready(Ok(n));
            }
            let cursor = self.cursor;
            let reading = self.reading.get_or_insert_with(|| {
                let mut buf = std::mem::take(&mut self.unread);
                buf.clear();
                buf.reserve(out.len().max(8192));
                cx.submit(source.read_op(buf, cursor))
            });
            let Completion { result, op } = match reading.poll(task) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(done) => done,
            };
            self.reading = None;
            self.unread = op.into_buf();
            self.read_pos = 0;
            match result {
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(n) => self.cursor += n as u64,
                Err(e) => {
                    self.unread.clear();
                    return Poll::Ready(Err(e));
                }
            }
        }
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &Cx,
        task: &mut Context<'_>,
        source: &impl OpSource,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.poll_write_in_flight(cx, task, source)?.is_pending() {
            return Poll::Pending;
        }
        self.forget_read_ahead();
        // The bytes are ours now: start writing them and report them written.
        let mut buf = std::mem::take(&mut self.spare_write);
        buf.clear();
        buf.extend_from_slice(data);
        let offset = self.cursor;
        self.cursor += data.len() as u64;
        self.writing = Some((cx.submit(source.write_op(buf, offset)), offset));
        // Poll once so a backend that completes inline (blocking) is done right here.
        if let Poll::Ready(Err(e)) = self.poll_write_in_flight(cx, task, source) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    pub(crate) fn poll_flush(
        &mut self,
        cx: &Cx,
        task: &mut Context<'_>,
        source: &impl OpSource,
    ) -> Poll<io::Result<()>> {
        self.poll_write_in_flight(cx, task, source)
    }

    /// Flushes the write in flight, then lets the adapter go: a read it left in flight is
    /// dropped (canceled) here, so it holds no handle of the descriptor when the I/O type closes
    /// it.
    pub(crate) async fn finish(mut self, cx: &Cx, source: &impl OpSource) -> io::Result<()> {
        std::future::poll_fn(|task| self.poll_flush(cx, task, source)).await
    }

    pub(crate) fn poll_close(
        &mut self,
        cx: &Cx,
        task: &mut Context<'_>,
        source: &impl OpSource,
    ) -> Poll<io::Result<()>> {
        if self.poll_write_in_flight(cx, task, source)?.is_pending() {
            return Poll::Pending;
        }
        if self.closing.is_none() {
            match source.close_op() {
                Some(op) => self.closing = Some(cx.submit(op)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let closing = self.closing.as_mut().expect("set above");
        let done = std::task::ready!(closing.poll(task));
        self.closing = None;
        Poll::Ready(done.result.map(drop))
    }
}

/// Implements `AsyncRead` and `AsyncWrite` for `$ty` through its `adapter` field, building ops
/// with `$ops` over its `$handle` field.
macro_rules! futures_io_through_adapter {
    ($ty:ty, $ops:ident, $handle:ident) => {
        impl futures_lite::io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                task: &mut std::task::Context<'_>,
                out: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let this = self.get_mut();
                this.adapter
                    .poll_read(&this.cx, task, &$ops(&this.$handle), out)
            }
        }

        impl futures_lite::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                task: &mut std::task::Context<'_>,
                data: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let this = self.get_mut();
                this.adapter
                    .poll_write(&this.cx, task, &$ops(&this.$handle), data)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                task: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let this = self.get_mut();
                this.adapter
                    .poll_flush(&this.cx, task, &$ops(&this.$handle))
            }

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                task: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let this = self.get_mut();
                this.adapter
                    .poll_close(&this.cx, task, &$ops(&this.$handle))
            }
        }
    };
}

pub(crate) use futures_io_through_adapter;
