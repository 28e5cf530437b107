//! Unix sockets on the blocking backend: stream listeners and connections, datagram sockets.
mod support;

use std::net::Shutdown;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use io_core::op::UnixKind;
use io_core::{Handle, Op};
use support::{accept_unix, bind_unix, connect_unix, io, ok, recv, run, scratch, send};

/// A client connects before the listener accepts (the connection waits in the backlog); the
/// accepted end and the client then echo, and a shutdown of the client's write half reads as
/// the end of the stream.
#[test]
fn a_stream_echoes_after_an_accept_that_follows_the_connect() {
    let dir = scratch("echo");
    let path = dir.join("echo.sock");
    let (ping, pong, eof, local_path, peer_path) = run(10, move |cx| async move {
        let listener = bind_unix(&cx, path.clone(), UnixKind::Listener, 16).await;
        let client = connect_unix(&cx, path.clone()).await.unwrap();
        let server = accept_unix(&cx, &listener).await;
        assert_eq!(send(&cx, &client, b"ping").await.unwrap(), 4);
        let ping = recv(&cx, &server, 64).await.unwrap();
        assert_eq!(send(&cx, &server, b"pong").await.unwrap(), 4);
        let pong = recv(&cx, &client, 64).await.unwrap();
        ok(
            &cx,
            Op::Shutdown {
                stream: client.clone(),
                how: Shutdown::Write,
            },
        )
        .await;
        let eof = recv(&cx, &server, 64).await.unwrap();
        (
            ping,
            pong,
            eof,
            server.resource().unix_local_path().unwrap(),
            server.resource().unix_peer_path().unwrap(),
        )
    });
    assert_eq!(
        (ping.as_slice(), pong.as_slice()),
        (&b"ping"[..], &b"pong"[..])
    );
    assert!(eof.is_empty());
    assert_eq!(local_path, Some(dir.join("echo.sock")));
    assert_eq!(peer_path, None, "the client is unnamed to its peer");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A datagram sent from a socket bound to a path arrives with that path; one from an unbound
/// socket arrives with none.
#[test]
fn a_datagram_arrives_with_its_senders_path() {
    let dir = scratch("dgram");
    let (a_path, b_path) = (dir.join("a.sock"), dir.join("b.sock"));
    let expected = a_path.clone();
    let (named, unnamed) = run(10, move |cx| async move {
        let a = bind_unix(&cx, a_path, UnixKind::Datagram, 0).await;
        let b = bind_unix(&cx, b_path.clone(), UnixKind::Datagram, 0).await;
        let (sent, _) = io(
            &cx,
            Op::SendToUnix {
                socket: a,
                buf: b"from a".to_vec(),
                path: b_path.clone(),
            },
        )
        .await;
        assert_eq!(sent.unwrap(), 6);
        let unbound = Handle::new(UnixDatagram::unbound().unwrap());
        let buf = b"from nobody".to_vec();
        ok(
            &cx,
            Op::SendToUnix {
                socket: unbound,
                buf,
                path: b_path,
            },
        )
        .await;
        let mut got = Vec::new();
        for _ in 0..2 {
            let done = cx
                .submit(Op::RecvFromUnix {
                    socket: b.clone(),
                    buf: Vec::with_capacity(64),
                    from: None,
                })
                .await;
            let n = done.result.unwrap();
            let from: Option<PathBuf> = match &done.op {
                Op::RecvFromUnix { from, .. } => from.clone(),
                op => panic!("{op:?}"),
            };
            let buf = done.op.into_buf();
            assert_eq!(n, buf.len());
            got.push((buf, from));
        }
        (got.remove(0), got.remove(0))
    });
    assert_eq!(named, (b"from a".to_vec(), Some(expected)));
    assert_eq!(unnamed, (b"from nobody".to_vec(), None));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Binding a path that exists fails with `AddrInUse`; connecting to a path with nothing there
/// fails with `NotFound`.
#[test]
fn binding_a_taken_path_and_connecting_to_none_fail() {
    let dir = scratch("errors");
    let path = dir.join("taken.sock");
    let (taken, missing) = run(10, move |cx| async move {
        let _listener = bind_unix(&cx, path.clone(), UnixKind::Listener, 4).await;
        let taken = cx
            .submit(Op::BindUnix {
                path: path.clone(),
                kind: UnixKind::Datagram,
                backlog: 0,
                socket: None,
            })
            .await
            .result
            .unwrap_err()
            .kind();
        let missing = connect_unix(&cx, path.with_file_name("none.sock"))
            .await
            .unwrap_err()
            .kind();
        (taken, missing)
    });
    assert_eq!(taken, std::io::ErrorKind::AddrInUse);
    assert_eq!(missing, std::io::ErrorKind::NotFound);
    std::fs::remove_dir_all(dir).unwrap();
}
