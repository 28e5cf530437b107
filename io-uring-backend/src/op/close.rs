//! Close: the ops still holding the descriptor are canceled and the close waits until it holds
//! the last handle; it then owns the descriptor until its SQE is pushed (the kernel owns it from
//! then on).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use io_core::{Handle, Op};
use io_uring::{opcode, squeue, types};

use super::{Aftermath, Aux, Key, Ops, Phase};

impl Ops {
    /// A close: the descriptor if this was the last holder of it, `None` if ops in flight hold
    /// it (they are canceled, and the close waits for them), or an immediate result.
    pub(super) fn prepare_close(
        &mut self,
        handle: &mut Option<Handle>,
        after: &mut Aftermath,
    ) -> Result<Option<OwnedFd>, io::Result<usize>> {
        let Some(closing) = handle.take() else {
            return Err(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nothing to close",
            )));
        };
        if closing.raw_fd().is_none() {
            return Err(Err(io_core::Unsupported::io_error("uring", "close")));
        }
        match closing.try_into_fd() {
            Ok(owned) => Ok(Some(owned)),
            Err(closing) => {
                let holders: Vec<Key> = self.holders_of(&closing);
                if holders.is_empty() {
                    // Someone outside the backend holds a handle: it closes when that drops.
                    drop(closing);
                    return Err(Ok(0));
                }
                for holder in holders {
                    self.request_cancel(holder, after);
                }
                *handle = Some(closing);
                Ok(None)
            }
        }
    }

    /// The ops in the table that hold `handle` (the close itself included, once queued).
    fn holders_of(&self, handle: &Handle) -> Vec<Key> {
        self.slotted()
            .filter(|(_, slotted)| slotted.op.handle().is_some_and(|h| h.same_as(handle)))
            .map(|(key, _)| key)
            .collect()
    }

    /// Closes whose descriptor is now free get their SQE. One whose other holders are all gone
    /// from the table, yet cannot take the descriptor (a handle kept outside the backend),
    /// completes at once: the descriptor closes when that handle drops.
    #[inline]
    pub(super) fn retry_awaiting_closes(&mut self, after: &mut Aftermath) {
        if !self.awaiting_fd.is_empty() {
            self.retry_awaiting_closes_now(after);
        }
    }

    fn retry_awaiting_closes_now(&mut self, after: &mut Aftermath) {
        for key in mem::take(&mut self.awaiting_fd) {
            let Some(slotted) = self.get_mut(key) else {
                continue;
            };
            let Op::Close { handle } = &mut slotted.op else {
                continue;
            };
            let Some(closing) = handle.take() else {
                continue;
            };
            match closing.try_into_fd() {
                Ok(owned) => {
                    slotted.phase = Phase::Queued(Box::new(close_entry(owned.as_raw_fd())));
                    slotted.aux = Aux::Close(Some(owned));
                    self.queued.push_back(key);
                }
                Err(closing) => {
                    let others = self.holders_of(&closing);
                    if others.iter().all(|&h| h == key) {
                        // Only handles outside the table are left (a completion not yet taken,
                        // an I/O type kept elsewhere): the descriptor closes when they drop.
                        drop(closing);
                        self.unfinished -= 1;
                        let slotted = self.remove(key).expect("looked up above");
                        if slotted.discarded {
                            after.free(Some(slotted)); // nobody will take the result
                        } else {
                            after.deliver(slotted, Ok(0));
                        }
                    } else {
                        let slotted = self.get_mut(key).expect("looked up above");
                        if let Op::Close { handle } = &mut slotted.op {
                            *handle = Some(closing);
                        }
                        self.awaiting_fd.push(key);
                    }
                }
            }
        }
    }
}

pub(super) fn close_entry(raw: RawFd) -> squeue::Entry {
    // The kernel owns the descriptor from here: IORING_OP_CLOSE closes it.
    opcode::Close::new(types::Fd(raw)).build()
}
