//! [`Semaphore`]: counted permits, handed to waiters first come, first served.
//!
//! [`Mutex`](crate::Mutex) (one permit) and [`RwLock`](crate::RwLock) (one permit per reader,
//! all of them for a writer) are written on it, so the queue, the hand-over and the cancel rules
//! live here once.
//!
//! Permits are handed over, not grabbed: a release gives the freed permits to the oldest waiter
//! (taking them off the count and readying its park) as soon as there are enough for it. The
//! waiter then owns them whether or not it has run yet, which is what makes "completion wins"
//! exact: a waiter whose task is canceled after the hand-over returns `Ok` with the permits; one
//! that leaves instead (its future dropped) gives them back, and they go on to the next waiter.
//! Nothing is ever held by a waiter that is gone.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_core::{Canceled, Cx, Park};

/// Why [`Semaphore::acquire`] gave no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AcquireError {
    /// The task was canceled before the permits were handed to it; it holds none.
    #[error("the acquiring task was canceled before the permits were handed to it; it holds none")]
    Canceled,
    /// The semaphore is closed: no permit will ever be handed out again.
    #[error("the semaphore is closed; no permit will be handed out")]
    Closed,
}

impl From<Canceled> for AcquireError {
    fn from(_: Canceled) -> AcquireError {
        AcquireError::Canceled
    }
}

/// Why [`Semaphore::try_acquire`] gave no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TryAcquireError {
    /// Not enough free permits, or other tasks are waiting and come first; `acquire` would
    /// wait.
    #[error(
        "no permits free for this request now (or earlier waiters come first); acquire would wait"
    )]
    NoPermits,
    /// The semaphore is closed.
    #[error("the semaphore is closed; no permit will be handed out")]
    Closed,
}

/// Counted permits. [`acquire(n)`](Semaphore::acquire) waits until `n` are free and hands them
/// over as a [`SemaphorePermit`], which gives them back when dropped.
///
/// - **FIFO, no starvation**: waiters are served in the order they came. A large request at
///   the head of the queue blocks later small ones, even when enough permits are free for them,
///   so it cannot be overtaken forever. [`try_acquire`](Semaphore::try_acquire) does not jump
///   the queue either.
/// - **Cancel-safe**: a canceled waiter loses nothing and holds nothing. If the permits were
///   handed to it before it saw its cancel, it returns `Ok` with them (completion wins; the
///   cancel arrives at its next suspend point); if its future is dropped, whatever was handed to
///   it goes on to the next waiter.
/// - **Closing** ([`close`](Semaphore::close)) wakes every waiter with
///   [`AcquireError::Closed`]; permits already held stay held until dropped.
///
/// Like everything on a [`Cx`], it is `!Send`: share it between the tasks of one run with an
/// `Rc`. Permits own a handle on the semaphore, so they can move into a spawned task.
///
/// ```
/// use std::rc::Rc;
/// use sync::Semaphore;
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let pool = Rc::new(Semaphore::new(&cx, 2)); // two connections
///         let tasks: Vec<_> = (0..4u64)
///             .map(|i| {
///                 let pool = pool.clone();
///                 cx.spawn(move |cx| async move {
///                     let _conn = pool.acquire_one().await.map_err(|_| io_core::Canceled)?;
///                     cx.sleep(10).await?; // use it
///                     Ok((i, cx.now_ms()))
///                 })
///             })
///             .collect();
///         let mut done = Vec::new();
///         for task in tasks {
///             done.push(task.await?);
///         }
///         // Two at a time, in the order they asked.
///         assert_eq!(done, [(0, 10), (1, 10), (2, 20), (3, 20)]);
///         assert_eq!(pool.available_permits(), 2);
///         Ok(())
///     })
///     .unwrap();
/// ```
pub struct Semaphore {
    core: Rc<Core>,
}

static_assertions::assert_not_impl_any!(Semaphore: Send, Sync);
static_assertions::assert_not_impl_any!(SemaphorePermit: Send, Sync);

/// What the semaphore and its permits share.
struct Core {
    cx: Cx,
    state: RefCell<State>,
}

struct State {
    /// Free permits: neither held nor handed to a waiter.
    permits: usize,
    /// Every permit the semaphore has: free, held, or handed to a waiter (forgotten ones are
    /// gone). At most [`Semaphore::MAX_PERMITS`]; only `add_permits` raises it, and checks
    /// there, so giving permits back (`permits` rises, never past `total`) cannot overflow.
    total: usize,
    closed: bool,
    /// Waiters, oldest first. A waiter that leaves from the middle stays as a tombstone
    /// ([`Status::Left`]) until it reaches the front or the queue is compacted, so leaving is
    /// O(1) amortized (a walk to find it made a storm of cancels quadratic in `channel`). The
    /// front is never a tombstone between operations, so an empty queue means nobody waits.
    queue: VecDeque<Rc<Waiter>>,
    /// Tombstones in `queue`.
    left: usize,
    /// Waiters taken off the queue whose last handle may be this one: dropped once the state
    /// is no longer borrowed (dropping a park can drop a waker, and so a task, whose drop may
    /// release permits).
    garbage: Vec<Rc<Waiter>>,
    /// Parks of waiters served (or closed out) and off the queue: readied once the state is no
    /// longer borrowed, since readying a park runs its waker, which may use the semaphore.
    to_ready: Vec<Park>,
}

/// Below this many tombstones a queue is never compacted: small queues only trim their ends.
const COMPACT_FROM: usize = 16;

/// One waiting acquire.
struct Waiter {
    park: Park,
    wanted: usize,
    status: Cell<Status>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    /// In the queue, holding nothing.
    Waiting,
    /// Off the queue: its permits were handed to it (taken off the free count).
    Granted,
    /// Off the queue: the semaphore closed while it waited.
    Closed,
    /// Left the queue (canceled, or its future dropped) and holds nothing; a tombstone while
    /// still in it.
    Left,
}

impl Semaphore {
    /// The most permits a semaphore can have (`usize::MAX >> 3`), counting those held and
    /// handed to waiters as well as the free ones. More is a bug in the caller: `new` and
    /// `add_permits` panic on it, and so does `acquire` of more, which could never be served.
    pub const MAX_PERMITS: usize = usize::MAX >> 3;

    /// A semaphore with `permits` free permits, on the run of `cx`.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`].
    pub fn new(cx: &Cx, permits: usize) -> Semaphore {
        assert!(
            permits <= Semaphore::MAX_PERMITS,
            "a semaphore counts at most Semaphore::MAX_PERMITS permits, not {permits}"
        );
        Semaphore {
            core: Rc::new(Core {
                cx: cx.clone(),
                state: RefCell::new(State {
                    permits,
                    total: permits,
                    closed: false,
                    queue: VecDeque::new(),
                    left: 0,
                    garbage: Vec::new(),
                    to_ready: Vec::new(),
                }),
            }),
        }
    }

    /// Waits until `n` permits are free and it is this request's turn, and takes them.
    ///
    /// - `Ok(permit)`: the permits are held until `permit` is dropped. If they were handed over
    ///   while the task was being canceled, this is still `Ok` (completion wins).
    /// - `Err(AcquireError::Canceled)`: the task was canceled first; it holds nothing and its
    ///   place in the queue is gone. A canceled task is refused at once, like at every suspend
    ///   point, even when permits are free.
    /// - `Err(AcquireError::Closed)`: the semaphore is closed (or closed while waiting).
    ///
    /// Dropping the future before it completes (a timeout, a select) leaves the queue; permits
    /// already handed to it go on to the next waiter. A request for 0 permits completes at once.
    /// A request for more than the semaphore has in all waits until enough are added or it is
    /// closed (or, on a run that can make no progress otherwise, until the backend reports the
    /// deadlock).
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`Semaphore::MAX_PERMITS`]: no semaphore can ever have that many, so the
    /// request could only wait forever at the head of the queue (blocking every later one).
    /// Tokio's `acquire_many` refuses it the same way.
    ///
    /// ```
    /// use sync::{AcquireError, Semaphore};
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let sem = Semaphore::new(&cx, 3);
    ///         let two = sem.acquire(2).await.unwrap();
    ///         assert_eq!((two.num_permits(), sem.available_permits()), (2, 1));
    ///         drop(two);
    ///         assert_eq!(sem.available_permits(), 3);
    ///         sem.close();
    ///         assert_eq!(sem.acquire(1).await.unwrap_err(), AcquireError::Closed);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn acquire(&self, n: usize) -> Acquire {
        self.acquire_as(n, "semaphore acquire")
    }

    /// [`acquire(1)`](Semaphore::acquire).
    pub fn acquire_one(&self) -> Acquire {
        self.acquire(1)
    }

    /// [`acquire`](Semaphore::acquire), whose park deadlock reports show as `what`.
    pub(crate) fn acquire_as(&self, n: usize, what: &'static str) -> Acquire {
        assert!(
            n <= Semaphore::MAX_PERMITS,
            "acquire({n}) can never be served: a semaphore has at most Semaphore::MAX_PERMITS \
             permits"
        );
        Acquire {
            core: self.core.clone(),
            wanted: n,
            what,
            stage: Stage::Start,
        }
    }

    /// Takes `n` permits without waiting. `NoPermits` when fewer than `n` are free *or other
    /// tasks are waiting*: they came first, and taking permits past them could starve a large
    /// request forever. (More than [`Semaphore::MAX_PERMITS`] is never free: `NoPermits`.)
    ///
    /// ```
    /// use sync::{Semaphore, TryAcquireError};
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let sem = Semaphore::new(&cx, 1);
    ///         let held = sem.try_acquire(1).unwrap();
    ///         assert_eq!(sem.try_acquire(1).unwrap_err(), TryAcquireError::NoPermits);
    ///         drop(held);
    ///         assert!(sem.try_acquire(1).is_ok());
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn try_acquire(&self, n: usize) -> Result<SemaphorePermit, TryAcquireError> {
        let taken = self.core.lock(|st| {
            if st.closed {
                Err(TryAcquireError::Closed)
            } else if st.take_at_once(n) {
                Ok(())
            } else {
                Err(TryAcquireError::NoPermits)
            }
        });
        taken.map(|()| SemaphorePermit::new(self.core.clone(), n))
    }

    /// Adds `n` free permits, handing them to waiters in order as far as they go.
    ///
    /// # Panics
    ///
    /// If the semaphore would then have more than [`Semaphore::MAX_PERMITS`] permits in all:
    /// free, held and handed to waiters (permits given up with
    /// [`forget`](SemaphorePermit::forget) no longer count). Nothing is added then. This is the
    /// one place the count is checked: permits given back (a [`SemaphorePermit`] dropped) only
    /// return what was taken, and never panic.
    ///
    /// ```
    /// use sync::Semaphore;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let sem = Semaphore::new(&cx, 0);
    ///         sem.add_permits(2);
    ///         assert_eq!(sem.available_permits(), 2);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn add_permits(&self, n: usize) {
        self.core.lock(|st| {
            st.total = st
                .total
                .checked_add(n)
                .filter(|&total| total <= Semaphore::MAX_PERMITS)
                .unwrap_or_else(|| {
                    panic!(
                        "a semaphore has at most Semaphore::MAX_PERMITS permits: {} in all (free, \
                         held or handed over) and {n} more are too many",
                        st.total
                    )
                });
            st.permits += n;
            self.core.serve(st);
        });
    }

    /// The free permits: neither held nor handed to a waiter. While a large request waits at
    /// the head of the queue, permits freed meanwhile count here but are kept for it.
    pub fn available_permits(&self) -> usize {
        self.core.state.borrow().permits
    }

    /// Closes the semaphore: every waiter wakes with [`AcquireError::Closed`], and later
    /// acquires fail the same way. Permits already held stay valid and still come back on
    /// drop. `true` if this call closed it, `false` if it was closed already.
    ///
    /// ```
    /// use sync::{AcquireError, Semaphore};
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let sem = std::rc::Rc::new(Semaphore::new(&cx, 0));
    ///         let s = sem.clone();
    ///         let waiter = cx.spawn(move |_| async move { Ok(s.acquire(1).await.map(drop)) });
    ///         cx.sleep(5).await?;
    ///         assert!(sem.close());
    ///         assert!(!sem.close());
    ///         assert_eq!(waiter.await?, Err(AcquireError::Closed));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn close(&self) -> bool {
        self.core.lock(|st| {
            if st.closed {
                return false;
            }
            st.closed = true;
            st.left = 0;
            for waiter in st.queue.drain(..) {
                if waiter.status.get() == Status::Waiting {
                    waiter.status.set(Status::Closed);
                    st.to_ready.push(waiter.park.clone());
                }
                st.garbage.push(waiter);
            }
            true
        })
    }

    /// Whether [`close`](Semaphore::close) was called.
    pub fn is_closed(&self) -> bool {
        self.core.state.borrow().closed
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.core.state.borrow();
        f.debug_struct("Semaphore")
            .field("available_permits", &st.permits)
            .field("waiting", &(st.queue.len() - st.left))
            .field("closed", &st.closed)
            .finish()
    }
}

impl Core {
    /// Runs `f` on the state; then, outside the borrow, readies the parks of the waiters it
    /// served and drops what it discarded.
    ///
    /// The state is whole before any waker runs: a served waiter is off the queue and owns its
    /// permits, so a waker may read or use the semaphore, and one that panics leaves nothing
    /// half done (its panic comes out of here once every served waiter is readied).
    fn lock<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.state.borrow_mut();
        let result = f(&mut st);
        if st.garbage.is_empty() && st.to_ready.is_empty() {
            return result;
        }
        let garbage = std::mem::take(&mut st.garbage);
        let to_ready = std::mem::take(&mut st.to_ready);
        drop(st);
        crate::ready_all(&self.cx, &to_ready);
        drop(to_ready);
        drop(garbage);
        result
    }

    /// Gives back `n` permits that were taken (never more than `total`, so no overflow and no
    /// panic: this runs in a permit's drop) and hands them on.
    fn give_back(&self, n: usize) {
        self.lock(|st| {
            st.permits += n;
            debug_assert!(st.permits <= st.total, "more permits given back than taken");
            self.serve(st);
        });
    }

    /// Hands free permits to the waiters at the head of the queue, in order, for as long as
    /// there are enough for the next one; drops the tombstones it meets. The parks of those
    /// served are readied by [`lock`](Core::lock), after the borrow.
    fn serve(&self, st: &mut State) {
        while let Some(front) = st.queue.front() {
            match front.status.get() {
                Status::Left => {
                    let gone = st.queue.pop_front().expect("the front is there");
                    st.left -= 1;
                    st.garbage.push(gone);
                }
                Status::Waiting if front.wanted <= st.permits => {
                    // Off the queue before anything else: its future holds another handle, so
                    // it is alive while it waits. Readied once the state is released (`lock`).
                    let served = st.queue.pop_front().expect("the front is there");
                    st.permits -= served.wanted;
                    served.status.set(Status::Granted);
                    st.to_ready.push(served.park.clone());
                }
                Status::Waiting => break,
                Status::Granted | Status::Closed => unreachable!("served waiters leave the queue"),
            }
        }
    }

    /// `waiter`'s future stops waiting without returning permits to its caller: it leaves the
    /// queue, and permits handed to it go back and on to the next waiter.
    fn leave(&self, waiter: Rc<Waiter>) {
        self.lock(|st| match waiter.status.get() {
            Status::Waiting => {
                waiter.status.set(Status::Left);
                st.left += 1;
                st.garbage.push(waiter);
                // The front may have left: the next ones may be servable now.
                self.serve(st);
                while st
                    .queue
                    .back()
                    .is_some_and(|w| w.status.get() == Status::Left)
                {
                    let gone = st.queue.pop_back().expect("the back is there");
                    st.left -= 1;
                    st.garbage.push(gone);
                }
                st.compact();
            }
            Status::Granted => {
                waiter.status.set(Status::Left);
                // Taken off `permits` when handed over: back within `total`.
                st.permits += waiter.wanted;
                st.garbage.push(waiter);
                self.serve(st);
            }
            Status::Closed | Status::Left => st.garbage.push(waiter),
        });
    }
}

impl State {
    /// Takes `n` permits if they are free and nobody waits.
    fn take_at_once(&mut self, n: usize) -> bool {
        if n == 0 || (self.queue.is_empty() && n <= self.permits) {
            self.permits -= n;
            true
        } else {
            false
        }
    }

    /// Drops every tombstone once they outnumber the waiters (and are more than a few): each
    /// is dropped once, and a compaction visits fewer waiters than it drops, so leaving stays
    /// O(1) amortized and the queue's memory follows the number of waiters.
    fn compact(&mut self) {
        let waiting = self.queue.len() - self.left;
        if self.left <= waiting.max(COMPACT_FROM) {
            return;
        }
        let queue = std::mem::take(&mut self.queue);
        for waiter in queue {
            if waiter.status.get() == Status::Left {
                self.garbage.push(waiter);
            } else {
                self.queue.push_back(waiter);
            }
        }
        self.left = 0;
    }
}

/// Permits taken from a [`Semaphore`]; dropping it gives them back (to the next waiter, if one
/// waits for them).
#[must_use = "the permits are given back as soon as the permit is dropped"]
pub struct SemaphorePermit {
    core: Rc<Core>,
    permits: usize,
}

impl SemaphorePermit {
    fn new(core: Rc<Core>, permits: usize) -> SemaphorePermit {
        SemaphorePermit { core, permits }
    }

    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.permits
    }

    /// Keeps the permits out of the semaphore for good: they are not given back, and no
    /// longer count towards [`Semaphore::MAX_PERMITS`].
    ///
    /// ```
    /// use sync::Semaphore;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let sem = Semaphore::new(&cx, 3);
    ///         sem.try_acquire(1).unwrap().forget();
    ///         assert_eq!(sem.available_permits(), 2);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn forget(mut self) {
        let forgotten = std::mem::take(&mut self.permits);
        if forgotten > 0 {
            self.core.lock(|st| st.total -= forgotten);
        }
    }
}

impl Drop for SemaphorePermit {
    fn drop(&mut self) {
        if self.permits > 0 {
            self.core.give_back(self.permits);
        }
    }
}

impl fmt::Debug for SemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("permits", &self.permits)
            .finish()
    }
}

/// The future of [`Semaphore::acquire`]. Dropping it before it completes leaves the queue and
/// passes on any permits already handed to it.
#[must_use = "futures do nothing unless awaited"]
pub struct Acquire {
    core: Rc<Core>,
    wanted: usize,
    what: &'static str,
    stage: Stage,
}

enum Stage {
    Start,
    Waiting(Rc<Waiter>),
    Done,
}

impl Future for Acquire {
    type Output = Result<SemaphorePermit, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let waiter = match &this.stage {
            Stage::Done => panic!("an Acquire was polled after it completed"),
            Stage::Waiting(waiter) => waiter.clone(),
            Stage::Start => {
                if this.core.cx.check_cancel().is_err() {
                    this.stage = Stage::Done;
                    return Poll::Ready(Err(AcquireError::Canceled));
                }
                // Permits taken at once spend a unit of the task's budget; a wait gives it back.
                let unit = match this.core.cx.poll_budget(cx) {
                    Poll::Ready(Ok(unit)) => unit,
                    Poll::Ready(Err(Canceled)) => {
                        this.stage = Stage::Done;
                        return Poll::Ready(Err(AcquireError::Canceled));
                    }
                    Poll::Pending => return Poll::Pending,
                };
                let (wanted, what) = (this.wanted, this.what);
                let queued = this.core.lock(|st| {
                    if st.closed {
                        Err(Err(AcquireError::Closed))
                    } else if st.take_at_once(wanted) {
                        Err(Ok(()))
                    } else {
                        let waiter = Rc::new(Waiter {
                            park: Park::new(what),
                            wanted,
                            status: Cell::new(Status::Waiting),
                        });
                        st.queue.push_back(waiter.clone());
                        Ok(waiter)
                    }
                });
                match queued {
                    Ok(waiter) => {
                        this.stage = Stage::Waiting(waiter.clone());
                        waiter
                    }
                    Err(done) => {
                        unit.spend();
                        this.stage = Stage::Done;
                        let core = this.core.clone();
                        return Poll::Ready(done.map(|()| SemaphorePermit::new(core, wanted)));
                    }
                }
            }
        };
        loop {
            let woke = std::task::ready!(this.core.cx.poll_suspend(&waiter.park, cx));
            let outcome = match (waiter.status.get(), woke) {
                // Handed over: ours, even if a cancel came too (completion wins).
                (Status::Granted, _) => Ok(SemaphorePermit::new(this.core.clone(), this.wanted)),
                (Status::Closed, _) => Err(AcquireError::Closed),
                (Status::Waiting, Err(Canceled)) => {
                    this.stage = Stage::Done;
                    this.core.leave(waiter);
                    return Poll::Ready(Err(AcquireError::Canceled));
                }
                // Readied with nothing for it: wait on.
                (Status::Waiting, Ok(())) => continue,
                (Status::Left, _) => unreachable!("only the waiter's own future makes it leave"),
            };
            this.stage = Stage::Done;
            return Poll::Ready(outcome);
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if let Stage::Waiting(waiter) = std::mem::replace(&mut self.stage, Stage::Done) {
            self.core.leave(waiter);
        }
    }
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("wanted", &self.wanted)
            .field("waiting", &matches!(self.stage, Stage::Waiting(_)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Queued, total slots, tombstones.
    fn queue_shape(sem: &Semaphore) -> (usize, usize, usize) {
        let st = sem.core.state.borrow();
        (st.queue.len() - st.left, st.queue.len(), st.left)
    }

    /// Waiters that leave from the middle (here: two of every three, oldest first, so none is
    /// ever at an end) leave tombstones that are compacted away: the queue's length follows the
    /// waiters still in it, and those are still served in the order they came.
    #[test]
    fn leaving_from_the_middle_keeps_the_order_and_bounds_the_queue() {
        const N: usize = 2_000;
        let (served, shapes) = io_fiber::FiberIo::new()
            .run(|cx| async move {
                let sem = Rc::new(Semaphore::new(&cx, 0));
                let served = Rc::new(RefCell::new(Vec::new()));
                let tasks: Vec<_> = (0..N)
                    .map(|i| {
                        let (sem, served) = (sem.clone(), served.clone());
                        cx.spawn(move |_| async move {
                            let _permit = sem.acquire(1).await.map_err(|_| Canceled)?;
                            served.borrow_mut().push(i);
                            Ok(())
                        })
                    })
                    .collect();
                cx.yield_now().await?;
                assert_eq!(queue_shape(&sem), (N, N, 0));
                let mut shapes = Vec::new();
                let mut kept = Vec::new();
                for (i, task) in tasks.into_iter().enumerate() {
                    if i % 3 != 0 {
                        task.cancel();
                        assert!(task.await.is_err());
                        let (waiting, slots, _) = queue_shape(&sem);
                        shapes.push((waiting, slots));
                    } else {
                        kept.push(task);
                    }
                }
                sem.add_permits(N);
                for task in kept {
                    task.await?;
                }
                assert_eq!(queue_shape(&sem), (0, 0, 0));
                assert_eq!(sem.available_permits(), N);
                let served = served.take();
                Ok((served, shapes))
            })
            .unwrap();
        assert_eq!(served, (0..N).step_by(3).collect::<Vec<_>>());
        for (waiting, slots) in shapes {
            assert!(
                slots <= 2 * waiting + COMPACT_FROM + 1,
                "{slots} slots for {waiting} waiters"
            );
        }
    }
}
