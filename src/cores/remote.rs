//! A task on another core: [`RemoteTask`], its shared state, and the body that runs it there.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use io_core::{BudgetUnit, Canceled, Cx};

/// What became of a remote task.
enum Outcome<T> {
    Running,
    Value(T),
    Canceled,
    Panicked(Box<dyn Any + Send>),
    /// Its joiner has it.
    Taken,
}

/// The one piece both cores touch: the outcome, the cancel request, and the wakers of the
/// joiner and of the task on its core. One short critical section per event (start, cancel,
/// each poll of the remote body, completion, each poll of the join).
struct State<T> {
    outcome: Outcome<T>,
    cancel: bool,
    joiner: Option<Waker>,
    target: Option<Waker>,
}

pub(super) struct Shared<T>(Mutex<State<T>>);

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every critical section leaves the state consistent; a panic cannot poison it halfway.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the outcome (once) and wakes the joiner.
    fn finish(&self, outcome: Outcome<T>) {
        let joiner = {
            let mut state = self.lock();
            if !matches!(state.outcome, Outcome::Running) {
                return;
            }
            state.outcome = outcome;
            state.target = None;
            state.joiner.take()
        };
        if let Some(joiner) = joiner {
            joiner.wake();
        }
    }
}

/// A task started on another core by [`Core::spawn_on`](super::Core::spawn_on): a `Send`
/// handle, awaited from any core (or any thread) for `Result<T, Canceled>`, canceled from any
/// core. Like [`Task`](crate::Task): a panic in the task resumes in its joiner; dropping the
/// handle cancels the task (the cancel is delivered at its next suspend point on its core);
/// [`detach`](RemoteTask::detach) lets it run on. A task whose core stopped before it could run
/// or finish joins as `Err(Canceled)`.
///
/// Awaiting it is a suspend point of the awaiting task: a cancel of the awaiting task ends the
/// wait with `Err(Canceled)`, unless the remote task has finished (completion wins: its outcome
/// is returned, never dropped). A canceled wait leaves the handle as it was: it can be awaited
/// again (in a [`shield`](io_core::Cx::shield), say) for the outcome.
///
/// ```
/// use ioswap::cores::{Cores, CoreId};
/// # if !ioswap::Backend::Poll.is_compiled() { return; }
/// let sums = Cores::new()
///     .count(2)
///     .backend(ioswap::Backend::Poll)
///     .run(|_cx, core| async move {
///         let other = CoreId::new((core.id().index() + 1) % core.count());
///         let task = core.spawn_on(other, |cx| async move {
///             cx.sleep(1).await?;
///             Ok(21)
///         });
///         Ok(task.await? * 2)
///     })
///     .unwrap();
/// assert_eq!(sums, vec![42, 42]);
/// ```
#[must_use = "remote tasks get canceled when dropped, use .detach() to run them in the background"]
pub struct RemoteTask<T> {
    shared: Arc<Shared<T>>,
    detached: bool,
}

/// Where a remote task is started: the body that runs on its core, with the guard that makes a
/// body dropped unrun (a stopped core) join as `Err(Canceled)`.
pub(super) struct Start<T> {
    shared: Arc<Shared<T>>,
}

pub(super) fn pair<T>() -> (RemoteTask<T>, Start<T>) {
    let shared = Arc::new(Shared(Mutex::new(State {
        outcome: Outcome::Running,
        cancel: false,
        joiner: None,
        target: None,
    })));
    let task = RemoteTask {
        shared: shared.clone(),
        detached: false,
    };
    (task, Start { shared })
}

impl<T> RemoteTask<T> {
    /// Requests cancellation: the task gets `Err(Canceled)` at its next suspend point on its
    /// core; a task that has not started never runs its body. Idempotent; harmless once it has
    /// finished.
    pub fn cancel(&self) {
        let target = {
            let mut state = self.shared.lock();
            if state.cancel || !matches!(state.outcome, Outcome::Running) {
                return;
            }
            state.cancel = true;
            state.target.take()
        };
        if let Some(target) = target {
            target.wake();
        }
    }

    /// Lets the task run on without a handle (dropping the handle no longer cancels it).
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Whether the task has ended (returned, panicked, or was canceled).
    pub fn is_finished(&self) -> bool {
        !matches!(self.shared.lock().outcome, Outcome::Running)
    }
}

/// The join. The outcome is looked at first (completion wins, like a local `Task` join: a
/// finished task's outcome is returned even to a joiner with a cancel pending); only a join that
/// would wait delivers the joiner's cancel, and leaves the state as it was, so the handle can be
/// joined again. To the awaiting core the wait is a foreign wait (another thread wakes it), so
/// the loop keeps waiting instead of reporting a deadlock.
impl<T> Future for RemoteTask<T> {
    type Output = Result<T, Canceled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = {
            let mut state = self.shared.lock();
            match state.outcome {
                Outcome::Running => {
                    if io_core::cancel_pending() {
                        return Poll::Ready(Err(Canceled));
                    }
                    if !state
                        .joiner
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        state.joiner = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                Outcome::Taken => panic!("a RemoteTask was polled after it returned"),
                Outcome::Value(_) | Outcome::Canceled | Outcome::Panicked(_) => {}
            }
            // A join spends a unit of budget when it returns; a spent budget yields once, but
            // never over a cancel: the outcome would be lost with the handle (completion wins).
            match BudgetUnit::poll_take(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(unit)) => unit.spend(),
                Poll::Ready(Err(Canceled)) => {}
            }
            std::mem::replace(&mut state.outcome, Outcome::Taken)
        };
        match outcome {
            Outcome::Value(value) => Poll::Ready(Ok(value)),
            Outcome::Canceled => Poll::Ready(Err(Canceled)),
            Outcome::Panicked(payload) => resume_unwind(payload),
            Outcome::Running | Outcome::Taken => unreachable!("the outcome was looked at above"),
        }
    }
}

impl<T> Drop for RemoteTask<T> {
    fn drop(&mut self) {
        if !self.detached {
            self.cancel();
        }
    }
}

impl<T> fmt::Debug for RemoteTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTask")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T: 'static> Start<T> {
    /// Starts the body as a detached task of `cx`'s core. The task's first look at the cancel
    /// request is its start: a task canceled before it never calls `body`; a cancel after it is
    /// one of a started task, delivered at its first suspend point as for a local task (so
    /// `body` is never called only to have its future dropped unpolled).
    pub(super) fn start<F, Fut>(self, cx: &Cx, body: F)
    where
        F: FnOnce(Cx) -> Fut + 'static,
        Fut: Future<Output = Result<T, Canceled>> + 'static,
    {
        cx.spawn(move |cx| async move {
            if self.shared.lock().cancel {
                return Ok(()); // dropping `self` joins it as canceled; `body` is never called
            }
            // A panic in the closure itself (before it returns its future) is the task's panic:
            // it resumes in the joiner, as one in the future does.
            let future = match catch_unwind(AssertUnwindSafe(|| body(cx.clone()))) {
                Ok(future) => Box::pin(future),
                Err(payload) => {
                    self.shared.finish(Outcome::Panicked(payload));
                    return Ok(());
                }
            };
            Body {
                cx,
                start: self,
                future,
                canceled: false,
            }
            .await;
            Ok(())
        })
        .detach();
    }
}

impl<T> Drop for Start<T> {
    fn drop(&mut self) {
        self.shared.finish(Outcome::Canceled);
    }
}

/// The remote task's future on its core: passes a cancel request on to the local task, and
/// hands the outcome (a panic included) to the shared state.
struct Body<T, Fut> {
    cx: Cx,
    start: Start<T>,
    future: Pin<Box<Fut>>,
    canceled: bool,
}

impl<T, Fut: Future<Output = Result<T, Canceled>>> Future for Body<T, Fut> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if !this.canceled {
            let mut state = this.start.shared.lock();
            if state.cancel {
                this.canceled = true;
            } else if !state
                .target
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.target = Some(cx.waker().clone());
            }
            drop(state);
            if this.canceled {
                // Our own task: its next suspend point raises `Canceled`, as for a local cancel.
                if let Some(task) = this.cx.current_task() {
                    task.cancel();
                }
            }
        }
        let future = &mut this.future;
        let outcome = match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(value))) => Outcome::Value(value),
            Ok(Poll::Ready(Err(Canceled))) => Outcome::Canceled,
            Err(payload) => Outcome::Panicked(payload),
        };
        this.start.shared.finish(outcome);
        Poll::Ready(())
    }
}
