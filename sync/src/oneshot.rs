//! A channel for one value, sent once: [`channel`] gives a [`Sender`] and a [`Receiver`].
//!
//! The value waits in the channel until the receiver takes it, so no cancel can lose it: a
//! receiver canceled as the value arrives gets it (completion wins, the cancel comes at the
//! task's next suspend point); a `recv` future dropped before it returned (a timeout won a
//! race), or a `recv` of a task canceled before it began, leaves the value where it is, for a
//! later `recv` or [`try_recv`](Receiver::try_recv) on the same receiver.
//!
//! ```
//! use sync::oneshot;
//!
//! io_fiber::FiberIo::new()
//!     .run(|cx| async move {
//!         let (tx, mut rx) = oneshot::channel(&cx);
//!         cx.spawn(move |cx| async move {
//!             cx.sleep(40).await?;
//!             tx.send("answer").ok();
//!             Ok(())
//!         })
//!         .detach();
//!         assert_eq!(rx.recv().await, Ok("answer"));
//!         assert_eq!(cx.now_ms(), 40);
//!         Ok(())
//!     })
//!     .unwrap();
//! ```
//!
//! # On the blocking backend
//!
//! A spawned task runs inline to completion, so a value sent by a spawned task is there when
//! the spawner receives: that works. A spawned task that waits for a value only its spawner (or
//! a later task) sends never wakes; the run ends with a
//! [`RunError::Deadlock`](io_core::RunError::Deadlock) naming the `"oneshot recv"` park.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use io_core::{Canceled, Cx};

use crate::Notify;

/// A one-value channel on `cx`'s backend.
///
/// ```
/// use sync::oneshot::{self, RecvError};
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let (tx, mut rx) = oneshot::channel::<u32>(&cx);
///         drop(tx); // the sender gone without sending
///         assert_eq!(rx.recv().await, Err(RecvError::Closed));
///         Ok(())
///     })
///     .unwrap();
/// ```
pub fn channel<T>(cx: &Cx) -> (Sender<T>, Receiver<T>) {
    let shared = Rc::new(Shared {
        changed: Notify::new(cx),
        state: RefCell::new(State {
            value: None,
            sender: true,
            receiver: true,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    /// Wakes the receiver: a value came, or the sender left.
    changed: Notify,
    state: RefCell<State<T>>,
}

struct State<T> {
    /// Sent and not yet received.
    value: Option<T>,
    /// The sender has not been used or dropped.
    sender: bool,
    /// The receiver is neither dropped nor closed: a send is accepted.
    receiver: bool,
}

/// Why [`Receiver::recv`] gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RecvError {
    /// The sender was dropped without sending, or the value was received already.
    #[error("the oneshot sender is gone and no value is waiting; none will come")]
    Closed,
    /// The receiving task was canceled before the value came; a value that comes later waits
    /// for a later receive on the same receiver.
    #[error("the receiving task was canceled before the value came; it stays for a later recv")]
    Canceled,
}

impl From<Canceled> for RecvError {
    fn from(_: Canceled) -> RecvError {
        RecvError::Canceled
    }
}

/// Why [`Receiver::try_recv`] gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TryRecvError {
    /// No value yet, and the sender may still send one: `recv` would wait.
    #[error("no value yet; recv would wait")]
    Empty,
    /// The sender was dropped without sending, or the value was received already.
    #[error("the oneshot sender is gone and no value is waiting; none will come")]
    Closed,
}

/// Sends the channel's one value; [`send`](Sender::send) consumes it.
pub struct Sender<T> {
    shared: Rc<Shared<T>>,
}

static_assertions::assert_not_impl_any!(Sender<u8>: Send, Sync);
static_assertions::assert_not_impl_any!(Receiver<u8>: Send, Sync);

impl<T> Sender<T> {
    /// Sends `value`, without waiting: `Ok` once it is in the channel for the receiver,
    /// `Err(value)` if the receiver was dropped or [closed](Receiver::close).
    ///
    /// ```
    /// use sync::oneshot;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = oneshot::channel(&cx);
    ///         drop(rx);
    ///         assert_eq!(tx.send(5), Err(5)); // nobody to receive it: given back
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn send(self, value: T) -> Result<(), T> {
        let mut state = self.shared.state.borrow_mut();
        if !state.receiver {
            return Err(value);
        }
        state.value = Some(value);
        // Dropping `self` wakes the receiver.
        Ok(())
    }

    /// Whether the receiver is gone (dropped or closed): a send would fail.
    ///
    /// ```
    /// use sync::oneshot;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, mut rx) = oneshot::channel::<()>(&cx);
    ///         assert!(!tx.is_closed());
    ///         rx.close();
    ///         assert!(tx.is_closed());
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn is_closed(&self) -> bool {
        !self.shared.state.borrow().receiver
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.state.borrow_mut().sender = false;
        self.shared.changed.notify_waiters();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Sender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Receives the channel's one value.
pub struct Receiver<T> {
    shared: Rc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// Waits for the value.
    ///
    /// - `Ok(value)`: it was sent. If it came as the task was canceled, it is still returned
    ///   (completion wins) and the cancel comes at the task's next suspend point.
    /// - `Err(RecvError::Closed)`: the sender was dropped without sending, or the value was
    ///   received already.
    /// - `Err(RecvError::Canceled)`: the task was canceled first. Nothing is taken: a value
    ///   sent later stays for a later `recv` (say, in a [`shield`](io_core::Cx::shield)) or
    ///   `try_recv`.
    ///
    /// Dropping the future before it returns leaves the value in the channel.
    ///
    /// ```
    /// use futures_lite::future;
    /// use sync::oneshot;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, mut rx) = oneshot::channel(&cx);
    ///         let gave_up = future::or(async { rx.recv().await.ok() }, async {
    ///             cx.sleep(10).await.ok();
    ///             None
    ///         });
    ///         assert_eq!(gave_up.await, None); // nothing in 10 ms
    ///         tx.send('x').unwrap();
    ///         assert_eq!(rx.recv().await, Ok('x')); // the same receiver, later
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        self.shared.changed.cx().check_cancel()?;
        loop {
            match self.try_recv() {
                Ok(value) => return Ok(value),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
                Err(TryRecvError::Empty) => {}
            }
            if let Err(Canceled) = self.shared.changed.wait_as("oneshot recv").await {
                // A value that came with the cancel is the receive's (completion wins).
                return self.try_recv().map_err(|_| RecvError::Canceled);
            }
        }
    }

    /// Takes the value if it is here, without waiting.
    ///
    /// ```
    /// use sync::oneshot::{self, TryRecvError};
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, mut rx) = oneshot::channel(&cx);
    ///         assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    ///         tx.send(1).unwrap();
    ///         assert_eq!(rx.try_recv(), Ok(1));
    ///         assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.state.borrow_mut();
        match state.value.take() {
            Some(value) => Ok(value),
            None if state.sender => Err(TryRecvError::Empty),
            None => Err(TryRecvError::Closed),
        }
    }

    /// Refuses the value from now on: a later [`send`](Sender::send) gives it back. A value
    /// sent before the close can still be received.
    ///
    /// ```
    /// use sync::oneshot;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, mut rx) = oneshot::channel(&cx);
    ///         rx.close();
    ///         assert_eq!(tx.send("late"), Err("late"));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn close(&mut self) {
        self.shared.state.borrow_mut().receiver = false;
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let value = {
            let mut state = self.shared.state.borrow_mut();
            state.receiver = false;
            state.value.take()
        };
        // Dropped outside the borrow: a value's drop may use the channel.
        drop(value);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.borrow();
        f.debug_struct("oneshot::Receiver")
            .field("value_waiting", &state.value.is_some())
            .field("sender", &state.sender)
            .finish()
    }
}
