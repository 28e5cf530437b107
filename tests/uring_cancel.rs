//! io_uring cancellation and ownership rules (DESIGN.md "io_uring rules"), on the uring backend.
#![cfg(feature = "uring")]
mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_lite::future;
use ioswap::protocol::op::{Handle, Op, Submitted};
use ioswap::{Canceled, TcpListener, TcpStream, UringIo};
use support::within;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A connected loopback pair, both ends served by `cx`'s backend: (client, server).
async fn connected_pair(cx: &ioswap::Cx) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(cx, loopback()).await.unwrap();
    let client = TcpStream::connect(cx, listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// A connected pair: the ioswap side (accepted in the run) and a plain std peer.
fn std_peer_of(listener_addr: SocketAddr) -> StdStream {
    let peer = StdStream::connect(listener_addr).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    peer
}

/// Expects the peer to see the connection closed (EOF, or a reset), not a timeout.
fn assert_peer_sees_close(peer: &mut StdStream) {
    let mut byte = [0u8; 1];
    match peer.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
}

/// A read canceled while nothing arrives ends with a canceled error and gives its buffer back.
#[test]
fn canceled_read_returns_canceled_and_its_buffer() {
    let io = UringIo::new().unwrap();
    let (result, capacity) = io
        .run(|cx| async move {
            let (_client, server) = connected_pair(&cx).await;
            let server = Rc::new(server);
            let reader = cx.spawn(move |_| async move {
                let (result, buf) = server.read(Vec::with_capacity(1024)).await;
                Ok((result, buf.capacity()))
            });
            cx.sleep(20).await?; // the read is in the kernel, waiting
            reader.cancel();
            reader.await
        })
        .unwrap();
    assert!(Canceled::is_canceled(&result.unwrap_err()));
    assert_eq!(capacity, 1024);
    assert_eq!(io.ops_owned(), 0);
}

/// Bytes that reached a read before its cancel are never lost: the canceled task gets them
/// (completion wins), or — if the cancel won — they are still in the socket.
#[test]
fn bytes_sent_before_a_cancel_are_not_lost() {
    let io = UringIo::new().unwrap();
    let std_listener = StdListener::bind(loopback()).unwrap();
    let mut peer = std_peer_of(std_listener.local_addr().unwrap());
    let (server, _) = std_listener.accept().unwrap();
    let (first, second_suspend, rest) = io
        .run(move |cx| async move {
            let server = Rc::new(TcpStream::from_std(&cx, server));
            let reader = cx.spawn({
                let server = server.clone();
                move |cx| async move {
                    let (result, buf) = server.read(Vec::with_capacity(64)).await;
                    let next = cx.yield_now().await; // Canceled arrives here at the latest
                    Ok((result.map(|n| buf[..n].to_vec()), next))
                }
            });
            cx.sleep(20).await?;
            peer.write_all(b"abc").unwrap();
            // No suspend between the write and the cancel: the loop has not reaped yet.
            std::thread::sleep(Duration::from_millis(5));
            reader.cancel();
            let (first, next) = reader
                .await
                .unwrap_or((Err(Canceled.into()), Err(Canceled)));
            drop(peer); // EOF after the three bytes
            let mut rest = Vec::new();
            loop {
                let (n, buf) = server.read(Vec::with_capacity(64)).await;
                if n.unwrap() == 0 {
                    break;
                }
                rest.extend_from_slice(&buf);
            }
            Ok((first, next, rest))
        })
        .unwrap();
    match first {
        Ok(got) => {
            assert_eq!(got, b"abc");
            assert!(rest.is_empty());
            assert_eq!(
                second_suspend,
                Err(Canceled),
                "Canceled comes at the next suspend"
            );
        }
        Err(e) => {
            assert!(Canceled::is_canceled(&e));
            assert_eq!(
                rest, b"abc",
                "the cancel won, so the bytes stayed in the socket"
            );
        }
    }
    assert_eq!(io.ops_owned(), 0);
}

/// An accept whose future was dropped, completing anyway, has its connection closed — never
/// leaked, never handed to nobody while the peer waits.
#[test]
fn a_late_accept_of_a_dropped_future_is_closed() {
    let io = UringIo::new().unwrap();
    let std_listener = StdListener::bind(loopback()).unwrap();
    let addr = std_listener.local_addr().unwrap();
    // The connection is already in the listen backlog: the accept completes as soon as the
    // kernel sees it, in the same submission as the cancel that follows it.
    let mut peer = std_peer_of(addr);
    let owned_after = io
        .run({
            let io = io.clone();
            move |cx| async move {
                let listener = TcpListener::from_std(&cx, std_listener);
                let mut accept = Box::pin(listener.accept());
                assert!(future::poll_once(&mut accept).await.is_none(), "in flight");
                drop(accept);
                cx.sleep(20).await?;
                Ok(io.ops_owned())
            }
        })
        .unwrap();
    assert_eq!(
        owned_after, 0,
        "the discarded accept was freed at its completion"
    );
    assert_peer_sees_close(&mut peer);
}

/// `close` on a socket whose read future was dropped mid-flight cancels that read, waits for
/// its final completion, then closes.
#[test]
fn close_waits_for_a_dropped_in_flight_read() {
    let io = UringIo::new().unwrap();
    let std_listener = StdListener::bind(loopback()).unwrap();
    let mut peer = std_peer_of(std_listener.local_addr().unwrap());
    let (server, _) = std_listener.accept().unwrap();
    let closed = io
        .run(move |cx| async move {
            let server = TcpStream::from_std(&cx, server);
            let mut read = Box::pin(server.read(Vec::with_capacity(64)));
            assert!(future::poll_once(&mut read).await.is_none(), "in flight");
            drop(read);
            Ok(server.close().await)
        })
        .unwrap();
    closed.unwrap();
    assert_peer_sees_close(&mut peer);
    assert_eq!(io.ops_owned(), 0);
}

/// Dropping the backend with an op still in the kernel cancels it and waits for its final
/// completion before anything is freed; the op comes back, canceled, through its slot.
#[test]
fn dropping_the_backend_drains_ops_in_flight() {
    let std_listener = StdListener::bind(loopback()).unwrap();
    let mut peer = std_peer_of(std_listener.local_addr().unwrap());
    let (server, _) = std_listener.accept().unwrap();
    let io = UringIo::new().unwrap();
    let protocol = io.io();
    let submitted = protocol.submit(Op::Recv {
        stream: Handle::new(server),
        buf: Vec::with_capacity(4096),
    });
    let Submitted::InFlight { slot, .. } = submitted else {
        panic!("a recv on an idle socket is in flight, got {submitted:?}");
    };
    assert_eq!(io.ops_owned(), 1);
    drop(protocol);
    drop(io); // drains: cancel, wait for the CQE, then hand the op back through its slot
    let done = slot.take().expect("the drain delivers the op's completion");
    assert!(Canceled::is_canceled(done.result.as_ref().unwrap_err()));
    assert_eq!(done.op.into_buf().capacity(), 4096, "the buffer comes back");
    // The op held the last handle on the socket: dropping it closed the socket.
    assert_peer_sees_close(&mut peer);
}

/// Many more ops at once than the ring has entries all complete: a full submission queue is
/// handed to the kernel and refilled, and completions beyond the completion queue's size wait on
/// the kernel's overflow list. Neither is an error.
#[test]
fn more_ops_than_ring_entries_all_complete() {
    let path = std::env::temp_dir().join(format!("ioswap-backpressure-{}", std::process::id()));
    let data: Vec<u8> = (0..64 * 512u32).map(|i| (i % 249) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let io = UringIo::with_entries(4, 8).unwrap();
    io.set_cached_reads(false); // every read goes through the ring
    let p = path.clone();
    let reads = io
        .run(move |cx| async move {
            let file = Rc::new(ioswap::File::open(&cx, &p).await.unwrap());
            let readers: Vec<_> = (0..64u64)
                .map(|i| {
                    let file = file.clone();
                    cx.spawn(move |_| async move {
                        let (n, buf) = file.read_at(Vec::with_capacity(512), i * 512).await;
                        Ok((i, n.unwrap(), buf))
                    })
                })
                .collect();
            let mut reads = Vec::new();
            for reader in readers {
                reads.push(reader.await?);
            }
            Ok(reads)
        })
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(reads.len(), 64);
    for (i, n, buf) in reads {
        let at = i as usize * 512;
        assert_eq!(n, 512);
        assert!(buf == data[at..at + 512], "read {i} got the wrong bytes");
    }
    assert_eq!(io.ops_owned(), 0);
    assert_eq!(io.stats().reads_from_cache, 0);
    assert!(io.stats().submitted >= 64, "{:?}", io.stats());
}

/// A waker woken on another thread ends the loop's sleep in the kernel (eventfd).
#[test]
fn a_waker_woken_on_another_thread_wakes_the_loop() {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let waited = UringIo::new()
            .unwrap()
            .run(|cx| async move {
                let shared: Arc<Mutex<(bool, Option<Waker>)>> = Arc::default();
                let remote = shared.clone();
                let start = cx.now_ms();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(30));
                    let mut state = remote.lock().unwrap();
                    state.0 = true;
                    if let Some(waker) = state.1.take() {
                        waker.wake();
                    }
                });
                future::poll_fn(|task_cx| {
                    let mut state = shared.lock().unwrap();
                    if state.0 {
                        Poll::Ready(())
                    } else {
                        state.1 = Some(task_cx.waker().clone());
                        Poll::Pending
                    }
                })
                .await;
                Ok(cx.now_ms() - start)
            })
            .unwrap();
        done_tx.send(waited).unwrap();
    });
    let waited = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the loop never woke up");
    assert!(waited >= 30, "woke after {waited} ms");
}

/// A sleep is bounded by its deadline even while reads wait in the kernel forever.
#[test]
fn timers_fire_while_reads_wait_in_the_kernel() {
    let io = UringIo::new().unwrap();
    let (slept, reader_result) = io
        .run(|cx| async move {
            let (_client, server) = connected_pair(&cx).await;
            let reader =
                cx.spawn(move |_| async move { Ok(server.read(Vec::with_capacity(8)).await.0) });
            let start = cx.now_ms();
            cx.sleep(30).await?;
            let slept = cx.now_ms() - start;
            reader.cancel();
            Ok((slept, reader.await?))
        })
        .unwrap();
    assert!((30..5_000).contains(&slept), "slept {slept} ms");
    assert!(Canceled::is_canceled(&reader_result.unwrap_err()));
}

/// When main returns, a leftover task waiting on a read that would never complete is canceled
/// at once: its read ends canceled, its shielded cleanup runs, and `run` returns.
#[test]
fn run_cancels_a_leftover_task_waiting_on_io() {
    let log = Rc::new(std::cell::RefCell::new(Vec::new()));
    let l = log.clone();
    UringIo::new()
        .unwrap()
        .run(move |cx| async move {
            let (client, server) = connected_pair(&cx).await;
            cx.spawn(move |cx| async move {
                let (result, _) = server.read(Vec::with_capacity(8)).await;
                let canceled = result.is_err_and(|e| Canceled::is_canceled(&e));
                l.borrow_mut().push(format!("read canceled: {canceled}"));
                cx.shield(async { drop(client.close().await) }).await;
                l.borrow_mut().push("cleaned up".to_string());
                Ok(())
            })
            .detach();
            cx.sleep(10).await?; // the read is waiting in the kernel
            Ok(())
        })
        .unwrap();
    assert_eq!(*log.borrow(), ["read canceled: true", "cleaned up"]);
}

/// I/O completes while other tasks keep the loop busy (never idle): completions are reaped on
/// every turn, not only when the loop sleeps.
#[test]
fn io_completes_while_the_loop_is_busy() {
    let std_listener = StdListener::bind(loopback()).unwrap();
    let mut peer = std_peer_of(std_listener.local_addr().unwrap());
    let (server, _) = std_listener.accept().unwrap();
    let spins = UringIo::new()
        .unwrap()
        .run(move |cx| async move {
            let server = TcpStream::from_std(&cx, server);
            let reader =
                cx.spawn(move |_| async move { Ok(server.read(Vec::with_capacity(8)).await.0) });
            cx.sleep(5).await?; // the read waits in the kernel (poll-armed)
                                // A plain write, not an op: only the busy loop below can deliver the completion.
            peer.write_all(b"ping").unwrap();
            let started = std::time::Instant::now();
            let mut spins = 0u64;
            while !reader.is_finished() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the read never completed"
                );
                cx.yield_now().await?; // always runnable: the loop never sleeps
                spins += 1;
            }
            assert_eq!(reader.await?.unwrap(), 4);
            Ok(spins)
        })
        .unwrap();
    assert!(spins < 1_000_000, "took {spins} busy turns");
}

/// A std-connected pair: (plain std peer, the socket the backend will serve).
fn std_pair() -> (StdStream, StdStream) {
    let listener = StdListener::bind(loopback()).unwrap();
    let peer = std_peer_of(listener.local_addr().unwrap());
    let (server, _) = listener.accept().unwrap();
    (peer, server)
}

/// `close` after writes through `AsyncWrite` (`compat()`) finishes, and the peer gets the bytes.
#[test]
fn stream_close_after_trait_writes_finishes() {
    use futures_lite::io::AsyncWriteExt;
    let (mut peer, server) = std_pair();
    let io = within(10, "close after a trait write", move || {
        let io = UringIo::new().unwrap();
        io.run(move |cx| async move {
            let mut stream = TcpStream::from_std(&cx, server).compat();
            AsyncWriteExt::write_all(&mut stream, b"hello")
                .await
                .unwrap();
            stream.close().await.unwrap();
            Ok(())
        })
        .unwrap();
        io.ops_owned()
    });
    assert_eq!(io, 0);
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello");
}

/// A file's `close` after writes through `AsyncWrite` (`compat()`) finishes, with the bytes on disk.
#[test]
fn file_close_after_trait_writes_finishes() {
    use futures_lite::io::AsyncWriteExt;
    let path = std::env::temp_dir().join(format!("ioswap-close-trait-{}", std::process::id()));
    let p = path.clone();
    within(10, "File::close after a trait write", move || {
        UringIo::new()
            .unwrap()
            .run(move |cx| async move {
                let mut file = ioswap::File::create(&cx, &p).await.unwrap().compat();
                AsyncWriteExt::write_all(&mut file, b"hello").await.unwrap();
                file.close().await.unwrap();
                Ok(())
            })
            .unwrap()
    });
    let on_disk = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(on_disk, b"hello");
}

/// A trait read left pending (its future dropped) does not keep `close` waiting: the read is
/// canceled and the socket closed.
#[test]
fn stream_close_after_a_pending_trait_read_finishes() {
    use futures_lite::io::AsyncReadExt;
    let (mut peer, server) = std_pair();
    let owned = within(10, "close after a pending trait read", move || {
        let io = UringIo::new().unwrap();
        io.run(move |cx| async move {
            let mut stream = TcpStream::from_std(&cx, server).compat();
            let mut buf = [0u8; 16];
            let first = future::poll_once(AsyncReadExt::read(&mut stream, &mut buf)).await;
            assert!(first.is_none(), "nothing was sent: the read waits");
            stream.close().await.unwrap();
            Ok(())
        })
        .unwrap();
        io.ops_owned()
    });
    assert_eq!(owned, 0);
    assert_peer_sees_close(&mut peer);
}

/// A close waiting for an op on its descriptor finishes once that op has completed (its
/// completion, still holding a handle, is with its live future: the descriptor closes when that
/// last handle drops).
#[test]
fn close_waiting_on_an_op_finishes_when_the_op_completes() {
    let path = std::env::temp_dir().join(format!("ioswap-close-taken-{}", std::process::id()));
    std::fs::write(&path, b"data").unwrap();
    let p = path.clone();
    let (read, closed) = within(
        10,
        "close after the read it waited for was taken",
        move || {
            let io = UringIo::new().unwrap();
            io.set_cached_reads(false); // the read goes to the ring, and the close waits for it
            io.run(move |cx| async move {
                let file = Handle::new(std::fs::File::open(&p).unwrap());
                let read = cx.submit(Op::ReadAt {
                    file: file.clone(),
                    buf: Vec::with_capacity(4),
                    offset: 0,
                });
                let close = cx.submit(Op::Close { handle: Some(file) });
                let (read, close) = future::zip(read, close).await;
                Ok((
                    read.result.map_err(|e| e.to_string()),
                    close.result.map_err(|e| e.to_string()),
                ))
            })
            .unwrap()
        },
    );
    std::fs::remove_file(&path).unwrap();
    // The read either completed (4 bytes) or was canceled by the close; both end.
    assert!(matches!(read, Ok(4)) || read.is_err(), "{read:?}");
    assert_eq!(closed, Ok(0));
}

/// A close whose task is canceled while reads that never complete fill a small ring still
/// closes its descriptor: the peer sees the connection end. (A close is never taken back.)
#[test]
fn a_canceled_close_behind_idle_reads_still_closes() {
    let (peers, servers): (Vec<_>, Vec<_>) = (0..3).map(|_| std_pair()).unzip();
    let (mut victim_peer, victim) = std_pair();
    let io = UringIo::with_entries(4, 8).unwrap();
    io.run(move |cx| async move {
        // Reads that never complete.
        let streams: Vec<_> = servers
            .into_iter()
            .map(|s| Rc::new(TcpStream::from_std(&cx, s)))
            .collect();
        let readers: Vec<_> = streams
            .iter()
            .map(|stream| {
                let stream = stream.clone();
                cx.spawn(move |_| async move {
                    let _ = stream.read(Vec::with_capacity(8)).await;
                    Ok(())
                })
            })
            .collect();
        cx.sleep(20).await?;
        let victim = TcpStream::from_std(&cx, victim);
        let closer = cx.spawn(move |_| async move { Ok(victim.close().await) });
        cx.yield_now().await?; // the close is submitted, its completion not yet reaped
        closer.cancel();
        for reader in readers {
            reader.cancel();
            let _ = reader.await;
        }
        let _ = closer.await;
        Ok(())
    })
    .unwrap();
    drop(peers);
    assert_peer_sees_close(&mut victim_peer);
    assert_eq!(io.ops_owned(), 0);
}

/// A task looping on already-due timers (`sleep(0)`) never lets the loop sleep, yet another
/// task's read still reaches the kernel and completes.
#[test]
fn io_completes_while_a_task_loops_on_due_timers() {
    let (mut peer, server) = std_pair();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        peer.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_secs(10));
    });
    let read = within(
        10,
        "a read while another task loops on sleep(0)",
        move || {
            UringIo::new()
                .unwrap()
                .run(move |cx| async move {
                    let done = Rc::new(std::cell::Cell::new(false));
                    let stop = done.clone();
                    let spinner = cx.spawn(move |cx| async move {
                        while !stop.get() {
                            cx.sleep(0).await?;
                        }
                        Ok(())
                    });
                    let server = TcpStream::from_std(&cx, server);
                    cx.sleep(10).await?;
                    let (n, buf) = server.read(Vec::with_capacity(8)).await;
                    done.set(true);
                    spinner.await?;
                    Ok((n.unwrap(), buf))
                })
                .unwrap()
        },
    );
    assert_eq!(read, (1, b"x".to_vec()));
}

/// On a one-entry ring (a read, its cancel request and the wakeup read already overflow its
/// completion queue) a canceled read ends.
#[test]
fn a_one_entry_ring_still_cancels_a_read() {
    let (_peer, server) = std_pair();
    let canceled = within(10, "a canceled read on with_entries(1, 1)", move || {
        UringIo::with_entries(1, 1)
            .unwrap()
            .run(move |cx| async move {
                let server = Rc::new(TcpStream::from_std(&cx, server));
                let reader = cx.spawn(move |_| async move {
                    let (result, _) = server.read(Vec::with_capacity(8)).await;
                    Ok(result.is_err_and(|e| Canceled::is_canceled(&e)))
                });
                cx.sleep(10).await?;
                reader.cancel();
                Ok(reader.await)
            })
            .unwrap()
    });
    // Either the read was canceled, or the task observed its cancel at the join.
    assert!(matches!(canceled, Ok(true) | Err(Canceled)), "{canceled:?}");
}

/// Reads parked on idle connections never keep new work waiting: on a tiny ring, with many more
/// idle reads than its completion queue has entries, a new connection is still accepted and
/// echoed; and canceling every idle read at once (twice as many completions as the queue holds)
/// ends with every op accounted for.
#[test]
fn idle_reads_never_keep_a_new_connection_waiting() {
    const IDLE: usize = 64;
    let (idle_peers, idle_servers): (Vec<_>, Vec<_>) = (0..IDLE).map(|_| std_pair()).unzip();
    let listener = StdListener::bind(loopback()).unwrap();
    let client = std::thread::spawn({
        let addr = listener.local_addr().unwrap();
        move || {
            let mut stream = std_peer_of(addr);
            stream.write_all(b"ping")?;
            let mut echo = [0u8; 4];
            stream.read_exact(&mut echo).map(|()| echo)
        }
    });
    let (echoed, canceled, owned) = within(20, "an echo behind idle reads", move || {
        let io = UringIo::with_entries(4, 4).unwrap();
        let (echoed, canceled) = io
            .run(move |cx| async move {
                let idle: Vec<_> = idle_servers
                    .into_iter()
                    .map(|server| {
                        let server = TcpStream::from_std(&cx, server);
                        cx.spawn(
                            move |_| async move { Ok(server.read(Vec::with_capacity(8)).await.0) },
                        )
                    })
                    .collect();
                cx.sleep(20).await?; // every idle read is parked in the kernel
                let listener = ioswap::TcpListener::from_std(&cx, listener);
                let (stream, _) = listener.accept().await.unwrap();
                let (n, buf) = stream.read(Vec::with_capacity(4)).await;
                assert_eq!(n.unwrap(), 4);
                stream.write_all(buf.clone()).await.0.unwrap();
                for reader in &idle {
                    reader.cancel();
                }
                let mut canceled = 0;
                for reader in idle {
                    canceled += usize::from(match reader.await {
                        Err(Canceled) => true,
                        Ok(read) => read.is_err_and(|e| Canceled::is_canceled(&e)),
                    });
                }
                Ok((buf, canceled))
            })
            .unwrap();
        (echoed, canceled, io.ops_owned())
    });
    assert_eq!(echoed, b"ping");
    assert_eq!(canceled, IDLE, "every idle read ended canceled");
    assert_eq!(owned, 0);
    assert_eq!(client.join().unwrap().unwrap(), *b"ping");
    drop(idle_peers);
}

/// A waker woken on another thread still ends the loop's sleep when a tiny ring holds many more
/// idle reads than completion entries: the wakeup read is always in flight.
#[test]
fn a_cross_thread_wake_ends_a_wait_behind_idle_reads() {
    const IDLE: usize = 16;
    let (idle_peers, idle_servers): (Vec<_>, Vec<_>) = (0..IDLE).map(|_| std_pair()).unzip();
    let woke = within(20, "a cross-thread wake behind idle reads", move || {
        UringIo::with_entries(4, 4)
            .unwrap()
            .run(move |cx| async move {
                let idle: Vec<_> = idle_servers
                    .into_iter()
                    .map(|server| {
                        let server = TcpStream::from_std(&cx, server);
                        cx.spawn(
                            move |_| async move { Ok(server.read(Vec::with_capacity(8)).await.0) },
                        )
                    })
                    .collect();
                cx.sleep(10).await?;
                let shared: Arc<Mutex<(bool, Option<Waker>)>> = Arc::default();
                let remote = shared.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    let mut state = remote.lock().unwrap();
                    state.0 = true;
                    if let Some(waker) = state.1.take() {
                        waker.wake();
                    }
                });
                future::poll_fn(|task_cx| {
                    let mut state = shared.lock().unwrap();
                    if state.0 {
                        Poll::Ready(())
                    } else {
                        state.1 = Some(task_cx.waker().clone());
                        Poll::Pending
                    }
                })
                .await;
                drop(idle); // canceled and drained at the end of the run
                Ok(true)
            })
            .unwrap()
    });
    assert!(woke);
    drop(idle_peers);
}
