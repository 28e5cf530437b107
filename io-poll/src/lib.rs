//! `PollIo`: ioswap's readiness-based backend — one thread, sockets non-blocking, readiness
//! through the [`polling`] crate (epoll on Linux, kqueue on the BSDs and macOS). The fallback
//! where io_uring is refused (container seccomp profiles, gVisor, older kernels) and the
//! backend off Linux.
//!
//! One turn of [`Driver::poll`]:
//!
//! 1. fire due timers;
//! 2. run every task that was ready at the start of the turn (spawned tasks are deferred, as on
//!    fiber and uring); when tasks were ready and ops wait for readiness, first collect the
//!    readiness already there without waiting, so a busy loop never starves I/O;
//! 3. if nothing was runnable, wait in the poller until a socket is ready, the next timer is
//!    due, or another thread wakes a task (the run queue's idle hook calls
//!    [`Poller::notify`](polling::Poller::notify)); then try the ready sockets' ops again.
//!
//! The ops keep the protocol of [`io_core::op`]: a socket op is tried at once (a read on a
//! socket whose last read succeeded: just before the loop next waits; see the crate's
//! DESIGN.md); if it would block, the backend owns it — buffers included — until its socket is
//! ready and a retry ends it. A canceled op still waiting ends at once with a canceled error and
//! its buffers (it never touched the socket, so nothing completed is lost), and a dropped one is
//! dropped. File ops on an open file are performed inline; the rest of the file system (ops by
//! path), name lookups, blocking closures and the standard streams go to a thread pool, an
//! [`Offloader`](io_core::offload::Offloader) (see the crate's DESIGN.md).
//!
//! ```
//! use io_poll::PollIo;
//!
//! let io = PollIo::new().expect("a poller");
//! let (sum, slept) = io
//!     .run(|cx| async move {
//!         let start = cx.now_ms();
//!         let a = cx.spawn(|cx| async move { cx.sleep(20).await?; Ok(1) });
//!         let b = cx.spawn(|cx| async move { cx.sleep(20).await?; Ok(2) });
//!         let sum = a.await? + b.await?;
//!         Ok((sum, cx.now_ms() - start))
//!     })
//!     .unwrap();
//! assert_eq!(sum, 3);
//! assert!(slept >= 20); // the two sleeps overlapped on the real clock
//! ```
#![warn(missing_docs, missing_debug_implementations)]

mod op;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::net;
use std::os::unix::net as unix;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_core::offload::Offloader;
use io_core::{
    BackendCore, Canceled, Cx, Driver, Handle, Io, Next, Op, OpId, RunError, RunQueue, Runnable,
    Submitted,
};
use polling::{Events, Poller};

use op::{Aftermath, Ops};

/// The readiness-based backend. Cheap to clone: clones share one poller and one scheduler.
#[derive(Clone)]
pub struct PollIo(Rc<PollBackend>);

struct PollBackend {
    core: BackendCore,
    poller: Arc<Poller>,
    ops: RefCell<Ops>,
    /// Reused between table calls; taken out while in use (a nested call, from a drop that
    /// `apply` set off, starts an empty one).
    after: Cell<Option<Aftermath>>,
    events: RefCell<Events>,
    batch: RefCell<VecDeque<Runnable>>,
    /// `Op::Offload` work, on a pool whose finished jobs wake the poller.
    offloader: RefCell<Offloader>,
}

impl PollIo {
    /// A backend on a new poller; its clock starts now. Fails only if the system refuses a
    /// poller (out of descriptors or memory).
    pub fn new() -> io::Result<PollIo> {
        PollIo::with_edge(true)
    }

    /// A backend whose registrations are edge-triggered if `edge` and the poller supports it,
    /// else oneshot (the tests run both).
    fn with_edge(edge: bool) -> io::Result<PollIo> {
        let poller = Arc::new(Poller::new()?);
        let notifier = poller.clone();
        let queue = RunQueue::with_idle_hook(move || {
            // A failed notify leaves the loop to its timeout; it cannot fail short of a bug.
            let _ = notifier.notify();
        });
        let notifier = poller.clone();
        // Called on a pool thread after each job: the loop wakes (or does not sleep) and reaps.
        let offloader = Offloader::new(move || {
            let _ = notifier.notify();
        });
        Ok(PollIo(Rc::new(PollBackend {
            // A fixed choice seed: choices need only be fair here, not varied between runs.
            core: BackendCore::real_clock("poll", queue, 0x706f_6c6c),
            ops: RefCell::new(Ops::new(poller.clone(), edge)),
            poller,
            after: Cell::new(Some(Aftermath::default())),
            events: RefCell::new(Events::new()),
            batch: RefCell::new(VecDeque::new()),
            offloader: RefCell::new(offloader),
        })))
    }

    /// Runs `main` as the main task and drives the poller until it finishes. See
    /// [`io_core::run`] for what happens to tasks still alive then. A backend runs once; a
    /// second `run` gives [`RunError::ShutDown`].
    pub fn run<T, F, Fut>(&self, main: F) -> Result<T, RunError>
    where
        T: 'static,
        F: FnOnce(Cx) -> Fut,
        Fut: Future<Output = Result<T, Canceled>> + 'static,
    {
        io_core::run(self.io(), main)
    }

    /// This backend as a protocol object (and its driver side).
    pub fn io(&self) -> Rc<dyn Driver> {
        self.0.clone()
    }

    /// Milliseconds since the backend was built (monotonic).
    pub fn now_ms(&self) -> u64 {
        self.0.core.now_ms()
    }

    /// Ops the backend still owns (waiting for readiness, or closes waiting for their
    /// descriptor). Zero once every op has ended and every buffer has gone back.
    ///
    /// ```
    /// let io = io_poll::PollIo::new().unwrap();
    /// io.run(|cx| async move { Ok(cx.submit(io_core::Op::Nop).await.result.unwrap()) }).unwrap();
    /// assert_eq!(io.ops_owned(), 0);
    /// ```
    pub fn ops_owned(&self) -> usize {
        self.0.ops.borrow().owned()
    }
}

impl fmt::Debug for PollIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollIo")
            .field("now_ms", &self.0.core.now_ms())
            .field("ops_owned", &self.ops_owned())
            .finish_non_exhaustive()
    }
}

impl PollBackend {
    /// Runs `f` on the op table, then — with the table released — readies the parks and drops
    /// the ops it left.
    fn with_ops<R>(&self, f: impl FnOnce(&mut Ops, &mut Aftermath) -> R) -> R {
        let mut after = self.after.take().unwrap_or_default();
        let result = f(&mut self.ops.borrow_mut(), &mut after);
        after.apply();
        self.after.set(Some(after));
        result
    }

    /// Whether ops wait for readiness (or a close for its descriptor).
    fn io_in_flight(&self) -> bool {
        self.ops.borrow().owned() > 0
    }

    /// Whether work is in flight that the loop waits for: an op the table owns, or an offloaded
    /// job that has not detached (`Offloader::outstanding`: a file-system op ends in bounded
    /// time, even if its caller left; a detached closure or lookup may run forever and wakes
    /// nobody, so it must not keep a deadlock from being reported).
    fn work_in_flight(&self) -> bool {
        self.io_in_flight() || self.offloader.borrow().outstanding() > 0
    }

    /// Delivers the offloaded jobs finished since the last call (nothing to do, and no lock
    /// taken, when none is in flight).
    fn reap(&self) {
        let mut offloader = self.offloader.borrow_mut();
        if offloader.in_flight() > 0 {
            offloader.reap();
        }
    }

    /// Waits in the poller for at most `timeout` (`Some(ZERO)`: only collects what is ready).
    /// Returns whether it reported any descriptor ready.
    fn wait(&self, timeout: Option<Duration>) -> bool {
        let mut events = self.events.borrow_mut();
        events.clear();
        // EINTR (a signal) ends the wait like a timeout; the caller's loop decides what next.
        let _ = self.poller.wait(&mut events, timeout);
        !events.is_empty()
    }

    /// Tries again the ops of every descriptor the last wait reported ready.
    fn retry_ready(&self) {
        let events = self.events.borrow();
        self.with_ops(|ops, after| {
            for event in events.iter() {
                ops.ready(event, after);
            }
        });
    }

    /// Sleeps in the poller until a task is runnable, a timer is due, or `deadline_ms` passes.
    /// Returns at once when nothing could ever wake the loop (the driver reports the deadlock).
    fn idle(&self, deadline_ms: u64) {
        loop {
            self.core.fire_due();
            self.reap();
            if !self.core.queue().is_empty() {
                return;
            }
            // Every task readied by a close's cancels has run: what still holds its descriptor
            // is outside the backend, and the close need not wait for it.
            // Reads whose socket's readiness is unsure are tried now, the latest moment before
            // the wait (more has had time to arrive since they were submitted).
            self.with_ops(|ops, after| {
                ops.retry_closes(true, after);
                ops.sweep();
                ops.try_unsure(after);
                ops.retry_later(after);
            });
            if !self.core.queue().is_empty() {
                return;
            }
            let next = self.core.next_deadline();
            let target = next.unwrap_or(u64::MAX).min(deadline_ms);
            let timeout = if target == u64::MAX {
                if !self.work_in_flight() && !self.core.foreign_waits() {
                    return;
                }
                None
            } else {
                let at = self.core.instant_at(target).expect("a real clock");
                let now = Instant::now();
                if now >= at {
                    return;
                }
                Some(at - now)
            };
            // An op refused for now (a Unix connect to a full backlog) is tried again soon.
            let timeout = if self.ops.borrow().has_later() {
                Some(timeout.map_or(op::LATER, |t| t.min(op::LATER)))
            } else {
                timeout
            };
            if !self.core.queue().begin_idle() {
                return;
            }
            let reported = self.wait(timeout);
            // Idle ends before the retries ready their tasks: a push while idle calls the
            // idle hook, and a `notify` from this thread would only cut the next wait short.
            self.core.queue().end_idle();
            if reported {
                self.retry_ready();
            }
        }
    }

    /// Ends every op still owned (canceled) and deregisters every descriptor; cancels every
    /// offloaded job still awaited, then waits for the ones outstanding (running file-system ops
    /// and stdout writes; detached work is let go; see DESIGN.md, "Offloaded work").
    fn drain(&self) {
        self.with_ops(|ops, after| ops.drain(after));
        self.offloader.borrow_mut().cancel_all();
        loop {
            self.reap();
            if self.offloader.borrow().outstanding() == 0 {
                break;
            }
            // A file-system op or a stdout write (awaited or not): it ends on its own, and its
            // job's `notify` ends this wait.
            let _ = self.poller.wait(&mut self.events.borrow_mut(), None);
        }
    }
}

impl Io for PollBackend {
    fn core(&self) -> &BackendCore {
        &self.core
    }

    /// Tries the op now; one that would block waits for its socket's readiness. Offloaded work
    /// goes to the pool.
    fn submit(&self, op: Op) -> Submitted {
        match op {
            Op::Offload(work) => self.offloader.borrow_mut().submit(work),
            Op::Close { .. } => self.with_ops(|ops, after| ops.submit_close(op, after)),
            // No aftermath: a socket op started readies nothing and drops nothing of note.
            op => self.ops.borrow_mut().submit(op),
        }
    }

    fn cancel_op(&self, id: OpId) {
        if Offloader::owns(id) {
            return self.offloader.borrow_mut().cancel(id);
        }
        self.with_ops(|ops, after| ops.cancel(id, after));
    }

    fn discard_op(&self, id: OpId) {
        if Offloader::owns(id) {
            return self.offloader.borrow_mut().discard(id);
        }
        self.with_ops(|ops, after| ops.discard(id, after));
    }

    /// Sockets made elsewhere become non-blocking, as this backend's own are.
    fn adopt(&self, handle: &Handle) {
        // Failing on a valid socket is impossible short of a bug; an op on a socket left
        // blocking would still be correct, only stall the loop.
        if let Some(stream) = handle.get::<net::TcpStream>() {
            let _ = stream.set_nonblocking(true);
        } else if let Some(listener) = handle.get::<net::TcpListener>() {
            let _ = listener.set_nonblocking(true);
        } else if let Some(socket) = handle.get::<net::UdpSocket>() {
            let _ = socket.set_nonblocking(true);
        } else if let Some(stream) = handle.get::<unix::UnixStream>() {
            let _ = stream.set_nonblocking(true);
        } else if let Some(listener) = handle.get::<unix::UnixListener>() {
            let _ = listener.set_nonblocking(true);
        } else if let Some(socket) = handle.get::<unix::UnixDatagram>() {
            let _ = socket.set_nonblocking(true);
        }
    }
}

impl Driver for PollBackend {
    /// One turn: fire due timers and run every task ready at the start of the turn (after
    /// collecting, without waiting, the readiness already there if ops wait for it); if none was
    /// ready, first wait in the poller until a socket is ready, the next timer, a wake from
    /// another thread, or `deadline_ms`, then run what that made ready. A turn never waits after
    /// running tasks, so the driver sees at once what they did.
    fn poll(&self, deadline_ms: u64) -> Next {
        self.core.fire_due();
        self.reap();
        let mut batch = self.batch.take();
        self.core.queue().drain_into(&mut batch);
        if batch.is_empty() {
            self.idle(deadline_ms);
            self.core.queue().drain_into(&mut batch);
        } else if self.io_in_flight() {
            self.with_ops(|ops, after| {
                ops.try_unsure(after);
                ops.retry_later(after);
            });
            if self.wait(Some(Duration::ZERO)) {
                self.retry_ready();
            }
            self.core.queue().drain_into(&mut batch);
        }
        while let Some(runnable) = batch.pop_front() {
            runnable.run();
        }
        self.batch.replace(batch);
        self.with_ops(|ops, after| {
            ops.retry_closes(false, after);
            ops.sweep();
        });
        self.core.next(self.work_in_flight(), true)
    }

    /// Refuses later spawns and ops, drops every task still alive, and ends every op left.
    fn shut_down(&self) {
        self.core.shut_down();
        self.drain();
    }
}

impl Drop for PollBackend {
    fn drop(&mut self) {
        // Descriptors are deregistered before the ops holding them drop.
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener as StdListener, TcpStream as StdStream};
    use std::sync::mpsc;
    use std::time::Duration;

    use io_core::{Canceled, Handle, Op, TcpListener, TcpStream};

    use super::PollIo;

    fn std_pair() -> (StdStream, StdStream) {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let client = StdStream::connect(listener.local_addr().unwrap()).unwrap();
        (client, listener.accept().unwrap().0)
    }

    /// Runs `test` on its own thread and fails, instead of hanging, if it takes over 10 s.
    fn with_watchdog<T: Send + 'static>(
        what: &str,
        test: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(test());
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("hung: {what}"))
    }

    /// A task that never waits (it yields every turn) does not keep a socket's readiness from
    /// the loop: each turn that runs tasks first collects what is ready without waiting.
    #[test]
    fn io_completes_while_a_task_loops_on_yields() {
        for edge in [true, false] {
            let received = with_watchdog("a read starved by a busy task", move || {
                let (mut peer, server) = std_pair();
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    peer.write_all(b"ping").unwrap();
                    peer
                });
                let io = PollIo::with_edge(edge).unwrap();
                let received = io
                    .run(|cx| async move {
                        let stream = TcpStream::from_std(&cx, server);
                        let reader = cx.spawn(move |_| async move {
                            let (n, buf) = stream.read(Vec::with_capacity(16)).await;
                            n.unwrap();
                            Ok(buf)
                        });
                        while !reader.is_finished() {
                            cx.yield_now().await?;
                        }
                        reader.await
                    })
                    .unwrap();
                drop(writer.join().unwrap());
                received
            });
            assert_eq!(received, b"ping");
        }
    }

    /// A read that came back short may have stopped at the peer's end of stream, whose edge it
    /// used: the next read still sees the end (0) instead of waiting for an edge that never
    /// comes.
    #[test]
    fn a_read_after_a_short_one_sees_the_end_of_stream() {
        for edge in [true, false] {
            let reads = with_watchdog("a read after a short one, at the end", move || {
                let (mut peer, server) = std_pair();
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    peer.write_all(b"abc").unwrap();
                    peer.shutdown(std::net::Shutdown::Write).unwrap();
                    peer
                });
                let io = PollIo::with_edge(edge).unwrap();
                let reads = io
                    .run(|cx| async move {
                        let stream = TcpStream::from_std(&cx, server);
                        let (first, buf) = stream.read(Vec::with_capacity(16)).await; // waits
                        let (second, _) = stream.read(Vec::with_capacity(16)).await;
                        Ok((first.unwrap(), buf, second.unwrap()))
                    })
                    .unwrap();
                drop(writer.join().unwrap());
                reads
            });
            assert_eq!(reads, (3, b"abc".to_vec(), 0));
        }
    }

    /// Closing a descriptor an op waits on cancels the op (it ends with a canceled error and
    /// its buffer), then closes the descriptor: the peer sees the end of the stream.
    #[test]
    fn close_cancels_the_ops_waiting_on_the_descriptor_then_closes_it() {
        for edge in [true, false] {
            let (read, close, peer_saw) = with_watchdog("a close waiting on a read", move || {
                let (mut peer, server) = std_pair();
                let io = PollIo::with_edge(edge).unwrap();
                let (read, close) = io
                    .run(|cx| async move {
                        let handle = Handle::new(server);
                        cx.io().adopt(&handle);
                        let held = handle.clone();
                        let reader = cx.spawn(move |cx| async move {
                            let done = cx
                                .submit(Op::Recv {
                                    stream: held,
                                    buf: Vec::with_capacity(64),
                                })
                                .await;
                            Ok((
                                done.result.map_err(|e| Canceled::is_canceled(&e)),
                                done.op.into_buf().capacity(),
                            ))
                        });
                        cx.yield_now().await?; // the read is waiting on the socket
                        let close = cx
                            .submit(Op::Close {
                                handle: Some(handle),
                            })
                            .await;
                        Ok((reader.await?, close.result.unwrap()))
                    })
                    .unwrap();
                assert_eq!(io.ops_owned(), 0);
                let mut rest = Vec::new();
                let peer_saw = peer.read_to_end(&mut rest).map(|_| rest);
                (read, close, peer_saw.unwrap())
            });
            assert_eq!(read, (Err(true), 64), "canceled, buffer back");
            assert_eq!(close, 0);
            assert!(peer_saw.is_empty(), "end of stream");
        }
    }

    /// A close cancels the reads waiting on its socket; a task that retries its read on its own
    /// handle clone after that cancel is refused (`EBADF`, as on a closed descriptor) instead
    /// of keeping the socket open under a close that reported success: the peer sees the
    /// connection end.
    #[test]
    fn an_op_submitted_on_a_socket_being_closed_is_refused_and_the_close_closes_it() {
        for edge in [true, false] {
            let (close, retried, peer_saw) =
                with_watchdog("a close behind a retried read", move || {
                    let (peer, server) = std_pair();
                    let io = PollIo::with_edge(edge).unwrap();
                    io.run(|cx| async move {
                        let handle = Handle::new(server);
                        cx.io().adopt(&handle);
                        let held = handle.clone();
                        let reader = cx.spawn(move |cx| async move {
                            loop {
                                let done = cx
                                    .submit(Op::Recv {
                                        stream: held.clone(),
                                        buf: Vec::with_capacity(8),
                                    })
                                    .await;
                                match done.result {
                                    Err(e) if Canceled::is_canceled(&e) => continue,
                                    other => return Ok(other.map_err(|e| e.raw_os_error())),
                                }
                            }
                        });
                        cx.yield_now().await?;
                        let close = cx
                            .submit(Op::Close {
                                handle: Some(handle),
                            })
                            .await;
                        let retried = reader.await?;
                        let mut peer = peer;
                        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut byte = [0u8; 1];
                        let peer_saw = peer.read(&mut byte).map_err(|e| e.kind());
                        Ok((close.result.map_err(|e| e.to_string()), retried, peer_saw))
                    })
                    .unwrap()
                });
            assert_eq!(close, Ok(0));
            assert_eq!(retried, Err(Some(libc::EBADF)));
            assert_eq!(peer_saw, Ok(0), "the peer sees the connection end");
        }
    }

    /// The datagram and Unix socket ops wait for readiness as TCP's do, with registrations kept
    /// (edge) or re-armed (oneshot): a `recv_from` waits for a datagram, an `accept_unix` for a
    /// client, and a `recv` on the accepted Unix stream for its bytes, all sent by another thread.
    #[test]
    fn udp_and_unix_ops_wait_for_readiness_in_both_modes() {
        use io_core::op::{SocketOptions, UnixKind};
        use std::os::unix::net::UnixStream as StdUnixStream;
        for edge in [true, false] {
            let dir = std::env::temp_dir()
                .join(format!("ioswap-poll-unit-{}-{edge}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("s.sock");
            let got = with_watchdog("udp and unix waits", move || {
                let io = PollIo::with_edge(edge).unwrap();
                io.run(move |cx| async move {
                    let udp = cx
                        .submit(Op::BindUdp {
                            addr: "127.0.0.1:0".parse().unwrap(),
                            options: SocketOptions::udp(),
                            socket: None,
                        })
                        .await;
                    let Op::BindUdp {
                        socket: Some(udp), ..
                    } = udp.op
                    else {
                        panic!("bind_udp: {:?}", udp.result)
                    };
                    let listener = cx
                        .submit(Op::BindUnix {
                            path: path.clone(),
                            kind: UnixKind::Listener,
                            backlog: 4,
                            socket: None,
                        })
                        .await;
                    let Op::BindUnix {
                        socket: Some(listener),
                        ..
                    } = listener.op
                    else {
                        panic!("bind_unix: {:?}", listener.result)
                    };
                    let to = udp.resource().local_addr().unwrap();
                    let peer = std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                        sender.send_to(b"dgram", to).unwrap();
                        std::thread::sleep(Duration::from_millis(20));
                        let mut client = StdUnixStream::connect(path).unwrap();
                        std::thread::sleep(Duration::from_millis(20));
                        client.write_all(b"unix").unwrap();
                        client
                    });
                    let datagram = cx
                        .submit(Op::RecvFrom {
                            socket: udp,
                            buf: Vec::with_capacity(16),
                            from: None,
                        })
                        .await;
                    datagram.result.unwrap();
                    let accepted = cx
                        .submit(Op::AcceptUnix {
                            listener,
                            accepted: None,
                        })
                        .await;
                    let Op::AcceptUnix {
                        accepted: Some(stream),
                        ..
                    } = accepted.op
                    else {
                        panic!("accept_unix: {:?}", accepted.result)
                    };
                    let bytes = cx
                        .submit(Op::Recv {
                            stream,
                            buf: Vec::with_capacity(16),
                        })
                        .await;
                    bytes.result.unwrap();
                    drop(peer.join().unwrap());
                    Ok((datagram.op.into_buf(), bytes.op.into_buf()))
                })
                .unwrap()
            });
            assert_eq!(got, (b"dgram".to_vec(), b"unix".to_vec()));
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    /// A socket stays registered between its waits (edge-triggered); dropping its stream still
    /// closes it (the peer sees the end of the stream while the loop runs on), and a new
    /// descriptor that gets the same number (a listener here) waits and completes normally.
    #[test]
    fn a_dropped_socket_that_waited_closes_and_its_number_is_reusable() {
        for edge in [true, false] {
            let (first, reused, second) = with_watchdog("a kept registration", move || {
                let (mut peer, server) = std_pair();
                let number = std::os::fd::AsRawFd::as_raw_fd(&server);
                let peer_thread = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    peer.write_all(b"one").unwrap();
                    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut rest = Vec::new();
                    peer.read_to_end(&mut rest)
                        .map(|_| rest)
                        .map_err(|e| e.kind())
                });
                let io = PollIo::with_edge(edge).unwrap();
                let (first, reused, second) = io
                    .run(move |cx| async move {
                        let stream = TcpStream::from_std(&cx, server);
                        let (n, buf) = stream.read(Vec::with_capacity(16)).await; // waits
                        n.unwrap();
                        drop(stream);
                        // The peer sees the end while this task still runs.
                        let saw = peer_thread;
                        while !saw.is_finished() {
                            cx.sleep(1).await?;
                        }
                        let peer_saw = saw.join().unwrap();
                        assert_eq!(peer_saw, Ok(Vec::new()), "end of stream");
                        // New descriptors take the lowest free numbers: one gets the dropped
                        // socket's (unless a test on another thread took it first).
                        let mut spare = Vec::new();
                        let listener = loop {
                            let listener = StdListener::bind("127.0.0.1:0").unwrap();
                            let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
                            if fd >= number || spare.len() > 64 {
                                break listener;
                            }
                            spare.push(listener);
                        };
                        drop(spare);
                        let reused = std::os::fd::AsRawFd::as_raw_fd(&listener) == number;
                        let addr = listener.local_addr().unwrap();
                        let writer = std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_millis(20));
                            let mut peer = StdStream::connect(addr).unwrap();
                            peer.write_all(b"two").unwrap();
                            peer
                        });
                        let listener = TcpListener::from_std(&cx, listener);
                        let (stream, _) = listener.accept().await.unwrap(); // waits on the number
                        let (n, second) = stream.read(Vec::with_capacity(16)).await;
                        n.unwrap();
                        drop(writer.join().unwrap());
                        Ok((buf, reused, second))
                    })
                    .unwrap();
                (first, reused, second)
            });
            assert_eq!(first, b"one");
            assert_eq!(second, b"two");
            if !reused {
                eprintln!("the dropped socket's number went elsewhere: reuse not exercised");
            }
        }
    }
}
