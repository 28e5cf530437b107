//! A core's inbox: what other cores (or any thread) post to it, and the task that serves it.
//!
//! The queue is std's `mpsc` channel, a lock-free linked list of blocks (crossbeam's design)
//! since Rust 1.67: a post is an atomic append, never a lock. The wake is batched: a post wakes
//! the core only if nobody has since it last looked (`notified` was clear), so a burst of posts
//! costs one wake — one lock of the waker slot and one push onto the core's run queue, whose
//! idle hook (a `MSG_RING` between uring cores, else an eventfd; the poller's notify) wakes the
//! loop if it sleeps in the kernel.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};

use io_core::{BudgetUnit, Cancelable, Canceled, Cx, TaskRef};

/// What a core is asked to do.
pub(super) enum Message {
    /// Start a task (its body runs on the core, given the core's `Cx`).
    Spawn(Box<dyn FnOnce(&Cx) + Send>),
    /// Stop serving; with `cancel_main`, cancel the core's main first (another core failed).
    Stop { cancel_main: bool },
}

/// How a post wakes the core: set once per look of the server, cleared when it looks again.
struct Wake {
    notified: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// The posting side, kept by every core.
pub(super) struct Inbox {
    sender: mpsc::Sender<Message>,
    wake: Arc<Wake>,
}

/// The serving side, owned by the core's thread.
pub(super) struct Receiver {
    receiver: mpsc::Receiver<Message>,
    wake: Arc<Wake>,
}

impl Inbox {
    pub(super) fn new() -> (Inbox, Receiver) {
        let (sender, receiver) = mpsc::channel();
        let wake = Arc::new(Wake {
            notified: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        (
            Inbox {
                sender,
                wake: wake.clone(),
            },
            Receiver { receiver, wake },
        )
    }

    /// Posts `message`. If the core has stopped serving, the message is dropped here (a spawn's
    /// dropped start joins its task as canceled).
    pub(super) fn post(&self, message: Message) {
        if let Err(mpsc::SendError(message)) = self.sender.send(message) {
            drop(message);
            return;
        }
        // Dekker's pattern with the server's clear-then-look: the post is visible before the
        // flag is read, so either the server's last look finds the message or this finds the
        // flag clear.
        fence(Ordering::SeqCst);
        if !self.wake.notified.swap(true, Ordering::SeqCst) {
            let waker = self
                .wake
                .waker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// The inbox's server: starts what is posted until told to stop (or canceled by the run's end).
/// Dropping the receiver on the way out drops what is still queued.
pub(super) async fn serve(cx: Cx, receiver: Receiver, main: TaskRef) -> Result<(), Canceled> {
    loop {
        match Cancelable::new(Next(&receiver)).await? {
            Message::Spawn(start) => start(&cx),
            Message::Stop { cancel_main } => {
                if cancel_main {
                    main.cancel();
                }
                return Ok(());
            }
        }
    }
}

/// The next message. A foreign wait to the core's loop (another thread wakes it), so an idle
/// core sleeps in its backend instead of reporting a deadlock.
struct Next<'a>(&'a Receiver);

impl Future for Next<'_> {
    type Output = Message;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Message> {
        let inbox = self.0;
        // A burst of posts is served a budget at a time, so the core's own tasks run between.
        let unit = match BudgetUnit::poll_take(cx) {
            Poll::Ready(Ok(unit)) => unit,
            // A cancel: `Cancelable` around this delivers it.
            Poll::Ready(Err(Canceled)) | Poll::Pending => return Poll::Pending,
        };
        if let Ok(message) = inbox.receiver.try_recv() {
            unit.spend();
            return Poll::Ready(message);
        }
        {
            let mut waker = inbox.wake.waker.lock().unwrap_or_else(|e| e.into_inner());
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        // Cleared after the waker is in place and before the last look: a post after that look
        // finds it clear and wakes us.
        inbox.wake.notified.store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        match inbox.receiver.try_recv() {
            Ok(message) => Poll::Ready(message),
            // Every sender is in `Shared`, which outlives the server: never disconnected.
            Err(_) => Poll::Pending,
        }
    }
}
