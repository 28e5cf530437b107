//! The simulator's speed: how much simulated work a wall second buys.
//!
//! sim-echo: a client host and a server host on a simulated network with 1 ms of one-way
//! latency; 64 connections, each sending 64-byte messages one at a time and waiting for each
//! echo. The same shape runs through ioswap's simulated world and through turmoil's; the figure
//! is the wall time per simulated message (the table's note gives its inverse, messages per wall
//! second).
//!
//! Under sim-echo, fiber runs the floor: the same shape on the plain fiber backend with no
//! network model, each message a write op (`Op::Nop`, done at once as a simulated send with room
//! is) and a hand-over through a channel to a task waiting for it (a park, a wake and a task
//! switch, as a simulated read that waits). What ioswap-sim costs beyond it is the simulated
//! network's; what it costs is the executor's and the protocol's, which no simulator built on
//! them can go below.
//!
//! sim-hour: one simulated hour of a 3-host service on ioswap's world: a client sends 1,000
//! requests per simulated second, one each millisecond, to two servers in turn, and waits for
//! each response. The figure is the wall seconds that hour takes.

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use ioswap::protocol::op::Op;
use ioswap::sim::{Control, Faults, Outcome, World};
use ioswap::{Backend, Cx, TcpListener, TcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{check, why, Measurement, Size, Unit, Workload, HOUR_MS};
use crate::runner::{timed, Runner};
use crate::BenchError;

/// Concurrent connections.
const CONNECTIONS: usize = 64;
/// Bytes per message.
const MESSAGE: usize = 64;
/// The port the echo server listens on.
const PORT: u16 = 7000;
/// Both worlds draw their choices from this seed.
const SEED: u64 = 11;

pub const ECHO: Workload = Workload {
    name: "sim-echo",
    what: "simulated TCP echo, 1 ms one-way latency: 64 connections × 2,000 messages of 64 B, one at a time each",
    unit: Unit::NsPerOp,
    opt_in: &[Runner::IoswapSim, Runner::Turmoil],
    warm_up: false,
    skip: |runner| match runner {
        Runner::IoswapSim | Runner::Turmoil | Runner::Ioswap(Backend::Fiber) => None,
        _ => Some(why::NOT_A_SIMULATOR),
    },
    note: |runner| match runner {
        Runner::IoswapSim => Some("ioswap::sim::World, Faults::none()"),
        Runner::Turmoil => Some("turmoil Sim, 1 ms ticks, tokio echo server"),
        Runner::Ioswap(Backend::Fiber) => Some(
            "floor, no network model: plain fiber, each message an Op::Nop write and a channel hand-over to a waiting task, both ways",
        ),
        _ => None,
    },
    counted: false,
    measure: measure_echo,
};

pub const HOUR: Workload = Workload {
    name: "sim-hour",
    what: "one simulated hour of 3 hosts: a client sends 1,000 requests per simulated second to 2 servers in turn",
    unit: Unit::WallSecondsPerSimulatedHour,
    opt_in: &[Runner::IoswapSim, Runner::Turmoil],
    warm_up: false,
    skip: |runner| match runner {
        Runner::IoswapSim => None,
        Runner::Turmoil => Some("ioswap's world only: sim-echo compares the two"),
        _ => Some(why::NOT_A_SIMULATOR),
    },
    note: |runner| match runner {
        Runner::IoswapSim => Some("ioswap::sim::World, Faults::none(), 64 B requests and responses"),
        _ => None,
    },
    counted: false,
    measure: measure_hour,
};

fn measure_echo(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let messages = size.messages;
    let (echoed, wall) = timed(|| match runner {
        Runner::IoswapSim => on_ioswap(messages),
        Runner::Turmoil => on_turmoil(messages),
        Runner::Ioswap(Backend::Fiber) => on_fiber_floor(messages),
        _ => unreachable!("sim-echo runs on the simulators and its fiber floor only"),
    });
    let echoed = echoed?;
    let total = CONNECTIONS * messages;
    check(
        echoed == total,
        ECHO.name,
        runner,
        format!("{echoed} of {total} messages echoed"),
    )?;
    Ok(Measurement::per_op(wall, total))
}

fn on_ioswap(messages: usize) -> Result<usize, BenchError> {
    let echoed = Rc::new(Cell::new(0));
    let total = echoed.clone();
    World::new(SEED)
        .faults(Faults::none())
        .host("server", echo_host)
        .client("client", move |cx, world| async move {
            let server = world.addr("server", PORT);
            let connections: Vec<_> = (0..CONNECTIONS)
                .map(|i| {
                    cx.spawn(move |cx| async move { Ok(client(cx, server, i, messages).await) })
                })
                .collect();
            for connection in connections {
                total.set(total.get() + connection.await??);
            }
            Ok(())
        })
        .run()
        .map_err(|error| BenchError::Peer(error.to_string()))?;
    Ok(echoed.get())
}

/// The ioswap server: echoes every connection until its peer closes.
async fn echo_host(cx: Cx, _world: Control) -> Outcome {
    let listener = TcpListener::bind(&cx, SocketAddr::from(([0, 0, 0, 0], PORT))).await?;
    loop {
        let (conn, _) = listener.accept().await?;
        cx.spawn(move |_| async move {
            // An error ends this connection only; the client's count tells.
            let _ = echo(conn).await;
            Ok(())
        })
        .detach();
    }
}

async fn echo(conn: TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (n, back) = conn.read(buf).await;
        if n? == 0 {
            return conn.close().await;
        }
        let (sent, back) = conn.write_all(back).await;
        sent?;
        buf = back;
    }
}

/// One ioswap client connection; returns how many echoes came back intact.
async fn client(cx: Cx, server: SocketAddr, i: usize, messages: usize) -> io::Result<usize> {
    let conn = TcpStream::connect(&cx, server).await?;
    let expected = vec![i as u8; MESSAGE];
    let mut message = expected.clone();
    let mut reply = Vec::with_capacity(MESSAGE);
    let mut received = Vec::with_capacity(MESSAGE);
    let mut echoed = 0;
    for _ in 0..messages {
        let (sent, back) = conn.write_all(message).await;
        sent?;
        message = back;
        received.clear();
        while received.len() < MESSAGE {
            let (n, back) = conn.read(reply).await;
            if n? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            received.extend_from_slice(&back);
            reply = back;
        }
        echoed += usize::from(received == expected);
    }
    conn.close().await?;
    Ok(echoed)
}

/// The floor: sim-echo's 64 clients and their echo tasks on plain fiber, with no network model.
/// Each write is an `Op::Nop` through the protocol (a simulated send with room completes at once
/// in submit, as a NOP does), and each message goes through a channel of capacity 1 to a task
/// waiting for it (as a simulated read waits for a segment, then is readied and run).
fn on_fiber_floor(messages: usize) -> Result<usize, BenchError> {
    Backend::Fiber
        .run(move |cx| async move {
            let connections: Vec<_> = (0..CONNECTIONS)
                .map(|i| {
                    let (to_server, from_client) = ioswap::channel::bounded(&cx, 1);
                    let (to_client, from_server) = ioswap::channel::bounded(&cx, 1);
                    cx.spawn(move |cx| async move {
                        while let Ok(message) = from_client.recv().await {
                            if !write(&cx).await || to_client.send(message).await.is_err() {
                                break;
                            }
                        }
                        Ok(())
                    })
                    .detach();
                    cx.spawn(move |cx| async move {
                        let expected = vec![i as u8; MESSAGE];
                        let mut message = expected.clone();
                        let mut echoed = 0;
                        for _ in 0..messages {
                            if !write(&cx).await || to_server.send(message).await.is_err() {
                                break;
                            }
                            let Ok(reply) = from_server.recv().await else {
                                break;
                            };
                            echoed += usize::from(reply == expected);
                            message = reply;
                        }
                        Ok(echoed)
                    })
                })
                .collect();
            let mut echoed = 0;
            for connection in connections {
                echoed += connection.await?;
            }
            Ok(echoed)
        })
        .map_err(|error| BenchError::Peer(format!("fiber floor: {error}")))
}

/// One write of the floor: an op through the protocol that completes at once.
async fn write(cx: &Cx) -> bool {
    cx.submit(Op::Nop).await.result.is_ok()
}

fn on_turmoil(messages: usize) -> Result<usize, BenchError> {
    let latency = Duration::from_millis(1);
    let mut sim = turmoil::Builder::new()
        .min_message_latency(latency)
        .max_message_latency(latency)
        // Long enough for any size: the run ends when the client returns.
        .simulation_duration(Duration::from_secs(24 * 3600))
        .rng_seed(SEED)
        .build();
    sim.host("server", || async {
        let any = (IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT);
        let listener = turmoil::net::TcpListener::bind(any).await?;
        loop {
            let (mut conn, _) = listener.accept().await?;
            tokio::task::spawn_local(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = conn.read(&mut buf).await?;
                    if n == 0 {
                        return io::Result::Ok(());
                    }
                    conn.write_all(&buf[..n]).await?;
                }
            });
        }
    });
    let echoed = Rc::new(Cell::new(0));
    let total = echoed.clone();
    sim.client("client", async move {
        let connections: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                tokio::task::spawn_local(async move {
                    let mut conn = turmoil::net::TcpStream::connect(("server", PORT)).await?;
                    let message = vec![i as u8; MESSAGE];
                    let mut reply = vec![0u8; MESSAGE];
                    let mut echoed = 0;
                    for _ in 0..messages {
                        conn.write_all(&message).await?;
                        conn.read_exact(&mut reply).await?;
                        echoed += usize::from(reply == message);
                    }
                    conn.shutdown().await?;
                    io::Result::Ok(echoed)
                })
            })
            .collect();
        for connection in connections {
            total.set(total.get() + connection.await??);
        }
        Ok(())
    });
    sim.run()
        .map_err(|error| BenchError::Peer(format!("turmoil: {error}")))?;
    Ok(echoed.get())
}

/// sim-hour's client keeps this many connections, each sending every `LANES`-th millisecond: a
/// round trip (2 ms) fits between two of its requests.
const LANES: u64 = 4;
/// The first request leaves at this virtual time (the connections are up by then).
const START_MS: u64 = 10;

fn measure_hour(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let span_ms = size.simulated_ms;
    let answered = Rc::new(Cell::new(0u64));
    let total = answered.clone();
    let (report, wall) = timed(|| {
        World::new(SEED)
            .faults(Faults::none())
            .host("server-1", echo_host)
            .host("server-2", echo_host)
            .client("client", move |cx, world| async move {
                let servers = [world.addr("server-1", PORT), world.addr("server-2", PORT)];
                // Lane l sends at START_MS + l, + LANES, …: one request per millisecond in all,
                // to the two servers in turn.
                let lanes: Vec<_> = (0..LANES)
                    .map(|lane| {
                        let server = servers[(lane % 2) as usize];
                        cx.spawn(move |cx| async move {
                            Ok(requester(cx, server, START_MS + lane, START_MS + span_ms).await)
                        })
                    })
                    .collect();
                for lane in lanes {
                    total.set(total.get() + lane.await??);
                }
                Ok(())
            })
            .run()
    });
    let report = report.map_err(|error| BenchError::Peer(error.to_string()))?;
    let answered = answered.get();
    check(
        answered == span_ms && report.now_ms >= START_MS + span_ms,
        HOUR.name,
        runner,
        format!(
            "{answered} of {span_ms} requests answered, by {} ms",
            report.now_ms
        ),
    )?;
    Ok(Measurement::other(
        wall.as_secs_f64() * HOUR_MS as f64 / span_ms as f64,
        wall,
    ))
}

/// One of sim-hour's client connections: a request at `first`, then every `LANES` ms before
/// `end`, each waiting for its response; returns how many came back intact.
async fn requester(cx: Cx, server: SocketAddr, first: u64, end: u64) -> io::Result<u64> {
    let conn = TcpStream::connect(&cx, server).await?;
    let mut request = vec![first as u8; MESSAGE];
    let mut reply = Vec::with_capacity(MESSAGE);
    let mut received = Vec::with_capacity(MESSAGE);
    let mut answered = 0;
    for at in (first..end).step_by(LANES as usize) {
        cx.sleep_until(at).await?;
        request.fill(at as u8);
        let (sent, back) = conn.write_all(request).await;
        sent?;
        request = back;
        received.clear();
        while received.len() < MESSAGE {
            let (n, back) = conn.read(reply).await;
            if n? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            received.extend_from_slice(&back);
            reply = back;
        }
        answered += u64::from(received == request);
    }
    conn.close().await?;
    Ok(answered)
}
