//! The latest value, seen by every receiver that asks: [`channel`] gives a [`Sender`] and a
//! [`Receiver`]; more receivers come from [`Receiver::clone`] or [`Sender::subscribe`].
//!
//! The channel holds one value and a version that every send bumps. Each receiver remembers
//! the version it has seen; [`Receiver::changed`] waits until the channel's differs, and
//! [`Receiver::borrow_and_update`] marks the current one seen. Sends never wait, and a receiver
//! that falls behind simply sees the latest value: values in between are not kept.
//!
//! Cancel-safety: nothing is ever handed to a waiting receiver, it looks at the channel when it
//! wakes. A `changed()` canceled (or dropped) as a send comes marks nothing seen, so the next
//! `changed()` returns at once.
//!
//! ```
//! use sync::watch;
//!
//! io_fiber::FiberIo::new()
//!     .run(|cx| async move {
//!         let (tx, mut rx) = watch::channel(&cx, "starting");
//!         let reader = cx.spawn(move |cx| async move {
//!             let mut seen = vec![*rx.borrow()];
//!             while rx.changed().await.is_ok() {
//!                 seen.push(*rx.borrow_and_update());
//!             }
//!             Ok((seen, cx.now_ms()))
//!         });
//!         cx.sleep(10).await?;
//!         tx.send("running").unwrap();
//!         cx.sleep(10).await?;
//!         tx.send("stopping").unwrap();
//!         tx.send("stopped").unwrap(); // sent before the reader looked: "stopping" is skipped
//!         drop(tx); // closes: the reader's next changed() is Err(Closed)
//!         assert_eq!(reader.await?, (vec!["starting", "running", "stopped"], 20));
//!         Ok(())
//!     })
//!     .unwrap();
//! ```
//!
//! # On the blocking backend
//!
//! A spawned task runs inline to completion. Sends and `borrow` work as anywhere; a
//! `changed()` returns at once when the version already moved (or the sender is gone), and a
//! spawned task that waits for a change its spawner would make never wakes: the run ends with
//! a [`RunError::Deadlock`](io_core::RunError::Deadlock) naming the `"watch changed"` park.

use std::cell::{Cell, Ref, RefCell};
use std::fmt;
use std::rc::Rc;

use io_core::{Canceled, Cx};

use crate::Notify;

/// A watch channel on `cx`'s backend holding `init`, which receivers count as seen.
///
/// ```
/// use sync::watch;
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let (tx, rx) = watch::channel(&cx, 1);
///         assert_eq!(*rx.borrow(), 1);
///         assert!(!rx.has_changed());
///         tx.send(2).unwrap();
///         assert!(rx.has_changed());
///         Ok(())
///     })
///     .unwrap();
/// ```
pub fn channel<T>(cx: &Cx, init: T) -> (Sender<T>, Receiver<T>) {
    let shared = Rc::new(Shared {
        changed: Notify::new(cx),
        value: RefCell::new(init),
        version: Cell::new(0),
        receivers: Cell::new(1),
        closed: Cell::new(false),
    });
    let receiver = Receiver {
        shared: shared.clone(),
        seen: 0,
    };
    (Sender { shared }, receiver)
}

struct Shared<T> {
    /// Wakes waiting receivers: a send, or the sender gone.
    changed: Notify,
    value: RefCell<T>,
    /// Bumped by every send.
    version: Cell<u64>,
    receivers: Cell<usize>,
    /// The sender is gone.
    closed: Cell<bool>,
}

impl<T> Shared<T> {
    fn bump(&self) {
        self.version.set(self.version.get() + 1);
        self.changed.notify_waiters();
    }
}

/// Why [`Receiver::changed`] saw no change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RecvError {
    /// The sender is gone and every value it sent has been seen: no change will come. The last
    /// value can still be borrowed.
    #[error("the watch sender is gone and its last value was seen; no change will come")]
    Closed,
    /// The task was canceled while it waited; nothing was marked seen.
    #[error("the waiting task was canceled; nothing was marked seen")]
    Canceled,
}

impl From<Canceled> for RecvError {
    fn from(_: Canceled) -> RecvError {
        RecvError::Canceled
    }
}

/// [`Sender::send`] found no receiver; the value comes back inside, and the channel kept its
/// old one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("every watch receiver is gone; the value is returned inside this error")]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

/// Replaces or changes the value; receivers see the change. Dropping it closes the channel.
pub struct Sender<T> {
    shared: Rc<Shared<T>>,
}

static_assertions::assert_not_impl_any!(Sender<u8>: Send, Sync);
static_assertions::assert_not_impl_any!(Receiver<u8>: Send, Sync);

impl<T> Sender<T> {
    /// Replaces the value and wakes the waiting receivers; `Err` (with `value`, the channel
    /// unchanged) if there is no receiver. Never waits.
    ///
    /// Panics if the value is borrowed ([`Receiver::borrow`] and its kin): do not hold a borrow
    /// across an `.await`.
    ///
    /// ```
    /// use sync::watch;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = watch::channel(&cx, 0);
    ///         tx.send(1).unwrap();
    ///         drop(rx);
    ///         assert_eq!(tx.send(2), Err(watch::SendError(2)));
    ///         assert_eq!(*tx.borrow(), 1);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.receivers.get() == 0 {
            return Err(SendError(value));
        }
        drop(self.send_replace(value));
        Ok(())
    }

    /// Replaces the value whether or not anyone receives, and gives the old one back.
    ///
    /// ```
    /// use sync::watch;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, _rx) = watch::channel(&cx, "old");
    ///         assert_eq!(tx.send_replace("new"), "old");
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn send_replace(&self, value: T) -> T {
        let old = self.shared.value.replace(value);
        self.shared.bump();
        old
    }

    /// Changes the value in place and wakes the waiting receivers, whether or not anyone
    /// receives.
    ///
    /// ```
    /// use sync::watch;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, mut rx) = watch::channel(&cx, vec![1]);
    ///         tx.send_modify(|v| v.push(2));
    ///         rx.changed().await.unwrap();
    ///         assert_eq!(*rx.borrow_and_update(), [1, 2]);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
        self.send_if_modified(|value| {
            modify(value);
            true
        });
    }

    /// Lets `modify` change the value in place; receivers see a change only if it returns
    /// `true` (which this returns).
    ///
    /// ```
    /// use sync::watch;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = watch::channel(&cx, 5);
    ///         assert!(!tx.send_if_modified(|n| std::mem::replace(n, 5) != 5));
    ///         assert!(!rx.has_changed());
    ///         assert!(tx.send_if_modified(|n| std::mem::replace(n, 6) != 6));
    ///         assert!(rx.has_changed());
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        let modified = modify(&mut self.shared.value.borrow_mut());
        if modified {
            self.shared.bump();
        }
        modified
    }

    /// The current value. Do not hold it across an `.await`: a send while it is held panics.
    ///
    /// ```
    /// use sync::watch;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, _rx) = watch::channel(&cx, 'a');
    ///         assert_eq!(*tx.borrow(), 'a');
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn borrow(&self) -> Ref<'_, T> {
        self.shared.value.borrow()
    }

    /// A new receiver that has seen the current value: its `changed()` waits for the next send.
    ///
    /// ```
    /// use sync::watch;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = watch::channel(&cx, 0);
    ///         drop(rx);
    ///         let late = tx.subscribe();
    ///         assert_eq!(tx.receiver_count(), 1);
    ///         tx.send(1).unwrap();
    ///         assert!(late.has_changed());
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn subscribe(&self) -> Receiver<T> {
        self.shared.receivers.set(self.shared.receivers.get() + 1);
        Receiver {
            shared: self.shared.clone(),
            seen: self.shared.version.get(),
        }
    }

    /// How many receivers there are.
    pub fn receiver_count(&self) -> usize {
        self.shared.receivers.get()
    }

    /// Whether every receiver is gone: [`send`](Sender::send) would fail.
    pub fn is_closed(&self) -> bool {
        self.receiver_count() == 0
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.closed.set(true);
        self.shared.changed.notify_waiters();
    }
}

impl<T: fmt::Debug> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("watch::Sender")
            .field("value", &self.shared.value.try_borrow().ok())
            .field("version", &self.shared.version.get())
            .field("receivers", &self.shared.receivers.get())
            .finish()
    }
}

/// Looks at the latest value and waits for changes. Cloning gives a receiver that has seen
/// what this one has.
pub struct Receiver<T> {
    shared: Rc<Shared<T>>,
    /// The version this receiver has seen.
    seen: u64,
}

impl<T> Receiver<T> {
    /// The current value, without marking it seen. Do not hold it across an `.await`: a send
    /// while it is held panics.
    pub fn borrow(&self) -> Ref<'_, T> {
        self.shared.value.borrow()
    }

    /// The current value, marked seen: `changed()` then waits for the next send.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        self.seen = self.shared.version.get();
        self.shared.value.borrow()
    }

    /// Whether a send came since this receiver last marked the value seen.
    pub fn has_changed(&self) -> bool {
        self.shared.version.get() != self.seen
    }

    /// Whether the sender is gone (the last value can still be borrowed, and a change not yet
    /// seen is still reported by `changed()`).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.get()
    }

    /// Waits for a send this receiver has not seen, and marks it seen (read it with
    /// [`borrow`](Receiver::borrow)).
    ///
    /// - `Ok(())`: the value changed since it was last seen (at once if it already had).
    /// - `Err(RecvError::Closed)`: the sender is gone and there is no unseen change.
    /// - `Err(RecvError::Canceled)`: the task was canceled; nothing is marked seen, so a
    ///   change that came meanwhile is still reported by the next `changed()`.
    ///
    /// ```
    /// use futures_lite::future;
    /// use sync::watch;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, mut rx) = watch::channel(&cx, 0);
    ///         let timed_out = future::or(async { rx.changed().await.is_ok() }, async {
    ///             cx.sleep(5).await.ok();
    ///             false
    ///         });
    ///         assert!(!timed_out.await); // no send in 5 ms
    ///         tx.send(1).unwrap();
    ///         rx.changed().await.unwrap();
    ///         tx.send(2).unwrap();
    ///         drop(tx);
    ///         rx.changed().await.unwrap(); // the unseen 2 comes before the close
    ///         assert_eq!(rx.changed().await, Err(watch::RecvError::Closed));
    ///         assert_eq!(*rx.borrow(), 2);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub async fn changed(&mut self) -> Result<(), RecvError> {
        let shared = &*self.shared;
        shared.changed.cx().check_cancel()?;
        loop {
            let version = shared.version.get();
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if shared.closed.get() {
                return Err(RecvError::Closed);
            }
            shared.changed.wait_as("watch changed").await?;
        }
    }

    /// Waits until the value satisfies `ready`, looking at the current value first; the value
    /// it accepted comes back, marked seen.
    ///
    /// ```
    /// use sync::watch;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, mut rx) = watch::channel(&cx, 0);
    ///         cx.spawn(move |cx| async move {
    ///             for n in 1..=5 {
    ///                 cx.sleep(10).await?;
    ///                 tx.send(n).ok();
    ///             }
    ///             Ok(())
    ///         })
    ///         .detach();
    ///         assert_eq!(*rx.wait_for(|n| *n >= 3).await.unwrap(), 3);
    ///         assert_eq!(cx.now_ms(), 30);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub async fn wait_for(
        &mut self,
        mut ready: impl FnMut(&T) -> bool,
    ) -> Result<Ref<'_, T>, RecvError> {
        loop {
            if ready(&self.borrow_and_update()) {
                break;
            }
            self.changed().await?;
        }
        Ok(self.shared.value.borrow())
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.set(self.shared.receivers.get() + 1);
        Receiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.set(self.shared.receivers.get() - 1);
    }
}

impl<T: fmt::Debug> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("watch::Receiver")
            .field("value", &self.shared.value.try_borrow().ok())
            .field("seen", &self.seen)
            .field("version", &self.shared.version.get())
            .finish()
    }
}
