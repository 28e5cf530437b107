//! The poll backend's socket ops beyond TCP streams: listeners with options, UDP, Unix stream and
//! datagram sockets, and what a cancel leaves of them.

mod common;

use std::io;
use std::net::{Shutdown, SocketAddr, UdpSocket as StdUdp};
use std::os::unix::net::{UnixDatagram as StdUnixDatagram, UnixStream as StdUnixStream};
use std::time::Duration;

use common::{is_canceled, kind, on_poll, output, scratch, submit};
use io_core::op::{SocketOptions, UnixKind};
use io_core::{Cx, Handle, Op};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn bind_udp(cx: &Cx) -> Handle {
    let (result, op) = submit(
        cx,
        Op::BindUdp {
            addr: any_port(),
            options: SocketOptions::udp(),
            socket: None,
        },
    )
    .await;
    result.unwrap();
    output(op)
}

async fn recv_from(cx: &Cx, socket: &Handle, room: usize) -> (Vec<u8>, Option<SocketAddr>) {
    match submit(
        cx,
        Op::RecvFrom {
            socket: socket.clone(),
            buf: Vec::with_capacity(room),
            from: None,
        },
    )
    .await
    {
        (Ok(n), Op::RecvFrom { buf, from, .. }) => {
            assert_eq!(n, buf.len());
            (buf, from)
        }
        (result, op) => panic!("recv_from: {result:?} {op:?}"),
    }
}

async fn send_to(cx: &Cx, socket: &Handle, bytes: &[u8], addr: SocketAddr) -> usize {
    let (result, _) = submit(
        cx,
        Op::SendTo {
            socket: socket.clone(),
            buf: bytes.to_vec(),
            addr,
        },
    )
    .await;
    result.unwrap()
}

async fn send(cx: &Cx, stream: &Handle, bytes: &[u8]) -> usize {
    let (result, _) = submit(
        cx,
        Op::Send {
            stream: stream.clone(),
            buf: bytes.to_vec(),
        },
    )
    .await;
    result.unwrap()
}

async fn recv(cx: &Cx, stream: &Handle, room: usize) -> Vec<u8> {
    let (result, op) = submit(
        cx,
        Op::Recv {
            stream: stream.clone(),
            buf: Vec::with_capacity(room),
        },
    )
    .await;
    result.unwrap();
    op.into_buf()
}

/// Datagrams go from one UDP socket to another with `send_to`/`recv_from`, the sender's address
/// comes with each, and a datagram longer than the buffer is cut to it (the rest is dropped;
/// the next receive gets the next datagram).
#[test]
fn udp_send_to_and_recv_from_round_trip() {
    let (got, from, cut, next, a_addr) = on_poll("udp round trip", |cx| async move {
        let a = bind_udp(&cx).await;
        let b = bind_udp(&cx).await;
        let b_addr = b.resource().local_addr().unwrap();
        assert_eq!(send_to(&cx, &a, b"ping", b_addr).await, 4);
        let (got, from) = recv_from(&cx, &b, 64).await;
        send_to(&cx, &a, b"0123456789", b_addr).await;
        send_to(&cx, &a, b"next", b_addr).await;
        let (cut, _) = recv_from(&cx, &b, 4).await;
        let (next, _) = recv_from(&cx, &b, 64).await;
        Ok((got, from, cut, next, a.resource().local_addr().unwrap()))
    });
    assert_eq!(got, b"ping");
    assert_eq!(from, Some(a_addr));
    assert_eq!(cut, b"0123", "truncated to the buffer");
    assert_eq!(next, b"next", "the cut datagram's rest is gone");
}

/// Connected UDP sockets use the stream ops: `send` goes to the peer, `recv` gets its
/// datagrams.
#[test]
fn udp_connected_send_and_recv() {
    let (to_b, to_a) = on_poll("connected udp", |cx| async move {
        let a = bind_udp(&cx).await;
        let b = bind_udp(&cx).await;
        let a_addr = a.resource().local_addr().unwrap();
        let b_addr = b.resource().local_addr().unwrap();
        for (socket, addr) in [(&a, b_addr), (&b, a_addr)] {
            let (result, _) = submit(
                &cx,
                Op::ConnectUdp {
                    socket: socket.clone(),
                    addr,
                },
            )
            .await;
            result.unwrap();
        }
        assert_eq!(a.resource().peer_addr().unwrap(), b_addr);
        send(&cx, &a, b"to b").await;
        let to_b = recv(&cx, &b, 16).await;
        send(&cx, &b, b"to a").await;
        let to_a = recv(&cx, &a, 16).await;
        Ok((to_b, to_a))
    });
    assert_eq!(
        (to_b.as_slice(), to_a.as_slice()),
        (&b"to b"[..], &b"to a"[..])
    );
}

/// A receive on an empty UDP socket waits (the loop sleeps) until a datagram comes from
/// another thread.
#[test]
fn udp_recv_from_waits_for_a_datagram_from_another_thread() {
    let (got, waited_ms) = on_poll("a udp receive that waits", |cx| async move {
        let socket = bind_udp(&cx).await;
        let addr = socket.resource().local_addr().unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let peer = StdUdp::bind(any_port()).unwrap();
            peer.send_to(b"late", addr).unwrap();
        });
        let start = cx.now_ms();
        let (got, _) = recv_from(&cx, &socket, 16).await;
        sender.join().unwrap();
        Ok((got, cx.now_ms() - start))
    });
    assert_eq!(got, b"late");
    assert!(
        waited_ms >= 40,
        "it waited for the datagram ({waited_ms} ms)"
    );
}

/// A `recv_from` canceled while it waits comes back canceled with its buffer; a datagram sent
/// afterwards is not lost: the next receive gets it.
#[test]
fn recv_from_canceled_in_flight_returns_its_buffer_and_loses_nothing() {
    let (canceled, capacity, next) = on_poll("a canceled recv_from", |cx| async move {
        let socket = bind_udp(&cx).await;
        let addr = socket.resource().local_addr().unwrap();
        let held = socket.clone();
        let reader = cx.spawn(move |cx| async move {
            let done = cx
                .submit(Op::RecvFrom {
                    socket: held,
                    buf: Vec::with_capacity(32),
                    from: None,
                })
                .await;
            Ok((is_canceled(&done.result), done.op.into_buf().capacity()))
        });
        cx.yield_now().await?;
        cx.yield_now().await?; // the receive waits on the socket
        reader.cancel();
        let (canceled, capacity) = reader.await?;
        let peer = StdUdp::bind(any_port()).unwrap();
        peer.send_to(b"after", addr).unwrap();
        let (next, _) = recv_from(&cx, &socket, 32).await;
        Ok((canceled, capacity, next))
    });
    assert!(canceled, "the receive was canceled");
    assert_eq!(capacity, 32, "its buffer came back");
    assert_eq!(next, b"after");
}

/// `Bind` honours `reuse_port` (two listeners share an address) and its absence (the second
/// bind fails), and the listener accepts.
#[test]
fn bind_honours_reuse_port() {
    let (shared, refused) = on_poll("bind with options", |cx| async move {
        let bind = |addr, reuse_port| Op::Bind {
            addr,
            options: SocketOptions::default().backlog(8).reuse_port(reuse_port),
            listener: None,
        };
        let (result, first) = submit(&cx, bind(any_port(), true)).await;
        result.unwrap();
        let first = output(first);
        let addr = first.resource().local_addr().unwrap();
        let (shared, _second) = submit(&cx, bind(addr, true)).await;
        let (result, plain) = submit(&cx, bind(any_port(), false)).await;
        result.unwrap();
        let plain = output(plain);
        let plain_addr = plain.resource().local_addr().unwrap();
        let (refused, _) = submit(&cx, bind(plain_addr, false)).await;
        drop(plain);
        Ok((kind(shared), kind(refused)))
    });
    assert_eq!(shared, Ok(0));
    assert_eq!(refused, Err(io::ErrorKind::AddrInUse));
}

/// A Unix stream listener, a connect and an accept; bytes echo both ways; a shutdown of the
/// write half reaches the peer as the end of the stream.
#[test]
fn unix_stream_listener_connect_accept_echo() {
    let dir = scratch("unix-echo");
    let path = dir.join("echo.sock");
    let (echoed, end) = on_poll("unix echo", move |cx| async move {
        let (result, listener) = submit(
            &cx,
            Op::BindUnix {
                path: path.clone(),
                kind: UnixKind::Listener,
                backlog: 16,
                socket: None,
            },
        )
        .await;
        result.unwrap();
        let listener = output(listener);
        let server = cx.spawn(move |cx| async move {
            let (result, accepted) = submit(
                &cx,
                Op::AcceptUnix {
                    listener,
                    accepted: None,
                },
            )
            .await;
            result.unwrap();
            let stream = output(accepted);
            loop {
                let got = recv(&cx, &stream, 64).await;
                if got.is_empty() {
                    return Ok(());
                }
                send(&cx, &stream, &got).await;
            }
        });
        let (result, client) = submit(&cx, Op::ConnectUnix { path, stream: None }).await;
        result.unwrap();
        let client = output(client);
        send(&cx, &client, b"hello unix").await;
        let echoed = recv(&cx, &client, 64).await;
        let (result, _) = submit(
            &cx,
            Op::Shutdown {
                stream: client.clone(),
                how: Shutdown::Write,
            },
        )
        .await;
        result.unwrap();
        server.await?;
        let end = recv(&cx, &client, 64).await; // the server dropped its end
        Ok((echoed, end))
    });
    assert_eq!(echoed, b"hello unix");
    assert!(end.is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

/// A connect to a Unix listener whose backlog is full is not refused: it is tried again until
/// the server accepts, then completes.
#[test]
fn unix_connect_to_a_full_backlog_completes_once_the_server_accepts() {
    let dir = scratch("unix-backlog");
    let path = dir.join("full.sock");
    let (connected, accepted) = on_poll("a connect to a full backlog", move |cx| async move {
        let (result, listener) = submit(
            &cx,
            Op::BindUnix {
                path: path.clone(),
                kind: UnixKind::Listener,
                backlog: 0,
                socket: None,
            },
        )
        .await;
        result.unwrap();
        let listener = output(listener);
        // Fill the backlog with non-blocking connects until one is refused for now.
        let address = socket2::SockAddr::unix(&path).unwrap();
        let mut queued = Vec::new();
        loop {
            let socket =
                socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
            socket.set_nonblocking(true).unwrap();
            match socket.connect(&address) {
                Ok(()) => queued.push(socket),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => panic!("filling the backlog: {err}"),
            }
            assert!(queued.len() < 1024, "the backlog never filled");
        }
        let waiting = queued.len();
        let server = cx.spawn(move |cx| async move {
            cx.sleep(30).await?;
            let mut accepted = Vec::new();
            for _ in 0..=waiting {
                let (result, op) = submit(
                    &cx,
                    Op::AcceptUnix {
                        listener: listener.clone(),
                        accepted: None,
                    },
                )
                .await;
                result.unwrap();
                accepted.push(output(op));
            }
            Ok(accepted.len())
        });
        let start = cx.now_ms();
        let (result, _stream) = submit(&cx, Op::ConnectUnix { path, stream: None }).await;
        let connected = (kind(result), cx.now_ms() - start >= 20);
        Ok((connected, server.await?))
    });
    assert_eq!(
        connected,
        (Ok(0), true),
        "connected once the server accepted"
    );
    assert!(accepted >= 2);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Unix datagrams: `send_to_unix` to a bound socket, `recv_from_unix` with the sender's path,
/// and `None` for an unnamed sender.
#[test]
fn unix_datagram_with_sender_path() {
    let dir = scratch("unix-datagram");
    let (a_path, b_path) = (dir.join("a.sock"), dir.join("b.sock"));
    let expected = a_path.clone();
    let (named, unnamed) = on_poll("unix datagrams", move |cx| async move {
        let mut sockets = Vec::new();
        for path in [&a_path, &b_path] {
            let (result, op) = submit(
                &cx,
                Op::BindUnix {
                    path: path.clone(),
                    kind: UnixKind::Datagram,
                    backlog: 0,
                    socket: None,
                },
            )
            .await;
            result.unwrap();
            sockets.push(output(op));
        }
        let (a, b) = (&sockets[0], &sockets[1]);
        let receive = |socket: Handle| Op::RecvFromUnix {
            socket,
            buf: Vec::with_capacity(32),
            from: None,
        };
        let (result, _) = submit(
            &cx,
            Op::SendToUnix {
                socket: a.clone(),
                buf: b"from a".to_vec(),
                path: b_path.clone(),
            },
        )
        .await;
        assert_eq!(result.unwrap(), 6);
        let named = match submit(&cx, receive(b.clone())).await {
            (Ok(_), Op::RecvFromUnix { buf, from, .. }) => (buf, from),
            other => panic!("{other:?}"),
        };
        let stranger = StdUnixDatagram::unbound().unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            stranger.send_to(b"anon", b_path).unwrap();
        });
        let unnamed = match submit(&cx, receive(b.clone())).await {
            (Ok(_), Op::RecvFromUnix { buf, from, .. }) => (buf, from),
            other => panic!("{other:?}"),
        };
        sender.join().unwrap();
        Ok((named, unnamed))
    });
    assert_eq!(named, (b"from a".to_vec(), Some(expected)));
    assert_eq!(unnamed, (b"anon".to_vec(), None));
    std::fs::remove_dir_all(dir).unwrap();
}

/// `Recv` and `Send` on a Unix stream made elsewhere (adopted: made non-blocking).
#[test]
fn recv_and_send_on_an_adopted_unix_stream() {
    let (ours, mut theirs) = StdUnixStream::pair().unwrap();
    let peer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut got = [0u8; 4];
        theirs.read_exact(&mut got).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        theirs.write_all(b"pong").unwrap();
        got
    });
    let got = on_poll("an adopted unix stream", move |cx| async move {
        let stream = Handle::new(ours);
        cx.io().adopt(&stream);
        send(&cx, &stream, b"ping").await;
        Ok(recv(&cx, &stream, 8).await) // waits for the peer
    });
    assert_eq!(got, b"pong");
    assert_eq!(&peer.join().unwrap(), b"ping");
}
