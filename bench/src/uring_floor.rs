//! The floor under `UringIo`'s per-op cost: the io-uring crate used directly, with no executor, no
//! tasks and no op bookkeeping. The one module of the bench that needs `unsafe` (pushing an SQE).
#![allow(unsafe_code)]

use io_uring::{opcode, IoUring};

/// Runs `count` NOPs one at a time on a fresh ring — push one SQE, `submit_and_wait(1)`, reap
/// its CQE — the same shape as one task submitting `Op::Nop` after `Op::Nop` through `UringIo`.
/// Returns how many NOPs completed successfully (all of them, unless the kernel misbehaves).
pub fn raw_nops(count: u64) -> std::io::Result<u64> {
    let mut ring = IoUring::new(io_uring_backend::DEFAULT_SQ_ENTRIES)?;
    let mut completed = 0;
    for i in 0..count {
        let entry = opcode::Nop::new().build().user_data(i);
        // SAFETY: a NOP carries no pointers, so nothing it refers to can be freed under the
        // kernel; the queue has room, since each NOP is reaped before the next is pushed.
        unsafe { ring.submission().push(&entry) }
            .map_err(|_| std::io::Error::other("the submission queue is full"))?;
        ring.submit_and_wait(1)?;
        for cqe in ring.completion() {
            completed += u64::from(cqe.user_data() == i && cqe.result() == 0);
        }
    }
    Ok(completed)
}
