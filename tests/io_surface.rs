//! The I/O surface beyond TCP basics, on every backend: listen backlog and socket options,
//! split streams, name lookup, UDP, Unix sockets, `spawn_blocking`, `Duration`/`Instant` time
//! and the standard streams. (The file system by path is in `fs_paths.rs`.)
mod support;

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ioswap::net::{
    lookup_host, SocketOptions, TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener,
    UnixStream,
};
use ioswap::{Backend, Canceled, Instant};

/// A Unix socket path unique per test and backend (removed on drop; on fiber it lives in the
/// simulated world only).
struct SockPath(PathBuf);

impl SockPath {
    fn new(test: &str, backend: Backend) -> SockPath {
        let path = std::env::temp_dir().join(format!(
            "ioswap-{test}-{backend}-{}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        SockPath(path)
    }
}

impl Drop for SockPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// 300 clients connect before the server accepts any: with std's backlog of 128 the kernel
/// would leave most of them waiting in SYN retries; with the default backlog of 1,024 every
/// handshake completes into the queue, and all 300 are then accepted.
fn default_backlog_queues_a_burst(backend: Backend) {
    const CLIENTS: usize = 300;
    let accepted = backend
        .run(|cx| async move {
            Ok(async {
                let listener = TcpListener::bind(&cx, "127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let mut clients = Vec::new();
                for _ in 0..CLIENTS {
                    clients.push(TcpStream::connect(&cx, addr).await?);
                }
                let mut accepted = 0;
                for _ in 0..CLIENTS {
                    listener.accept().await?;
                    accepted += 1;
                }
                Ok::<_, io::Error>(accepted)
            }
            .await)
        })
        .unwrap()
        .unwrap();
    assert_eq!(accepted, CLIENTS);
}

/// Two listeners with `SO_REUSEPORT` share one address; a third without it is refused.
fn reuse_port_shares_an_address(backend: Backend) {
    let (second, third) = backend
        .run(|cx| async move {
            Ok(async {
                let opts = SocketOptions::default().reuse_port(true);
                let first = TcpListener::bind_with(&cx, "127.0.0.1:0", opts).await?;
                let addr = first.local_addr()?;
                let second = TcpListener::bind_with(&cx, addr, opts).await;
                let third = TcpListener::bind(&cx, addr).await;
                Ok::<_, io::Error>((
                    second.map(|l| l.local_addr().unwrap() == addr),
                    third.map(drop).map_err(|e| e.kind()),
                ))
            }
            .await)
        })
        .unwrap()
        .unwrap();
    assert!(second.unwrap(), "the second listener has the same address");
    assert_eq!(third, Err(io::ErrorKind::AddrInUse));
}

/// A stream split into halves: a writer task sends 200 kB while a reader task reads the echo,
/// at the same time (neither side's buffers could hold it all).
fn split_halves_work_from_two_tasks(backend: Backend) {
    const LEN: usize = 200_000;
    let outcome = backend.run(|cx| async move {
        let listener = TcpListener::bind(&cx, "127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn_concurrent!(cx, move |_cx| async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut buf = Vec::with_capacity(16 * 1024);
            loop {
                let (n, back) = stream.read(buf).await;
                if n.unwrap() == 0 {
                    break;
                }
                stream.write_all(back.clone()).await.0.unwrap();
                buf = back;
            }
            stream.shutdown(Shutdown::Write).await.unwrap();
            Ok(())
        });
        let stream = TcpStream::connect(&cx, addr).await.unwrap();
        let (reader, writer) = stream.into_split();
        let read_task = spawn_concurrent!(cx, move |_cx| async move {
            let mut got = Vec::new();
            loop {
                let (n, buf) = reader.read(Vec::with_capacity(8192)).await;
                if n.unwrap() == 0 {
                    return Ok(got);
                }
                got.extend_from_slice(&buf);
            }
        });
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        for chunk in data.chunks(10_000) {
            writer.write_all(chunk.to_vec()).await.0.unwrap();
        }
        writer.shutdown(Shutdown::Write).await.unwrap();
        let got = read_task.await?;
        server.await?;
        Ok(Ok(got == data))
    });
    if let Some(same) = support::where_concurrent(backend, outcome) {
        assert!(same, "the echo through the halves differs");
    }
}

/// Names: "localhost" resolves to loopback, a connect by name reaches the listener, a name
/// that does not exist is an error, and a malformed one is `InvalidInput`.
fn connect_by_name(backend: Backend) {
    let (resolved, echoed, missing, malformed) = backend
        .run(|cx| async move {
            Ok(async {
                let resolved = lookup_host(&cx, "localhost:80").await?;
                let listener = TcpListener::bind(&cx, "127.0.0.1:0").await?;
                let port = listener.local_addr()?.port();
                let client = TcpStream::connect(&cx, ("localhost", port)).await?;
                let (server, _) = listener.accept().await?;
                client.write_all(b"by name".to_vec()).await.0?;
                let (n, buf) = server.read(Vec::with_capacity(16)).await;
                n?;
                let missing = lookup_host(&cx, "no-such-host.invalid:80").await;
                let malformed = TcpStream::connect(&cx, "localhost").await;
                Ok::<_, io::Error>((
                    resolved,
                    buf,
                    missing.is_err(),
                    malformed.map(drop).map_err(|e| e.kind()),
                ))
            }
            .await)
        })
        .unwrap()
        .unwrap();
    let loopback: SocketAddr = "127.0.0.1:80".parse().unwrap();
    assert!(resolved.contains(&loopback), "localhost gave {resolved:?}");
    assert_eq!(echoed, b"by name");
    assert!(missing, "a name that does not exist resolves to nothing");
    assert_eq!(malformed, Err(io::ErrorKind::InvalidInput));
}

/// UDP: `send_to`/`recv_from` with the sender's address; connected `send`/`recv`; a datagram
/// longer than the buffer is truncated to it, and the next datagram is whole.
fn udp_datagrams(backend: Backend) {
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let a = UdpSocket::bind(&cx, "127.0.0.1:0").await?;
                let b = UdpSocket::bind(&cx, "127.0.0.1:0").await?;
                let (a_addr, b_addr) = (a.local_addr()?, b.local_addr()?);
                let (sent, _) = a.send_to(b"first".to_vec(), b_addr).await;
                assert_eq!(sent?, 5);
                let (got, buf) = b.recv_from(Vec::with_capacity(64)).await;
                assert_eq!(got?, (5, a_addr));
                assert_eq!(buf, b"first");

                a.connect(b_addr).await?;
                b.connect(a_addr).await?;
                assert_eq!(a.peer_addr()?, b_addr);
                a.send(b"0123456789".to_vec()).await.0?;
                a.send(b"next".to_vec()).await.0?;
                let (n, short) = b.recv(Vec::with_capacity(4)).await;
                assert_eq!((n?, short.as_slice()), (4, &b"0123"[..]), "truncated");
                let (n, whole) = b.recv(Vec::with_capacity(64)).await;
                assert_eq!((n?, whole.as_slice()), (4, &b"next"[..]));
                b.send(b"back".to_vec()).await.0?;
                let (n, back) = a.recv(Vec::with_capacity(64)).await;
                n?;
                a.close().await?;
                b.close().await?;
                Ok::<_, io::Error>(back)
            }
            .await)
        })
        .unwrap()
        .unwrap();
    assert_eq!(result, b"back");
}

/// A UDP receive canceled while it waits loses nothing: the datagram sent after the cancel is
/// there for the next receive.
fn udp_recv_canceled_loses_nothing(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let socket = std::rc::Rc::new(UdpSocket::bind(&cx, "127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        let waiting = socket.clone();
        let receiver = spawn_concurrent!(cx, move |_cx| async move {
            let (got, _) = waiting.recv_from(Vec::with_capacity(64)).await;
            Ok(got.map(|(n, _)| n))
        });
        cx.sleep(5).await?;
        receiver.cancel();
        let canceled = receiver.await?;
        let sender = UdpSocket::bind(&cx, "127.0.0.1:0").await.unwrap();
        sender.send_to(b"kept".to_vec(), addr).await.0.unwrap();
        let (got, buf) = socket.recv_from(Vec::with_capacity(64)).await;
        got.unwrap();
        Ok(Ok((canceled.map_err(|e| Canceled::is_canceled(&e)), buf)))
    });
    if let Some((canceled, buf)) = support::where_concurrent(backend, outcome) {
        assert_eq!(canceled, Err(true), "the waiting receive was canceled");
        assert_eq!(buf, b"kept");
    }
}

/// Unix streams: bind, connect, accept, both directions, the end of the stream, paths; a
/// connect to nothing is `NotFound`, a bind to a taken path `AddrInUse`.
fn unix_stream_echo(backend: Backend) {
    let path = SockPath::new("unix-stream", backend);
    let p = path.0.clone();
    let (echo, paths, missing, taken) = backend
        .run(|cx| async move {
            Ok(async {
                let listener = UnixListener::bind(&cx, &p).await?;
                let client = UnixStream::connect(&cx, &p).await?;
                let server = listener.accept().await?;
                client.write_all(b"ping".to_vec()).await.0?;
                client.shutdown(Shutdown::Write).await?;
                let mut got = Vec::new();
                loop {
                    let (n, buf) = server.read(Vec::with_capacity(16)).await;
                    if n? == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf);
                }
                server.write_all(b"pong".to_vec()).await.0?;
                let (n, back) = client.read(Vec::with_capacity(16)).await;
                n?;
                got.extend_from_slice(&back);
                let paths = (
                    listener.local_path()?,
                    client.peer_path()?,
                    client.local_path()?,
                );
                let missing = UnixStream::connect(&cx, p.with_extension("missing")).await;
                let taken = UnixListener::bind(&cx, &p).await;
                Ok::<_, io::Error>((
                    got,
                    paths,
                    missing.map(drop).map_err(|e| e.kind()),
                    taken.map(drop).map_err(|e| e.kind()),
                ))
            }
            .await)
        })
        .unwrap()
        .unwrap();
    assert_eq!(echo, b"pingpong");
    assert_eq!(paths, (Some(path.0.clone()), Some(path.0.clone()), None));
    assert_eq!(missing, Err(io::ErrorKind::NotFound));
    assert_eq!(taken, Err(io::ErrorKind::AddrInUse));
}

/// Unix datagrams: `send_to` a path, `recv_from` gives the sender's path.
fn unix_datagrams(backend: Backend) {
    let (a_path, b_path) = (
        SockPath::new("unix-dgram-a", backend),
        SockPath::new("unix-dgram-b", backend),
    );
    let (pa, pb) = (a_path.0.clone(), b_path.0.clone());
    let (got, from) = backend
        .run(|cx| async move {
            Ok(async {
                let a = UnixDatagram::bind(&cx, &pa).await?;
                let b = UnixDatagram::bind(&cx, &pb).await?;
                a.send_to(b"hello".to_vec(), &pb).await.0?;
                let (got, buf) = b.recv_from(Vec::with_capacity(64)).await;
                let (n, from) = got?;
                assert_eq!(n, 5);
                assert_eq!(a.local_path()?, Some(pa.clone()));
                Ok::<_, io::Error>((buf, from))
            }
            .await)
        })
        .unwrap()
        .unwrap();
    assert_eq!(got, b"hello");
    assert_eq!(from, Some(a_path.0.clone()));
}

/// `spawn_blocking`: the closure's value comes back; its panic reaches the joiner (here the
/// main task, whose run then reports it).
fn spawn_blocking_value_and_panic(backend: Backend) {
    let value = backend
        .run(|cx| async move { cx.spawn_blocking(|| (1..=100u64).sum::<u64>()).await })
        .unwrap();
    assert_eq!(value, 5050);
    let panicked = backend.run(|cx| async move {
        cx.spawn_blocking(|| -> u64 { panic!("in the closure") })
            .await
    });
    match panicked {
        Err(ioswap::Error::Run(ioswap::RunError::Panicked { message, .. })) => {
            assert!(message.contains("in the closure"), "{message}")
        }
        other => panic!("expected the closure's panic, got {other:?}"),
    }
}

/// A canceled `spawn_blocking` task ends at once with `Err(Canceled)`, while its closure (which
/// cannot be interrupted) runs on. Real backends: the closure waits for a release that comes
/// only after the cancel returned. Fiber: the closure runs at a later turn, never on a thread.
fn spawn_blocking_cancel_returns_at_once(backend: Backend) {
    use std::sync::mpsc;
    let outcome = backend.run(move |cx| async move {
        let (release, released) = mpsc::channel::<()>();
        // Blocking runs the closure inline, so only a pool backend can wait for the release.
        let real = matches!(backend, Backend::Uring | Backend::Poll);
        let task = cx.spawn_blocking(move || {
            if real {
                // Bounded: a lost release fails the test instead of hanging it.
                let _ = released.recv_timeout(Duration::from_secs(10));
            }
            7u32
        });
        cx.sleep(5).await?;
        task.cancel();
        let joined = task.await;
        let _ = release.send(());
        Ok(Ok::<_, ioswap::SpawnError>(joined))
    });
    match backend {
        // Blocking runs the closure inline, to its end, before the cancel can be asked for.
        Backend::Blocking => assert_eq!(outcome.unwrap().unwrap(), Ok(7)),
        _ => assert_eq!(outcome.unwrap().unwrap(), Err(Canceled)),
    }
}

/// `sleep_for` rounds a `Duration` up to whole milliseconds; `sleep_until` takes an `Instant`;
/// `now` reads the backend's clock. Exact on fiber, no earlier on real clocks.
fn duration_and_instant_sleeps(backend: Backend) {
    let (slept, until) = backend
        .run(|cx| async move {
            let start: Instant = cx.now();
            cx.sleep_for(Duration::from_micros(1_500)).await?;
            let slept = cx.now() - start;
            let deadline = cx.now() + Duration::from_millis(10);
            cx.sleep_until(deadline).await?;
            Ok((slept, cx.now().duration_since(start)))
        })
        .unwrap();
    let (slept, until) = (slept.as_millis() as u64, until.as_millis() as u64);
    if backend == Backend::Fiber {
        assert_eq!((slept, until), (2, 12));
    } else {
        // A real clock only ever overruns.
        assert!(
            slept >= 2 && until >= 12,
            "slept {slept} ms, until {until} ms"
        );
    }
}

/// A write to stdout gives the count written (fiber captures it in the simulated world).
fn stdout_write(backend: Backend) {
    let written = backend
        .run(|cx| async move {
            let out = ioswap::stdio::stdout(&cx);
            let (n, _) = out.write(b"io_surface: stdout works\n".to_vec()).await;
            Ok(n.map_err(|e| e.kind()))
        })
        .unwrap();
    assert_eq!(written, Ok(25));
}

conformance!(
    default_backlog_queues_a_burst,
    reuse_port_shares_an_address,
    split_halves_work_from_two_tasks,
    connect_by_name,
    udp_datagrams,
    udp_recv_canceled_loses_nothing,
    unix_stream_echo,
    unix_datagrams,
    spawn_blocking_value_and_panic,
    spawn_blocking_cancel_returns_at_once,
    duration_and_instant_sleeps,
    stdout_write,
);
