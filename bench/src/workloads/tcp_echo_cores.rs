//! tcp-echo-cores: tcp-echo's load (64 connections, 1 KiB messages one at a time each) with
//! every side on all cores: the server a thread-per-core run (`ioswap::cores`, one
//! `SO_REUSEPORT` listener per core) or tokio's multi-thread runtime (one listener, work
//! stealing), and the clients likewise, the connections spread over the cores. Beside tcp-echo
//! (one thread per side), it shows what more cores buy on this machine.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use ioswap::channel::shared;
use ioswap::cores::{CoreId, Cores};
use ioswap::net::SocketOptions;
use ioswap::{Backend, Canceled};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tcp_echo::{self, client, echo, CONNECTIONS, MESSAGE};
use super::{echo_peers, why, Measurement, Size, Unit, Workload};
use crate::runner::{self, Runner};
use crate::BenchError;

pub const WORKLOAD: Workload = Workload {
    name: "tcp-echo-cores",
    what: "tcp-echo on all cores per side: 64 connections × 2,000 messages of 1 KiB, one at a time each",
    unit: Unit::NsPerOp,
    opt_in: &[Runner::Monoio, Runner::Compio],
    warm_up: false,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => Some(why::INLINE_NO_CONCURRENCY),
        Runner::Ioswap(Backend::Fiber) => Some(why::SIMULATED_IO),
        Runner::Ioswap(_) | Runner::Tokio | Runner::Monoio | Runner::Compio => None,
        _ => Some("not measured: tokio's multi-thread runtime, monoio and compio are this workload's peers"),
    },
    note: |runner| match runner {
        Runner::Ioswap(_) => {
            Some("thread-per-core on each side: a reuse-port listener per core, all CPUs")
        }
        Runner::Tokio => Some("tokio multi-thread runtime on each side, a worker per CPU"),
        Runner::Monoio => {
            Some("monoio (io_uring) per CPU on each side: a runtime and a reuse-port listener each")
        }
        Runner::Compio => {
            Some("compio per CPU on each side: a runtime and a reuse-port listener each")
        }
        _ => None,
    },
    counted: false,
    measure,
};

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    tcp_echo::measure_echo(WORKLOAD.name, runner, size, serve, clients)
}

/// The server on every core; returns the bytes echoed once every connection has closed.
fn serve(runner: Runner, addr_tx: mpsc::Sender<SocketAddr>) -> Result<usize, String> {
    let localhost: SocketAddr = ([127, 0, 0, 1], 0).into();
    match runner {
        Runner::Ioswap(backend) => {
            // Closed by the last session to end: every core then stops accepting.
            let (done_tx, done_rx) = shared::bounded::<()>(1);
            let done_tx = Arc::new(Mutex::new(Some(done_tx)));
            let sessions_left = Arc::new(AtomicUsize::new(CONNECTIONS));
            let addr_tx = Mutex::new(addr_tx);
            let per_core = Cores::new()
                .backend(backend)
                .run(move |cx, core| {
                    let (done_tx, done_rx) = (done_tx.clone(), done_rx.clone());
                    let sessions_left = sessions_left.clone();
                    let addr_tx = addr_tx.lock().expect("not poisoned").clone();
                    async move {
                        let listener = match core
                            .bind_reuse_port(&cx, localhost, SocketOptions::default())
                            .await
                        {
                            Ok(listener) => listener,
                            Err(error) => return Ok(Err(format!("bind: {error}"))),
                        };
                        if core.id() == CoreId::new(0) {
                            if let Ok(addr) = listener.local_addr() {
                                let _ = addr_tx.send(addr);
                            }
                        }
                        drop(addr_tx);
                        let bytes =
                            std::rc::Rc::new(std::cell::RefCell::new(Ok::<usize, String>(0)));
                        let accepting = cx.spawn({
                            let bytes = bytes.clone();
                            move |cx| async move {
                                while let Ok((stream, _)) = listener.accept().await {
                                    let bytes = bytes.clone();
                                    let (done_tx, sessions_left) =
                                        (done_tx.clone(), sessions_left.clone());
                                    cx.spawn(move |_| async move {
                                        let echoed = echo(stream).await;
                                        let mut sum = bytes.borrow_mut();
                                        match (&mut *sum, echoed) {
                                            (Ok(sum), Ok(n)) => *sum += n,
                                            (Ok(_), Err(error)) => {
                                                *sum = Err(format!("session: {error}"))
                                            }
                                            (Err(_), _) => {}
                                        }
                                        drop(sum);
                                        if sessions_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                                            drop(done_tx.lock().expect("not poisoned").take());
                                        }
                                        Ok(())
                                    })
                                    .detach();
                                }
                                Ok(())
                            }
                        });
                        // Closed (the last session ended): stop accepting.
                        let _ = done_rx.recv(&cx).await;
                        drop(accepting);
                        let bytes = bytes.borrow().clone();
                        Ok(bytes)
                    }
                })
                .map_err(|error| error.to_string())?;
            per_core
                .into_iter()
                .try_fold(0, |sum, bytes| bytes.map(|n| sum + n))
        }
        Runner::Tokio => {
            let runtime = runner::tokio_multi_thread().map_err(|e| e.to_string())?;
            runtime.block_on(async move {
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
                    sessions.push(tokio::spawn(tcp_echo::tokio_echo(stream)));
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
        }
        Runner::Monoio | Runner::Compio => echo_peers::serve(runner, cores(), addr_tx),
        _ => unreachable!("tcp-echo-cores runs on ioswap, tokio, monoio and compio only"),
    }
}

/// The clients on every core, the connections spread evenly; how many echoes came back intact.
fn clients(runner: Runner, addr: SocketAddr, messages: usize) -> Result<usize, BenchError> {
    let failed = |error: io::Error| BenchError::Peer(format!("client: {error}"));
    match runner {
        Runner::Ioswap(backend) => {
            let per_core = Cores::new()
                .backend(backend)
                .run(move |cx, core| async move {
                    let clients: Vec<_> = (0..CONNECTIONS)
                        .filter(|i| i % core.count() == core.id().index())
                        .map(|i| {
                            cx.spawn(
                                move |cx| async move { Ok(client(cx, addr, i, messages).await) },
                            )
                        })
                        .collect();
                    let mut echoed = 0;
                    for client in clients {
                        match client.await? {
                            Ok(n) => echoed += n,
                            Err(error) => return Ok(Err(error)),
                        }
                    }
                    Ok::<_, Canceled>(Ok(echoed))
                })
                .map_err(|error| BenchError::Peer(error.to_string()))?;
            per_core
                .into_iter()
                .try_fold(0, |sum, r| r.map(|n| sum + n))
                .map_err(failed)
        }
        Runner::Tokio => {
            let runtime = runner::tokio_multi_thread().map_err(BenchError::TokioRuntime)?;
            runtime.block_on(async move {
                let clients: Vec<_> = (0..CONNECTIONS)
                    .map(|i| {
                        tokio::spawn(async move {
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
            })
        }
        Runner::Monoio | Runner::Compio => echo_peers::clients(runner, cores(), addr, messages),
        _ => unreachable!("tcp-echo-cores runs on ioswap, tokio, monoio and compio only"),
    }
}
