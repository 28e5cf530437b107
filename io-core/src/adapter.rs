//! The state behind the `futures-io` impls of [`File`](crate::File) and
//! [`TcpStream`](crate::TcpStream), written once: poll-style reads and writes over owned-buffer
//! ops.
//!
//! - A read in flight survives a dropped read future: the next `poll_read` resumes it, and bytes
//!   received beyond what the caller's slice takes wait here for the next call.
//! - `poll_write` copies the bytes into a buffer it owns, starts the write and returns `Pending`
//!   until the write's completion, then reports the count the backend wrote — never bytes that
//!   could still be canceled.
//! - A write in flight cannot be recalled, so its count is owed to a caller. The `poll_write`
//!   that finds it ended gets the count if its own bytes start with the ones the write put out
//!   (futures-io's retry after `Pending`, same bytes or more): the stream then holds exactly
//!   what was reported. Any other caller — other bytes, a flush, a close — learns that a write
//!   given up on put bytes out unreported ([`AbandonedWrite`]) instead of writing. A given-up
//!   write that put out nothing is forgotten.

use std::io;
use std::task::{Context, Poll};

use futures_lite::FutureExt;

use crate::op::{Completion, Op};
use crate::{Cx, Submit};

/// The error of an `AsyncWrite` call on a [`File`](crate::File) or [`TcpStream`](crate::TcpStream)
/// that found a write the caller had given up on (its `poll_write` answered `Pending` and was
/// not polled again with the same bytes) already in the file or on the wire. Those bytes were in
/// the kernel and could not be recalled, and no call had reported them; the call that finds
/// them reports them instead of doing its own work — a `poll_write` returning this wrote nothing
/// of its own bytes, a flush or close went no further. The next call proceeds normally.
///
/// Reaches the caller as an [`io::Error`] of kind [`InvalidInput`](io::ErrorKind::InvalidInput)
/// (the calls, taken together, asked for something the adapter could not do: take back bytes
/// given to the kernel) wrapping this value. A caller that retries a given-up write with the
/// same bytes never sees it.
///
/// ```
/// use io_core::AbandonedWrite;
/// let err = AbandonedWrite::io_error(4, 4);
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// let inner = err.get_ref().unwrap().downcast_ref::<AbandonedWrite>().unwrap();
/// assert_eq!(inner.written, 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a write given up on after `Pending` had already written {written} of its {len} bytes, \
     which no call reported; this call did nothing else (retry a given-up write with the same \
     bytes, or account for these {written} bytes)"
)]
pub struct AbandonedWrite {
    /// Bytes of the given-up write that reached the file or the wire.
    pub written: usize,
    /// Bytes that write carried.
    pub len: usize,
}

impl AbandonedWrite {
    /// The [`io::Error`] carrying this report.
    pub fn io_error(written: usize, len: usize) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, AbandonedWrite { written, len })
    }
}

#[derive(Default)]
pub(crate) struct Adapter {
    /// Where the next read or write starts (files); past any read-ahead.
    cursor: u64,
    reading: Option<Submit>,
    /// Received bytes not handed out yet: `unread[read_pos..]`.
    unread: Vec<u8>,
    read_pos: usize,
    /// The last write started, until a caller has been told what became of it.
    write: Option<Unreported>,
    spare_write: Vec<u8>,
    closing: Option<Submit>,
    /// A seek from the end, waiting for the file's length.
    seeking: Option<Submit>,
}

/// A write whose outcome no caller has been told yet.
enum Unreported {
    /// In the backend: its op and the offset it writes at.
    InFlight { submit: Submit, offset: u64 },
    /// Ended: its result and the bytes it carried.
    Ended {
        result: io::Result<usize>,
        buf: Vec<u8>,
    },
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

    /// Forgets a write that never reached the backend (its first poll yielded to the operation
    /// budget, and its caller went away): it wrote nothing, so a later call must not send it.
    fn forget_unsubmitted_write(&mut self) {
        if let Some(Unreported::InFlight { submit, .. }) = &mut self.write {
            if let Some(op) = submit.take_unsubmitted() {
                self.spare_write = op.into_buf();
                self.write = None;
            }
        }
    }

    /// Waits for the write in flight, if any, to end; the cursor moves past what it wrote. Its
    /// outcome stays unreported.
    fn poll_write_end(&mut self, task: &mut Context<'_>) -> Poll<()> {
        if let Some(Unreported::InFlight { submit, offset }) = &mut self.write {
            let Completion { result, op } = std::task::ready!(submit.poll(task));
            if let Ok(n) = result {
                self.cursor = *offset + n as u64;
            }
            self.write = Some(Unreported::Ended {
                result,
                buf: op.into_buf(),
            });
        }
        Poll::Ready(())
    }

    /// Tells a `poll_write` of `data` what became of the ended write: its result, if `data`
    /// starts with the bytes it wrote (all it carried, when it wrote none); an [`AbandonedWrite`]
    /// if it wrote other bytes; `None` if it wrote nothing and `data` is other bytes.
    fn report_to_write(&mut self, data: &[u8]) -> Option<io::Result<usize>> {
        let Some(Unreported::Ended { result, buf }) = self.write.take() else {
            return None;
        };
        let report = match result {
            Ok(n) if n > 0 => Some(if data.starts_with(&buf[..n]) {
                Ok(n)
            } else {
                Err(AbandonedWrite::io_error(n, buf.len()))
            }),
            // Nothing reached the stream: it is a retry's result, or nothing at all.
            other => data.starts_with(&buf).then_some(other),
        };
        self.keep_spare(buf);
        report
    }

    /// Tells a flush or close what became of the ended write: nobody claimed it, so bytes it
    /// wrote are an [`AbandonedWrite`]; one that wrote nothing is forgotten.
    fn report_given_up(&mut self) -> io::Result<()> {
        let Some(Unreported::Ended { result, buf }) = self.write.take() else {
            return Ok(());
        };
        let len = buf.len();
        self.keep_spare(buf);
        match result {
            Ok(n) if n > 0 => Err(AbandonedWrite::io_error(n, len)),
            _ => Ok(()),
        }
    }

    fn keep_spare(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        self.spare_write = buf;
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &Cx,
        task: &mut Context<'_>,
        source: &SourceOps<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // A read after a write sees the written bytes (a stream's halves are independent).
        if source.positional() {
            self.forget_unsubmitted_write();
            if self.poll_write_end(task).is_pending() {
                return Poll::Pending;
            }
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
                let want = if source.read_ahead() {
                    out.len().max(8192)
                } else {
                    out.len()
                };
                buf.reserve(want);
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
        source: &SourceOps<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.forget_unsubmitted_write();
        loop {
            std::task::ready!(self.poll_write_end(task));
            if let Some(report) = self.report_to_write(data) {
                return Poll::Ready(report);
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
            self.write = Some(Unreported::InFlight {
                submit: cx.submit(source.write_op(buf, offset)),
                offset,
            });
            // Polled at once: a backend that completes inline (blocking) is done right here.
        }
    }

    /// Takes the bytes read ahead and not handed out yet.
    pub(crate) fn take_unread(&mut self) -> Vec<u8> {
        let unread = self.unread.split_off(self.read_pos.min(self.unread.len()));
        self.unread.clear();
        self.read_pos = 0;
        unread
    }

    /// Moves the cursor (files): flushes the write in flight and drops read-ahead first; a seek
    /// from the end reads the file's length with `len_op`.
    pub(crate) fn poll_seek(
        &mut self,
        cx: &Cx,
        task: &mut Context<'_>,
        len_op: impl FnOnce() -> Op,
        pos: io::SeekFrom,
    ) -> Poll<io::Result<u64>> {
        if self.seeking.is_none() {
            std::task::ready!(self.poll_flush(task))?;
            self.forget_read_ahead();
            match pos {
                io::SeekFrom::Start(to) => return Poll::Ready(self.seek_to(to.into())),
                io::SeekFrom::Current(by) => {
                    return Poll::Ready(self.seek_to(i128::from(self.cursor) + i128::from(by)))
                }
                io::SeekFrom::End(_) => self.seeking = Some(cx.submit(len_op())),
            }
        }
        let seeking = self.seeking.as_mut().expect("set above");
        let Completion { result, op } = std::task::ready!(seeking.poll(task));
        self.seeking = None;
        result?;
        match (op, pos) {
            (Op::Len { len, .. }, io::SeekFrom::End(by)) => {
                Poll::Ready(self.seek_to(i128::from(len) + i128::from(by)))
            }
            (op, _) => Poll::Ready(Err(crate::fs::missing_output(&op))),
        }
    }

    fn seek_to(&mut self, to: i128) -> io::Result<u64> {
        let to = u64::try_from(to).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a seek to before the start of the file (or past 2^64)",
            )
        })?;
        self.cursor = to;
        Ok(to)
    }

    pub(crate) fn poll_flush(&mut self, task: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.forget_unsubmitted_write();
        std::task::ready!(self.poll_write_end(task));
        Poll::Ready(self.report_given_up())
    }

    pub(crate) fn poll_close(
        &mut self,
        cx: &Cx,
        task: &mut Context<'_>,
        source: &SourceOps<'_>,
    ) -> Poll<io::Result<()>> {
        if self.closing.is_none() {
            std::task::ready!(self.poll_flush(task))?;
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

/// An I/O type the [`Compat`] wrapper reads or writes through: the `Cx` its ops go to and how
/// its reads and writes become ops. (Sealed: implemented by the crate's I/O types only.)
pub trait CompatSource: sealed::Sealed + Unpin {
    #[doc(hidden)]
    fn compat_cx(&self) -> &Cx;
    #[doc(hidden)]
    fn compat_ops(&self) -> SourceOps<'_>;
}

/// The sources that read ([`Compat`] implements `AsyncRead` over them).
pub trait CompatRead: CompatSource {}

/// The sources that write ([`Compat`] implements `AsyncWrite` over them).
pub trait CompatWrite: CompatSource {}

/// The seal: nameable inside the crate only, so only the crate's I/O types are sources.
pub(crate) mod sealed {
    pub trait Sealed {}
}

/// How one I/O type's reads and writes become ops, for [`CompatSource`]: `offset` is the
/// adapter's cursor (streams ignore it).
#[doc(hidden)]
#[derive(Debug)]
pub enum SourceOps<'a> {
    Stream(&'a crate::op::Handle),
    File(&'a crate::op::Handle),
    Std(crate::offload::StdStream),
}

impl SourceOps<'_> {
    pub(crate) fn read_op(&self, buf: Vec<u8>, offset: u64) -> Op {
        match self {
            SourceOps::Stream(handle) => Op::Recv {
                stream: (*handle).clone(),
                buf,
            },
            SourceOps::File(handle) => Op::ReadAt {
                file: (*handle).clone(),
                buf,
                offset,
            },
            SourceOps::Std(stream) => Op::Offload(crate::offload::Offload::Stdio(
                crate::offload::Stdio::new(*stream, buf),
            )),
        }
    }

    pub(crate) fn write_op(&self, buf: Vec<u8>, offset: u64) -> Op {
        match self {
            SourceOps::Stream(handle) => Op::Send {
                stream: (*handle).clone(),
                buf,
            },
            SourceOps::File(handle) => Op::WriteAt {
                file: (*handle).clone(),
                buf,
                offset,
            },
            SourceOps::Std(stream) => Op::Offload(crate::offload::Offload::Stdio(
                crate::offload::Stdio::new(*stream, buf),
            )),
        }
    }

    /// What `poll_close` runs after flushing (a stream shuts its write half down).
    pub(crate) fn close_op(&self) -> Option<Op> {
        match self {
            // `poll_close` on a stream shuts its write half down.
            SourceOps::Stream(handle) => Some(Op::Shutdown {
                stream: (*handle).clone(),
                how: std::net::Shutdown::Write,
            }),
            SourceOps::File(_) | SourceOps::Std(_) => None,
        }
    }

    /// Whether reads and writes share one cursor (a file): a write then drops read-ahead and
    /// lands at the caller's position. A stream's received bytes are never dropped.
    pub(crate) fn positional(&self) -> bool {
        matches!(self, SourceOps::File(_))
    }

    /// Whether a read may ask for more than the caller's buffer holds (at least 8 KiB), keeping
    /// the rest for the next `poll_read`: not for stdin, whose dropped reader must not take
    /// bytes beyond what its caller was handed.
    pub(crate) fn read_ahead(&self) -> bool {
        !matches!(self, SourceOps::Std(_))
    }
}

/// Makes an I/O type `CompatSource` (and `CompatRead`/`CompatWrite` as listed).
macro_rules! compat_source {
    ($ty:ty, |$this:ident| $ops:expr, $($kind:ident),+) => {
        impl $crate::adapter::sealed::Sealed for $ty {}
        impl $crate::adapter::CompatSource for $ty {
            fn compat_cx(&self) -> &$crate::Cx {
                &self.cx
            }
            fn compat_ops(&self) -> $crate::adapter::SourceOps<'_> {
                let $this = self;
                $ops
            }
        }
        $(impl $crate::adapter::$kind for $ty {})+
    };
}
pub(crate) use compat_source;

/// `futures-io`'s `AsyncRead` / `AsyncWrite` (and `AsyncSeek` for a [`File`](crate::File)) over
/// an I/O type, for the ecosystem's codecs and adapters: `stream.compat()`.
///
/// The I/O types' own methods take and give back owned buffers (`read(Vec<u8>)`, …); this
/// wrapper copies through buffers it keeps, so the traits' borrowed-slice calls work. Keeping the
/// two apart means no inherent method hides a trait method of the same name
/// (`AsyncReadExt::read`, `read_to_end`, `write_all`, `close`).
///
/// - A read in flight survives a dropped read future: the next `poll_read` resumes it, so no
///   received byte is lost. On a stream it reads ahead (at least 8 KiB); bytes not handed out
///   yet are held here ([`Compat::into_inner`] gives them back).
/// - `poll_write` reports bytes written only once the backend has sent them (until then it is
///   `Pending`; poll it again with the same bytes), and `poll_flush` waits until every byte
///   handed over has been sent. `poll_close` flushes, then shuts a stream's write half down.
/// - On a file, reads and writes share one cursor, from offset 0, independent of the positional
///   methods; `AsyncSeek` moves it.
pub struct Compat<T> {
    inner: T,
    adapter: Adapter,
}

impl<T: CompatSource> Compat<T> {
    pub(crate) fn new(inner: T) -> Compat<T> {
        Compat {
            inner,
            adapter: Adapter::default(),
        }
    }

    /// The I/O type, for its own methods (addresses, owned-buffer calls, …).
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Flushes what was written through `AsyncWrite`, then gives the I/O type back with the
    /// bytes read ahead and not handed out yet (they came before anything it reads next).
    pub async fn into_inner(mut self) -> (io::Result<()>, T, Vec<u8>) {
        let flushed = std::future::poll_fn(|task| self.adapter.poll_flush(task)).await;
        let unread = self.adapter.take_unread();
        // A read left in flight is dropped (canceled) with the adapter, so it holds no handle of
        // the descriptor when the caller closes it.
        drop(self.adapter);
        (flushed, self.inner, unread)
    }
}

/// `close` for the wrapped types that close: flushes what `AsyncWrite` was given (reporting
/// a flush error, and closing anyway), drops what was read ahead, and closes.
macro_rules! compat_close {
    ($($ty:ty),+) => {$(
        impl Compat<$ty> {
            /// Flushes, then closes the I/O type (a flush error is reported; it closes anyway).
            /// A read left pending is canceled, and bytes read ahead are dropped.
            pub async fn close(self) -> io::Result<()> {
                let (flushed, inner, _unread) = self.into_inner().await;
                let closed = inner.close().await;
                flushed.and(closed)
            }
        }
    )+};
}

compat_close!(crate::TcpStream, crate::UnixStream, crate::File);

impl<T: CompatRead> futures_lite::io::AsyncRead for Compat<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        task: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let ops = this.inner.compat_ops();
        this.adapter
            .poll_read(this.inner.compat_cx(), task, &ops, out)
    }
}

impl<T: CompatWrite> futures_lite::io::AsyncWrite for Compat<T> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        task: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let ops = this.inner.compat_ops();
        this.adapter
            .poll_write(this.inner.compat_cx(), task, &ops, data)
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, task: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().adapter.poll_flush(task)
    }

    fn poll_close(self: std::pin::Pin<&mut Self>, task: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let ops = this.inner.compat_ops();
        this.adapter.poll_close(this.inner.compat_cx(), task, &ops)
    }
}

/// Moves the cursor: a pending write is flushed and read-ahead dropped first; `SeekFrom::End`
/// reads the file's length. A seek before offset 0 is
/// [`InvalidInput`](io::ErrorKind::InvalidInput).
impl futures_lite::io::AsyncSeek for Compat<crate::File> {
    fn poll_seek(
        self: std::pin::Pin<&mut Self>,
        task: &mut Context<'_>,
        pos: io::SeekFrom,
    ) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        let file = this.inner.handle();
        this.adapter.poll_seek(
            this.inner.compat_cx(),
            task,
            || Op::Len {
                file: file.clone(),
                len: 0,
            },
            pos,
        )
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Compat<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Compat").field(&self.inner).finish()
    }
}
