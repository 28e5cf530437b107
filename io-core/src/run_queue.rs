//! The run queue every backend drains: where a woken task's [`Runnable`] lands.
//!
//! Wakers may be cloned to and woken from any thread, so the schedule path is thread-safe: a
//! mutex-guarded queue plus a condition variable for backends that block while idle, and an
//! optional hook (an eventfd write, say) for backends that sleep in the kernel.
//!
//! Nearly every push comes from the loop's own thread, though (a task readying itself or
//! another, a spawn, a timer firing), and those skip the mutex: the thread that drains a queue
//! becomes its *owner*, and its own pushes go to a thread-local queue that only it drains.
//! Pushes from other threads, or from a thread that owns another queue, take the mutex. A queue
//! is drained by one thread (its backend's); what that thread pushed locally is always younger
//! than what it pushed through the mutex, so draining the mutex-guarded queue first keeps one
//! thread's pushes in order, and the fiber schedule deterministic.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

/// A task ready to be polled once, as handed out by async-task. The metadata is the task's
/// control block, of which a backend reads the id ([`TaskCtl::id`](crate::TaskCtl::id)).
pub type Runnable = async_task::Runnable<crate::TaskCtl>;

/// The thread-safe queue of runnable tasks of one backend. Cheap to clone (an `Arc`).
///
/// ```
/// use io_core::RunQueue;
/// let queue = RunQueue::new();
/// assert!(queue.is_empty());
/// assert_eq!(queue.ids_issued(), 0);
/// ```
#[derive(Clone)]
pub struct RunQueue(Arc<Shared>);

struct Shared {
    /// The queue's name in [`QUEUES`], which its tasks hold instead of the queue.
    key: QueueKey,
    state: Mutex<State>,
    /// The mutex-guarded queue may hold runnables: lets the owner skip the lock when it does
    /// not. Set under the lock by every push there, cleared under the lock when it is emptied.
    shared_pushes: AtomicBool,
    /// The loop sleeps between [`RunQueue::begin_sleep`] and [`RunQueue::end_sleep`]: a push
    /// through the mutex calls the idle hook. No lock: the sleeper stores this and then reads
    /// `shared_pushes`, a pusher stores `shared_pushes` and then reads this, all `SeqCst`, so at
    /// least one of them sees the other's store (the pusher calls the hook, or the loop does not
    /// sleep).
    sleeping: AtomicBool,
    pushed: Condvar,
    next_id: AtomicU64,
    /// Operations per poll of the tasks built for this queue from now on (`0`: unlimited); see
    /// [`BackendCore::set_op_budget`](crate::BackendCore::set_op_budget).
    op_budget: AtomicU32,
    on_push_while_idle: Option<Box<dyn Fn() + Send + Sync>>,
}

thread_local! {
    static LOCAL: RefCell<Local> = const {
        RefCell::new(Local {
            owner: None,
            owner_key: None,
            runnables: VecDeque::new(),
        })
    };
}

/// A run queue's name in [`QUEUES`]: its index there and the generation of that entry (never
/// 0), so a key outlives its queue without ever naming a later one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct QueueKey(u64);

impl QueueKey {
    fn new(index: u32, generation: u32) -> QueueKey {
        QueueKey(u64::from(index) << 32 | u64::from(generation))
    }

    fn index(self) -> u32 {
        (self.0 >> 32) as u32
    }

    fn generation(self) -> u32 {
        self.0 as u32
    }
}

/// Every live run queue of the process, by [`QueueKey`]. A task's control block names its queue
/// by key rather than holding it: an `Arc` held per task is a locked add at spawn and a locked
/// subtract when the task is freed, where the key costs nothing. The owner's pushes (nearly all)
/// compare keys; a push from another thread looks the queue up here: the entry's own lock (no
/// lock shared by all queues) and an upgrade of its `Weak`, on the queue's lines as the `Arc`
/// was.
///
/// Entries live in chunks made on demand and never freed (room for [`MAX_QUEUES`] queues alive
/// at once). An entry is reused for a later queue with the next generation, and retired for good
/// once its generation reaches `u32::MAX`, so no key ever names two queues.
static QUEUES: [OnceLock<Box<[Entry; QUEUE_CHUNK]>>; QUEUE_CHUNKS] =
    [const { OnceLock::new() }; QUEUE_CHUNKS];

const QUEUE_CHUNK: usize = 1024;
const QUEUE_CHUNKS: usize = 1024;
/// How many run queues may be alive at once.
const MAX_QUEUES: usize = QUEUE_CHUNK * QUEUE_CHUNKS;

/// Entries of [`QUEUES`] never handed out, and those whose queue was dropped (to reuse,
/// last-freed first).
static FREE_QUEUES: Mutex<FreeQueues> = Mutex::new(FreeQueues {
    unused: 0,
    freed: Vec::new(),
});

struct FreeQueues {
    unused: u32,
    freed: Vec<u32>,
}

/// One entry of [`QUEUES`]: the generation it was last given (0: never) and its queue (dangling
/// once dropped).
#[derive(Default)]
struct Entry(Mutex<(u32, Weak<Shared>)>);

impl Entry {
    /// The entry at `index`, its chunk made if `make` (else `None` for a chunk never made).
    fn at(index: u32, make: bool) -> Option<&'static Entry> {
        let (chunk, offset) = (index as usize / QUEUE_CHUNK, index as usize % QUEUE_CHUNK);
        let chunk = QUEUES.get(chunk)?;
        let entries = match make {
            true => chunk.get_or_init(|| Box::new(std::array::from_fn(|_| Entry::default()))),
            false => chunk.get()?,
        };
        Some(&entries[offset])
    }

    fn lock(&self) -> MutexGuard<'_, (u32, Weak<Shared>)> {
        // Every critical section leaves the entry consistent, so a poisoned lock is usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enters `queue` (being built) and returns its key.
    fn register(queue: Weak<Shared>) -> QueueKey {
        let mut free = FREE_QUEUES.lock().unwrap_or_else(|e| e.into_inner());
        let index = match free.freed.pop() {
            Some(index) => index,
            None => {
                let index = free.unused;
                assert!(
                    (index as usize) < MAX_QUEUES,
                    "more than {MAX_QUEUES} run queues alive at once"
                );
                free.unused += 1;
                index
            }
        };
        drop(free);
        let entry = Entry::at(index, true).expect("an index below MAX_QUEUES");
        let mut slot = entry.lock();
        // Retired at `u32::MAX` (see `Drop for Shared`), so this never wraps.
        slot.0 += 1;
        slot.1 = queue;
        QueueKey::new(index, slot.0)
    }

    /// The queue `key` names, if it is still alive.
    fn find(key: QueueKey) -> Option<RunQueue> {
        let entry = Entry::at(key.index(), false)?;
        let slot = entry.lock();
        // The upgraded handle outlives the guard: dropping a queue takes this lock.
        (slot.0 == key.generation())
            .then(|| slot.1.upgrade())
            .flatten()
            .map(RunQueue)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let Some(entry) = Entry::at(self.key.index(), false) else {
            return;
        };
        let mut slot = entry.lock();
        slot.1 = Weak::new();
        let retired = slot.0 == u32::MAX;
        drop(slot);
        if !retired {
            let mut free = FREE_QUEUES.lock().unwrap_or_else(|e| e.into_inner());
            free.freed.push(self.key.index());
        }
    }
}

/// The schedule function of every task (what its wakers call, on any thread): pushes the task
/// onto the run queue its control block names.
///
/// A plain function, so async-task stores nothing for it in the task: async-task guards the calls
/// it makes through its `schedule` path (the first schedule, a wake while the task is polled, a
/// wake by value) of a schedule function that captures anything with a clone and a drop of a
/// waker of the task (two atomic operations), so that the captured state outlives the call. Here
/// the control block names the queue by key; the owner's push compares keys only, and a push
/// from another thread looks the queue up and pushes through its own handle, so nothing borrowed
/// from the task's memory is used once the runnable has been given away.
pub(crate) fn schedule(runnable: Runnable) {
    let key = runnable.metadata().queue_key();
    let mut runnable = Some(runnable);
    // `try_*`: during thread teardown, or in the (impossible) re-entrant case, fall back to the
    // mutex rather than panic.
    let _ = LOCAL.try_with(|local| {
        if let Ok(mut local) = local.try_borrow_mut() {
            if local.owner_key == Some(key) {
                if let Some(runnable) = runnable.take() {
                    local.runnables.push_back(runnable);
                }
            }
        }
    });
    if let Some(runnable) = runnable {
        schedule_shared(runnable);
    }
}

/// [`schedule`] from a thread that does not own the task's queue (see [`RunQueue::push`]).
#[cold]
#[inline(never)]
fn schedule_shared(runnable: Runnable) {
    match Entry::find(runnable.metadata().queue_key()) {
        // Should the backend drop its own handle meanwhile, this one is the last, and the queue
        // is dropped here with what it holds: the bodies of its tasks, which leak their futures
        // rather than drop them off their own thread (this is not the queue's thread).
        Some(queue) => queue.push_one_shared(runnable),
        // The backend is gone, and with it whatever would have run the task: it is left as it
        // was when a task held its queue alive in a queue nobody drained (dropping it here
        // would run its future's drop code inside whatever wake called this).
        None => std::mem::forget(runnable),
    }
}

/// The thread-local side of the queue this thread owns.
struct Local {
    /// The queue last drained on this thread. Weak, so a thread that once ran a backend does
    /// not keep its queue alive; the allocation it points to cannot be reused while it exists,
    /// so comparing pointers is sound.
    owner: Option<Weak<Shared>>,
    /// `owner`'s key, for [`schedule`] (which knows a task's queue by key only).
    owner_key: Option<QueueKey>,
    /// What this thread pushed onto `owner` since it became its owner, oldest first.
    runnables: VecDeque<Runnable>,
}

impl Local {
    fn is_owned_by(&self, queue: &RunQueue) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|owner| std::ptr::eq(owner.as_ptr(), Arc::as_ptr(&queue.0)))
    }
}

#[derive(Default)]
struct State {
    runnables: VecDeque<Runnable>,
    /// The loop is (about to be) blocked waiting for work: a push must wake it.
    idle: bool,
}

impl RunQueue {
    /// An empty queue whose idle loop waits on the built-in condition variable.
    pub fn new() -> RunQueue {
        RunQueue::build(None)
    }

    /// An empty queue that also calls `wake_loop` when a task is pushed while the loop is idle
    /// (see [`RunQueue::begin_idle`]), from whatever thread pushed it.
    pub fn with_idle_hook(wake_loop: impl Fn() + Send + Sync + 'static) -> RunQueue {
        RunQueue::build(Some(Box::new(wake_loop)))
    }

    fn build(on_push_while_idle: Option<Box<dyn Fn() + Send + Sync>>) -> RunQueue {
        RunQueue(Arc::new_cyclic(|queue| Shared {
            key: Entry::register(queue.clone()),
            state: Mutex::new(State::default()),
            shared_pushes: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            pushed: Condvar::new(),
            next_id: AtomicU64::new(1),
            op_budget: AtomicU32::new(crate::DEFAULT_OP_BUDGET),
            on_push_while_idle,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every critical
        // section is a single VecDeque call), so a poisoned lock is still usable.
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queue's key: what its tasks name it by.
    #[inline]
    pub(crate) fn key(&self) -> QueueKey {
        self.0.key
    }

    /// The operation budget of each poll of the tasks built for this queue
    /// ([`RawTask::new`](crate::RawTask::new)); see
    /// [`BackendCore::set_op_budget`](crate::BackendCore::set_op_budget).
    #[inline]
    pub fn op_budget(&self) -> u32 {
        self.0.op_budget.load(Ordering::Relaxed)
    }

    /// Sets the operation budget of the tasks built for this queue from now on.
    pub fn set_op_budget(&self, ops: u32) {
        self.0.op_budget.store(ops, Ordering::Relaxed);
    }

    /// The id for the next task spawned on this backend: 1, 2, 3, … in spawn order, so ids are
    /// deterministic per backend instance.
    ///
    /// On the thread that drains the queue (where nearly every spawn happens) the counter is
    /// read and written back, not added to atomically: a locked add is a measurable part of a
    /// spawn. Another thread adds atomically. Crate-private, so only [`RawTask::new`](crate::RawTask::new)
    /// takes ids, and the two could only race if tasks were built for one queue on two threads
    /// at once: the one built on a thread that does not drain the queue panics at its first poll
    /// anyway (a task is polled on the thread that spawned it), and the race would give two
    /// tasks one id (the blocking backend picks a task's runnable by id, and deadlock reports
    /// name join targets by it).
    #[inline]
    pub(crate) fn next_task_id(&self) -> u64 {
        if self.with_local(|_| ()).is_some() {
            let id = self.0.next_id.load(Ordering::Relaxed);
            self.0.next_id.store(id + 1, Ordering::Relaxed);
            id
        } else {
            self.0.next_id.fetch_add(1, Ordering::Relaxed)
        }
    }

    /// How many task ids the queue has handed out (one to each task built for it by
    /// [`RawTask::new`](crate::RawTask::new)): it grows with every spawn.
    pub fn ids_issued(&self) -> u64 {
        self.0.next_id.load(Ordering::Relaxed) - 1
    }

    /// Schedules a runnable; any thread may call it. (A task's wakers go through the crate's
    /// schedule function, which finds the queue in the task's control block.)
    pub fn push(&self, runnable: Runnable) {
        let mut runnable = Some(runnable);
        // `try_*`: during thread teardown, or in the (impossible) re-entrant case, fall back to
        // the mutex rather than panic.
        let _ = LOCAL.try_with(|local| {
            if let Ok(mut local) = local.try_borrow_mut() {
                if local.is_owned_by(self) {
                    if let Some(runnable) = runnable.take() {
                        local.runnables.push_back(runnable);
                    }
                }
            }
        });
        if let Some(runnable) = runnable {
            self.push_one_shared(runnable);
        }
    }

    /// [`RunQueue::push`] from a thread that does not own the queue: out of line, so the
    /// owner's pushes (nearly all of them) stay a thread-local `push_back`.
    #[cold]
    #[inline(never)]
    fn push_one_shared(&self, runnable: Runnable) {
        self.push_shared(std::iter::once(runnable));
    }

    /// Pushes through the mutex, waking the loop if it is idle.
    fn push_shared(&self, runnables: impl IntoIterator<Item = Runnable>) {
        let mut state = self.lock();
        let before = state.runnables.len();
        state.runnables.extend(runnables);
        if state.runnables.len() == before {
            return;
        }
        // SeqCst: pairs with `begin_sleep` (see `Shared::sleeping`).
        self.0.shared_pushes.store(true, Ordering::SeqCst);
        let was_idle = std::mem::take(&mut state.idle);
        drop(state);
        let was_sleeping =
            self.0.sleeping.load(Ordering::SeqCst) && self.0.sleeping.swap(false, Ordering::SeqCst);
        if was_idle {
            self.0.pushed.notify_one();
        }
        if was_idle || was_sleeping {
            if let Some(hook) = &self.0.on_push_while_idle {
                hook();
            }
        }
    }

    /// Runs `f` on this thread's local queue, if this thread owns this queue.
    fn with_local<R>(&self, f: impl FnOnce(&mut VecDeque<Runnable>) -> R) -> Option<R> {
        LOCAL
            .try_with(|local| {
                let mut local = local.try_borrow_mut().ok()?;
                local.is_owned_by(self).then(|| f(&mut local.runnables))
            })
            .ok()
            .flatten()
    }

    /// Makes the calling thread this queue's owner (it is draining it), releasing the queue it
    /// owned before, then runs `f` on the local runnables (`None` only during thread teardown).
    fn claim_with<R>(&self, f: impl FnOnce(&mut VecDeque<Runnable>) -> R) -> Option<R> {
        let mut released = None;
        let result = LOCAL
            .try_with(|local| {
                let mut local = local.try_borrow_mut().ok()?;
                if !local.is_owned_by(self) {
                    let previous = local.owner.replace(Arc::downgrade(&self.0));
                    local.owner_key = Some(self.0.key);
                    released = Some((previous, std::mem::take(&mut local.runnables)));
                }
                Some(f(&mut local.runnables))
            })
            .ok()
            .flatten();
        if let Some((previous, runnables)) = released {
            hand_back(previous, runnables);
        }
        result
    }

    /// Stops owning this queue (if this thread does): what was pushed locally moves to the
    /// mutex-guarded queue, and later pushes from this thread take the mutex too.
    fn release(&self) {
        let released = LOCAL.try_with(|local| {
            let mut local = local.try_borrow_mut().ok()?;
            if !local.is_owned_by(self) {
                return None;
            }
            local.owner_key = None;
            Some((local.owner.take(), std::mem::take(&mut local.runnables)))
        });
        if let Ok(Some((previous, runnables))) = released {
            hand_back(previous, runnables);
        }
    }

    /// Whether the mutex-guarded queue may hold runnables.
    fn has_shared_pushes(&self) -> bool {
        self.0.shared_pushes.load(Ordering::Acquire)
    }

    /// Takes the oldest runnable.
    pub fn pop(&self) -> Option<Runnable> {
        if self.has_shared_pushes() {
            let mut state = self.lock();
            let runnable = state.runnables.pop_front();
            if state.runnables.is_empty() {
                self.0.shared_pushes.store(false, Ordering::Release);
            }
            if runnable.is_some() {
                return runnable;
            }
        }
        self.claim_with(VecDeque::pop_front).flatten()
    }

    /// Moves every queued runnable to the back of `batch`, in queue order.
    pub fn drain_into(&self, batch: &mut VecDeque<Runnable>) {
        let append = |batch: &mut VecDeque<Runnable>, queued: &mut VecDeque<Runnable>| {
            if batch.is_empty() {
                std::mem::swap(batch, queued);
            } else {
                batch.append(queued);
            }
        };
        if self.has_shared_pushes() {
            let mut state = self.lock();
            append(batch, &mut state.runnables);
            self.0.shared_pushes.store(false, Ordering::Release);
        }
        self.claim_with(|local| append(batch, local));
    }

    /// How many runnables this thread pushed locally (0 unless it owns this queue).
    fn local_len(&self) -> usize {
        self.with_local(|local| local.len()).unwrap_or(0)
    }

    /// Whether nothing is queued. Runnables the loop's thread pushed are only visible from that
    /// thread.
    pub fn is_empty(&self) -> bool {
        self.local_len() == 0 && (!self.has_shared_pushes() || self.lock().runnables.is_empty())
    }

    /// How many runnables are queued (those the loop's thread pushed count on that thread only).
    pub fn len(&self) -> usize {
        self.local_len() + self.lock().runnables.len()
    }

    /// Announces that the loop is about to sleep. Returns `false` (and stays busy) if work is
    /// already queued; otherwise later pushes will notify the condition variable and call the
    /// idle hook. Pair with [`RunQueue::end_idle`].
    pub fn begin_idle(&self) -> bool {
        // The loop's own thread may still ready tasks before it sleeps (firing timers, reaping
        // completions): from here on its pushes must take the mutex, which ends the idleness.
        self.release();
        let mut state = self.lock();
        state.idle = state.runnables.is_empty();
        state.idle
    }

    /// The loop woke up: pushes no longer need to wake it. Call it on the loop's thread, which
    /// owns the queue again: what it readies next (reaping completions) skips the mutex.
    pub fn end_idle(&self) {
        self.lock().idle = false;
        self.claim_with(|_| ());
    }

    /// Announces that the loop is about to sleep, as [`RunQueue::begin_idle`] does, but the
    /// calling thread stays the queue's owner while it sleeps. For a loop that readies nothing
    /// between this call and [`RunQueue::end_sleep`] (it only enters its wait, a system call
    /// that runs no task code): `begin_idle` gives ownership up so that the loop's own pushes
    /// while idle take the mutex and end the idleness, and when there are none, that round trip
    /// (hand the local runnables back, reclaim, regrow the local queue's buffer) is all cost.
    /// Returns `false` (and stays busy) if work is already queued, locally or through the
    /// mutex; otherwise pushes from other threads call the idle hook, as after `begin_idle`
    /// (such a sleep is ended by the hook, never by the condition variable). Takes no lock.
    ///
    /// The caller must not wake a task of this queue on this thread until `end_sleep`: that
    /// push would stay in the local queue, where the sleeping loop would not see it.
    pub fn begin_sleep(&self) -> bool {
        if self.local_len() > 0 {
            return false;
        }
        // SeqCst: pairs with `push_shared` (see `Shared::sleeping`).
        self.0.sleeping.store(true, Ordering::SeqCst);
        if self.0.shared_pushes.load(Ordering::SeqCst) {
            self.0.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The loop woke from a [`RunQueue::begin_sleep`]: pushes no longer need to wake it. Its
    /// thread still owns the queue (if it did before), so what it readies next skips the mutex.
    pub fn end_sleep(&self) {
        // A pusher that still sees `true` only calls the hook once more: the next wait ends at
        // once, nothing is lost.
        self.0.sleeping.store(false, Ordering::Relaxed);
    }

    /// Blocks the calling thread until a runnable is queued or `until` passes (`None`: no time
    /// limit). Returns at once if work is already queued.
    pub fn wait(&self, until: Option<Instant>) {
        // While this thread waits it pushes nothing, so its local runnables cannot change.
        if self.local_len() > 0 {
            return;
        }
        let mut state = self.lock();
        while state.runnables.is_empty() {
            state.idle = true;
            match until {
                None => state = self.0.pushed.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(until) => {
                    let now = Instant::now();
                    if now >= until {
                        break;
                    }
                    state = self
                        .0
                        .pushed
                        .wait_timeout(state, until - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        state.idle = false;
    }

    /// Drops every queued runnable (their tasks' futures are dropped without being polled).
    pub fn clear(&self) {
        let local = self.with_local(std::mem::take).unwrap_or_default();
        let shared = {
            let mut state = self.lock();
            // Reset under the lock, so a push from another thread right after is not hidden.
            self.0.shared_pushes.store(false, Ordering::Release);
            std::mem::take(&mut state.runnables)
        };
        // Dropped outside the lock: dropping a future may wake (and so push) other tasks.
        drop(shared);
        drop(local);
    }
}

/// Moves the runnables a thread pushed locally onto `owner` back to its mutex-guarded queue,
/// behind what is there (they are younger).
fn hand_back(owner: Option<Weak<Shared>>, runnables: VecDeque<Runnable>) {
    match owner.and_then(|owner| owner.upgrade()) {
        Some(shared) => RunQueue(shared).push_shared(runnables),
        // The queue is gone: its tasks are left as they were when each held its queue alive
        // (dropping them here would run their futures' drop code inside another backend's
        // drain).
        None => runnables.into_iter().for_each(std::mem::forget),
    }
}

impl Default for RunQueue {
    fn default() -> Self {
        RunQueue::new()
    }
}

impl fmt::Debug for RunQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunQueue")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::{RunQueue, Runnable};

    /// A runnable of a task that does nothing, scheduled onto `queue` when woken.
    fn runnable(queue: &RunQueue) -> Runnable {
        let queue = queue.clone();
        let (runnable, task) = async_task::Builder::new()
            .metadata(crate::TaskCtl::bare(0, &queue))
            .spawn(|_| async {}, move |runnable| queue.push(runnable));
        task.detach();
        runnable
    }

    /// An entry of the queue table whose generation has reached its last value is retired when
    /// its queue is dropped, never handed to a later queue: so no key names two queues. (One
    /// that has not is freed for reuse; other tests running alongside may take it at once, so
    /// only the retired case is checked.)
    #[test]
    fn a_queue_entry_is_retired_before_its_generation_wraps() {
        let queue = RunQueue::new();
        let key = queue.key();
        super::Entry::at(key.index(), false)
            .expect("registered")
            .lock()
            .0 = u32::MAX;
        drop(queue);
        let free = super::FREE_QUEUES.lock().unwrap();
        assert!(
            !free.freed.contains(&key.index()),
            "a retired entry is never reused"
        );
    }

    /// A sleep keeps the loop's thread the owner: what it pushes after the sleep stays in its
    /// local queue (invisible to other threads), while a push from another thread during the
    /// sleep calls the idle hook once; a sleep does not begin while anything is queued.
    #[test]
    fn a_sleep_keeps_the_owner_and_wakes_on_foreign_pushes() {
        let hooked = Arc::new(AtomicUsize::new(0));
        let queue = {
            let hooked = hooked.clone();
            RunQueue::with_idle_hook(move || {
                hooked.fetch_add(1, Ordering::Relaxed);
            })
        };
        let mut batch = std::collections::VecDeque::new();
        queue.drain_into(&mut batch); // this thread owns the queue now
        queue.push(runnable(&queue));
        assert!(!queue.begin_sleep(), "a local runnable is queued");
        queue.drain_into(&mut batch);
        assert!(queue.begin_sleep());
        let other = queue.clone();
        std::thread::spawn(move || other.push(runnable(&other)))
            .join()
            .unwrap();
        assert_eq!(
            hooked.load(Ordering::Relaxed),
            1,
            "the foreign push woke the loop"
        );
        queue.end_sleep();
        assert!(!queue.begin_sleep(), "the foreign push is queued");
        queue.drain_into(&mut batch);
        assert_eq!(batch.len(), 2);
        queue.push(runnable(&queue));
        let other = queue.clone();
        let seen_elsewhere = std::thread::spawn(move || other.len()).join().unwrap();
        assert_eq!(seen_elsewhere, 0, "the owner's push stayed local");
        assert_eq!(queue.len(), 1);
        assert_eq!(hooked.load(Ordering::Relaxed), 1);
        queue.clear();
    }
}
