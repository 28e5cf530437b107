//! The state behind the `futures-io` impls of [`File`](crate::File) and
//! [`TcpStream`](crate::TcpStream), written once: poll-style reads and writes over owned-buffer
//! ops.
//!
//! - A read in flight survives a dropped read future: the next `poll_read` resumes it, and bytes
//!   received beyond what the caller's slice takes wait here for the next call.
//! - `poll_write` copies the bytes into a buffer it owns, starts the write and returns `Pending`
//!   until the write's completion, then reports the count the backend wrote — never bytes that
//!   could still be canceled. After `Pending`, the caller polls again with the same bytes
//!   (futures-io's contract): that call waits for the write already in flight instead of
//!   submitting the bytes again. A write left in flight by a caller who gave up is driven to its
//!   end by the next write, flush, read or close.

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
    /// Whether reads and writes share one cursor (a file): a write then drops read-ahead and
    /// lands at the caller's position. A stream's received bytes are never dropped.
    fn positional(&self) -> bool;
}

#[derive(Default)]
pub(crate) struct Adapter {
    /// Where the next read or write starts (files); past any read-ahead.
    cursor: u64,
    reading: Option<Submit>,
    /// Received bytes not handed out yet: `unread[read_pos..]`.
    unread: Vec<u8>,
    read_pos: usize,
    /// The write in flight.
    writing: Option<Writing>,
    spare_write: Vec<u8>,
    closing: Option<Submit>,
}

/// A write in flight: its op, the offset it writes at, how many bytes it carries, and whether a
/// `poll_write` caller waits for its count (`false` for the rest of a write given up on).
struct Writing {
    submit: Submit,
    offset: u64,
    len: usize,
    awaited: bool,
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

    /// Drives the write in flight to its end, resubmitting after short writes (its bytes were
    /// handed over by a caller who no longer waits for the count).
    fn poll_write_in_flight(
        &mut self,
        cx: &Cx,
        task: &mut Context<'_>,
        source: &impl OpSource,
    ) -> Poll<io::Result<()>> {
        while self.writing.is_some() {
            let (result, offset, mut buf) = std::task::ready!(self.poll_write_op(task));
            match result {
                Ok(n) if n < buf.len() && n > 0 => {
                    buf.drain(..n);
                    let next = offset + n as u64;
                    self.writing = Some(Writing {
                        len: buf.len(),
                        submit: cx.submit(source.write_op(buf, next)),
                        offset: next,
                        awaited: false,
                    });
                }
                Ok(0) if !buf.is_empty() => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Ok(_) => self.keep_spare(buf),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Polls the write in flight (there must be one) once; at its completion, moves the cursor
    /// past what it wrote and gives back its result, offset and buffer.
    fn poll_write_op(&mut self, task: &mut Context<'_>) -> Poll<(io::Result<usize>, u64, Vec<u8>)> {
        let writing = self.writing.as_mut().expect("a write in flight");
        let Completion { result, op } = std::task::ready!(writing.submit.poll(task));
        let offset = writing.offset;
        self.writing = None;
        if let Ok(n) = result {
            self.cursor = offset + n as u64;
        }
        Poll::Ready((result, offset, op.into_buf()))
    }

    fn keep_spare(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        self.spare_write = buf;
    }

    /// Polls the write in flight for the caller who started it: its count, once it ends.
    fn poll_write_count(&mut self, task: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let (result, _, buf) = std::task::ready!(self.poll_write_op(task));
        self.keep_spare(buf);
        Poll::Ready(result)
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
        // A read after a write sees the written bytes (a stream's halves are independent).
        if source.positional() && self.poll_write_in_flight(cx, task, source)?.is_pending() {
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
        if let Some(writing) = &self.writing {
            if writing.awaited && writing.len <= data.len() {
                // Polled again after `Pending`, with the bytes already in flight: their count.
                return self.poll_write_count(task);
            }
            // Other bytes: the write in flight was given up on; it ends first.
            std::task::ready!(self.poll_write_in_flight(cx, task, source))?;
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if source.positional() {
            self.forget_read_ahead();
        }
        let mut buf = std::mem::take(&mut self.spare_write);
        buf.clear();
        buf.extend_from_slice(data);
        let offset = self.cursor;
        self.writing = Some(Writing {
            submit: cx.submit(source.write_op(buf, offset)),
            offset,
            len: data.len(),
            awaited: true,
        });
        // A backend that completes inline (blocking) is done right here.
        self.poll_write_count(task)
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
