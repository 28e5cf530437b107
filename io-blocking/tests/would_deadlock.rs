//! A receive (or a send, or a connect) that only this thread could satisfy fails with
//! `WouldDeadlock` after the grace instead of hanging; one that someone else may satisfy — a
//! socket of another thread, which acts later than the grace — waits and succeeds.
mod support;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use io_blocking::DEADLOCK_GRACE;
use io_core::op::{SocketOptions, UnixKind};
use io_core::{Handle, Op, PeerAddr, WouldDeadlock};
use support::{
    accept_unix, bind_udp, bind_unix, connect_unix, loopback, ok, recv, run, scratch, send,
};

/// Longer than the grace: a foreign peer acting this late must still be waited for.
const LATE: Duration = Duration::from_millis(600);

/// The report inside `err`.
fn report(err: &io::Error) -> WouldDeadlock {
    assert_eq!(err.kind(), io::ErrorKind::Other, "{err}");
    WouldDeadlock::of(err)
        .unwrap_or_else(|| panic!("not a WouldDeadlock: {err}"))
        .clone()
}

/// The peer a Unix socket's report names: an unnamed Unix socket.
fn unix_peer() -> PeerAddr {
    PeerAddr::Unix(None)
}

/// Asserts `took` is the grace, give or take the scheduler.
fn assert_bounded(took: Duration) {
    assert!(took >= DEADLOCK_GRACE, "reported after {took:?}");
    assert!(took < Duration::from_secs(5), "reported after {took:?}");
}

/// A connected UDP socket whose peer is a socket of ours: with nothing queued its receive is
/// reported (naming the peer); with a datagram queued it succeeds.
#[test]
fn a_udp_receive_from_an_own_peer_is_reported_when_nothing_is_queued() {
    let (first, took, second, from_op, got) = run(20, |cx| async move {
        let a = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let b = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let b_addr = b.resource().local_addr().unwrap();
        ok(
            &cx,
            Op::ConnectUdp {
                socket: a.clone(),
                addr: b_addr,
            },
        )
        .await;
        let started = Instant::now();
        let first = report(&recv(&cx, &a, 64).await.unwrap_err());
        let took = started.elapsed();
        let second = cx
            .submit(Op::RecvFrom {
                socket: a.clone(),
                buf: Vec::with_capacity(64),
                from: None,
            })
            .await;
        let from_op = report(&second.result.unwrap_err());
        let addr = a.resource().local_addr().unwrap();
        let buf = b"queued".to_vec();
        ok(
            &cx,
            Op::SendTo {
                socket: b,
                buf,
                addr,
            },
        )
        .await;
        (
            first,
            took,
            b_addr,
            from_op,
            recv(&cx, &a, 64).await.unwrap(),
        )
    });
    assert_eq!(
        first,
        WouldDeadlock {
            op: "recv",
            peer: PeerAddr::Ip(second)
        }
    );
    assert_eq!(
        from_op,
        WouldDeadlock {
            op: "recv_from",
            peer: PeerAddr::Ip(second)
        }
    );
    assert_bounded(took);
    assert_eq!(got, b"queued");
}

/// A foreign socket sends `bytes` to `to` from `from` (`reuse_port` if shared) after `LATE`.
fn send_late(
    from: SocketAddr,
    shared: bool,
    to: SocketAddr,
    bytes: &'static [u8],
) -> std::thread::JoinHandle<()> {
    let socket = if shared {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        socket.set_reuse_port(true).unwrap();
        socket.bind(&from.into()).unwrap();
        UdpSocket::from(socket)
    } else {
        UdpSocket::bind(from).unwrap()
    };
    std::thread::spawn(move || {
        std::thread::sleep(LATE);
        socket.send_to(bytes, to).unwrap();
    })
}

/// No false report: an unconnected socket takes datagrams from anyone; a connected one whose
/// peer is foreign, or whose peer's address a socket of ours shares with `reuse_port` (so a
/// foreign socket may send from it too), waits for the late datagram.
#[test]
fn a_udp_receive_another_thread_may_satisfy_waits() {
    let got = run(20, |cx| async move {
        let mut got = Vec::new();
        // Unconnected.
        let a = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let own = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let a_addr = a.resource().local_addr().unwrap();
        let sender = send_late(loopback(), false, a_addr, b"anyone");
        let (n, buf) = support::io(
            &cx,
            Op::RecvFrom {
                socket: a.clone(),
                buf: Vec::with_capacity(64),
                from: None,
            },
        )
        .await;
        n.unwrap();
        got.push(buf);
        sender.join().unwrap();
        drop(own);

        // Connected to a foreign peer.
        let foreign = UdpSocket::bind(loopback()).unwrap();
        let foreign_addr = foreign.local_addr().unwrap();
        drop(foreign);
        ok(
            &cx,
            Op::ConnectUdp {
                socket: a.clone(),
                addr: foreign_addr,
            },
        )
        .await;
        let sender = send_late(foreign_addr, false, a_addr, b"foreign");
        got.push(recv(&cx, &a, 64).await.unwrap());
        sender.join().unwrap();

        // Connected to a peer of ours bound with `reuse_port`, shared by a foreign socket.
        let shared = SocketOptions::udp().reuse_port(true);
        let b = bind_udp(&cx, loopback(), shared).await.unwrap();
        let c = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let (b_addr, c_addr) = (
            b.resource().local_addr().unwrap(),
            c.resource().local_addr().unwrap(),
        );
        ok(
            &cx,
            Op::ConnectUdp {
                socket: c.clone(),
                addr: b_addr,
            },
        )
        .await;
        let sender = send_late(b_addr, true, c_addr, b"shared");
        got.push(recv(&cx, &c, 64).await.unwrap());
        sender.join().unwrap();
        got
    });
    assert_eq!(got, [&b"anyone"[..], b"foreign", b"shared"]);
}

/// Both ends of a Unix stream made here: the client's receive is reported while its connection
/// waits in the backlog and after the accept, the accepted end's too; queued bytes are read.
#[test]
fn a_unix_receive_from_an_own_peer_is_reported_when_nothing_is_queued() {
    let dir = scratch("wd_unix");
    let path = dir.join("s.sock");
    let (reports, took, got) = run(20, move |cx| async move {
        let listener = bind_unix(&cx, path.clone(), UnixKind::Listener, 8).await;
        let client = connect_unix(&cx, path).await.unwrap();
        let started = Instant::now();
        let mut reports = vec![report(&recv(&cx, &client, 64).await.unwrap_err())];
        let took = started.elapsed();
        let server = accept_unix(&cx, &listener).await;
        reports.push(report(&recv(&cx, &server, 64).await.unwrap_err()));
        reports.push(report(&recv(&cx, &client, 64).await.unwrap_err()));
        send(&cx, &client, b"up").await.unwrap();
        send(&cx, &server, b"down").await.unwrap();
        let got = (
            recv(&cx, &server, 64).await.unwrap(),
            recv(&cx, &client, 64).await.unwrap(),
        );
        (reports, took, got)
    });
    let expected = WouldDeadlock {
        op: "recv",
        peer: unix_peer(),
    };
    assert_eq!(reports, [expected.clone(), expected.clone(), expected]);
    assert_bounded(took);
    assert_eq!(got, (b"up".to_vec(), b"down".to_vec()));
    std::fs::remove_dir_all(dir).unwrap();
}

/// A send on a Unix stream to an own peer that stops taking bytes (its buffer full) is
/// reported; a connect to a listener of ours whose backlog is full is too.
#[test]
fn a_unix_send_and_connect_only_this_thread_could_unblock_are_reported() {
    let dir = scratch("wd_unix_send");
    let path = dir.join("s.sock");
    let (sent, send_report, connected, connect_report) = run(30, move |cx| async move {
        let listener = bind_unix(&cx, path.clone(), UnixKind::Listener, 0).await;
        let client = connect_unix(&cx, path.clone()).await.unwrap();
        let _server = accept_unix(&cx, &listener).await;
        let chunk = vec![7_u8; 1 << 16];
        let mut sent = 0;
        let send_report = loop {
            match send(&cx, &client, &chunk).await {
                Ok(n) => sent += n,
                Err(e) => break report(&e),
            }
            assert!(sent < 1 << 28, "the buffer never filled");
        };
        let mut queued = Vec::new();
        let connect_report = loop {
            match connect_unix(&cx, path.clone()).await {
                Ok(stream) => queued.push(stream),
                Err(e) => break report(&e),
            }
            assert!(queued.len() < 64, "the backlog never filled");
        };
        (sent, send_report, queued.len(), connect_report)
    });
    assert!(sent > 0);
    assert_eq!(
        send_report,
        WouldDeadlock {
            op: "send",
            peer: unix_peer()
        }
    );
    assert!(
        (1..=2).contains(&connected),
        "{connected} connections queued on a backlog of 0"
    );
    assert_eq!(
        connect_report,
        WouldDeadlock {
            op: "connect_unix",
            peer: unix_peer()
        }
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// No false report on Unix streams with a foreign end: a client of a foreign listener, and the
/// accepted end of a foreign client, wait for bytes written late.
#[test]
fn a_unix_receive_another_thread_may_satisfy_waits() {
    let dir = scratch("wd_unix_foreign");
    let (foreign_path, own_path) = (dir.join("foreign.sock"), dir.join("own.sock"));
    let foreign = UnixListener::bind(&foreign_path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = foreign.accept().unwrap();
        std::thread::sleep(LATE);
        io::Write::write_all(&mut stream, b"from the server").unwrap();
    });
    let client_path: PathBuf = own_path.clone();
    let got = run(20, move |cx| async move {
        let client = connect_unix(&cx, foreign_path).await.unwrap();
        let from_server = recv(&cx, &client, 64).await.unwrap();

        let listener = bind_unix(&cx, own_path.clone(), UnixKind::Listener, 8).await;
        let foreign_client = std::thread::spawn(move || {
            let mut stream = UnixStream::connect(&client_path).unwrap();
            std::thread::sleep(LATE);
            io::Write::write_all(&mut stream, b"from the client").unwrap();
        });
        let accepted: Handle = accept_unix(&cx, &listener).await;
        let from_client = recv(&cx, &accepted, 64).await.unwrap();
        foreign_client.join().unwrap();
        (from_server, from_client)
    });
    server.join().unwrap();
    assert_eq!(
        got,
        (b"from the server".to_vec(), b"from the client".to_vec())
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// What a read ended with: its bytes, or its error and whether it was a report.
fn outcome(read: (io::Result<usize>, Vec<u8>)) -> Result<Vec<u8>, String> {
    match read {
        (Ok(n), buf) => Ok(buf[..n].to_vec()),
        (Err(e), _) => Err(format!(
            "{e} (WouldDeadlock: {})",
            WouldDeadlock::of(&e).is_some()
        )),
    }
}

/// `[::1]:port`, or `None` where this host has no IPv6 loopback (the test is then moot).
fn v6_loopback(port: u16) -> Option<SocketAddr> {
    let addr = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    std::net::UdpSocket::bind((std::net::Ipv6Addr::LOCALHOST, 0))
        .ok()
        .map(|_| addr)
}

/// Accepts one connection on `listener` (another thread's) and writes `bytes` on it after
/// `LATE`, keeping it open a while after.
fn write_late(listener: std::net::TcpListener, bytes: &'static [u8]) {
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        std::thread::sleep(LATE);
        io::Write::write_all(&mut stream, bytes).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    });
}

/// No false report across address families: a listener of ours on `0.0.0.0:P` says nothing of
/// `[::1]:P`, where Linux lets a foreign listener bind beside it; a read on a connection to it
/// waits for the late bytes.
#[test]
fn a_tcp_peer_of_the_other_family_than_an_own_wildcard_listener_is_waited_for() {
    let got = run(20, |cx| async move {
        let ours = io_core::TcpListener::bind(&cx, "0.0.0.0:0").await.unwrap();
        let Some(v6) = v6_loopback(ours.local_addr().unwrap().port()) else {
            return Ok(b"no IPv6 here".to_vec());
        };
        write_late(std::net::TcpListener::bind(v6).unwrap(), b"v6");
        let client = io_core::TcpStream::connect(&cx, v6).await.unwrap();
        let read = outcome(client.read(Vec::with_capacity(16)).await);
        drop(ours);
        read
    });
    if got != Ok(b"no IPv6 here".to_vec()) {
        assert_eq!(got, Ok(b"v6".to_vec()));
    }
}

/// The same for UDP: a socket of ours bound alone to `0.0.0.0:P` does not keep a foreign one
/// off `[::1]:P`, which sends late to a socket of ours connected to it.
#[test]
fn a_udp_peer_of_the_other_family_than_an_own_wildcard_socket_is_waited_for() {
    let got = run(20, |cx| async move {
        let ours = io_core::UdpSocket::bind(&cx, "0.0.0.0:0").await.unwrap();
        let Some(v6) = v6_loopback(ours.local_addr().unwrap().port()) else {
            return Ok(b"no IPv6 here".to_vec());
        };
        let foreign = UdpSocket::bind(v6).unwrap();
        let receiver = io_core::UdpSocket::bind(&cx, "[::1]:0").await.unwrap();
        receiver.connect(v6).await.unwrap();
        let to = receiver.local_addr().unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(LATE);
            foreign.send_to(b"v6", to).unwrap();
        });
        let read = outcome(receiver.recv(Vec::with_capacity(16)).await);
        sender.join().unwrap();
        drop(ours);
        read
    });
    if got != Ok(b"no IPv6 here".to_vec()) {
        assert_eq!(got, Ok(b"v6".to_vec()));
    }
}

/// No false report with `SO_REUSEPORT`: a listener of ours sharing its port with a foreign one
/// does not prove a connection to the port ours — the kernel may hand it to the foreign one,
/// which writes late. (Connections are spread by a hash: a few tries land one there.)
#[test]
fn a_tcp_connection_a_foreign_reuse_port_listener_took_is_waited_for() {
    let got = run(30, |cx| async move {
        let shared = SocketOptions::default().reuse_port(true);
        let ours = io_core::TcpListener::bind_with(&cx, loopback(), shared)
            .await
            .unwrap();
        let addr = ours.local_addr().unwrap();
        let foreign =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        foreign.set_reuse_port(true).unwrap();
        foreign.bind(&addr.into()).unwrap();
        foreign.listen(128).unwrap();
        let foreign = std::net::TcpListener::from(foreign);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let Ok((mut stream, peer)) = foreign.accept() else {
                return;
            };
            let _ = tx.send(peer);
            std::thread::spawn(move || {
                std::thread::sleep(LATE);
                let _ = io::Write::write_all(&mut stream, b"taken");
                std::thread::sleep(Duration::from_secs(1));
            });
        });
        let mut ours_took = Vec::new();
        for _ in 0..64 {
            let client = io_core::TcpStream::connect(&cx, addr).await.unwrap();
            let local = client.local_addr().unwrap();
            if rx.recv_timeout(Duration::from_millis(200)) == Ok(local) {
                return outcome(client.read(Vec::with_capacity(16)).await);
            }
            ours_took.push(client);
        }
        Err("no connection went to the foreign listener".to_owned())
    });
    assert_eq!(got, Ok(b"taken".to_vec()));
}

/// No false report when a foreign client shares a listener's address (both with
/// `SO_REUSEADDR`, which lets a connected socket and a listener share one): the stream of
/// ours it connected to has that address as its peer, yet its other end is foreign.
#[test]
fn a_tcp_peer_sharing_an_own_listener_address_is_waited_for() {
    let got = run(20, |cx| async move {
        let server = io_core::TcpListener::bind(&cx, loopback()).await.unwrap();
        let foreign =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        foreign.set_reuse_address(true).unwrap();
        foreign.bind(&loopback().into()).unwrap();
        foreign
            .connect(&server.local_addr().unwrap().into())
            .unwrap();
        let shared = foreign.local_addr().unwrap().as_socket().unwrap();
        // A listener of ours at the foreign client's address (`SO_REUSEADDR` is the default).
        let ours = io_core::TcpListener::bind(&cx, shared).await.unwrap();
        let mut foreign = std::net::TcpStream::from(foreign);
        let writer = std::thread::spawn(move || {
            std::thread::sleep(LATE);
            io::Write::write_all(&mut foreign, b"shared").unwrap();
            std::thread::sleep(Duration::from_secs(1));
        });
        let (accepted, peer) = server.accept().await.unwrap();
        assert_eq!(peer, shared);
        let read = outcome(accepted.read(Vec::with_capacity(16)).await);
        writer.join().unwrap();
        drop(ours);
        read
    });
    assert_eq!(got, Ok(b"shared".to_vec()));
}

/// No false report for a connection made before a listener of ours took its peer's address:
/// it went to a foreign listener there (since closed), whose accepted end writes late.
#[test]
fn a_tcp_connection_made_before_an_own_listener_took_the_address_is_waited_for() {
    let got = run(20, |cx| async move {
        let foreign = std::net::TcpListener::bind(loopback()).unwrap();
        let addr = foreign.local_addr().unwrap();
        let client = io_core::TcpStream::connect(&cx, addr).await.unwrap();
        let (mut accepted, _) = foreign.accept().unwrap();
        drop(foreign);
        let ours = io_core::TcpListener::bind(&cx, addr).await.unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(LATE);
            io::Write::write_all(&mut accepted, b"earlier").unwrap();
            std::thread::sleep(Duration::from_secs(1));
        });
        let read = outcome(client.read(Vec::with_capacity(16)).await);
        writer.join().unwrap();
        drop(ours);
        read
    });
    assert_eq!(got, Ok(b"earlier".to_vec()));
}

/// No false report for a peer off this host: a UDP socket of ours bound alone to `0.0.0.0:P`
/// keeps other sockets here off port P, not a remote host's. A socket connected to a remote
/// `P` (a documentation address) waits — here until its own receive timeout, not a report.
#[test]
fn a_udp_peer_off_this_host_is_not_reported() {
    let got = run(20, |cx| async move {
        let ours = bind_udp(&cx, "0.0.0.0:0".parse().unwrap(), SocketOptions::udp())
            .await
            .unwrap();
        let port = ours.resource().local_addr().unwrap().port();
        let receiver = bind_udp(&cx, "0.0.0.0:0".parse().unwrap(), SocketOptions::udp())
            .await
            .unwrap();
        let remote = SocketAddr::from(([192, 0, 2, 77], port));
        let connected = cx
            .submit(Op::ConnectUdp {
                socket: receiver.clone(),
                addr: remote,
            })
            .await;
        if connected.result.is_err() {
            return None; // no route off this host: moot
        }
        let wait = LATE;
        let std_socket = receiver.get::<UdpSocket>().unwrap();
        std_socket.set_read_timeout(Some(wait)).unwrap();
        let started = Instant::now();
        let err = recv(&cx, &receiver, 64).await.unwrap_err();
        Some((
            err.kind(),
            WouldDeadlock::of(&err).is_some(),
            started.elapsed(),
        ))
    });
    if let Some((kind, reported, took)) = got {
        assert!(!reported, "reported after {took:?}");
        assert!(
            matches!(kind, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
            "{kind:?}"
        );
        assert!(took >= LATE, "gave up after {took:?}");
    }
}

/// Still reported: a client connected here to a wildcard listener of ours of its own family
/// (`0.0.0.0:P` for `127.0.0.1:P`), or to a dual-stack `[::]:P` one, reads before any accept.
#[test]
fn a_tcp_read_from_an_own_wildcard_listeners_backlog_is_reported() {
    let reports = run(20, |cx| async move {
        let mut reports = Vec::new();
        for wildcard in ["0.0.0.0:0", "[::]:0"] {
            let Ok(listener) = io_core::TcpListener::bind(&cx, wildcard).await else {
                continue; // no IPv6 here
            };
            let port = listener.local_addr().unwrap().port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let client = io_core::TcpStream::connect(&cx, addr).await.unwrap();
            let (read, _) = client.read(Vec::with_capacity(16)).await;
            reports.push((report(&read.unwrap_err()), addr));
        }
        reports
    });
    assert!(!reports.is_empty());
    for (report, addr) in reports {
        assert_eq!(
            report,
            WouldDeadlock {
                op: "recv",
                peer: PeerAddr::Ip(addr)
            }
        );
    }
}
