//! Every value to every receiver: [`channel`] gives a [`Sender`] and a [`Receiver`]; more
//! receivers come from [`Sender::subscribe`], more senders from [`Sender::clone`].
//!
//! The channel keeps the last `capacity` values sent in a ring. A receiver gets every value
//! sent after it subscribed, in order, each as its own clone (the last receiver to read a value
//! takes it, without a clone). Sends never wait: when the ring is full, a send pushes out the
//! oldest value, and a receiver that had not read it yet is told on its next receive with
//! [`RecvError::Lagged`]`(n)` (`n` values it missed), after which it continues at the oldest
//! value still kept. A value every receiver has read is dropped at once.
//!
//! Cancel-safety: a receiver reads from the ring itself, nothing is handed to it. A `recv`
//! canceled (or dropped) as a value comes reads nothing, and the value stays for that
//! receiver's next `recv`.
//!
//! ```
//! use sync::broadcast::{self, RecvError};
//!
//! io_fiber::FiberIo::new()
//!     .run(|cx| async move {
//!         let (tx, mut rx1) = broadcast::channel(&cx, 16);
//!         let mut rx2 = tx.subscribe();
//!         let listen = |mut rx: broadcast::Receiver<u32>| {
//!             cx.spawn(move |_| async move {
//!                 let mut got = Vec::new();
//!                 loop {
//!                     match rx.recv().await {
//!                         Ok(n) => got.push(n),
//!                         Err(RecvError::Closed) => return Ok(got),
//!                         Err(_) => return Err(io_core::Canceled),
//!                     }
//!                 }
//!             })
//!         };
//!         let (one, two) = (listen(rx1), listen(rx2));
//!         for n in 1..=3 {
//!             tx.send(n).unwrap();
//!             cx.sleep(10).await?;
//!         }
//!         drop(tx); // the last sender: receivers drain, then see Closed
//!         assert_eq!(one.await?, [1, 2, 3]);
//!         assert_eq!(two.await?, [1, 2, 3]);
//!         Ok(())
//!     })
//!     .unwrap();
//! ```
//!
//! # On the blocking backend
//!
//! A spawned task runs inline to completion. Values sent before a receive are in the ring when
//! it comes, so a producer that runs first works (with a capacity that holds what it sends, or
//! the receiver lags). A spawned task that waits for a value only its spawner (or a later task)
//! would send never wakes: the run ends with a
//! [`RunError::Deadlock`](io_core::RunError::Deadlock) naming the `"broadcast recv"` park.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use io_core::{Canceled, Cx};

use crate::Notify;

/// The largest capacity a broadcast channel takes (`usize::MAX >> 1`, as tokio's): a bound,
/// not an allocation, since the ring grows only as values are kept. A capacity above it is a
/// bug in the caller, and [`channel`] panics on it.
pub const MAX_CAPACITY: usize = usize::MAX >> 1;

/// How many slots a new ring allocates at most: it grows from there as values are kept, so a
/// large capacity costs nothing until it is used.
const PREALLOCATED: usize = 16;

/// A broadcast channel on `cx`'s backend keeping up to `capacity` values for slow receivers.
///
/// `capacity` bounds the ring; only a few slots are allocated up front, and it grows as values
/// are kept, so a generous capacity costs memory only for values actually kept.
///
/// # Panics
///
/// If `capacity` is 0 (a value must be kept somewhere until receivers read it), or above
/// [`MAX_CAPACITY`].
///
/// ```
/// use sync::broadcast::{self, TryRecvError};
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let (tx, mut rx) = broadcast::channel(&cx, 2);
///         for n in 1..=5 {
///             tx.send(n).unwrap(); // never waits: 1, 2 and 3 are pushed out
///         }
///         assert_eq!(rx.try_recv(), Err(TryRecvError::Lagged(3)));
///         assert_eq!(rx.try_recv(), Ok(4));
///         assert_eq!(rx.try_recv(), Ok(5));
///         assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
///         Ok(())
///     })
///     .unwrap();
/// ```
pub fn channel<T: Clone>(cx: &Cx, capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "a broadcast channel needs a capacity of 1 or more"
    );
    assert!(
        capacity <= MAX_CAPACITY,
        "a broadcast channel's capacity is at most broadcast::MAX_CAPACITY ({MAX_CAPACITY}), \
         not {capacity}"
    );
    let shared = Rc::new(Shared {
        sent: Notify::new(cx),
        state: RefCell::new(State {
            ring: VecDeque::with_capacity(capacity.min(PREALLOCATED)),
            head: 0,
            capacity,
            senders: 1,
            receivers: 1,
        }),
    });
    let receiver = Receiver {
        shared: shared.clone(),
        next: 0,
    };
    (Sender { shared }, receiver)
}

struct Shared<T> {
    /// Wakes waiting receivers: a value sent, or the last sender gone.
    sent: Notify,
    state: RefCell<State<T>>,
}

struct State<T> {
    /// The values kept, oldest first.
    ring: VecDeque<Slot<T>>,
    /// The sequence number of `ring[0]`; values are numbered from 0 in sending order.
    head: u64,
    capacity: usize,
    senders: usize,
    receivers: usize,
}

struct Slot<T> {
    value: T,
    /// Receivers that were subscribed when it was sent and have not read it.
    unread: usize,
}

impl<T> State<T> {
    /// The sequence number the next send gets.
    fn tail(&self) -> u64 {
        self.head + self.ring.len() as u64
    }

    /// Drops the oldest values nobody still has to read, into `garbage`.
    fn release_read(&mut self, garbage: &mut Vec<T>) {
        while self.ring.front().is_some_and(|slot| slot.unread == 0) {
            let slot = self.ring.pop_front().expect("a front slot");
            self.head += 1;
            garbage.push(slot.value);
        }
    }
}

/// Why [`Receiver::recv`] gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RecvError {
    /// Every sender is gone and this receiver has read all that was kept for it.
    #[error("every broadcast sender is gone and all kept values were read; none will come")]
    Closed,
    /// This receiver fell behind: this many values were pushed out of the ring before it read
    /// them. Its next receive gives the oldest value still kept.
    #[error("the receiver fell behind and missed {0} values; it continues at the oldest kept")]
    Lagged(u64),
    /// The task was canceled while it waited; nothing was read.
    #[error("the receiving task was canceled; nothing was read")]
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
    /// Nothing new for this receiver yet: `recv` would wait.
    #[error("no new value for this receiver; recv would wait")]
    Empty,
    /// Every sender is gone and this receiver has read all that was kept for it.
    #[error("every broadcast sender is gone and all kept values were read; none will come")]
    Closed,
    /// This receiver missed this many values (see [`RecvError::Lagged`]).
    #[error("the receiver fell behind and missed {0} values; it continues at the oldest kept")]
    Lagged(u64),
}

/// [`Sender::send`] found no receiver; the value comes back inside.
#[derive(Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("every broadcast receiver is gone; the value is returned inside this error")]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

/// Sends values to every receiver. Clone it for more senders; the channel closes when the last
/// one is dropped.
pub struct Sender<T> {
    shared: Rc<Shared<T>>,
}

static_assertions::assert_not_impl_any!(Sender<u8>: Send, Sync);
static_assertions::assert_not_impl_any!(Receiver<u8>: Send, Sync);

impl<T> Sender<T> {
    /// Sends `value` to every receiver subscribed now, without waiting: `Ok(n)`, the number of
    /// receivers it is kept for, or `Err` with the value if there is none. A full ring pushes
    /// out its oldest value (receivers that had not read it will be told they lagged).
    ///
    /// ```
    /// use sync::broadcast;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = broadcast::channel(&cx, 4);
    ///         let _rx2 = tx.subscribe();
    ///         assert_eq!(tx.send("hi"), Ok(2));
    ///         drop(rx);
    ///         assert_eq!(tx.send("again"), Ok(1));
    ///         drop(_rx2);
    ///         assert_eq!(tx.send("nobody"), Err(broadcast::SendError("nobody")));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn send(&self, value: T) -> Result<usize, SendError<T>> {
        let (pushed_out, receivers) = {
            let mut state = self.shared.state.borrow_mut();
            let receivers = state.receivers;
            if receivers == 0 {
                return Err(SendError(value));
            }
            let pushed_out = if state.ring.len() == state.capacity {
                state.head += 1;
                state.ring.pop_front()
            } else {
                None
            };
            state.ring.push_back(Slot {
                value,
                unread: receivers,
            });
            (pushed_out, receivers)
        };
        // Dropped outside the borrow: a value's drop may use the channel.
        drop(pushed_out);
        self.shared.sent.notify_waiters();
        Ok(receivers)
    }

    /// A new receiver, which gets every value sent from now on (not those kept already).
    ///
    /// ```
    /// use sync::broadcast;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, mut early) = broadcast::channel(&cx, 4);
    ///         tx.send(1).unwrap();
    ///         let mut late = tx.subscribe();
    ///         tx.send(2).unwrap();
    ///         assert_eq!(early.try_recv(), Ok(1));
    ///         assert_eq!(late.try_recv(), Ok(2));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn subscribe(&self) -> Receiver<T> {
        subscribe(&self.shared)
    }

    /// How many receivers there are.
    pub fn receiver_count(&self) -> usize {
        self.shared.state.borrow().receivers
    }

    /// How many values are kept for receivers that have not read them all.
    pub fn len(&self) -> usize {
        self.shared.state.borrow().ring.len()
    }

    /// Whether no value is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn subscribe<T>(shared: &Rc<Shared<T>>) -> Receiver<T> {
    let mut state = shared.state.borrow_mut();
    state.receivers += 1;
    Receiver {
        shared: shared.clone(),
        next: state.tail(),
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.state.borrow_mut().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.state.borrow_mut();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.shared.sent.notify_waiters();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.borrow();
        f.debug_struct("broadcast::Sender")
            .field("kept", &state.ring.len())
            .field("capacity", &state.capacity)
            .field("receivers", &state.receivers)
            .finish()
    }
}

/// Receives every value sent after it subscribed, in order.
pub struct Receiver<T> {
    shared: Rc<Shared<T>>,
    /// The sequence number of the next value it reads.
    next: u64,
}

impl<T: Clone> Receiver<T> {
    /// Waits for the next value.
    ///
    /// - `Ok(value)`: the next value sent after this receiver subscribed.
    /// - `Err(RecvError::Lagged(n))`: `n` values were pushed out before this receiver read
    ///   them; the next receive gives the oldest value still kept.
    /// - `Err(RecvError::Closed)`: every sender is gone and everything kept for this receiver
    ///   was read.
    /// - `Err(RecvError::Canceled)`: the task was canceled; nothing was read, and a value that
    ///   came meanwhile is the next receive's. Dropping the future reads nothing either.
    ///
    /// ```
    /// use sync::broadcast;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, mut rx) = broadcast::channel(&cx, 1);
    ///         cx.spawn(move |cx| async move {
    ///             cx.sleep(15).await?;
    ///             tx.send("tick").ok();
    ///             Ok(())
    ///         })
    ///         .detach();
    ///         assert_eq!(rx.recv().await, Ok("tick"));
    ///         assert_eq!(cx.now_ms(), 15);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        self.shared.sent.cx().check_cancel()?;
        // A receive that finds its value (or its answer) at once spends a unit of the task's
        // budget; one that waits gives it back.
        let mut unit =
            Some(std::future::poll_fn(|task| self.shared.sent.cx().poll_budget(task)).await?);
        loop {
            let received = match self.try_recv() {
                Ok(value) => Ok(value),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
                Err(TryRecvError::Empty) => {
                    drop(unit.take());
                    self.shared.sent.wait_as("broadcast recv").await?;
                    continue;
                }
            };
            if let Some(unit) = unit {
                unit.spend();
            }
            return received;
        }
    }

    /// The next value if there is one, without waiting.
    ///
    /// ```
    /// use sync::broadcast::{self, TryRecvError};
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, mut rx) = broadcast::channel(&cx, 2);
    ///         assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    ///         tx.send(7).unwrap();
    ///         drop(tx);
    ///         assert_eq!(rx.try_recv(), Ok(7)); // kept values outlive the senders
    ///         assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        // First the value, cloned before anything is marked read and under a shared borrow: a
        // `Clone` that panics leaves the value unread (this receiver gets it next time), and
        // one that reads the channel can. Nothing can change the channel meanwhile (changing
        // it takes the borrow mutably), so the slot is still there to mark read after.
        let cloned = {
            let state = self.shared.state.borrow();
            if self.next < state.head {
                let missed = state.head - self.next;
                self.next = state.head;
                return Err(TryRecvError::Lagged(missed));
            }
            let index = (self.next - state.head) as usize;
            match state.ring.get(index) {
                // The last reader of the oldest value takes it, without a clone.
                Some(slot) if slot.unread == 1 && index == 0 => None,
                Some(slot) => Some(slot.value.clone()),
                None if state.senders == 0 => return Err(TryRecvError::Closed),
                None => return Err(TryRecvError::Empty),
            }
        };
        let mut garbage = Vec::new();
        let value = {
            let mut state = self.shared.state.borrow_mut();
            let state = &mut *state;
            let index = (self.next - state.head) as usize;
            self.next += 1;
            let value = match cloned {
                Some(value) => {
                    state.ring[index].unread -= 1;
                    value
                }
                None => {
                    state.head += 1;
                    state.ring.pop_front().expect("the slot just read").value
                }
            };
            state.release_read(&mut garbage);
            value
        };
        drop(garbage);
        Ok(value)
    }
}

impl<T> Receiver<T> {
    /// A new receiver on the same channel, which gets every value sent from now on.
    ///
    /// ```
    /// use sync::broadcast;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = broadcast::channel(&cx, 2);
    ///         tx.send(1).unwrap();
    ///         let mut again = rx.resubscribe();
    ///         tx.send(2).unwrap();
    ///         assert_eq!(again.try_recv(), Ok(2));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn resubscribe(&self) -> Receiver<T> {
        subscribe(&self.shared)
    }

    /// How many values are kept that this receiver has not read (values it lagged past are
    /// not counted).
    pub fn len(&self) -> usize {
        let state = self.shared.state.borrow();
        (state.tail() - self.next.max(state.head)) as usize
    }

    /// Whether there is nothing kept for this receiver to read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut garbage = Vec::new();
        {
            let mut state = self.shared.state.borrow_mut();
            state.receivers -= 1;
            let from = self.next.max(state.head) - state.head;
            for slot in state.ring.iter_mut().skip(from as usize) {
                slot.unread -= 1;
            }
            state.release_read(&mut garbage);
        }
        drop(garbage);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::Receiver")
            .field("next", &self.next)
            .field("unread", &self.len())
            .finish()
    }
}
