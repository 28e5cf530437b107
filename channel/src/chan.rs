//! The channel: shared state, the two handles, and the send and receive futures.
//!
//! Everything happens under one `RefCell` borrow per operation and nothing in it awaits, so each
//! operation is atomic with respect to every other task of the backend (backends are
//! single-threaded). Waiting goes through the protocol only: a [`Wait`]'s park, suspended on
//! with [`Io::suspend_raw`](io_core::Io::suspend_raw) and readied with [`Cx::ready`].

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_core::Stream;
use io_core::{Canceled, Cx};

use crate::queue::WaitQueue;
use crate::wait::{Alarm, Spare, Waiter};
use crate::{RecvError, SendError, TryRecvError, TrySendError};

/// A channel with room for `capacity` buffered values; `bounded(cx, 0)` is a rendezvous.
///
/// On a rendezvous channel a send completes only once a receiver has taken the value: it is
/// handed straight from the sender to a waiting receiver, never parked in a buffer.
///
/// ```
/// use channel::RecvError;
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let (tx, rx) = channel::bounded(&cx, 0);
///         let receiver = cx.spawn(move |cx| async move {
///             cx.sleep(50).await?;
///             Ok(rx.recv().await)
///         });
///         tx.send("ping").await.unwrap(); // waits for the receiver...
///         assert_eq!(cx.now_ms(), 50); // ...which came at t = 50
///         assert_eq!(receiver.await?, Ok("ping"));
///         Ok(())
///     })
///     .unwrap();
/// ```
pub fn bounded<T>(cx: &Cx, capacity: usize) -> (Sender<T>, Receiver<T>) {
    channel(cx, Some(capacity))
}

/// A channel whose buffer grows as needed: sends never wait.
///
/// ```
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let (tx, rx) = channel::unbounded(&cx);
///         for n in 0..1000 {
///             tx.try_send(n).unwrap();
///         }
///         assert_eq!(rx.len(), 1000);
///         assert_eq!(rx.recv().await, Ok(0));
///         Ok(())
///     })
///     .unwrap();
/// ```
pub fn unbounded<T>(cx: &Cx) -> (Sender<T>, Receiver<T>) {
    channel(cx, None)
}

fn channel<T>(cx: &Cx, capacity: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let core = Rc::new(Core {
        cx: cx.clone(),
        capacity,
        state: RefCell::new(State {
            buffer: VecDeque::new(),
            senders: WaitQueue::new(),
            receivers: WaitQueue::new(),
            watchers: WaitQueue::new(),
            timed: BTreeMap::new(),
            next_timed: 0,
            sender_handles: 1,
            receiver_handles: 1,
            closed: false,
            garbage: Vec::new(),
            spare_sender: Spare::new(),
            spare_receiver: Spare::new(),
            spare_watcher: Spare::new(),
        }),
    });
    (Sender { core: core.clone() }, Receiver { core, next: None })
}

/// What both handles share.
pub(crate) struct Core<T> {
    pub(crate) cx: Cx,
    /// `None`: unbounded.
    capacity: Option<usize>,
    state: RefCell<State<T>>,
}

pub(crate) struct State<T> {
    buffer: VecDeque<T>,
    /// Senders waiting for a receiver or for room, oldest first; each holds its value.
    senders: WaitQueue<T>,
    /// Receivers waiting for a value handed to them (`recv`, select cases), oldest first. They
    /// only wait while nothing is buffered and no sender waits.
    receivers: WaitQueue<T>,
    /// Streams waiting in `poll_next`: never handed a value (a `next()` future may be dropped
    /// without a word to its receiver), only woken when one becomes available to take.
    watchers: WaitQueue<T>,
    /// Messages armed by `send_after`, by (deadline, arming order).
    timed: BTreeMap<(u64, u64), T>,
    next_timed: u64,
    sender_handles: usize,
    receiver_handles: usize,
    closed: bool,
    /// Values to drop once the state is no longer borrowed: a value's drop may touch channels.
    garbage: Vec<T>,
    /// The waiters of the last finished `send`, `recv` and stream receive, for the next ones.
    spare_sender: Spare<T>,
    spare_receiver: Spare<T>,
    spare_watcher: Spare<T>,
}

impl<T> State<T> {
    /// Where a finished receive of `kind` keeps its waiter.
    fn spare(&mut self, kind: RecvKind) -> &mut Spare<T> {
        match kind {
            RecvKind::HandOff => &mut self.spare_receiver,
            RecvKind::Watch => &mut self.spare_watcher,
        }
    }
}

/// Names one message armed by `send_after` on its channel.
pub(crate) type TimedKey = (u64, u64);

/// The instant a channel operation moves due timed messages in at.
///
/// A check and the action it decides share one: a select reads the clock once per look at its
/// cases, so a send case it found ready finds the same room when it sends. With a reading per
/// step, a timed message falling due in between (a real clock moves) filled the buffer after
/// the check had seen room.
#[derive(Clone, Copy, Debug)]
pub(crate) enum At {
    /// Reads the clock, if a timed message is pending at all (most operations have none, and
    /// skip the reading).
    Now,
    /// A reading already taken.
    Ms(u64),
}

/// Why a send does not complete now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Refused {
    Full,
    Closed,
}

/// Where a send's value goes.
enum Destination<T> {
    /// The oldest waiting receiver, which the value completes.
    Receiver(Rc<Waiter<T>>),
    Buffer,
}

impl<T> Core<T> {
    /// Runs `f` on the state, then drops what it discarded, outside the borrow.
    pub(crate) fn lock<R>(&self, f: impl FnOnce(&mut State<T>) -> R) -> R {
        let mut state = self.state.borrow_mut();
        let result = f(&mut state);
        if state.garbage.is_empty() {
            return result;
        }
        let garbage = std::mem::take(&mut state.garbage);
        drop(state);
        drop(garbage);
        result
    }

    fn has_room(&self, st: &State<T>) -> bool {
        self.capacity
            .is_none_or(|capacity| st.buffer.len() < capacity)
    }

    /// Hands `value` to the oldest receiver still waiting; gives it back if there is none.
    fn hand_to_receiver(&self, st: &mut State<T>, value: T) -> Result<(), T> {
        match Self::waiting_receiver(st) {
            Some(waiter) => {
                self.hand(&waiter, value);
                Ok(())
            }
            None => Err(value),
        }
    }

    /// Takes the oldest receiver still waiting off the queue. Waiters of a select that another
    /// case already completed are dropped on the way.
    fn waiting_receiver(st: &mut State<T>) -> Option<Rc<Waiter<T>>> {
        while let Some(waiter) = st.receivers.pop_front() {
            if waiter.wait.is_open() {
                return Some(waiter);
            }
        }
        None
    }

    /// Puts `value` in a receiver's slot, which completes its receive.
    fn hand(&self, waiter: &Waiter<T>, value: T) {
        *waiter.slot.borrow_mut() = Some(value);
        waiter.wait.complete(&self.cx, waiter.case);
    }

    /// Takes the value of the oldest sender still waiting, which completes its send.
    fn take_from_sender(&self, st: &mut State<T>) -> Option<T> {
        while let Some(waiter) = st.senders.pop_front() {
            if waiter.wait.is_open() {
                let value = waiter.slot.borrow_mut().take();
                waiter.wait.complete(&self.cx, waiter.case);
                return value;
            }
        }
        None
    }

    /// Moves the timed messages whose deadline has come into the channel, in deadline order,
    /// as if sent at their deadline. A timer never waits for room: its message may take the
    /// buffer past its capacity, as a mailbox would.
    #[inline]
    pub(crate) fn promote_due(&self, st: &mut State<T>, at: At) {
        if !st.timed.is_empty() {
            self.promote_due_now(st, at);
        }
    }

    /// [`promote_due`](Self::promote_due) once there are timed messages.
    #[cold]
    fn promote_due_now(&self, st: &mut State<T>, at: At) {
        let now = match at {
            At::Now => self.cx.now_ms(),
            At::Ms(now) => now,
        };
        while let Some(entry) = st.timed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let value = entry.remove();
            if let Err(value) = self.hand_to_receiver(st, value) {
                st.buffer.push_back(value);
                self.nudge_watchers(st);
            }
        }
        self.close_if_unreachable(st);
    }

    pub(crate) fn try_send(
        &self,
        st: &mut State<T>,
        value: T,
        at: At,
    ) -> Result<(), TrySendError<T>> {
        match self.destination(st, at) {
            Ok(destination) => {
                self.deliver(st, destination, value);
                Ok(())
            }
            Err(Refused::Full) => Err(TrySendError::Full(value)),
            Err(Refused::Closed) => Err(TrySendError::Closed(value)),
        }
    }

    /// [`try_send`](Self::try_send) of the value in `slot`, which must hold one. The value
    /// leaves the slot only once it has somewhere to go: on `Full` or `Closed` it is still
    /// there, and no step in between can drop it.
    pub(crate) fn try_send_from(
        &self,
        st: &mut State<T>,
        slot: &mut Option<T>,
        at: At,
    ) -> Result<(), Refused> {
        let destination = self.destination(st, at)?;
        let value = slot.take().expect("try_send_from is given a value to send");
        self.deliver(st, destination, value);
        Ok(())
    }

    /// Where a send would put its value now: the oldest waiting receiver (taken off the
    /// queue), else the buffer if it has room.
    fn destination(&self, st: &mut State<T>, at: At) -> Result<Destination<T>, Refused> {
        self.promote_due(st, at);
        if st.closed {
            return Err(Refused::Closed);
        }
        match Self::waiting_receiver(st) {
            Some(waiter) => Ok(Destination::Receiver(waiter)),
            None if self.has_room(st) => Ok(Destination::Buffer),
            None => Err(Refused::Full),
        }
    }

    fn deliver(&self, st: &mut State<T>, destination: Destination<T>, value: T) {
        match destination {
            Destination::Receiver(waiter) => self.hand(&waiter, value),
            Destination::Buffer => {
                st.buffer.push_back(value);
                self.nudge_watchers(st);
            }
        }
    }

    pub(crate) fn try_recv(&self, st: &mut State<T>, at: At) -> Result<T, TryRecvError> {
        self.promote_due(st, at);
        self.take_available(st)
    }

    /// [`try_recv`](Self::try_recv) without promoting due timed messages.
    fn take_available(&self, st: &mut State<T>) -> Result<T, TryRecvError> {
        if let Some(value) = st.buffer.pop_front() {
            // Room was made: the oldest waiting sender's value moves in, completing its send.
            if self.has_room(st) {
                if let Some(next) = self.take_from_sender(st) {
                    st.buffer.push_back(next);
                }
            }
            return Ok(value);
        }
        if let Some(value) = self.take_from_sender(st) {
            return Ok(value);
        }
        if st.closed {
            Err(TryRecvError::Closed)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// Whether a receive would complete now (with a value, or with `Closed`).
    pub(crate) fn recv_ready(&self, st: &mut State<T>, at: At) -> bool {
        self.promote_due(st, at);
        Self::recv_available(st)
    }

    /// [`recv_ready`](Self::recv_ready) without promoting due timed messages.
    fn recv_available(st: &State<T>) -> bool {
        !st.buffer.is_empty() || st.closed || st.senders.iter().any(|w| w.wait.is_open())
    }

    /// Whether a send would complete now (delivered, or refused with `Closed`).
    pub(crate) fn send_ready(&self, st: &mut State<T>, at: At) -> bool {
        self.promote_due(st, at);
        st.closed || self.has_room(st) || st.receivers.iter().any(|w| w.wait.is_open())
    }

    /// Queues a sender holding its value; waiting streams are woken to come and take it.
    pub(crate) fn wait_to_send(&self, st: &mut State<T>, waiter: &Rc<Waiter<T>>) {
        st.senders.push_back(waiter.clone());
        self.nudge_watchers(st);
    }

    /// Queues a receiver for a value to be handed to it.
    pub(crate) fn wait_to_recv(&self, st: &mut State<T>, waiter: &Rc<Waiter<T>>) {
        st.receivers.push_back(waiter.clone());
    }

    /// What a waiting receiver does when woken with nothing handed to it (a timer came due, a
    /// timed message was armed or canceled, the channel closed): it looks again *without
    /// leaving its place in the queue*. Due timed messages move in first, going to the oldest
    /// waiting receivers (perhaps this one). `None`: nothing for it yet, wait on. A receive
    /// that ends here has left the queue.
    fn look_again(
        &self,
        st: &mut State<T>,
        waiter: &Rc<Waiter<T>>,
        kind: RecvKind,
    ) -> Option<Result<T, RecvError>> {
        self.promote_due(st, At::Now);
        let handed = waiter.slot.borrow_mut().take();
        let outcome = match handed {
            Some(value) => Ok(value),
            None if Self::recv_available(st) => match self.take_available(st) {
                Ok(value) => Ok(value),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
                Err(TryRecvError::Empty) => return None,
            },
            None => return None,
        };
        self.unqueue_receiver(st, waiter, kind);
        Some(outcome)
    }

    fn unqueue_receiver(&self, st: &mut State<T>, waiter: &Rc<Waiter<T>>, kind: RecvKind) {
        match kind {
            RecvKind::HandOff => st.receivers.remove(waiter),
            RecvKind::Watch => st.watchers.remove(waiter),
        }
    }

    /// Takes a sender's waiter off the queue; the value it still holds (if no receiver took it)
    /// goes back to the caller.
    pub(crate) fn stop_sending(&self, st: &mut State<T>, waiter: &Rc<Waiter<T>>) -> Option<T> {
        st.senders.remove(waiter);
        waiter.slot.borrow_mut().take()
    }

    /// Takes a receiver's waiter off the queue. A value a sender handed to it but that it will
    /// not return (its future was dropped) goes to the next waiting receiver, else back to the
    /// front of the buffer — past the capacity if need be, even on a rendezvous channel: nothing
    /// handed over is ever lost.
    pub(crate) fn stop_receiving(&self, st: &mut State<T>, waiter: &Rc<Waiter<T>>) {
        self.unqueue_receiver(st, waiter, RecvKind::HandOff);
        let handed = waiter.slot.borrow_mut().take();
        if let Some(value) = handed {
            if let Err(value) = self.hand_to_receiver(st, value) {
                st.buffer.push_front(value);
                self.nudge_watchers(st);
            }
        }
    }

    /// The earliest deadline among the timed messages, for waiting receivers' alarms.
    pub(crate) fn next_timed(&self, st: &State<T>) -> Option<u64> {
        st.timed.keys().next().map(|&(deadline, _)| deadline)
    }

    /// Arms a timed message; `None` (and the message dropped) if the channel is closed.
    pub(crate) fn arm_timed(&self, st: &mut State<T>, deadline: u64, value: T) -> Option<TimedKey> {
        if st.closed {
            st.garbage.push(value);
            return None;
        }
        let key = (deadline, st.next_timed);
        st.next_timed += 1;
        let earliest = st.timed.keys().next().is_none_or(|first| key < *first);
        st.timed.insert(key, value);
        if earliest {
            self.nudge_waiting_receivers(st);
        }
        Some(key)
    }

    /// Cancels a timed message: the milliseconds it had left, or `None` if its deadline has
    /// come (its message is delivered, or will be at the channel's next operation) or it is
    /// gone (canceled, or its channel closed).
    pub(crate) fn cancel_timed(&self, st: &mut State<T>, key: TimedKey) -> Option<u64> {
        let now = self.cx.now_ms();
        if key.0 <= now {
            return None;
        }
        let was_earliest = st.timed.keys().next() == Some(&key);
        let value = st.timed.remove(&key)?;
        st.garbage.push(value);
        if was_earliest {
            self.nudge_waiting_receivers(st);
        }
        self.close_if_unreachable(st);
        Some(if key.0 == u64::MAX {
            u64::MAX
        } else {
            key.0 - now
        })
    }

    /// Waiting receivers look again (their alarms follow the earliest timed message). They
    /// keep their places in the queue.
    fn nudge_waiting_receivers(&self, st: &State<T>) {
        for waiter in st.receivers.iter() {
            waiter.wait.nudge(&self.cx);
        }
        self.nudge_watchers(st);
    }

    /// A value became available to take (buffered, or held by a waiting sender): every waiting
    /// stream looks. All of them, because any may belong to a `next()` that was dropped.
    fn nudge_watchers(&self, st: &State<T>) {
        for waiter in st.watchers.iter() {
            waiter.wait.nudge(&self.cx);
        }
    }

    /// With no sender left and no timer pending, nothing can ever send again.
    fn close_if_unreachable(&self, st: &mut State<T>) {
        if st.sender_handles == 0 && st.timed.is_empty() {
            self.close(st);
        }
    }

    /// Closes the channel. Buffered values stay receivable; waiting senders wake and get their
    /// values back; waiting receivers wake and find it closed; pending timers are dropped.
    pub(crate) fn close(&self, st: &mut State<T>) -> bool {
        if st.closed {
            return false;
        }
        st.closed = true;
        let timed = std::mem::take(&mut st.timed);
        st.garbage.extend(timed.into_values());
        for waiter in st.senders.drain().chain(st.receivers.drain()) {
            if waiter.wait.is_open() {
                waiter.wait.nudge(&self.cx);
            }
        }
        for waiter in st.watchers.drain() {
            waiter.wait.nudge(&self.cx);
        }
        if st.receiver_handles == 0 {
            let buffered = std::mem::take(&mut st.buffer);
            st.garbage.extend(buffered);
        }
        true
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.borrow().closed
    }

    fn len(&self) -> usize {
        self.lock(|st| {
            self.promote_due(st, At::Now);
            st.buffer.len()
        })
    }
}

/// The sending half. Clone it for more producers; the channel closes for receivers when every
/// sender is dropped (and no `send_after` timer is pending), or on [`Sender::close`].
pub struct Sender<T> {
    pub(crate) core: Rc<Core<T>>,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full (on a rendezvous channel: until a
    /// receiver takes it).
    ///
    /// - `Ok(())`: a receiver has the value, or it is in the buffer.
    /// - `Err(SendError::Closed(value))`: the channel is closed.
    /// - `Err(SendError::Canceled(value))`: the task was canceled before a receiver took the
    ///   value. If a receiver took it first, the send is `Ok` (completion wins) and the cancel
    ///   arrives at the task's next suspend point.
    ///
    /// A canceled task's send is refused at once, like every suspend point.
    ///
    /// A [`send_after`](crate::send_after) message that falls due while this send waits for
    /// room is delivered before this send's value: a timer never waits for room, so it does
    /// not queue behind waiting senders.
    ///
    /// ```
    /// use channel::SendError;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = channel::bounded(&cx, 1);
    ///         tx.send(1).await.unwrap();
    ///         let sender = cx.spawn(move |_| async move { Ok(tx.send(2).await) });
    ///         cx.sleep(10).await?; // the sender waits: the buffer is full
    ///         sender.cancel();
    ///         assert_eq!(sender.await?, Err(SendError::Canceled(2))); // 2 comes back
    ///         assert_eq!(rx.try_recv(), Ok(1));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn send(&self, value: T) -> SendFuture<'_, T> {
        SendFuture {
            op: SendOp::new(self.core.clone(), value),
            _sender: PhantomData,
        }
    }

    /// Sends without waiting: `Full(value)` if `send` would wait, `Closed(value)` if closed.
    /// On a rendezvous channel it succeeds only when a `recv` or a select is waiting: a
    /// waiting stream `next()` is never handed a value, it takes one from a waiting `send`.
    ///
    /// ```
    /// use channel::TrySendError;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, _rx) = channel::bounded(&cx, 1);
    ///         assert_eq!(tx.try_send('a'), Ok(()));
    ///         assert_eq!(tx.try_send('b'), Err(TrySendError::Full('b')));
    ///         tx.close();
    ///         assert_eq!(tx.try_send('c'), Err(TrySendError::Closed('c')));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.core.lock(|st| self.core.try_send(st, value, At::Now))
    }

    /// Closes the channel for everyone; `true` if this call closed it. Values already buffered
    /// are still delivered; then receivers get `Closed`. Waiting senders get their values back.
    ///
    /// ```
    /// use channel::RecvError;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = channel::unbounded(&cx);
    ///         tx.send("last").await.unwrap();
    ///         assert!(tx.close());
    ///         assert!(!tx.close(), "already closed");
    ///         assert_eq!(rx.recv().await, Ok("last"));
    ///         assert_eq!(rx.recv().await, Err(RecvError::Closed));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn close(&self) -> bool {
        self.core.lock(|st| self.core.close(st))
    }

    /// Whether the channel is closed (explicitly, or every receiver is gone).
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = channel::bounded::<u8>(&cx, 1);
    ///         assert!(!tx.is_closed());
    ///         drop(rx);
    ///         assert!(tx.is_closed());
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.core.lock(|st| st.sender_handles += 1);
        Sender {
            core: self.core.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.core.lock(|st| {
            st.sender_handles -= 1;
            self.core.close_if_unreachable(st);
        });
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.core.capacity)
            .field("closed", &self.core.is_closed())
            .finish_non_exhaustive()
    }
}

/// The receiving half. Clone it for more consumers (each value goes to one of them); the channel
/// closes for senders when every receiver is dropped, or on [`Receiver::close`].
///
/// It is a [`Stream`] of the values: the stream ends when the channel is closed and empty, or
/// when the task is canceled (the cancel then reaches the task's next suspend point).
///
/// A pending `next()` reserves nothing. The stream's receive is woken when a value becomes
/// available (buffered, or held by a waiting sender) and takes it only when polled, so a
/// `next()` future dropped mid-wait (a timeout, a `future::or`) strands no value, and on a
/// rendezvous channel a send completes only when a polled `next()` takes it. A value goes to
/// the waiting [`recv`](Receiver::recv)s and selects first, in the order they came; waiting
/// streams take what is left.
///
/// ```
/// use futures_lite::StreamExt;
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let (tx, rx) = channel::unbounded(&cx);
///         for n in 1..=3 {
///             tx.send(n).await.unwrap();
///         }
///         drop(tx);
///         assert_eq!(rx.collect::<Vec<_>>().await, vec![1, 2, 3]);
///         Ok(())
///     })
///     .unwrap();
/// ```
///
/// Giving up on a `next()` loses nothing:
///
/// ```
/// use futures_lite::{future, StreamExt};
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let (tx, mut rx) = channel::bounded(&cx, 0);
///         let timed_out = future::or(rx.next(), async {
///             cx.sleep(10).await.ok();
///             None
///         });
///         assert_eq!(timed_out.await, None); // nothing came in 10 ms
///         let sender = cx.spawn(move |_| async move { Ok(tx.send("late").await) });
///         cx.sleep(5).await?;
///         assert!(!sender.is_finished(), "no receive in progress: the send waits");
///         assert_eq!(rx.recv().await, Ok("late"));
///         assert_eq!(sender.await?, Ok(()));
///         Ok(())
///     })
///     .unwrap();
/// ```
pub struct Receiver<T> {
    core: Rc<Core<T>>,
    /// The receive in flight for [`Stream::poll_next`].
    next: Option<RecvOp<T>>,
}

impl<T> Receiver<T> {
    /// Receives a value, waiting until one comes.
    ///
    /// - `Ok(value)`: the oldest buffered value, or one handed over by a sender.
    /// - `Err(RecvError::Closed)`: the channel is closed and empty.
    /// - `Err(RecvError::Canceled)`: the task was canceled before a value was handed to it;
    ///   nothing was taken. If a value was handed over first, the receive is `Ok` (completion
    ///   wins) and the cancel arrives at the task's next suspend point.
    ///
    /// Waiting receivers are served first come, first served; a timer that wakes them to look
    /// again does not change their order. If the future is dropped after a value was handed to
    /// it, the value goes to the next waiting receiver, else back to the front of the buffer —
    /// past the capacity if need be, even on `bounded(0)` — so it is not lost.
    ///
    /// ```
    /// use channel::RecvError;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = channel::bounded(&cx, 1);
    ///         let sender = cx.spawn(move |cx| async move {
    ///             cx.sleep(30).await?;
    ///             tx.send("late").await.ok();
    ///             Ok(())
    ///         });
    ///         assert_eq!(rx.recv().await, Ok("late"));
    ///         assert_eq!(cx.now_ms(), 30);
    ///         sender.await?; // drops the only sender
    ///         assert_eq!(rx.recv().await, Err(RecvError::Closed));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn recv(&self) -> RecvFuture<'_, T> {
        RecvFuture {
            op: RecvOp::new(self.core.clone(), RecvKind::HandOff),
            completed: false,
            _receiver: PhantomData,
        }
    }

    /// Receives without waiting: `Empty` if `recv` would wait, `Closed` if closed and empty.
    /// On a rendezvous channel it succeeds only when a sender is waiting.
    ///
    /// ```
    /// use channel::TryRecvError;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = channel::bounded(&cx, 2);
    ///         assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    ///         tx.try_send(5).unwrap();
    ///         drop(tx);
    ///         assert_eq!(rx.try_recv(), Ok(5));
    ///         assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.core.lock(|st| self.core.try_recv(st, At::Now))
    }

    /// Closes the channel from the receiving side; `true` if this call closed it. Senders get
    /// `Closed` (waiting ones get their values back); values already buffered can still be
    /// received.
    ///
    /// ```
    /// use channel::SendError;
    ///
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = channel::bounded(&cx, 4);
    ///         tx.send(1).await.unwrap();
    ///         assert!(rx.close());
    ///         assert_eq!(tx.send(2).await, Err(SendError::Closed(2)));
    ///         assert_eq!(rx.recv().await, Ok(1));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn close(&self) -> bool {
        self.core.lock(|st| self.core.close(st))
    }

    /// Whether the channel is closed (it may still hold buffered values).
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = channel::bounded::<u8>(&cx, 1);
    ///         drop(tx);
    ///         assert!(rx.is_closed());
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// How many values are buffered (timed messages count once their deadline has come).
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = channel::bounded(&cx, 2);
    ///         tx.try_send(1).unwrap();
    ///         tx.try_send(2).unwrap();
    ///         assert_eq!(rx.len(), 2);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// Whether nothing is buffered.
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (_tx, rx) = channel::bounded::<u8>(&cx, 2);
    ///         assert!(rx.is_empty());
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer's capacity; `None` for an unbounded channel, `Some(0)` for a rendezvous.
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         assert_eq!(channel::bounded::<u8>(&cx, 3).1.capacity(), Some(3));
    ///         assert_eq!(channel::bounded::<u8>(&cx, 0).1.capacity(), Some(0));
    ///         assert_eq!(channel::unbounded::<u8>(&cx).1.capacity(), None);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn capacity(&self) -> Option<usize> {
        self.core.capacity
    }

    pub(crate) fn core(&self) -> &Rc<Core<T>> {
        &self.core
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.core.lock(|st| st.receiver_handles += 1);
        Receiver {
            core: self.core.clone(),
            next: None,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // A receive in flight gives back what it holds while this receiver still counts.
        self.next = None;
        self.core.lock(|st| {
            st.receiver_handles -= 1;
            if st.receiver_handles == 0 {
                // Nobody can receive any more: close, dropping what is buffered.
                self.core.close(st);
            }
        });
    }
}

impl<T> Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        let op = this
            .next
            .get_or_insert_with(|| RecvOp::new(this.core.clone(), RecvKind::Watch));
        let received = std::task::ready!(op.poll(cx));
        this.next = None;
        Poll::Ready(received.ok())
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.core.capacity)
            .field("closed", &self.core.is_closed())
            .finish_non_exhaustive()
    }
}

/// The future of [`Sender::send`]. Dropping it before it completes withdraws the value (it is
/// dropped with the future); a value a receiver already took stays delivered.
#[must_use = "futures do nothing unless awaited"]
pub struct SendFuture<'a, T> {
    op: SendOp<T>,
    _sender: PhantomData<&'a Sender<T>>,
}

// The value is moved in and out, never pinned in place.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().op.poll(cx)
    }
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture")
            .field("waiting", &self.op.waiter.is_some())
            .finish()
    }
}

/// The future of [`Receiver::recv`]. Dropping it after a sender handed it a value puts the
/// value back at the front of the channel, so it is not lost.
#[must_use = "futures do nothing unless awaited"]
pub struct RecvFuture<'a, T> {
    op: RecvOp<T>,
    /// It returned: polling again would receive a second value.
    completed: bool,
    _receiver: PhantomData<&'a Receiver<T>>,
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(
            !this.completed,
            "a RecvFuture was polled after it completed"
        );
        let received = this.op.poll(cx);
        this.completed = received.is_ready();
        received
    }
}

impl<T> fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvFuture")
            .field("waiting", &self.op.waiter.is_some())
            .finish()
    }
}

/// One send: try at once, else queue a waiter holding the value and suspend until a receiver
/// takes it (or the channel closes, or the task is canceled).
struct SendOp<T> {
    core: Rc<Core<T>>,
    value: Option<T>,
    waiter: Option<Rc<Waiter<T>>>,
}

impl<T> SendOp<T> {
    fn new(core: Rc<Core<T>>, value: T) -> SendOp<T> {
        SendOp {
            core,
            value: Some(value),
            waiter: None,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        loop {
            let waiter = match &self.waiter {
                Some(waiter) => waiter.clone(),
                None => {
                    let value = self
                        .value
                        .take()
                        .expect("SendFuture polled after completion");
                    if self.core.cx.check_cancel().is_err() {
                        return Poll::Ready(Err(SendError::Canceled(value)));
                    }
                    let unit = match self.core.cx.poll_budget(cx) {
                        Poll::Ready(Ok(unit)) => unit,
                        Poll::Ready(Err(Canceled)) => {
                            return Poll::Ready(Err(SendError::Canceled(value)))
                        }
                        Poll::Pending => {
                            self.value = Some(value);
                            return Poll::Pending;
                        }
                    };
                    let core = &self.core;
                    let queued = core.lock(|st| match core.try_send(st, value, At::Now) {
                        Ok(()) => Err(Ok(())),
                        Err(TrySendError::Closed(value)) => Err(Err(SendError::Closed(value))),
                        Err(TrySendError::Full(value)) => {
                            let waiter = st.spare_sender.take("channel send", Some(value));
                            core.wait_to_send(st, &waiter);
                            Ok(waiter)
                        }
                    });
                    match queued {
                        Ok(waiter) => self.waiter.insert(waiter).clone(),
                        Err(sent) => {
                            unit.spend();
                            return Poll::Ready(sent);
                        }
                    }
                }
            };
            let woke = std::task::ready!(self.core.cx.poll_suspend(&waiter.wait.park, cx));
            let taken = waiter.wait.done_case().is_some();
            drop(waiter);
            let value = self.stop_waiting(true);
            match (taken, woke) {
                // A receiver took the value: the send completed, even if a cancel came too.
                (true, _) => return Poll::Ready(Ok(())),
                (false, Err(Canceled)) => {
                    let value = value.expect("an untaken send still holds its value");
                    return Poll::Ready(Err(SendError::Canceled(value)));
                }
                // Woken to look again (the channel closed): start over with the value.
                (false, Ok(())) => self.value = value,
            }
        }
    }

    /// Leaves the queue, giving back the value if no receiver took it. `returned`: the suspend
    /// on the waiter's park has returned, so the waiter may serve the channel's next send.
    fn stop_waiting(&mut self, returned: bool) -> Option<T> {
        let waiter = self.waiter.take()?;
        let (value, discard) = self.core.lock(|st| {
            let value = self.core.stop_sending(st, &waiter);
            let discard = if returned {
                st.spare_sender.keep(waiter)
            } else {
                Some(waiter)
            };
            (value, discard)
        });
        drop(discard);
        value
    }
}

impl<T> Drop for SendOp<T> {
    fn drop(&mut self) {
        let withdrawn = self.stop_waiting(false);
        drop(withdrawn);
    }
}

/// How a waiting receive gets its value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RecvKind {
    /// `recv` (and select cases): queued in first-come order; a sender hands the value into
    /// its slot, which completes the send. Safe because dropping the future takes the value
    /// back out.
    HandOff,
    /// The `Stream`: its receive lives in the `Receiver`, and a dropped `next()` future leaves
    /// it behind unannounced, so it is never handed a value (which would strand it, and on a
    /// rendezvous channel complete a send nobody receives). It is only woken when a value
    /// becomes available, and takes it with a `try_recv` when polled.
    Watch,
}

/// One receive: try at once, else wait on the channel — queued for a hand-off, or watching —
/// until a value is there for it (or the channel closes, or the task is canceled).
pub(crate) struct RecvOp<T> {
    core: Rc<Core<T>>,
    kind: RecvKind,
    waiter: Option<Rc<Waiter<T>>>,
    alarm: Alarm,
}

impl<T> RecvOp<T> {
    fn new(core: Rc<Core<T>>, kind: RecvKind) -> RecvOp<T> {
        RecvOp {
            core,
            kind,
            waiter: None,
            alarm: Alarm::default(),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
        let waiter = match &self.waiter {
            Some(waiter) => waiter.clone(),
            None => {
                if self.core.cx.check_cancel().is_err() {
                    return Poll::Ready(Err(RecvError::Canceled));
                }
                let unit = match self.core.cx.poll_budget(cx) {
                    Poll::Ready(Ok(unit)) => unit,
                    Poll::Ready(Err(Canceled)) => return Poll::Ready(Err(RecvError::Canceled)),
                    Poll::Pending => return Poll::Pending,
                };
                let what = match self.kind {
                    RecvKind::HandOff => "channel recv",
                    RecvKind::Watch => "channel stream",
                };
                let queued = self.core.lock(|st| match self.core.try_recv(st, At::Now) {
                    Ok(value) => Err(Ok(value)),
                    Err(TryRecvError::Closed) => Err(Err(RecvError::Closed)),
                    Err(TryRecvError::Empty) => {
                        let waiter = st.spare(self.kind).take(what, None);
                        match self.kind {
                            RecvKind::HandOff => self.core.wait_to_recv(st, &waiter),
                            RecvKind::Watch => st.watchers.push_back(waiter.clone()),
                        }
                        Ok(waiter)
                    }
                });
                match queued {
                    Ok(waiter) => self.waiter.insert(waiter).clone(),
                    Err(received) => {
                        unit.spend();
                        return Poll::Ready(received);
                    }
                }
            }
        };
        loop {
            let next_timed = self.core.lock(|st| self.core.next_timed(st));
            self.alarm.set(&self.core.cx, next_timed, &waiter.wait.park);
            let woke = std::task::ready!(self.core.cx.poll_suspend(&waiter.wait.park, cx));
            let outcome = match woke {
                // Woken: a value handed over, or a reason to look again. It keeps its place.
                Ok(()) => self
                    .core
                    .lock(|st| self.core.look_again(st, &waiter, self.kind)),
                // A value handed over before the cancel was seen is ours (completion wins).
                Err(Canceled) => Some(waiter.slot.borrow_mut().take().ok_or(RecvError::Canceled)),
            };
            if let Some(outcome) = outcome {
                drop(waiter);
                self.stop_waiting(true);
                return Poll::Ready(outcome);
            }
        }
    }

    /// Leaves the queue (a handed value it does not return goes on, see
    /// [`Core::stop_receiving`]). `returned`: the suspend on the waiter's park has returned, so
    /// unless a timer was armed on it the waiter may serve the channel's next receive.
    fn stop_waiting(&mut self, returned: bool) {
        self.alarm.clear();
        let reusable = returned && !self.alarm.was_used();
        if let Some(waiter) = self.waiter.take() {
            let discard = self.core.lock(|st| {
                match self.kind {
                    RecvKind::HandOff => self.core.stop_receiving(st, &waiter),
                    RecvKind::Watch => self.core.unqueue_receiver(st, &waiter, RecvKind::Watch),
                }
                if reusable {
                    st.spare(self.kind).keep(waiter)
                } else {
                    Some(waiter)
                }
            });
            drop(discard);
        }
    }
}

impl<T> Drop for RecvOp<T> {
    fn drop(&mut self) {
        self.stop_waiting(false);
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::StreamExt;
    use io_core::Task;

    use super::*;

    // Fewer under Miri, which interprets every step: the bound per waiter is what is checked.
    const MANY: usize = if cfg!(miri) { 500 } else { 20_000 };

    /// Cancels `tasks`, last spawned first, and joins them: each wakes canceled and leaves its
    /// channel's queue, in that order (fiber's seed 0 runs ready tasks first come first).
    async fn cancel_in_reverse<T>(tasks: Vec<Task<T>>) {
        for task in tasks.iter().rev() {
            task.cancel();
        }
        for task in tasks {
            task.await.ok();
        }
    }

    /// Which of a channel's queues.
    type QueueOf = fn(&State<usize>) -> &WaitQueue<usize>;

    /// How many wait in a queue, and how many slots it has visited so far.
    fn queue_stats(core: &Core<usize>, queue: QueueOf) -> (usize, u64) {
        core.lock(|st| (queue(st).iter().count(), queue(st).steps()))
    }

    /// The issue's storm on a real channel: 20k waiting `recv`s, `send`s and stream `next()`s,
    /// canceled in reverse order, each leave their queue in a bounded number of steps.
    #[test]
    fn canceling_waiters_in_reverse_order_takes_bounded_queue_work_each() {
        let steps = io_fiber::FiberIo::new()
            .run(|cx| async move {
                let (tx, rx) = bounded::<usize>(&cx, 0);
                let (tx, rx) = (Rc::new(tx), Rc::new(rx));
                let receivers: QueueOf = |st| &st.receivers;
                let senders: QueueOf = |st| &st.senders;
                let streams: QueueOf = |st| &st.watchers;
                let mut steps = Vec::new();

                let tasks: Vec<_> = (0..MANY)
                    .map(|_| {
                        let rx = rx.clone();
                        cx.spawn(move |_| async move { Ok(rx.recv().await) })
                    })
                    .collect();
                cx.yield_now().await?;
                assert_eq!(queue_stats(&tx.core, receivers), (MANY, 0));
                cancel_in_reverse(tasks).await;
                steps.push(queue_stats(&tx.core, receivers));

                let tasks: Vec<_> = (0..MANY)
                    .map(|n| {
                        let tx = tx.clone();
                        cx.spawn(move |_| async move { Ok(tx.send(n).await) })
                    })
                    .collect();
                cx.yield_now().await?;
                assert_eq!(queue_stats(&tx.core, senders), (MANY, 0));
                cancel_in_reverse(tasks).await;
                steps.push(queue_stats(&tx.core, senders));

                let tasks: Vec<_> = (0..MANY)
                    .map(|_| {
                        let mut rx = Receiver::clone(&rx);
                        cx.spawn(move |_| async move { Ok(rx.next().await) })
                    })
                    .collect();
                cx.yield_now().await?;
                assert_eq!(queue_stats(&tx.core, streams), (MANY, 0));
                cancel_in_reverse(tasks).await;
                steps.push(queue_stats(&tx.core, streams));
                Ok(steps)
            })
            .unwrap();
        assert!(
            steps
                .iter()
                .all(|&(left, steps)| left == 0 && steps <= 4 * MANY as u64),
            "(still waiting, steps) of receivers, senders, streams, {MANY} waiters each: {steps:?}"
        );
    }
}
