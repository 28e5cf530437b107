//! Channels between cores (or threads): `Send` endpoints, the local channels' no-lost-message
//! rules.
//!
//! A local channel holds its `Cx` and hands values straight to waiting tasks; an endpoint that
//! crosses threads can hold neither a `Cx` (it is `!Send`) nor a park. So here `send` and
//! `recv` take the `Cx` of the task calling them, and values are never handed over: a value is
//! sent when it is in the buffer and received when taken out of it, both under the channel's
//! lock. Waiting tasks leave only a `Waker` in the channel, and a woken task takes its value
//! itself. Nothing is therefore ever held for a task that might be canceled before it runs:
//!
//! - a receive that got a value returns it, even if its task's cancel arrived meanwhile
//!   (completion wins; `Canceled` comes at the next suspend point);
//! - a send canceled before its value entered the buffer gets it back in
//!   [`SendError::Canceled`]; once in, it is sent;
//! - a woken waiter that leaves without taking (canceled, dropped) passes its wake on, so a
//!   value or a free slot never waits while another task sleeps.
//!
//! Capacity is at least 1 (no rendezvous across cores). A receive or send that completes at
//! once spends a unit of the task's operation budget, as the local channels' do.
//!
//! ```
//! use channel::shared;
//!
//! let (tx, rx) = shared::bounded::<u32>(8);
//! // Any thread may send without a task: `try_send` never waits.
//! for n in 1..=4 {
//!     tx.try_send(n).unwrap();
//! }
//! drop(tx); // closes the channel; what is buffered is still received
//! let consumer = std::thread::spawn(move || {
//!     io_fiber::FiberIo::new().run(|cx| async move {
//!         let mut sum = 0;
//!         while let Ok(n) = rx.recv(&cx).await {
//!             sum += n;
//!         }
//!         Ok(sum)
//!     })
//! });
//! assert_eq!(consumer.join().unwrap().unwrap(), 10);
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use io_core::{Canceled, Cx};

use crate::{RecvError, SendError, TryRecvError, TrySendError};

/// A channel holding at most `capacity` values (at least 1) between `Send` endpoints.
///
/// Panics if `capacity` is 0.
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "a shared channel needs a capacity of at least 1"
    );
    channel(capacity)
}

/// A channel with no bound between `Send` endpoints: a send never waits.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    channel(usize::MAX)
}

static_assertions::assert_impl_all!(Sender<u8>: Send, Sync);
static_assertions::assert_impl_all!(Receiver<u8>: Send, Sync);

fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        state: Mutex::new(State {
            buffer: VecDeque::new(),
            capacity,
            senders: 1,
            receivers: 1,
            closed: false,
            recv_waiters: Waiters::default(),
            send_waiters: Waiters::default(),
        }),
    });
    (Sender { chan: chan.clone() }, Receiver { chan })
}

struct Chan<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    buffer: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receivers: usize,
    closed: bool,
    recv_waiters: Waiters,
    send_waiters: Waiters,
}

impl<T> State<T> {
    fn is_closed(&self) -> bool {
        self.closed || self.senders == 0 || self.receivers == 0
    }
}

/// Tasks waiting for a value (or for room), first come first served. A waiter is woken by being
/// taken out; one still here when it leaves removes itself.
#[derive(Default)]
struct Waiters {
    queue: VecDeque<(u64, Waker)>,
    next: u64,
}

impl Waiters {
    /// Queues `waker` under `ticket` (a new one if `None`), or refreshes its waker.
    fn wait(&mut self, ticket: &mut Option<u64>, waker: &Waker) {
        if let Some(t) = *ticket {
            if let Some(entry) = self.queue.iter_mut().find(|(id, _)| *id == t) {
                if !entry.1.will_wake(waker) {
                    entry.1 = waker.clone();
                }
                return;
            }
        }
        let t = self.next;
        self.next += 1;
        *ticket = Some(t);
        self.queue.push_back((t, waker.clone()));
    }

    /// Leaves the queue: whether the waiter had been woken (taken out) already.
    fn leave(&mut self, ticket: u64) -> bool {
        match self.queue.iter().position(|(id, _)| *id == ticket) {
            Some(at) => {
                self.queue.remove(at);
                false
            }
            None => true,
        }
    }

    fn wake_one(&mut self) -> Option<Waker> {
        self.queue.pop_front().map(|(_, waker)| waker)
    }

    fn wake_all(&mut self) -> Vec<Waker> {
        self.queue.drain(..).map(|(_, waker)| waker).collect()
    }
}

impl<T> Chan<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every critical section leaves the state whole; a panic cannot poison it halfway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        let wakers = {
            let mut state = self.lock();
            state.closed = true;
            let mut wakers = state.recv_waiters.wake_all();
            wakers.extend(state.send_waiters.wake_all());
            wakers
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// The sending side: `Send`, `Sync`, cloneable. Dropping the last sender closes the channel
/// (what is buffered is still received).
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving side: `Send`, `Sync`, cloneable. Dropping the last receiver closes the channel.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting for room. `Err` gives the value back: [`SendError::Closed`], or
    /// [`SendError::Canceled`] when the calling task's cancel came before the value was in.
    pub fn send<'a>(&'a self, cx: &'a Cx, value: T) -> SendFuture<'a, T> {
        SendFuture {
            chan: &self.chan,
            cx,
            value: Some(value),
            ticket: None,
        }
    }

    /// Sends `value` if there is room now; never waits, spends no budget.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let waker = {
            let mut state = self.chan.lock();
            if state.is_closed() {
                return Err(TrySendError::Closed(value));
            }
            if state.buffer.len() >= state.capacity {
                return Err(TrySendError::Full(value));
            }
            state.buffer.push_back(value);
            state.recv_waiters.wake_one()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Closes the channel for every endpoint: sends fail, receives drain what is buffered.
    pub fn close(&self) {
        self.chan.close();
    }
}

impl<T> Receiver<T> {
    /// Receives the oldest value, waiting for one. [`RecvError::Closed`] once the channel is
    /// closed and drained; [`RecvError::Canceled`] when the calling task's cancel came first.
    pub fn recv<'a>(&'a self, cx: &'a Cx) -> RecvFuture<'a, T> {
        RecvFuture {
            chan: &self.chan,
            cx,
            ticket: None,
        }
    }

    /// Takes the oldest value if there is one; never waits, spends no budget.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let (value, waker) = {
            let mut state = self.chan.lock();
            match state.buffer.pop_front() {
                Some(value) => (value, state.send_waiters.wake_one()),
                None if state.is_closed() => return Err(TryRecvError::Closed),
                None => return Err(TryRecvError::Empty),
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(value)
    }

    /// Closes the channel for every endpoint: sends fail, receives drain what is buffered.
    pub fn close(&self) {
        self.chan.close();
    }
}

/// The future of [`Sender::send`].
#[must_use = "futures do nothing unless awaited"]
pub struct SendFuture<'a, T> {
    chan: &'a Chan<T>,
    cx: &'a Cx,
    value: Option<T>,
    ticket: Option<u64>,
}

impl<T> Unpin for SendFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.value.is_none() {
            panic!("a shared SendFuture was polled after it returned");
        }
        let unit = match this.cx.poll_budget(task) {
            Poll::Ready(Ok(unit)) => Some(unit),
            Poll::Ready(Err(Canceled)) => None,
            Poll::Pending => return Poll::Pending,
        };
        let woken = {
            let mut state = this.chan.lock();
            if unit.is_none() || this.cx.check_cancel().is_err() {
                let value = this.take_out(&mut state);
                return Poll::Ready(Err(SendError::Canceled(value)));
            }
            if state.is_closed() {
                let value = this.take_out(&mut state);
                return Poll::Ready(Err(SendError::Closed(value)));
            }
            if state.buffer.len() >= state.capacity {
                state.send_waiters.wait(&mut this.ticket, task.waker());
                return Poll::Pending;
            }
            if let Some(ticket) = this.ticket.take() {
                state.send_waiters.leave(ticket);
            }
            state.buffer.extend(this.value.take());
            state.recv_waiters.wake_one()
        };
        if let Some(unit) = unit {
            unit.spend();
        }
        if let Some(waker) = woken {
            waker.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T> SendFuture<'_, T> {
    /// The value back, leaving the queue (passing a wake on, see [`pass_on`]).
    fn take_out(&mut self, state: &mut State<T>) -> T {
        if let Some(ticket) = self.ticket.take() {
            if state.send_waiters.leave(ticket) && state.buffer.len() < state.capacity {
                if let Some(waker) = state.send_waiters.wake_one() {
                    waker.wake();
                }
            }
        }
        self.value
            .take()
            .expect("the value is here until it is sent")
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            let mut state = self.chan.lock();
            let room = state.buffer.len() < state.capacity;
            pass_on(&mut state.send_waiters, ticket, || room);
        }
    }
}

/// The future of [`Receiver::recv`].
#[must_use = "futures do nothing unless awaited"]
pub struct RecvFuture<'a, T> {
    chan: &'a Chan<T>,
    cx: &'a Cx,
    ticket: Option<u64>,
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let unit = match this.cx.poll_budget(task) {
            Poll::Ready(Ok(unit)) => Some(unit),
            Poll::Ready(Err(Canceled)) => None,
            Poll::Pending => return Poll::Pending,
        };
        let (value, woken) = {
            let mut state = this.chan.lock();
            // Canceled before it could take anything: refused, nothing taken.
            if unit.is_none() || this.cx.check_cancel().is_err() {
                if let Some(ticket) = this.ticket.take() {
                    let buffered = !state.buffer.is_empty() || state.is_closed();
                    pass_on(&mut state.recv_waiters, ticket, || buffered);
                }
                return Poll::Ready(Err(RecvError::Canceled));
            }
            match state.buffer.pop_front() {
                Some(value) => {
                    if let Some(ticket) = this.ticket.take() {
                        state.recv_waiters.leave(ticket);
                    }
                    (value, state.send_waiters.wake_one())
                }
                None if state.is_closed() => {
                    if let Some(ticket) = this.ticket.take() {
                        state.recv_waiters.leave(ticket);
                    }
                    return Poll::Ready(Err(RecvError::Closed));
                }
                None => {
                    state.recv_waiters.wait(&mut this.ticket, task.waker());
                    return Poll::Pending;
                }
            }
        };
        if let Some(unit) = unit {
            unit.spend();
        }
        if let Some(waker) = woken {
            waker.wake();
        }
        Poll::Ready(Ok(value))
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            let mut state = self.chan.lock();
            let buffered = !state.buffer.is_empty();
            pass_on(&mut state.recv_waiters, ticket, || buffered);
        }
    }
}

/// A waiter leaves its queue without having done what it was woken for: if it had been woken
/// and what it was woken for is still there (`still_there`), the next waiter is woken instead.
fn pass_on(waiters: &mut Waiters, ticket: u64, still_there: impl FnOnce() -> bool) {
    if waiters.leave(ticket) && still_there() {
        if let Some(waker) = waiters.wake_one() {
            waker.wake();
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.chan.lock().senders += 1;
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        self.chan.lock().receivers += 1;
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.chan.lock();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.chan.close();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.chan.lock();
            state.receivers -= 1;
            state.receivers == 0
        };
        if last {
            self.chan.close();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("shared::Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("shared::Receiver").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("shared::SendFuture").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("shared::RecvFuture").finish_non_exhaustive()
    }
}
