//! [`Task`]: the join handle.
#![allow(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

use super::body::{drop_contained, Outcome};
use super::budget::poll_take as poll_budget;
use super::ctl::{JoinHandle, ParkedOn, TaskCtl, JOINED};
use super::current::{cancel_pending, set_parked_on};
use super::TaskRef;
use crate::Canceled;

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
    /// async-task's handle; kept after the join (which the control block's `JOINED` notes),
    /// so that `ctl` stays valid; taken by `detach`.
    pub(super) inner: Option<JoinHandle<T>>,
    /// The task's control block, async-task's metadata of the task.
    pub(super) ctl: NonNull<TaskCtl>,
}

impl<T> Task<T> {
    /// The task's control block.
    pub(super) fn ctl(&self) -> &TaskCtl {
        // SAFETY: `ctl` is the metadata of the task `inner` is the handle of, and `inner` is
        // only ever taken by `detach`, which consumes `self`: async-task keeps its allocation,
        // metadata included, as long as the handle exists. The block is only reached through
        // shared references (cells), on the spawning thread (`Task` is `!Send`, see
        // `TaskCtl`'s `Send` note).
        unsafe { self.ctl.as_ref() }
    }

    /// Requests cancellation. The task is readied and its next suspend point returns
    /// `Err(Canceled)`; a task that has not started yet never runs its body. Await the handle to
    /// learn how it ended.
    pub fn cancel(&self) {
        self.ctl().request_cancel();
    }

    /// Lets the task run to completion in the background; its result is discarded.
    pub fn detach(mut self) {
        if let Some(inner) = self.inner.take() {
            self.let_go(inner);
        }
    }

    /// Gives up the async-task handle: to the task's control block while the body has not
    /// ended (which keeps the task alive until it does, see `TaskCtl`), detached otherwise.
    fn let_go(&self, inner: JoinHandle<T>) {
        if self.ctl().is_finished() {
            // May free the task: no borrow of its block is alive here.
            inner.detach();
        } else {
            self.ctl().keep_handle(inner);
        }
    }

    /// Whether the task has finished (its result, if any, is ready to be joined).
    pub fn is_finished(&self) -> bool {
        self.ctl().is_finished()
    }

    /// The task's id: 1, 2, 3, … in spawn order within its backend.
    pub fn id(&self) -> u64 {
        self.ctl().id
    }

    /// A backend-level view of the task.
    pub fn task_ref(&self) -> TaskRef {
        TaskRef::of(self.ctl())
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, Canceled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.ctl().has(JOINED) {
            panic!("a Task was polled after it returned its result");
        }
        // A join spends a unit of the joiner's budget when it returns (tasks are joined once), so
        // joining a run of finished tasks yields now and then too.
        let unit = match poll_budget(cx) {
            Poll::Ready(Ok(unit)) => Some(unit),
            // The joiner's cancel, which the join delivers below unless the task has finished
            // (completion wins: its result is not dropped).
            Poll::Ready(Err(Canceled)) => None,
            Poll::Pending => return Poll::Pending,
        };
        let inner = self.inner.as_mut().expect("only `detach` takes it");
        match Pin::new(inner).poll(cx) {
            Poll::Ready(outcome) => {
                if let Some(unit) = unit {
                    unit.spend();
                }
                self.ctl().set(JOINED);
                // `None`: the backend dropped the task unpolled (a refused spawn). A panic of
                // the task (or of its future's drop) resumes here, in the joiner.
                Poll::Ready(outcome.map_or(Err(Canceled), Outcome::into_result))
            }
            // Completion wins: the joiner's own cancellation is only looked at when the child
            // has not finished.
            Poll::Pending if cancel_pending() => Poll::Ready(Err(Canceled)),
            Poll::Pending => {
                set_parked_on(ParkedOn::Join(self.ctl().id));
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            if !self.ctl().has(JOINED) {
                self.ctl().request_cancel();
            }
            // Joined or not, the handle goes as any other: detached if the body has ended, kept
            // by the block otherwise. A joined task whose body has not ended is one async-task
            // closed while the body leaked on another thread (the join got `Canceled`): the body
            // never ends, so the block keeps the handle, and the allocation, for good, and the
            // task set and the views never read freed memory.
            self.let_go(inner);
        }
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.ctl().id)
            .field("finished", &self.is_finished())
            .finish()
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
        Err(payload) => {
            let message = crate::error::panic_message(&*payload);
            // A payload whose own drop panics must not escape `run` (and skip its drain).
            drop_contained(payload);
            Err(crate::RunError::Panicked {
                task: name.to_string(),
                message,
            })
        }
    }
}
