//! Ops on the virtual clock. No real file or socket is ever touched: [`Op::Nop`] completes, every
//! other op is refused with the typed [`Unsupported`], at once (the simulated disk and network
//! will serve them here).

use io_core::{Completion, Op, Unsupported};

/// Completes `op` at once.
pub(crate) fn perform(op: Op) -> Completion {
    let result = match op {
        Op::Nop => Ok(0),
        ref other => Err(Unsupported::io_error("fiber", other.name())),
    };
    Completion { result, op }
}
