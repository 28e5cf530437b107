//! `select`: wait for the first of several channel operations, a timeout, or none (default).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_core::{Canceled, Cx};

use crate::chan::Core;
use crate::wait::{Alarm, Wait, Waiter};
use crate::{Receiver, Sender, TryRecvError, TrySendError};

/// Starts a select: add cases with [`recv`](Select::recv), [`send`](Select::send),
/// [`timeout`](Select::timeout) and [`default`](Select::default), then await it.
///
/// Awaiting it completes exactly one case and returns what that case's closure returns:
///
/// - If several cases are ready, one is chosen uniformly at random (from
///   [`Io::random_u64`](io_core::Io::random_u64): seeded, hence reproducible, on fiber).
/// - If none is ready and there is a default case, the default runs at once: the select never
///   waits.
/// - Otherwise it waits for the first case to become ready. A counterpart that completes one
///   case (a sender handing a value to a receive case, a receiver taking a send case's value)
///   claims the whole select; the other cases consume nothing.
/// - `Err(Canceled)` if the task is canceled before any case completed; nothing was taken or
///   sent, and a send case's value is still in its slot. A case completed before the cancel
///   was observed wins: its result is returned, and the cancel arrives at the next suspend
///   point.
/// - A waiting select keeps its place in each channel's queue of receivers (first come, first
///   served) until a case completes, whatever wakes it to look again.
///
/// A select borrows its channels and is built afresh for each wait, so it sits naturally in a
/// loop — the shape of a server:
///
/// ```
/// enum Event {
///     Request(Option<u32>),
///     Idle,
/// }
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let (tx, rx) = channel::unbounded(&cx);
///         channel::send_after(30, &tx, 7);
///         drop(tx);
///         let mut seen = Vec::new();
///         loop {
///             let event = channel::select(&cx)
///                 .recv(&rx, Event::Request)
///                 .timeout(20, || Event::Idle)
///                 .await?;
///             match event {
///                 Event::Request(Some(n)) => seen.push(format!("{n}@{}", cx.now_ms())),
///                 Event::Request(None) => break, // closed: the timer was the last sender
///                 Event::Idle => seen.push(format!("idle@{}", cx.now_ms())),
///             }
///         }
///         assert_eq!(seen, ["idle@20", "7@30"]);
///         Ok(())
///     })
///     .unwrap();
/// ```
pub fn select<'a, R>(cx: &Cx) -> Select<'a, R> {
    Select {
        cx: cx.clone(),
        cases: Vec::new(),
        default: None,
        wait: None,
        alarm: Alarm::default(),
        completed: false,
    }
}

/// A select under construction, then in flight; see [`select`].
#[must_use = "a select does nothing unless awaited"]
pub struct Select<'a, R> {
    cx: Cx,
    cases: Vec<Box<dyn Case<R> + 'a>>,
    default: Option<Box<dyn FnOnce() -> R + 'a>>,
    /// The wait in flight: every channel case is queued on its channel with it.
    wait: Option<Rc<Wait>>,
    /// Wakes the select at the earliest case deadline (a timeout, a timed message).
    alarm: Alarm,
    /// A case completed: polling again would complete a second one.
    completed: bool,
}

impl<'a, R> Select<'a, R> {
    /// A case that receives from `rx`: `on` gets `Some(value)`, or `None` if the channel is
    /// closed and empty (a closed channel's receive case is always ready).
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = channel::bounded(&cx, 1);
    ///         tx.try_send("hi").unwrap();
    ///         let got = channel::select(&cx).recv(&rx, |msg| msg).await?;
    ///         assert_eq!(got, Some("hi"));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn recv<T: 'a>(
        mut self,
        rx: &'a Receiver<T>,
        on: impl FnOnce(Option<T>) -> R + 'a,
    ) -> Self {
        self.cases.push(Box::new(RecvCase {
            core: rx.core(),
            on: Some(on),
            waiter: None,
        }));
        self
    }

    /// A case that sends the value in `slot` on `tx`. The value leaves `slot` only when the
    /// case completes: `on` then gets `Ok(())` once a receiver has it (or it is buffered), or
    /// `Err(value)` back if the channel is closed. Whatever else happens — another case is
    /// chosen, the task is canceled, the select is dropped — the value stays in `slot`, never
    /// lost, so a loop can offer it again. An empty `slot` disables the case (it is never
    /// ready), like a `nil` channel in Go.
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (tx, rx) = channel::bounded(&cx, 1);
    ///         let mut out = Some(5);
    ///         let sent = channel::select(&cx).send(&tx, &mut out, |r| r.is_ok()).await?;
    ///         assert!(sent);
    ///         assert_eq!(out, None);
    ///         assert_eq!(rx.try_recv(), Ok(5));
    ///
    ///         // On a full channel the timeout wins, and the value stays in the slot.
    ///         tx.try_send(6).unwrap();
    ///         let mut out = Some(7);
    ///         let sent = channel::select(&cx)
    ///             .send(&tx, &mut out, |r| r.is_ok())
    ///             .timeout(10, || false)
    ///             .await?;
    ///         assert!(!sent);
    ///         assert_eq!(out, Some(7), "still ours, to offer again");
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn send<T: 'a>(
        mut self,
        tx: &'a Sender<T>,
        slot: &'a mut Option<T>,
        on: impl FnOnce(Result<(), T>) -> R + 'a,
    ) -> Self {
        self.cases.push(Box::new(SendCase {
            core: &tx.core,
            slot,
            on: Some(on),
            waiter: None,
        }));
        self
    }

    /// A case that is ready `ms` milliseconds from now (from when this call is made).
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (_tx, rx) = channel::bounded::<u8>(&cx, 1);
    ///         let timed_out = channel::select(&cx)
    ///             .recv(&rx, |_| false)
    ///             .timeout(100, || true)
    ///             .await?;
    ///         assert!(timed_out);
    ///         assert_eq!(cx.now_ms(), 100);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn timeout(mut self, ms: u64, on: impl FnOnce() -> R + 'a) -> Self {
        let deadline = self.cx.now_ms().saturating_add(ms);
        self.cases.push(Box::new(TimeoutCase {
            deadline,
            on: Some(on),
        }));
        self
    }

    /// What to do when no case is ready: with a default, the select never waits.
    ///
    /// ```
    /// io_fiber::FiberIo::new()
    ///     .run(|cx| async move {
    ///         let (_tx, rx) = channel::bounded::<u8>(&cx, 1);
    ///         let got = channel::select(&cx)
    ///             .recv(&rx, |msg| msg)
    ///             .default(|| None)
    ///             .await?;
    ///         assert_eq!((got, cx.now_ms()), (None, 0));
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn default(mut self, on: impl FnOnce() -> R + 'a) -> Self {
        self.default = Some(Box::new(on));
        self
    }

    /// Completes one of the cases that are ready now, if any, chosen uniformly at random.
    fn complete_ready(&mut self) -> Option<R> {
        let now = self.cx.now_ms();
        let ready: Vec<usize> = (0..self.cases.len())
            .filter(|&i| self.cases[i].is_ready(now))
            .collect();
        let pick = match ready.len() {
            0 => return None,
            1 => ready[0],
            n => {
                let draw = u128::from(self.cx.io().random_u64()) * n as u128;
                ready[(draw >> 64) as usize]
            }
        };
        Some(self.cases[pick].complete_now())
    }

    /// The select's poll: wait if it waits, else scan the cases (and wait if none is ready).
    fn poll_cases(&mut self, cx: &mut Context<'_>) -> Poll<Result<R, Canceled>> {
        loop {
            if let Some(wait) = self.wait.clone() {
                let woke = std::task::ready!(self.cx.io().suspend_raw(&wait.park, cx));
                // Woken to look again (a timed message armed or canceled) and still nothing:
                // wait on, keeping every queued case's place in its queue. (Looking may
                // complete a case: a due timed message handed to it.)
                if woke.is_ok() && !self.any_ready() && wait.is_open() {
                    self.arm_alarm(&wait);
                    continue;
                }
                if let Some(done) = self.stop_waiting() {
                    // A counterpart completed this case: it wins, even over a cancel.
                    return Poll::Ready(Ok(self.cases[done].complete_waited()));
                }
                woke?;
                // A case became ready by itself: a deadline came, or a channel closed.
            } else if self.cx.check_cancel().is_err() {
                return Poll::Ready(Err(Canceled));
            }
            if let Some(result) = self.complete_ready() {
                return Poll::Ready(Ok(result));
            }
            if let Some(default) = self.default.take() {
                return Poll::Ready(Ok(default()));
            }
            let wait = Wait::new("select");
            for (index, case) in self.cases.iter_mut().enumerate() {
                case.wait(&wait, index);
            }
            self.arm_alarm(&wait);
            self.wait = Some(wait);
        }
    }

    /// Whether a case is ready. On channels it is queued on, this first moves due timed
    /// messages in, which go to the oldest waiters — perhaps completing this select.
    fn any_ready(&self) -> bool {
        let now = self.cx.now_ms();
        self.cases.iter().any(|case| case.is_ready(now))
    }

    /// Keeps the alarm armed for the earliest case deadline.
    fn arm_alarm(&mut self, wait: &Rc<Wait>) {
        let deadline = self.cases.iter().filter_map(|case| case.deadline()).min();
        self.alarm.set(&self.cx, deadline, &wait.park);
    }

    /// Leaves every channel; a case that a counterpart completed meanwhile is returned.
    fn stop_waiting(&mut self) -> Option<usize> {
        self.alarm.clear();
        let wait = self.wait.take()?;
        let done = wait.done_case();
        for (index, case) in self.cases.iter_mut().enumerate() {
            if Some(index) != done {
                case.stop_waiting();
            }
        }
        done
    }
}

impl<R> Future for Select<'_, R> {
    type Output = Result<R, Canceled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.completed, "a Select was polled after it completed");
        let outcome = this.poll_cases(cx);
        this.completed = outcome.is_ready();
        outcome
    }
}

impl<R> Drop for Select<'_, R> {
    fn drop(&mut self) {
        // Send cases' values go back to their slots; a receive case a sender completed gives
        // its value back to the channel.
        if let Some(done) = self.stop_waiting() {
            self.cases[done].stop_waiting();
        }
    }
}

impl<R> fmt::Debug for Select<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("cases", &self.cases.len())
            .field("default", &self.default.is_some())
            .field("waiting", &self.wait.is_some())
            .finish()
    }
}

/// One case of a select.
trait Case<R> {
    /// Whether the case can complete now without waiting.
    fn is_ready(&self, now: u64) -> bool;
    /// Completes the case; `is_ready` just said it can.
    fn complete_now(&mut self) -> R;
    /// Queues the case on its channel as case `index` of `wait`.
    fn wait(&mut self, wait: &Rc<Wait>, index: usize);
    /// Leaves the channel's queue, taking back anything left with it.
    fn stop_waiting(&mut self);
    /// Completes the case a counterpart completed while it waited.
    fn complete_waited(&mut self) -> R;
    /// When the case will become ready by itself, if ever (a timeout, a timed message).
    fn deadline(&self) -> Option<u64>;
}

struct RecvCase<'a, T, F> {
    core: &'a Core<T>,
    on: Option<F>,
    waiter: Option<Rc<Waiter<T>>>,
}

impl<T, R, F: FnOnce(Option<T>) -> R> RecvCase<'_, T, F> {
    fn finish(&mut self, received: Option<T>) -> R {
        let on = self.on.take().expect("a select completes one case, once");
        on(received)
    }
}

impl<T, R, F: FnOnce(Option<T>) -> R> Case<R> for RecvCase<'_, T, F> {
    fn is_ready(&self, _now: u64) -> bool {
        self.core.lock(|st| self.core.recv_ready(st))
    }

    fn complete_now(&mut self) -> R {
        let received = self.core.lock(|st| self.core.try_recv(st));
        debug_assert!(
            !matches!(received, Err(TryRecvError::Empty)),
            "a receive case completes only when ready"
        );
        self.finish(received.ok())
    }

    fn wait(&mut self, wait: &Rc<Wait>, index: usize) {
        let waiter = Waiter::new(wait.clone(), index, None);
        self.core.lock(|st| self.core.wait_to_recv(st, &waiter));
        self.waiter = Some(waiter);
    }

    fn stop_waiting(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            self.core.lock(|st| self.core.stop_receiving(st, &waiter));
        }
    }

    fn complete_waited(&mut self) -> R {
        let waiter = self.waiter.take().expect("a completed case was waiting");
        let value = waiter.slot.borrow_mut().take();
        self.finish(value)
    }

    fn deadline(&self) -> Option<u64> {
        self.core.lock(|st| self.core.next_timed(st))
    }
}

struct SendCase<'a, T, F> {
    core: &'a Core<T>,
    /// The caller's: the value stays in it until delivered (or refused, when `on` gets it).
    slot: &'a mut Option<T>,
    on: Option<F>,
    waiter: Option<Rc<Waiter<T>>>,
}

impl<T, R, F: FnOnce(Result<(), T>) -> R> SendCase<'_, T, F> {
    fn finish(&mut self, sent: Result<(), T>) -> R {
        let on = self.on.take().expect("a select completes one case, once");
        on(sent)
    }
}

impl<T, R, F: FnOnce(Result<(), T>) -> R> Case<R> for SendCase<'_, T, F> {
    fn is_ready(&self, _now: u64) -> bool {
        self.slot.is_some() && self.core.lock(|st| self.core.send_ready(st))
    }

    fn complete_now(&mut self) -> R {
        let value = self.slot.take().expect("a ready send case holds its value");
        let sent = match self.core.lock(|st| self.core.try_send(st, value)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(value)) => Err(value),
            Err(TrySendError::Full(_)) => unreachable!("a send case completes only when ready"),
        };
        self.finish(sent)
    }

    fn wait(&mut self, wait: &Rc<Wait>, index: usize) {
        // An empty slot: a disabled case, queued nowhere.
        if let Some(value) = self.slot.take() {
            let waiter = Waiter::new(wait.clone(), index, Some(value));
            self.core.lock(|st| self.core.wait_to_send(st, &waiter));
            self.waiter = Some(waiter);
        }
    }

    fn stop_waiting(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            let unsent = self.core.lock(|st| self.core.stop_sending(st, &waiter));
            if unsent.is_some() {
                *self.slot = unsent;
            }
        }
    }

    fn complete_waited(&mut self) -> R {
        self.waiter = None;
        self.finish(Ok(()))
    }

    fn deadline(&self) -> Option<u64> {
        None
    }
}

struct TimeoutCase<F> {
    deadline: u64,
    on: Option<F>,
}

impl<R, F: FnOnce() -> R> Case<R> for TimeoutCase<F> {
    fn is_ready(&self, now: u64) -> bool {
        now >= self.deadline
    }

    fn complete_now(&mut self) -> R {
        let on = self.on.take().expect("a select completes one case, once");
        on()
    }

    fn wait(&mut self, _wait: &Rc<Wait>, _index: usize) {}

    fn stop_waiting(&mut self) {}

    fn complete_waited(&mut self) -> R {
        unreachable!("no counterpart completes a timeout")
    }

    fn deadline(&self) -> Option<u64> {
        Some(self.deadline)
    }
}
