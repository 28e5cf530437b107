//! The floor under [`UringIo`](crate::UringIo)'s per-op cost: the io-uring crate used directly,
//! with no executor, no tasks and no op bookkeeping. `bench/` measures `UringIo` against it (the
//! bench crate forbids `unsafe`, and pushing an SQE takes it, so the loop lives here).

use io_uring::{opcode, IoUring};

use crate::UringError;

/// Runs `count` NOPs one at a time on a fresh ring — push one SQE, `submit_and_wait(1)`, reap
/// its CQE — the same shape as one task submitting `Op::Nop` after `Op::Nop` through `UringIo`.
/// Returns how many NOPs completed successfully (all of them, unless the kernel misbehaves).
///
/// ```
/// use io_uring_backend::{floor, UringIo};
///
/// if UringIo::probe().is_ok() {
///     assert_eq!(floor::raw_nops(100).unwrap(), 100);
/// }
/// ```
pub fn raw_nops(count: u64) -> Result<u64, UringError> {
    let mut ring = IoUring::new(crate::DEFAULT_SQ_ENTRIES).map_err(|e| UringError::from_io(&e))?;
    let mut completed = 0;
    for i in 0..count {
        let entry = opcode::Nop::new().build().user_data(i);
        // SAFETY: a NOP carries no pointers, so nothing it refers to can be freed under the
        // kernel; the queue has room, since each NOP is reaped before the next is pushed.
        unsafe { ring.submission().push(&entry) }.map_err(|_| UringError::Setup {
            errno: 0,
            message: "the submission queue is full".to_string(),
        })?;
        ring.submit_and_wait(1)
            .map_err(|e| UringError::from_io(&e))?;
        for cqe in ring.completion() {
            completed += u64::from(cqe.user_data() == i && cqe.result() == 0);
        }
    }
    Ok(completed)
}
