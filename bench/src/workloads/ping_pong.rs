//! ping-pong: two tasks and two channels, a value sent one way and back, N round trips.
//!
//! Two workloads: `ping-pong` on channels of capacity 1 (ioswap's `bounded(1)`, tokio's
//! `mpsc::channel(1)`, async-channel's `bounded(1)` on smol), and `ping-pong-rendezvous` on
//! ioswap's `bounded(0)`, where a send completes only once the receiver has taken the value — a
//! channel the peers do not have, so it is reported on its own.

use ioswap::{Backend, Canceled};

use super::{check, why, Measurement, Size, Unit, Workload};
use crate::runner::{self, timed, Runner, TokioClock};
use crate::BenchError;

pub const BOUNDED: Workload = Workload {
    name: "ping-pong",
    what: "two tasks, two channels of capacity 1, 100k round trips",
    unit: Unit::NsPerOp,
    opt_in: &[],
    warm_up: true,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => Some(why::INLINE_NO_CONCURRENCY),
        _ => None,
    },
    note: |runner| match runner {
        Runner::Ioswap(_) => Some("ioswap::channel::bounded(&cx, 1)"),
        Runner::Tokio => Some("tokio::sync::mpsc::channel(1)"),
        Runner::Smol => Some("async_channel::bounded(1)"),
        _ => None,
    },
    counted: true,
    measure: measure_bounded,
};

pub const RENDEZVOUS: Workload = Workload {
    name: "ping-pong-rendezvous",
    what: "two tasks, two rendezvous channels (capacity 0), 100k round trips",
    unit: Unit::NsPerOp,
    opt_in: &[],
    warm_up: true,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => Some(why::INLINE_NO_CONCURRENCY),
        Runner::Ioswap(_) => None,
        Runner::Tokio => Some("no rendezvous channel (mpsc::channel(0) panics): see ping-pong"),
        _ => Some("no rendezvous channel (async_channel::bounded(0) panics): see ping-pong"),
    },
    note: |runner| match runner {
        Runner::Ioswap(_) => {
            Some("ioswap::channel::bounded(&cx, 0): each send waits for its receiver")
        }
        _ => None,
    },
    counted: true,
    measure: measure_rendezvous,
};

fn measure_bounded(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    measure(BOUNDED.name, 1, runner, size)
}

fn measure_rendezvous(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    measure(RENDEZVOUS.name, 0, runner, size)
}

/// The pinger sends 0..n and checks each value comes back; the ponger returns what it got.
/// Both count their round trips, so the check sees every one that completed.
fn measure(
    name: &str,
    capacity: usize,
    runner: Runner,
    size: &Size,
) -> Result<Measurement, BenchError> {
    let n = size.round_trips;
    let (trips, wall) = timed(|| -> Result<(usize, usize), BenchError> {
        match runner {
            Runner::Ioswap(backend) => Ok(backend.run(move |cx| async move {
                let (to_pong, from_ping) = ioswap::channel::bounded(&cx, capacity);
                let (to_ping, from_pong) = ioswap::channel::bounded(&cx, capacity);
                let ponger = cx.spawn(move |_| async move {
                    let mut echoed = 0;
                    while let Ok(v) = from_ping.recv().await {
                        if to_ping.send(v).await.is_err() {
                            break;
                        }
                        echoed += 1;
                    }
                    Ok(echoed)
                });
                let pinger = cx.spawn(move |_| async move {
                    let mut trips = 0;
                    for i in 0..n {
                        if to_pong.send(i).await.is_err() || from_pong.recv().await != Ok(i) {
                            break;
                        }
                        trips += 1;
                    }
                    Ok::<_, Canceled>(trips)
                });
                let trips = pinger.await?;
                Ok((trips, ponger.await?))
            })?),
            Runner::Tokio => runner::tokio_local(TokioClock::Real, async move {
                let (to_pong, mut from_ping) = tokio::sync::mpsc::channel(1);
                let (to_ping, mut from_pong) = tokio::sync::mpsc::channel(1);
                let ponger = tokio::task::spawn_local(async move {
                    let mut echoed = 0;
                    while let Some(v) = from_ping.recv().await {
                        if to_ping.send(v).await.is_err() {
                            break;
                        }
                        echoed += 1;
                    }
                    echoed
                });
                let pinger = tokio::task::spawn_local(async move {
                    let mut trips = 0;
                    for i in 0..n {
                        if to_pong.send(i).await.is_err() || from_pong.recv().await != Some(i) {
                            break;
                        }
                        trips += 1;
                    }
                    trips
                });
                let trips = pinger.await.map_err(runner::tokio_join)?;
                Ok((trips, ponger.await.map_err(runner::tokio_join)?))
            })?,
            Runner::Smol => Ok(runner::smol_local(|executor| async move {
                let (to_pong, from_ping) = async_channel::bounded(1);
                let (to_ping, from_pong) = async_channel::bounded(1);
                let ponger = executor.spawn(async move {
                    let mut echoed = 0;
                    while let Ok(v) = from_ping.recv().await {
                        if to_ping.send(v).await.is_err() {
                            break;
                        }
                        echoed += 1;
                    }
                    echoed
                });
                let pinger = executor.spawn(async move {
                    let mut trips = 0;
                    for i in 0..n {
                        if to_pong.send(i).await.is_err() || from_pong.recv().await != Ok(i) {
                            break;
                        }
                        trips += 1;
                    }
                    trips
                });
                let trips = pinger.await;
                (trips, ponger.await)
            })),
            Runner::AsyncTask
            | Runner::RawIoUring
            | Runner::StdPread
            | Runner::IoswapSim
            | Runner::Turmoil
            | Runner::Monoio
            | Runner::Compio => {
                unreachable!("ping-pong has no floor runner")
            }
        }
    });
    let (trips, echoed) = trips?;
    check(
        trips == n && echoed == n,
        name,
        runner,
        format!("{trips} round trips and {echoed} echoes of {n}"),
    )?;
    Ok(Measurement::per_op(wall, n))
}
