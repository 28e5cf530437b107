//! [`Notify`]: wake one waiting task, or all of them, with no data attached.
//!
//! The other signals of this crate ([`oneshot`](crate::oneshot), [`watch`](crate::watch),
//! [`broadcast`](crate::broadcast)) keep their data in their own state and wait on a `Notify`
//! for it to change: a waiter checks the state, and if there is nothing for it, registers on the
//! `Notify` in the same poll, so a change between the check and the wait cannot be missed
//! (a backend runs one task at a time).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_core::{Canceled, Cx, Park};

/// Wakes waiting tasks: the oldest one ([`notify_one`](Notify::notify_one)), or every one
/// waiting now ([`notify_waiters`](Notify::notify_waiters)). Tokio's `Notify`, over the
/// protocol: a wait is a park, so it runs on every backend and is a cancel point.
///
/// A `notify_one` with nobody waiting is stored as a single permit, which the next
/// [`notified`](Notify::notified) takes without waiting; more `notify_one`s before then add
/// nothing (one permit at most). `notify_waiters` stores nothing.
///
/// **Cancel-safety.** A task waiting in `notified()` that is canceled, or whose `Notified`
/// future is dropped (a timeout won a race), holds nothing: if a `notify_one` had just chosen
/// it, that notification passes on to the next waiter, or is stored as the permit if nobody
/// else waits. The canceled wait itself returns `Err(Canceled)`. A `notify_waiters` wake is
/// not passed on: every waiter of that moment got it.
///
/// Share it between tasks with an `Rc`. Like everything on a [`Cx`], it is not `Send`.
///
/// ```
/// use std::rc::Rc;
/// use sync::Notify;
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let ready = Rc::new(Notify::new(&cx));
///         let waiter = cx.spawn({
///             let ready = ready.clone();
///             move |cx| async move {
///                 ready.notified().await?;
///                 Ok(cx.now_ms())
///             }
///         });
///         cx.sleep(25).await?;
///         ready.notify_one();
///         assert_eq!(waiter.await?, 25);
///
///         ready.notify_one(); // nobody waits: stored as the permit...
///         ready.notified().await?; // ...which this takes at once
///         assert_eq!(cx.now_ms(), 25);
///         Ok(())
///     })
///     .unwrap();
/// ```
///
/// # On the blocking backend
///
/// Blocking runs a spawned task inline, to completion, before `spawn` returns. A notification
/// that comes first works there: it is the stored permit (`notify_one`), which a later
/// `notified()` takes. A task that waits for a notification only a later task (or the task that
/// spawned it) can give never wakes: the run ends with a
/// [`RunError::Deadlock`](io_core::RunError::Deadlock) naming the `"notify"` park. A
/// `notify_waiters` reaches only tasks already waiting, which on blocking means none that
/// another task could still wake.
pub struct Notify {
    cx: Cx,
    state: RefCell<State>,
}

static_assertions::assert_not_impl_any!(Notify: Send, Sync);

struct State {
    /// The waiting tasks by arrival ticket, oldest first. A waiter leaves when it is notified
    /// (taken out by the notifier) or gives up (it takes itself out).
    waiters: BTreeMap<u64, Rc<Waiter>>,
    next_ticket: u64,
    /// A `notify_one` came when nobody waited.
    permit: bool,
}

/// One task's wait.
struct Waiter {
    park: Park,
    woken_by: Cell<Option<WokenBy>>,
}

/// Which call woke a waiter: only a `notify_one` is passed on when its waiter gives up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WokenBy {
    One,
    All,
}

impl Notify {
    /// A `Notify` on `cx`'s backend, with no permit stored.
    pub fn new(cx: &Cx) -> Notify {
        Notify {
            cx: cx.clone(),
            state: RefCell::new(State {
                waiters: BTreeMap::new(),
                next_ticket: 0,
                permit: false,
            }),
        }
    }

    /// Waits for a notification: `Ok(())` when a `notify_one` chose this wait (or its stored
    /// permit was here already) or a `notify_waiters` came while it waited.
    ///
    /// The wait starts when the future is first polled, not when it is made: a
    /// `notify_waiters` before that does not reach it. A canceled task gets `Err(Canceled)`
    /// without taking the permit; a `notify_one` that chose this wait as its task was canceled
    /// goes to the next waiter (see [`Notify`]). Waiters are served oldest first.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use sync::Notify;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let notify = Rc::new(Notify::new(&cx));
    ///         let waiters: Vec<_> = (0..3)
    ///             .map(|n| {
    ///                 let notify = notify.clone();
    ///                 cx.spawn(move |_| async move { notify.notified().await.map(|()| n) })
    ///             })
    ///             .collect();
    ///         cx.yield_now().await?; // all three wait, in spawn order
    ///         waiters[0].cancel(); // the oldest gives up
    ///         notify.notify_one(); // so the next oldest is woken
    ///         let mut waiters = waiters.into_iter();
    ///         assert!(waiters.next().unwrap().await.is_err());
    ///         assert_eq!(waiters.next().unwrap().await?, 1);
    ///         notify.notify_waiters();
    ///         assert_eq!(waiters.next().unwrap().await?, 2);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn notified(&self) -> Notified<'_> {
        self.wait_as("notify")
    }

    /// [`notified`](Notify::notified) on a park named `what`, for the signals of this crate
    /// built on a `Notify` (a deadlock report names what they wait for).
    pub(crate) fn wait_as(&self, what: &'static str) -> Notified<'_> {
        Notified {
            notify: self,
            what,
            wait: None,
            finished: false,
        }
    }

    /// Wakes the oldest waiting task; with nobody waiting, stores the permit (if it is not
    /// stored already) for the next [`notified`](Notify::notified).
    ///
    /// ```
    /// use sync::Notify;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let notify = Notify::new(&cx);
    ///         notify.notify_one();
    ///         notify.notify_one(); // one permit at most
    ///         notify.notified().await?;
    ///         let waited = futures_lite::future::or(
    ///             async { notify.notified().await.map(|()| "notified") },
    ///             async { cx.sleep(10).await.map(|()| "timed out") },
    ///         );
    ///         assert_eq!(waited.await?, "timed out");
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn notify_one(&self) {
        let woken = self.give_one(&mut self.state.borrow_mut());
        self.wake(woken);
    }

    /// Wakes every task waiting now. Stores nothing: a `notified()` first polled afterwards
    /// waits for the next notification. A stored permit stays stored.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use sync::Notify;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let go = Rc::new(Notify::new(&cx));
    ///         let runners: Vec<_> = (0..3)
    ///             .map(|_| {
    ///                 let go = go.clone();
    ///                 cx.spawn(move |cx| async move {
    ///                     go.notified().await?;
    ///                     Ok(cx.now_ms())
    ///                 })
    ///             })
    ///             .collect();
    ///         cx.sleep(5).await?;
    ///         go.notify_waiters();
    ///         for runner in runners {
    ///             assert_eq!(runner.await?, 5);
    ///         }
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn notify_waiters(&self) {
        let waiters = std::mem::take(&mut self.state.borrow_mut().waiters);
        for waiter in waiters.values() {
            waiter.woken_by.set(Some(WokenBy::All));
        }
        crate::ready_all(&self.cx, waiters.values().map(|waiter| &waiter.park));
    }

    /// The backend it waits on.
    pub(crate) fn cx(&self) -> &Cx {
        &self.cx
    }

    /// The oldest waiter is chosen (taken out of the queue and marked), else the permit is
    /// stored. The chosen one is for [`wake`](Notify::wake), once the state is released.
    fn give_one(&self, state: &mut State) -> Option<Rc<Waiter>> {
        match state.waiters.pop_first() {
            Some((_, waiter)) => {
                waiter.woken_by.set(Some(WokenBy::One));
                Some(waiter)
            }
            None => {
                state.permit = true;
                None
            }
        }
    }

    /// Readies the waiter [`give_one`](Notify::give_one) chose. Never with the state borrowed:
    /// it runs the waiter's waker, which may use this `Notify`.
    fn wake(&self, woken: Option<Rc<Waiter>>) {
        if let Some(waiter) = woken {
            self.cx.ready(&waiter.park);
        }
    }

    /// A wait that will not return `Ok` leaves: out of the queue if still in it, and a
    /// `notify_one` it was chosen by goes on to the next waiter (or back as the permit).
    fn leave(&self, ticket: u64, waiter: &Waiter) {
        let woken = {
            let mut state = self.state.borrow_mut();
            state.waiters.remove(&ticket);
            if waiter.woken_by.take() == Some(WokenBy::One) {
                self.give_one(&mut state)
            } else {
                None
            }
        };
        self.wake(woken);
    }
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("Notify")
            .field("waiters", &state.waiters.len())
            .field("permit", &state.permit)
            .finish()
    }
}

/// The future of [`Notify::notified`]. Dropping it while it waits gives up the wait, passing on
/// a `notify_one` that had chosen it.
#[must_use = "futures do nothing unless awaited"]
pub struct Notified<'a> {
    notify: &'a Notify,
    /// The park's name.
    what: &'static str,
    /// Its ticket and waiter, once queued.
    wait: Option<(u64, Rc<Waiter>)>,
    /// It returned.
    finished: bool,
}

impl Future for Notified<'_> {
    type Output = Result<(), Canceled>;

    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.finished, "a Notified was polled after it completed");
        let notify = this.notify;
        let waiter = match &this.wait {
            Some((_, waiter)) => waiter.clone(),
            None => {
                if notify.cx.check_cancel().is_err() {
                    this.finished = true;
                    return Poll::Ready(Err(Canceled));
                }
                let mut state = notify.state.borrow_mut();
                if std::mem::take(&mut state.permit) {
                    this.finished = true;
                    return Poll::Ready(Ok(()));
                }
                let waiter = Rc::new(Waiter {
                    park: notify.cx.park(this.what),
                    woken_by: Cell::new(None),
                });
                let ticket = state.next_ticket;
                state.next_ticket += 1;
                state.waiters.insert(ticket, waiter.clone());
                this.wait = Some((ticket, waiter.clone()));
                waiter
            }
        };
        loop {
            match std::task::ready!(notify.cx.poll_suspend(&waiter.park, task)) {
                Ok(()) if waiter.woken_by.get().is_some() => {
                    this.wait = None;
                    this.finished = true;
                    return Poll::Ready(Ok(()));
                }
                // Readied by nobody else: wait on (not reached with this module's notifiers).
                Ok(()) => {}
                Err(Canceled) => {
                    let (ticket, waiter) = this.wait.take().expect("a queued wait");
                    notify.leave(ticket, &waiter);
                    this.finished = true;
                    return Poll::Ready(Err(Canceled));
                }
            }
        }
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if let Some((ticket, waiter)) = self.wait.take() {
            self.notify.leave(ticket, &waiter);
        }
    }
}

impl fmt::Debug for Notified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notified")
            .field("waiting", &self.wait.is_some())
            .field("finished", &self.finished)
            .finish()
    }
}
