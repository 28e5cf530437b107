//! http-hello: hyper 1.x's HTTP/1.1 server answering `Hello, world!`, on ioswap (through
//! `ioswap::hyper`) and on tokio (through hyper-util's `TokioIo` and `TokioTimer`), each with
//! hyper's timer set (so each pays its header-read timeout per request). The load is the same
//! for every runner: one generator, on a tokio current-thread runtime in a thread of its own,
//! 32 keep-alive connections each sending `GET /` one request at a time and reading the whole
//! response before the next. The figure is wall ns per request (requests/s = 1e9 / figure).
//!
//! The raw io-uring floor answers the same load with no hyper and no executor (see
//! `uring_floor.rs`): what a server costing next to nothing gets from this load generator, and
//! so the most any runtime's hyper server can get from it here.

use std::cell::Cell;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use ioswap::{Backend, TcpListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{check, why, Measurement, Size, Unit, Workload};
use crate::runner::{self, timed, Runner, TokioClock};
use crate::BenchError;

/// Keep-alive connections of the load.
pub(super) const CONNECTIONS: usize = 32;
/// The response body.
pub(super) const HELLO: &[u8] = b"Hello, world!";
/// What the raw floor answers: hyper's response to the load's request, byte for byte but for
/// the date, which hyper formats (once a second) and the floor leaves fixed at the same length.
const RAW_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\nHello, world!";
/// The request every connection sends.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

pub const WORKLOAD: Workload = Workload {
    name: "http-hello",
    what: "hyper HTTP/1.1 hello world on 127.0.0.1: 32 keep-alive connections × 2,000 requests, one at a time each, from one load generator",
    unit: Unit::NsPerOp,
    opt_in: &[Runner::RawIoUring],
    warm_up: false,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => Some(why::INLINE_NO_CONCURRENCY),
        Runner::Ioswap(Backend::Fiber) => Some(why::SIMULATED_IO),
        Runner::Ioswap(_) | Runner::Tokio | Runner::RawIoUring => None,
        _ => Some("not measured: tokio is this workload's peer"),
    },
    note: |runner| match runner {
        Runner::Ioswap(_) => Some("ns per request: hyper over ioswap::hyper (Io, Timer); the load from tokio"),
        Runner::Tokio => Some("ns per request: hyper over hyper-util's TokioIo and TokioTimer, current_thread + LocalSet; the same load"),
        Runner::RawIoUring => Some("floor: no hyper, no executor: the io-uring crate RECVs each request head and SENDs a fixed response of hyper's length; the same load"),
        _ => None,
    },
    counted: false,
    measure,
};

fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    measure_served(WORKLOAD.name, runner, size, serve, load)
}

/// Serves the load on a thread of its own (`serve` sends its address, then returns the requests
/// it answered) while `load` sends `CONNECTIONS` × `size.messages` requests from this thread;
/// the wall time per request, once every request was answered and served.
pub(super) fn measure_served(
    workload: &str,
    runner: Runner,
    size: &Size,
    serve: fn(Runner, mpsc::Sender<SocketAddr>) -> Result<usize, String>,
    load: fn(SocketAddr, usize) -> Result<usize, BenchError>,
) -> Result<Measurement, BenchError> {
    let per_connection = size.messages;
    let (outcome, wall) = timed(|| -> Result<(usize, usize), BenchError> {
        let (addr_tx, addr_rx) = mpsc::channel();
        let server = std::thread::spawn(move || serve(runner, addr_tx));
        let answered = match addr_rx.recv() {
            Ok(addr) => load(addr, per_connection),
            Err(_) => Err(BenchError::Peer("the server ended before listening".into())),
        };
        let served = server
            .join()
            .map_err(|_| BenchError::Peer("the server thread panicked".into()))?
            .map_err(BenchError::Peer);
        Ok((answered?, served?))
    });
    let (answered, served) = outcome?;
    let total = CONNECTIONS * per_connection;
    check(
        answered == total && served == total,
        workload,
        runner,
        format!("{answered} of {total} requests answered, {served} served"),
    )?;
    Ok(Measurement::per_op(wall, total))
}

/// The service: counts the requests it answers.
fn hello(
    served: &Rc<Cell<usize>>,
) -> impl Fn(Request<Incoming>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    let served = served.clone();
    move |_request| {
        served.set(served.get() + 1);
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(HELLO)))))
    }
}

/// The server: accepts the load's connections, serves each until the client closes it,
/// returns the requests answered.
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
                let served = Rc::new(Cell::new(0));
                let mut connections = Vec::with_capacity(CONNECTIONS);
                for _ in 0..CONNECTIONS {
                    let stream = match listener.accept().await {
                        Ok((stream, _)) => stream,
                        Err(error) => return Ok(Err(format!("accept: {error}"))),
                    };
                    let service = service_fn(hello(&served));
                    connections.push(cx.spawn(move |cx| async move {
                        Ok(async {
                            stream.set_nodelay(true).map_err(|e| e.to_string())?;
                            http1::Builder::new()
                                .timer(ioswap::hyper::Timer::new(&cx))
                                .serve_connection(ioswap::hyper::Io::new(stream.compat()), service)
                                .await
                                .map_err(|e| format!("connection: {e}"))
                        }
                        .await)
                    }));
                }
                for connection in connections {
                    if let Err(error) = connection.await? {
                        return Ok(Err(error));
                    }
                }
                Ok(Ok(served.get()))
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
            let served = Rc::new(Cell::new(0));
            let mut connections = Vec::with_capacity(CONNECTIONS);
            for _ in 0..CONNECTIONS {
                let (stream, _) = listener
                    .accept()
                    .await
                    .map_err(|error| format!("accept: {error}"))?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                let service = service_fn(hello(&served));
                connections.push(tokio::task::spawn_local(async move {
                    http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await
                        .map_err(|e| format!("connection: {e}"))
                }));
            }
            for connection in connections {
                connection.await.map_err(|e| e.to_string())??;
            }
            Ok(served.get())
        })
        .map_err(|error| error.to_string())?,
        Runner::RawIoUring => {
            let streams = super::tcp_echo::accept_std(localhost, addr_tx, CONNECTIONS)?;
            crate::uring_floor::raw_http_server(streams, RAW_RESPONSE)
                .map_err(|error| format!("http: {error}"))
        }
        _ => unreachable!("http-hello runs on ioswap, tokio and the raw ring only"),
    }
}

/// The load generator, the same for every runner: `CONNECTIONS` keep-alive connections on a
/// tokio current-thread runtime, `requests` requests each, one at a time; returns how many
/// came back `200` with the whole body.
fn load(addr: SocketAddr, requests: usize) -> Result<usize, BenchError> {
    let failed = |error: io::Error| BenchError::Peer(format!("load: {error}"));
    runner::tokio_local(TokioClock::Real, async move {
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|_| tokio::task::spawn_local(client(addr, requests)))
            .collect();
        let mut answered = 0;
        for client in clients {
            answered += client.await.map_err(runner::tokio_join)?.map_err(failed)?;
        }
        Ok(answered)
    })?
}

/// One connection of the load: sends `requests` requests, reading each response whole (its
/// head, then `content-length` bytes of body) before the next.
pub(super) async fn client(addr: SocketAddr, requests: usize) -> io::Result<usize> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let mut answered = 0;
    for _ in 0..requests {
        stream.write_all(REQUEST).await?;
        buf.clear();
        let (head_end, body_len) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break (end + 4, content_length(&buf[..end])?);
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        while buf.len() < head_end + body_len {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let ok = buf.starts_with(b"HTTP/1.1 200 ") && &buf[head_end..] == HELLO;
        answered += usize::from(ok);
    }
    stream.shutdown().await?;
    Ok(answered)
}

/// The `content-length` of a response head.
fn content_length(head: &[u8]) -> io::Result<usize> {
    let head = std::str::from_utf8(head).map_err(io::Error::other)?;
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no content-length in {head:?}")))
}
