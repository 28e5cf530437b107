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
