//! A process's mailbox: its messages in arrival order, and the parks of the receives waiting
//! on it.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use io_core::{drop_contained, Cx, Park};

use crate::{Down, Exit, Message, MonitorRef, ProcId};

pub(crate) struct Mailbox<M> {
    pub(crate) id: ProcId,
    cx: Cx,
    queue: RefCell<VecDeque<Message<M>>>,
    /// The parks of the receives waiting on this mailbox, by wait ticket, all readied by the
    /// next arrival: each looks again with its own pattern. (One `Process` can be shared
    /// through an `Rc` by several tasks, so several receives can wait at once.)
    waiters: RefCell<Vec<(u64, Park)>>,
    /// Cleared when the process ends: what arrives later is dropped, as Erlang drops messages
    /// to a dead pid.
    open: Cell<bool>,
}

impl<M> Mailbox<M> {
    pub(crate) fn new(id: ProcId, cx: &Cx) -> Mailbox<M> {
        Mailbox {
            id,
            cx: cx.clone(),
            queue: RefCell::new(VecDeque::new()),
            waiters: RefCell::new(Vec::new()),
            open: Cell::new(true),
        }
    }

    /// Appends `message` (dropping it if the process has ended) and wakes the waiting
    /// receives.
    pub(crate) fn push(&self, message: Message<M>) {
        if !self.open.get() {
            // Its owner is gone: a panic in its drop is contained, not thrown at the sender.
            drop_contained(message);
            return;
        }
        self.queue.borrow_mut().push_back(message);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, park) in waiters {
            self.cx.ready(&park);
        }
    }

    /// Takes out the oldest message `pattern` accepts; the others stay, in order.
    pub(crate) fn take_first(
        &self,
        pattern: &mut dyn FnMut(&Message<M>) -> bool,
    ) -> Option<Message<M>> {
        let mut queue = self.queue.borrow_mut();
        let at = queue.iter().position(pattern)?;
        queue.remove(at)
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.borrow().len()
    }
}

/// What a receive's wait does to its mailbox, whatever the message type.
pub(crate) trait WaitOn {
    /// The receive with this ticket waits on `park`, readied by the next arrival.
    fn wait_on(&self, ticket: u64, park: &Park);
    /// It stopped waiting (if it was not readied already).
    fn stop_waiting(&self, ticket: u64);
}

impl<M> WaitOn for Mailbox<M> {
    fn wait_on(&self, ticket: u64, park: &Park) {
        self.waiters.borrow_mut().push((ticket, park.clone()));
    }

    fn stop_waiting(&self, ticket: u64) {
        self.waiters.borrow_mut().retain(|(t, _)| *t != ticket);
    }
}

/// What the node does to a mailbox whatever its message type.
pub(crate) trait Signals {
    fn push_exit(&self, exit: Exit);
    fn push_down(&self, down: Down);
    /// Removes a `Down` of `monitor` still in the mailbox (a demonitor flushes it).
    fn flush_down(&self, monitor: MonitorRef);
    /// The process ended: refuses later messages. Its messages stay until
    /// [`clear`](Signals::clear), so their drops run after the node has told the process's
    /// monitors and links.
    fn close(&self);
    /// Drops the messages of a closed mailbox, containing a panic from their drops.
    fn clear(&self);
    fn any(self: Rc<Self>) -> Rc<dyn Any>;
}

impl<M: 'static> Signals for Mailbox<M> {
    fn push_exit(&self, exit: Exit) {
        self.push(Message::Exit(exit));
    }

    fn push_down(&self, down: Down) {
        self.push(Message::Down(down));
    }

    fn flush_down(&self, monitor: MonitorRef) {
        self.queue
            .borrow_mut()
            .retain(|message| !matches!(message, Message::Down(down) if down.monitor == monitor));
    }

    fn close(&self) {
        self.open.set(false);
        self.waiters.borrow_mut().clear();
    }

    fn clear(&self) {
        // Dropped outside the borrow, one by one: a message's drop may run code that sends (a
        // reply slot closing its channel, say), or panic.
        loop {
            let message = self.queue.borrow_mut().pop_front();
            match message {
                Some(message) => drop_contained(message),
                None => return,
            }
        }
    }

    fn any(self: Rc<Self>) -> Rc<dyn Any> {
        self
    }
}
