//! Offloaded work, simulated: name lookups from the world's host table, `spawn_blocking`
//! closures run on the loop's thread at a turn the seed chooses, and each host's standard
//! streams.
//!
//! - **Lookups**: a host's name (as [`World`](super::World) declared it, any case) resolves to
//!   its `10.0.0.N`; `localhost` to `127.0.0.1`; an IP literal to itself, at once. A name takes
//!   one network latency (a resolver on the LAN); an unknown name fails with `NotFound`
//!   ([`no_address`]). As on the real backends ([`Offload::detaches_on_cancel`]), a cancel
//!   completes the caller at once as canceled, and the lookup's result is dropped.
//! - **Blocking closures** run inline on the loop's thread (never a real thread), at an event
//!   [`Faults::blocking_ms`](super::Faults::blocking_ms) virtual ms later (10 ms in a healthy
//!   world; drawn from the seed in a range otherwise), and complete then. A cancel completes
//!   the caller at once as canceled ([`Offload::detaches_on_cancel`]); the closure still runs
//!   at its turn and its output is dropped (so does a closure whose future was dropped). A
//!   closure of a host that crashes before its turn never runs. **A closure must not wait for
//!   the async side** (a channel another task sends on, a socket a task serves): nothing else
//!   runs while it does, so it waits for ever, or until its own timeout, with no deadlock
//!   report (the driver cannot see into a closure; a wall-clock watchdog would break
//!   determinism). Give such a closure what it needs before spawning it, or use an async
//!   primitive instead.
//! - **Standard streams**: stdin reads from the host's input, set with
//!   [`World::stdin`](super::World::stdin) or [`FiberIo::stdin`](crate::FiberIo::stdin), up to
//!   the buffer's capacity (at least one byte, as on the real backends); once it is used up,
//!   reads give 0 (end of file). Writes to stdout and
//!   stderr are captured per host, whole, and read back from
//!   [`WorldReport`](super::WorldReport) or [`FiberIo::stdout`](crate::FiberIo::stdout).

use io_core::offload::{no_address, Blocking, Offload, StdStream};
use io_core::op::Op;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{HostId, Reply, State, Then};

/// Serves offloaded work other than the file system's for `host`.
pub(super) fn submit(state: &mut State, host: HostId, mut op: Op) -> Reply {
    let Op::Offload(work) = &mut op else {
        return Reply::Done(Err(io_core::Unsupported::io_error("fiber", op.name())), op);
    };
    match work {
        Offload::Resolve {
            host: name,
            port,
            addrs,
        } => {
            if let Ok(ip) = name.parse::<IpAddr>() {
                *addrs = vec![SocketAddr::new(ip, *port)];
                return Reply::Done(Ok(0), op);
            }
            let ip = if name.eq_ignore_ascii_case("localhost") {
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            } else {
                state
                    .hosts
                    .iter()
                    .skip(1)
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.ip)
            };
            let result = match ip {
                Some(ip) => {
                    *addrs = vec![SocketAddr::new(ip, *port)];
                    Ok(0)
                }
                None => Err(no_address(name)),
            };
            let (lo, hi) = state.faults.net.latency_ms;
            let delay = state.between(lo, hi);
            Reply::Wait(op, Then::After(delay, result))
        }
        Offload::Blocking(_) => {
            let (lo, hi) = state.faults.blocking_ms;
            let delay = state.between(lo, hi);
            Reply::Wait(op, Then::Run(delay))
        }
        Offload::Stdio(stdio) => {
            let streams = &mut state.hosts[host].stdio;
            let n = match stdio.stream {
                StdStream::In => {
                    // Room for one byte at least, as the real backends give a buffer of no
                    // capacity: 0 must mean the end of the input, never "no room".
                    let n = stdio.buf_mut().capacity().max(1).min(streams.stdin.len());
                    let buf = stdio.buf_mut();
                    buf.clear();
                    buf.extend(streams.stdin.drain(..n));
                    n
                }
                StdStream::Out => {
                    streams.stdout.extend_from_slice(stdio.buf());
                    stdio.buf().len()
                }
                StdStream::Err => {
                    streams.stderr.extend_from_slice(stdio.buf());
                    stdio.buf().len()
                }
            };
            Reply::Done(Ok(n), op)
        }
        _ => Reply::Done(Err(io_core::Unsupported::io_error("fiber", op.name())), op),
    }
}

/// What a canceled caller of a detaching job gets back: an empty job of the same kind.
pub(super) fn shell(op: &Op) -> Op {
    let mut empty = Blocking::new(|| ());
    empty.run();
    drop(empty.take_output());
    match op {
        Op::Offload(Offload::Stdio(stdio)) => Op::Offload(Offload::Stdio(
            io_core::offload::Stdio::new(stdio.stream, Vec::new()),
        )),
        Op::Offload(Offload::Resolve { host, port, .. }) => Op::Offload(Offload::Resolve {
            host: host.clone(),
            port: *port,
            addrs: Vec::new(),
        }),
        _ => Op::Offload(Offload::Blocking(empty)),
    }
}

/// Runs a blocking closure (the op's, if it is one).
pub(super) fn run(op: &mut Op) {
    if let Op::Offload(Offload::Blocking(job)) = op {
        job.run();
    }
}

/// Whether `op` is a blocking closure still to run (it runs at its turn, even once its caller
/// has gone).
pub(super) fn runs_later(op: &Op) -> bool {
    matches!(op, Op::Offload(Offload::Blocking(job)) if job.is_pending())
}

/// Whether `op` is work a cancel detaches from (see [`Offload::detaches_on_cancel`]).
pub(super) fn detaches(op: &Op) -> bool {
    matches!(op, Op::Offload(work) if work.detaches_on_cancel())
}

#[cfg(test)]
mod tests {
    use io_core::op::Submitted;

    use super::*;
    use crate::sim::Sim;

    /// A lookup of `localhost` in flight on `sim` (it waits out one network latency).
    fn lookup(sim: &Sim) -> (io_core::OpId, io_core::OpSlot) {
        let op = Op::Offload(Offload::Resolve {
            host: "localhost".into(),
            port: 80,
            addrs: Vec::new(),
        });
        match sim.submit(0, 0, op, 0) {
            Submitted::InFlight { id, slot } => (id, slot),
            Submitted::Done(_) => unreachable!("a name takes a latency"),
        }
    }

    #[test]
    fn a_lookup_canceled_or_dropped_leaves_nothing_behind() {
        let sim = Sim::new(0);
        let (id, slot) = lookup(&sim);
        sim.cancel_op(id);
        let done = slot
            .take()
            .expect("canceled at once, not after the latency");
        assert!(done
            .result
            .is_err_and(|err| io_core::Canceled::is_canceled(&err)));
        let (id, _slot) = lookup(&sim);
        sim.discard_op(id);
        let state = sim.state.borrow();
        assert!(
            state.ops.is_empty() && state.detached.is_empty(),
            "nothing kept"
        );
    }
}
