//! Floors on io_uring: the io-uring crate used directly, with no executor, no tasks and no op
//! bookkeeping, in each workload's shape — NOPs one at a time (op-overhead), an echo server and
//! its clients (tcp-echo), an HTTP/1.1 server of a fixed response (http-hello), and file READs
//! (random-read). What a completion-based runtime adds is measured against them; what they cannot
//! reach themselves, no runtime over the ring reaches on this machine. The one module of the bench
//! that needs `unsafe` (pushing an SQE).
#![allow(unsafe_code)]

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::{Bound, RangeBounds};
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, squeue, types, IoUring, SubmissionQueue, Submitter};

/// Runs `count` NOPs one at a time on a fresh ring — push one SQE, `submit_and_wait(1)`, reap
/// its CQE — the same shape as one task submitting `Op::Nop` after `Op::Nop` through `UringIo`.
/// Returns how many NOPs completed successfully (all of them, unless the kernel misbehaves).
pub fn raw_nops(count: u64) -> std::io::Result<u64> {
    let mut ring = IoUring::new(io_uring_backend::DEFAULT_SQ_ENTRIES)?;
    let mut completed = 0;
    for i in 0..count {
        let entry = opcode::Nop::new().build().user_data(i);
        // SAFETY: a NOP carries no pointers, so nothing it refers to can be freed under the
        // kernel; the queue has room, since each NOP is reaped before the next is pushed.
        unsafe { ring.submission().push(&entry) }
            .map_err(|_| std::io::Error::other("the submission queue is full"))?;
        ring.submit_and_wait(1)?;
        for cqe in ring.completion() {
            completed += u64::from(cqe.user_data() == i && cqe.result() == 0);
        }
    }
    Ok(completed)
}

/// `user_data`'s low bit: set for a SEND; the other bits are the op's index (a connection's, a
/// reader's).
const SEND: u64 = 1;

/// `send(2)`'s flag that turns a write to a reset connection into `EPIPE` instead of `SIGPIPE`
/// (Linux's value; the bench has no libc dependency of its own).
const MSG_NOSIGNAL: i32 = 0x4000;

/// `IORING_RECVSEND_POLL_FIRST`: the kernel waits for data before its first attempt at a RECV,
/// instead of trying, failing and then waiting (each loop's RECVs are made when the peer has
/// not sent yet: a client's for the echo of what it just sent, a server's for the next request).
/// Linux 5.19 and later; before, such a RECV fails with `EINVAL` and the floor reports it.
const POLL_FIRST: u16 = 1;

/// One raw loop: a ring with its descriptors registered (and its own descriptor, where the
/// kernel allows), the buffers its ops point into, and how many ops are in flight.
///
/// Every op has an index (a connection's, a reader's), with at most one op in flight per index,
/// so the submission queue, sized to the indices, never fills.
struct Floor {
    ring: IoUring,
    /// The buffers the ops read from and write into, boxed so they never move. Never replaced
    /// while the loop runs; freed only when no op is in flight (see `Drop`).
    buffers: Option<Vec<Box<[u8]>>>,
    in_flight: usize,
}

impl Floor {
    /// A loop on `fds` (registered in this order: an op names its descriptor by that position)
    /// for `indices` indices, over `buffers`. The ring is set up as `UringIo` sets its own up
    /// where the kernel allows (completion work run only when the one thread that submits asks
    /// for completions), else plainly, so the floor pays no kernel cost the backend avoids.
    fn new(fds: &[RawFd], indices: usize, buffers: Vec<Box<[u8]>>) -> io::Result<Floor> {
        let entries = u32::try_from(indices.next_power_of_two().max(8))
            .map_err(|_| io::Error::other("too many ops for one ring"))?;
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .or_else(|_| IoUring::new(entries))?;
        ring.submitter().register_files(fds)?;
        Ok(Floor {
            ring,
            buffers: Some(buffers),
            in_flight: 0,
        })
    }

    /// Runs the loop: `start` pushes the first ops, then every turn publishes what was reaped
    /// and pushed, makes one `io_uring_enter` that submits and waits for a completion, and hands
    /// each completion (`user_data`, bytes moved) to `each`, which pushes what comes next. Ends
    /// when nothing is in flight; a failed op (its errno) or a failed `each` ends it early.
    fn run(
        &mut self,
        start: impl FnOnce(&mut Queue<'_>, &mut Buffers<'_>) -> io::Result<()>,
        mut each: impl FnMut(&mut Queue<'_>, &mut Buffers<'_>, u64, usize) -> io::Result<()>,
    ) -> io::Result<()> {
        let Some(buffers) = self.buffers.as_mut() else {
            return Err(io::Error::other("a floor whose buffers are gone"));
        };
        let buffers = &mut Buffers(buffers);
        let (submitter, sq, mut cq) = self.ring.split();
        let submitter = RingFd::register(submitter);
        let mut queue = Queue {
            sq,
            in_flight: &mut self.in_flight,
        };
        let turns = || -> io::Result<()> {
            start(&mut queue, buffers)?;
            while *queue.in_flight > 0 {
                // The completions reaped last turn are the kernel's to reuse, and the SQEs
                // pushed since are its to take: both before the enter, so it waits only if
                // nothing is there yet.
                cq.sync();
                queue.sq.sync();
                match submitter.0.submit_and_wait(1) {
                    Ok(_) => {}
                    // Interrupted, or the kernel could take no more for now: reap, go round.
                    Err(error) if matches!(error.raw_os_error(), Some(4 | 11 | 16)) => {}
                    Err(error) => return Err(error),
                }
                queue.sq.sync();
                cq.sync();
                for cqe in &mut cq {
                    *queue.in_flight -= 1;
                    let n = usize::try_from(cqe.result())
                        .map_err(|_| io::Error::from_raw_os_error(-cqe.result()))?;
                    each(&mut queue, buffers, cqe.user_data(), n)?;
                }
            }
            Ok(())
        };
        turns()
    }
}

/// A loop's submitter, with the ring's descriptor registered where the kernel allows (sparing
/// it a descriptor lookup per enter) until it drops, whichever way the loop ends.
struct RingFd<'a>(Submitter<'a>, bool);

impl<'a> RingFd<'a> {
    fn register(mut submitter: Submitter<'a>) -> RingFd<'a> {
        let registered = submitter.register_ring_fd().is_ok();
        RingFd(submitter, registered)
    }
}

impl Drop for RingFd<'_> {
    fn drop(&mut self) {
        if self.1 {
            let _ = self.0.unregister_ring_fd();
        }
    }
}

/// A loop's buffers as its closures see them: their bytes, never the boxes (which must not be
/// replaced while an op points into them), and [`Bytes`] of them to push an op with.
struct Buffers<'a>(&'a mut [Box<[u8]>]);

impl Buffers<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    /// Buffer `i`'s bytes.
    fn get(&self, i: usize) -> &[u8] {
        &self.0[i]
    }

    /// `range` of buffer `i`, for an op to read or write.
    fn at(&mut self, i: usize, range: impl RangeBounds<usize>) -> Bytes {
        let bounds: (Bound<usize>, Bound<usize>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let bytes = &mut self.0[i][bounds];
        Bytes {
            ptr: bytes.as_mut_ptr(),
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Where an op's bytes are: part of a loop's buffer ([`Buffers::at`]) or `'static` data
/// ([`Bytes::fixed`]), the only two ways to make one, so a pushed op never points into memory
/// that may be freed or moved while it is in flight.
#[derive(Clone, Copy)]
struct Bytes {
    ptr: *mut u8,
    len: u32,
}

impl Bytes {
    /// `'static` bytes, for a SEND only (the kernel reads them, never writes).
    fn fixed(bytes: &'static [u8]) -> Bytes {
        Bytes {
            ptr: bytes.as_ptr().cast_mut(),
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        // An op still in flight (the loop ended on an error, or a panic unwinds through it) may
        // still read or write its buffer after the ring is gone: leak the buffers then.
        if self.in_flight > 0 {
            std::mem::forget(self.buffers.take());
        }
    }
}

/// A loop's submission queue and its count of ops in flight. Each push names its descriptor
/// by its registered position and its bytes by a [`Bytes`], which outlive the op (see
/// [`Floor`]).
struct Queue<'a> {
    sq: SubmissionQueue<'a, squeue::Entry>,
    in_flight: &'a mut usize,
}

impl Queue<'_> {
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        // SAFETY: every entry pushed here points at `Bytes`: into a `Floor`'s buffers (boxed,
        // never moved or replaced, and leaked rather than freed while an op is in flight) or
        // into `'static` data; and names a descriptor registered with the ring, which keeps it.
        unsafe { self.sq.push(&entry) }
            .map_err(|_| io::Error::other("a floor's submission queue is full"))?;
        *self.in_flight += 1;
        Ok(())
    }

    /// A RECV into `buf` on registered descriptor `fd`, for op `index`.
    fn recv(&mut self, fd: usize, index: usize, buf: Bytes) -> io::Result<()> {
        self.push(
            opcode::Recv::new(types::Fixed(fd as u32), buf.ptr, buf.len)
                .ioprio(POLL_FIRST)
                .build()
                .user_data((index as u64) << 1),
        )
    }

    /// A SEND of `buf` on registered descriptor `fd`, for op `index`.
    fn send(&mut self, fd: usize, index: usize, buf: Bytes) -> io::Result<()> {
        self.push(
            opcode::Send::new(types::Fixed(fd as u32), buf.ptr.cast_const(), buf.len)
                .flags(MSG_NOSIGNAL)
                .build()
                .user_data(((index as u64) << 1) | SEND),
        )
    }

    /// A READ into `buf` at `offset` of registered descriptor `fd`, for op `index`.
    fn read(&mut self, fd: usize, index: usize, buf: Bytes, offset: u64) -> io::Result<()> {
        self.push(
            opcode::Read::new(types::Fixed(fd as u32), buf.ptr, buf.len)
                .offset(offset)
                .build()
                .user_data((index as u64) << 1),
        )
    }
}

/// The op index and whether it is a SEND, from a completion's `user_data`.
fn op_of(user_data: u64) -> (usize, bool) {
    ((user_data >> 1) as usize, user_data & SEND != 0)
}

/// Raw descriptors of `streams`, in order.
fn fds(streams: &[TcpStream]) -> Vec<RawFd> {
    streams.iter().map(AsRawFd::as_raw_fd).collect()
}

/// A server's loop on `streams`: a 4 KiB receive buffer per connection.
fn server_floor(streams: &[TcpStream]) -> io::Result<Floor> {
    let buffers = streams.iter().map(|_| vec![0u8; 4096].into()).collect();
    Floor::new(&fds(streams), streams.len(), buffers)
}

/// A server's first ops: a RECV on every connection, into its buffer.
fn recv_on_each(queue: &mut Queue<'_>, buffers: &mut Buffers<'_>) -> io::Result<()> {
    for i in 0..buffers.len() {
        queue.recv(i, i, buffers.at(i, ..))?;
    }
    Ok(())
}

/// The floor under a completion-based echo server: one thread, a RECV of up to 4 KiB in flight
/// per accepted connection, then SENDs of what came until all of it is out, then the next RECV.
/// Returns the bytes echoed once every client has closed its end.
pub fn raw_echo_server(streams: Vec<TcpStream>) -> io::Result<usize> {
    let mut floor = server_floor(&streams)?;
    // Per connection: the bytes the last RECV brought, and how many of them are sent.
    let mut pending = vec![(0usize, 0usize); streams.len()];
    let mut echoed = 0;
    floor.run(recv_on_each, |queue, buffers, user_data, n| {
        let (i, send) = op_of(user_data);
        let (len, sent) = &mut pending[i];
        if !send {
            if n == 0 {
                return Ok(()); // the client closed its end
            }
            (*len, *sent) = (n, 0);
        } else {
            *sent += n;
            echoed += n;
        }
        if *sent < *len {
            queue.send(i, i, buffers.at(i, *sent..*len))
        } else {
            queue.recv(i, i, buffers.at(i, ..))
        }
    })?;
    Ok(echoed)
}

/// The floor under a completion-based echo client, the other side of [`raw_echo_server`]:
/// `connections` connections to `addr`, each sending `messages` messages of `message` bytes one
/// at a time (SENDs until the message is out, then RECVs until its echo is in), checking each
/// echo, then shutting its writing half. Returns how many echoes came back intact.
pub fn raw_echo_clients(
    addr: SocketAddr,
    connections: usize,
    messages: usize,
    message: usize,
) -> io::Result<usize> {
    if message == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty messages",
        ));
    }
    let streams = (0..connections)
        .map(|_| {
            let stream = TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
        .collect::<io::Result<Vec<_>>>()?;
    if messages == 0 {
        // The server waits for every connection and its end.
        for stream in &streams {
            stream.shutdown(Shutdown::Write)?;
        }
        return Ok(0);
    }
    // The messages, then the replies.
    let buffers = (0..connections)
        .map(|i| vec![i as u8; message].into())
        .chain((0..connections).map(|_| vec![0u8; message].into()))
        .collect();
    let mut floor = Floor::new(&fds(&streams), connections, buffers)?;
    // Per connection: bytes of the current message sent, bytes of its echo received, messages
    // done.
    let mut progress = vec![(0usize, 0usize, 0usize); connections];
    let mut intact = 0;
    floor.run(
        |queue, buffers| {
            for i in 0..connections {
                queue.send(i, i, buffers.at(i, ..))?;
            }
            Ok(())
        },
        |queue, buffers, user_data, n| {
            let (i, send) = op_of(user_data);
            let (sent, received, done) = &mut progress[i];
            let reply = connections + i;
            if send {
                *sent += n;
                return if *sent < message {
                    queue.send(i, i, buffers.at(i, *sent..))
                } else {
                    queue.recv(i, i, buffers.at(reply, ..))
                };
            }
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            *received += n;
            if *received < message {
                return queue.recv(i, i, buffers.at(reply, *received..));
            }
            intact += usize::from(buffers.get(reply) == buffers.get(i));
            *done += 1;
            (*sent, *received) = (0, 0);
            if *done < messages {
                queue.send(i, i, buffers.at(i, ..))
            } else {
                streams[i].shutdown(Shutdown::Write)
            }
        },
    )?;
    Ok(intact)
}

/// The floor under a completion-based HTTP/1.1 server of a fixed `response`, as
/// [`raw_echo_server`] for the accepted `streams`, with no parser beyond finding the end of a
/// request head and no framework: each connection RECVs until a request head (`\r\n\r\n`) is
/// in, SENDs `response` whole, and RECVs the next. Returns the requests answered once every
/// client has closed its end; bytes that come with a request head and after it (a pipelined
/// request, which the bench's load never sends) are an error.
pub fn raw_http_server(streams: Vec<TcpStream>, response: &'static [u8]) -> io::Result<usize> {
    let mut floor = server_floor(&streams)?;
    // Per connection: bytes of the request head in, and bytes of the response sent.
    let mut pending = vec![(0usize, 0usize); streams.len()];
    let mut answered = 0;
    floor.run(recv_on_each, |queue, buffers, user_data, n| {
        let (i, send) = op_of(user_data);
        let (filled, sent) = &mut pending[i];
        if send {
            *sent += n;
            return if *sent < response.len() {
                queue.send(i, i, Bytes::fixed(&response[*sent..]))
            } else {
                queue.recv(i, i, buffers.at(i, ..))
            };
        }
        if n == 0 {
            return Ok(()); // the client closed its end
        }
        *filled += n;
        let room = buffers.get(i).len();
        let head = &buffers.get(i)[..*filled];
        match head.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) if end + 4 == head.len() => {
                answered += 1;
                (*filled, *sent) = (0, 0);
                queue.send(i, i, Bytes::fixed(response))
            }
            None if *filled < room => queue.recv(i, i, buffers.at(i, *filled..)),
            _ => Err(io::Error::other(
                "a pipelined or oversized request: not the load this floor answers",
            )),
        }
    })?;
    Ok(answered)
}

/// The floor under file reads through the ring: `shares` of `block`-byte READs of `file` (a
/// reader's offsets each), one in flight per reader, in [`Floor::run`]'s turns. Returns how many
/// reads `intact` accepts (a short read is handed to it as it came). This bounds the ring's READ
/// path only: a runtime may serve page-cached reads without the ring (`preadv2` with
/// `RWF_NOWAIT`, as ioswap's uring backend does), for which the `pread` loop is the floor.
pub fn raw_reads(
    file: &std::fs::File,
    shares: &[Vec<u64>],
    block: usize,
    intact: impl Fn(&[u8], u64) -> bool,
) -> io::Result<usize> {
    let buffers = shares.iter().map(|_| vec![0u8; block].into()).collect();
    let mut floor = Floor::new(&[file.as_raw_fd()], shares.len(), buffers)?;
    let mut next = vec![0usize; shares.len()];
    let mut good = 0;
    floor.run(
        |queue, buffers| {
            for (reader, share) in shares.iter().enumerate() {
                if let Some(&offset) = share.first() {
                    queue.read(0, reader, buffers.at(reader, ..), offset)?;
                }
            }
            Ok(())
        },
        |queue, buffers, user_data, n| {
            let (reader, _) = op_of(user_data);
            let share = &shares[reader];
            good += usize::from(intact(
                &buffers.get(reader)[..n.min(block)],
                share[next[reader]],
            ));
            next[reader] += 1;
            match share.get(next[reader]) {
                Some(&offset) => queue.read(0, reader, buffers.at(reader, ..), offset),
                None => Ok(()),
            }
        },
    )?;
    Ok(good)
}
