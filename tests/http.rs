//! hyper 1.x over ioswap (feature `hyper`): `examples/http.rs`'s server, called by hyper's own
//! HTTP/1 client, on uring, poll and the simulated world (fiber); hyper's header-read timeout
//! on ioswap's timers (virtual on fiber); the executor; a dropped sleep leaves no task behind.
#![cfg(feature = "hyper")]

#[path = "../examples/http.rs"]
#[allow(dead_code)]
mod example;

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::rt::{Executor as _, Timer as _};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use ioswap::channel::{self, shared, RecvError};
use ioswap::cores::Cores;
use ioswap::hyper::{Executor, Io, Sleep, Timer};
use ioswap::{Backend, Cx, TcpListener, TcpStream};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn timer_sleep_and_executor_are_send_and_sync() {
    assert_send_sync::<Timer>();
    assert_send_sync::<Sleep>();
    assert_send_sync::<Executor>();
}

/// One keep-alive client connection with hyper's client; its connection runs in a task.
async fn connect(cx: &Cx, addr: SocketAddr) -> io::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(cx, addr).await?;
    let (sender, connection) = handshake(Io::new(stream.compat()))
        .await
        .map_err(io::Error::other)?;
    cx.spawn(|_| async move {
        let _ = connection.await;
        Ok(())
    })
    .detach();
    Ok(sender)
}

/// `GET path` on `sender`: the status and the whole body.
async fn get(sender: &mut SendRequest<Empty<Bytes>>, path: &str) -> (StatusCode, Bytes) {
    sender
        .ready()
        .await
        .expect("the connection takes a request");
    let request = Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::new())
        .expect("a valid request");
    let response = sender.send_request(request).await.expect("a response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the whole body")
        .to_bytes();
    (status, body)
}

/// Serves the example on `backend` and calls it with hyper's client, in the same run: 3
/// connections at once, 20 keep-alive requests each (every fifth to a missing path).
fn serves_hyper_client(backend: Backend) {
    let answered = backend
        .run(|cx| async move {
            let listener = TcpListener::bind(&cx, "127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("bound");
            let server = cx.spawn(|_| async move { Ok(example::serve(listener).await) });
            let clients: Vec<_> = (0..3)
                .map(|_| {
                    cx.spawn(move |cx| async move {
                        let mut sender = connect(&cx, addr).await.expect("connect");
                        let mut answered = Vec::new();
                        for i in 0..20 {
                            let path = if i % 5 == 4 { "/missing" } else { "/" };
                            answered.push(get(&mut sender, path).await);
                        }
                        Ok(answered)
                    })
                })
                .collect();
            let mut answered = Vec::new();
            for client in clients {
                answered.extend(client.await?);
            }
            drop(server);
            Ok(answered)
        })
        .expect("the run");
    assert_eq!(answered.len(), 60);
    for (i, (status, body)) in answered.iter().enumerate() {
        if i % 20 % 5 == 4 {
            assert_eq!(
                (*status, &body[..]),
                (StatusCode::NOT_FOUND, &b"not found"[..])
            );
        } else {
            assert_eq!(
                (*status, &body[..]),
                (StatusCode::OK, example::HELLO.as_bytes())
            );
        }
    }
}

/// 32 clients at once, each sending one request, reading the whole response and closing: every
/// connection ends cleanly on the server. (On uring a client can read its response and close
/// before the server's write completion arrives; `Io` holds that end of stream back until the
/// write is reported, or hyper would call a finished exchange `IncompleteMessage`.)
fn close_after_response_is_clean(backend: Backend) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    // On a real backend the clients run on a loop of their own, in another thread, so they
    // can read a response before the server's loop has reaped its write's completion. The
    // simulated world is one run: they share it.
    let clients_apart = (backend != Backend::Fiber).then(|| {
        std::thread::spawn(move || {
            let addr = addr_rx.recv().expect("the server listens");
            backend.run(move |cx| one_shot_clients(cx, addr))
        })
    });
    let served = backend
        .run(move |cx| async move {
            let listener = TcpListener::bind(&cx, "127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("bound");
            let clients = match backend {
                Backend::Fiber => Some(cx.spawn(move |cx| one_shot_clients(cx, addr))),
                _ => {
                    addr_tx.send(addr).expect("the clients wait");
                    None
                }
            };
            let mut connections = Vec::new();
            for _ in 0..32 {
                let (stream, _) = listener.accept().await.expect("accept");
                connections.push(cx.spawn(move |cx| async move {
                    Ok(http1::Builder::new()
                        .timer(Timer::new(&cx))
                        .serve_connection(Io::new(stream.compat()), service_fn(example::hello))
                        .await
                        .map_err(|e| format!("{e:?}")))
                }));
            }
            let mut served = Vec::new();
            for connection in connections {
                served.push(connection.await?);
            }
            if let Some(clients) = clients {
                clients.await?;
            }
            Ok(served)
        })
        .expect("the run");
    if let Some(clients) = clients_apart {
        clients
            .join()
            .expect("the clients' thread")
            .expect("the clients' run");
    }
    assert_eq!(served, vec![Ok(()); 32]);
}

/// 32 connections at once, each one request, its whole response, and a close.
async fn one_shot_clients(cx: Cx, addr: SocketAddr) -> Result<(), ioswap::Canceled> {
    let clients: Vec<_> = (0..32)
        .map(|_| {
            cx.spawn(move |cx| async move {
                let stream = TcpStream::connect(&cx, addr).await.expect("connect");
                let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
                let (sent, _) = stream.write_all(request).await;
                sent.expect("the request");
                let mut response = Vec::new();
                while !response.ends_with(example::HELLO.as_bytes()) {
                    let (n, chunk) = stream.read(Vec::with_capacity(1024)).await;
                    assert!(n.expect("the response") > 0, "closed early");
                    response.extend_from_slice(&chunk);
                }
                stream.close().await.expect("close");
                Ok(())
            })
        })
        .collect();
    for client in clients {
        client.await?;
    }
    Ok(())
}

/// The server on `server_backend` in a thread of its own, hyper's client on `client_backend` in
/// another: two loops, two threads, one TCP connection between them.
#[cfg(all(feature = "uring", feature = "poll"))]
fn across_threads(server_backend: Backend, client_backend: Backend) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        server_backend.run(|cx| async move {
            let listener = TcpListener::bind(&cx, "127.0.0.1:0").await.expect("bind");
            addr_tx.send(listener.local_addr().expect("bound")).unwrap();
            // One connection, served until the client closes it.
            let (stream, _) = listener.accept().await.expect("accept");
            let served = http1::Builder::new()
                .timer(Timer::new(&cx))
                .serve_connection(Io::new(stream.compat()), service_fn(example::hello))
                .await;
            Ok(served.map_err(|e| e.to_string()))
        })
    });
    let addr = addr_rx.recv().expect("the server listens");
    let answered = client_backend
        .run(move |cx| async move {
            let mut sender = connect(&cx, addr).await.expect("connect");
            let mut answered = Vec::new();
            for _ in 0..50 {
                answered.push(get(&mut sender, "/").await);
            }
            Ok(answered)
        })
        .expect("the client's run");
    // The client's run dropped its connection: the server sees the close and ends cleanly.
    server
        .join()
        .expect("the server thread")
        .expect("the server's run")
        .expect("the connection ends cleanly");
    assert_eq!(answered.len(), 50);
    assert!(answered
        .iter()
        .all(|(status, body)| *status == StatusCode::OK && body == example::HELLO.as_bytes()));
}

/// One connection served with a header-read timeout of `ms` (hyper's timer on ioswap's).
async fn serve_one_with_timeout(listener: TcpListener, cx: Cx, ms: u64) -> Result<(), String> {
    let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
    http1::Builder::new()
        .timer(Timer::new(&cx))
        .header_read_timeout(Duration::from_millis(ms))
        .serve_connection(Io::new(stream.compat()), service_fn(example::hello))
        .await
        .map_err(|e| e.to_string())
}

/// Half a request head, then silence: hyper's header-read timeout (300 ms, on ioswap's timer)
/// closes the connection, no sooner than the deadline (to the millisecond on fiber's virtual
/// clock).
fn header_read_timeout_closes(backend: Backend) {
    let (waited, served) = backend
        .run(|cx| async move {
            let listener = TcpListener::bind(&cx, "127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("bound");
            let server = cx.spawn({
                let cx = cx.clone();
                |_| async move { Ok(serve_one_with_timeout(listener, cx, 300).await) }
            });
            let stream = TcpStream::connect(&cx, addr).await.expect("connect");
            let start = cx.now();
            let (sent, _) = stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec())
                .await;
            sent.expect("half a head");
            // Whatever hyper says (nothing, or a 408), it closes: read to the end.
            let mut buf = Vec::with_capacity(1024);
            loop {
                let (n, back) = stream.read(buf).await;
                buf = back;
                match n {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let waited = cx.now() - start;
            Ok((waited, server.await?))
        })
        .expect("the run");
    assert!(served.is_err(), "the connection timed out: {served:?}");
    assert!(
        waited >= Duration::from_millis(300),
        "closed after {waited:?}"
    );
    if backend == Backend::Fiber {
        assert!(
            waited < Duration::from_millis(310),
            "closed after {waited:?}"
        );
    } else {
        assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    }
}

/// Requests 150 ms apart on one connection with a 300 ms header-read timeout: hyper moves the
/// timer's deadline with each request (`Timer::reset`), so the connection outlives the first
/// deadline and every request is answered.
fn header_read_timeout_moves_with_requests(backend: Backend) {
    let (answered, elapsed) = backend
        .run(|cx| async move {
            let listener = TcpListener::bind(&cx, "127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("bound");
            let server = cx.spawn({
                let cx = cx.clone();
                |_| async move { Ok(serve_one_with_timeout(listener, cx, 300).await) }
            });
            let start = cx.now();
            let mut sender = connect(&cx, addr).await.expect("connect");
            let mut answered = Vec::new();
            for _ in 0..5 {
                answered.push(get(&mut sender, "/").await);
                cx.sleep(150).await?;
            }
            let elapsed = cx.now() - start;
            drop(sender);
            let _ = server.await?;
            Ok((answered, elapsed))
        })
        .expect("the run");
    assert!(elapsed >= Duration::from_millis(750), "{elapsed:?}");
    assert_eq!(answered.len(), 5);
    assert!(answered.iter().all(|(status, _)| *status == StatusCode::OK));
}

/// The executor runs what it is handed as a task of the loop (futures need not be `Send`).
fn executor_spawns_on_the_loop(backend: Backend) {
    let ran = backend
        .run(|cx| async move {
            let ran = Rc::new(Cell::new(0));
            let executor = Executor::new(&cx);
            for _ in 0..3 {
                let ran = ran.clone();
                let cx2 = cx.clone();
                executor.execute(async move {
                    let _ = cx2.sleep(5).await;
                    ran.set(ran.get() + 1);
                });
            }
            cx.sleep(50).await?;
            Ok(ran.get())
        })
        .expect("the run");
    assert_eq!(ran, 3);
}

/// A hyper sleep fires at its deadline on the backend's clock; a dropped one ends its timer
/// task (no task is left behind).
fn sleep_fires_and_drop_cleans_up(backend: Backend) {
    let (slept, before, after) = backend
        .run(|cx| async move {
            let timer = Timer::new(&cx);
            let start = cx.now();
            timer.sleep(Duration::from_millis(20)).await;
            let slept = cx.now() - start;
            let before = cx.live_tasks();
            let mut long = timer.sleep(Duration::from_secs(3600));
            // One poll arms its timer in the polling task: no task of its own...
            let pending = std::future::poll_fn(|task| {
                std::task::Poll::Ready(long.as_mut().poll(task).is_pending())
            })
            .await;
            assert!(pending);
            assert_eq!(cx.live_tasks(), before);
            // ...and dropping it disarms that timer.
            drop(long);
            for _ in 0..3 {
                cx.yield_now().await?;
            }
            Ok((slept, before, cx.live_tasks()))
        })
        .expect("the run");
    assert!(slept >= Duration::from_millis(20), "{slept:?}");
    assert_eq!(before, after);
}

/// `Timer::now` reads the backend's clock: on fiber it moves with virtual time.
#[cfg(feature = "fiber")]
#[test]
fn timer_now_is_virtual_on_fiber() {
    let moved = Backend::Fiber
        .run(|cx| async move {
            let timer = Timer::new(&cx);
            let before = timer.now();
            cx.sleep(60_000).await?;
            Ok(timer.now() - before)
        })
        .expect("the run");
    assert_eq!(moved, Duration::from_secs(60));
}

/// `Timer::reset` moves an armed sleep: to an earlier deadline it fires then, to a later one it
/// fires then and not at the first (exact on the virtual clock).
#[cfg(feature = "fiber")]
#[test]
fn timer_reset_moves_an_armed_sleep_on_fiber() {
    let (earlier, later) = Backend::Fiber
        .run(|cx| async move {
            let timer = Timer::new(&cx);
            let start = cx.now();
            let mut sleep = timer.sleep(Duration::from_secs(3600));
            assert!(poll_once(&mut sleep).await);
            timer.reset(&mut sleep, timer.now() + Duration::from_millis(50));
            sleep.await;
            let earlier = cx.now() - start;
            let start = cx.now();
            let mut sleep = timer.sleep(Duration::from_millis(20));
            assert!(poll_once(&mut sleep).await);
            timer.reset(&mut sleep, timer.now() + Duration::from_millis(100));
            sleep.await;
            Ok((earlier, cx.now() - start))
        })
        .expect("the run");
    assert_eq!(earlier, Duration::from_millis(50));
    assert_eq!(later, Duration::from_millis(100));
}

/// Polls `sleep` once: whether it was pending.
#[cfg(feature = "fiber")]
async fn poll_once(sleep: &mut std::pin::Pin<Box<dyn hyper::rt::Sleep>>) -> bool {
    std::future::poll_fn(|task| std::task::Poll::Ready(sleep.as_mut().poll(task).is_pending()))
        .await
}

/// `--cores 2`: each core serves its own `SO_REUSEPORT` listener on one port
/// ([`example::serve_on_core`]); 8 keep-alive hyper clients on core 0 get all 40 answers.
fn serves_on_cores(backend: Backend) {
    let (stop_tx, stop_rx) = shared::bounded::<()>(1);
    let stop_tx = std::sync::Mutex::new(Some(stop_tx));
    let cores = Cores::new().count(2).backend(backend).pin(false);
    let values = cores
        .run(move |cx, core| {
            let stop_tx = (core.id().index() == 0)
                .then(|| stop_tx.lock().unwrap().take())
                .flatten();
            let stop_rx = stop_rx.clone();
            async move {
                let (bound_tx, bound_rx) = channel::bounded(&cx, 1);
                let server = cx.spawn(move |cx| async move {
                    let any_port = "127.0.0.1:0".parse().unwrap();
                    let served = example::serve_on_core(&cx, &core, any_port, |listener| {
                        let _ = bound_tx.try_send(listener.local_addr()?);
                        Ok(())
                    });
                    Ok(served.await.map(|never| match never {}))
                });
                let addr: SocketAddr = bound_rx.recv().await.expect("the core listens");
                let mut answered = Vec::new();
                if let Some(stop_tx) = stop_tx {
                    let clients: Vec<_> = (0..8)
                        .map(|_| {
                            cx.spawn(move |cx| async move {
                                let mut sender = connect(&cx, addr).await.expect("connect");
                                let mut answers = Vec::new();
                                for _ in 0..5 {
                                    answers.push(get(&mut sender, "/").await);
                                }
                                Ok(answers)
                            })
                        })
                        .collect();
                    for client in clients {
                        answered.extend(client.await?);
                    }
                    drop(stop_tx);
                }
                assert_eq!(stop_rx.recv(&cx).await, Err(RecvError::Closed));
                drop(server);
                Ok((addr, answered))
            }
        })
        .expect("the cores' run");
    assert_eq!(values[0].0, values[1].0, "one address for every core");
    let answered = &values[0].1;
    assert_eq!(answered.len(), 40, "{backend:?}");
    assert!(answered
        .iter()
        .all(|(status, body)| *status == StatusCode::OK && body == example::HELLO.as_bytes()));
}

#[test]
fn the_command_line_takes_an_address_and_a_core_count() {
    let parse = |line: &str| example::parse(line.split_whitespace().map(String::from));
    let default: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let other: SocketAddr = "127.0.0.1:3000".parse().unwrap();
    assert_eq!(parse(""), Ok((default, None)));
    assert_eq!(parse("127.0.0.1:3000"), Ok((other, None)));
    assert_eq!(parse("--cores 4"), Ok((default, Some(4))));
    assert_eq!(parse("127.0.0.1:3000 --cores 2"), Ok((other, Some(2))));
    assert!(parse("--cores 0")
        .unwrap_err()
        .contains("not a positive count"));
    assert!(parse("--cores").unwrap_err().contains("missing"));
    assert!(parse("nowhere").unwrap_err().contains("not an address"));
    assert!(parse("127.0.0.1:1 127.0.0.1:2")
        .unwrap_err()
        .contains("unexpected"));
}

macro_rules! on_backends {
    ($($behaviour:ident),* $(,)?) => {
        #[cfg(feature = "uring")]
        mod uring {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(ioswap::Backend::Uring)
            })*
        }
        #[cfg(feature = "poll")]
        mod poll {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(ioswap::Backend::Poll)
            })*
        }
        #[cfg(feature = "fiber")]
        mod fiber {
            $(#[test]
            fn $behaviour() {
                super::$behaviour(ioswap::Backend::Fiber)
            })*
        }
    };
}

on_backends!(
    serves_hyper_client,
    close_after_response_is_clean,
    header_read_timeout_closes,
    header_read_timeout_moves_with_requests,
    executor_spawns_on_the_loop,
    sleep_fires_and_drop_cleans_up,
    serves_on_cores,
);

#[cfg(all(feature = "uring", feature = "poll"))]
#[test]
fn uring_server_poll_client() {
    across_threads(Backend::Uring, Backend::Poll);
}

#[cfg(all(feature = "uring", feature = "poll"))]
#[test]
fn poll_server_uring_client() {
    across_threads(Backend::Poll, Backend::Uring);
}
