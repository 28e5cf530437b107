//! Erlang's `erlang:send_after/3` and `erlang:cancel_timer/1`, for channels.

use std::fmt;
use std::rc::{Rc, Weak};

use crate::chan::{Core, TimedKey};
use crate::Sender;

/// Sends `msg` on `to`'s channel `ms` milliseconds from now, without blocking anyone: the
/// message joins the channel at its deadline even if the buffer is full (a timer never waits
/// for room, as an Erlang mailbox never refuses a message). Returns a [`TimerRef`] for
/// [`cancel_timer`].
///
/// - Timed messages arrive in deadline order, ties in arming order — not in the order they
///   were armed.
/// - A message that falls due while senders wait for room is delivered before their values: it
///   joins the buffer at its deadline instead of queuing behind them.
/// - No task runs the timer: the channel keeps the message, and a receiver waiting on the
///   channel (a `recv`, a `select` case) arms a protocol timer for the earliest one. So it works
///   the same on every backend, and a receiver in another task gets it at its deadline.
/// - A pending timer keeps the channel open for its receivers, like a sender would; closing
///   the channel drops pending timed messages.
///
/// ```
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let (tx, rx) = channel::unbounded(&cx);
///         channel::send_after(80, &tx, "slow");
///         channel::send_after(20, &tx, "fast");
///         assert_eq!(rx.recv().await, Ok("fast"));
///         assert_eq!(cx.now_ms(), 20);
///         assert_eq!(rx.recv().await, Ok("slow"));
///         assert_eq!(cx.now_ms(), 80);
///         Ok(())
///     })
///     .unwrap();
/// ```
pub fn send_after<T: 'static>(ms: u64, to: &Sender<T>, msg: T) -> TimerRef {
    let core = &to.core;
    let deadline = core.cx.now_ms().saturating_add(ms);
    let key = core.lock(|st| core.arm_timed(st, deadline, msg));
    let mailbox: Rc<dyn Mailbox> = core.clone();
    TimerRef {
        mailbox: Rc::downgrade(&mailbox),
        key,
    }
}

/// Cancels a [`send_after`] timer: the milliseconds it had left, or `None` if it already fired
/// (its message is delivered, or will be at the channel's next operation) or can no longer
/// fire (its channel closed). A canceled message never arrives.
///
/// ```
/// use channel::TryRecvError;
///
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let (tx, rx) = channel::unbounded(&cx);
///         let timer = channel::send_after(100, &tx, "reminder");
///         cx.sleep(30).await?;
///         assert_eq!(channel::cancel_timer(timer), Some(70));
///         cx.sleep(100).await?;
///         assert_eq!(rx.try_recv(), Err(TryRecvError::Empty)); // never arrives
///
///         let fired = channel::send_after(10, &tx, "done");
///         cx.sleep(10).await?;
///         assert_eq!(channel::cancel_timer(fired), None); // too late...
///         assert_eq!(rx.try_recv(), Ok("done")); // ...the message is there
///         Ok(())
///     })
///     .unwrap();
/// ```
pub fn cancel_timer(timer: TimerRef) -> Option<u64> {
    let key = timer.key?;
    let mailbox = timer.mailbox.upgrade()?;
    mailbox.cancel_timed(key)
}

/// A pending [`send_after`] message, for [`cancel_timer`]. It does not keep the channel alive.
///
/// ```
/// io_fiber::FiberIo::new()
///     .run(|cx| async move {
///         let (tx, _rx) = channel::unbounded(&cx);
///         let timer = channel::send_after(50, &tx, ());
///         assert_eq!(timer.deadline_ms(), Some(50));
///         Ok(())
///     })
///     .unwrap();
/// ```
pub struct TimerRef {
    mailbox: Weak<dyn Mailbox>,
    /// `None`: the channel was closed when the timer was armed; the message was dropped.
    key: Option<TimedKey>,
}

impl TimerRef {
    /// When the message is (or was) due; `None` if it was armed on a closed channel.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.key.map(|(deadline, _)| deadline)
    }
}

impl fmt::Debug for TimerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerRef")
            .field("deadline_ms", &self.deadline_ms())
            .finish()
    }
}

/// A channel of any message type, as a timer reference sees it.
trait Mailbox {
    fn cancel_timed(&self, key: TimedKey) -> Option<u64>;
}

impl<T> Mailbox for Core<T> {
    fn cancel_timed(&self, key: TimedKey) -> Option<u64> {
        self.lock(|st| self.cancel_timed(st, key))
    }
}
