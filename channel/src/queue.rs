//! A channel's queues of waiting tasks: first come, first served.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::wait::Waiter;

/// Waiters in arrival order.
pub(crate) struct WaitQueue<T> {
    waiters: VecDeque<Rc<Waiter<T>>>,
}

impl<T> WaitQueue<T> {
    pub(crate) fn new() -> WaitQueue<T> {
        WaitQueue {
            waiters: VecDeque::new(),
        }
    }

    /// Queues `waiter` last.
    pub(crate) fn push_back(&mut self, waiter: Rc<Waiter<T>>) {
        self.waiters.push_back(waiter);
    }

    /// Takes the waiter that came first off the queue.
    pub(crate) fn pop_front(&mut self) -> Option<Rc<Waiter<T>>> {
        self.waiters.pop_front()
    }

    /// Takes `waiter` off the queue, wherever it is; nothing if it is not queued.
    pub(crate) fn remove(&mut self, waiter: &Rc<Waiter<T>>) {
        if let Some(at) = self.waiters.iter().position(|w| Rc::ptr_eq(w, waiter)) {
            self.waiters.remove(at);
        }
    }

    /// The queued waiters, first come first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Rc<Waiter<T>>> {
        self.waiters.iter()
    }

    /// Takes every waiter off the queue.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Rc<Waiter<T>>> + '_ {
        self.waiters.drain(..)
    }
}
