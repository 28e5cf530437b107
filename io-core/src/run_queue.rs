//! The run queue every backend drains: where a woken task's [`Runnable`] lands.
//!
//! Wakers may be cloned to and woken from any thread, so the schedule path is thread-safe: a
//! mutex-guarded queue plus a condition variable for backends that block while idle, and an
//! optional hook (an eventfd write, say) for backends that sleep in the kernel.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// A task ready to be polled once, as handed out by async-task. The metadata is the task id.
pub type Runnable = async_task::Runnable<u64>;

/// The thread-safe queue of runnable tasks of one backend. Cheap to clone (an `Arc`).
///
/// ```
/// use io_core::RunQueue;
/// let queue = RunQueue::new();
/// assert!(queue.is_empty());
/// assert_eq!(queue.next_task_id(), 1);
/// assert_eq!(queue.next_task_id(), 2);
/// ```
#[derive(Clone)]
pub struct RunQueue(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    pushed: Condvar,
    next_id: AtomicU64,
    on_push_while_idle: Option<Box<dyn Fn() + Send + Sync>>,
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
        RunQueue(Arc::new(Shared {
            state: Mutex::new(State::default()),
            pushed: Condvar::new(),
            next_id: AtomicU64::new(1),
            on_push_while_idle,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every critical
        // section is a single VecDeque call), so a poisoned lock is still usable.
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id for the next task spawned on this backend: 1, 2, 3, … in spawn order, so ids are
    /// deterministic per backend instance.
    pub fn next_task_id(&self) -> u64 {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Schedules a runnable. This is the async-task schedule function; any thread may call it.
    pub fn push(&self, runnable: Runnable) {
        let mut state = self.lock();
        state.runnables.push_back(runnable);
        let was_idle = std::mem::take(&mut state.idle);
        drop(state);
        if was_idle {
            self.0.pushed.notify_one();
            if let Some(hook) = &self.0.on_push_while_idle {
                hook();
            }
        }
    }

    /// Takes the oldest runnable.
    pub fn pop(&self) -> Option<Runnable> {
        self.lock().runnables.pop_front()
    }

    /// Moves every queued runnable to the back of `batch`, in queue order.
    pub fn drain_into(&self, batch: &mut VecDeque<Runnable>) {
        let mut state = self.lock();
        if batch.is_empty() {
            std::mem::swap(batch, &mut state.runnables);
        } else {
            batch.append(&mut state.runnables);
        }
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().runnables.is_empty()
    }

    /// How many runnables are queued.
    pub fn len(&self) -> usize {
        self.lock().runnables.len()
    }

    /// Announces that the loop is about to sleep. Returns `false` (and stays busy) if work is
    /// already queued; otherwise later pushes will notify the condition variable and call the
    /// idle hook. Pair with [`RunQueue::end_idle`].
    pub fn begin_idle(&self) -> bool {
        let mut state = self.lock();
        state.idle = state.runnables.is_empty();
        state.idle
    }

    /// The loop woke up: pushes no longer need to wake it.
    pub fn end_idle(&self) {
        self.lock().idle = false;
    }

    /// Blocks the calling thread until a runnable is queued or `until` passes (`None`: no time
    /// limit). Returns at once if work is already queued.
    pub fn wait(&self, until: Option<Instant>) {
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
        let dropped = std::mem::take(&mut self.lock().runnables);
        // Dropped outside the lock: dropping a future may wake (and so push) other tasks.
        drop(dropped);
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
