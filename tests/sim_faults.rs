//! The simulated network under faults: blocked writers whose peer crashed, error kinds after a
//! peer's FIN or a read shutdown, and byte streams kept intact under every default fault.
#![cfg(feature = "fiber")]

use std::cell::{Cell, RefCell};
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::rc::Rc;

use ioswap::sim::{Control, Faults, World};
use ioswap::{Cx, TcpListener, TcpStream};

const PORT: u16 = 7000;

fn any(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

fn pair_with<T: 'static>(
    seed: u64,
    faults: Faults,
    server: impl AsyncFn(Cx, Control) -> io::Result<()> + 'static,
    client: impl AsyncFnOnce(Cx, Control) -> io::Result<T> + 'static,
) -> T {
    let out = Rc::new(RefCell::new(None));
    let slot = out.clone();
    let server = Rc::new(server);
    World::new(seed)
        .faults(faults)
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

/// Accepts one connection and never reads it.
async fn accept_and_hold(cx: Cx, _world: Control) -> io::Result<()> {
    let listener = TcpListener::bind(&cx, any(PORT)).await?;
    let (_conn, _) = listener.accept().await?;
    cx.sleep(u64::MAX / 2).await?;
    Ok(())
}

/// A writer blocked on a full window whose peer host crashes (its RST lost) ends, as Linux's
/// zero-window probes would find the peer gone: the crash freed the window, and what it then
/// sends is reset by the restarted host or given up on.
#[test]
fn a_writer_blocked_on_a_crashed_peer_whose_reset_was_lost_ends() {
    let got = pair_with(1, Faults::none(), accept_and_hold, async |cx, world| {
        let conn = TcpStream::connect(&cx, world.addr("srv", PORT)).await?;
        let result: Rc<Cell<Option<Result<(), ErrorKind>>>> = Rc::new(Cell::new(None));
        let out = result.clone();
        let writer = cx.spawn(move |_| async move {
            let (r, _) = conn.write_all(vec![1; 512 * 1024]).await;
            out.set(Some(r.map_err(|e| e.kind())));
            Ok(())
        });
        cx.sleep(100).await?; // 256 KiB delivered into srv's buffer: the window is full
        world.partition("srv", "test"); // the crash's RST (if the seed sends one) is lost
        world.crash("srv");
        cx.sleep(10).await?;
        world.heal("srv", "test");
        world.restart("srv");
        cx.sleep(3_600_000).await?; // an hour
        let got = result.get();
        drop(writer);
        Ok(got)
    });
    assert!(
        matches!(
            got,
            Some(
                Ok(())
                    | Err(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::TimedOut)
            )
        ),
        "the write never ended after an hour: {got:?}"
    );
}

/// The same without a partition: a plain crash and restart of the peer, whose RSTs the seed
/// sends or not; the writer ends on every seed.
#[test]
fn a_writer_blocked_on_a_crashed_peer_ends_on_every_seed() {
    let mut stuck = Vec::new();
    for seed in 1..=16u64 {
        let got = pair_with(seed, Faults::none(), accept_and_hold, async |cx, world| {
            let conn = TcpStream::connect(&cx, world.addr("srv", PORT)).await?;
            let result: Rc<Cell<Option<Result<(), ErrorKind>>>> = Rc::new(Cell::new(None));
            let out = result.clone();
            let writer = cx.spawn(move |_| async move {
                let (r, _) = conn.write_all(vec![1; 512 * 1024]).await;
                out.set(Some(r.map_err(|e| e.kind())));
                Ok(())
            });
            cx.sleep(100).await?;
            world.crash("srv");
            cx.sleep(10).await?;
            world.restart("srv");
            cx.sleep(3_600_000).await?;
            let got = result.get();
            drop(writer);
            Ok(got)
        });
        if got.is_none() {
            stuck.push(seed);
        }
    }
    assert!(
        stuck.is_empty(),
        "writer parked for an hour with seeds {stuck:?}"
    );
}

/// Echo server: copies every byte back until EOF.
async fn echo_srv(cx: Cx, _world: Control) -> ioswap::sim::Outcome {
    let listener = TcpListener::bind(&cx, any(PORT)).await?;
    loop {
        let (conn, _) = listener.accept().await?;
        cx.spawn(move |_| async move {
            let echo = async {
                let mut buf = Vec::with_capacity(1500);
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

fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| (i % 251) as u8).collect()
}

/// One connection: a writer task streams `total` patterned bytes and shuts down; the reader
/// checks what comes back is an exact prefix of it.
async fn stream_once(cx: &Cx, addr: SocketAddr, total: usize) -> io::Result<usize> {
    let conn = Rc::new(TcpStream::connect(cx, addr).await?);
    let w = conn.clone();
    let writer = cx.spawn(move |_| async move {
        let mut sent = 0;
        while sent < total {
            let n = (total - sent).min(7_000);
            let (r, _) = w.write(pattern(sent, n)).await;
            match r {
                Ok(k) => sent += k,
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(w.shutdown(std::net::Shutdown::Write).await)
    });
    let mut got = 0;
    loop {
        let (n, buf) = conn.read(Vec::with_capacity(3_000)).await;
        let n = n?;
        if n == 0 {
            break;
        }
        assert_eq!(buf, pattern(got, n), "stream corrupted at byte {got}");
        got += n;
    }
    let _ = writer.await;
    Ok(got)
}

fn stream_world(seed: u64) -> Result<ioswap::sim::WorldReport, ioswap::sim::SimError> {
    let mut faults = Faults::default();
    faults.late_completion_ppm = 300_000;
    faults.late_completion_ms = 5;
    let mut world = World::new(seed).faults(faults);
    for name in ["a", "b"] {
        world = world.host(name, echo_srv);
    }
    for client in 0..3usize {
        world = world.client(&format!("c{client}"), move |cx, world| async move {
            let target = ["a", "b"][client % 2];
            let mut done = 0;
            let mut tries = 0;
            while done < 6 && tries < 200 {
                tries += 1;
                let world = world.clone();
                let total = 1_000 + ((seed_mix(client as u64 * 1000 + tries)) % 600_000) as usize;
                let attempt = move |cx: Cx| async move {
                    Ok(stream_once(&cx, world.addr(target, PORT), total).await)
                };
                match ioswap::timeout(&cx, 20_000, attempt).await? {
                    Ok(Ok(n)) if n == total => done += 1,
                    _ => cx.sleep(50).await?,
                }
            }
            Ok(())
        });
    }
    world.time_limit_ms(6 * 3_600_000).run()
}

/// Streams of up to 600 KB echoed through two hosts under every default fault (crashes,
/// partitions, loss, short transfers, late cancels, 30 % late completions): every byte that
/// comes back is the byte sent there, and each seed's run is the same when run again.
#[test]
fn byte_streams_stay_intact_under_every_default_fault() {
    let mut bad = Vec::new();
    for seed in 0..40 {
        match stream_world(seed) {
            Ok(report) => {
                let again = stream_world(seed).unwrap();
                assert_eq!(
                    report.trace_hash, again.trace_hash,
                    "seed {seed} nondeterministic"
                );
            }
            Err(err) => bad.push(format!("seed {seed}: {err}")),
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n---\n"));
}

fn seed_mix(x: u64) -> u64 {
    let h = (x ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 31)
}

/// A connection given up on (retransmissions timed out) after the peer's FIN arrived (the peer
/// sent its request and shut down its side) reports `TimedOut`, as Linux does for a give-up in
/// any state; `BrokenPipe` is only for a RST after the FIN.
#[test]
fn a_give_up_after_the_peers_fin_is_timed_out() {
    let seen: Rc<RefCell<Option<ErrorKind>>> = Rc::new(RefCell::new(None));
    let server_seen = seen.clone();
    let server = move |cx: Cx, world: Control| {
        let seen = server_seen.clone();
        async move {
            let listener = TcpListener::bind(&cx, any(PORT)).await?;
            let (conn, _) = listener.accept().await?;
            // Read the request to its end (the peer's FIN).
            loop {
                let (n, _) = conn.read(Vec::with_capacity(64)).await;
                if n? == 0 {
                    break;
                }
            }
            world.partition("srv", "test");
            let err = loop {
                match conn.write(b"response".to_vec()).await.0 {
                    Ok(_) => cx.sleep(1_000).await?,
                    Err(err) => break err,
                }
            };
            *seen.borrow_mut() = Some(err.kind());
            Ok(())
        }
    };
    pair_with(1, Faults::none(), server, async |cx, world| {
        let conn = TcpStream::connect(&cx, world.addr("srv", PORT)).await?;
        conn.write_all(b"request".to_vec()).await.0?;
        conn.shutdown(std::net::Shutdown::Write).await?;
        cx.sleep(Faults::none().net.give_up_ms + 60_000).await?;
        Ok(())
    });
    assert_eq!(*seen.borrow(), Some(ErrorKind::TimedOut));
}

/// After `shutdown(Read)`, a RST is reported by the next read, as on Linux (only a received
/// FIN comes before the socket's error).
#[test]
fn a_reset_after_shutdown_read_is_reported_by_the_read() {
    let got = pair_with(
        1,
        Faults::none(),
        accept_and_hold_then_close,
        async |cx, world| {
            let conn = TcpStream::connect(&cx, world.addr("srv", PORT)).await?;
            conn.shutdown(std::net::Shutdown::Read).await?;
            conn.write_all(b"never read".to_vec()).await.0?;
            cx.sleep(100).await?; // the server closes with unread data: a RST comes back
            let read = conn
                .read(Vec::with_capacity(8))
                .await
                .0
                .map_err(|e| e.kind());
            Ok(read)
        },
    );
    assert_eq!(got, Err(ErrorKind::ConnectionReset));
}

async fn accept_and_hold_then_close(cx: Cx, _world: Control) -> io::Result<()> {
    let listener = TcpListener::bind(&cx, any(PORT)).await?;
    let (conn, _) = listener.accept().await?;
    cx.sleep(20).await?;
    drop(conn);
    cx.sleep(u64::MAX / 2).await?;
    Ok(())
}
