//! The ring itself: setup with feature checks, submit, wait, reap.
//!
//! Nothing here caps the requests in the kernel. A request waits only for a submission-queue
//! slot, and a full submission queue is handed to the kernel on the spot to free its slots. The
//! completion queue may overflow: the ring requires `IORING_FEAT_NODROP`, so the kernel keeps
//! completions that do not fit on its overflow list, and every reap enters the kernel to move
//! them into the queue once it has room (see DESIGN.md, "Back-pressure").

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring, Probe};

use crate::UringError;

/// One io_uring instance and the count of requests it holds.
pub(crate) struct Ring {
    ring: IoUring,
    /// Requests pushed whose completion has not been reaped yet: tear-down waits for zero.
    outstanding: usize,
    /// The kernel lost a completion or refused to enter: what the ring holds can no longer be
    /// accounted for, so tear-down stops waiting for it.
    broken: bool,
    opcodes: Opcodes,
}

/// The opcodes newer than the 5.11 baseline (or that a kernel may lack) which ops use when the
/// ring's probe says the kernel has them; without one, the op falls back to a synchronous call
/// or the offload pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Opcodes {
    /// `IORING_OP_FTRUNCATE` (Linux 6.9).
    pub(crate) ftruncate: bool,
    /// `IORING_OP_MKDIRAT` (5.15).
    pub(crate) mkdirat: bool,
    /// `IORING_OP_SYMLINKAT` (5.15).
    pub(crate) symlinkat: bool,
    /// `IORING_OP_LINKAT` (5.15).
    pub(crate) linkat: bool,
    /// `IORING_OP_UNLINKAT` (5.11).
    pub(crate) unlinkat: bool,
    /// `IORING_OP_RENAMEAT` (5.11).
    pub(crate) renameat: bool,
    /// `IORING_OP_STATX` (5.6), by path.
    pub(crate) statx: bool,
    /// `IORING_OP_MSG_RING` (5.18): cross-ring wake-ups (see `wakeup.rs`).
    pub(crate) msg_ring: bool,
}

impl Opcodes {
    /// What the kernel says it supports (none, if it cannot say).
    fn probe(ring: &IoUring) -> Opcodes {
        #[cfg(test)]
        if tests::pretend_no_opcodes() {
            return Opcodes::default();
        }
        let mut probe = Probe::new();
        if ring.submitter().register_probe(&mut probe).is_err() {
            return Opcodes::default();
        }
        Opcodes {
            ftruncate: probe.is_supported(opcode::Ftruncate::CODE),
            mkdirat: probe.is_supported(opcode::MkDirAt::CODE),
            symlinkat: probe.is_supported(opcode::SymlinkAt::CODE),
            linkat: probe.is_supported(opcode::LinkAt::CODE),
            unlinkat: probe.is_supported(opcode::UnlinkAt::CODE),
            renameat: probe.is_supported(opcode::RenameAt::CODE),
            statx: probe.is_supported(opcode::Statx::CODE),
            msg_ring: probe.is_supported(opcode::MsgRingData::CODE),
        }
    }
}

/// One reaped completion: `(user_data, result)`.
pub(crate) type Cqe = (u64, i32);

impl Ring {
    /// A ring with `sq_entries` submission slots and a completion queue of `cq_entries` (raised
    /// to `sq_entries` if smaller: the kernel's minimum).
    pub(crate) fn new(sq_entries: u32, cq_entries: u32) -> Result<Ring, UringError> {
        let cq_entries = cq_entries.max(sq_entries);
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
        // Requests in the kernel are not bounded by the completion queue's size: completions
        // that do not fit must be kept, not dropped. (Every 5.11 kernel has it; checked anyway.)
        if !params.is_feature_nodrop() {
            return Err(UringError::MissingFeature {
                feature: "IORING_FEAT_NODROP",
                since: "5.5",
            });
        }
        let opcodes = Opcodes::probe(&ring);
        Ok(Ring {
            ring,
            outstanding: 0,
            broken: false,
            opcodes,
        })
    }

    /// The ring's fd: where other rings send their `MSG_RING` wake-ups.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.ring);
        // SAFETY: `self.ring` owns `fd` and keeps it open for as long as `self` is borrowed.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
    }

    /// Pushes a `MSG_RING` that posts a completion with `wake_user_data` into the ring `target`
    /// (its own completion here carries `user_data`). `false` (nothing pushed) only as for
    /// [`Ring::push`]. The caller keeps `target` that ring until this request's completion is
    /// reaped: the request names only its number.
    pub(crate) fn push_msg_ring(
        &mut self,
        target: RawFd,
        wake_user_data: u64,
        user_data: u64,
    ) -> bool {
        let entry = opcode::MsgRingData::new(types::Fd(target), 0, wake_user_data, None)
            .build()
            .user_data(user_data);
        // SAFETY: the entry is built here and carries no pointers.
        unsafe { self.push(&entry) }
    }

    /// Hands every queued request to the kernel now: `true` only if it took them all (a refusal
    /// leaves the rest for the next enter).
    pub(crate) fn submit_all(&mut self) -> bool {
        self.submit();
        self.ring.submission().is_empty()
    }

    /// The optional opcodes this kernel has.
    pub(crate) fn opcodes(&self) -> Opcodes {
        self.opcodes
    }

    /// Requests pushed and not reaped yet.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Whether the kernel lost track of a request (see [`Ring::broken`]'s field).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Pushes one request, first handing the queued ones to the kernel if the submission queue
    /// is full. Returns `false` (and pushes nothing) only if the kernel took none of them
    /// (`EBUSY`/`EAGAIN`: it wants completions reaped first); the caller keeps the request and
    /// pushes it after the next reap.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must stay valid (and, for buffers the kernel writes, unaliased)
    /// until the request's completion has been reaped.
    pub(crate) unsafe fn push(&mut self, entry: &squeue::Entry) -> bool {
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

    /// Hands the queued submissions to the kernel without waiting, lets it post completions
    /// whose work is pending (IORING_SQ_TASKRUN) and moves overflowed completions into the
    /// queue (IORING_SQ_CQ_OVERFLOW). No system call when there is none of these.
    pub(crate) fn submit(&mut self) {
        #[cfg(test)]
        if tests::refuse_submit() {
            return; // as if the kernel answered EAGAIN and took nothing
        }
        let sq = self.ring.submission();
        if sq.is_empty() && !sq.taskrun() && !sq.cq_overflow() {
            return;
        }
        drop(sq);
        // With either flag set the crate adds IORING_ENTER_GETEVENTS, which runs that work and
        // flushes the overflow list.
        let result = self.ring.submit();
        self.check_enter(result);
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
        self.check_enter(result);
    }

    /// Whether a [`Ring::reap`] would find anything: a completion in the queue, completion work
    /// pending (IORING_SQ_TASKRUN), completions on the overflow list, or a lost completion to
    /// report. Reads the ring's shared memory only (no system call).
    pub(crate) fn has_ready(&mut self) -> bool {
        let sq = self.ring.submission();
        if sq.taskrun() || sq.cq_overflow() {
            return true;
        }
        drop(sq);
        let cq = self.ring.completion();
        !cq.is_empty() || cq.overflow() != 0
    }

    /// Gets the queue ready for [`Ring::pop`]: lets the kernel post the completions whose work
    /// is pending (IORING_SQ_TASKRUN) and move those it kept on its overflow list while the
    /// queue was full into it (IORING_SQ_CQ_OVERFLOW). A reap is `begin_reap`, `pop` until
    /// `None`, and again while [`Ring::overflowed`] (and the last pass reaped any).
    pub(crate) fn begin_reap(&mut self) {
        let sq = self.ring.submission();
        let enter = sq.taskrun() || sq.cq_overflow();
        drop(sq);
        if enter {
            self.submit();
        }
        let dropped = self.ring.completion().overflow();
        if dropped != 0 && !self.broken {
            // With NODROP the kernel counts here only the completions it could not keep (it
            // failed to allocate their overflow entries).
            self.broken = true;
            panic!(
                "the kernel dropped {dropped} io_uring completions (out of memory): the ops \
                 they ended can never be accounted for"
            );
        }
    }

    /// Takes the oldest completion in the queue, if any (handing its entry back to the kernel).
    pub(crate) fn pop(&mut self) -> Option<Cqe> {
        let cqe = self.ring.completion().next()?;
        // Another ring's wake-up was never pushed here: it is not outstanding.
        if cqe.user_data() != crate::wakeup::MSG_WAKE {
            self.outstanding -= 1;
        }
        Some((cqe.user_data(), cqe.result()))
    }

    /// Whether completions wait on the kernel's overflow list: the queue has room for them once
    /// it is drained, and the next [`Ring::begin_reap`] moves them in.
    pub(crate) fn overflowed(&mut self) -> bool {
        self.ring.submission().cq_overflow()
    }

    /// Accepts the `io_uring_enter` results that are part of normal operation: a timeout
    /// (`ETIME`), a signal (`EINTR`), or the kernel asking us to reap first (`EBUSY`, `EAGAIN`:
    /// what it did not take stays queued for the next enter). Anything else means the ring is
    /// unusable (`EBADR`: the kernel dropped a completion), which no caller can recover from.
    fn check_enter(&mut self, result: io::Result<usize>) {
        if let Err(err) = result {
            match err.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                // Tear-down after the first failure does not wait on the ring again.
                _ if self.broken => {}
                _ => {
                    self.broken = true;
                    panic!("io_uring_enter failed: {err}");
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    thread_local! {
        /// How many of this thread's next `Ring::submit` calls the "kernel" refuses, taking
        /// nothing (a passing `EAGAIN`: no memory for a request right now).
        static REFUSALS: Cell<u32> = const { Cell::new(0) };
    }

    thread_local! {
        /// Rings built on this thread pretend the kernel has none of the optional opcodes.
        static NO_OPCODES: Cell<bool> = const { Cell::new(false) };
    }

    /// Makes the rings built on this thread from now on use their fallbacks (`on`), or the
    /// opcodes the kernel has.
    pub(crate) fn pretend_no_opcodes_on_this_thread(on: bool) {
        NO_OPCODES.with(|no| no.set(on));
    }

    pub(super) fn pretend_no_opcodes() -> bool {
        NO_OPCODES.with(Cell::get)
    }

    /// Makes the next `count` submits on this thread be refused.
    pub(crate) fn refuse_submits(count: u32) {
        REFUSALS.with(|refusals| refusals.set(count));
    }

    pub(super) fn refuse_submit() -> bool {
        REFUSALS.with(|refusals| {
            let left = refusals.get();
            refusals.set(left.saturating_sub(1));
            left > 0
        })
    }
}
