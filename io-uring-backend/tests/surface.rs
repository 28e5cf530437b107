//! The I/O surface's ops on io_uring: UDP and Unix sockets, binds with socket options, set_len,
//! stat, file-system ops by path, and offloaded work (lookups, blocking closures), with their
//! cancellation.

use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::os::unix::net as std_unix;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use io_core::fs::FileType;
use io_core::offload::{Blocking, FsOp, Offload};
use io_core::op::{Handle, SocketOptions, UnixKind};
use io_core::{Canceled, Completion, Cx, Op, OpenOptions};
use io_uring_backend::UringIo;

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ioswap-uring-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn bind_udp(cx: &Cx) -> (Handle, SocketAddr) {
    let done = cx
        .submit(Op::BindUdp {
            addr: loopback(),
            options: SocketOptions::udp(),
            socket: None,
        })
        .await;
    done.result.unwrap();
    let Op::BindUdp {
        socket: Some(socket),
        ..
    } = done.op
    else {
        panic!("bind_udp without its socket")
    };
    let addr = socket.resource().local_addr().unwrap();
    (socket, addr)
}

async fn bind_unix(cx: &Cx, path: &Path, kind: UnixKind, backlog: u32) -> Handle {
    let done = cx
        .submit(Op::BindUnix {
            path: path.to_path_buf(),
            kind,
            backlog,
            socket: None,
        })
        .await;
    done.result.unwrap();
    match done.op {
        Op::BindUnix {
            socket: Some(socket),
            ..
        } => socket,
        other => panic!("bind_unix without its socket: {other:?}"),
    }
}

async fn send(cx: &Cx, stream: &Handle, bytes: &[u8]) -> usize {
    cx.submit(Op::Send {
        stream: stream.clone(),
        buf: bytes.to_vec(),
    })
    .await
    .result
    .unwrap()
}

async fn recv(cx: &Cx, stream: &Handle, capacity: usize) -> Vec<u8> {
    let done = cx
        .submit(Op::Recv {
            stream: stream.clone(),
            buf: Vec::with_capacity(capacity),
        })
        .await;
    done.result.unwrap();
    done.op.into_buf()
}

async fn recv_from(cx: &Cx, socket: &Handle, capacity: usize) -> (Vec<u8>, SocketAddr) {
    let done = cx
        .submit(Op::RecvFrom {
            socket: socket.clone(),
            buf: Vec::with_capacity(capacity),
            from: None,
        })
        .await;
    let n = done.result.unwrap();
    let Op::RecvFrom {
        buf,
        from: Some(from),
        ..
    } = done.op
    else {
        panic!("recv_from without its sender")
    };
    assert_eq!(n, buf.len());
    (buf, from)
}

/// Datagrams both ways: addressed (`send_to`/`recv_from`, with the sender's address, a long
/// datagram cut to the buffer), then connected (`send`/`recv` on the same sockets).
#[test]
fn udp_round_trip_addressed_and_connected() {
    let io = UringIo::new().unwrap();
    io.run(|cx| async move {
        let (a, a_addr) = bind_udp(&cx).await;
        let (b, b_addr) = bind_udp(&cx).await;
        let sent = cx
            .submit(Op::SendTo {
                socket: a.clone(),
                buf: b"ping".to_vec(),
                addr: b_addr,
            })
            .await;
        assert_eq!(sent.result.unwrap(), 4);
        assert_eq!(sent.op.into_buf(), b"ping");
        let (got, from) = recv_from(&cx, &b, 64).await;
        assert_eq!((got.as_slice(), from), (&b"ping"[..], a_addr));

        // The rest of a datagram longer than the buffer is dropped, as recvfrom(2) does.
        let long = cx
            .submit(Op::SendTo {
                socket: a.clone(),
                buf: b"0123456789".to_vec(),
                addr: b_addr,
            })
            .await;
        long.result.unwrap();
        let (got, _) = recv_from(&cx, &b, 4).await;
        assert_eq!(got, b"0123");

        for (socket, peer) in [(&a, b_addr), (&b, a_addr)] {
            let done = cx
                .submit(Op::ConnectUdp {
                    socket: socket.clone(),
                    addr: peer,
                })
                .await;
            done.result.unwrap();
        }
        assert_eq!(a.resource().peer_addr().unwrap(), b_addr);
        assert_eq!(send(&cx, &b, b"pong").await, 4);
        assert_eq!(recv(&cx, &a, 64).await, b"pong");
        Ok(())
    })
    .unwrap();
    assert_eq!(io.ops_owned(), 0);
}

/// A datagram to a port nobody listens on is the kernel's error, not a panic or a hang: the
/// connected socket's next receive reports ECONNREFUSED.
#[test]
fn udp_errors_are_the_kernels() {
    let io = UringIo::new().unwrap();
    let err = io
        .run(|cx| async move {
            let closed = StdUdp::bind(loopback()).unwrap();
            let closed_addr = closed.local_addr().unwrap();
            drop(closed);
            let (a, _) = bind_udp(&cx).await;
            cx.submit(Op::ConnectUdp {
                socket: a.clone(),
                addr: closed_addr,
            })
            .await
            .result
            .unwrap();
            send(&cx, &a, b"anyone?").await;
            let done = cx
                .submit(Op::Recv {
                    stream: a.clone(),
                    buf: Vec::with_capacity(16),
                })
                .await;
            Ok(done.result.unwrap_err())
        })
        .unwrap();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

/// `SO_REUSEADDR` and `SO_REUSEPORT` are set as the options say: two listeners share a port
/// only with `reuse_port`.
#[test]
fn bind_honours_address_reuse() {
    let io = UringIo::new().unwrap();
    io.run(|cx| async move {
        let bind = |addr, options| {
            let cx = cx.clone();
            async move {
                let done = cx
                    .submit(Op::Bind {
                        addr,
                        options,
                        listener: None,
                    })
                    .await;
                done.result.map(|_| match done.op {
                    Op::Bind {
                        listener: Some(listener),
                        ..
                    } => listener,
                    other => panic!("bind without its listener: {other:?}"),
                })
            }
        };
        let shared = SocketOptions::default().reuse_port(true).backlog(7);
        let first = bind(loopback(), shared).await.unwrap();
        let addr = first.resource().local_addr().unwrap();
        let sock = socket2::SockRef::from(first.get::<std::net::TcpListener>().unwrap());
        assert!(sock.reuse_address().unwrap() && sock.reuse_port().unwrap());
        let second = bind(addr, shared).await.unwrap();
        assert_eq!(second.resource().local_addr().unwrap(), addr);

        let plain = SocketOptions::default().reuse_addr(false);
        let alone = bind(loopback(), plain).await.unwrap();
        let sock = socket2::SockRef::from(alone.get::<std::net::TcpListener>().unwrap());
        assert!(!sock.reuse_address().unwrap() && !sock.reuse_port().unwrap());
        let taken = alone.resource().local_addr().unwrap();
        let err = bind(taken, plain).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

        // UDP too: two sockets on one port with reuse_port, refused without.
        let udp = SocketOptions::udp().reuse_port(true);
        let bind_udp = |addr, options| {
            let cx = cx.clone();
            async move {
                cx.submit(Op::BindUdp {
                    addr,
                    options,
                    socket: None,
                })
                .await
            }
        };
        let one = bind_udp(loopback(), udp).await;
        one.result.unwrap();
        let Op::BindUdp {
            socket: Some(one), ..
        } = one.op
        else {
            panic!("no socket")
        };
        let port = one.resource().local_addr().unwrap();
        bind_udp(port, udp).await.result.unwrap();
        let refused = bind_udp(port, SocketOptions::udp())
            .await
            .result
            .unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse);
        Ok(())
    })
    .unwrap();
}

/// A Unix stream: listener bound with a backlog, a connect, an accept, and an echo over
/// `send`/`recv`.
#[test]
fn unix_stream_listener_connect_accept_echo() {
    let dir = scratch("unix-echo");
    let path = dir.join("echo.sock");
    let io = UringIo::new().unwrap();
    let echoed = io
        .run(|cx| async move {
            let listener = bind_unix(&cx, &path, UnixKind::Listener, 16).await;
            assert_eq!(
                listener.resource().unix_local_path().unwrap(),
                Some(path.clone())
            );
            let server = cx.spawn(move |cx| async move {
                let done = cx
                    .submit(Op::AcceptUnix {
                        listener,
                        accepted: None,
                    })
                    .await;
                done.result.unwrap();
                let Op::AcceptUnix {
                    accepted: Some(stream),
                    ..
                } = done.op
                else {
                    panic!("accept_unix without its stream")
                };
                assert!(stream.get::<std_unix::UnixStream>().is_some());
                let got = recv(&cx, &stream, 64).await;
                send(&cx, &stream, &got).await;
                Ok(())
            });
            let done = cx
                .submit(Op::ConnectUnix {
                    path: path.clone(),
                    stream: None,
                })
                .await;
            done.result.unwrap();
            let Op::ConnectUnix {
                stream: Some(stream),
                ..
            } = done.op
            else {
                panic!("connect_unix without its stream")
            };
            assert_eq!(stream.resource().unix_peer_path().unwrap(), Some(path));
            send(&cx, &stream, b"hello").await;
            let echoed = recv(&cx, &stream, 64).await;
            server.await?;
            Ok(echoed)
        })
        .unwrap();
    assert_eq!(echoed, b"hello");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connecting to a path with no listener is the kernel's error.
#[test]
fn unix_connect_to_nothing_is_not_found() {
    let dir = scratch("unix-nothing");
    let io = UringIo::new().unwrap();
    let nobody = dir.join("nobody.sock");
    let err = io
        .run(|cx| async move {
            let done = cx
                .submit(Op::ConnectUnix {
                    path: nobody,
                    stream: None,
                })
                .await;
            assert!(matches!(done.op, Op::ConnectUnix { stream: None, .. }));
            Ok(done.result.unwrap_err())
        })
        .unwrap();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let _ = std::fs::remove_dir_all(&dir);
}

/// How many non-blocking connects a Unix listener at `path` queues before it refuses
/// (`EAGAIN`): its backlog plus one, as Linux counts.
fn unix_queue_room(path: &Path) -> usize {
    let addr = socket2::SockAddr::unix(path).unwrap();
    let mut queued = Vec::new();
    loop {
        let socket =
            socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        socket.set_nonblocking(true).unwrap();
        match socket.connect(&addr) {
            Ok(()) => queued.push(socket),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return queued.len(),
            Err(e) => panic!("connect: {e}"),
        }
        assert!(
            queued.len() < 1000,
            "the listener's backlog was not honoured"
        );
    }
}

/// The listen backlog reaches the kernel (std's `UnixListener::bind` would give 128).
#[test]
fn unix_listener_backlog_is_honoured() {
    let dir = scratch("unix-backlog");
    let io = UringIo::new().unwrap();
    let rooms = io
        .run(|cx| {
            let dir = dir.clone();
            async move {
                let mut rooms = Vec::new();
                for backlog in [2, 5] {
                    let path = dir.join(format!("backlog-{backlog}.sock"));
                    let _listener = bind_unix(&cx, &path, UnixKind::Listener, backlog).await;
                    rooms.push(unix_queue_room(&path));
                }
                Ok(rooms)
            }
        })
        .unwrap();
    assert_eq!(rooms, [3, 6]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Unix connect to a full backlog blocks in an io-wq worker; its cancel signals the worker,
/// whose connect ends with EINTR. The task gets `Canceled` (never `Interrupted`, which retry
/// loops would spin on), as on poll.
#[test]
fn canceled_connect_to_a_full_unix_backlog_is_canceled() {
    let dir = scratch("unix-connect-cancel");
    let path = dir.join("full.sock");
    let io = UringIo::new().unwrap();
    let result = io
        .run(|cx| {
            let path = path.clone();
            async move {
                let _listener = bind_unix(&cx, &path, UnixKind::Listener, 0).await;
                // Fill the queue: later connects wait for room.
                let room = unix_queue_room(&path);
                assert!(room >= 1);
                let connect = cx.spawn(move |cx| async move {
                    Ok(cx
                        .submit(Op::ConnectUnix { path, stream: None })
                        .await
                        .result)
                });
                cx.sleep(100).await?;
                connect.cancel();
                connect.await
            }
        })
        .unwrap();
    let err = result.unwrap_err();
    assert!(
        Canceled::is_canceled(&err),
        "got {err:?} ({:?})",
        err.kind()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Unix datagrams: `send_to_unix` by path, `recv_from_unix` with the sender's path — and no
/// path for an unbound sender.
#[test]
fn unix_datagram_send_to_recv_from_with_sender_path() {
    let dir = scratch("unix-dgram");
    let (a_path, b_path) = (dir.join("a.sock"), dir.join("b.sock"));
    let nobody = dir.join("nobody.sock");
    let io = UringIo::new().unwrap();
    io.run(|cx| async move {
        let a = bind_unix(&cx, &a_path, UnixKind::Datagram, 0).await;
        let b = bind_unix(&cx, &b_path, UnixKind::Datagram, 0).await;
        assert!(a.get::<std_unix::UnixDatagram>().is_some());
        let sent = cx
            .submit(Op::SendToUnix {
                socket: a.clone(),
                buf: b"from a".to_vec(),
                path: b_path.clone(),
            })
            .await;
        assert_eq!(sent.result.unwrap(), 6);
        let recv_from = |socket: Handle| {
            let cx = cx.clone();
            async move {
                let done = cx
                    .submit(Op::RecvFromUnix {
                        socket,
                        buf: Vec::with_capacity(64),
                        from: None,
                    })
                    .await;
                done.result.unwrap();
                match done.op {
                    Op::RecvFromUnix { buf, from, .. } => (buf, from),
                    other => panic!("{other:?}"),
                }
            }
        };
        let (got, from) = recv_from(b.clone()).await;
        assert_eq!(
            (got.as_slice(), from),
            (&b"from a"[..], Some(a_path.clone()))
        );

        let unbound = std_unix::UnixDatagram::unbound().unwrap();
        unbound.send_to(b"anonymous", &b_path).unwrap();
        let (got, from) = recv_from(b.clone()).await;
        assert_eq!((got.as_slice(), from), (&b"anonymous"[..], None));

        let missing = cx
            .submit(Op::SendToUnix {
                socket: a.clone(),
                buf: b"lost".to_vec(),
                path: nobody,
            })
            .await;
        assert_eq!(missing.result.unwrap_err().kind(), io::ErrorKind::NotFound);
        Ok(())
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

async fn open(cx: &Cx, path: &Path, options: OpenOptions) -> Handle {
    let done = cx
        .submit(Op::Open {
            path: path.to_path_buf(),
            options,
            file: None,
        })
        .await;
    done.result.unwrap();
    match done.op {
        Op::Open {
            file: Some(file), ..
        } => file,
        other => panic!("{other:?}"),
    }
}

async fn stat(cx: &Cx, file: &Handle) -> io::Result<io_core::Metadata> {
    let done = cx
        .submit(Op::Stat {
            file: file.clone(),
            metadata: None,
        })
        .await;
    done.result?;
    match done.op {
        Op::Stat {
            metadata: Some(metadata),
            ..
        } => Ok(metadata),
        other => panic!("{other:?}"),
    }
}

/// `set_len` cuts and extends; `stat` reads the kind, length, mode and modification time.
#[test]
fn set_len_and_stat() {
    let dir = scratch("set-len");
    let path = dir.join("file");
    let io = UringIo::new().unwrap();
    let (cut, grown, dir_meta) = io
        .run(|cx| {
            let (dir, path) = (dir.clone(), path.clone());
            async move {
                let options = OpenOptions::new().read(true).write(true).create(true);
                let file = open(&cx, &path, options.set_mode(0o640)).await;
                let wrote = cx
                    .submit(Op::WriteAt {
                        file: file.clone(),
                        buf: b"hello world".to_vec(),
                        offset: 0,
                    })
                    .await;
                assert_eq!(wrote.result.unwrap(), 11);
                let set_len = |len| {
                    let (cx, file) = (cx.clone(), file.clone());
                    async move { cx.submit(Op::SetLen { file, len }).await.result }
                };
                set_len(5).await.unwrap();
                let cut = stat(&cx, &file).await.unwrap();
                set_len(100).await.unwrap();
                let grown = stat(&cx, &file).await.unwrap();
                let beyond = set_len(u64::MAX).await.unwrap_err();
                assert_eq!(beyond.raw_os_error(), Some(libc::EINVAL));
                let read_only = open(&cx, &path, OpenOptions::new().read(true)).await;
                let refused = cx
                    .submit(Op::SetLen {
                        file: read_only,
                        len: 1,
                    })
                    .await;
                assert!(refused.result.is_err());
                let dir_handle = open(&cx, &dir, OpenOptions::new().read(true)).await;
                Ok((cut, grown, stat(&cx, &dir_handle).await.unwrap()))
            }
        })
        .unwrap();
    assert!(cut.is_file() && !cut.is_dir());
    assert_eq!(cut.len(), 5);
    let umask_kept = cut.mode() & !0o640 == 0 && cut.mode() & 0o600 == 0o600;
    assert!(umask_kept, "mode {:o}", cut.mode());
    assert_eq!(grown.len(), 100);
    let std_meta = std::fs::metadata(&path).unwrap();
    assert_eq!(grown.modified(), Some(std_meta.modified().unwrap()));
    assert_eq!(std_meta.len(), 100);
    assert!(dir_meta.is_dir());
    let _ = std::fs::remove_dir_all(&dir);
}

async fn fs(cx: &Cx, op: FsOp) -> io::Result<FsOp> {
    let done: Completion = cx.submit(Op::Offload(Offload::Fs(op))).await;
    done.result?;
    match done.op {
        Op::Offload(Offload::Fs(op)) => Ok(op),
        other => panic!("{other:?}"),
    }
}

async fn metadata(cx: &Cx, path: &Path, follow: bool) -> io::Result<io_core::Metadata> {
    let op = fs(
        cx,
        FsOp::Metadata {
            path: path.to_path_buf(),
            follow,
            metadata: None,
        },
    )
    .await?;
    match op {
        FsOp::Metadata {
            metadata: Some(metadata),
            ..
        } => Ok(metadata),
        other => panic!("{other:?}"),
    }
}

/// Every file-system op by path, with the kernel's errors (opcodes where the kernel has them,
/// the pool for reading a directory or a link).
#[test]
fn every_fs_op_by_path() {
    let root = scratch("fs-ops");
    let io = UringIo::new().unwrap();
    io.run(|cx| {
        let root = root.clone();
        async move {
            let dir = root.join("d");
            let kind = |r: io::Result<FsOp>| r.unwrap_err().kind();
            fs(&cx, FsOp::CreateDir { path: dir.clone() })
                .await
                .unwrap();
            let again = fs(&cx, FsOp::CreateDir { path: dir.clone() }).await;
            assert_eq!(kind(again), io::ErrorKind::AlreadyExists);
            let orphan = fs(
                &cx,
                FsOp::CreateDir {
                    path: root.join("no/such"),
                },
            )
            .await;
            assert_eq!(kind(orphan), io::ErrorKind::NotFound);
            assert!(metadata(&cx, &dir, true).await.unwrap().is_dir());
            let missing = metadata(&cx, &root.join("missing"), true).await;
            assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);

            let file = dir.join("f");
            std::fs::write(&file, b"twelve bytes").unwrap();
            let meta = metadata(&cx, &file, true).await.unwrap();
            assert_eq!((meta.file_type(), meta.len()), (FileType::File, 12));
            assert_eq!(
                meta.modified(),
                std::fs::metadata(&file).unwrap().modified().ok()
            );

            let hard = dir.join("h");
            fs(
                &cx,
                FsOp::HardLink {
                    original: file.clone(),
                    link: hard.clone(),
                },
            )
            .await
            .unwrap();
            assert_eq!(std::fs::read(&hard).unwrap(), b"twelve bytes");
            let twice = fs(
                &cx,
                FsOp::HardLink {
                    original: file.clone(),
                    link: hard.clone(),
                },
            );
            assert_eq!(kind(twice.await), io::ErrorKind::AlreadyExists);

            let soft = dir.join("s");
            fs(
                &cx,
                FsOp::Symlink {
                    original: file.clone(),
                    link: soft.clone(),
                },
            )
            .await
            .unwrap();
            assert!(metadata(&cx, &soft, false).await.unwrap().is_symlink());
            assert!(metadata(&cx, &soft, true).await.unwrap().is_file());
            let target = fs(
                &cx,
                FsOp::ReadLink {
                    path: soft.clone(),
                    target: None,
                },
            )
            .await;
            assert!(matches!(target.unwrap(), FsOp::ReadLink { target: Some(t), .. } if t == file));
            let not_link = fs(
                &cx,
                FsOp::ReadLink {
                    path: file.clone(),
                    target: None,
                },
            )
            .await;
            assert_eq!(kind(not_link), io::ErrorKind::InvalidInput);

            let listed = fs(
                &cx,
                FsOp::ReadDir {
                    path: dir.clone(),
                    entries: Vec::new(),
                },
            )
            .await;
            let FsOp::ReadDir { entries, .. } = listed.unwrap() else {
                panic!()
            };
            let names: Vec<_> = entries.iter().map(|e| e.file_name().to_owned()).collect();
            assert_eq!(names, ["f", "h", "s"]);
            assert_eq!(entries[2].file_type(), FileType::Symlink);
            let no_dir = fs(
                &cx,
                FsOp::ReadDir {
                    path: file.clone(),
                    entries: Vec::new(),
                },
            );
            assert_eq!(kind(no_dir.await), io::ErrorKind::NotADirectory);

            let renamed = dir.join("g");
            fs(
                &cx,
                FsOp::Rename {
                    from: file.clone(),
                    to: renamed.clone(),
                },
            )
            .await
            .unwrap();
            let gone = metadata(&cx, &file, true).await;
            assert_eq!(gone.unwrap_err().kind(), io::ErrorKind::NotFound);
            let from_nothing = fs(
                &cx,
                FsOp::Rename {
                    from: file.clone(),
                    to: renamed.clone(),
                },
            );
            assert_eq!(kind(from_nothing.await), io::ErrorKind::NotFound);

            let full = fs(&cx, FsOp::RemoveDir { path: dir.clone() }).await;
            assert_eq!(kind(full), io::ErrorKind::DirectoryNotEmpty);
            let not_dir = fs(
                &cx,
                FsOp::RemoveDir {
                    path: renamed.clone(),
                },
            )
            .await;
            assert_eq!(kind(not_dir), io::ErrorKind::NotADirectory);
            for path in [&renamed, &hard, &soft] {
                fs(&cx, FsOp::RemoveFile { path: path.clone() })
                    .await
                    .unwrap();
            }
            let twice = fs(
                &cx,
                FsOp::RemoveFile {
                    path: renamed.clone(),
                },
            )
            .await;
            assert_eq!(kind(twice), io::ErrorKind::NotFound);
            let a_dir = fs(&cx, FsOp::RemoveFile { path: dir.clone() }).await;
            assert_eq!(kind(a_dir), io::ErrorKind::IsADirectory);
            fs(&cx, FsOp::RemoveDir { path: dir.clone() })
                .await
                .unwrap();
            assert!(!dir.exists());
            Ok(())
        }
    })
    .unwrap();
    assert_eq!(io.ops_owned(), 0);
    let _ = std::fs::remove_dir_all(&root);
}

/// Work with no opcode runs on the pool: a blocking closure (the loop waits for it rather than
/// report a deadlock: no timer, no ring op) and a name lookup.
#[test]
fn offloaded_blocking_closure_and_lookup() {
    let io = UringIo::new().unwrap();
    let (answer, addrs) = io
        .run(|cx| async move {
            let job = Blocking::new(|| {
                std::thread::sleep(Duration::from_millis(30));
                6 * 7
            });
            let done = cx.submit(Op::Offload(Offload::Blocking(job))).await;
            done.result.unwrap();
            let Op::Offload(Offload::Blocking(mut job)) = done.op else {
                panic!("no closure back")
            };
            let answer = *job
                .take_output()
                .unwrap()
                .unwrap()
                .downcast::<i32>()
                .unwrap();
            let done = cx
                .submit(Op::Offload(Offload::Resolve {
                    host: "localhost".into(),
                    port: 80,
                    addrs: Vec::new(),
                }))
                .await;
            done.result.unwrap();
            let Op::Offload(Offload::Resolve { addrs, .. }) = done.op else {
                panic!("no addresses back")
            };
            Ok((answer, addrs))
        })
        .unwrap();
    assert_eq!(answer, 42);
    assert!(!addrs.is_empty());
    assert!(
        addrs.iter().all(|a| a.port() == 80 && a.ip().is_loopback()),
        "{addrs:?}"
    );
    assert_eq!(io.stats().offloads_left_running, 0);
}

/// A receive canceled in flight gives its buffer back, and no datagram is lost: one that
/// arrived around the cancel is either the canceled op's result (completion wins) or still
/// in the socket for the next receive.
#[test]
fn recv_from_canceled_in_flight_loses_no_datagram() {
    let io = UringIo::new().unwrap();
    io.run(|cx| async move {
        let (socket, addr) = bind_udp(&cx).await;
        let peer = StdUdp::bind(loopback()).unwrap();
        for round in 0..20u8 {
            let receiver = {
                let socket = socket.clone();
                cx.spawn(move |cx| async move {
                    Ok(cx
                        .submit(Op::RecvFrom {
                            socket,
                            buf: Vec::with_capacity(32),
                            from: None,
                        })
                        .await)
                })
            };
            cx.yield_now().await?; // the receive is submitted
            cx.yield_now().await?; // and in the kernel
                                   // Odd rounds: a datagram races the cancel. Even rounds: nothing arrives.
            if round % 2 == 1 {
                peer.send_to(&[round], addr).unwrap();
            }
            receiver.cancel();
            let done = receiver.await?;
            let Op::RecvFrom { buf, from, .. } = &done.op else {
                panic!()
            };
            assert_eq!(buf.capacity(), 32, "the buffer comes back");
            match &done.result {
                Ok(1) => {
                    assert_eq!(round % 2, 1, "round {round}: nothing was sent");
                    assert_eq!(
                        (buf.as_slice(), *from),
                        (&[round][..], Some(peer.local_addr().unwrap()))
                    )
                }
                Err(e) if Canceled::is_canceled(e) => {
                    assert!(buf.is_empty() && from.is_none());
                    if round % 2 == 0 {
                        // A datagram after the cancel goes to the next receive, not to the
                        // canceled one.
                        peer.send_to(&[round], addr).unwrap();
                    }
                    // Not taken by the canceled receive: still in the socket.
                    let (got, _) = recv_from(&cx, &socket, 32).await;
                    assert_eq!(got, [round]);
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
        // Nothing else is left in the socket: the next datagram is the next one received.
        peer.send_to(b"last", addr).unwrap();
        assert_eq!(recv_from(&cx, &socket, 32).await.0, b"last");
        Ok(())
    })
    .unwrap();
    assert_eq!(io.ops_owned(), 0);
}

/// A blocking closure canceled while it runs lets its caller go at once: the op completes as
/// canceled although the closure is still blocked, and tear-down leaves it running rather
/// than wait for it.
#[test]
fn canceled_blocking_offload_completes_canceled_at_once() {
    let (release, released) = mpsc::channel::<()>();
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let io = UringIo::new().unwrap();
    let (result, waited) = io
        .run({
            let (started, finished) = (started.clone(), finished.clone());
            |cx| async move {
                let running = started.clone();
                let job = Blocking::new(move || {
                    running.store(true, Ordering::SeqCst);
                    let _ = released.recv_timeout(Duration::from_secs(30));
                    finished.store(true, Ordering::SeqCst);
                });
                let task = cx.spawn(move |cx| async move {
                    Ok(cx.submit(Op::Offload(Offload::Blocking(job))).await)
                });
                // Bounded: the pool starts the closure within a few milliseconds.
                for _ in 0..5000 {
                    if started.load(Ordering::SeqCst) {
                        break;
                    }
                    cx.sleep(1).await?;
                }
                assert!(started.load(Ordering::SeqCst), "the closure never started");
                let canceled_at = Instant::now();
                task.cancel();
                let done = task.await?;
                let waited = canceled_at.elapsed();
                let Op::Offload(Offload::Blocking(mut shell)) = done.op else {
                    panic!("no closure back")
                };
                assert!(shell.take_output().is_none(), "nothing ran for the caller");
                Ok((done.result, waited))
            }
        })
        .unwrap();
    assert!(
        !finished.load(Ordering::SeqCst),
        "the cancel did not wait for the closure"
    );
    assert!(Canceled::is_canceled(&result.unwrap_err()));
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    // Tear-down did not wait for it either: it is still blocked, counted as left running.
    assert!(!finished.load(Ordering::SeqCst));
    assert_eq!(io.stats().offloads_left_running, 1);
    release.send(()).unwrap();
}

/// Tear-down with offloaded work in flight: tasks still waiting on it are dropped, a blocking
/// closure that is still blocked is left running (counted, not waited for: `run` returns), and
/// nothing of the backend is left owned.
#[test]
fn tear_down_does_not_wait_for_a_blocked_closure() {
    let (release, released) = mpsc::channel::<()>();
    let started = Arc::new(AtomicBool::new(false));
    let io = UringIo::new().unwrap();
    let began = Instant::now();
    io.run({
        let started = started.clone();
        |cx| async move {
            let running = started.clone();
            let job = Blocking::new(move || {
                running.store(true, Ordering::SeqCst);
                let _ = released.recv_timeout(Duration::from_secs(30));
            });
            // Never awaited: dropped with its task at tear-down.
            cx.spawn(move |cx| async move {
                cx.submit(Op::Offload(Offload::Blocking(job))).await;
                Ok(())
            })
            .detach();
            for _ in 0..5000 {
                if started.load(Ordering::SeqCst) {
                    break;
                }
                cx.sleep(1).await?;
            }
            Ok(())
        }
    })
    .unwrap();
    assert!(started.load(Ordering::SeqCst), "the closure never started");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "tear-down waited"
    );
    assert_eq!(io.stats().offloads_left_running, 1);
    assert_eq!(io.ops_owned(), 0);
    release.send(()).unwrap();
}
