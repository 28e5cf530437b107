//! The ring itself: setup with feature checks, room accounting, submit, wait, reap.
//!
//! Room accounting is what makes "ring full" back-pressure instead of an error: at most
//! `cq_entries` requests are ever outstanding (pushed and not yet reaped), so the completion
//! queue can never overflow and a push is refused — the caller queues the request — rather than
//! failing in the kernel.

use std::io;
use std::time::Duration;

use io_uring::{squeue, types, IoUring};

use crate::UringError;

/// One io_uring instance and the count of requests it holds.
pub(crate) struct Ring {
    ring: IoUring,
    /// Requests pushed whose completion has not been reaped yet.
    outstanding: usize,
    limit: usize,
}

/// The smallest completion queue built: with `(limit - 1) / 2` ops in the kernel, each can get
/// a cancel request and the wakeup read still fits (4 gives one op).
const MIN_CQ_ENTRIES: u32 = 4;

/// One reaped completion: `(user_data, result)`.
pub(crate) type Cqe = (u64, i32);

impl Ring {
    /// A ring with `sq_entries` submission slots and a completion queue of `cq_entries`, but at
    /// least [`MIN_CQ_ENTRIES`]: room for one op, its cancel request and the wakeup read.
    pub(crate) fn new(sq_entries: u32, cq_entries: u32) -> Result<Ring, UringError> {
        let cq_entries = cq_entries.max(MIN_CQ_ENTRIES);
        // One thread submits and reaps (the backend is !Send), so completion work can wait for
        // our own `io_uring_enter` instead of interrupting the thread (Linux 6.1). The kernel
        // then raises IORING_SQ_TASKRUN when such work is pending, and `reap` enters to run it.
        // Older kernels refuse the flags with EINVAL: build the plain ring then.
        let ring = IoUring::builder()
            .setup_cqsize(cq_entries)
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(sq_entries)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(cq_entries)
                    .build(sq_entries)
            })
            .map_err(|e| UringError::from_io(&e))?;
        let params = ring.params();
        // Waits bounded by the next timer go through IORING_ENTER_EXT_ARG; 5.11 also brings
        // every opcode used here (SHUTDOWN is the newest).
        if !params.is_feature_ext_arg() {
            return Err(UringError::MissingFeature {
                feature: "IORING_FEAT_EXT_ARG",
                since: "5.11",
            });
        }
        let limit = params.cq_entries() as usize;
        Ok(Ring {
            ring,
            outstanding: 0,
            limit,
        })
    }

    /// Whether one more request fits without risking a completion-queue overflow.
    pub(crate) fn has_room(&self) -> bool {
        self.outstanding < self.limit
    }

    /// The most requests ever outstanding at once (the completion queue's size).
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Requests pushed and not reaped yet.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Pushes one request. Returns `false` (and pushes nothing) when the ring has no room; the
    /// caller keeps the request and pushes it later.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must stay valid (and, for buffers the kernel writes, unaliased)
    /// until the request's completion has been reaped.
    pub(crate) unsafe fn push(&mut self, entry: &squeue::Entry) -> bool {
        if !self.has_room() {
            return false;
        }
        if self.ring.submission().is_full() {
            self.submit();
        }
        // SAFETY: the caller guarantees the entry's memory outlives the request.
        let pushed = unsafe { self.ring.submission().push(entry) }.is_ok();
        if pushed {
            self.outstanding += 1;
        }
        pushed
    }

    /// Hands the queued submissions to the kernel without waiting, and lets it post completions
    /// whose work is pending (IORING_SQ_TASKRUN). No system call when there is neither.
    pub(crate) fn submit(&mut self) {
        let sq = self.ring.submission();
        if sq.is_empty() && !sq.taskrun() {
            return;
        }
        drop(sq);
        // With the TASKRUN flag set the crate adds IORING_ENTER_GETEVENTS, which runs that work.
        enter_result(self.ring.submit());
    }

    /// Submits what is queued and waits until at least one completion is ready, `timeout`
    /// passes, or a signal arrives.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) {
        let result = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(timeout) => {
                let ts = types::Timespec::from(timeout);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        enter_result(result);
    }

    /// Moves every ready completion into `out` (first letting the kernel post those whose work is
    /// pending).
    pub(crate) fn reap(&mut self, out: &mut Vec<Cqe>) {
        if self.ring.submission().taskrun() {
            self.submit();
        }
        let before = out.len();
        out.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        self.outstanding -= out.len() - before;
    }
}

/// `io_uring_enter` results that are part of normal operation: a timeout (`ETIME`), a signal
/// (`EINTR`), or the kernel asking us to reap first (`EBUSY`, `EAGAIN`). Anything else means the
/// ring is unusable, which no caller can recover from.
fn enter_result(result: io::Result<usize>) {
    if let Err(err) = result {
        match err.raw_os_error() {
            Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
            _ => panic!("io_uring_enter failed: {err}"),
        }
    }
}
