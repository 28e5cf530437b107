//! The floor under `UringIo`'s per-op cost: the io-uring crate used directly, with no executor, no
//! tasks and no op bookkeeping — for NOPs (op-overhead), and for echo and HTTP sockets (tcp-echo
//! and http-hello: what no completion-based runtime can beat on this kernel). The one module of
//! the bench that needs `unsafe` (pushing an SQE).
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

use io_uring::{opcode, types, IoUring};

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

/// What an in-flight op of a raw socket loop is: `user_data` is a connection's index shifted
/// left once, with this bit set for a send.
const SEND: u64 = 1;

/// The socket loops' ring: one op in flight per connection at most, so every connection fits.
/// Set up as `UringIo` sets its own up where the kernel allows (completion work run only when
/// the thread asks for completions, by the one thread that submits), else plainly, so the floor
/// pays no kernel cost the backend avoids.
fn socket_ring(connections: usize) -> std::io::Result<IoUring> {
    let entries = u32::try_from(connections.next_power_of_two().max(8))
        .map_err(|_| std::io::Error::other("too many connections for one ring"))?;
    IoUring::builder()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
        .or_else(|_| IoUring::new(entries))
}

/// A failed op of a raw socket loop (`result`: the CQE's negated errno): the other
/// connections' ops may still be in the kernel, writing into their buffers, so the buffers are
/// leaked rather than freed under them.
fn fail<T>(buffers: Vec<Box<[u8]>>, result: i32) -> std::io::Result<T> {
    std::mem::forget(buffers);
    Err(std::io::Error::from_raw_os_error(-result))
}

/// `fail`'s result for a full submission queue (`EBUSY`, as the kernel says when it cannot take
/// more work).
const FULL: i32 = -16;

/// Pushes a RECV of `buf` on `stream` for connection `index`; `false` if the queue was full
/// (which a loop that keeps an op per connection on a ring of an entry per connection never sees).
fn push_recv(
    sq: &mut io_uring::SubmissionQueue<'_>,
    stream: &std::net::TcpStream,
    index: usize,
    buf: &mut [u8],
) -> bool {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    let entry = opcode::Recv::new(types::Fd(stream.as_raw_fd()), buf.as_mut_ptr(), len)
        .build()
        .user_data((index as u64) << 1);
    // SAFETY: `buf` is a connection's boxed buffer, which is neither moved nor freed while the
    // op is in flight (each loop keeps its buffers until every op has completed, and leaks them
    // if it stops early); the queue has room, since each connection has at most one op in
    // flight and the ring has an entry per connection.
    unsafe { sq.push(&entry) }.is_ok()
}

/// Pushes a SEND of `buf` on `stream` for connection `index`; `false` as for [`push_recv`].
fn push_send(
    sq: &mut io_uring::SubmissionQueue<'_>,
    stream: &std::net::TcpStream,
    index: usize,
    buf: &[u8],
) -> bool {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    let entry = opcode::Send::new(types::Fd(stream.as_raw_fd()), buf.as_ptr(), len)
        .flags(MSG_NOSIGNAL)
        .build()
        .user_data(((index as u64) << 1) | SEND);
    // SAFETY: as in `push_recv`: the buffer outlives the op, and the queue has room.
    unsafe { sq.push(&entry) }.is_ok()
}

/// `send(2)`'s flag that turns a write to a reset connection into `EPIPE` instead of `SIGPIPE`
/// (Linux's value; the bench has no libc dependency of its own).
const MSG_NOSIGNAL: i32 = 0x4000;

/// The floor under any completion-based echo server: the io-uring crate used directly on the
/// accepted `streams`, one thread, no executor, no tasks. Each connection has one op in
/// flight: a RECV of up to 4 KiB, then SENDs of what came until all of it is sent, then the
/// next RECV; every turn submits what the last one's completions queued and waits for one
/// completion (one `io_uring_enter` per turn, as a runtime's loop makes). Returns the bytes
/// echoed once every client has closed its end.
pub fn raw_echo_server(streams: Vec<std::net::TcpStream>) -> std::io::Result<usize> {
    let mut ring = socket_ring(streams.len())?;
    let mut buffers: Vec<Box<[u8]>> = streams
        .iter()
        .map(|_| vec![0u8; 4096].into_boxed_slice())
        .collect();
    // Per connection: the bytes the last RECV brought, and how many of them are sent.
    let mut pending = vec![(0usize, 0usize); streams.len()];
    let (mut open, mut echoed) = (streams.len(), 0);
    let (submitter, mut sq, mut cq) = ring.split();
    for (index, stream) in streams.iter().enumerate() {
        if !push_recv(&mut sq, stream, index, &mut buffers[index]) {
            return fail(buffers, FULL);
        }
    }
    while open > 0 {
        sq.sync();
        if let Err(error) = submitter.submit_and_wait(1) {
            std::mem::forget(buffers);
            return Err(error);
        }
        // The kernel has taken what was submitted: the queue's free room is known again.
        sq.sync();
        cq.sync();
        for cqe in &mut cq {
            let (index, send) = ((cqe.user_data() >> 1) as usize, cqe.user_data() & SEND != 0);
            let Ok(n) = usize::try_from(cqe.result()) else {
                return fail(buffers, cqe.result());
            };
            let (stream, (len, sent)) = (&streams[index], &mut pending[index]);
            if !send {
                if n == 0 {
                    open -= 1;
                    continue;
                }
                (*len, *sent) = (n, 0);
            } else {
                *sent += n;
                echoed += n;
            }
            if *sent < *len {
                if !push_send(&mut sq, stream, index, &buffers[index][*sent..*len]) {
                    return fail(buffers, FULL);
                }
            } else {
                if !push_recv(&mut sq, stream, index, &mut buffers[index]) {
                    return fail(buffers, FULL);
                }
            }
        }
    }
    Ok(echoed)
}

/// The floor under any completion-based echo client, the other side of [`raw_echo_server`]:
/// `connections` connections to `addr`, each sending `messages` messages of `message` bytes one
/// at a time (SENDs until the message is out, then RECVs until its echo is in), checking each
/// echo, then shutting its writing half. Returns how many echoes came back intact.
pub fn raw_echo_clients(
    addr: std::net::SocketAddr,
    connections: usize,
    messages: usize,
    message: usize,
) -> std::io::Result<usize> {
    let streams = (0..connections)
        .map(|_| {
            let stream = std::net::TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    // The messages, then the replies: both leak with `fail` (a SEND reads its message).
    let mut buffers: Vec<Box<[u8]>> = (0..connections)
        .map(|i| vec![i as u8; message].into_boxed_slice())
        .chain((0..connections).map(|_| vec![0u8; message].into_boxed_slice()))
        .collect();
    // Per connection: bytes of the current message sent, bytes of its echo received, and
    // messages done.
    let mut progress = vec![(0usize, 0usize, 0usize); connections];
    if messages == 0 {
        return Ok(0);
    }
    let mut ring = socket_ring(connections)?;
    let (mut open, mut intact) = (connections, 0);
    let (submitter, mut sq, mut cq) = ring.split();
    for (index, stream) in streams.iter().enumerate() {
        if !push_send(&mut sq, stream, index, &buffers[index]) {
            return fail(buffers, FULL);
        }
    }
    while open > 0 {
        sq.sync();
        if let Err(error) = submitter.submit_and_wait(1) {
            std::mem::forget(buffers);
            return Err(error);
        }
        // The kernel has taken what was submitted: the queue's free room is known again.
        sq.sync();
        cq.sync();
        for cqe in &mut cq {
            let (index, send) = ((cqe.user_data() >> 1) as usize, cqe.user_data() & SEND != 0);
            let Ok(n) = usize::try_from(cqe.result()) else {
                return fail(buffers, cqe.result());
            };
            let (stream, (sent, received, done)) = (&streams[index], &mut progress[index]);
            if send {
                *sent += n;
                if *sent < message {
                    if !push_send(&mut sq, stream, index, &buffers[index][*sent..]) {
                        return fail(buffers, FULL);
                    }
                } else {
                    if !push_recv(&mut sq, stream, index, &mut buffers[connections + index]) {
                        return fail(buffers, FULL);
                    }
                }
                continue;
            }
            if n == 0 {
                std::mem::forget(buffers);
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            *received += n;
            if *received < message {
                if !push_recv(&mut sq, stream, index, &mut buffers[connections + index][*received..]) {
                    return fail(buffers, FULL);
                }
                continue;
            }
            intact += usize::from(buffers[connections + index] == buffers[index]);
            *done += 1;
            (*sent, *received) = (0, 0);
            if *done < messages {
                if !push_send(&mut sq, stream, index, &buffers[index]) {
                    return fail(buffers, FULL);
                }
            } else {
                if let Err(error) = stream.shutdown(std::net::Shutdown::Write) {
                    std::mem::forget(buffers);
                    return Err(error);
                }
                open -= 1;
            }
        }
    }
    Ok(intact)
}

/// The floor under any completion-based HTTP/1.1 server of a fixed `response`: the io-uring
/// crate used directly on the accepted `streams`, as [`raw_echo_server`], with no parser beyond
/// finding the end of a request head and no framework. Each connection RECVs until a request
/// head (`\r\n\r\n`) is in, SENDs `response` whole, and RECVs the next. Returns the requests
/// answered once every client has closed its end; a client that sends a request before the
/// last one's response (pipelining, which the bench's load never does) is an error.
pub fn raw_http_server(
    streams: Vec<std::net::TcpStream>,
    response: &'static [u8],
) -> std::io::Result<usize> {
    let mut ring = socket_ring(streams.len())?;
    let mut buffers: Vec<Box<[u8]>> = streams
        .iter()
        .map(|_| vec![0u8; 4096].into_boxed_slice())
        .collect();
    // Per connection: bytes of the request head in, and bytes of the response sent.
    let mut pending = vec![(0usize, 0usize); streams.len()];
    let (mut open, mut answered) = (streams.len(), 0);
    let (submitter, mut sq, mut cq) = ring.split();
    for (index, stream) in streams.iter().enumerate() {
        if !push_recv(&mut sq, stream, index, &mut buffers[index]) {
            return fail(buffers, FULL);
        }
    }
    while open > 0 {
        sq.sync();
        if let Err(error) = submitter.submit_and_wait(1) {
            std::mem::forget(buffers);
            return Err(error);
        }
        // The kernel has taken what was submitted: the queue's free room is known again.
        sq.sync();
        cq.sync();
        for cqe in &mut cq {
            let (index, send) = ((cqe.user_data() >> 1) as usize, cqe.user_data() & SEND != 0);
            let Ok(n) = usize::try_from(cqe.result()) else {
                return fail(buffers, cqe.result());
            };
            let (stream, (filled, sent)) = (&streams[index], &mut pending[index]);
            if send {
                *sent += n;
                if *sent < response.len() {
                    if !push_send(&mut sq, stream, index, &response[*sent..]) {
                        return fail(buffers, FULL);
                    }
                } else {
                    if !push_recv(&mut sq, stream, index, &mut buffers[index]) {
                        return fail(buffers, FULL);
                    }
                }
                continue;
            }
            if n == 0 {
                open -= 1;
                continue;
            }
            *filled += n;
            let head = &buffers[index][..*filled];
            match head.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(end) if end + 4 == head.len() => {
                    answered += 1;
                    (*filled, *sent) = (0, 0);
                    if !push_send(&mut sq, stream, index, response) {
                        return fail(buffers, FULL);
                    }
                }
                None if *filled < buffers[index].len() => {
                    if !push_recv(&mut sq, stream, index, &mut buffers[index][*filled..]) {
                        return fail(buffers, FULL);
                    }
                }
                _ => {
                    std::mem::forget(buffers);
                    return Err(std::io::Error::other(
                        "a pipelined or oversized request: not the load this floor answers",
                    ));
                }
            }
        }
    }
    Ok(answered)
}

/// The floor under any io_uring runtime's file reads: `shares` of `block`-byte reads of `file`
/// (a reader's offsets each), one READ in flight per reader, every turn submitting what the
/// last one's completions queued and waiting for one completion, as [`raw_echo_server`] does.
/// Returns how many reads `intact` accepts (a short read is handed to it as it came).
pub fn raw_reads(
    file: &std::fs::File,
    shares: &[Vec<u64>],
    block: usize,
    intact: impl Fn(&[u8], u64) -> bool,
) -> std::io::Result<usize> {
    let mut ring = socket_ring(shares.len())?;
    let mut buffers: Vec<Box<[u8]>> = shares
        .iter()
        .map(|_| vec![0u8; block].into_boxed_slice())
        .collect();
    let mut next = vec![0usize; shares.len()];
    let (mut in_flight, mut good) = (0, 0);
    let len = u32::try_from(block).map_err(std::io::Error::other)?;
    let (submitter, mut sq, mut cq) = ring.split();
    let push = |sq: &mut io_uring::SubmissionQueue<'_>, buffer: &mut [u8], reader, offset| {
        let entry = opcode::Read::new(types::Fd(file.as_raw_fd()), buffer.as_mut_ptr(), len)
            .offset(offset)
            .build()
            .user_data(reader as u64);
        // SAFETY: as in `push_recv`: the reader's buffer outlives the op (kept until every op
        // has completed, leaked on an early stop), and the queue has an entry per reader.
        unsafe { sq.push(&entry) }.is_ok()
    };
    for (reader, share) in shares.iter().enumerate() {
        if let Some(&offset) = share.first() {
            if !push(&mut sq, &mut buffers[reader], reader, offset) {
                return fail(buffers, FULL);
            }
            in_flight += 1;
        }
    }
    while in_flight > 0 {
        sq.sync();
        if let Err(error) = submitter.submit_and_wait(1) {
            std::mem::forget(buffers);
            return Err(error);
        }
        // The kernel has taken what was submitted: the queue's free room is known again.
        sq.sync();
        cq.sync();
        for cqe in &mut cq {
            let reader = cqe.user_data() as usize;
            let Ok(n) = usize::try_from(cqe.result()) else {
                return fail(buffers, cqe.result());
            };
            in_flight -= 1;
            let share = &shares[reader];
            good += usize::from(intact(&buffers[reader][..n.min(block)], share[next[reader]]));
            next[reader] += 1;
            if let Some(&offset) = share.get(next[reader]) {
                if !push(&mut sq, &mut buffers[reader], reader, offset) {
                    return fail(buffers, FULL);
                }
                in_flight += 1;
            }
        }
    }
    Ok(good)
}
