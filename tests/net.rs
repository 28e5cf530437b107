//! TCP through the op protocol, on every backend.
mod support;

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc;

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use ioswap::{AbandonedWrite, Backend, Compat, Cx, TcpListener, TcpStream};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Serves `connections` echo sessions, one after another: reads until the peer shuts down its
/// side, sending every chunk back.
async fn echo_server(cx: &Cx, listener: TcpListener, connections: usize) -> io::Result<usize> {
    let mut echoed = 0;
    for _ in 0..connections {
        let (stream, _peer) = listener.accept().await?;
        let mut buf = Vec::with_capacity(4096);
        loop {
            let (n, back) = stream.read(buf).await;
            if n? == 0 {
                break;
            }
            let (sent, back) = stream.write_all(back).await;
            sent?;
            echoed += back.len();
            buf = back;
        }
        stream.close().await?;
    }
    listener.close().await?;
    let _ = cx;
    Ok(echoed)
}

/// Sends `message` in pieces on `connections` connections to `addr` one after another,
/// reading the echo back as it comes (so neither side's socket buffer has to hold the whole
/// message); gives what came back on each.
async fn echo_client(
    cx: &Cx,
    addr: SocketAddr,
    message: &[u8],
    connections: usize,
) -> io::Result<Vec<Vec<u8>>> {
    let mut all = Vec::new();
    for _ in 0..connections {
        let stream = TcpStream::connect(cx, addr).await?;
        let mut got = Vec::new();
        let mut sent = 0;
        for piece in message.chunks(5_000) {
            stream.write_all(piece.to_vec()).await.0?;
            sent += piece.len();
            while got.len() < sent {
                let (n, buf) = stream.read(Vec::with_capacity(8192)).await;
                if n? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                got.extend_from_slice(&buf);
            }
        }
        stream.shutdown(Shutdown::Write).await?;
        loop {
            let (n, buf) = stream.read(Vec::with_capacity(8192)).await;
            if n? == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        stream.close().await?;
        all.push(got);
    }
    Ok(all)
}

/// A TCP echo over loopback; every byte comes back in order. The server runs on its own thread
/// (its own run of the same backend), the client here; on fiber, whose simulated network is
/// the run's own, both run in one run, the server as a task.
fn tcp_echo_over_loopback(backend: Backend) {
    const CONNECTIONS: usize = 4;
    let message: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let expected = message.clone();
    let (echoed, received) = if backend == Backend::Fiber {
        backend
            .run(move |cx| async move {
                Ok(async {
                    let listener = TcpListener::bind(&cx, loopback()).await?;
                    let addr = listener.local_addr()?;
                    let server = cx.spawn(move |cx| async move {
                        Ok(echo_server(&cx, listener, CONNECTIONS).await)
                    });
                    let received = echo_client(&cx, addr, &message, CONNECTIONS).await?;
                    let echoed = server.await.unwrap()?;
                    Ok::<_, io::Error>((echoed, received))
                }
                .await)
            })
            .unwrap()
            .unwrap()
    } else {
        let (port_tx, port_rx) = mpsc::channel();
        let server = std::thread::spawn(move || {
            backend
                .run(move |cx| async move {
                    Ok(async {
                        let listener = TcpListener::bind(&cx, loopback()).await?;
                        port_tx.send(listener.local_addr()?).unwrap();
                        echo_server(&cx, listener, CONNECTIONS).await
                    }
                    .await)
                })
                .unwrap()
        });
        let addr = port_rx.recv().unwrap();
        let received = backend
            .run(move |cx| async move { Ok(echo_client(&cx, addr, &message, CONNECTIONS).await) })
            .unwrap()
            .unwrap();
        (server.join().unwrap().unwrap(), received)
    };
    assert_eq!(echoed, CONNECTIONS * expected.len());
    for got in received {
        assert!(got == expected, "echo differs ({} bytes back)", got.len());
    }
}

/// Client and server in one run, through the `futures-io` traits (what codecs use): the
/// accepted peer address is the client's, and both directions arrive whole.
fn futures_io_traits_in_one_run(backend: Backend) {
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let listener = TcpListener::bind(&cx, loopback()).await?;
                // Connect first: the kernel completes the handshake into the listen backlog,
                // so this also works on blocking, where every call runs to its end inline.
                let mut client = TcpStream::connect(&cx, listener.local_addr()?)
                    .await?
                    .compat();
                let (server, peer) = listener.accept().await?;
                let mut server = server.compat();
                let peer_ok = peer == client.get_ref().local_addr()?;
                AsyncWriteExt::write_all(&mut client, b"request: hello").await?;
                client.flush().await?;
                AsyncWriteExt::close(&mut client).await?; // shuts the write half down
                let mut request = Vec::new();
                server.read_to_end(&mut request).await?;
                AsyncWriteExt::write_all(&mut server, b"response: world").await?;
                AsyncWriteExt::close(&mut server).await?;
                let mut response = String::new();
                client.read_to_string(&mut response).await?;
                Ok::<_, io::Error>((peer_ok, request, response))
            }
            .await)
        })
        .unwrap();
    let (peer_ok, request, response) = result.unwrap();
    assert!(peer_ok, "accept's peer address is the client's");
    assert_eq!(request, b"request: hello");
    assert_eq!(response, "response: world");
}

/// Connecting where nobody listens is `ConnectionRefused`.
fn connect_refused(backend: Backend) {
    let addr = {
        let probe = std::net::TcpListener::bind(loopback()).unwrap();
        probe.local_addr().unwrap()
    }; // dropped: nothing listens there now
    let err = backend
        .run(move |cx| async move { Ok(TcpStream::connect(&cx, addr).await.map(drop)) })
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

/// Bytes a stream received ahead of the caller survive a write through `AsyncWrite`: the peer
/// sends "ABCD", the caller reads 2, writes, then reads the rest.
fn trait_write_keeps_received_bytes(backend: Backend) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    peer.write_all(b"ABCD").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let mut stream = TcpStream::from_std(&cx, server).compat();
                let mut head = [0u8; 2];
                stream.read_exact(&mut head).await?;
                AsyncWriteExt::write_all(&mut stream, b"ok").await?;
                stream.flush().await?;
                let mut all = head.to_vec();
                stream.read_to_end(&mut all).await?;
                stream.close().await?;
                Ok::<_, io::Error>(all)
            }
            .await)
        })
        .unwrap();
    match backend {
        Backend::Fiber => support::assert_unsupported(&result.unwrap_err()),
        _ => {
            assert_eq!(result.unwrap(), b"ABCD");
            let mut reply = Vec::new();
            peer.read_to_end(&mut reply).unwrap();
            assert_eq!(reply, b"ok");
        }
    }
}

/// A std-connected pair: (plain std peer, the socket the backend will serve).
fn std_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (peer, server)
}

/// The report an `AsyncWrite` call gave about a write given up on, if that is what it was.
fn abandoned_write(result: &io::Result<()>) -> Option<AbandonedWrite> {
    let err = result.as_ref().err()?;
    let report = err.get_ref()?.downcast_ref::<AbandonedWrite>()?;
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    Some(*report)
}

/// Runs `body` on a trait-written stream over a std peer, closes the stream, and gives what
/// `body` returned (the first write's poll, what followed) and every byte the peer received.
fn given_up_write_then<F>(
    backend: Backend,
    then: F,
) -> io::Result<(Option<usize>, io::Result<()>, Vec<u8>)>
where
    F: AsyncFnOnce(&mut Compat<TcpStream>) -> io::Result<()> + 'static,
{
    use std::io::Read;
    let (mut peer, server) = std_pair();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let mut stream = TcpStream::from_std(&cx, server).compat();
                // Polled once, then given up: `Pending` while the write is in flight (uring);
                // blocking writes inline.
                let first = future::poll_once(AsyncWriteExt::write(&mut stream, b"AAAA"))
                    .await
                    .transpose()?;
                let then = then(&mut stream).await;
                stream.close().await?;
                Ok::<_, io::Error>((first, then))
            }
            .await)
        })
        .unwrap();
    let (first, then) = result?;
    let mut received = Vec::new();
    peer.read_to_end(&mut received).unwrap();
    Ok((first, then, received))
}

/// What a given-up write then `then` must give: on uring the 4 bytes of the given-up write
/// went out and `then` reports them as an `AbandonedWrite`, and the peer got exactly those; on
/// blocking and poll the first write was never `Pending` (it wrote at once), so the peer got
/// `inline_received`; fiber refuses I/O.
fn assert_given_up_write_reported(
    backend: Backend,
    outcome: io::Result<(Option<usize>, io::Result<()>, Vec<u8>)>,
    inline_received: &[u8],
) {
    match backend {
        Backend::Fiber => support::assert_unsupported(&outcome.unwrap_err()),
        // Poll, like blocking, writes at once when the socket or file takes the bytes: a
        // readiness-based write is only ever `Pending` before it has written anything.
        Backend::Blocking | Backend::Poll => {
            let (first, then, received) = outcome.unwrap();
            assert_eq!((first, then.ok()), (Some(4), Some(())));
            assert_eq!(received, inline_received);
        }
        _ => {
            let (first, then, received) = outcome.unwrap();
            assert_eq!(first, None, "the first write was pending");
            assert_eq!(
                abandoned_write(&then),
                Some(AbandonedWrite { written: 4, len: 4 }),
                "{then:?}"
            );
            assert_eq!(String::from_utf8_lossy(&received), "AAAA");
        }
    }
}

/// A write given up on after `Pending` is never credited to a later write of other bytes: the
/// peer receives exactly the bytes the writer was told were written. (Its bytes were in the
/// kernel and went out; the next write reports them as an `AbandonedWrite` instead of writing.)
fn a_given_up_trait_write_is_never_credited_to_other_bytes(backend: Backend) {
    let outcome = given_up_write_then(backend, async |stream: &mut Compat<TcpStream>| {
        AsyncWriteExt::write_all(stream, b"BBBBBBBB").await
    });
    assert_given_up_write_reported(backend, outcome, b"AAAABBBBBBBB");
}

/// A write given up on after `Pending` whose bytes went out is reported by the next flush: no
/// byte reaches the peer that no call reported.
fn a_given_up_trait_write_is_reported_by_flush(backend: Backend) {
    let outcome = given_up_write_then(backend, async |stream: &mut Compat<TcpStream>| {
        AsyncWriteExt::flush(stream).await
    });
    assert_given_up_write_reported(backend, outcome, b"AAAA");
}

/// A write retried after `Pending` with its bytes and more (futures-io lets the buffer change)
/// is credited with what the first attempt wrote: the bytes go out once.
fn a_given_up_trait_write_retried_with_more_bytes_goes_out_once(backend: Backend) {
    let outcome = given_up_write_then(backend, async |stream: &mut Compat<TcpStream>| {
        AsyncWriteExt::write_all(stream, b"AAAABBBB").await
    });
    match backend {
        Backend::Fiber => support::assert_unsupported(&outcome.unwrap_err()),
        // Poll, like blocking, writes at once when the socket or file takes the bytes: a
        // readiness-based write is only ever `Pending` before it has written anything.
        Backend::Blocking | Backend::Poll => {
            let (first, then, received) = outcome.unwrap();
            assert_eq!((first, then.ok()), (Some(4), Some(())));
            assert_eq!(received, b"AAAAAAAABBBB");
        }
        _ => {
            let (first, then, received) = outcome.unwrap();
            assert_eq!((first, then.ok()), (None, Some(())));
            assert_eq!(String::from_utf8_lossy(&received), "AAAABBBB");
        }
    }
}

conformance!(
    a_given_up_trait_write_is_never_credited_to_other_bytes,
    a_given_up_trait_write_is_reported_by_flush,
    a_given_up_trait_write_retried_with_more_bytes_goes_out_once,
    trait_write_keeps_received_bytes,
    tcp_echo_over_loopback,
    futures_io_traits_in_one_run,
    connect_refused,
);
