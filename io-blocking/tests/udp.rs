//! UDP on the blocking backend: datagrams to an address, connected sockets, bind options.
mod support;

use std::io;

use io_core::op::SocketOptions;
use io_core::Op;
use socket2::SockRef;
use support::{bind_udp, io, loopback, ok, recv, run, send};

/// A datagram sent to a bound socket's address arrives whole, with its sender's address.
#[test]
fn a_datagram_goes_round_trip_with_its_sender() {
    let (got, from, a_addr) = run(10, |cx| async move {
        let a = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let b = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let b_addr = b.resource().local_addr().unwrap();
        let (sent, _) = io(
            &cx,
            Op::SendTo {
                socket: a.clone(),
                buf: b"ping".to_vec(),
                addr: b_addr,
            },
        )
        .await;
        assert_eq!(sent.unwrap(), 4);
        let done = cx
            .submit(Op::RecvFrom {
                socket: b,
                buf: Vec::with_capacity(64),
                from: None,
            })
            .await;
        assert_eq!(done.result.unwrap(), 4);
        let from = match &done.op {
            Op::RecvFrom { from, .. } => *from,
            op => panic!("{op:?}"),
        };
        (done.op.into_buf(), from, a.resource().local_addr().unwrap())
    });
    assert_eq!(got, b"ping");
    assert_eq!(from, Some(a_addr));
}

/// A datagram longer than the buffer is cut to the buffer's capacity.
#[test]
fn a_long_datagram_is_truncated_to_the_buffer() {
    let got = run(10, |cx| async move {
        let a = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let b = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let addr = b.resource().local_addr().unwrap();
        let buf = b"0123456789".to_vec();
        ok(
            &cx,
            Op::SendTo {
                socket: a,
                buf,
                addr,
            },
        )
        .await;
        let (n, buf) = io(
            &cx,
            Op::RecvFrom {
                socket: b,
                buf: Vec::with_capacity(4),
                from: None,
            },
        )
        .await;
        (n.unwrap(), buf)
    });
    assert_eq!(got, (4, b"0123".to_vec()));
}

/// Connected sockets send to their peer by default and receive from it.
#[test]
fn connected_sockets_talk_with_send_and_recv() {
    let (there, back) = run(10, |cx| async move {
        let a = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let b = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let (a_addr, b_addr) = (
            a.resource().local_addr().unwrap(),
            b.resource().local_addr().unwrap(),
        );
        ok(
            &cx,
            Op::ConnectUdp {
                socket: a.clone(),
                addr: b_addr,
            },
        )
        .await;
        ok(
            &cx,
            Op::ConnectUdp {
                socket: b.clone(),
                addr: a_addr,
            },
        )
        .await;
        assert_eq!(a.resource().peer_addr().unwrap(), b_addr);
        assert_eq!(send(&cx, &a, b"there").await.unwrap(), 5);
        let there = recv(&cx, &b, 64).await.unwrap();
        assert_eq!(send(&cx, &b, b"and back").await.unwrap(), 8);
        (there, recv(&cx, &a, 64).await.unwrap())
    });
    assert_eq!(
        (there.as_slice(), back.as_slice()),
        (&b"there"[..], &b"and back"[..])
    );
}

/// `reuse_port` lets two sockets bind one address; without it the second bind is refused.
/// `reuse_addr` is set as asked.
#[test]
fn bind_options_reach_the_socket() {
    let (shared, refused, reuse_addr) = run(10, |cx| async move {
        let reuse = SocketOptions::udp().reuse_port(true);
        let first = bind_udp(&cx, loopback(), reuse).await.unwrap();
        let addr = first.resource().local_addr().unwrap();
        let second = bind_udp(&cx, addr, reuse).await.unwrap();
        let shared = second.resource().local_addr().unwrap() == addr;
        let alone = bind_udp(&cx, loopback(), SocketOptions::udp())
            .await
            .unwrap();
        let taken = alone.resource().local_addr().unwrap();
        let refused = bind_udp(&cx, taken, SocketOptions::udp())
            .await
            .unwrap_err()
            .kind();
        let with_addr = bind_udp(&cx, loopback(), SocketOptions::udp().reuse_addr(true))
            .await
            .unwrap();
        let reuse_addr = SockRef::from(with_addr.get::<std::net::UdpSocket>().unwrap())
            .reuse_address()
            .unwrap();
        (shared, refused, reuse_addr)
    });
    assert!(shared);
    assert_eq!(refused, io::ErrorKind::AddrInUse);
    assert!(reuse_addr);
}
