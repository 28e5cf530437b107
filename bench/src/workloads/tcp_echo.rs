//! tcp-echo: 64 connections over loopback, each sending 1 KiB messages one at a time and
//! waiting for each echo. The server and the clients run on two threads, each with its own
//! runtime of the runner's kind (ioswap backend, or tokio current-thread + `LocalSet`), so the
//! two sides use the machine's two cores as a real client and server would.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;

use ioswap::{Backend, Cx, TcpListener, TcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{check, echo_peers, why, Measurement, Size, Unit, Workload};
use crate::runner::{self, timed, Runner, TokioClock};
use crate::BenchError;

/// Concurrent connections.
pub(super) const CONNECTIONS: usize = 64;
/// Bytes per message.
pub(super) const MESSAGE: usize = 1024;

pub const WORKLOAD: Workload = Workload {
    name: "tcp-echo",
    what: "TCP echo on 127.0.0.1: 64 connections × 2,000 messages of 1 KiB, one at a time each",
    unit: Unit::NsPerOp,
    opt_in: &[Runner::Monoio, Runner::Compio, Runner::RawIoUring],
    warm_up: false,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => Some(why::INLINE_NO_CONCURRENCY),
        Runner::Ioswap(Backend::Fiber) => Some(why::SIMULATED_IO),
        Runner::Ioswap(_)
        | Runner::Tokio
        | Runner::Monoio
        | Runner::Compio
        | Runner::RawIoUring => None,
        _ => Some("not measured: tokio, monoio and compio are this workload's peers"),
    },
    note: |runner| {
        match runner {
        Runner::Ioswap(_) => Some("ns per echoed message, server and clients on one thread each"),
        Runner::Tokio => Some("tokio::net, current_thread + LocalSet on each side"),
        Runner::Monoio => Some("monoio::net on its io_uring driver, one runtime on each side"),
        Runner::Compio => {
            Some("compio::net (io_uring, else its poll driver), one runtime on each side")
        }
        Runner::RawIoUring => Some(
            "floor: the io-uring crate on each side, no executor (registered descriptors, poll-first RECVs): a RECV or SEND in flight per connection, one io_uring_enter per turn",
        ),
        _ => None,
    }
    },
    counted: false,
    measure,
};

fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    measure_echo(WORKLOAD.name, runner, size, serve, clients)
}

/// Where an echo workload's server runs: it sends its address, then returns the bytes it echoed.
pub(super) type Server = fn(Runner, mpsc::Sender<SocketAddr>) -> Result<usize, String>;

/// Where an echo workload's clients run: they return how many messages came back.
pub(super) type Clients = fn(Runner, SocketAddr, usize) -> Result<usize, BenchError>;

/// One measurement of an echo workload: the server on its own thread, the clients against it,
/// every message and byte accounted for.
pub(super) fn measure_echo(
    workload: &str,
    runner: Runner,
    size: &Size,
    serve: Server,
    clients: Clients,
) -> Result<Measurement, BenchError> {
    let messages = size.messages;
    let (outcome, wall) = timed(|| -> Result<(usize, usize), BenchError> {
        let (addr_tx, addr_rx) = mpsc::channel();
        let server = std::thread::spawn(move || serve(runner, addr_tx));
        // If the server fails before it listens, its error says why: join it.
        let clients = match addr_rx.recv() {
            Ok(addr) => clients(runner, addr, messages),
            Err(_) => Err(BenchError::Peer("the server ended before listening".into())),
        };
        let served = server
            .join()
            .map_err(|_| BenchError::Peer("the server thread panicked".into()))?
            .map_err(BenchError::Peer);
        Ok((clients?, served?))
    });
    let (echoed, bytes) = outcome?;
    let total = CONNECTIONS * messages;
    check(
        echoed == total && bytes == total * MESSAGE,
        workload,
        runner,
        format!("{echoed} of {total} messages echoed, {bytes} bytes served"),
    )?;
    Ok(Measurement::per_op(wall, total))
}

/// The server: accepts every connection, echoes each until the client closes, returns the
/// bytes it echoed.
fn serve(runner: Runner, addr_tx: mpsc::Sender<SocketAddr>) -> Result<usize, String> {
    let localhost: SocketAddr = ([127, 0, 0, 1], 0).into();
    match runner {
        Runner::Ioswap(backend) => backend
            .run(move |cx| async move {
                let listener = match TcpListener::bind(&cx, localhost).await {
                    Ok(listener) => listener,
                    Err(error) => return Ok(Err(format!("bind: {error}"))),
                };
                if let Ok(addr) = listener.local_addr() {
                    let _ = addr_tx.send(addr);
                }
                drop(addr_tx);
                let mut sessions = Vec::with_capacity(CONNECTIONS);
                for _ in 0..CONNECTIONS {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            sessions.push(cx.spawn(move |_| async move { Ok(echo(stream).await) }))
                        }
                        Err(error) => return Ok(Err(format!("accept: {error}"))),
                    }
                }
                let mut bytes = 0;
                for session in sessions {
                    match session.await? {
                        Ok(n) => bytes += n,
                        Err(error) => return Ok(Err(format!("session: {error}"))),
                    }
                }
                Ok(Ok(bytes))
            })
            .map_err(|error| error.to_string())?,
        Runner::Tokio => runner::tokio_local(TokioClock::Real, async move {
            let listener = tokio::net::TcpListener::bind(localhost)
                .await
                .map_err(|error| format!("bind: {error}"))?;
            if let Ok(addr) = listener.local_addr() {
                let _ = addr_tx.send(addr);
            }
            drop(addr_tx);
            let mut sessions = Vec::with_capacity(CONNECTIONS);
            for _ in 0..CONNECTIONS {
                let (stream, _) = listener
                    .accept()
                    .await
                    .map_err(|error| format!("accept: {error}"))?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                sessions.push(tokio::task::spawn_local(tokio_echo(stream)));
            }
            let mut bytes = 0;
            for session in sessions {
                bytes += session
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|error| format!("session: {error}"))?;
            }
            Ok(bytes)
        })
        .map_err(|error| error.to_string())?,
        Runner::Monoio | Runner::Compio => echo_peers::serve(runner, 1, addr_tx),
        Runner::RawIoUring => {
            let streams = accept_std(localhost, addr_tx, CONNECTIONS)?;
            crate::uring_floor::raw_echo_server(streams).map_err(|error| format!("echo: {error}"))
        }
        _ => unreachable!("tcp-echo runs on ioswap, tokio, monoio, compio and the raw ring only"),
    }
}

/// A floor's server side: a blocking listener on `localhost` sends its address and accepts
/// `connections` connections (with `TCP_NODELAY`, as every runner sets), for a raw ring loop.
pub(super) fn accept_std(
    localhost: SocketAddr,
    addr_tx: mpsc::Sender<SocketAddr>,
    connections: usize,
) -> Result<Vec<std::net::TcpStream>, String> {
    let listener = std::net::TcpListener::bind(localhost).map_err(|e| format!("bind: {e}"))?;
    if let Ok(addr) = listener.local_addr() {
        let _ = addr_tx.send(addr);
    }
    drop(addr_tx);
    (0..connections)
        .map(|_| {
            let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            Ok(stream)
        })
        .collect()
}

/// One tokio session: echoes until the client closes, returns the bytes echoed.
pub(super) async fn tokio_echo(mut stream: tokio::net::TcpStream) -> io::Result<usize> {
    let mut buf = vec![0u8; 4096];
    let mut bytes = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(bytes);
        }
        stream.write_all(&buf[..n]).await?;
        bytes += n;
    }
}

/// One ioswap server session: echoes until the client closes; returns the bytes echoed.
pub(super) async fn echo(stream: TcpStream) -> io::Result<usize> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let mut bytes = 0;
    loop {
        let (n, back) = stream.read(buf).await;
        let n = n?;
        if n == 0 {
            stream.close().await?;
            return Ok(bytes);
        }
        let (sent, back) = stream.write_all(back).await;
        sent?;
        bytes += n;
        buf = back;
    }
}

/// The clients: every connection at once, each sending `messages` messages one at a time and
/// checking each echo; returns how many came back intact.
fn clients(runner: Runner, addr: SocketAddr, messages: usize) -> Result<usize, BenchError> {
    let failed = |error: io::Error| BenchError::Peer(format!("client: {error}"));
    match runner {
        Runner::Ioswap(backend) => {
            let results = backend.run(move |cx| async move {
                let clients: Vec<_> = (0..CONNECTIONS)
                    .map(|i| {
                        cx.spawn(move |cx| async move { Ok(client(cx, addr, i, messages).await) })
                    })
                    .collect();
                let mut results = Vec::with_capacity(CONNECTIONS);
                for client in clients {
                    results.push(client.await?);
                }
                Ok(results)
            })?;
            results
                .into_iter()
                .try_fold(0, |sum, r| r.map(|n| sum + n))
                .map_err(failed)
        }
        Runner::Tokio => runner::tokio_local(TokioClock::Real, async move {
            let clients: Vec<_> = (0..CONNECTIONS)
                .map(|i| {
                    tokio::task::spawn_local(async move {
                        let mut stream = tokio::net::TcpStream::connect(addr).await?;
                        stream.set_nodelay(true)?;
                        let message = vec![i as u8; MESSAGE];
                        let mut reply = vec![0u8; MESSAGE];
                        let mut echoed = 0;
                        for _ in 0..messages {
                            stream.write_all(&message).await?;
                            stream.read_exact(&mut reply).await?;
                            echoed += usize::from(reply == message);
                        }
                        stream.shutdown().await?;
                        io::Result::Ok(echoed)
                    })
                })
                .collect();
            let mut echoed = 0;
            for client in clients {
                echoed += client.await.map_err(runner::tokio_join)?.map_err(failed)?;
            }
            Ok(echoed)
        })?,
        Runner::Monoio | Runner::Compio => echo_peers::clients(runner, 1, addr, messages),
        Runner::RawIoUring => {
            crate::uring_floor::raw_echo_clients(addr, CONNECTIONS, messages, MESSAGE)
                .map_err(failed)
        }
        _ => unreachable!("tcp-echo runs on ioswap, tokio, monoio, compio and the raw ring only"),
    }
}

/// One ioswap client connection; returns how many echoes came back intact.
pub(super) async fn client(
    cx: Cx,
    addr: SocketAddr,
    i: usize,
    messages: usize,
) -> io::Result<usize> {
    let stream = TcpStream::connect(&cx, addr).await?;
    stream.set_nodelay(true)?;
    let expected = vec![i as u8; MESSAGE];
    let mut message = expected.clone();
    let mut reply = Vec::with_capacity(MESSAGE);
    let mut received = Vec::with_capacity(MESSAGE);
    let mut echoed = 0;
    for _ in 0..messages {
        let (sent, back) = stream.write_all(message).await;
        sent?;
        message = back;
        received.clear();
        while received.len() < MESSAGE {
            let (n, back) = stream.read(reply).await;
            if n? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            received.extend_from_slice(&back);
            reply = back;
        }
        echoed += usize::from(received == expected);
    }
    stream.close().await?;
    Ok(echoed)
}
