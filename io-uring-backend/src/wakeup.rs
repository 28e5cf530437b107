//! Wakeups from other threads: an eventfd whose read is kept in flight on the ring, and — from
//! a thread that runs a ring of its own — `IORING_OP_MSG_RING` (Linux 5.18).
//!
//! A waker woken on another thread pushes its task onto the run queue; if the loop is asleep in
//! `io_uring_enter`, the queue's idle hook wakes it. From a thread with no ring of ours (a pool
//! thread, a plain thread) the hook writes the eventfd: the read in flight completes, and the
//! wait returns. From a thread whose own ring is running (another core of a thread-per-core
//! run) the hook instead pushes a `MSG_RING` onto that thread's ring — only the owning thread
//! ever touches a ring — and submits it: the kernel posts a completion with user_data
//! [`MSG_WAKE`] straight into the sleeping ring's completion queue, which ends its wait; its
//! reap ignores the completion. No eventfd write, no read to complete and re-arm.
//!
//! Where the poster's kernel lacks `MSG_RING` (its ring's probe says no), where its ring is busy
//! (the hook runs while the poster's op table is borrowed) or closing, where the kernel does not
//! take the request at once, and for a poster's own ring, the eventfd is written as before.
//!
//! No wake is lost: the run queue calls the hook after marking the loop busy, and a completion
//! posted before the loop enters its wait ends that wait at once, like a written eventfd. The
//! target's ring fd is duplicated, so it stays a ring (never a reused descriptor) as long as a
//! waker can reach it; a ring whose loop has ended just collects a completion nobody reads. A
//! full completion queue cannot swallow the wake: with `IORING_FEAT_NODROP` (required) the
//! completion goes to the overflow list, and a full queue means the target has completions to
//! reap, so its wait returns anyway. If the kernel still refuses a `MSG_RING` (the poster learns
//! it from the request's own completion, [`MSG_SENT`]), the poster cannot tell which ring it
//! failed to wake: it writes the eventfd of every live ring, and stops using `MSG_RING`.

use std::cell::{RefCell, UnsafeCell};
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak as SyncWeak};

use io_uring::{opcode, squeue, types};

use crate::UringError;

/// user_data of the completion a `MSG_RING` wake-up posts into the ring it wakes.
pub(crate) const MSG_WAKE: u64 = u64::MAX - 2;
/// user_data of a `MSG_RING` request on the ring that sent it (its own completion: its result).
pub(crate) const MSG_SENT: u64 = u64::MAX - 3;

/// Cleared for good once the kernel refused a `MSG_RING`: every poster writes eventfds then.
static MSG_RING_WORKS: AtomicBool = AtomicBool::new(true);

/// Every live ring's wake target, for the rare wake-everyone after a refused `MSG_RING`.
static TARGETS: Mutex<Vec<SyncWeak<Target>>> = Mutex::new(Vec::new());

thread_local! {
    /// The ring this thread runs, if it runs one of ours: where its `MSG_RING`s go out.
    static SOURCE: RefCell<Option<Weak<dyn MsgSource>>> = const { RefCell::new(None) };
}

/// A ring that can send a `MSG_RING` wake-up: the backend running on this thread.
pub(crate) trait MsgSource {
    /// Pushes a `MSG_RING` to the ring `target` and submits it. `false` if it could not (no
    /// `MSG_RING` on this kernel, the table is borrowed or closing, the kernel did not take it
    /// at once, or `target` is this very ring): the caller writes the eventfd instead.
    fn send_msg_wake(&self, target: RawFd) -> bool;
}

/// Makes `source` this thread's ring until the guard drops (which restores the one before, for
/// a nested run).
pub(crate) fn run_on_this_thread(source: Weak<dyn MsgSource>) -> SourceGuard {
    let previous = SOURCE.with(|slot| slot.borrow_mut().replace(source));
    SourceGuard { previous }
}

/// Restores the thread's previous ring when dropped.
pub(crate) struct SourceGuard {
    previous: Option<Weak<dyn MsgSource>>,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = SOURCE.try_with(|slot| {
            if let Ok(mut slot) = slot.try_borrow_mut() {
                *slot = previous;
            }
        });
    }
}

/// Sends a `MSG_RING` to `target` from this thread's ring, if it runs one that can.
fn send_from_this_thread(target: RawFd) -> bool {
    SOURCE
        .try_with(|slot| {
            let source = slot.try_borrow().ok()?.as_ref()?.upgrade()?;
            Some(source.send_msg_wake(target))
        })
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// What wakes one ring: its eventfd, its ring fd (a duplicate), and counts of each kind of wake.
struct Target {
    eventfd: fs::File,
    /// A duplicate of the ring's fd, the target of `MSG_RING`s; `None` where the kernel has no
    /// `MSG_RING` (or the duplicate could not be made).
    ring: Option<OwnedFd>,
    /// Wakes sent as `MSG_RING` by another ring's thread.
    msg_wakes: AtomicU64,
    /// Wakes written to the eventfd.
    eventfd_wakes: AtomicU64,
}

impl Target {
    fn wake(&self) {
        if let Some(ring) = &self.ring {
            if MSG_RING_WORKS.load(Ordering::Relaxed) && send_from_this_thread(ring.as_raw_fd()) {
                self.msg_wakes.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.write_eventfd();
    }

    fn write_eventfd(&self) {
        self.eventfd_wakes.fetch_add(1, Ordering::Relaxed);
        // EAGAIN (counter saturated) still leaves the eventfd readable: nothing to do.
        let _ = (&self.eventfd).write(&1u64.to_ne_bytes());
    }
}

/// The eventfd and the 8-byte buffer its in-flight read fills; the ring's `MSG_RING` target.
pub(crate) struct Wakeup {
    target: Arc<Target>,
    /// Whether this ring sends its wakes of other rings as `MSG_RING` (the kernel has it).
    sends_msg_ring: bool,
    /// Written by the kernel while the read is in flight; never read by us.
    buf: Box<UnsafeCell<[u8; 8]>>,
}

impl Wakeup {
    /// The wake-up of the ring `ring_fd`; `msg_ring`: whether the kernel has `MSG_RING` (the
    /// ring's probe).
    pub(crate) fn new(ring_fd: RawFd, msg_ring: bool) -> Result<Wakeup, UringError> {
        // Blocking: the ring's read is its only reader, and on 5.11-5.13 io_uring hands a
        // non-blocking file's EAGAIN back instead of waiting. A write blocks only at a counter of
        // 2^64 - 2, which the read in flight keeps draining.
        // SAFETY: eventfd takes no pointers; a negative result is handled below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(UringError::from_io(&std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // The duplicate keeps the ring a ring for as long as a waker may send to it.
        let ring = if msg_ring {
            // SAFETY: the ring's fd is open for this call: the ring outlives its wake-up's
            // construction (the caller holds it).
            let borrowed = unsafe { BorrowedFd::borrow_raw(ring_fd) };
            borrowed.try_clone_to_owned().ok()
        } else {
            None
        };
        let target = Arc::new(Target {
            eventfd: fs::File::from(owned),
            ring,
            msg_wakes: AtomicU64::new(0),
            eventfd_wakes: AtomicU64::new(0),
        });
        let mut targets = TARGETS.lock().unwrap_or_else(|e| e.into_inner());
        targets.retain(|target| target.strong_count() > 0);
        targets.push(Arc::downgrade(&target));
        drop(targets);
        Ok(Wakeup {
            target,
            sends_msg_ring: msg_ring,
            buf: Box::new(UnsafeCell::new([0; 8])),
        })
    }

    /// What the run queue calls, from any thread, when a task is pushed while the loop sleeps.
    pub(crate) fn notifier(&self) -> impl Fn() + Send + Sync + 'static {
        let target = self.target.clone();
        move || target.wake()
    }

    /// The `MSG_RING` that wakes the ring `target`, if this ring sends them: its completion
    /// there carries [`MSG_WAKE`], its own here [`MSG_SENT`].
    pub(crate) fn msg_entry(&self, target: RawFd) -> Option<squeue::Entry> {
        (self.sends_msg_ring && MSG_RING_WORKS.load(Ordering::Relaxed)).then(|| {
            opcode::MsgRingData::new(types::Fd(target), 0, MSG_WAKE, None)
                .build()
                .user_data(MSG_SENT)
        })
    }

    /// The completion of a `MSG_RING` this ring sent: on a refusal, no more `MSG_RING`s, and
    /// every ring is woken through its eventfd (the one this was for among them).
    pub(crate) fn msg_sent(&self, result: i32) {
        if result >= 0 {
            return;
        }
        MSG_RING_WORKS.store(false, Ordering::Relaxed);
        let targets: Vec<_> = TARGETS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(SyncWeak::upgrade)
            .collect();
        for target in targets {
            target.write_eventfd();
        }
    }

    /// Gives up the read's buffer without freeing it, for a tear-down that could not wait for
    /// the read's completion.
    pub(crate) fn leak_buffer(&mut self) {
        let fresh = Box::new(UnsafeCell::new([0; 8]));
        std::mem::forget(std::mem::replace(&mut self.buf, fresh));
    }

    /// The read to keep in flight. Its buffer lives as long as `self`, and `self` outlives every
    /// request on the ring (the ring is drained before the backend's fields drop).
    pub(crate) fn read_entry(&self, user_data: u64) -> squeue::Entry {
        opcode::Read::new(
            types::Fd(self.target.eventfd.as_raw_fd()),
            self.buf.get().cast::<u8>(),
            8,
        )
        .build()
        .user_data(user_data)
    }

    /// Wakes of this ring so far: `(by MSG_RING, by the eventfd)`.
    #[cfg(test)]
    pub(crate) fn wakes(&self) -> (u64, u64) {
        (
            self.target.msg_wakes.load(Ordering::Relaxed),
            self.target.eventfd_wakes.load(Ordering::Relaxed),
        )
    }

    /// Makes this ring send its wakes of other rings through their eventfds (`false`), or as
    /// `MSG_RING` where the kernel has it (`true`).
    #[cfg(test)]
    pub(crate) fn set_sends_msg_ring(&mut self, on: bool) {
        self.sends_msg_ring = on && self.target.ring.is_some();
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{mpsc, Arc, Mutex};
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, Instant};

    use crate::ring::tests::pretend_no_opcodes_on_this_thread;
    use crate::UringIo;

    /// The ball of a ping-pong between two threads: whose turn it is, and each side's waker.
    #[derive(Default)]
    struct Ball {
        turn: u64,
        wakers: [Option<Waker>; 2],
    }

    /// Side `side`'s wait for its turn: a foreign future, woken from the other thread.
    struct MyTurn<'a> {
        ball: &'a Mutex<Ball>,
        side: usize,
    }

    impl Future for MyTurn<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut ball = self.ball.lock().unwrap();
            if ball.turn % 2 == self.side as u64 {
                Poll::Ready(())
            } else {
                ball.wakers[self.side] = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// How a ring was set up for a ping-pong.
    #[derive(Clone, Copy)]
    enum Setup {
        /// As the kernel allows: `MSG_RING` where the probe says it is there.
        Probed,
        /// `MSG_RING` turned off: every wake writes the eventfd.
        ForcedOff,
        /// The probe pretends the kernel has no optional opcode (`MSG_RING` among them).
        ProbeSaysNo,
    }

    /// `rounds` round trips between two uring backends on two threads, each side waking the
    /// other when it passes the ball. Returns each ring's wakes `(MSG_RING, eventfd)`, whether
    /// its probe found `MSG_RING`, and the wall time.
    fn ping_pong(setup: Setup, rounds: u64) -> ([(u64, u64); 2], bool, Duration) {
        let ball = Arc::new(Mutex::new(Ball::default()));
        let (done_tx, done_rx) = mpsc::channel();
        let start = Instant::now();
        for side in 0..2 {
            let (ball, done_tx) = (ball.clone(), done_tx.clone());
            std::thread::spawn(move || {
                pretend_no_opcodes_on_this_thread(matches!(setup, Setup::ProbeSaysNo));
                let io = UringIo::new().expect("io_uring available");
                let has_msg_ring = io.0.ops.borrow().opcodes().msg_ring;
                if matches!(setup, Setup::ForcedOff) {
                    io.0.ops.borrow_mut().wakeup_mut().set_sends_msg_ring(false);
                }
                let played = io.run(move |_cx| async move {
                    for _ in 0..rounds {
                        MyTurn { ball: &ball, side }.await;
                        let other = {
                            let mut ball = ball.lock().unwrap();
                            ball.turn += 1;
                            ball.wakers[1 - side].take()
                        };
                        if let Some(other) = other {
                            other.wake();
                        }
                    }
                    Ok(())
                });
                let wakes = io.0.ops.borrow().wakeup().wakes();
                let _ = done_tx.send((side, played.is_ok(), wakes, has_msg_ring));
            });
        }
        let mut wakes = [(0, 0); 2];
        let mut has_msg_ring = true;
        for _ in 0..2 {
            let (side, played, side_wakes, has) = done_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("a side finished (no wake-up lost)");
            assert!(played, "side {side} ran to its end");
            wakes[side] = side_wakes;
            has_msg_ring &= has;
        }
        (wakes, has_msg_ring, start.elapsed())
    }

    #[test]
    fn a_ping_pong_between_rings_wakes_by_msg_ring_where_the_kernel_has_it() {
        let (wakes, has_msg_ring, _) = ping_pong(Setup::Probed, 2_000);
        for (msg, eventfd) in wakes {
            if has_msg_ring {
                assert!(msg > 0, "woken by MSG_RING: {wakes:?}");
            } else {
                assert_eq!(msg, 0, "no MSG_RING without the kernel's: {wakes:?}");
                assert!(eventfd > 0, "woken by the eventfd: {wakes:?}");
            }
        }
    }

    #[test]
    fn a_ping_pong_between_rings_with_msg_ring_off_wakes_by_eventfd() {
        let (wakes, _, _) = ping_pong(Setup::ForcedOff, 2_000);
        for (msg, eventfd) in wakes {
            assert_eq!(msg, 0, "{wakes:?}");
            assert!(eventfd > 0, "{wakes:?}");
        }
    }

    #[test]
    fn where_the_probe_has_no_msg_ring_the_eventfd_is_chosen() {
        let (wakes, has_msg_ring, _) = ping_pong(Setup::ProbeSaysNo, 2_000);
        assert!(!has_msg_ring);
        for (msg, eventfd) in wakes {
            assert_eq!(msg, 0, "{wakes:?}");
            assert!(eventfd > 0, "{wakes:?}");
        }
    }

    #[test]
    fn a_thread_without_a_ring_wakes_by_eventfd() {
        let io = UringIo::new().expect("io_uring available");
        let ball = Arc::new(Mutex::new(Ball::default()));
        let waker_side = ball.clone();
        // The other side is a plain thread: it passes the ball back each time it gets it.
        let plain = std::thread::spawn(move || {
            for _ in 0..200 {
                loop {
                    let mut ball = waker_side.lock().unwrap();
                    if ball.turn % 2 == 1 {
                        ball.turn += 1;
                        let waker = ball.wakers[0].take();
                        drop(ball);
                        if let Some(waker) = waker {
                            waker.wake();
                        }
                        break;
                    }
                    drop(ball);
                    std::thread::yield_now();
                }
            }
        });
        io.run(move |_cx| async move {
            for _ in 0..200 {
                MyTurn {
                    ball: &ball,
                    side: 0,
                }
                .await;
                ball.lock().unwrap().turn += 1;
            }
            Ok(())
        })
        .unwrap();
        plain.join().unwrap();
        let (msg, _) = io.0.ops.borrow().wakeup().wakes();
        assert_eq!(msg, 0);
    }

    /// CPU time (user + system) of this process so far, all threads.
    fn cpu_time() -> Duration {
        // SAFETY: getrusage writes only into the zeroed struct it is given.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(usage.ru_utime) + tv(usage.ru_stime)
    }

    /// The cross-ring round trip, MSG_RING against the eventfd (not a test: a measurement): wall
    /// and CPU (both threads, user + system) time per round trip.
    /// `cargo test -p io-uring-backend --release --lib -- --ignored --nocapture round_trip`
    #[test]
    #[ignore = "a measurement: run it alone, in release"]
    fn round_trip_times() {
        const ROUNDS: u64 = 50_000;
        for run in 0..5 {
            for (name, setup) in [("eventfd", Setup::ForcedOff), ("msg_ring", Setup::Probed)] {
                let cpu = cpu_time();
                let (wakes, _, wall) = ping_pong(setup, ROUNDS);
                let cpu = cpu_time() - cpu;
                println!(
                    "run {run} {name:8} {:7.0} ns wall, {:7.0} ns CPU per round trip, wakes {wakes:?}",
                    wall.as_nanos() as f64 / ROUNDS as f64,
                    cpu.as_nanos() as f64 / ROUNDS as f64
                );
            }
        }
    }
}
