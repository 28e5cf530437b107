//! tcp-echo and tcp-echo-cores on the completion-based peers, monoio and compio: the same load
//! as on ioswap and tokio (64 connections, 1 KiB messages one at a time each, every echo
//! checked, every byte counted), on `threads` threads per side, each with its own runtime of
//! the peer (one for tcp-echo, one per CPU for tcp-echo-cores: thread-per-core, as both are
//! meant to be run). The server's threads each have a `SO_REUSEPORT` listener on one port, so
//! the kernel spreads the connections; the last session to end closes a channel that stops
//! every thread's accept loop.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use futures_lite::future;

use super::tcp_echo::{CONNECTIONS, MESSAGE};
use crate::runner::Runner;
use crate::BenchError;

/// What every server thread shares: the sessions still open, the bytes echoed, the first
/// error, and the channel whose closing (by the last session) stops every accept loop.
struct Shared {
    sessions_left: AtomicUsize,
    bytes: AtomicUsize,
    error: Mutex<Option<String>>,
    done_tx: Mutex<Option<async_channel::Sender<()>>>,
    done_rx: async_channel::Receiver<()>,
}

impl Shared {
    fn new() -> Arc<Shared> {
        let (done_tx, done_rx) = async_channel::bounded(1);
        Arc::new(Shared {
            sessions_left: AtomicUsize::new(CONNECTIONS),
            bytes: AtomicUsize::new(0),
            error: Mutex::new(None),
            done_tx: Mutex::new(Some(done_tx)),
            done_rx,
        })
    }

    fn fail(&self, error: String) {
        self.error
            .lock()
            .expect("not poisoned")
            .get_or_insert(error);
    }

    /// One session ended, having echoed `echoed`: the last one stops every accept loop.
    fn session_ended(&self, echoed: io::Result<usize>) {
        match echoed {
            Ok(n) => {
                self.bytes.fetch_add(n, Ordering::Relaxed);
            }
            Err(error) => self.fail(format!("session: {error}")),
        }
        if self.sessions_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            drop(self.done_tx.lock().expect("not poisoned").take());
        }
    }

    /// Waits until the last session has ended.
    async fn all_ended(&self) {
        let _ = self.done_rx.recv().await;
    }
}

/// Runs `per_thread(t)` for each `t` of `0..threads`, each on its own thread; the results, or
/// the first error.
fn on_threads<T: Send + 'static>(
    threads: usize,
    per_thread: impl Fn(usize) -> Result<T, String> + Send + Sync + 'static,
) -> Result<Vec<T>, String> {
    let per_thread = Arc::new(per_thread);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let per_thread = per_thread.clone();
            std::thread::spawn(move || per_thread(t))
        })
        .collect();
    let mut results = Vec::with_capacity(threads);
    for handle in handles {
        results.push(
            handle
                .join()
                .map_err(|_| "a peer's thread panicked".to_string())??,
        );
    }
    Ok(results)
}

/// The server of `runner` (monoio or compio) on `threads` threads; returns the bytes echoed.
pub(super) fn serve(
    runner: Runner,
    threads: usize,
    addr_tx: mpsc::Sender<SocketAddr>,
) -> Result<usize, String> {
    // Every thread's listener is bound here, on one port, before any thread starts: the
    // clients may connect at once (the backlog holds them until each thread accepts).
    let first = reuse_port_listener(([127, 0, 0, 1], 0).into())
        .map_err(|error| format!("bind: {error}"))?;
    let addr = first.local_addr().map_err(|e| e.to_string())?;
    let mut listeners = vec![first];
    for _ in 1..threads {
        listeners.push(reuse_port_listener(addr).map_err(|error| format!("bind: {error}"))?);
    }
    let listeners: Vec<_> = listeners.into_iter().map(|l| Mutex::new(Some(l))).collect();
    let _ = addr_tx.send(addr);
    drop(addr_tx);
    let shared = Shared::new();
    let context = (shared.clone(), listeners);
    on_threads(threads, move |t| {
        let (shared, listeners) = &context;
        let listener = listeners[t]
            .lock()
            .expect("not poisoned")
            .take()
            .expect("one thread per listener");
        let served = match runner {
            Runner::Monoio => monoio_serve(shared.clone(), listener),
            Runner::Compio => compio_serve(shared.clone(), listener),
            _ => unreachable!("the echo peers are monoio and compio"),
        };
        if served.is_err() {
            // This thread's connections are never served: stop the others too.
            drop(shared.done_tx.lock().expect("not poisoned").take());
        }
        served
    })?;
    if let Some(error) = shared.error.lock().expect("not poisoned").take() {
        return Err(error);
    }
    Ok(shared.bytes.load(Ordering::Relaxed))
}

/// A `SO_REUSEPORT` listener on `addr` (port 0: a fresh port), as a std listener.
fn reuse_port_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// One monoio server thread: echoes every session its listener accepts until the last session
/// of all threads ends.
fn monoio_serve(shared: Arc<Shared>, listener: std::net::TcpListener) -> Result<(), String> {
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .build()
        .map_err(|error| format!("monoio runtime: {error}"))?;
    runtime.block_on(async move {
        let listener = monoio::net::TcpListener::from_std(listener)
            .map_err(|error| format!("listener: {error}"))?;
        let accepting = async {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let shared = shared.clone();
                        monoio::spawn(async move {
                            shared.session_ended(monoio_echo(stream).await);
                        });
                    }
                    Err(error) => return Err(format!("accept: {error}")),
                }
            }
        };
        future::or(accepting, async {
            shared.all_ended().await;
            Ok(())
        })
        .await
    })
}

/// One monoio session: echoes until the client closes; returns the bytes echoed.
async fn monoio_echo(mut stream: monoio::net::TcpStream) -> io::Result<usize> {
    use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let mut bytes = 0;
    loop {
        buf.clear();
        let (n, back) = stream.read(buf).await;
        let n = n?;
        if n == 0 {
            stream.shutdown().await?;
            return Ok(bytes);
        }
        let (sent, back) = stream.write_all(back).await;
        sent?;
        bytes += n;
        buf = back;
    }
}

/// One compio server thread, as [`monoio_serve`].
fn compio_serve(shared: Arc<Shared>, listener: std::net::TcpListener) -> Result<(), String> {
    let runtime =
        compio::runtime::Runtime::new().map_err(|error| format!("compio runtime: {error}"))?;
    runtime.block_on(async move {
        let listener = compio::net::TcpListener::from_std(listener)
            .map_err(|error| format!("listener: {error}"))?;
        let accepting = async {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let shared = shared.clone();
                        compio::runtime::spawn(async move {
                            shared.session_ended(compio_echo(stream).await);
                        })
                        .detach();
                    }
                    Err(error) => return Err(format!("accept: {error}")),
                }
            }
        };
        future::or(accepting, async {
            shared.all_ended().await;
            Ok(())
        })
        .await
    })
}

/// One compio session: echoes until the client closes; returns the bytes echoed.
async fn compio_echo(mut stream: compio::net::TcpStream) -> io::Result<usize> {
    use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let mut bytes = 0;
    loop {
        buf.clear();
        let compio::BufResult(n, back) = stream.read(buf).await;
        let n = n?;
        if n == 0 {
            stream.shutdown().await?;
            return Ok(bytes);
        }
        let compio::BufResult(sent, back) = stream.write_all(back).await;
        sent?;
        bytes += n;
        buf = back;
    }
}

/// The clients of `runner` on `threads` threads, the connections spread evenly; returns how
/// many echoes came back intact.
pub(super) fn clients(
    runner: Runner,
    threads: usize,
    addr: SocketAddr,
    messages: usize,
) -> Result<usize, BenchError> {
    let per_thread = on_threads(threads, move |t| {
        let mine: Vec<usize> = (0..CONNECTIONS).filter(|i| i % threads == t).collect();
        match runner {
            Runner::Monoio => {
                let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .build()
                    .map_err(|error| format!("monoio runtime: {error}"))?;
                runtime.block_on(async move {
                    let clients: Vec<_> = mine
                        .into_iter()
                        .map(|i| monoio::spawn(monoio_client(addr, i, messages)))
                        .collect();
                    let mut echoed = 0;
                    for client in clients {
                        echoed += client.await.map_err(|e| format!("client: {e}"))?;
                    }
                    Ok(echoed)
                })
            }
            Runner::Compio => {
                let runtime = compio::runtime::Runtime::new()
                    .map_err(|error| format!("compio runtime: {error}"))?;
                runtime.block_on(async move {
                    let clients: Vec<_> = mine
                        .into_iter()
                        .map(|i| compio::runtime::spawn(compio_client(addr, i, messages)))
                        .collect();
                    let mut echoed = 0;
                    for client in clients {
                        echoed += client
                            .await
                            .map_err(|_| "a compio client task failed".to_string())?
                            .map_err(|e| format!("client: {e}"))?;
                    }
                    Ok(echoed)
                })
            }
            _ => unreachable!("the echo peers are monoio and compio"),
        }
    })
    .map_err(BenchError::Peer)?;
    Ok(per_thread.into_iter().sum())
}

/// One monoio client connection; returns how many echoes came back intact.
async fn monoio_client(addr: SocketAddr, i: usize, messages: usize) -> io::Result<usize> {
    use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
    let mut stream = monoio::net::TcpStream::connect_addr(addr).await?;
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
            reply.clear();
            let (n, back) = stream.read(reply).await;
            if n? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            received.extend_from_slice(&back);
            reply = back;
        }
        echoed += usize::from(received == expected);
    }
    stream.shutdown().await?;
    Ok(echoed)
}

/// One compio client connection; returns how many echoes came back intact.
async fn compio_client(addr: SocketAddr, i: usize, messages: usize) -> io::Result<usize> {
    use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
    let mut stream = compio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let expected = vec![i as u8; MESSAGE];
    let mut message = expected.clone();
    let mut reply = Vec::with_capacity(MESSAGE);
    let mut received = Vec::with_capacity(MESSAGE);
    let mut echoed = 0;
    for _ in 0..messages {
        let compio::BufResult(sent, back) = stream.write_all(message).await;
        sent?;
        message = back;
        received.clear();
        while received.len() < MESSAGE {
            reply.clear();
            let compio::BufResult(n, back) = stream.read(reply).await;
            if n? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            received.extend_from_slice(&back);
            reply = back;
        }
        echoed += usize::from(received == expected);
    }
    stream.shutdown().await?;
    Ok(echoed)
}
