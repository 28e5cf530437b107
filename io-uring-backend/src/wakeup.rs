//! Wakeups from other threads: an eventfd whose read is kept in flight on the ring.
//!
//! A waker woken on another thread pushes its task onto the run queue; if the loop is asleep in
//! `io_uring_enter`, the queue's idle hook writes the eventfd, the read in flight completes, and
//! the wait returns.

use std::cell::UnsafeCell;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use io_uring::{opcode, squeue, types};

use crate::UringError;

/// The eventfd and the 8-byte buffer its in-flight read fills.
pub(crate) struct Wakeup {
    eventfd: Arc<fs::File>,
    /// Written by the kernel while the read is in flight; never read by us.
    buf: Box<UnsafeCell<[u8; 8]>>,
}

impl Wakeup {
    pub(crate) fn new() -> Result<Wakeup, UringError> {
        // Blocking: the ring's read is its only reader, and on 5.11-5.13 io_uring hands a
        // non-blocking file's EAGAIN back instead of waiting. A write blocks only at a counter of
        // 2^64 - 2, which the read in flight keeps draining.
        // SAFETY: eventfd takes no pointers; a negative result is handled below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(UringError::from_io(&std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Wakeup {
            eventfd: Arc::new(fs::File::from(owned)),
            buf: Box::new(UnsafeCell::new([0; 8])),
        })
    }

    /// What the run queue calls, from any thread, when a task is pushed while the loop sleeps.
    pub(crate) fn notifier(&self) -> impl Fn() + Send + Sync + 'static {
        let eventfd = self.eventfd.clone();
        move || {
            // EAGAIN (counter saturated) still leaves the eventfd readable: nothing to do.
            let _ = (&*eventfd).write(&1u64.to_ne_bytes());
        }
    }

    /// Gives up the read's buffer without freeing it, for a tear-down that could not wait for
    /// the read's completion.
    pub(crate) fn leak_buffer(&mut self) {
        let fresh = Box::new(UnsafeCell::new([0; 8]));
        std::mem::forget(std::mem::replace(&mut self.buf, fresh));
    }

    /// The read to keep in flight. Its buffer lives as long as `self`, and `self` outlives every
    /// request on the ring (the ring is drained before the backend's fields drop).
    pub(crate) fn read_entry(&self, user_data: u64) -> squeue::Entry {
        opcode::Read::new(
            types::Fd(self.eventfd.as_raw_fd()),
            self.buf.get().cast::<u8>(),
            8,
        )
        .build()
        .user_data(user_data)
    }
}
