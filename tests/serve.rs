//! `TcpListener::serve`, the server loop: its connection handlers run beside it, so it requires
//! concurrency, and a backend without it (blocking) refuses at once with a typed error.
mod support;

use std::cell::Cell;
use std::io;
use std::io::Read;
use std::net::SocketAddr;
use std::rc::Rc;

use ioswap::{Backend, Canceled, Elapsed, SpawnError, TcpListener, TcpStream};
use support::within;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Sends every chunk back until the peer closes its side.
async fn echo(stream: TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let (n, back) = stream.read(buf).await;
        if n? == 0 {
            return stream.close().await;
        }
        let (sent, back) = stream.write_all(back).await;
        sent?;
        buf = back;
    }
}

/// The same program on every backend: serve a listener that already has a client waiting in
/// its backlog, for at most 300 ms. With concurrency the client is served, and serve returns
/// canceled at the deadline. On blocking, serve
/// fails at once with `ConcurrencyUnavailable` (kind `Unsupported`) — before it takes the
/// connection, which an accept afterwards still finds.
fn serve_refuses_up_front_without_concurrency(backend: Backend) {
    let std_listener = std::net::TcpListener::bind(loopback()).unwrap();
    let mut client = std::net::TcpStream::connect(std_listener.local_addr().unwrap()).unwrap();
    let client_addr = client.local_addr().unwrap();
    type Served = (
        Result<io::Result<std::convert::Infallible>, Elapsed>,
        Option<SocketAddr>,
    );
    let outcome: Served = within(20, "serve with a client waiting", move || {
        backend
            .run(move |cx| async move {
                let listener = Rc::new(TcpListener::from_std(&cx, std_listener));
                let serving = listener.clone();
                let served = ioswap::timeout(&cx, 300, move |_| async move {
                    Ok(serving
                        .serve(|_cx, stream| async move {
                            let _ = stream.write_all(b"served".to_vec()).await;
                            let _ = stream.close().await;
                        })
                        .await)
                })
                .await?;
                // Refused: is the client still in the backlog?
                let refused = served.as_ref().is_ok_and(|served| {
                    served
                        .as_ref()
                        .is_err_and(|e| e.get_ref().is_some_and(|e| e.is::<SpawnError>()))
                });
                let left = match refused {
                    true => Some(listener.accept().await.expect("the client waits").1),
                    false => None,
                };
                Ok((served, left))
            })
            .unwrap()
    });
    match backend {
        Backend::Blocking => {
            let (served, left) = outcome;
            let err = served.expect("refused before the deadline").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
            let refused = err.get_ref().and_then(|e| e.downcast_ref::<SpawnError>());
            assert_eq!(refused, Some(&SpawnError::ConcurrencyUnavailable), "{err}");
            assert_eq!(left, Some(client_addr), "serve took no connection");
        }
        // Fiber's simulated network refuses a real socket handed to it (`from_std`), by design:
        // serve returns that error.
        Backend::Fiber => support::assert_unsupported(&outcome.0.unwrap().unwrap_err()),
        _ => {
            let (served, left) = outcome;
            // At the deadline serve is canceled, and returns: it completed, so it is not `Elapsed`.
            let err = served.expect("serve returned").unwrap_err();
            assert!(Canceled::is_canceled(&err), "{err}");
            assert_eq!(left, None);
            let mut got = String::new();
            client.read_to_string(&mut got).unwrap();
            assert_eq!(got, "served");
        }
    }
}

/// Four clients connect, then each sends and waits for its echo, last client first: served one
/// at a time, the first handler would wait for a client that sends only after the others got
/// their echoes. All four handlers are live at once. Canceled, serve cancels and joins the
/// handler of the client still connected: none outlives it, and that client sees the end.
fn serve_handles_connections_at_the_same_time(backend: Backend) {
    const CLIENTS: usize = 4;
    let outcome = within(20, "serve four clients", move || {
        backend.run(|cx| async move {
            let listener = match TcpListener::bind(&cx, loopback()).await {
                Ok(listener) => listener,
                Err(e) => return Ok(Ok(Err(e))),
            };
            let addr = listener.local_addr().unwrap();
            let (live, most) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
            let (handlers_live, handlers_most) = (live.clone(), most.clone());
            let server = spawn_concurrent!(cx, move |_| async move {
                Ok(listener
                    .serve(move |_cx, stream| {
                        let (live, most) = (handlers_live.clone(), handlers_most.clone());
                        async move {
                            live.set(live.get() + 1);
                            most.set(most.get().max(live.get()));
                            let _ = echo(stream).await;
                            live.set(live.get() - 1);
                        }
                    })
                    .await)
            });
            Ok(Ok(async {
                let mut clients = Vec::new();
                for _ in 0..CLIENTS {
                    clients.push(TcpStream::connect(&cx, addr).await?);
                }
                let mut echoed = Vec::new();
                for (i, client) in clients.iter().enumerate().rev() {
                    let message = format!("client {i}").into_bytes();
                    client.write_all(message.clone()).await.0?;
                    let (n, back) = client.read(Vec::with_capacity(64)).await;
                    n?;
                    echoed.push(String::from_utf8(back).unwrap());
                }
                let kept = clients.pop().unwrap();
                for client in clients {
                    client.close().await?;
                }
                server.cancel();
                let ended = server.await;
                let (n, _) = kept.read(Vec::with_capacity(8)).await;
                Ok::<_, io::Error>((echoed, most.get(), live.get(), ended, n?))
            }
            .await))
        })
    });
    let Some(outcome) = support::where_concurrent(backend, outcome) else {
        return;
    };
    let (echoed, most, live, ended, eof) = outcome.unwrap();
    assert_eq!(echoed, ["client 3", "client 2", "client 1", "client 0"]);
    assert_eq!(most, CLIENTS, "every handler was live at once");
    assert_eq!(live, 0, "no handler outlived serve");
    let ended: Result<io::Result<std::convert::Infallible>, Canceled> = ended;
    let err = ended.expect("serve ended on its own cancel").unwrap_err();
    assert!(Canceled::is_canceled(&err), "{err}");
    assert_eq!(
        eof, 0,
        "the kept client's handler was canceled, its socket closed"
    );
}

conformance!(
    serve_refuses_up_front_without_concurrency,
    serve_handles_connections_at_the_same_time,
);
