//! The simulated world's I/O surface beyond TCP and files: UDP, Unix sockets, bind options,
//! directories and their crash semantics, `set_len` and `stat`, name lookups, blocking
//! closures and the standard streams. Exact virtual times, Linux's error kinds, cancels that
//! lose nothing, and determinism.
#![cfg(feature = "fiber")]

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use io_core::fs::{self as fs, FileType};
use io_core::offload::{Blocking, Offload, StdStream, Stdio};
use io_core::op::{Handle, Op, SocketOptions, UnixKind};
use ioswap::sim::{Control, Faults, World, WorldReport};
use ioswap::{Canceled, Cx, FiberIo, File, OpenOptions, TcpStream};

// ---- helpers: the ops, as a program would submit them ----------------------------------------

async fn submit(cx: &Cx, op: Op) -> (io::Result<usize>, Op) {
    let done = cx.submit(op).await;
    (done.result, done.op)
}

fn any(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn bind_udp_with(cx: &Cx, addr: SocketAddr, options: SocketOptions) -> io::Result<Handle> {
    let (result, op) = submit(
        cx,
        Op::BindUdp {
            addr,
            options,
            socket: None,
        },
    )
    .await;
    result?;
    match op {
        Op::BindUdp { socket, .. } => Ok(socket.expect("a bound socket")),
        _ => unreachable!(),
    }
}

async fn bind_udp(cx: &Cx, addr: SocketAddr) -> io::Result<Handle> {
    bind_udp_with(cx, addr, SocketOptions::udp()).await
}

async fn connect_udp(cx: &Cx, socket: &Handle, addr: SocketAddr) -> io::Result<()> {
    let op = Op::ConnectUdp {
        socket: socket.clone(),
        addr,
    };
    submit(cx, op).await.0.map(drop)
}

async fn send_to(cx: &Cx, socket: &Handle, bytes: &[u8], addr: SocketAddr) -> io::Result<usize> {
    let op = Op::SendTo {
        socket: socket.clone(),
        buf: bytes.to_vec(),
        addr,
    };
    submit(cx, op).await.0
}

async fn recv_from(cx: &Cx, socket: &Handle, cap: usize) -> io::Result<(Vec<u8>, SocketAddr)> {
    let op = Op::RecvFrom {
        socket: socket.clone(),
        buf: Vec::with_capacity(cap),
        from: None,
    };
    let (result, op) = submit(cx, op).await;
    result?;
    match op {
        Op::RecvFrom { buf, from, .. } => Ok((buf, from.expect("a sender"))),
        _ => unreachable!(),
    }
}

/// Receives on `socket` for at most `ms`: `None` if nothing came by then.
async fn recv_within(
    cx: &Cx,
    socket: &Handle,
    cap: usize,
    ms: u64,
) -> io::Result<Option<(Vec<u8>, SocketAddr)>> {
    let socket = socket.clone();
    let heard = ioswap::timeout(cx, ms, move |cx: Cx| async move {
        match recv_from(&cx, &socket, cap).await {
            Err(err) if Canceled::is_canceled(&err) => Err(Canceled),
            other => Ok(other),
        }
    })
    .await?;
    match heard {
        Ok(got) => got.map(Some),
        Err(_elapsed) => Ok(None),
    }
}

async fn send(cx: &Cx, stream: &Handle, bytes: &[u8]) -> io::Result<usize> {
    let op = Op::Send {
        stream: stream.clone(),
        buf: bytes.to_vec(),
    };
    submit(cx, op).await.0
}

async fn recv(cx: &Cx, stream: &Handle, cap: usize) -> io::Result<Vec<u8>> {
    let op = Op::Recv {
        stream: stream.clone(),
        buf: Vec::with_capacity(cap),
    };
    let (result, op) = submit(cx, op).await;
    result?;
    Ok(op.into_buf())
}

async fn bind_unix(cx: &Cx, path: &str, kind: UnixKind) -> io::Result<Handle> {
    let op = Op::BindUnix {
        path: path.into(),
        kind,
        backlog: 16,
        socket: None,
    };
    let (result, op) = submit(cx, op).await;
    result?;
    match op {
        Op::BindUnix { socket, .. } => Ok(socket.expect("a bound socket")),
        _ => unreachable!(),
    }
}

async fn connect_unix(cx: &Cx, path: &str) -> io::Result<Handle> {
    let op = Op::ConnectUnix {
        path: path.into(),
        stream: None,
    };
    let (result, op) = submit(cx, op).await;
    result?;
    match op {
        Op::ConnectUnix { stream, .. } => Ok(stream.expect("a stream")),
        _ => unreachable!(),
    }
}

async fn accept_unix(cx: &Cx, listener: &Handle) -> io::Result<Handle> {
    let op = Op::AcceptUnix {
        listener: listener.clone(),
        accepted: None,
    };
    let (result, op) = submit(cx, op).await;
    result?;
    match op {
        Op::AcceptUnix { accepted, .. } => Ok(accepted.expect("a stream")),
        _ => unreachable!(),
    }
}

async fn send_to_unix(cx: &Cx, socket: &Handle, bytes: &[u8], path: &str) -> io::Result<usize> {
    let op = Op::SendToUnix {
        socket: socket.clone(),
        buf: bytes.to_vec(),
        path: path.into(),
    };
    submit(cx, op).await.0
}

async fn recv_from_unix(
    cx: &Cx,
    socket: &Handle,
    cap: usize,
) -> io::Result<(Vec<u8>, Option<PathBuf>)> {
    let op = Op::RecvFromUnix {
        socket: socket.clone(),
        buf: Vec::with_capacity(cap),
        from: None,
    };
    let (result, op) = submit(cx, op).await;
    result?;
    match op {
        Op::RecvFromUnix { buf, from, .. } => Ok((buf, from)),
        _ => unreachable!(),
    }
}

async fn resolve(cx: &Cx, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let op = Op::Offload(Offload::Resolve {
        host: host.into(),
        port,
        addrs: Vec::new(),
    });
    let (result, op) = submit(cx, op).await;
    result?;
    match op {
        Op::Offload(Offload::Resolve { addrs, .. }) => Ok(addrs),
        _ => unreachable!(),
    }
}

async fn stdio(cx: &Cx, stream: StdStream, buf: Vec<u8>) -> io::Result<Vec<u8>> {
    let (result, op) = submit(cx, Op::Offload(Offload::Stdio(Stdio::new(stream, buf)))).await;
    result?;
    Ok(op.into_buf())
}

/// Runs `client` alone in a healthy world with one idle host, `srv`, and returns its value.
fn client<T: 'static>(
    seed: u64,
    faults: Faults,
    body: impl AsyncFnOnce(Cx, Control) -> io::Result<T> + 'static,
) -> T {
    let out = Rc::new(RefCell::new(None));
    let slot = out.clone();
    World::new(seed)
        .faults(faults)
        .host("srv", |cx, _| async move {
            cx.sleep(u64::MAX).await?;
            Ok(())
        })
        .client("client", move |cx, world| async move {
            *slot.borrow_mut() = Some(body(cx, world).await?);
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    out.take().unwrap()
}

/// Datagrams as a receiver got them: arrival time, payload.
type Arrivals = Vec<(u64, Vec<u8>)>;

/// A world where host `sink` records every UDP datagram it gets on port 9000 (arrival time,
/// payload), and a client runs `body`; returns what `sink` got.
fn with_sink(
    seed: u64,
    faults: Faults,
    body: impl AsyncFnOnce(Cx, Control) -> io::Result<()> + 'static,
) -> Arrivals {
    let got: Rc<RefCell<Arrivals>> = Rc::default();
    let sink = got.clone();
    World::new(seed)
        .faults(faults)
        .host("sink", move |cx, _| {
            let got = sink.clone();
            async move {
                let socket = bind_udp(&cx, any(9000)).await?;
                loop {
                    let (bytes, _) = recv_from(&cx, &socket, 2048).await?;
                    got.borrow_mut().push((cx.now_ms(), bytes));
                }
            }
        })
        .client("client", move |cx, world| async move {
            Ok(body(cx, world).await?)
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    got.take()
}

/// Sends datagrams 0..n to `sink`, one a millisecond (the payload is the send time), then
/// waits for stragglers.
async fn send_one_per_ms(cx: &Cx, world: &Control, n: u64) -> io::Result<()> {
    let socket = bind_udp(cx, any(0)).await?;
    for _ in 0..n {
        let at = cx.now_ms();
        send_to(cx, &socket, &at.to_be_bytes(), world.addr("sink", 9000)).await?;
        cx.sleep(1).await?;
    }
    cx.sleep(100).await?;
    Ok(())
}

fn sent_at(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().unwrap())
}

// ---- UDP ----------------------------------------------------------------------------------

#[test]
fn a_udp_echo_takes_exactly_its_round_trip_and_addresses_are_the_hosts_own() {
    let mut faults = Faults::none();
    faults.net.latency_ms = (5, 5);
    let seen = Rc::new(RefCell::new(None));
    let server_seen = seen.clone();
    let report = World::new(3)
        .faults(faults)
        .host("echo", move |cx, _| {
            let seen = server_seen.clone();
            async move {
                let socket = bind_udp(&cx, any(9000)).await?;
                loop {
                    let (bytes, from) = recv_from(&cx, &socket, 64).await?;
                    *seen.borrow_mut() = Some((cx.now_ms(), from));
                    send_to(&cx, &socket, &bytes, from).await?;
                }
            }
        })
        .client("client", |cx, world| async move {
            let socket = bind_udp(&cx, any(0)).await?;
            assert_eq!(socket.resource().local_addr()?, any(32768));
            assert_eq!(
                socket.resource().peer_addr().unwrap_err().kind(),
                ErrorKind::NotConnected
            );
            connect_udp(&cx, &socket, world.addr("echo", 9000)).await?;
            // Connecting picked the source address the unspecified binding left open.
            assert_eq!(socket.resource().local_addr()?, world.addr("client", 32768));
            assert_eq!(socket.resource().peer_addr()?, world.addr("echo", 9000));
            assert_eq!(send(&cx, &socket, b"ping").await?, 4);
            assert_eq!(recv(&cx, &socket, 64).await?, b"ping");
            assert_eq!(cx.now_ms(), 10, "5 ms there, 5 ms back");
            Ok(())
        })
        .run()
        .unwrap();
    assert_eq!(report.now_ms, 10);
    let (at, from) = seen.take().unwrap();
    assert_eq!(at, 5);
    assert_eq!(from, SocketAddr::new("10.0.0.2".parse().unwrap(), 32768));
}

#[test]
fn lost_datagrams_are_gone_and_the_rest_arrive_after_exactly_the_latency() {
    let mut faults = Faults::none();
    faults.net.loss_ppm = 500_000;
    let got = with_sink(5, faults, async |cx, world| {
        send_one_per_ms(&cx, &world, 200).await
    });
    assert!(
        (50..150).contains(&got.len()),
        "{} of 200 arrived",
        got.len()
    );
    let mut sent = BTreeSet::new();
    for (at, bytes) in &got {
        let when = sent_at(bytes);
        assert_eq!(*at, when + 1, "1 ms latency, never resent");
        assert!(sent.insert(when), "a duplicate");
    }
    let mut faults = Faults::none();
    faults.net.loss_ppm = 1_000_000;
    let got = with_sink(5, faults, async |cx, world| {
        send_one_per_ms(&cx, &world, 20).await
    });
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn duplicated_and_reordered_datagrams() {
    let mut faults = Faults::none();
    faults.net.duplicate_ppm = 1_000_000;
    let got = with_sink(1, faults, async |cx, world| {
        send_one_per_ms(&cx, &world, 10).await
    });
    assert_eq!(got.len(), 20);
    for pair in got.chunks(2) {
        assert_eq!(pair[0], pair[1], "each twice, at the same time");
        assert_eq!(pair[0].0, sent_at(&pair[0].1) + 1);
    }
    let mut faults = Faults::none();
    faults.net.reorder_ppm = 300_000;
    let got = with_sink(1, faults, async |cx, world| {
        send_one_per_ms(&cx, &world, 100).await
    });
    assert_eq!(got.len(), 100, "held back, not lost");
    let delays: BTreeSet<u64> = got.iter().map(|(at, b)| at - sent_at(b)).collect();
    assert_eq!(
        delays,
        [1, 3].into_iter().collect(),
        "on time, or one more latency + 1 ms"
    );
    let overtaken = got
        .windows(2)
        .filter(|w| sent_at(&w[0].1) > sent_at(&w[1].1));
    assert!(overtaken.count() > 0, "later datagrams overtake held ones");
}

#[test]
fn a_partition_drops_datagrams_until_it_heals() {
    let got = with_sink(2, Faults::none(), async |cx, world| {
        let socket = bind_udp(&cx, any(0)).await?;
        world.partition("client", "sink");
        for i in 0..5u64 {
            send_to(&cx, &socket, &i.to_be_bytes(), world.addr("sink", 9000)).await?;
        }
        cx.sleep(10).await?;
        world.heal("client", "sink");
        send_to(&cx, &socket, &99u64.to_be_bytes(), world.addr("sink", 9000)).await?;
        cx.sleep(10).await?;
        Ok(())
    });
    assert_eq!(got, vec![(11, 99u64.to_be_bytes().to_vec())]);
}

#[test]
fn a_datagram_to_a_closed_port_refuses_the_connected_sender_only() {
    let (refused_at, unconnected) = client(1, Faults::none(), async |cx, world| {
        let connected = bind_udp(&cx, any(0)).await?;
        connect_udp(&cx, &connected, world.addr("srv", 9999)).await?;
        send(&cx, &connected, b"anyone?").await?;
        let err = recv(&cx, &connected, 64).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
        let refused_at = cx.now_ms();
        // Reported once; the socket then waits as before.
        let unconnected = bind_udp(&cx, any(0)).await?;
        send_to(&cx, &unconnected, b"anyone?", world.addr("srv", 9999)).await?;
        let heard = recv_within(&cx, &unconnected, 64, 50).await?;
        Ok((refused_at, heard.is_none()))
    });
    assert_eq!(refused_at, 2, "the datagram 1 ms there, the ICMP 1 ms back");
    assert!(unconnected, "an unconnected socket never learns");
}

#[test]
fn a_full_receive_buffer_drops_and_a_short_buffer_truncates() {
    let (kept, truncated, next) = client(1, Faults::none(), async |cx, _| {
        let a = bind_udp(&cx, local(0)).await?;
        let b = bind_udp(&cx, local(7000)).await?;
        for i in 0..4u8 {
            send_to(&cx, &a, &vec![i; 60_000], local(7000)).await?;
        }
        let mut kept = Vec::new();
        while let Some((bytes, from)) = recv_within(&cx, &b, 65_536, 5).await? {
            assert_eq!(from, a.resource().local_addr()?);
            kept.push(bytes[0]);
        }
        send_to(&cx, &a, b"0123456789", local(7000)).await?;
        send_to(&cx, &a, b"next", local(7000)).await?;
        let (truncated, _) = recv_from(&cx, &b, 4).await?;
        let (next, _) = recv_from(&cx, &b, 64).await?;
        Ok((kept, truncated, next))
    });
    assert_eq!(
        kept,
        [0, 1, 2],
        "212,992 bytes of buffer: the fourth 60,000 dropped"
    );
    assert_eq!(truncated, b"0123", "the rest of the datagram is discarded");
    assert_eq!(next, b"next");
}

#[test]
fn udp_ports_are_apart_from_tcp_and_reuse_port_shares_them() {
    client(1, Faults::none(), async |cx, _| {
        let _tcp = ioswap::TcpListener::bind(&cx, any(7000)).await?;
        let udp = bind_udp(&cx, any(7000)).await?;
        assert_eq!(
            udp.resource().local_addr()?,
            any(7000),
            "UDP's 7000 is not TCP's"
        );
        let again = bind_udp(&cx, local(7000)).await.unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AddrInUse);
        let shared = SocketOptions::udp().reuse_port(true);
        let one = bind_udp_with(&cx, any(7001), shared).await?;
        let two = bind_udp_with(&cx, any(7001), shared).await?;
        let plain = bind_udp(&cx, any(7001)).await.unwrap_err();
        assert_eq!(
            plain.kind(),
            ErrorKind::AddrInUse,
            "all must ask for SO_REUSEPORT"
        );
        let sender = bind_udp(&cx, local(0)).await?;
        for i in 0..20u8 {
            send_to(&cx, &sender, &[i], local(7001)).await?;
        }
        cx.sleep(1).await?;
        let mut counts = [0, 0];
        for (n, socket) in [&one, &two].into_iter().enumerate() {
            while recv_within(&cx, socket, 8, 1).await?.is_some() {
                counts[n] += 1;
            }
        }
        assert_eq!(counts[0] + counts[1], 20);
        assert!(counts[0] > 0 && counts[1] > 0, "spread: {counts:?}");
        let err = send_to(&cx, &sender, &[0; 70_000], local(7001))
            .await
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(90), "EMSGSIZE");
        Ok(())
    });
}

#[test]
fn a_recv_from_canceled_in_flight_loses_no_datagram() {
    let got = client(1, Faults::none(), async |cx, world| {
        let socket = bind_udp(&cx, any(9000)).await?;
        let sender = bind_udp(&cx, any(0)).await?;
        let to = world.addr("client", 9000);
        let receive = |socket: Handle| {
            cx.spawn(move |cx| async move {
                match recv_from(&cx, &socket, 64).await {
                    Err(err) if Canceled::is_canceled(&err) => Err(Canceled),
                    other => Ok(other.map(|(bytes, _)| bytes)),
                }
            })
        };
        // Canceled while it waits: it ends canceled, and the next datagram waits for the next
        // receive.
        let waiting = receive(socket.clone());
        cx.sleep(1).await?;
        waiting.cancel();
        assert!(waiting.await.is_err(), "it ended canceled");
        send_to(&cx, &sender, b"one", to).await?;
        let (first, _) = recv_from(&cx, &socket, 64).await?;
        // Canceled in the turn the datagram lands: completion wins, or the datagram stays
        // queued; either way it is received exactly once.
        let mut got = vec![first];
        let waiting = receive(socket.clone());
        cx.sleep(1).await?;
        send_to(&cx, &sender, b"two", to).await?;
        waiting.cancel();
        if let Ok(Ok(bytes)) = waiting.await {
            got.push(bytes);
        }
        send_to(&cx, &sender, b"three", to).await?;
        while let Some((bytes, _)) = recv_within(&cx, &socket, 64, 5).await? {
            got.push(bytes);
        }
        Ok(got)
    });
    assert_eq!(got, [&b"one"[..], b"two", b"three"]);
}

#[test]
fn a_crashed_host_s_udp_sockets_vanish_and_its_datagrams_with_them() {
    let report = World::new(1)
        .host("echo", |cx, _| async move {
            let socket = bind_udp(&cx, any(9000)).await?;
            loop {
                let (bytes, from) = recv_from(&cx, &socket, 64).await?;
                send_to(&cx, &socket, &bytes, from).await?;
            }
        })
        .client("client", |cx, world| async move {
            let socket = bind_udp(&cx, any(0)).await?;
            connect_udp(&cx, &socket, world.addr("echo", 9000)).await?;
            send(&cx, &socket, b"one").await?;
            assert_eq!(recv(&cx, &socket, 8).await?, b"one");
            world.crash("echo");
            cx.sleep(1).await?;
            // Down: no socket, and no ICMP either (a host that is down answers nothing).
            send(&cx, &socket, b"lost").await?;
            assert_eq!(recv_within(&cx, &socket, 8, 50).await?, None);
            world.restart("echo");
            cx.sleep(1).await?;
            send(&cx, &socket, b"two").await?;
            assert_eq!(
                recv(&cx, &socket, 8).await?,
                b"two",
                "it bound again on boot"
            );
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(report.faults.iter().any(|l| l.contains("crash echo")));
}

// ---- TCP bind options ---------------------------------------------------------------------

async fn bind_tcp(cx: &Cx, addr: SocketAddr, options: SocketOptions) -> io::Result<Handle> {
    let op = Op::Bind {
        addr,
        options,
        listener: None,
    };
    let (result, op) = submit(cx, op).await;
    result?;
    match op {
        Op::Bind { listener, .. } => Ok(listener.expect("a listener")),
        _ => unreachable!(),
    }
}

async fn accept(cx: &Cx, listener: &Handle) -> io::Result<Handle> {
    let op = Op::Accept {
        listener: listener.clone(),
        accepted: None,
    };
    let (result, op) = submit(cx, op).await;
    result?;
    match op {
        Op::Accept { accepted, .. } => Ok(accepted.expect("a connection").0),
        _ => unreachable!(),
    }
}

#[test]
fn the_listen_backlog_is_the_bind_options_and_a_full_queue_drops_syns() {
    let times = Rc::new(RefCell::new(Vec::new()));
    let seen = times.clone();
    World::new(1)
        .host("srv", |cx, _| async move {
            let listener = bind_tcp(&cx, any(7000), SocketOptions::default().backlog(1)).await?;
            cx.sleep(500).await?;
            let _first = accept(&cx, &listener).await?;
            cx.sleep(u64::MAX).await?;
            Ok(())
        })
        .client("client", move |cx, world| async move {
            let mut tasks = Vec::new();
            for _ in 0..3 {
                let (addr, times) = (world.addr("srv", 7000), seen.clone());
                tasks.push(cx.spawn(move |cx| async move {
                    let conn = TcpStream::connect(&cx, addr).await;
                    times.borrow_mut().push(cx.now_ms());
                    Ok(conn.map(drop))
                }));
            }
            for task in tasks {
                task.await??;
            }
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    // Linux queues backlog + 1; the third SYN is dropped, sent again at 1 s, and finds room
    // (the server accepted one at 500 ms).
    assert_eq!(*times.borrow(), [2, 2, 1002]);
}

#[test]
fn reuse_port_listeners_share_the_connections() {
    let counts = Rc::new(RefCell::new([0u32; 2]));
    let seen = counts.clone();
    World::new(4)
        .host("srv", move |cx, _| {
            let counts = seen.clone();
            async move {
                let shared = SocketOptions::default().reuse_port(true);
                let refused = bind_tcp(&cx, any(7000), SocketOptions::default()).await?;
                let taken = bind_tcp(&cx, any(7000), shared).await.unwrap_err();
                assert_eq!(taken.kind(), ErrorKind::AddrInUse);
                drop(refused);
                cx.sleep(1).await?;
                for n in 0..2 {
                    let listener = bind_tcp(&cx, any(7000), shared).await?;
                    let counts = counts.clone();
                    cx.spawn(move |cx| async move {
                        while let Ok(conn) = accept(&cx, &listener).await {
                            counts.borrow_mut()[n] += 1;
                            drop(conn);
                        }
                        Ok(())
                    })
                    .detach();
                }
                cx.sleep(u64::MAX).await?;
                Ok(())
            }
        })
        .client("client", |cx, world| async move {
            cx.sleep(10).await?;
            for _ in 0..20 {
                TcpStream::connect(&cx, world.addr("srv", 7000)).await?;
            }
            cx.sleep(10).await?;
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    let counts = *counts.borrow();
    assert_eq!(counts[0] + counts[1], 20);
    assert!(counts[0] > 0 && counts[1] > 0, "{counts:?}");
}

// ---- Unix sockets -------------------------------------------------------------------------

#[test]
fn unix_streams_connect_at_once_and_carry_bytes_both_ways() {
    client(1, Faults::none(), async |cx, _| {
        fs::create_dir(&cx, "/run").await?;
        let listener = bind_unix(&cx, "/run/app.sock", UnixKind::Listener).await?;
        assert_eq!(
            listener.resource().unix_local_path()?,
            Some("/run/app.sock".into())
        );
        let meta = fs::metadata(&cx, "/run/app.sock").await?;
        assert_eq!(meta.file_type(), FileType::Other, "the socket's file");
        let client = connect_unix(&cx, "/run/app.sock").await?;
        let server = accept_unix(&cx, &listener).await?;
        assert_eq!(
            client.resource().unix_local_path()?,
            None,
            "the connecting end is unnamed"
        );
        assert_eq!(
            client.resource().unix_peer_path()?,
            Some("/run/app.sock".into())
        );
        assert_eq!(
            server.resource().unix_local_path()?,
            Some("/run/app.sock".into())
        );
        assert_eq!(server.resource().unix_peer_path()?, None);
        assert_eq!(
            client.resource().local_addr().unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        send(&cx, &client, b"hello").await?;
        assert_eq!(recv(&cx, &server, 64).await?, b"hello");
        send(&cx, &server, b"back").await?;
        assert_eq!(recv(&cx, &client, 64).await?, b"back");
        let shut = Op::Shutdown {
            stream: client.clone(),
            how: Shutdown::Write,
        };
        submit(&cx, shut).await.0?;
        assert_eq!(recv(&cx, &server, 64).await?, b"", "end of stream");
        assert_eq!(cx.now_ms(), 0, "local delivery takes no time");
        Ok(())
    });
}

#[test]
fn unix_sockets_give_linux_errors() {
    client(1, Faults::none(), async |cx, _| {
        let kind = |r: io::Result<Handle>| r.map(drop).unwrap_err().kind();
        assert_eq!(
            kind(connect_unix(&cx, "/nobody").await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(bind_unix(&cx, "/no/dir.sock", UnixKind::Listener).await),
            ErrorKind::NotFound
        );
        let listener = bind_unix(&cx, "/s", UnixKind::Listener).await?;
        assert_eq!(
            kind(bind_unix(&cx, "/s", UnixKind::Listener).await),
            ErrorKind::AddrInUse
        );
        drop(listener);
        cx.sleep(1).await?;
        // The file stays after its socket closes, as on Linux: nobody listens there.
        assert_eq!(
            kind(connect_unix(&cx, "/s").await),
            ErrorKind::ConnectionRefused
        );
        assert_eq!(
            kind(bind_unix(&cx, "/s", UnixKind::Listener).await),
            ErrorKind::AddrInUse
        );
        fs::remove_file(&cx, "/s").await?;
        bind_unix(&cx, "/s", UnixKind::Listener).await?;
        File::create(&cx, "/plain").await?;
        assert_eq!(
            kind(connect_unix(&cx, "/plain").await),
            ErrorKind::ConnectionRefused
        );
        let dgram = bind_unix(&cx, "/d", UnixKind::Datagram).await?;
        let err = send_to_unix(&cx, &dgram, b"x", "/nobody")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = send(&cx, &dgram, b"x").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotConnected);
        Ok(())
    });
}

#[test]
fn paths_follow_linux_s_limits_and_std_s_nul_check() {
    client(1, Faults::none(), async |cx, _| {
        let kind = |r: io::Result<()>| {
            let err = r.unwrap_err();
            (err.kind(), err.raw_os_error())
        };
        let invalid = (ErrorKind::InvalidInput, None);
        let too_long = (ErrorKind::InvalidFilename, Some(36));
        // A Unix socket's path must fit `sun_path` (108 bytes) with its NUL, as std checks.
        let socket = format!("/{}", "s".repeat(106));
        let fits = bind_unix(&cx, &socket, UnixKind::Datagram).await?;
        let longer = format!("{socket}s");
        let bind = bind_unix(&cx, &longer, UnixKind::Datagram).await;
        assert_eq!(kind(bind.map(drop)), invalid, "bind of a 108-byte path");
        let connect = connect_unix(&cx, &longer).await;
        assert_eq!(kind(connect.map(drop)), invalid, "connect");
        let send = send_to_unix(&cx, &fits, b"x", &longer).await;
        assert_eq!(kind(send.map(drop)), invalid, "send_to");
        let bind = bind_unix(&cx, "/a\0b", UnixKind::Datagram).await;
        assert_eq!(kind(bind.map(drop)), invalid, "a NUL in a socket path");
        // Files: a NUL is std's InvalidInput; a name over 255 bytes or a path of 4,096 bytes
        // or more is ENAMETOOLONG.
        assert_eq!(
            kind(fs::write(&cx, "/tmp/a\0b", b"x".to_vec()).await),
            invalid
        );
        let name = format!("/tmp/{}", "x".repeat(256));
        assert_eq!(kind(fs::write(&cx, &name, b"x".to_vec()).await), too_long);
        let deep = format!("/{}", "d/".repeat(2_048));
        assert_eq!(kind(fs::create_dir_all(&cx, &deep).await), too_long);
        assert_eq!(kind(fs::metadata(&cx, &deep).await.map(drop)), too_long);
        // A trailing `/` names a directory; a link's target cannot be empty.
        let trailing = fs::write(&cx, "/tmp/f/", b"x".to_vec()).await;
        assert_eq!(kind(trailing).1, Some(21), "EISDIR");
        fs::write(&cx, "/tmp/f", b"x".to_vec()).await?;
        assert_eq!(kind(fs::read(&cx, "/tmp/f/").await.map(drop)).1, Some(20));
        assert_eq!(kind(fs::symlink(&cx, "", "/empty").await).1, Some(2));
        Ok(())
    });
}

#[test]
fn unix_datagrams_name_their_sender() {
    client(1, Faults::none(), async |cx, _| {
        let a = bind_unix(&cx, "/a", UnixKind::Datagram).await?;
        let b = bind_unix(&cx, "/b", UnixKind::Datagram).await?;
        send_to_unix(&cx, &a, b"one", "/b").await?;
        send_to_unix(&cx, &a, b"two", "/b").await?;
        let (bytes, from) = recv_from_unix(&cx, &b, 64).await?;
        assert_eq!(
            (bytes.as_slice(), from.as_deref()),
            (&b"one"[..], Some(Path::new("/a")))
        );
        assert_eq!(recv(&cx, &b, 2).await?, b"tw", "truncated to the buffer");
        Ok(())
    });
}

#[test]
fn an_accept_unix_canceled_leaves_the_connection_in_the_backlog() {
    client(1, Faults::none(), async |cx, _| {
        let listener = bind_unix(&cx, "/l", UnixKind::Listener).await?;
        let waiting = {
            let listener = listener.clone();
            cx.spawn(move |cx| async move {
                match accept_unix(&cx, &listener).await {
                    Err(err) if Canceled::is_canceled(&err) => Err(Canceled),
                    other => Ok(other.map(drop)),
                }
            })
        };
        cx.sleep(1).await?;
        waiting.cancel();
        assert!(waiting.await.is_err(), "the accept ended canceled");
        let client = connect_unix(&cx, "/l").await?;
        // Nobody waits: the connection is queued, and the next accept takes it.
        let server = accept_unix(&cx, &listener).await?;
        send(&cx, &client, b"hi").await?;
        assert_eq!(recv(&cx, &server, 8).await?, b"hi");
        Ok(())
    });
}

#[test]
fn a_unix_sender_waits_for_room_and_a_cancel_takes_its_datagram_back() {
    client(1, Faults::none(), async |cx, _| {
        let r = bind_unix(&cx, "/r", UnixKind::Datagram).await?;
        let s = bind_unix(&cx, "/s", UnixKind::Datagram).await?;
        send_to_unix(&cx, &s, &vec![1; 200_000], "/r").await?;
        let blocked = |bytes: Vec<u8>| {
            let s = s.clone();
            cx.spawn(move |cx| async move {
                match send_to_unix(&cx, &s, &bytes, "/r").await {
                    Err(err) if Canceled::is_canceled(&err) => Err(Canceled),
                    other => Ok(other),
                }
            })
        };
        // No room for 20,000 more bytes: the sender waits; canceled, nothing is sent.
        let waiting = blocked(vec![2; 20_000]);
        cx.sleep(5).await?;
        assert!(!waiting.is_finished(), "it waits for room");
        waiting.cancel();
        assert!(waiting.await.is_err(), "it ended canceled");
        // A sender that waits goes on once the receiver reads.
        let waiting = blocked(vec![3; 20_000]);
        cx.sleep(5).await?;
        let (first, from) = recv_from_unix(&cx, &r, 262_144).await?;
        assert_eq!((first.len(), from), (200_000, Some("/s".into())));
        assert_eq!(waiting.await??, 20_000);
        let (next, _) = recv_from_unix(&cx, &r, 262_144).await?;
        assert_eq!(next, vec![3; 20_000], "the canceled datagram never arrived");
        // A receiver that closes refuses the senders waiting on it.
        send_to_unix(&cx, &s, &vec![4; 200_000], "/r").await?;
        let waiting = blocked(vec![5; 20_000]);
        cx.sleep(1).await?;
        drop(r);
        let err = waiting.await?.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
        Ok(())
    });
}

#[test]
fn a_unix_sender_queued_behind_a_canceled_one_goes_on() {
    client(1, Faults::none(), async |cx, _| {
        let r = bind_unix(&cx, "/r", UnixKind::Datagram).await?;
        let s = bind_unix(&cx, "/s", UnixKind::Datagram).await?;
        send_to_unix(&cx, &s, &vec![1; 200_000], "/r").await?;
        let blocked = |bytes: Vec<u8>| {
            let s = s.clone();
            cx.spawn(move |cx| async move {
                match send_to_unix(&cx, &s, &bytes, "/r").await {
                    Err(err) if Canceled::is_canceled(&err) => Err(Canceled),
                    other => Ok(other),
                }
            })
        };
        // 20,000 bytes do not fit; 100 would, but wait behind them to keep the order.
        let big = blocked(vec![2; 20_000]);
        cx.sleep(1).await?;
        let small = blocked(vec![3; 100]);
        cx.sleep(1).await?;
        assert!(!small.is_finished(), "it waits behind the first sender");
        big.cancel();
        assert!(big.await.is_err(), "it ended canceled");
        // The head left: the sender behind it fits, and goes without anything being read.
        assert_eq!(small.await??, 100);
        let (first, _) = recv_from_unix(&cx, &r, 262_144).await?;
        let (next, _) = recv_from_unix(&cx, &r, 262_144).await?;
        assert_eq!((first.len(), next), (200_000, vec![3; 100]), "in order");
        Ok(())
    });
}

#[test]
fn a_lookup_canceled_in_flight_ends_canceled_at_once() {
    client(1, Faults::none(), async |cx, _| {
        let task = cx.spawn(move |cx| async move {
            match resolve(&cx, "srv", 80).await {
                Err(err) if Canceled::is_canceled(&err) => Err(Canceled),
                other => Ok(other.map(drop).map_err(|err| err.kind())),
            }
        });
        cx.yield_now().await?;
        cx.yield_now().await?;
        task.cancel();
        assert!(task.await.is_err(), "it ended canceled");
        assert_eq!(
            cx.now_ms(),
            0,
            "at once: a lookup detaches, as on the real backends"
        );
        // Its result arrives later, and is dropped.
        cx.sleep(5).await?;
        Ok(())
    });
}

/// A value whose drop panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("a Bomb was dropped");
    }
}

#[test]
fn panicking_drops_of_what_nobody_owns_stay_in_the_world() {
    // A detached closure's output, dropped when it runs.
    let run = std::panic::catch_unwind(|| {
        FiberIo::new().run(|cx| async move {
            let task = cx.spawn_blocking(|| Bomb);
            cx.yield_now().await?;
            task.cancel();
            let _ = task.await;
            cx.sleep(50).await?;
            Ok(())
        })
    });
    assert!(matches!(run, Ok(Ok(()))), "a detached output's drop");
    // A closure still to run when the run ends, dropped with the backend.
    let run = std::panic::catch_unwind(|| {
        FiberIo::new().run(|cx| async move {
            let bomb = Bomb;
            cx.spawn_blocking(move || drop(bomb)).detach();
            Ok(())
        })
    });
    assert!(matches!(run, Ok(Ok(()))), "a closure dropped at the end");
    // A closure of a host that crashes before its turn, dropped at the crash.
    let run = std::panic::catch_unwind(|| {
        World::new(1)
            .host("srv", |cx, _| async move {
                let bomb = Bomb;
                let task = cx.spawn_blocking(move || drop(bomb));
                cx.sleep(u64::MAX).await?;
                drop(task);
                Ok(())
            })
            .client("client", |cx, world| async move {
                cx.sleep(1).await?;
                world.crash("srv");
                cx.sleep(50).await?;
                Ok(())
            })
            .run()
            .map(drop)
    });
    assert!(
        matches!(run, Ok(Ok(()))),
        "a closure dropped at a crash: {run:?}"
    );
}

// ---- files and directories ----------------------------------------------------------------

#[test]
fn set_len_and_stat() {
    client(1, Faults::none(), async |cx, _| {
        cx.sleep(1_500).await?;
        let file = File::create(&cx, "/f").await?;
        file.write_all_at(b"0123456789".to_vec(), 0).await.0?;
        file.set_len(4).await?;
        assert_eq!(file.read_to_end().await?, b"0123");
        cx.sleep(500).await?;
        file.set_len(6).await?;
        assert_eq!(file.read_to_end().await?, b"0123\0\0");
        let meta = file.metadata().await?;
        assert!(meta.is_file());
        assert_eq!((meta.len(), meta.mode()), (6, 0o644));
        assert_eq!(
            meta.modified(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(2_000))
        );
        let read_only = File::open(&cx, "/f").await?;
        let err = read_only.set_len(0).await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(22), "EINVAL: not open for writing");
        Ok(())
    });
}

#[test]
fn directories_follow_linux() {
    client(1, Faults::none(), async |cx, _| {
        let kind = |r: io::Result<()>| r.unwrap_err().kind();
        assert_eq!(kind(fs::create_dir(&cx, "/a/b").await), ErrorKind::NotFound);
        fs::create_dir(&cx, "/a").await?;
        assert_eq!(
            kind(fs::create_dir(&cx, "/a").await),
            ErrorKind::AlreadyExists
        );
        fs::create_dir_all(&cx, "/a/b/c").await?;
        fs::write(&cx, "/a/z", b"zz".to_vec()).await?;
        fs::write(&cx, "/a/m", b"m".to_vec()).await?;
        let names: Vec<_> = fs::read_dir(&cx, "/a")
            .await?
            .iter()
            .map(|e| (e.path().to_path_buf(), e.file_type()))
            .collect();
        let expected = [
            ("/a/b", FileType::Dir),
            ("/a/m", FileType::File),
            ("/a/z", FileType::File),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(p, t)| (PathBuf::from(p), *t))
            .collect();
        assert_eq!(names, expected, "sorted by name");
        assert_eq!(
            kind(fs::remove_dir(&cx, "/a/b").await),
            ErrorKind::DirectoryNotEmpty
        );
        assert_eq!(
            kind(fs::remove_file(&cx, "/a/b").await),
            ErrorKind::IsADirectory
        );
        assert_eq!(
            kind(fs::remove_dir(&cx, "/a/z").await),
            ErrorKind::NotADirectory
        );
        assert_eq!(
            kind(fs::create_dir(&cx, "/a/z/x").await),
            ErrorKind::NotADirectory
        );
        assert_eq!(
            kind(fs::read_dir(&cx, "/a/z").await.map(drop)),
            ErrorKind::NotADirectory
        );
        // Renames: a file replaces a file; directories only replace empty directories.
        fs::rename(&cx, "/a/m", "/a/z").await?;
        assert_eq!(fs::read(&cx, "/a/z").await?, b"m");
        assert!(!fs::exists(&cx, "/a/m").await?);
        assert_eq!(
            kind(fs::rename(&cx, "/a/z", "/a/b").await),
            ErrorKind::IsADirectory
        );
        assert_eq!(
            kind(fs::rename(&cx, "/a/b", "/a/z").await),
            ErrorKind::NotADirectory
        );
        fs::create_dir(&cx, "/a/e").await?;
        assert_eq!(
            kind(fs::rename(&cx, "/a/e", "/a/b").await),
            ErrorKind::DirectoryNotEmpty
        );
        assert_eq!(
            kind(fs::rename(&cx, "/a/b", "/a/b/c/d").await),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(fs::rename(&cx, "/a/none", "/a/x").await),
            ErrorKind::NotFound
        );
        fs::rename(&cx, "/a/b", "/a/e").await?;
        assert!(
            fs::metadata(&cx, "/a/e/c").await?.is_dir(),
            "the subtree moved"
        );
        assert!(!fs::exists(&cx, "/a/b").await?);
        // Links.
        fs::hard_link(&cx, "/a/z", "/a/h").await?;
        fs::remove_file(&cx, "/a/z").await?;
        assert_eq!(
            fs::read(&cx, "/a/h").await?,
            b"m",
            "the other name keeps the file"
        );
        assert_eq!(
            kind(fs::hard_link(&cx, "/a/e", "/a/dir").await),
            ErrorKind::PermissionDenied
        );
        fs::symlink(&cx, "/a/h", "/a/link").await?;
        assert_eq!(fs::read_link(&cx, "/a/link").await?, PathBuf::from("/a/h"));
        assert!(fs::symlink_metadata(&cx, "/a/link").await?.is_symlink());
        assert_eq!(fs::metadata(&cx, "/a/link").await?.len(), 1);
        assert_eq!(fs::read(&cx, "/a/link").await?, b"m", "open follows links");
        fs::symlink(&cx, "e", "/a/rel").await?;
        assert!(
            fs::metadata(&cx, "/a/rel/c").await?.is_dir(),
            "through a relative link"
        );
        assert_eq!(
            kind(fs::read_link(&cx, "/a/h").await.map(drop)),
            ErrorKind::InvalidInput
        );
        fs::remove_dir_all(&cx, "/a").await?;
        let left: Vec<_> = fs::read_dir(&cx, "/")
            .await?
            .iter()
            .map(|e| e.path().to_owned())
            .collect();
        assert_eq!(
            left,
            [PathBuf::from("/tmp")],
            "a fresh disk has /tmp, as Linux does"
        );
        Ok(())
    });
}

#[test]
fn disk_errors_strike_the_ops_by_path() {
    let mut faults = Faults::none();
    faults.disk.eio_ppm = 1_000_000;
    client(1, faults, async |cx, _| {
        let err = fs::create_dir(&cx, "/d").await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5), "EIO");
        let err = fs::metadata(&cx, "/").await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5));
        Ok(())
    });
    let mut faults = Faults::none();
    faults.disk.enospc_ppm = 1_000_000;
    client(1, faults, async |cx, _| {
        let err = fs::create_dir(&cx, "/d").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StorageFull);
        assert!(!fs::exists(&cx, "/d").await?, "nothing was made");
        Ok(())
    });
}

/// A host makes `/d/f` durable (synced, with its directory), renames it to `/d/g` and creates
/// `/d/new`, syncing the directory if `sync_dir`; the test crashes it and reads what is left.
fn rename_then_crash(seed: u64, sync_dir: bool) -> (Vec<String>, WorldReport) {
    let found: Rc<RefCell<Option<Vec<String>>>> = Rc::default();
    let done = Rc::new(Cell::new(false));
    let (host_found, host_done) = (found.clone(), done.clone());
    let client_found = found.clone();
    let report = World::new(seed)
        .host("db", move |cx, _| {
            let (found, done) = (host_found.clone(), host_done.clone());
            async move {
                if done.get() {
                    let names = fs::read_dir(&cx, "/d").await?;
                    let names = names
                        .iter()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    *found.borrow_mut() = Some(names);
                    return Ok(());
                }
                fs::create_dir(&cx, "/d").await?;
                let file = File::create(&cx, "/d/f").await?;
                file.write_all_at(b"data".to_vec(), 0).await.0?;
                file.sync_all().await?;
                fs::rename(&cx, "/d/f", "/d/g").await?;
                File::create(&cx, "/d/new").await?;
                if sync_dir {
                    OpenOptions::new()
                        .read(true)
                        .open(&cx, "/d")
                        .await?
                        .sync_all()
                        .await?;
                }
                done.set(true);
                cx.sleep(u64::MAX).await?;
                Ok(())
            }
        })
        .client("test", move |cx, world| async move {
            while !done.get() {
                cx.sleep(1).await?;
            }
            world.crash("db");
            world.restart("db");
            while client_found.borrow().is_none() {
                cx.sleep(1).await?;
            }
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    let found = found.take().expect("the host looked");
    (found, report)
}

#[test]
fn a_crash_keeps_a_prefix_of_the_unsynced_directory_changes() {
    let mut seen = BTreeSet::new();
    for seed in 0..30 {
        let (names, report) = rename_then_crash(seed, false);
        // The journal commits in order: no rename without the file's first name being gone,
        // no new file without the rename.
        let allowed = [vec!["f"], vec!["g"], vec!["g", "new"]];
        assert!(
            allowed.iter().any(|a| *a == names),
            "seed {seed}: {names:?}"
        );
        let line = report
            .faults
            .iter()
            .find(|l| l.contains("crash db directories:"));
        assert!(
            line.is_some_and(|l| l.contains("of 2 unsynced")),
            "{:?}",
            report.faults
        );
        seen.insert(names);
    }
    assert_eq!(seen.len(), 3, "every prefix across seeds: {seen:?}");
    for seed in 0..10 {
        let (names, _) = rename_then_crash(seed, true);
        assert_eq!(names, ["g", "new"], "a synced directory keeps its entries");
    }
}

// ---- lookups, blocking closures, standard streams ----------------------------------------

#[test]
fn names_resolve_from_the_host_table() {
    client(1, Faults::none(), async |cx, world| {
        let start = cx.now_ms();
        assert_eq!(resolve(&cx, "srv", 80).await?, [world.addr("srv", 80)]);
        assert_eq!(cx.now_ms() - start, 1, "one network latency");
        assert_eq!(resolve(&cx, "CLIENT", 1).await?, [world.addr("client", 1)]);
        assert_eq!(resolve(&cx, "localhost", 5).await?, [local(5)]);
        let literal: IpAddr = "10.9.8.7".parse().unwrap();
        let at = cx.now_ms();
        assert_eq!(
            resolve(&cx, "10.9.8.7", 2).await?,
            [SocketAddr::new(literal, 2)]
        );
        assert_eq!(cx.now_ms(), at, "a literal needs no lookup");
        let err = resolve(&cx, "nowhere", 80).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        Ok(())
    });
}

#[test]
fn a_blocking_closure_runs_at_a_seeded_turn_and_a_cancel_detaches_it() {
    let run = |seed, range| {
        let out = Rc::new(Cell::new((0, 0)));
        let slot = out.clone();
        let mut faults = Faults::none();
        faults.blocking_ms = range;
        World::new(seed)
            .faults(faults)
            .client("client", move |cx, _| async move {
                let job = Blocking::new(|| 6 * 7);
                let (result, op) = submit(&cx, Op::Offload(Offload::Blocking(job))).await;
                result?;
                let Op::Offload(Offload::Blocking(mut job)) = op else {
                    unreachable!()
                };
                let out = job.take_output().unwrap().unwrap();
                slot.set((*out.downcast::<i32>().unwrap(), cx.now_ms()));
                Ok(())
            })
            .run()
            .unwrap();
        out.get()
    };
    assert_eq!(run(1, (10, 10)), (42, 10), "10 ms in a healthy world");
    let times: BTreeSet<u64> = (0..40).map(|seed| run(seed, (0, 3)).1).collect();
    assert_eq!(
        times,
        (0..=3).collect(),
        "0 to 3 virtual ms, as the seed says"
    );
    assert_eq!(run(9, (0, 50)), run(9, (0, 50)));

    // Canceled once submitted: the caller goes at once; the closure still runs at its turn.
    let detached = |seed| {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        FiberIo::with_seed(seed)
            .run(move |cx| async move {
                let submitted = Rc::new(Cell::new(false));
                let task = {
                    let submitted = submitted.clone();
                    cx.spawn(move |cx| async move {
                        let job = Blocking::new(move || flag.store(true, Ordering::SeqCst));
                        submitted.set(true);
                        let done = cx.submit(Op::Offload(Offload::Blocking(job))).await;
                        Ok(done.result.map(drop))
                    })
                };
                while !submitted.get() {
                    cx.yield_now().await?;
                }
                task.cancel();
                let ended = task.await;
                let canceled = !matches!(ended, Ok(Ok(())));
                let (ended_at, ran_then) = (cx.now_ms(), ran.load(Ordering::SeqCst));
                cx.sleep(20).await?;
                assert!(ran.load(Ordering::SeqCst), "the closure ran at its turn");
                Ok((canceled, ended_at, ran_then))
            })
            .unwrap()
    };
    let outcomes: Vec<_> = (0..10).map(detached).collect();
    for &(canceled, ended_at, ran_then) in &outcomes {
        // Canceled before its turn, or done at once (a turn drawn at 0 ms: completion wins).
        assert_eq!(ended_at, 0, "{outcomes:?}");
        assert_ne!(canceled, ran_then, "{outcomes:?}");
    }
    assert!(
        outcomes.iter().any(|&(canceled, ..)| canceled),
        "some caller left before its closure ran: {outcomes:?}"
    );
}

#[test]
fn standard_streams_are_per_host_and_captured() {
    let report = World::new(1)
        .stdin("client", b"hello world".to_vec())
        .host("srv", |cx, _| async move {
            stdio(&cx, StdStream::Out, b"serving\n".to_vec()).await?;
            let eof = stdio(&cx, StdStream::In, Vec::with_capacity(8)).await?;
            assert!(eof.is_empty(), "no input: end of file at once");
            cx.sleep(u64::MAX).await?;
            Ok(())
        })
        .client("client", |cx, _| async move {
            let mut chunks = Vec::new();
            loop {
                let chunk = stdio(&cx, StdStream::In, Vec::with_capacity(5)).await?;
                if chunk.is_empty() {
                    break;
                }
                chunks.push(String::from_utf8(chunk).unwrap());
            }
            assert_eq!(chunks, ["hello", " worl", "d"]);
            stdio(&cx, StdStream::Out, b"done\n".to_vec()).await?;
            stdio(&cx, StdStream::Err, b"warn\n".to_vec()).await?;
            Ok(())
        })
        .run()
        .unwrap();
    assert_eq!(report.stdout["srv"], b"serving\n");
    assert_eq!(report.stdout["client"], b"done\n");
    assert_eq!(report.stderr["client"], b"warn\n");
    assert!(!report.stderr.contains_key("srv"));

    let io = FiberIo::new().stdin("in");
    let echoed = io
        .run(|cx| async move {
            let input = stdio(&cx, StdStream::In, Vec::with_capacity(16))
                .await
                .unwrap();
            stdio(&cx, StdStream::Out, input.clone()).await.unwrap();
            Ok(input)
        })
        .unwrap();
    assert_eq!((echoed, io.stdout()), (b"in".to_vec(), b"in".to_vec()));
}

#[test]
fn a_stdin_read_with_no_room_takes_a_byte_not_the_end_of_file() {
    let got = FiberIo::new()
        .stdin("ab")
        .run(|cx| async move {
            // A buffer of no capacity: 0 would read as the end of the input.
            let first = stdio(&cx, StdStream::In, Vec::new()).await;
            let rest = stdio(&cx, StdStream::In, Vec::with_capacity(8)).await;
            let end = stdio(&cx, StdStream::In, Vec::new()).await;
            Ok((first.unwrap(), rest.unwrap(), end.unwrap()))
        })
        .unwrap();
    assert_eq!(got, (b"a".to_vec(), b"b".to_vec(), Vec::new()));
}

// ---- determinism --------------------------------------------------------------------------

/// A UDP + Unix + file-system workload on a faulty network, recorded as a log of what each
/// side saw and when.
fn workload(seed: u64) -> (Vec<String>, u64) {
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let (host_log, client_log) = (log.clone(), log.clone());
    let mut faults = Faults::none();
    faults.net.latency_ms = (1, 10);
    faults.net.loss_ppm = 100_000;
    faults.net.duplicate_ppm = 100_000;
    faults.net.reorder_ppm = 100_000;
    faults.disk.latency_ms = (0, 3);
    let report = World::new(seed)
        .faults(faults)
        .host("srv", move |cx, _| {
            let log = host_log.clone();
            async move {
                let socket = bind_udp(&cx, any(9000)).await?;
                fs::create_dir(&cx, "/in").await?;
                let unix = bind_unix(&cx, "/in/sock", UnixKind::Datagram).await?;
                let me = bind_unix(&cx, "/me", UnixKind::Datagram).await?;
                loop {
                    let (bytes, from) = recv_from(&cx, &socket, 64).await?;
                    send_to_unix(&cx, &me, &bytes, "/in/sock").await?;
                    let (local, _) = recv_from_unix(&cx, &unix, 64).await?;
                    let name = format!("/in/{}", String::from_utf8_lossy(&local));
                    fs::write(&cx, &name, local.clone()).await?;
                    let entries = fs::read_dir(&cx, "/in").await?.len();
                    log.borrow_mut()
                        .push(format!("{} srv {name} {entries}", cx.now_ms()));
                    send_to(&cx, &socket, &bytes, from).await?;
                }
            }
        })
        .client("client", move |cx, world| async move {
            let socket = bind_udp(&cx, any(0)).await?;
            for i in 0..30 {
                let msg = format!("m{i}");
                send_to(&cx, &socket, msg.as_bytes(), world.addr("srv", 9000)).await?;
                let what = match recv_within(&cx, &socket, 64, 15).await? {
                    Some((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
                    None => "timeout".into(),
                };
                client_log
                    .borrow_mut()
                    .push(format!("{} client {what}", cx.now_ms()));
            }
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    let log = log.take();
    (log, report.trace_hash)
}

#[test]
fn same_seed_same_run_of_udp_unix_and_files() {
    let (log, hash) = workload(11);
    assert!(
        log.iter().any(|l| l.contains("timeout")),
        "the faults bit: {log:?}"
    );
    assert!(log.iter().any(|l| l.contains(" srv ")), "{log:?}");
    assert_eq!(workload(11), (log.clone(), hash), "same seed, same run");
    assert_ne!(workload(12).0, log, "another seed, another run");
}
