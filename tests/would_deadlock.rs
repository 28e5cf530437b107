//! A client and a server of one connection in one run: where each read comes after the write
//! it waits for, every backend runs it. Where a read (or a send) could only be satisfied by its
//! own peer acting first, the backends with concurrency run the peer meanwhile; blocking, which
//! runs each spawned task inline, fails it with `WouldDeadlock` instead of hanging. Each run has
//! a watchdog, so a hang fails the test.
mod support;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ioswap::{Backend, PeerAddr, TcpListener, TcpStream, WouldDeadlock};
use support::within;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// The report inside `err`, checking it is of kind `Other`.
fn would_deadlock(err: &io::Error) -> WouldDeadlock {
    assert_eq!(err.kind(), io::ErrorKind::Other, "{err}");
    WouldDeadlock::of(err)
        .unwrap_or_else(|| panic!("not a WouldDeadlock: {err}"))
        .clone()
}

/// Runs `body` (which gets the listener's address back with its value) under a watchdog.
fn run_pair<T: std::fmt::Debug + Send + 'static>(
    backend: Backend,
    what: &str,
    body: impl AsyncFnOnce(&ioswap::Cx, TcpListener) -> io::Result<T> + Send + 'static,
) -> (io::Result<T>, SocketAddr) {
    let outcome = within(20, what, move || {
        backend
            .run(|cx| async move {
                Ok(async {
                    let listener = TcpListener::bind(&cx, loopback()).await?;
                    let addr = listener.local_addr()?;
                    Ok::<_, io::Error>((body(&cx, listener).await, addr))
                }
                .await)
            })
            .unwrap()
    });
    outcome.unwrap()
}

/// What a read of "hi" its own peer writes gives: the bytes with concurrency, a `WouldDeadlock`
/// naming `peer` on blocking.
fn assert_read_or_reported(backend: Backend, read: io::Result<Vec<u8>>, peer: SocketAddr) {
    match backend {
        Backend::Blocking => {
            let report = would_deadlock(&read.unwrap_err());
            assert_eq!(
                report,
                WouldDeadlock {
                    op: "recv",
                    peer: PeerAddr::Ip(peer)
                }
            );
        }
        _ => assert_eq!(read.unwrap(), b"hi"),
    }
}

/// The client reads, in a task of its own, before the server wrote. With concurrency the task
/// waits while the server writes; on blocking the task runs inline, right there, and nothing
/// could ever write: its read fails with `WouldDeadlock`, naming the server's address.
fn a_read_before_its_own_peer_wrote(backend: Backend) {
    let (outcome, addr) = run_pair(
        backend,
        "read before the peer wrote",
        async |cx, listener| {
            let client = TcpStream::connect(cx, listener.local_addr()?).await?;
            let (server, _) = listener.accept().await?;
            let reader = cx.spawn(move |_| async move {
                let (n, buf) = client.read(Vec::with_capacity(16)).await;
                Ok(n.map(|_| buf))
            });
            server.write_all(b"hi".to_vec()).await.0?;
            Ok(reader.await?)
        },
    );
    assert_read_or_reported(backend, outcome.unwrap(), addr);
}

/// The same with the connection not even accepted yet: the peer is the listener's backlog,
/// which only this run could accept from.
fn a_read_before_its_own_listener_accepted(backend: Backend) {
    let (outcome, addr) = run_pair(backend, "read before the accept", async |cx, listener| {
        let client = TcpStream::connect(cx, listener.local_addr()?).await?;
        let reader = cx.spawn(move |_| async move {
            let (n, buf) = client.read(Vec::with_capacity(16)).await;
            Ok(n.map(|_| buf))
        });
        let (server, _) = listener.accept().await?;
        server.write_all(b"hi".to_vec()).await.0?;
        Ok(reader.await?)
    });
    assert_read_or_reported(backend, outcome.unwrap(), addr);
}

/// An HTTP/1-style server task reads a request, writes the response, and reads ahead for the
/// next request before its client (in the same run) has read the response. With concurrency the
/// read-ahead waits and sees the client close (0 bytes); on blocking it fails with
/// `WouldDeadlock` — and the response still reaches the client, which reads it afterwards.
fn a_read_ahead_after_the_response(backend: Backend) {
    let (outcome, _) = run_pair(backend, "a read-ahead", async |cx, listener| {
        let client = TcpStream::connect(cx, listener.local_addr()?).await?;
        let (server, _) = listener.accept().await?;
        client.write_all(b"GET /".to_vec()).await.0?;
        let server = cx.spawn(move |_| async move {
            Ok(async {
                let (n, request) = server.read(Vec::with_capacity(64)).await;
                n?;
                server.write_all(b"200 OK".to_vec()).await.0?;
                let (ahead, _) = server.read(Vec::with_capacity(64)).await;
                Ok::<_, io::Error>((request, ahead))
            }
            .await)
        });
        let (n, response) = client.read(Vec::with_capacity(64)).await;
        n?;
        client.close().await?;
        let (request, ahead) = server.await??;
        Ok((request, response, ahead))
    });
    let (request, response, ahead) = outcome.unwrap();
    assert_eq!(
        (request.as_slice(), response.as_slice()),
        (&b"GET /"[..], &b"200 OK"[..])
    );
    match backend {
        Backend::Blocking => {
            let report = would_deadlock(&ahead.unwrap_err());
            assert_eq!(report.op, "recv");
        }
        _ => assert_eq!(ahead.unwrap(), 0, "the client closed"),
    }
}

/// A task sends 64 MiB to a peer of the same run that reads only after the send: more than the
/// kernel's buffers hold. With concurrency the peer reads as the bytes come and gets them all;
/// on blocking the send fails with `WouldDeadlock` once the buffers are full, and the peer gets
/// exactly what went out before. On fiber 4 MiB, sixteen times the simulated network's window,
/// makes the same point (64 MiB through the simulator took 10 s of a debug build on a loaded
/// machine, near this file's 20 s guard).
fn a_send_its_own_peer_does_not_read(backend: Backend) {
    let len: usize = if backend == Backend::Fiber {
        4 << 20
    } else {
        64 << 20
    };
    let (outcome, _) = run_pair(backend, "a send nobody reads", async move |cx, listener| {
        let client = TcpStream::connect(cx, listener.local_addr()?).await?;
        let (server, _) = listener.accept().await?;
        let writer = cx.spawn(move |_| async move {
            let (sent, _) = client.write_all(vec![7; len]).await;
            let closed = client.close().await;
            Ok(sent.and(closed))
        });
        let mut received = 0;
        loop {
            let (n, _) = server.read(Vec::with_capacity(1 << 16)).await;
            match n? {
                0 => break,
                n => received += n,
            }
        }
        Ok((writer.await?, received))
    });
    let (sent, received) = outcome.unwrap();
    match backend {
        Backend::Blocking => {
            let report = would_deadlock(&sent.unwrap_err());
            assert_eq!(report.op, "send");
            assert!(received > 0 && received < len, "{received} bytes went out");
        }
        _ => {
            sent.unwrap();
            assert_eq!(received, len);
        }
    }
}

/// A peer on another thread is not this run's: a read waits for it, however long it takes
/// (here longer than blocking's grace for its own peers).
fn a_read_waits_for_a_peer_on_another_thread(backend: Backend) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(600));
        stream.write_all(b"late").unwrap();
    });
    let outcome = within(20, "a read of a late foreign peer", move || {
        backend
            .run(move |cx| async move {
                Ok(async {
                    let stream = TcpStream::connect(&cx, addr).await?;
                    let start = Instant::now();
                    let (n, buf) = stream.read(Vec::with_capacity(16)).await;
                    n?;
                    Ok::<_, io::Error>((buf, start.elapsed()))
                }
                .await)
            })
            .unwrap()
    });
    match backend {
        // Fiber's network is the run's own simulated one: the real listener of the other
        // thread is not in it, so nothing listens at its address there.
        Backend::Fiber => {
            let err = outcome.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            // The real peer still waits for a connection: give it one, so it ends.
            let _unblock = std::net::TcpStream::connect(addr).unwrap();
            peer.join().unwrap();
        }
        _ => {
            let (got, waited) = outcome.unwrap();
            assert_eq!(got, b"late");
            assert!(waited >= Duration::from_millis(500), "waited {waited:?}");
            peer.join().unwrap();
        }
    }
}

conformance!(
    a_read_before_its_own_peer_wrote,
    a_read_before_its_own_listener_accepted,
    a_read_ahead_after_the_response,
    a_send_its_own_peer_does_not_read,
    a_read_waits_for_a_peer_on_another_thread,
);
