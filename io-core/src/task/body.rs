//! The future async-task runs for every task, and most of io-core's `unsafe` (the rest: `task/`'s
//! pointers to control blocks, `affinity.rs`).
//!
//! [`TaskBody`] owns the user's future and the task's control block. It does two things async-task
//! would otherwise do for us, because async-task's way of doing them is wrong for ioswap:
//!
//! - **It drops the user's future itself, inside `catch_unwind`.** async-task drops a task's
//!   future (and a detached task's output) inside an abort-on-panic guard, so a `Drop` that
//!   panics would abort the process. The body drops the future in its own poll, as soon as the
//!   task ends (it returned, it panicked, it was canceled before it started, or the backend is
//!   shutting down and abandoned it), and reports a panic there as the task's panic, which its
//!   joiner receives. The output travels in an [`Outcome`], whose own drop contains panics.
//! - **It checks the thread itself.** Task futures capture `Rc`s, so they are `!Send`, and
//!   async-task's `spawn_local` checks the thread through a shared reference to the whole
//!   future, which Miri (Stacked and Tree Borrows) flags as undefined behaviour as soon as the
//!   future holds a borrow of its own local across a suspend point. The body keeps the spawning
//!   thread's id next to the future and reads it through the same `&mut` projection as the
//!   future, and the task is built with `spawn_unchecked`.
#![allow(unsafe_code)]

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomPinned;
use std::mem::{size_of, ManuallyDrop, MaybeUninit};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};

use super::park::ParkState;
use crate::task::{Enter, TaskCtl};
use crate::{Canceled, Runnable};

/// A panic caught while running or dropping a task's code.
type Panic = Box<dyn Any + Send>;

/// How a task ended, as its join handle receives it: the body's result, or its panic.
///
/// Dropping an `Outcome` (a detached task's result, or one nobody joined) contains a panic from
/// the value's `Drop`: async-task drops outputs inside an abort-on-panic guard.
pub(crate) struct Outcome<T>(ManuallyDrop<Result<Result<T, Canceled>, Panic>>);

impl<T> Outcome<T> {
    fn new(outcome: Result<Result<T, Canceled>, Panic>) -> Outcome<T> {
        Outcome(ManuallyDrop::new(outcome))
    }

    /// The result, or the task's panic resumed in the caller (the joiner).
    pub(crate) fn into_result(self) -> Result<T, Canceled> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the value is taken out exactly once.
        match unsafe { ManuallyDrop::take(&mut this.0) } {
            Ok(result) => result,
            Err(panic) => resume_unwind(panic),
        }
    }
}

impl<T> Drop for Outcome<T> {
    fn drop(&mut self) {
        // SAFETY: dropped here once; `into_result` takes the value only from an `Outcome` that
        // is never dropped.
        let outcome = unsafe { ManuallyDrop::take(&mut self.0) };
        drop_contained(outcome);
    }
}

/// Runs `f`, containing a panic from it (and from dropping that panic's payload). For drop code
/// whose owner is gone, so no one is left to receive the panic; the panic hook has already
/// reported it.
fn contain(f: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
        if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(panic))) {
            // A payload whose drop panics, twice over: leaking it is the only safe end.
            std::mem::forget(again);
        }
    }
}

/// Drops `value`, containing a panic from its `Drop`: for values whose owner is gone (a task's
/// output nobody joins, a detached closure's output, work dropped at a crash), so no caller is
/// left to receive the panic. The panic hook has reported it already; the payload is dropped
/// (contained too) or, if dropping it panics again, leaked.
///
/// ```
/// struct Bomb;
/// impl Drop for Bomb {
///     fn drop(&mut self) {
///         panic!("dropped");
///     }
/// }
/// io_core::drop_contained(Bomb); // reported by the panic hook, and contained
/// ```
pub fn drop_contained<V>(value: V) {
    contain(move || drop(value));
}

/// This thread's id, cached: `thread::current()` clones an `Arc` each call.
#[inline]
fn thread_id() -> ThreadId {
    thread_local! {
        // No destructor, so it can still be read while the thread's locals are torn down.
        static ID: Cell<Option<ThreadId>> = const { Cell::new(None) };
    }
    ID.with(|id| match id.get() {
        Some(known) => known,
        None => {
            let known = thread::current().id();
            id.set(Some(known));
            known
        }
    })
}

/// Where a task's body is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not polled yet: a task canceled now never runs its body.
    New,
    /// Polled at least once; the user's future is alive.
    Running,
    /// The user's future has been dropped (or is being dropped), and so has the body's handle on
    /// the control block: nothing of the spawning thread's is left to touch.
    Done,
}

/// A task's future: its output is `Result<Self::Value, Canceled>`. Names the value type where
/// only the future's is at hand (the body's `Drop`, which releases a kept join handle).
pub(crate) trait TaskFuture: Future<Output = Result<Self::Value, Canceled>> {
    type Value;
}

impl<T, F: Future<Output = Result<T, Canceled>>> TaskFuture for F {
    type Value = T;
}

/// The future async-task runs: the user's future, the thread that may poll and drop it, a
/// borrow of the task's control block (async-task's metadata of the task, in the same
/// allocation), and the task's own park.
///
/// `repr(C)` with the park last: when the task ends, async-task drops the body and writes the
/// task's output over the start of its memory (the future and the output share a place, and a
/// `ptr::write` of the output touches only its own bytes), so a park placed after the future
/// outlives the body untouched as long as the output is no larger than the park's offset; a
/// task whose output is larger, or whose body async-task boxes apart (a big one), gets no own
/// park (see `own_park_fits`). async-task touches the
/// rest of that memory no more until it frees the allocation, which a waker of the task, kept
/// while the park is held (`TaskCtl::finish`), holds off.
#[repr(C)]
struct TaskBody<F: TaskFuture> {
    /// The task's metadata: async-task drops the future before it (see `build`).
    ctl: &'static TaskCtl,
    thread: ThreadId,
    stage: Stage,
    /// The operations each poll may complete without suspending (`0`: unlimited); see
    /// `budget.rs`. Set at spawn from the backend's setting.
    op_budget: u32,
    /// Live until `stage` is `Done`; dropped by `finish` or, for a body dropped unpolled, by
    /// `Drop`.
    future: ManuallyDrop<F>,
    /// The task's own park (see `park.rs`), which the control block names from the first poll
    /// (the body is pinned by then). Written when the task first takes it (`own_park`), so a
    /// task that never waits never pays for it. Never dropped: a free park owns nothing, and a
    /// held one outlives the body (see above).
    park: MaybeUninit<ParkState>,
    /// The control block and park handles point into the body once it has been polled.
    _pinned: PhantomPinned,
}

/// What async-task keeps as a finished task's output, at the start of the body's memory.
type Stored<T> = Result<Outcome<T>, Panic>;

/// The size from which async-task boxes a task's future apart from the task's allocation
/// (`Builder::spawn_unchecked`): such a body, park included, is freed when the task ends.
const ASYNC_TASK_BOXES_FROM: usize = 2048;

impl<F: TaskFuture> TaskBody<F> {
    /// Whether the body's park outlives the body, as a held park must: the body is in the
    /// task's allocation (async-task boxes big futures apart, and frees the box when the task
    /// ends), and the task's output leaves the park untouched (see [`TaskBody`]).
    const fn own_park_fits<T>() -> bool {
        size_of::<TaskBody<F>>() < ASYNC_TASK_BOXES_FROM
            && size_of::<Stored<T>>() <= std::mem::offset_of!(TaskBody<F>, park)
    }
}

impl<F: TaskFuture> TaskBody<F> {
    /// Ends the task: drops the user's future right here, so that a panic in its `Drop` is
    /// caught and becomes the task's panic, then marks the task finished (which lets go of its
    /// own waker and of a kept join handle). `waker` is the poll's. Called on the spawning
    /// thread only.
    fn finish(
        &mut self,
        outcome: Result<Result<F::Value, Canceled>, Panic>,
        waker: &Waker,
    ) -> Outcome<F::Value> {
        self.stage = Stage::Done;
        // SAFETY: `stage` is `Done` from here on, so `future` is dropped exactly once (a panic
        // inside its drop still leaves it dropped as far as Rust is concerned) and never used
        // again. It is dropped in place, never moved, as its pinning requires.
        let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
            ManuallyDrop::drop(&mut self.future)
        }));
        let outcome = match (dropped, outcome) {
            (Ok(()), outcome) => outcome,
            // The first panic is the cause; a second one, from the drop, is a consequence.
            (Err(second), Err(first)) => {
                drop_contained(second);
                Err(first)
            }
            (Err(panic), Ok(result)) => {
                drop_contained(result);
                Err(panic)
            }
        };
        self.end(Some(waker));
        Outcome::new(outcome)
    }

    /// The part of ending the task that touches its control block (see [`TaskCtl::finish`]),
    /// then the release of the join handle the block kept, if the user's handle let go of the
    /// task first. Async-task's `Runnable` is alive around the body's poll and drop, so neither
    /// release frees the task here.
    #[inline]
    fn end(&self, waker: Option<&Waker>) {
        self.ctl.finish(waker);
        if let Some(handle) = self.ctl.take_handle::<F::Value>() {
            // Not completed yet (the body is still being polled or dropped): detaching reads
            // no output.
            handle.detach();
        }
    }
}

impl<F: TaskFuture> Future for TaskBody<F> {
    type Output = Outcome<F::Value>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<F::Value>> {
        // SAFETY: nothing is moved out of the body; `future` is only ever pinned again (below)
        // or dropped in place (`finish`, `Drop`). A `&mut` to a `!Unpin` body is what Stacked
        // Borrows allows alongside the future's borrows of its own locals; a shared reference to
        // the whole body would not be.
        let this = unsafe { self.get_unchecked_mut() };
        assert!(
            this.thread == thread_id(),
            "an ioswap task was polled on a thread other than the one that spawned it"
        );
        if this.stage == Stage::Done {
            return Poll::Pending; // async-task never polls a finished future
        }
        let _enter = Enter::new(this.ctl, this.op_budget);
        match this.stage {
            Stage::Done => unreachable!("checked above"),
            // A task canceled before its first poll never runs its body.
            Stage::New if this.ctl.is_cancel_requested() => {
                return Poll::Ready(this.finish(Ok(Err(Canceled)), cx.waker()))
            }
            Stage::New => {
                this.stage = Stage::Running;
                // Pinned from now on: the task's own park may be handed out.
                if const { Self::own_park_fits::<F::Value>() } {
                    this.ctl.park.set(NonNull::new(this.park.as_mut_ptr()));
                }
            }
            Stage::Running => {}
        }
        // The backend is shutting down and gives up on this task (see `TaskRef::abandon`).
        if this.ctl.is_abandoned() {
            return Poll::Ready(this.finish(Ok(Err(Canceled)), cx.waker()));
        }
        this.ctl.before_poll(cx.waker());
        // SAFETY: `future` stays where it is until it is dropped in place: it is pinned because
        // the body is.
        let future = unsafe { Pin::new_unchecked(&mut *this.future) };
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => {
                this.ctl.suspended(cx.waker());
                Poll::Pending
            }
            Ok(Poll::Ready(result)) => Poll::Ready(this.finish(Ok(result), cx.waker())),
            Err(panic) => Poll::Ready(this.finish(Err(panic), cx.waker())),
        }
    }
}

impl<F: TaskFuture> Drop for TaskBody<F> {
    fn drop(&mut self) {
        if self.stage == Stage::Done {
            return; // `finish` dropped the future
        }
        if self.thread != thread_id() {
            // Only a misused run queue gets a task here (its future and control block hold
            // `Rc`s of the spawning thread): leaking them is the one safe choice. It also keeps
            // the pinned future's memory from being reused undropped: an unfinished task's
            // join handle (the user's, or the one its control block keeps) keeps async-task's
            // allocation, and the block's is only released when the body ends, which this one
            // now never does.
            return;
        }
        // Dropped without finishing: a spawn the backend refused, or a queue dropped with the
        // task in it. There is no poll to report a panic through, so it is contained.
        self.stage = Stage::Done;
        // SAFETY: as in `finish`: dropped once, in place, never used again.
        contain(|| unsafe { ManuallyDrop::drop(&mut self.future) });
        self.end(None);
    }
}

/// Builds the async-task allocation of a task: what `ctl` makes as its metadata (which names the
/// run queue the task's wakers schedule it onto), `future` wrapped in its body, each poll with
/// `op_budget` operations to spend. The runnable is for the backend, the handle for
/// [`crate::Task`].
#[inline]
pub(crate) fn build<T, F>(
    ctl: impl FnOnce() -> TaskCtl,
    op_budget: u32,
    future: F,
) -> (Runnable, async_task::Task<Outcome<T>, TaskCtl>)
where
    T: 'static,
    F: Future<Output = Result<T, Canceled>> + 'static,
{
    let thread = thread_id();
    let body = move |ctl: &'static TaskCtl| TaskBody {
        ctl,
        thread,
        stage: Stage::New,
        op_budget,
        future: ManuallyDrop::new(future),
        park: MaybeUninit::uninit(),
        _pinned: PhantomPinned,
    };
    // SAFETY: async-task's conditions for `spawn_unchecked`:
    // - The future is `'static`, and the schedule function is `Send + Sync + 'static` (it pushes
    //   onto the thread-safe `RunQueue` the metadata names), so wakers may be used and dropped
    //   on any thread.
    // - The future is `!Send`, so it must only be polled and dropped on this thread. `TaskBody`
    //   checks that itself: a poll on another thread panics before touching anything, and a drop
    //   on another thread leaks the body instead of dropping it. (The output, `Outcome<T>`, is
    //   only dropped by the loop's `Runnable::run` or by the `!Send` join handle, both on this
    //   thread.)
    // - The future borrows the task's metadata, which async-task keeps until it frees the
    //   allocation, after the future has been dropped (or, for a body leaked on another thread,
    //   never): the borrow is valid for the body's whole life, though not for `'static`, and
    //   the body never hands it out beyond its poll (`Enter` restores the current task when the
    //   poll ends). The metadata is `Send + Sync` by the rules in `TaskCtl`'s note.
    unsafe {
        async_task::Builder::new()
            // Made here, last, so that it is built where the builder is (one copy of the
            // block fewer than making it first and passing it down).
            .metadata(ctl())
            .spawn_unchecked(body, crate::run_queue::schedule)
    }
}
