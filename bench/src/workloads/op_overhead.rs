//! op-overhead: the protocol's `Op::Nop`, one at a time, N of them: what a backend adds to an
//! op that does nothing. On uring each NOP is a real SQE and CQE, so the floor is the io-uring
//! crate driving a ring directly with the same shape (push one, submit and wait, reap).

use ioswap::protocol::op::Op;
use ioswap::Backend;

use super::{check, Measurement, Size, Unit, Workload};
use crate::runner::{timed, Runner};
use crate::BenchError;

pub const WORKLOAD: Workload = Workload {
    name: "op-overhead",
    what: "1M Op::Nop submitted one at a time by one task",
    unit: Unit::NsPerOp,
    opt_in: &[Runner::RawIoUring, Runner::Monoio, Runner::Compio],
    warm_up: true,
    skip: |runner| match runner {
        Runner::Ioswap(_) | Runner::RawIoUring => None,
        Runner::Monoio | Runner::Compio => {
            Some("no NOP op in its public API: its ops are its own I/O types (see tcp-echo)")
        }
        _ => Some("no op-submission interface: its I/O is readiness-based"),
    },
    note: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => Some("performed inline in submit: no system call"),
        Runner::Ioswap(Backend::Fiber) => Some("completes at once in submit: no system call"),
        Runner::Ioswap(Backend::Uring) => Some("one NOP SQE per op, one io_uring_enter each"),
        Runner::Ioswap(Backend::Poll) => Some("completes at once in submit: no system call"),
        Runner::RawIoUring => {
            Some("floor: io-uring crate, push one NOP, submit_and_wait(1), reap; no executor")
        }
        _ => None,
    },
    counted: true,
    measure,
};

fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let n = size.ops;
    let (done, wall) = timed(|| -> Result<usize, BenchError> {
        match runner {
            Runner::Ioswap(backend) => Ok(backend.run(move |cx| async move {
                let mut done = 0;
                for _ in 0..n {
                    done += usize::from(matches!(cx.submit(Op::Nop).await.result, Ok(0)));
                }
                Ok(done)
            })?),
            Runner::RawIoUring => crate::uring_floor::raw_nops(n as u64)
                .map(|done| done as usize)
                .map_err(|error| BenchError::Peer(format!("raw io-uring: {error}"))),
            _ => unreachable!("op-overhead runs on ioswap and its raw floor only"),
        }
    });
    let done = done?;
    check(
        done == n,
        WORKLOAD.name,
        runner,
        format!("{done} of {n} NOPs completed with Ok(0)"),
    )?;
    Ok(Measurement::per_op(wall, n))
}
