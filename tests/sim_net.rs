//! The simulated network of the fiber backend: exact virtual times, the error kinds a kernel
//! gives, partitions, crashes, back-pressure, and determinism under seeded faults.
#![cfg(feature = "fiber")]

use std::cell::{Cell, RefCell};
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;

use ioswap::sim::{Control, Faults, World};
use ioswap::{Cx, TcpListener, TcpStream};

const PORT: u16 = 7000;

fn any(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

/// Serves echo on `PORT`: each connection's bytes come back until its peer shuts down.
async fn echo_host(cx: Cx, _world: Control) -> ioswap::sim::Outcome {
    let listener = TcpListener::bind(&cx, any(PORT)).await?;
    loop {
        let (conn, _) = listener.accept().await?;
        cx.spawn(move |_| async move {
            let echo = async {
                let mut buf = Vec::with_capacity(4096);
                loop {
                    let (n, back) = conn.read(buf).await;
                    if n? == 0 {
                        return conn.close().await;
                    }
                    let (sent, back) = conn.write_all(back).await;
                    sent?;
                    buf = back;
                }
            };
            let _ = echo.await;
            Ok(())
        })
        .detach();
    }
}

/// Runs `client` against one echo host in a healthy world (1 ms each way), and returns what
/// it returned.
fn with_echo<T: 'static>(
    seed: u64,
    client: impl AsyncFnOnce(Cx, Control) -> io::Result<T> + 'static,
) -> T {
    let out = Rc::new(RefCell::new(None));
    let slot = out.clone();
    World::new(seed)
        .host("echo", echo_host)
        .client("test", move |cx, world| async move {
            let value = client(cx, world).await?;
            *slot.borrow_mut() = Some(value);
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    out.take().unwrap()
}

#[test]
fn a_handshake_and_an_echo_take_exactly_their_round_trips() {
    let (connected_at, echoed_at, back) = with_echo(1, async |cx, world| {
        let conn = TcpStream::connect(&cx, world.addr("echo", PORT)).await?;
        let connected_at = cx.now_ms();
        conn.write_all(b"ping".to_vec()).await.0?;
        let (n, buf) = conn.read(Vec::with_capacity(16)).await;
        n?;
        Ok((connected_at, cx.now_ms(), buf))
    });
    // SYN 1 ms there, SYN-ACK 1 ms back; then the bytes there and back.
    assert_eq!((connected_at, echoed_at), (2, 4));
    assert_eq!(back, b"ping");
}

#[test]
fn a_segment_goes_to_a_waiting_read_whole_or_through_the_buffer() {
    let reads = with_echo(1, async |cx, world| {
        let conn = TcpStream::connect(&cx, world.addr("echo", PORT)).await?;
        let mut reads = Vec::new();
        // A read waiting with room for less than the segment takes what fits; the rest waits
        // in the buffer for the next read, which takes it at once.
        conn.write_all(b"0123456789".to_vec()).await.0?;
        for capacity in [4, 100] {
            let (n, buf) = conn.read(Vec::with_capacity(capacity)).await;
            n?;
            reads.push((buf, cx.now_ms()));
        }
        // One with room for all of it (exactly) takes it whole.
        conn.write_all(b"abcdefgh".to_vec()).await.0?;
        let (n, buf) = conn.read(Vec::with_capacity(8)).await;
        n?;
        reads.push((buf, cx.now_ms()));
        Ok(reads)
    });
    let expected: Vec<(Vec<u8>, u64)> = vec![
        (b"0123".to_vec(), 4),
        (b"456789".to_vec(), 4),
        (b"abcdefgh".to_vec(), 6),
    ];
    assert_eq!(reads, expected);
}

/// What [`short_reads`] saw: the bytes the server's one write sent, and each read as (reader,
/// bytes, time), in the stream's order.
type ShortReads = (usize, Vec<(&'static str, Vec<u8>, u64)>);

/// With every transfer of more than a byte shortened: the server sends one segment of what one
/// write takes of ten bytes at t = 6; two reads wait for it on the client (until t = 15), and
/// from t = 20 a third reads on until all the segment's bytes are in.
fn short_reads(seed: u64) -> ShortReads {
    let mut faults = Faults::none();
    faults.short_transfer_ppm = 1_000_000;
    let out = Rc::new(RefCell::new(None));
    let (slot, sent) = (out.clone(), Rc::new(Cell::new(0)));
    let sent_by_server = sent.clone();
    World::new(seed)
        .faults(faults)
        .host("srv", move |cx, _world| {
            let sent = sent_by_server.clone();
            async move {
                let listener = TcpListener::bind(&cx, any(PORT)).await?;
                let (conn, _) = listener.accept().await?;
                cx.sleep(5).await?;
                let (n, _) = conn.write(b"0123456789".to_vec()).await;
                sent.set(n?);
                cx.sleep(1_000).await?;
                Ok(())
            }
        })
        .client("test", move |cx, world| async move {
            let conn = Rc::new(TcpStream::connect(&cx, world.addr("srv", PORT)).await?);
            let reads = Rc::new(RefCell::new(Vec::new()));
            let waiting: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|name| {
                    let (conn, reads) = (conn.clone(), reads.clone());
                    cx.spawn(move |cx| async move {
                        // (A segment of one byte leaves the second read waiting: it gives up.)
                        let read = |_| async move { Ok(conn.read(Vec::with_capacity(100)).await) };
                        if let Ok((Ok(_), buf)) = ioswap::timeout(&cx, 13, read).await? {
                            reads.borrow_mut().push((name, buf, cx.now_ms()));
                        }
                        Ok(())
                    })
                })
                .collect();
            for task in waiting {
                task.await?;
            }
            cx.sleep(20 - cx.now_ms()).await?;
            let got = |reads: &RefCell<Vec<(_, Vec<u8>, _)>>| {
                reads.borrow().iter().map(|r| r.1.len()).sum::<usize>()
            };
            while got(&reads) < sent.get() {
                let (n, buf) = conn.read(Vec::with_capacity(100)).await;
                if n? == 0 {
                    break; // the server closed: bytes are missing
                }
                reads.borrow_mut().push(("c", buf, cx.now_ms()));
            }
            // In the stream's order (the two waiting reads' tasks run in the seed's order).
            let mut reads = reads.take();
            reads.sort_by_key(|(_, buf, at)| (*at, buf.first().copied()));
            *slot.borrow_mut() = Some((sent.get(), reads));
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    out.take().unwrap()
}

#[test]
fn with_short_transfers_a_waiting_read_takes_part_of_a_segment_and_the_rest_waits() {
    // The draws of seed 7: the write sends 8 bytes; when they arrive (t = 7), the first read
    // waiting takes 3 of them and the second 1 of the 5 left, both at once; the 4 left wait in
    // the buffer for the reads from t = 20, each short again. (The same bytes, times and
    // counts as when every segment went through the buffer first.)
    let (sent, reads) = short_reads(7);
    assert_eq!(sent, 8);
    let expected: Vec<(&str, Vec<u8>, u64)> = vec![
        ("a", b"012".to_vec(), 7),
        ("b", b"3".to_vec(), 7),
        ("c", b"45".to_vec(), 20),
        ("c", b"6".to_vec(), 20),
        ("c", b"7".to_vec(), 20),
    ];
    assert_eq!(reads, expected);
    // Over many seeds: the bytes arrive whole and in order, each read short of what it could
    // take, the first two at the arrival.
    for seed in 0..50 {
        let (sent, reads) = short_reads(seed);
        let bytes: Vec<u8> = reads.iter().flat_map(|r| r.1.clone()).collect();
        assert_eq!(bytes, b"0123456789"[..sent], "seed {seed}");
        assert!((1..10).contains(&sent), "seed {seed}: {sent}");
        let mut left = sent;
        for (reader, buf, at) in &reads {
            assert!(buf.len() < left || left == 1, "seed {seed}: {reads:?}");
            assert_eq!(
                *at,
                if *reader == "c" { 20 } else { 7 },
                "seed {seed}: {reads:?}"
            );
            left -= buf.len();
        }
        // Both waiting reads got bytes unless the segment had only one.
        let waited = reads.iter().filter(|r| r.0 != "c").count();
        assert_eq!(
            waited,
            if sent == 1 { 1 } else { 2 },
            "seed {seed}: {reads:?}"
        );
    }
}

#[test]
fn addresses_are_the_hosts_own() {
    let (local, peer, expected_local, expected_peer) = with_echo(1, async |cx, world| {
        let conn = TcpStream::connect(&cx, world.addr("echo", PORT)).await?;
        Ok((
            conn.local_addr()?,
            conn.peer_addr()?,
            world.ip("test"),
            world.addr("echo", PORT),
        ))
    });
    assert_eq!(local.ip(), expected_local);
    assert_eq!(peer, expected_peer);
    assert!(local.port() >= 32768, "an ephemeral port: {local}");
}

#[test]
fn a_port_nobody_listens_on_refuses_after_one_round_trip() {
    let (kind, at) = with_echo(1, async |cx, world| {
        let err = TcpStream::connect(&cx, world.addr("echo", PORT + 1))
            .await
            .unwrap_err();
        Ok((err.kind(), cx.now_ms()))
    });
    assert_eq!((kind, at), (ErrorKind::ConnectionRefused, 2));
}

#[test]
fn an_address_no_host_has_times_out() {
    let (kind, at) = with_echo(1, async |cx, _world| {
        let nowhere = SocketAddr::from(([10, 9, 9, 9], PORT));
        let err = TcpStream::connect(&cx, nowhere).await.unwrap_err();
        Ok((err.kind(), cx.now_ms()))
    });
    assert_eq!(kind, ErrorKind::TimedOut);
    assert_eq!(at, Faults::none().net.connect_timeout_ms);
}

#[test]
fn binding_is_checked_as_a_kernel_checks_it() {
    let (again, foreign) = with_echo(1, async |cx, world| {
        let first = TcpListener::bind(&cx, any(9000)).await?;
        let again = TcpListener::bind(&cx, any(9000)).await.unwrap_err().kind();
        let foreign = TcpListener::bind(&cx, world.addr("echo", 9001))
            .await
            .unwrap_err()
            .kind();
        drop(first);
        Ok((again, foreign))
    });
    assert_eq!(again, ErrorKind::AddrInUse);
    assert_eq!(foreign, ErrorKind::AddrNotAvailable);
}

#[test]
fn a_shut_down_write_half_reads_as_end_of_stream() {
    let got = with_echo(1, async |cx, world| {
        let conn = TcpStream::connect(&cx, world.addr("echo", PORT)).await?;
        conn.write_all(b"abc".to_vec()).await.0?;
        conn.shutdown(Shutdown::Write).await?;
        let mut got = Vec::new();
        loop {
            let (n, buf) = conn.read(Vec::with_capacity(2)).await;
            if n? == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        // Writing after shutting the write half down is a broken pipe, as on Linux.
        let after = conn.write(b"x".to_vec()).await.0.unwrap_err().kind();
        Ok((got, after))
    });
    assert_eq!(got, (b"abc".to_vec(), ErrorKind::BrokenPipe));
}

#[test]
fn closing_with_unread_data_resets_the_peer() {
    let kinds = with_echo(1, async |cx, _world| {
        let listener = TcpListener::bind(&cx, any(9100)).await?;
        let client = TcpStream::connect(&cx, listener.local_addr()?).await?;
        let (server, _) = listener.accept().await?;
        client.write_all(b"never read".to_vec()).await.0?;
        cx.sleep(1).await?;
        server.close().await?; // unread bytes: a RST, not a FIN
        cx.sleep(1).await?;
        let first = client
            .read(Vec::with_capacity(8))
            .await
            .0
            .unwrap_err()
            .kind();
        let then_write = client.write(b"x".to_vec()).await.0.unwrap_err().kind();
        let then_read = client.read(Vec::with_capacity(8)).await.0?;
        Ok((first, then_write, then_read))
    });
    assert_eq!(
        kinds,
        (ErrorKind::ConnectionReset, ErrorKind::BrokenPipe, 0)
    );
}

#[test]
fn a_receiver_that_does_not_read_holds_the_sender_back() {
    let (accepted, after_read) = with_echo(1, async |cx, _world| {
        let listener = TcpListener::bind(&cx, any(9200)).await?;
        let client = TcpStream::connect(&cx, listener.local_addr()?).await?;
        let (server, _) = listener.accept().await?;
        let sent = Rc::new(Cell::new(0usize));
        let counter = sent.clone();
        let writer = cx.spawn(move |_| async move {
            let chunk = vec![7u8; 64 * 1024];
            for _ in 0..16 {
                let (n, _) = client.write_all(chunk.clone()).await;
                if n.is_err() {
                    break;
                }
                counter.set(counter.get() + chunk.len());
            }
            Ok(client)
        });
        cx.sleep(100).await?;
        let accepted = sent.get();
        let mut read = 0;
        while read < 16 * 64 * 1024 {
            let (n, _) = server.read(Vec::with_capacity(64 * 1024)).await;
            read += n?;
        }
        let _client = writer.await?;
        Ok((accepted, sent.get()))
    });
    // The window is 256 KiB: four 64 KiB writes went through, the fifth waits for the reader.
    assert_eq!(accepted, 4 * 64 * 1024);
    assert_eq!(after_read, 16 * 64 * 1024);
}

/// A client whose path to the server is cut: its bytes stall (retransmitted with a backoff),
/// and arrive once the partition heals, in order.
#[test]
fn a_healed_partition_delivers_what_stalled() {
    let (at, back) = with_echo(1, async |cx, world| {
        let conn = TcpStream::connect(&cx, world.addr("echo", PORT)).await?;
        world.partition("test", "echo");
        conn.write_all(b"late".to_vec()).await.0?;
        cx.sleep(1_000).await?;
        world.heal("test", "echo");
        let (n, buf) = conn.read(Vec::with_capacity(16)).await;
        n?;
        Ok((cx.now_ms(), buf))
    });
    assert_eq!(back, b"late");
    // Sent at 2 ms and lost on arrival at 3 ms; sent again to arrive at 203, 603 and 1403 ms
    // (200, 400, 800 ms backoff): the heal at 1002 ms lets the last one through, and the echo
    // is back 1 ms later.
    assert_eq!(at, 1_404);
}

#[test]
fn a_partition_that_outlasts_the_give_up_time_ends_the_connection() {
    let (kind, at) = with_echo(1, async |cx, world| {
        let conn = TcpStream::connect(&cx, world.addr("echo", PORT)).await?;
        world.partition("test", "echo");
        conn.write_all(b"lost".to_vec()).await.0?;
        let err = conn.read(Vec::with_capacity(16)).await.0.unwrap_err();
        Ok((err.kind(), cx.now_ms()))
    });
    assert_eq!(kind, ErrorKind::TimedOut);
    assert!(at >= Faults::none().net.give_up_ms, "gave up at {at} ms");
}

/// A crashed server's clients see a reset or silence (the seed decides); a restarted server
/// runs its start function again and serves new connections.
#[test]
fn a_crashed_host_restarts_and_serves_again() {
    let boots = Rc::new(Cell::new(0));
    let counted = boots.clone();
    let outcome = Rc::new(RefCell::new(None));
    let slot = outcome.clone();
    World::new(3)
        .host("echo", move |cx, world| {
            counted.set(counted.get() + 1);
            echo_host(cx, world)
        })
        .client("test", move |cx, world| async move {
            let conn = TcpStream::connect(&cx, world.addr("echo", PORT)).await?;
            world.crash("echo");
            conn.write_all(b"to a dead host".to_vec()).await.0?;
            let during = race_read(&cx, Rc::new(conn), 100).await;
            world.restart("echo");
            let conn = TcpStream::connect(&cx, world.addr("echo", PORT)).await?;
            conn.write_all(b"again".to_vec()).await.0?;
            let (n, buf) = conn.read(Vec::with_capacity(16)).await;
            n?;
            *slot.borrow_mut() = Some((during, buf));
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    let (during, again) = outcome.take().unwrap();
    assert_eq!(boots.get(), 2);
    assert_eq!(again, b"again");
    // No echo ever comes from the crashed incarnation.
    assert!(
        matches!(during, Some(Err(ErrorKind::ConnectionReset)) | None),
        "{during:?}"
    );
}

/// A read that gives up after `ms`: `None` if nothing came, else its result's kind.
async fn race_read(cx: &Cx, conn: Rc<TcpStream>, ms: u64) -> Option<Result<usize, ErrorKind>> {
    let read = |_| async move { Ok(conn.read(Vec::with_capacity(64)).await.0) };
    match ioswap::timeout(cx, ms, read).await {
        Ok(Ok(result)) => Some(result.map_err(|err| err.kind())),
        _ => None,
    }
}

/// Many clients against three echo hosts under every default fault: crashes, partitions,
/// loss, short transfers, late cancels. Each client retries on errors; the run's report is a
/// pure function of the seed.
fn stormy(seed: u64) -> Result<ioswap::sim::WorldReport, ioswap::sim::SimError> {
    let mut world = World::new(seed).faults(Faults::default());
    for name in ["a", "b", "c"] {
        world = world.host(name, echo_host);
    }
    for client in 0..4 {
        world = world.client(&format!("client{client}"), move |cx, world| async move {
            let target = ["a", "b", "c"][client % 3];
            let mut echoed = 0;
            while echoed < 40 {
                let world = world.clone();
                let attempt =
                    move |cx: Cx| async move { Ok(echo_once(&cx, world.addr(target, PORT)).await) };
                match ioswap::timeout(&cx, 2_000, attempt).await? {
                    Ok(Ok(())) => {
                        echoed += 1;
                        cx.sleep(250).await?;
                    }
                    Ok(Err(_)) | Err(_) => cx.sleep(100).await?,
                }
            }
            Ok(())
        });
    }
    world.time_limit_ms(3_600_000).run()
}

/// One echo of "hello" on a new connection.
async fn echo_once(cx: &Cx, addr: SocketAddr) -> io::Result<()> {
    let conn = TcpStream::connect(cx, addr).await?;
    conn.write_all(b"hello".to_vec()).await.0?;
    let mut got = Vec::new();
    while got.len() < 5 {
        let (n, buf) = conn.read(Vec::with_capacity(16)).await;
        if n? == 0 {
            return Err(io::Error::from(ErrorKind::UnexpectedEof));
        }
        got.extend_from_slice(&buf);
    }
    assert_eq!(got, b"hello", "an echo is never corrupted");
    Ok(())
}

#[test]
fn the_same_seed_gives_the_same_stormy_run() {
    for seed in [1, 2, 3] {
        let first = stormy(seed).unwrap_or_else(|err| panic!("{err}"));
        let again = stormy(seed).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(first, again, "seed {seed}");
    }
    let hashes: std::collections::BTreeSet<u64> = (1..=5)
        .map(|seed| stormy(seed).unwrap().trace_hash)
        .collect();
    assert_eq!(hashes.len(), 5, "different seeds, different runs");
}

#[test]
fn stormy_runs_inject_faults_and_still_finish() {
    let mut crashes = 0;
    let mut partitions = 0;
    for seed in 0..20 {
        let report = stormy(seed).unwrap_or_else(|err| panic!("{err}"));
        crashes += report.faults.iter().filter(|l| l.contains("crash")).count();
        partitions += report
            .faults
            .iter()
            .filter(|l| l.contains("partition"))
            .count();
    }
    assert!(
        crashes > 0 && partitions > 0,
        "{crashes} crashes, {partitions} partitions"
    );
}

#[test]
fn a_failing_run_names_its_seed_and_how_to_replay_it() {
    let err = World::new(42)
        .host("echo", echo_host)
        .client("test", |cx, world| async move {
            let conn = TcpStream::connect(&cx, world.addr("echo", PORT)).await?;
            world.crash("echo");
            cx.sleep(10).await?;
            Err(format!("invariant broken with {:?}", conn.peer_addr()?).into())
        })
        .run()
        .unwrap_err();
    assert_eq!(err.seed, 42);
    assert_eq!(err.at_ms, 12);
    let text = err.to_string();
    assert!(text.contains("seed 42"), "{text}");
    assert!(text.contains("invariant broken"), "{text}");
    assert!(text.contains("crash echo"), "{text}");
    assert!(text.contains("World::new(42)"), "{text}");
}

#[test]
fn buggify_fires_only_where_a_seed_enables_it() {
    let fired = |seed: u64, faults: Faults| {
        let count = Rc::new(Cell::new(0));
        let counter = count.clone();
        World::new(seed)
            .faults(faults)
            .client("test", move |cx, _| async move {
                for _ in 0..100 {
                    if cx.buggify("site") {
                        counter.set(counter.get() + 1);
                    }
                }
                Ok(())
            })
            .run()
            .unwrap();
        count.get()
    };
    let mut quiet = Faults::default();
    quiet.crash_every_ms = None;
    quiet.partition_every_ms = None;
    let counts: Vec<usize> = (0..16).map(|seed| fired(seed, quiet.clone())).collect();
    assert!(
        counts.contains(&0),
        "some seeds leave the site off: {counts:?}"
    );
    assert!(
        counts.iter().any(|&n| n > 0 && n < 100),
        "an enabled site fires on some of its visits: {counts:?}"
    );
    assert_eq!(
        counts,
        (0..16)
            .map(|seed| fired(seed, quiet.clone()))
            .collect::<Vec<_>>()
    );
    assert!((0..16).all(|seed| fired(seed, Faults::none()) == 0));
}

#[cfg(feature = "blocking")]
#[test]
fn buggify_is_inert_on_real_backends() {
    let real = ioswap::BlockingIo::new()
        .run(|cx| async move { Ok((0..100).any(|_| cx.buggify("site"))) })
        .unwrap();
    assert!(!real);
}

/// A plain fiber run: a socket dropped while its peer reads is closed in that same turn (its
/// FIN is an event the world will deliver), not taken for a deadlock.
#[test]
fn a_dropped_socket_ends_its_peers_read_on_plain_fiber() {
    let got = ioswap::FiberIo::new()
        .run(|cx| async move {
            Ok(async {
                let listener = TcpListener::bind(&cx, any(0)).await?;
                let client = TcpStream::connect(&cx, listener.local_addr()?).await?;
                let (server, _) = listener.accept().await?;
                let closer = cx.spawn(move |cx| async move {
                    cx.sleep(5_000).await?;
                    drop(server);
                    Ok(())
                });
                let (n, _) = client.read(Vec::with_capacity(8)).await;
                closer.await.ok();
                Ok::<_, io::Error>((n?, cx.now_ms()))
            }
            .await)
        })
        .unwrap()
        .unwrap();
    assert_eq!(got, (0, 5_000));
}

#[test]
fn a_run_past_its_time_limit_fails_with_its_seed() {
    let err = World::new(9)
        .client("test", |cx, _| async move {
            cx.sleep(5_000).await?;
            Ok(())
        })
        .time_limit_ms(1_000)
        .run()
        .unwrap_err();
    assert_eq!(err.at_ms, 1_000);
    assert!(err.cause.contains("time limit"), "{err}");
}

#[test]
fn clients_are_never_crashed() {
    World::new(1)
        .host("echo", echo_host)
        .client("test", |cx, world| async move {
            world.crash("test");
            cx.sleep(10).await?;
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
}

/// Runs `client` in a healthy world beside a host named "srv" that runs `server` (its result
/// is ignored: these tests look at what each side saw). Gives what `client` returned.
fn pair<T: 'static>(
    server: impl AsyncFn(Cx, Control) -> io::Result<()> + 'static,
    client: impl AsyncFnOnce(Cx, Control) -> io::Result<T> + 'static,
) -> T {
    let out = Rc::new(RefCell::new(None));
    let slot = out.clone();
    let server = Rc::new(server);
    World::new(1)
        .host("srv", move |cx, world| {
            let server = server.clone();
            async move {
                let _ = server(cx, world).await;
                Ok(())
            }
        })
        .client("test", move |cx, world| async move {
            *slot.borrow_mut() = Some(client(cx, world).await?);
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    out.take().unwrap()
}

/// Accepts one connection on `PORT`.
async fn accept_one(cx: &Cx) -> io::Result<TcpStream> {
    let listener = TcpListener::bind(cx, any(PORT)).await?;
    Ok(listener.accept().await?.0)
}

/// A shared cell a host fills in for the client to read.
type Seen<T> = Rc<RefCell<Option<T>>>;

/// Accepts, then writes into a cut path until the write is given up on (TimedOut), and keeps
/// the socket open, dead, while the client writes again.
async fn gives_up(cx: Cx, _world: Control) -> io::Result<()> {
    let conn = accept_one(&cx).await?;
    cx.sleep(10).await?; // after the partition
    let _ = conn.write_all(b"lost".to_vec()).await;
    let _ = conn.read(Vec::with_capacity(8)).await;
    cx.sleep(10_000_000).await?;
    Ok(())
}

/// Connects to `gives_up`, cuts its path back until it gave up, and heals.
async fn connect_past_a_give_up(cx: &Cx, world: &Control) -> io::Result<TcpStream> {
    let conn = TcpStream::connect(cx, world.addr("srv", PORT)).await?;
    world.partition("srv", "test");
    cx.sleep(Faults::none().net.give_up_ms + 10_000).await?;
    world.heal("srv", "test");
    Ok(conn)
}

#[test]
fn a_socket_that_gave_up_answers_later_data_with_a_reset() {
    let (read, write) = pair(gives_up, async |cx, world| {
        let conn = connect_past_a_give_up(&cx, &world).await?;
        conn.write_all(b"ping".to_vec()).await.0?;
        let read = conn
            .read(Vec::with_capacity(8))
            .await
            .0
            .map_err(|e| e.kind());
        // A big write into a reset connection fails instead of waiting for window room.
        let write = conn
            .write_all(vec![0; 1 << 20])
            .await
            .0
            .map_err(|e| e.kind());
        Ok((read, write))
    });
    assert_eq!(read, Err(ErrorKind::ConnectionReset));
    assert_eq!(write, Err(ErrorKind::BrokenPipe));
}

#[test]
fn a_window_filled_toward_a_dead_socket_is_freed_by_its_reset() {
    let got = pair(gives_up, async |cx, world| {
        let conn = connect_past_a_give_up(&cx, &world).await?;
        // Twice the window: bytes that land on the dead socket free it again (and bring
        // back a RST), so this ends, where it waited forever before.
        let write = conn
            .write_all(vec![0; 512 * 1024])
            .await
            .0
            .map_err(|e| e.kind());
        let read = conn
            .read(Vec::with_capacity(8))
            .await
            .0
            .map_err(|e| e.kind());
        Ok((write, read, cx.now_ms()))
    });
    let (write, read, at) = got;
    assert!(
        matches!(
            write,
            Ok(()) | Err(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
        ),
        "{write:?}"
    );
    assert!(
        read == Err(ErrorKind::ConnectionReset) || (write.is_err() && read == Ok(0)),
        "{read:?}"
    );
    let healed_at = 2 + Faults::none().net.give_up_ms + 10_000;
    assert!(
        at <= healed_at + 10,
        "ended at {at} ms, healed at {healed_at} ms"
    );
}

#[test]
fn a_connect_canceled_mid_handshake_resets_the_accepted_side() {
    let seen: Seen<(Result<usize, ErrorKind>, u64)> = Rc::new(RefCell::new(None));
    let server_seen = seen.clone();
    let got = pair(
        move |cx, _| {
            let seen = server_seen.clone();
            async move {
                let conn = accept_one(&cx).await?;
                let read = conn.read(Vec::with_capacity(8)).await.0;
                *seen.borrow_mut() = Some((read.map_err(|e| e.kind()), cx.now_ms()));
                Ok(())
            }
        },
        async move |cx, world| {
            let addr = world.addr("srv", PORT);
            let connect = move |cx: Cx| async move { Ok(TcpStream::connect(&cx, addr).await) };
            // The SYN arrives at 1 ms, when the caller gives up.
            let connected = matches!(ioswap::timeout(&cx, 1, connect).await?, Ok(Ok(_)));
            assert!(!connected);
            cx.sleep(100).await?;
            Ok(seen.take())
        },
    );
    // The SYN-ACK reaches the abandoned client at 2 ms; its RST is back at 3 ms.
    assert_eq!(got, Some((Err(ErrorKind::ConnectionReset), 3)));
}

#[test]
fn after_the_peer_closed_a_reset_reads_as_the_end_then_a_broken_pipe() {
    let got = pair(
        async |cx, _| {
            let conn = accept_one(&cx).await?;
            conn.close().await
        },
        async |cx, world| {
            let conn = TcpStream::connect(&cx, world.addr("srv", PORT)).await?;
            cx.sleep(10).await?;
            let first = conn.write(b"x".to_vec()).await.0.map_err(|e| e.kind());
            cx.sleep(10).await?; // the closed peer answers with a RST
            let read = conn
                .read(Vec::with_capacity(8))
                .await
                .0
                .map_err(|e| e.kind());
            let second = conn.write(b"y".to_vec()).await.0.map_err(|e| e.kind());
            Ok((first, read, second))
        },
    );
    assert_eq!(got, (Ok(1), Ok(0), Err(ErrorKind::BrokenPipe)));
}

#[test]
fn data_that_arrived_before_a_reset_is_read_first() {
    let got = pair(
        async |cx, _| {
            let conn = accept_one(&cx).await?;
            cx.sleep(5).await?; // the client's request arrives, unread
            conn.write_all(b"resp".to_vec()).await.0?;
            conn.close().await // unread data: a RST, after the response
        },
        async |cx, world| {
            let conn = TcpStream::connect(&cx, world.addr("srv", PORT)).await?;
            conn.write_all(b"req".to_vec()).await.0?;
            cx.sleep(20).await?;
            let (n, response) = conn.read(Vec::with_capacity(16)).await;
            n?;
            let then = conn
                .read(Vec::with_capacity(8))
                .await
                .0
                .map_err(|e| e.kind());
            let last = conn
                .read(Vec::with_capacity(8))
                .await
                .0
                .map_err(|e| e.kind());
            Ok((response, then, last))
        },
    );
    assert_eq!(
        got,
        (b"resp".to_vec(), Err(ErrorKind::ConnectionReset), Ok(0))
    );
}

#[test]
fn a_read_shut_socket_keeps_what_arrives_and_resets_nobody() {
    let seen: Seen<Vec<u8>> = Rc::new(RefCell::new(None));
    let server_seen = seen.clone();
    let (second, read) = pair(
        move |cx, _| {
            let seen = server_seen.clone();
            async move {
                let conn = accept_one(&cx).await?;
                conn.shutdown(Shutdown::Read).await?;
                cx.sleep(10).await?;
                let (n, buf) = conn.read(Vec::with_capacity(16)).await;
                n?;
                *seen.borrow_mut() = Some(buf);
                cx.sleep(1_000).await?;
                Ok(())
            }
        },
        async move |cx, world| {
            let conn = TcpStream::connect(&cx, world.addr("srv", PORT)).await?;
            conn.write_all(b"abcd".to_vec()).await.0?;
            cx.sleep(20).await?;
            let second = conn.write(b"efgh".to_vec()).await.0.map_err(|e| e.kind());
            cx.sleep(20).await?;
            Ok((second, seen.take()))
        },
    );
    assert_eq!(second, Ok(4));
    assert_eq!(read.as_deref(), Some(&b"abcd"[..]));
}

#[test]
fn a_host_that_crashes_itself_stops_at_its_next_suspend_point() {
    let steps = Rc::new(Cell::new(0));
    let counted = steps.clone();
    World::new(1)
        .host("srv", move |cx, world| {
            let steps = counted.clone();
            async move {
                world.crash("srv");
                steps.set(steps.get() + 1);
                let _ = cx.sleep(1).await;
                steps.set(steps.get() + 1);
                Ok(())
            }
        })
        .client("test", |cx, _| async move {
            cx.sleep(100).await?;
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(steps.get(), 1);
}

#[test]
fn a_connect_to_a_host_that_is_down_times_out_at_the_connect_timeout() {
    let (kind, at) = pair(
        async |cx, _| {
            cx.sleep(u64::MAX).await?;
            Ok(())
        },
        async |cx, world| {
            world.crash("srv");
            cx.sleep(1).await?;
            let err = TcpStream::connect(&cx, world.addr("srv", PORT))
                .await
                .unwrap_err();
            Ok((err.kind(), cx.now_ms()))
        },
    );
    assert_eq!(kind, ErrorKind::TimedOut);
    assert_eq!(at, 1 + Faults::none().net.connect_timeout_ms);
}

#[test]
fn fault_ranges_up_to_u64_max_do_not_overflow() {
    let mut faults = Faults::none();
    faults.net.latency_ms = (0, u64::MAX);
    let err = World::new(1)
        .faults(faults)
        .host("echo", echo_host)
        .client("test", |cx, world| async move {
            TcpStream::connect(&cx, world.addr("echo", PORT)).await?;
            Ok(())
        })
        .time_limit_ms(10_000)
        .run()
        .unwrap_err();
    assert!(err.cause.contains("time limit"), "{err}");
}

#[test]
fn a_start_function_that_panics_on_restart_fails_the_run() {
    let boots = Rc::new(Cell::new(0));
    let counted = boots.clone();
    let err = World::new(1)
        .host("srv", move |cx, world| {
            counted.set(counted.get() + 1);
            assert!(counted.get() < 2, "refusing to boot twice");
            echo_host(cx, world)
        })
        .client("test", |cx, world| async move {
            world.crash("srv");
            cx.sleep(10).await?;
            world.restart("srv");
            cx.sleep(10).await?;
            Ok(())
        })
        .run()
        .unwrap_err();
    assert!(err.cause.contains("refusing to boot twice"), "{err}");
    assert_eq!(boots.get(), 2);
}

/// Faults where every op done at once reports up to 3 ms later.
fn late_completions() -> Faults {
    let mut faults = Faults::none();
    faults.late_completion_ppm = 1_000_000;
    faults.late_completion_ms = 3;
    faults
}

#[test]
fn late_completions_arrive_out_of_submission_order() {
    let order = |seed: u64| {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        World::new(seed)
            .faults(late_completions())
            .client("test", move |cx, _| async move {
                let tasks: Vec<_> = (0..8)
                    .map(|i| {
                        let log = log.clone();
                        cx.spawn(move |cx| async move {
                            let done = cx.submit(ioswap::protocol::op::Op::Nop).await;
                            log.borrow_mut().push((i, done.result.ok()));
                            Ok(())
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await?;
                }
                Ok(())
            })
            .run()
            .unwrap_or_else(|err| panic!("{err}"));
        seen.take()
    };
    let runs: Vec<Vec<(usize, Option<usize>)>> = (1..=8).map(order).collect();
    for run in &runs {
        let mut ids: Vec<usize> = run.iter().map(|&(i, _)| i).collect();
        ids.sort();
        assert_eq!(ids, (0..8).collect::<Vec<_>>(), "every op completes once");
        assert!(run.iter().all(|&(_, result)| result == Some(0)));
    }
    let in_order: Vec<(usize, Option<usize>)> = (0..8).map(|i| (i, Some(0))).collect();
    assert!(runs.iter().any(|run| *run != in_order), "{runs:?}");
    assert_eq!(
        runs,
        (1..=8).map(order).collect::<Vec<_>>(),
        "same seed, same order"
    );
}

#[test]
fn a_write_reported_late_is_not_lost_to_a_cancel() {
    let (sent, received) = with_echo_faults(late_completions(), async |cx, world| {
        let conn = Rc::new(TcpStream::connect(&cx, world.addr("echo", PORT)).await?);
        let writer = conn.clone();
        let started = Rc::new(Cell::new(false));
        let submitted = started.clone();
        let task = cx.spawn(move |_| async move {
            submitted.set(true); // the write below is submitted in this same poll
            Ok(writer.write(b"kept".to_vec()).await.0)
        });
        while !started.get() {
            cx.yield_now().await?;
        }
        task.cancel();
        let sent = task.await?;
        let (n, buf) = conn.read(Vec::with_capacity(16)).await;
        n?;
        Ok((sent.map_err(|e| e.kind()), buf))
    });
    // The write was done when it was submitted: the cancel cannot take it back.
    assert_eq!(sent, Ok(4));
    assert_eq!(received, b"kept");
}

/// `with_echo` under `faults`.
fn with_echo_faults<T: 'static>(
    faults: Faults,
    client: impl AsyncFnOnce(Cx, Control) -> io::Result<T> + 'static,
) -> T {
    let out = Rc::new(RefCell::new(None));
    let slot = out.clone();
    World::new(1)
        .faults(faults)
        .host("echo", echo_host)
        .client("test", move |cx, world| async move {
            *slot.borrow_mut() = Some(client(cx, world).await?);
            Ok(())
        })
        .run()
        .unwrap_or_else(|err| panic!("{err}"));
    out.take().unwrap()
}
