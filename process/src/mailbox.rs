//! A process's mailbox: its messages in arrival order, and the park of a receive waiting on it.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use io_core::{Cx, Park};

use crate::{Down, Exit, Message, MonitorRef, ProcId};

pub(crate) struct Mailbox<M> {
    pub(crate) id: ProcId,
    cx: Cx,
    queue: RefCell<VecDeque<Message<M>>>,
    /// The park of the receive waiting on this mailbox, readied by the next arrival.
    waiter: RefCell<Option<Park>>,
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
            waiter: RefCell::new(None),
            open: Cell::new(true),
        }
    }

    /// Appends `message` (dropping it if the process has ended) and wakes a waiting receive.
    pub(crate) fn push(&self, message: Message<M>) {
        if !self.open.get() {
            return;
        }
        self.queue.borrow_mut().push_back(message);
        let waiter = self.waiter.borrow_mut().take();
        if let Some(park) = waiter {
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

    pub(crate) fn wait_on(&self, park: Option<Park>) {
        *self.waiter.borrow_mut() = park;
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.borrow().len()
    }
}

/// What the node does to a mailbox whatever its message type.
pub(crate) trait Signals {
    fn push_exit(&self, exit: Exit);
    fn push_down(&self, down: Down);
    /// Removes a `Down` of `monitor` still in the mailbox (a demonitor flushes it).
    fn flush_down(&self, monitor: MonitorRef);
    /// The process ended: drops its messages and refuses later ones.
    fn close(&self);
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
        self.waiter.borrow_mut().take();
        // Dropped outside the borrow: a message's drop may run code that sends (a reply slot
        // closing its channel, say).
        let dropped = std::mem::take(&mut *self.queue.borrow_mut());
        drop(dropped);
    }

    fn any(self: Rc<Self>) -> Rc<dyn Any> {
        self
    }
}
