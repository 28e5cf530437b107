//! `select`: wait for the first of several channel operations, a timeout, or none (default).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_core::{Canceled, Cx};

use crate::chan::{At, Core, Refused};
use crate::wait::{Alarm, Wait, Waiter};
use crate::{Receiver, Sender, TryRecvError};

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

    /// Completes one of the cases that are ready at `now`, if any, chosen uniformly at random.
    ///
    /// Checking and completing see the same instant `now` (due timed messages move in during
    /// the check, and nothing moves in between), so the chosen case completes. Should it find
    /// itself not ready after all, it took nothing — a send case's value is still in its
    /// slot — and another ready case is drawn.
    fn complete_ready(&mut self, now: u64) -> Option<R> {
        let mut ready: Vec<usize> = (0..self.cases.len())
            .filter(|&i| self.cases[i].is_ready(now))
            .collect();
        while !ready.is_empty() {
            let pick = match ready.len() {
                1 => 0,
                n => self.cx.random_below(n as u64) as usize,
            };
            if let Some(result) = self.cases[ready[pick]].complete_now(now) {
                return Some(result);
            }
            ready.remove(pick);
        }
        None
    }

    /// The select's poll: wait if it waits, else scan the cases (and wait if none is ready).
    /// Each look at the cases reads the clock once.
    fn poll_cases(&mut self, cx: &mut Context<'_>) -> Poll<Result<R, Canceled>> {
        loop {
            let mut unit = None;
            let now = if let Some(wait) = self.wait.clone() {
                let woke = std::task::ready!(self.cx.poll_suspend(&wait.park, cx));
                let now = self.cx.now_ms();
                // Woken to look again (a timed message armed or canceled) and still nothing:
                // wait on, keeping every queued case's place in its queue. (Looking may
                // complete a case: a due timed message handed to it.)
                if woke.is_ok() && !self.any_ready(now) && wait.is_open() {
                    self.arm_alarm(&wait);
                    continue;
                }
                if let Some(done) = self.stop_waiting() {
                    // A counterpart completed this case: it wins, even over a cancel.
                    return Poll::Ready(Ok(self.cases[done].complete_waited()));
                }
                woke?;
                // A case became ready by itself: a deadline came, or a channel closed.
                now
            } else if self.cx.check_cancel().is_err() {
                return Poll::Ready(Err(Canceled));
            } else {
                // A select that completes at once spends a unit of the task's budget; one that
                // waits gives it back.
                unit = Some(std::task::ready!(self.cx.poll_budget(cx))?);
                self.cx.now_ms()
            };
            if let Some(result) = self.complete_ready(now) {
                if let Some(unit) = unit {
                    unit.spend();
                }
                return Poll::Ready(Ok(result));
            }
            if let Some(default) = self.default.take() {
                if let Some(unit) = unit {
                    unit.spend();
                }
                return Poll::Ready(Ok(default()));
            }
            // Known as waiting before any case is queued: whatever happens while queuing,
            // leaving (on drop) takes every queued case, and its value, back.
            let wait = self.wait.insert(Wait::new("select")).clone();
            for (index, case) in self.cases.iter_mut().enumerate() {
                case.wait(&wait, index);
            }
            self.arm_alarm(&wait);
        }
    }

    /// Whether a case is ready at `now`. On channels it is queued on, this first moves due
    /// timed messages in, which go to the oldest waiters — perhaps completing this select.
    fn any_ready(&self, now: u64) -> bool {
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

/// One case of a select. `now` is the select's one clock reading for a look at its cases.
trait Case<R> {
    /// Whether the case can complete at `now` without waiting.
    fn is_ready(&self, now: u64) -> bool;
    /// Completes the case at `now`, which `is_ready` just said it can; `None` if it cannot
    /// after all, having taken nothing.
    fn complete_now(&mut self, now: u64) -> Option<R>;
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
    fn is_ready(&self, now: u64) -> bool {
        self.core.lock(|st| self.core.recv_ready(st, At::Ms(now)))
    }

    fn complete_now(&mut self, now: u64) -> Option<R> {
        match self.core.lock(|st| self.core.try_recv(st, At::Ms(now))) {
            Ok(value) => Some(self.finish(Some(value))),
            Err(TryRecvError::Closed) => Some(self.finish(None)),
            // Not "closed": nothing to receive yet.
            Err(TryRecvError::Empty) => None,
        }
    }

    fn wait(&mut self, wait: &Rc<Wait>, index: usize) {
        let waiter = self.waiter.insert(Waiter::new(wait.clone(), index, None));
        self.core.lock(|st| self.core.wait_to_recv(st, waiter));
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
    fn is_ready(&self, now: u64) -> bool {
        if self.waiter.is_some() {
            // Queued, its value in the queue: a receiver or room that comes completes it
            // directly, so all that makes it ready by itself is its channel closing.
            return self.core.is_closed();
        }
        self.slot.is_some() && self.core.lock(|st| self.core.send_ready(st, At::Ms(now)))
    }

    fn complete_now(&mut self, now: u64) -> Option<R> {
        if self.slot.is_none() {
            return None;
        }
        // The value leaves the slot only to be delivered: refused, it is still there.
        let sent = self
            .core
            .lock(|st| self.core.try_send_from(st, self.slot, At::Ms(now)));
        match sent {
            Ok(()) => Some(self.finish(Ok(()))),
            Err(Refused::Closed) => {
                let value = self.slot.take()?;
                Some(self.finish(Err(value)))
            }
            Err(Refused::Full) => None,
        }
    }

    fn wait(&mut self, wait: &Rc<Wait>, index: usize) {
        // An empty slot: a disabled case, queued nowhere.
        if let Some(value) = self.slot.take() {
            // Kept by the case before it is queued: leaving the queue gives the value back.
            let waiter = self
                .waiter
                .insert(Waiter::new(wait.clone(), index, Some(value)));
            self.core.lock(|st| self.core.wait_to_send(st, waiter));
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

    fn complete_now(&mut self, _now: u64) -> Option<R> {
        let on = self.on.take().expect("a select completes one case, once");
        Some(on())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A case asked to complete when it cannot (the select's check and its completion
    /// disagree) takes nothing and says so: a send case's value stays in the caller's slot, and
    /// a receive case on an empty open channel is not told "closed".
    #[test]
    fn a_case_that_cannot_complete_takes_nothing() {
        let cx = Cx::new(io_fiber::FiberIo::new().io());
        let (tx, rx) = crate::bounded(&cx, 1);
        tx.try_send(0).unwrap();
        let mut slot = Some(1);
        let mut send = SendCase {
            core: &tx.core,
            slot: &mut slot,
            on: Some(|sent: Result<(), i32>| sent),
            waiter: None,
        };
        assert_eq!(send.complete_now(cx.now_ms()), None, "the buffer is full");
        drop(send);
        assert_eq!(slot, Some(1), "the value is still the caller's");
        assert_eq!(rx.try_recv(), Ok(0), "and was not sent");

        let mut recv = RecvCase {
            core: rx.core(),
            on: Some(|received: Option<i32>| received),
            waiter: None,
        };
        assert_eq!(recv.complete_now(cx.now_ms()), None, "empty, not closed");
        tx.close();
        assert_eq!(recv.complete_now(cx.now_ms()), Some(None), "closed");
    }
}
