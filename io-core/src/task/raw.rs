//! [`TaskRef`] and [`RawTask`]: the views of a task a backend gets, and how a task is spawned.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::Waker;

use super::ctl::{Extra, PackedParkedOn, ParkedOn, TaskCtl, Watch, OWN_WAKER};
use super::current::with_current;
use super::{body, Task};
use crate::{Canceled, Io, RunQueue, Runnable, SpawnOptions};

/// A shared, non-owning view of a task, for backends: its id, name, state and cancel switch.
#[derive(Clone)]
pub struct TaskRef(Held);

#[derive(Clone)]
enum Held {
    /// A task whose own waker was there when the view was taken (it had waited, and its body
    /// had not ended, or it ended while a handle of its own park was held, which keeps that
    /// waker): its control block, kept alive by a waker of the task (a waker holds
    /// async-task's allocation, where the block lives). Every answer comes from the block's
    /// flags, so a finished task seen this way answers as one.
    Live { ctl: NonNull<TaskCtl>, _keep: Waker },
    /// An unfinished task with no waker of itself when the view was taken (it had not waited
    /// yet): the block through the watch while the body has not ended, then what the watch
    /// kept (see [`Watch`]).
    Watched(Rc<Watch>),
    /// A task that had finished and dropped its own waker when the view was taken (nothing
    /// else may be left to hold its allocation): what a finished task still answers.
    Finished {
        id: u64,
        name: Option<Cow<'static, str>>,
        /// Whether a cancel had been requested (every view of a task answers alike).
        canceled: bool,
    },
}

impl TaskRef {
    /// A view of the task `ctl` controls (on the thread that spawned it, like every holder of
    /// the block).
    pub(super) fn of(ctl: &TaskCtl) -> TaskRef {
        let own = ctl.waker.take();
        let held = match &own {
            Some(waker) => Held::Live {
                ctl: NonNull::from(ctl),
                _keep: waker.clone(),
            },
            None if ctl.is_finished() => Held::Finished {
                id: ctl.id,
                name: ctl.name().cloned(),
                canceled: ctl.is_cancel_requested(),
            },
            None => Held::Watched(ctl.watch()),
        };
        ctl.waker.set(own);
        TaskRef(held)
    }

    /// The task's control block, `None` once it finished before this view was taken (or, for
    /// a view taken before the task waited, once it finished).
    pub(super) fn ctl(&self) -> Option<&TaskCtl> {
        match &self.0 {
            // SAFETY: `_keep` is a waker of the task, so async-task's allocation, which holds
            // the block as its metadata, is alive as long as `self`; the block is only ever
            // reached through shared references (its state is in cells), and this view is
            // `!Send` (the `NonNull`), so it is used on the spawning thread, where the block's
            // cells are touched (see `TaskCtl`'s `Send` note).
            Held::Live { ctl, .. } => Some(unsafe { ctl.as_ref() }),
            // SAFETY: the watch names the block until the task's body ends (`finish` clears it
            // first); until then the task's join handle keeps the allocation (see `TaskCtl`).
            // The returned borrow lives no longer than `self`'s, and nothing done with it ends
            // the body (callers read flags, set them, or schedule the task). Shared
            // references only, on the spawning thread (the `Rc` makes the view `!Send`).
            Held::Watched(watch) => watch.ctl.get().map(|ctl| unsafe { ctl.as_ref() }),
            Held::Finished { .. } => None,
        }
    }

    /// The task's id: 1, 2, 3, … in spawn order within its backend.
    pub fn id(&self) -> u64 {
        match &self.0 {
            // SAFETY: as in `ctl`.
            Held::Live { ctl, .. } => unsafe { ctl.as_ref() }.id,
            Held::Watched(watch) => watch.id,
            Held::Finished { id, .. } => *id,
        }
    }

    /// The task's name, or `task#<id>` when it was spawned unnamed.
    pub fn name(&self) -> Cow<'static, str> {
        let name = match &self.0 {
            // SAFETY: as in `ctl`.
            Held::Live { ctl, .. } => unsafe { ctl.as_ref() }.name(),
            Held::Watched(watch) => watch.name.as_ref(),
            Held::Finished { name, .. } => name.as_ref(),
        };
        match name {
            Some(name) => Cow::clone(name),
            None => Cow::Owned(format!("task#{}", self.id())),
        }
    }

    /// Whether the task's body is done (returned, panicked, or was dropped).
    pub fn is_finished(&self) -> bool {
        self.ctl().is_none_or(TaskCtl::is_finished)
    }

    /// Whether a cancel request has been made for this task.
    pub fn is_cancel_requested(&self) -> bool {
        match (&self.0, self.ctl()) {
            (_, Some(ctl)) => ctl.is_cancel_requested(),
            (Held::Watched(watch), None) => watch.canceled.get(),
            (Held::Finished { canceled, .. }, None) => *canceled,
            (Held::Live { .. }, None) => unreachable!("a live view has its block"),
        }
    }

    /// Requests cancellation: the task gets `Err(Canceled)` at its next suspend point.
    pub fn cancel(&self) {
        if let Some(ctl) = self.ctl() {
            ctl.request_cancel();
        }
    }

    /// Gives up on the task: it is canceled and scheduled one last time, and that poll drops
    /// its future without polling it. A backend shutting down does this to every task still
    /// alive, then runs them, so their futures are dropped inside the task body (where a
    /// panicking `Drop` is caught, see `body.rs`) rather than by async-task (which would abort),
    /// and a stuck task is not leaked in the cycle through its own waker (or through the join
    /// handle its control block keeps). The fiber backend's
    /// simulated world does it to the tasks of a host it crashes: none runs past the crash.
    pub fn abandon(&self) {
        if let Some(ctl) = self.ctl() {
            ctl.abandon();
        }
    }

    /// What the task is parked on, if it is parked (`None` while runnable or finished).
    /// A join names the joined task by id (`join task#3`); [`TaskSet::blocked`](crate::TaskSet::blocked) resolves names.
    pub fn parked_on(&self) -> Option<String> {
        match self.ctl()?.parked_on() {
            ParkedOn::Nothing => None,
            ParkedOn::Park(what) => Some(what.to_string()),
            ParkedOn::Join(id) => Some(format!("join task#{id}")),
        }
    }
}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskRef")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// A task that has been created but not yet started: what [`Io::spawn_raw`] receives.
///
/// The backend either runs it inline ([`Runnable::run`] until [`TaskRef::is_finished`]) or
/// queues it ([`RawTask::schedule`]). Dropping it drops the future unpolled; the join handle then
/// reports `Err(Canceled)`.
#[derive(Debug)]
pub struct RawTask {
    runnable: Runnable,
    /// `!Send`: [`RawTask::task`] reaches the control block's cells, which belong to the
    /// spawning thread (a `Runnable` alone may travel: of the block it shows only the id).
    _spawning_thread: PhantomData<*const ()>,
}

impl RawTask {
    /// Builds a task whose wakers schedule it on `queue`, and its typed join handle. Each poll
    /// of it has the queue's operation budget as it is now ([`RunQueue::op_budget`], which
    /// [`BackendCore::set_op_budget`](crate::BackendCore::set_op_budget) sets).
    ///
    /// Backends and protocol-level tests may call this directly.
    #[inline]
    pub fn new<T, F>(queue: &RunQueue, opts: &SpawnOptions, future: F) -> (RawTask, Task<T>)
    where
        T: 'static,
        F: Future<Output = Result<T, Canceled>> + 'static,
    {
        let op_budget = queue.op_budget();
        let id = queue.next_task_id();
        let extra = OnceCell::new();
        if opts.name.is_some() || opts.deadline_ms.is_some() {
            let set = extra.set(Box::new(Extra::new(
                opts.name.clone(),
                opts.task_deadline_ms(),
            )));
            debug_assert!(set.is_ok(), "a new cell is empty");
        }
        let queue = queue.key();
        let ctl = move || TaskCtl {
            id,
            queue,
            extra,
            waker: Cell::new(None),
            handle: Cell::new(MaybeUninit::uninit()),
            parked_on: Cell::new(PackedParkedOn::NOTHING),
            registry: Cell::new(None),
            slot: Cell::new(0),
            shield_depth: Cell::new(0),
            state: Cell::new(0),
            park: Cell::new(None),
        };
        let (runnable, inner) = body::build(ctl, op_budget, future);
        let ctl = NonNull::from(inner.metadata());
        (
            RawTask {
                runnable,
                _spawning_thread: PhantomData,
            },
            Task {
                inner: Some(inner.fallible()),
                ctl,
            },
        )
    }

    /// The task's control block (alive as long as the runnable).
    #[inline]
    pub(crate) fn ctl(&self) -> &TaskCtl {
        self.runnable.metadata()
    }

    /// The task's id.
    pub fn id(&self) -> u64 {
        self.ctl().id
    }

    /// A view of the task. The task takes a waker of itself now, from its runnable, if it
    /// has none (it cannot have waited yet): a view that holds a waker answers without a
    /// shared watch, and a backend that takes views of the tasks it is given (a simulated
    /// host, to crash them) takes one of each.
    pub fn task(&self) -> TaskRef {
        let ctl = self.ctl();
        if !ctl.has(OWN_WAKER) {
            ctl.take_own_waker(self.runnable.waker());
        }
        TaskRef::of(ctl)
    }

    /// Queues the task on the run queue it was built for.
    #[inline]
    pub fn schedule(self) {
        self.runnable.schedule();
    }

    /// Splits into the runnable (to run inline) and the task view.
    pub fn into_parts(self) -> (Runnable, TaskRef) {
        let task = self.task();
        (self.runnable, task)
    }
}

/// The io a task-building caller hands around; kept here so `Cx` stays small.
#[inline]
pub(crate) fn spawn_on<T, F>(
    io: &Rc<dyn Io>,
    opts: &SpawnOptions,
    future: F,
) -> (Task<T>, Result<(), crate::SpawnError>)
where
    T: 'static,
    F: Future<Output = Result<T, Canceled>> + 'static,
{
    // A task's deadline bounds every task it spawns: the child gets the earlier of its own and
    // its spawner's. (On an inline backend the spawner is not polled while its child runs, so
    // only the child's own deadline can cut the child short.)
    let inherited = with_current(|ctl| ctl.map_or(u64::MAX, |ctl| ctl.deadline_ms()));
    let bounded;
    let opts = if inherited < opts.task_deadline_ms() {
        bounded = opts.clone().deadline_ms(inherited);
        &bounded
    } else {
        opts
    };
    let (raw, task) = RawTask::new(io.core().queue(), opts, future);
    if let Some(extra) = raw.ctl().extra() {
        // Before `spawn_raw`: a backend may run the task inline right there.
        if extra.deadline_ms != u64::MAX {
            extra.io.set(Some(Rc::downgrade(io)));
        }
    }
    let spawned = io.spawn_raw(raw, opts);
    (task, spawned)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn run_all(queue: &RunQueue) {
        while let Some(runnable) = queue.pop() {
            runnable.run();
        }
    }

    /// A view taken after a canceled task finished says it was canceled, as one taken before
    /// does (a view of a finished task copies the flag).
    #[test]
    fn a_late_view_of_a_canceled_task_still_says_it_was_canceled() {
        let queue = RunQueue::new();
        let (raw, task) = RawTask::new(&queue, &SpawnOptions::new(), async { Ok(()) });
        let early = raw.task();
        task.cancel();
        raw.schedule();
        run_all(&queue);
        assert!(task.is_finished());
        let late = task.task_ref();
        assert!(
            early.is_cancel_requested(),
            "the early view sees the cancel"
        );
        assert!(late.is_cancel_requested(), "the late view sees it too");
        let (raw, task) = RawTask::new(&queue, &SpawnOptions::new(), async { Ok(()) });
        raw.schedule();
        run_all(&queue);
        assert!(!task.task_ref().is_cancel_requested(), "never canceled");
    }

    /// A view taken while the task lives keeps its control block after the task, its join
    /// handle and its runnable are gone (it holds a waker of the task); one taken after the task
    /// finished answers from what it copied.
    #[test]
    fn a_task_ref_outlives_its_task_and_one_taken_late_still_answers() {
        let queue = RunQueue::new();
        let opts = SpawnOptions::new().name("named");
        let (raw, task) = RawTask::new(&queue, &opts, async { Ok(7) });
        let early = raw.task();
        assert_eq!((early.id(), early.name().as_ref()), (task.id(), "named"));
        assert!(!early.is_finished());
        raw.schedule();
        run_all(&queue);
        assert!(task.is_finished() && early.is_finished());
        let late = task.task_ref();
        assert_eq!(futures_lite::future::block_on(task), Ok(7));
        // Nothing but the views is left of the task.
        assert!(early.is_finished() && late.is_finished());
        assert_eq!(early.name(), late.name());
        assert_eq!(early.id(), late.id());
        assert_eq!(late.parked_on(), None);
        early.cancel(); // harmless: finished
        late.cancel();
        assert!(!late.is_cancel_requested());
    }

    /// The join handle answers for its task after the join, and refuses a second join.
    #[test]
    fn a_joined_handle_still_answers_and_refuses_a_second_join() {
        let queue = RunQueue::new();
        let (raw, mut task) = RawTask::new(&queue, &SpawnOptions::new(), async { Ok("done") });
        let id = task.id();
        raw.schedule();
        run_all(&queue);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(Pin::new(&mut task).poll(&mut cx), Poll::Ready(Ok("done")));
        assert_eq!(task.id(), id);
        assert!(task.is_finished());
        assert!(task.task_ref().is_finished());
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = Pin::new(&mut task).poll(&mut cx);
        }));
        assert!(again.is_err(), "a second join panics");
        drop(task); // joined: no cancel, nothing detached
    }

    /// Dropping the join handle of a task that never ran cancels it; its view sees the cancel,
    /// and the task ends unpolled when it runs.
    #[test]
    fn a_dropped_handle_cancels_a_task_that_never_ran() {
        let queue = RunQueue::new();
        let ran = std::rc::Rc::new(Cell::new(false));
        let flag = ran.clone();
        let (raw, task) = RawTask::new(&queue, &SpawnOptions::new(), async move {
            flag.set(true);
            Ok(())
        });
        let view = raw.task();
        raw.schedule();
        drop(task);
        assert!(view.is_cancel_requested() && !view.is_finished());
        run_all(&queue);
        assert!(view.is_finished());
        assert!(
            !ran.get(),
            "canceled before its first poll, the body never ran"
        );
    }
}
