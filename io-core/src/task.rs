//! Tasks: spawning, the join handle, cancellation state, and the "current task".
//!
//! A task is an async-task allocation whose future is a task body (`body.rs`): it owns the
//! task's control block ([`TaskCtl`]) and, around every poll of the user's future, makes that
//! block the thread's *current task*. Suspend points read the current task's cancel flag from
//! there. Because the current task is saved and restored around each poll, this also works when a
//! backend runs a child task inline inside its parent's poll (the blocking backend does).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use crate::body::{self, Outcome};
use crate::{Canceled, Io, Park, RunQueue, Runnable, TimerId};

/// How to spawn a task.
///
/// ```
/// use io_core::SpawnOptions;
/// let opts = SpawnOptions::new().name("reader").concurrent();
/// assert_eq!(opts.task_name(), Some("reader"));
/// assert!(opts.requires_concurrency());
/// ```
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    name: Option<Cow<'static, str>>,
    concurrent: bool,
    /// `None`: no deadline.
    deadline_ms: Option<u64>,
}

impl SpawnOptions {
    /// Default options: unnamed (`task#<id>`), concurrency not required.
    pub fn new() -> SpawnOptions {
        SpawnOptions::default()
    }

    /// Names the task; the name shows in deadlock reports and panic errors.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> SpawnOptions {
        self.name = Some(name.into());
        self
    }

    /// Requires real concurrency: the spawn fails with
    /// [`SpawnError::ConcurrencyUnavailable`](crate::SpawnError::ConcurrencyUnavailable) on a
    /// backend that would run the task inline (Zig's `io.concurrent` as opposed to `io.async`).
    pub fn concurrent(mut self) -> SpawnOptions {
        self.concurrent = true;
        self
    }

    /// Gives the task a deadline on the backend's clock ([`Cx::now_ms`](crate::Cx::now_ms)):
    /// when the clock reaches `deadline_ms`, the task is canceled, exactly as by
    /// [`Task::cancel`] — it gets `Err(Canceled)` at its next suspend point (at once if it is
    /// waiting), and completion wins as usual. A deadline already past when the task starts
    /// cancels it at its first suspend point; `u64::MAX` (the default) is no deadline. A task
    /// that ends before its deadline leaves no timer behind. A task's deadline bounds every task
    /// it spawns (detached ones included): a child gets the earlier of its own and its
    /// spawner's, as with nested timeouts.
    ///
    /// Written once in io-core, so it holds on every backend — on blocking too, where the task
    /// runs inline: its waits happen inside the backend's loop, which fires the deadline.
    /// Applies to tasks spawned through [`Cx::spawn_with`](crate::Cx::spawn_with).
    ///
    /// ```
    /// use io_core::{Canceled, Cx, SpawnOptions};
    ///
    /// let (late, early, at) = io_fiber::FiberIo::new()
    ///     .run(|cx: Cx| async move {
    ///         let opts = SpawnOptions::new().deadline_ms(cx.now_ms() + 50);
    ///         let late = cx.spawn_with(opts.clone(), |cx| async move {
    ///             cx.sleep(90).await?;
    ///             Ok("slept") // never reached: canceled at t = 50
    ///         });
    ///         let late = late.unwrap().await;
    ///         let at = cx.now_ms();
    ///         let early = cx.spawn_with(opts.deadline_ms(at + 50), |cx| async move {
    ///             cx.sleep(10).await?;
    ///             Ok("in time")
    ///         });
    ///         Ok((late, early.unwrap().await, at))
    ///     })
    ///     .unwrap();
    /// assert_eq!(late, Err(Canceled));
    /// assert_eq!(at, 50);
    /// assert_eq!(early, Ok("in time"));
    /// ```
    pub fn deadline_ms(mut self, deadline_ms: u64) -> SpawnOptions {
        self.deadline_ms = (deadline_ms != u64::MAX).then_some(deadline_ms);
        self
    }

    /// The deadline given, or `u64::MAX` for none.
    pub fn task_deadline_ms(&self) -> u64 {
        self.deadline_ms.unwrap_or(u64::MAX)
    }

    /// The name given, if any.
    pub fn task_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether the spawn requires real concurrency.
    pub fn requires_concurrency(&self) -> bool {
        self.concurrent
    }
}

/// What a parked task waits for, kept for deadlock reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParkedOn {
    Nothing,
    Park(&'static str),
    Join(u64),
}

/// The control block of one task, shared by its body, its join handle and the backend.
///
/// One allocation per task besides async-task's own, so it is kept small (an idle task's memory
/// is measured in `bench/`): cells rather than `RefCell`s, a 16-bit shield depth, one state
/// byte, a boxed name; 72 bytes, which with the `Rc` counts fits glibc's 96-byte size class.
pub(crate) struct TaskCtl {
    id: u64,
    /// The name and the deadline. Boxed: both are rare and a bare `Cow` would take two more
    /// words in every task.
    extra: Option<Box<Extra>>,
    /// The task's own waker, so a cancel request can ready it. Captured when the task first
    /// returns `Pending`: a task that finishes in its first poll never needs one (a clone and
    /// a drop of a waker are two atomic operations).
    waker: Cell<Option<Waker>>,
    parked_on: Cell<ParkedOn>,
    /// The backend's task set this task is registered in (see [`TaskSet`]), until its body ends.
    registry: Cell<Option<Rc<Registry>>>,
    /// This task's slot in `registry`.
    slot: Cell<u32>,
    shield_depth: Cell<u16>,
    /// The task's life in one word: [`CANCEL_REQUESTED`], [`ABANDONED`], [`FINISHED`].
    state: Cell<u8>,
}

/// A cancel has been requested; the task's suspend points raise `Canceled` (outside shields).
const CANCEL_REQUESTED: u8 = 1;
/// The backend is shutting down and gives up on the task: its next poll drops its future
/// without polling it (see [`TaskRef::abandon`]). Implies `CANCEL_REQUESTED`.
const ABANDONED: u8 = 2;
/// The body has ended (returned, panicked, or was dropped); its future is gone.
const FINISHED: u8 = 4;

/// The rarely used parts of a control block: the name, and the deadline.
struct Extra {
    name: Option<Cow<'static, str>>,
    /// `u64::MAX`: none.
    deadline_ms: u64,
    /// The backend the deadline's timer is armed on (set by [`spawn_on`]).
    io: Cell<Option<Weak<dyn Io>>>,
    /// The deadline's timer once armed, and its park (whose waker is the task's own).
    timer: Cell<Option<(Park, TimerId)>>,
}

impl TaskCtl {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn has(&self, flag: u8) -> bool {
        self.state.get() & flag != 0
    }

    /// Sets `flags`; whether any of them was set already.
    fn set(&self, flags: u8) -> bool {
        let state = self.state.get();
        self.state.set(state | flags);
        state & flags != 0
    }

    pub(crate) fn is_cancel_requested(&self) -> bool {
        self.has(CANCEL_REQUESTED)
    }

    pub(crate) fn is_abandoned(&self) -> bool {
        self.has(ABANDONED)
    }

    fn is_finished(&self) -> bool {
        self.has(FINISHED)
    }

    /// At the start of each poll of the user's future.
    pub(crate) fn before_poll(&self, waker: &Waker) {
        self.parked_on.set(ParkedOn::Nothing);
        self.watch_deadline(waker);
    }

    /// The body has ended and its future is gone: leave the backend's task set (so the slot is
    /// reused and this block is freed as soon as the handles are gone), disarm the deadline, and
    /// drop the kept waker. Idempotent.
    pub(crate) fn finish(&self) {
        self.set(FINISHED);
        self.parked_on.set(ParkedOn::Nothing);
        if let Some(registry) = self.registry.take() {
            registry.remove(self.slot.get());
        }
        // No timer outlives the task; this also breaks the cycle task -> body -> ctl ->
        // deadline park -> waker -> task.
        self.disarm_deadline();
        // Break the cycle task -> body -> ctl -> waker -> task.
        let waker = self.waker.take();
        drop(waker);
    }

    /// The task's deadline, `u64::MAX` for none.
    fn deadline_ms(&self) -> u64 {
        self.extra
            .as_deref()
            .map_or(u64::MAX, |extra| extra.deadline_ms)
    }

    /// At each poll of a task with a deadline: once the clock has reached it, the task is
    /// canceled (the flag only: it is being polled, so its next suspend point sees it);
    /// before that, a timer is armed for it, which wakes the task at the deadline so that this
    /// check runs again. Written once here, so no backend knows about deadlines.
    fn watch_deadline(&self, waker: &Waker) {
        let Some(extra) = self.extra.as_deref() else {
            return;
        };
        if extra.deadline_ms == u64::MAX || self.is_cancel_requested() {
            return;
        }
        let io = extra.io.take();
        let live = io.as_ref().and_then(Weak::upgrade);
        extra.io.set(io);
        let Some(io) = live else {
            return;
        };
        if io.now_ms() >= extra.deadline_ms {
            self.set(CANCEL_REQUESTED);
            self.disarm_deadline();
            return;
        }
        let timer = extra.timer.take();
        match timer {
            Some(timer) => extra.timer.set(Some(timer)),
            None => {
                let park = Park::new("deadline");
                park.set_waker(waker);
                let id = io.arm_timer(extra.deadline_ms, &park);
                extra.timer.set(Some((park, id)));
            }
        }
    }

    /// Disarms the deadline's timer, if one is armed. The park is dropped here, after the
    /// backend has released its timers (a backend's `disarm_timer` borrows them only inside).
    fn disarm_deadline(&self) {
        let Some(extra) = self.extra.as_deref() else {
            return;
        };
        let Some((park, id)) = extra.timer.take() else {
            return;
        };
        let io = extra.io.take();
        if let Some(io) = io.as_ref().and_then(Weak::upgrade) {
            io.disarm_timer(id);
        }
        drop(park);
    }

    fn request_cancel(&self) {
        if self.is_finished() || self.set(CANCEL_REQUESTED) {
            return;
        }
        // The deadline has nothing left to do, and an armed timer would keep a backend waiting
        // for it (a canceled task stuck on a foreign future, say) until it fired.
        self.disarm_deadline();
        // Taken out while waking, so nothing can reach the cell meanwhile. `wake_by_ref` only
        // schedules the task; it runs no drop code. No waker yet: the task has not returned
        // `Pending` so far, so it is queued or running, and will see the flag (see
        // `TaskBody::poll`).
        if let Some(waker) = self.waker.take() {
            waker.wake_by_ref();
            self.waker.set(Some(waker));
        }
    }

    /// Called when the task's future returned `Pending`: keeps the task's waker for cancel
    /// requests. The first time, a cancel requested during this very poll found no waker to
    /// ready the task with, so it is readied here instead (inside the poll, exactly where the
    /// waker would have scheduled it).
    pub(crate) fn keep_waker(&self, waker: &Waker) {
        let kept = self.waker.take();
        match kept {
            Some(kept) => self.waker.set(Some(kept)),
            None => {
                self.waker.set(Some(waker.clone()));
                if self.is_cancel_requested() {
                    waker.wake_by_ref();
                }
            }
        }
    }

    fn cancel_pending(&self) -> bool {
        self.is_cancel_requested() && self.shield_depth.get() == 0
    }
}

thread_local! {
    static CURRENT: Cell<Option<Rc<TaskCtl>>> = const { Cell::new(None) };
}

/// Runs `f` with the task currently being polled on this thread, if any.
///
/// While the thread's locals are being destroyed (a task dropped by a thread-local destructor at
/// thread exit) there is no current task: drop code may still ask, and must not panic.
fn with_current<R>(f: impl FnOnce(Option<&Rc<TaskCtl>>) -> R) -> R {
    let mut f = Some(f);
    let result = CURRENT.try_with(|cell| {
        let current = cell.take();
        let result = (f.take().expect("called once"))(current.as_ref());
        cell.set(current);
        result
    });
    match (result, f) {
        (Ok(result), _) => result,
        (Err(_), Some(f)) => f(None),
        (Err(_), None) => unreachable!("try_with fails before running its closure"),
    }
}

/// Makes a task current for the duration of one poll; restores the previous one on drop, even
/// if the poll panics.
pub(crate) struct Enter(Option<Rc<TaskCtl>>);

impl Enter {
    pub(crate) fn new(ctl: &Rc<TaskCtl>) -> Enter {
        Enter(
            CURRENT
                .try_with(|cell| cell.replace(Some(ctl.clone())))
                .ok()
                .flatten(),
        )
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let previous = self.0.take();
        // During thread-local destruction there is nothing to restore.
        let _ = CURRENT.try_with(|cell| cell.set(previous));
    }
}

/// Whether the current task has a cancel request it must observe now (not shielded).
/// Outside any task this is `false`.
pub(crate) fn cancel_pending() -> bool {
    with_current(|ctl| ctl.is_some_and(|ctl| ctl.cancel_pending()))
}

/// The task being polled on this thread, if any.
pub(crate) fn current_task() -> Option<TaskRef> {
    with_current(|ctl| ctl.cloned().map(TaskRef))
}

/// Records what the current task is about to park on.
pub(crate) fn set_parked_on(what: ParkedOn) {
    with_current(|ctl| {
        if let Some(ctl) = ctl {
            ctl.parked_on.set(what);
        }
    });
}

/// Raises the current task's shield depth for one poll of a shielded future.
pub(crate) struct ShieldGuard(Option<Rc<TaskCtl>>);

impl ShieldGuard {
    pub(crate) fn enter() -> ShieldGuard {
        let ctl = with_current(|ctl| ctl.cloned());
        if let Some(ctl) = &ctl {
            let depth = ctl.shield_depth.get().checked_add(1);
            ctl.shield_depth
                .set(depth.expect("more than 65535 nested shields"));
        }
        ShieldGuard(ctl)
    }
}

impl Drop for ShieldGuard {
    fn drop(&mut self) {
        if let Some(ctl) = &self.0 {
            ctl.shield_depth.set(ctl.shield_depth.get() - 1);
        }
    }
}

/// A shared, non-owning view of a task, for backends: its id, name, state and cancel switch.
#[derive(Clone)]
pub struct TaskRef(Rc<TaskCtl>);

impl TaskRef {
    /// The task's id: 1, 2, 3, … in spawn order within its backend.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The task's name, or `task#<id>` when it was spawned unnamed.
    pub fn name(&self) -> Cow<'static, str> {
        match self
            .0
            .extra
            .as_deref()
            .and_then(|extra| extra.name.as_ref())
        {
            Some(name) => Cow::clone(name),
            None => Cow::Owned(format!("task#{}", self.0.id)),
        }
    }

    /// Whether the task's body is done (returned, panicked, or was dropped).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Whether a cancel request has been made for this task.
    pub fn is_cancel_requested(&self) -> bool {
        self.0.is_cancel_requested()
    }

    /// Requests cancellation: the task gets `Err(Canceled)` at its next suspend point.
    pub fn cancel(&self) {
        self.0.request_cancel();
    }

    /// Gives up on the task: it is canceled and scheduled one last time, and that poll drops
    /// its future without polling it. A backend shutting down does this to every task still
    /// alive, then runs them, so their futures are dropped inside the task body (where a
    /// panicking `Drop` is caught, see `body.rs`) rather than by async-task (which would abort),
    /// and a stuck task is not leaked in the cycle through its own waker.
    pub(crate) fn abandon(&self) {
        if self.0.is_finished() {
            return;
        }
        self.0.set(CANCEL_REQUESTED | ABANDONED);
        self.0.disarm_deadline();
        if let Some(waker) = self.0.waker.take() {
            waker.wake_by_ref();
            self.0.waker.set(Some(waker));
        }
    }

    /// What the task is parked on, if it is parked (`None` while runnable or finished).
    /// A join names the joined task by id (`join task#3`); [`TaskSet::blocked`] resolves names.
    pub fn parked_on(&self) -> Option<String> {
        match self.0.parked_on.get() {
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
    task: TaskRef,
}

impl RawTask {
    /// Builds a task whose wakers schedule it on `queue`, and its typed join handle.
    ///
    /// `Cx::spawn` calls this; backends and protocol-level tests may call it directly.
    pub fn new<T, F>(queue: &RunQueue, opts: &SpawnOptions, future: F) -> (RawTask, Task<T>)
    where
        T: 'static,
        F: Future<Output = Result<T, Canceled>> + 'static,
    {
        let id = queue.next_task_id();
        let ctl = Rc::new(TaskCtl {
            id,
            extra: (opts.name.is_some() || opts.deadline_ms.is_some()).then(|| {
                Box::new(Extra {
                    name: opts.name.clone(),
                    deadline_ms: opts.task_deadline_ms(),
                    io: Cell::new(None),
                    timer: Cell::new(None),
                })
            }),
            waker: Cell::new(None),
            parked_on: Cell::new(ParkedOn::Nothing),
            registry: Cell::new(None),
            slot: Cell::new(0),
            shield_depth: Cell::new(0),
            state: Cell::new(0),
        });
        let (runnable, inner) = body::build(queue, &ctl, future);
        let raw = RawTask {
            runnable,
            task: TaskRef(ctl.clone()),
        };
        (
            raw,
            Task {
                inner: Some(inner.fallible()),
                ctl,
            },
        )
    }

    /// The task's id.
    pub fn id(&self) -> u64 {
        self.task.id()
    }

    /// A view of the task.
    pub fn task(&self) -> &TaskRef {
        &self.task
    }

    /// Queues the task on the run queue it was built for.
    pub fn schedule(self) {
        self.runnable.schedule();
    }

    /// Splits into the runnable (to run inline) and the task view.
    pub fn into_parts(self) -> (Runnable, TaskRef) {
        (self.runnable, self.task)
    }
}

/// A handle to a spawned task; awaiting it joins the task.
///
/// Awaiting gives `Ok(value)` if the task finished, or `Err(Canceled)` if it was canceled before
/// it finished — or if the *awaiting* task is itself canceled while it waits (the handle is then
/// dropped, which cancels the child in turn). A task that finished before a cancel landed still
/// gives `Ok`. If the task panicked, awaiting it resumes the panic in the joiner.
///
/// Dropping the handle requests cancellation; the task then ends at its next suspend point.
/// [`Task::detach`] lets it run on instead.
#[must_use = "tasks get canceled when dropped, use .detach() to run them in the background"]
pub struct Task<T> {
    inner: Option<async_task::FallibleTask<Outcome<T>, u64>>,
    ctl: Rc<TaskCtl>,
}

impl<T> Task<T> {
    /// Requests cancellation. The task is readied and its next suspend point returns
    /// `Err(Canceled)`; a task that has not started yet never runs its body. Await the handle to
    /// learn how it ended.
    pub fn cancel(&self) {
        self.ctl.request_cancel();
    }

    /// Lets the task run to completion in the background; its result is discarded.
    pub fn detach(mut self) {
        if let Some(inner) = self.inner.take() {
            inner.detach();
        }
    }

    /// Whether the task has finished (its result, if any, is ready to be joined).
    pub fn is_finished(&self) -> bool {
        self.ctl.is_finished()
    }

    /// The task's id: 1, 2, 3, … in spawn order within its backend.
    pub fn id(&self) -> u64 {
        self.ctl.id
    }

    /// A backend-level view of the task.
    pub fn task_ref(&self) -> TaskRef {
        TaskRef(self.ctl.clone())
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, Canceled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            panic!("a Task was polled after it returned its result");
        };
        match Pin::new(inner).poll(cx) {
            Poll::Ready(outcome) => {
                self.inner = None;
                // `None`: the backend dropped the task unpolled (a refused spawn). A panic of
                // the task (or of its future's drop) resumes here, in the joiner.
                Poll::Ready(outcome.map_or(Err(Canceled), Outcome::into_result))
            }
            // Completion wins: the joiner's own cancellation is only looked at when the child
            // has not finished.
            Poll::Pending if cancel_pending() => Poll::Ready(Err(Canceled)),
            Poll::Pending => {
                set_parked_on(ParkedOn::Join(self.ctl.id));
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            self.ctl.request_cancel();
            inner.detach();
        }
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.ctl.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// The live tasks of one backend, for deadlock reports and for canceling what is left when the
/// main task returns.
///
/// A slab of weak references: a task takes a free slot when it is inserted and gives it back
/// itself when its body ends, so nothing is ever swept, a finished task's control block is freed
/// as soon as its handles are gone, and an empty set answers [`TaskSet::live`] at once. (It
/// replaced a vector swept of finished tasks whenever it doubled: the sweeps and the end-of-run
/// scans read every control block, a cache miss each, and kept finished ones allocated until
/// the next sweep.)
#[derive(Debug, Default)]
pub struct TaskSet {
    registry: Rc<Registry>,
}

/// The slots of a [`TaskSet`], shared with the control blocks of its tasks so they can leave.
#[derive(Debug, Default)]
struct Registry {
    slots: RefCell<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    tasks: Vec<Option<Weak<TaskCtl>>>,
    /// The empty slots of `tasks`, reused last-freed first.
    free: Vec<u32>,
}

impl Registry {
    fn remove(&self, slot: u32) {
        // Nothing that borrows the slots runs task code, so this borrow cannot fail; were it
        // ever to, the dead entry would only be skipped by `live` and never reused.
        if let Ok(mut slots) = self.slots.try_borrow_mut() {
            if let Some(entry) = slots.tasks.get_mut(slot as usize) {
                *entry = None;
                slots.free.push(slot);
            }
        }
    }
}

impl fmt::Debug for TaskCtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskCtl").field("id", &self.id).finish()
    }
}

impl TaskSet {
    /// An empty set.
    pub fn new() -> TaskSet {
        TaskSet::default()
    }

    /// Adds a task. A task that has finished, or is in a set already, is left as it is.
    pub fn insert(&mut self, task: &TaskRef) {
        let ctl = &task.0;
        let registered = ctl.registry.take();
        if registered.is_some() || ctl.is_finished() {
            ctl.registry.set(registered);
            return;
        }
        let mut slots = self.registry.slots.borrow_mut();
        let entry = Some(Rc::downgrade(ctl));
        let slot = match slots.free.pop() {
            Some(slot) => {
                slots.tasks[slot as usize] = entry;
                slot
            }
            None => {
                let slot = u32::try_from(slots.tasks.len()).expect("more than 2^32 live tasks");
                slots.tasks.push(entry);
                slot
            }
        };
        drop(slots);
        ctl.slot.set(slot);
        ctl.registry.set(Some(self.registry.clone()));
    }

    /// How many tasks are not yet finished.
    pub fn live_count(&self) -> usize {
        let slots = self.registry.slots.borrow();
        slots.tasks.len() - slots.free.len()
    }

    /// Every task not yet finished, in id order.
    pub fn live(&self) -> Vec<TaskRef> {
        let slots = self.registry.slots.borrow();
        if slots.free.len() == slots.tasks.len() {
            return Vec::new();
        }
        let mut live: Vec<TaskRef> = slots
            .tasks
            .iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .filter(|t| !t.is_finished())
            .map(TaskRef)
            .collect();
        // Slots are reused, so slot order is not spawn order.
        live.sort_unstable_by_key(|t| t.0.id);
        live
    }

    /// Every live task with what it waits for, names resolved, in id order. Meant for when
    /// nothing is runnable, so every live task is waiting; one waiting on a future that does not
    /// suspend through a park (a foreign channel, a raw waker) is listed as waiting on "a future
    /// outside the protocol".
    pub fn blocked(&self) -> Vec<crate::BlockedTask> {
        let live = self.live();
        // `live` is in id order: a join's target is found by binary search, so a report over a
        // long chain of joins is O(n log n), not quadratic.
        let name_of = |id: u64| match live.binary_search_by_key(&id, |task| {
            #[cfg(test)]
            tests::PROBES.with(|probes| probes.set(probes.get() + 1));
            task.id()
        }) {
            Ok(at) => live[at].name().into_owned(),
            Err(_) => format!("task#{id}"),
        };
        live.iter()
            .map(|t| {
                let parked_on = match t.0.parked_on.get() {
                    ParkedOn::Nothing => "a future outside the protocol".to_string(),
                    ParkedOn::Park(what) => what.to_string(),
                    ParkedOn::Join(id) => format!("join '{}' (#{id})", name_of(id)),
                };
                crate::BlockedTask {
                    id: t.id(),
                    name: t.name().into_owned(),
                    parked_on,
                }
            })
            .collect()
    }
}

/// Polls a finished task's handle once and returns its result, turning a panic into
/// [`RunError::Panicked`](crate::RunError::Panicked).
pub(crate) fn take_finished<T>(task: Task<T>, name: &str) -> Result<T, crate::RunError> {
    let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        futures_lite::future::block_on(task)
    }));
    match joined {
        Ok(result) => Ok(result?),
        Err(payload) => Err(crate::RunError::Panicked {
            task: name.to_string(),
            message: crate::error::panic_message(&*payload),
        }),
    }
}

/// The io a task-building caller hands around; kept here so `Cx` stays small.
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
    if let Some(extra) = task.ctl.extra.as_deref() {
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
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// How many tasks `TaskSet::blocked` looked at to resolve the names of joined tasks.
        pub(super) static PROBES: Cell<u64> = const { Cell::new(0) };
    }

    /// A deadlock report over a long chain of joins (each task joining the next) resolves every
    /// name in O(log n) probes, not by a scan of every live task (quadratic: seconds at 20k).
    #[test]
    fn deadlock_report_over_a_join_chain_is_not_quadratic() {
        // Fewer under Miri, which interprets every step: the bound per name is what is checked.
        const TASKS: u64 = if cfg!(miri) { 1_000 } else { 20_000 };
        let queue = RunQueue::new();
        let mut set = TaskSet::new();
        // Never run: the tasks stay live (and parked, as set below) for the report.
        let (raws, handles): (Vec<RawTask>, Vec<Task<()>>) = (0..TASKS)
            .map(|_| {
                let (raw, task) = RawTask::new(&queue, &SpawnOptions::new(), async { Ok(()) });
                set.insert(raw.task());
                (raw, task)
            })
            .unzip();
        for pair in handles.windows(2) {
            pair[0].ctl.parked_on.set(ParkedOn::Join(pair[1].id()));
        }
        PROBES.with(|probes| probes.set(0));
        let blocked = set.blocked();
        let probes = PROBES.with(Cell::get);
        assert_eq!(blocked.len(), TASKS as usize);
        assert_eq!(
            blocked[0].parked_on,
            format!("join 'task#2' (#{})", handles[1].id())
        );
        // A binary search over 20k tasks probes at most 16 of them (a scan: 10k on average).
        assert!(probes <= TASKS * 16, "{probes} probes for {TASKS} tasks");
        drop(raws);
        assert!(set.live().is_empty(), "dropped unrun, the tasks ended");
    }
}
