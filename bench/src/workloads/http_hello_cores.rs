//! http-hello-cores: http-hello's load (32 keep-alive connections, `GET /` one request at a time
//! each) with every side on all cores. The server is a thread-per-core run (`ioswap::cores`, one
//! `SO_REUSEPORT` listener per core, hyper on each core's loop) or tokio's multi-thread runtime
//! (one listener, work stealing); the load generator, the same for every runner, is tokio's
//! multi-thread runtime with a worker per CPU. Beside http-hello (one thread per side), it shows
//! what more cores buy on this machine.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use ioswap::channel::shared;
use ioswap::cores::{CoreId, Cores};
use ioswap::net::SocketOptions;
use ioswap::Backend;

use super::http_hello::{self, client, CONNECTIONS, HELLO};
use super::{why, Measurement, Size, Unit, Workload};
use crate::runner::{self, Runner};
use crate::BenchError;

pub const WORKLOAD: Workload = Workload {
    name: "http-hello-cores",
    what: "http-hello on all cores per side: 32 keep-alive connections × 2,000 requests, one at a time each",
    unit: Unit::NsPerOp,
    opt_in: &[],
    warm_up: false,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => Some(why::INLINE_NO_CONCURRENCY),
        Runner::Ioswap(Backend::Fiber) => Some(why::SIMULATED_IO),
        Runner::Ioswap(_) | Runner::Tokio => None,
        _ => Some("not measured: tokio's multi-thread runtime is this workload's peer"),
    },
    note: |runner| match runner {
        Runner::Ioswap(_) => Some(
            "ns per request: hyper on every core, a reuse-port listener each; the load from tokio multi-thread",
        ),
        Runner::Tokio => Some(
            "ns per request: hyper on tokio's multi-thread runtime, a worker per CPU; the same load",
        ),
        _ => None,
    },
    counted: false,
    measure,
};

fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    http_hello::measure_served(WORKLOAD.name, runner, size, serve, load)
}

/// The service: counts the requests it answers (one counter for all cores).
fn hello(
    served: &Arc<AtomicUsize>,
) -> impl Fn(Request<Incoming>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> + Clone
{
    let served = served.clone();
    move |_request| {
        served.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(HELLO)))))
    }
}

/// The server on every core: serves the load's connections until the last one closes; returns
/// the requests answered.
fn serve(runner: Runner, addr_tx: mpsc::Sender<SocketAddr>) -> Result<usize, String> {
    let localhost: SocketAddr = ([127, 0, 0, 1], 0).into();
    let served = Arc::new(AtomicUsize::new(0));
    match runner {
        Runner::Ioswap(backend) => {
            // Closed by the last connection to end: every core then stops accepting.
            let (done_tx, done_rx) = shared::bounded::<()>(1);
            let done_tx = Arc::new(Mutex::new(Some(done_tx)));
            let left = Arc::new(AtomicUsize::new(CONNECTIONS));
            let failure = Arc::new(Mutex::new(None::<String>));
            let addr_tx = Mutex::new(addr_tx);
            let (served_here, failure_here) = (served.clone(), failure.clone());
            Cores::new()
                .backend(backend)
                .run(move |cx, core| {
                    let (done_tx, done_rx) = (done_tx.clone(), done_rx.clone());
                    let (left, failure) = (left.clone(), failure_here.clone());
                    let service = hello(&served_here);
                    let addr_tx = addr_tx.lock().expect("not poisoned").clone();
                    async move {
                        let options = SocketOptions::default().backlog(4096);
                        let listener = match core.bind_reuse_port(&cx, localhost, options).await {
                            Ok(listener) => listener,
                            Err(error) => return Ok(Err(format!("bind: {error}"))),
                        };
                        if core.id() == CoreId::new(0) {
                            if let Ok(addr) = listener.local_addr() {
                                let _ = addr_tx.send(addr);
                            }
                        }
                        drop(addr_tx);
                        let accepting = cx.spawn(move |cx| async move {
                            while let Ok((stream, _)) = listener.accept().await {
                                let (done_tx, left) = (done_tx.clone(), left.clone());
                                let (failure, service) = (failure.clone(), service.clone());
                                cx.spawn(move |cx| async move {
                                    let _ = stream.set_nodelay(true);
                                    let served = http1::Builder::new()
                                        .timer(ioswap::hyper::Timer::new(&cx))
                                        .serve_connection(
                                            ioswap::hyper::Io::new(stream.compat()),
                                            service_fn(service),
                                        )
                                        .await;
                                    if let Err(error) = served {
                                        let mut failure = failure.lock().expect("not poisoned");
                                        failure.get_or_insert(format!("connection: {error}"));
                                    }
                                    if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                                        drop(done_tx.lock().expect("not poisoned").take());
                                    }
                                    Ok(())
                                })
                                .detach();
                            }
                            Ok(())
                        });
                        // Closed (the last connection ended): stop accepting.
                        let _ = done_rx.recv(&cx).await;
                        drop(accepting);
                        Ok(Ok(()))
                    }
                })
                .map_err(|error| error.to_string())?
                .into_iter()
                .collect::<Result<Vec<()>, String>>()?;
            let failed = failure.lock().expect("not poisoned").take();
            if let Some(error) = failed {
                return Err(error);
            }
        }
        Runner::Tokio => {
            let runtime = runner::tokio_multi_thread().map_err(|e| e.to_string())?;
            let served = served.clone();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(localhost)
                    .await
                    .map_err(|error| format!("bind: {error}"))?;
                if let Ok(addr) = listener.local_addr() {
                    let _ = addr_tx.send(addr);
                }
                drop(addr_tx);
                let mut connections = Vec::with_capacity(CONNECTIONS);
                for _ in 0..CONNECTIONS {
                    let (stream, _) = listener
                        .accept()
                        .await
                        .map_err(|error| format!("accept: {error}"))?;
                    stream.set_nodelay(true).map_err(|e| e.to_string())?;
                    let service = service_fn(hello(&served));
                    connections.push(tokio::spawn(async move {
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
                Ok::<_, String>(())
            })?;
        }
        _ => unreachable!("http-hello-cores runs on ioswap and tokio only"),
    }
    Ok(served.load(Ordering::Relaxed))
}

/// The load generator, the same for every runner: `CONNECTIONS` keep-alive connections on
/// tokio's multi-thread runtime, `requests` requests each; how many came back `200` whole.
fn load(addr: SocketAddr, requests: usize) -> Result<usize, BenchError> {
    let failed = |error: io::Error| BenchError::Peer(format!("load: {error}"));
    let runtime = runner::tokio_multi_thread().map_err(BenchError::TokioRuntime)?;
    runtime.block_on(async move {
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|_| tokio::spawn(client(addr, requests)))
            .collect();
        let mut answered = 0;
        for client in clients {
            answered += client.await.map_err(runner::tokio_join)?.map_err(failed)?;
        }
        Ok(answered)
    })
}
