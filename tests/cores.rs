//! Thread-per-core: cross-core spawn, join, cancel, channels, shutdown and panics, on every
//! backend that runs threads (uring, poll) and on fiber, which simulates the cores on one
//! thread. Blocking refuses, explicitly (each behaviour checks the typed refusal there).
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioswap::channel::{shared, RecvError, SendError};
use ioswap::cores::{CoreId, Cores, CoresError};
use ioswap::net::SocketOptions;
use ioswap::{Backend, Canceled, Cx, TcpStream};

/// Cores of `backend`, or `None` after checking that a backend that cannot run on several cores
/// refuses with the typed error.
fn cores(backend: Backend, count: usize) -> Option<Cores> {
    match backend {
        Backend::Blocking => {
            let refused = Cores::new()
                .count(count)
                .backend(backend)
                .run(|_cx, _core| async { Ok(()) });
            assert_eq!(refused, Err(CoresError::Unsupported(backend)));
            None
        }
        _ => Some(Cores::new().count(count).backend(backend)),
    }
}

/// Only catches a hang: these runs take milliseconds.
const HANG: Duration = Duration::from_secs(60);

/// Waits (yielding to the core's loop) until `flag` is set by another core.
async fn until(cx: &Cx, flag: &AtomicBool) -> Result<(), Canceled> {
    let start = Instant::now();
    while !flag.load(Ordering::SeqCst) {
        assert!(start.elapsed() < HANG, "the flag was never set");
        cx.sleep(1).await?;
    }
    Ok(())
}

/// The thread core `i` runs on: its own, or (fiber, simulated cores) the caller's.
fn thread_of(backend: Backend, i: usize) -> Option<String> {
    match backend {
        Backend::Fiber => std::thread::current().name().map(String::from),
        _ => Some(format!("ioswap-core-{i}")),
    }
}

fn every_core_runs_its_main_on_its_own_thread(backend: Backend) {
    let Some(cores) = cores(backend, 4) else {
        return;
    };
    let values = cores
        .run(|cx, core| async move {
            cx.sleep(1).await?;
            let thread = std::thread::current().name().map(String::from);
            Ok((core.id().index(), core.count(), thread, cx.backend()))
        })
        .unwrap();
    let expected: Vec<_> = (0..4)
        .map(|i| (i, 4, thread_of(backend, i), backend.name()))
        .collect();
    assert_eq!(values, expected);
}

fn a_task_spawned_on_another_core_runs_there_and_is_joined(backend: Backend) {
    let Some(cores) = cores(backend, 3) else {
        return;
    };
    let values = cores
        .run(|_cx, core| async move {
            let next = CoreId::new((core.id().index() + 1) % core.count());
            let task = core.spawn_on(next, move |cx| async move {
                cx.sleep(2).await?;
                Ok(std::thread::current().name().map(String::from))
            });
            task.await
        })
        .unwrap();
    let expected: Vec<_> = [1, 2, 0].iter().map(|i| thread_of(backend, *i)).collect();
    assert_eq!(values, expected);
}

fn a_remote_cancel_is_delivered_at_the_remote_suspend_point(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let started = Arc::new(AtomicBool::new(false));
    let after_suspend = Arc::new(AtomicBool::new(false));
    let flags = (started.clone(), after_suspend.clone());
    let values = cores
        .run(move |cx, core| {
            let (started, after_suspend) = flags.clone();
            async move {
                if core.id().index() != 0 {
                    return Ok(None);
                }
                let task = core.spawn_on(CoreId::new(1), {
                    let started = started.clone();
                    move |cx| async move {
                        started.store(true, Ordering::SeqCst);
                        cx.sleep(3_600_000).await?;
                        after_suspend.store(true, Ordering::SeqCst);
                        Ok(())
                    }
                });
                until(&cx, &started).await?;
                task.cancel();
                Ok(Some(task.await))
            }
        })
        .unwrap();
    assert_eq!(values, vec![Some(Err(Canceled)), None]);
    assert!(!after_suspend.load(Ordering::SeqCst));
}

fn dropping_a_remote_handle_cancels_and_detach_lets_it_run(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let values = cores
        .run(|cx, core| async move {
            if core.id().index() != 0 {
                return Ok(());
            }
            let started = Arc::new(AtomicBool::new(false));
            let canceled = Arc::new(AtomicBool::new(false));
            let task = core.spawn_on(CoreId::new(1), {
                let (started, canceled) = (started.clone(), canceled.clone());
                move |cx| async move {
                    started.store(true, Ordering::SeqCst);
                    let slept = cx.sleep(3_600_000).await;
                    canceled.store(slept == Err(Canceled), Ordering::SeqCst);
                    slept
                }
            });
            until(&cx, &started).await?;
            drop(task);
            // Observed while this main still runs: the drop's cancel, not the run's shutdown.
            until(&cx, &canceled).await?;
            let (done_tx, done_rx) = shared::bounded::<&str>(1);
            core.spawn_on(CoreId::new(1), move |cx| async move {
                cx.sleep(20).await?;
                done_tx.send(&cx, "detached").await.ok();
                Ok(())
            })
            .detach();
            // Canceled by the handle's drop, the task would drop its sender unsent: `Closed`.
            assert_eq!(done_rx.recv(&cx).await, Ok("detached"));
            Ok(())
        })
        .unwrap();
    assert_eq!(values, vec![(), ()]);
}

fn a_joiner_canceled_while_awaiting_a_remote_task_gets_canceled(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let values = cores
        .run(|cx, core| async move {
            if core.id().index() != 0 {
                return Ok(None);
            }
            let started = Arc::new(AtomicBool::new(false));
            let after_join = Arc::new(AtomicBool::new(false));
            let joiner = cx.spawn({
                let core = core.clone();
                let (started, after_join) = (started.clone(), after_join.clone());
                move |_cx| async move {
                    let remote = core.spawn_on(CoreId::new(1), move |cx| async move {
                        started.store(true, Ordering::SeqCst);
                        cx.sleep(3_600_000).await?;
                        Ok(())
                    });
                    remote.await?;
                    after_join.store(true, Ordering::SeqCst);
                    Ok(())
                }
            });
            // The remote task runs, so the joiner is waiting on it.
            until(&cx, &started).await?;
            joiner.cancel();
            let joined = joiner.await;
            assert!(!after_join.load(Ordering::SeqCst));
            Ok(Some(joined))
        })
        .unwrap();
    assert_eq!(values, vec![Some(Err(Canceled)), None]);
}

fn a_panic_in_a_remote_task_reaches_its_joiner(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let outcome = cores.run(|_cx, core| async move {
        if core.id().index() != 0 {
            return Ok(());
        }
        let task = core.spawn_on(CoreId::new(1), |_cx| async move {
            if true {
                panic!("remote boom");
            }
            Ok(())
        });
        task.await
    });
    assert_eq!(
        outcome,
        Err(CoresError::Panicked {
            core: CoreId::new(0),
            message: "remote boom".into()
        })
    );
}

fn a_panic_on_one_core_cancels_the_others_and_names_the_core(backend: Backend) {
    let Some(cores) = cores(backend, 3) else {
        return;
    };
    let canceled = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let outcome = cores.run({
        let canceled = canceled.clone();
        move |cx, core| {
            let canceled = canceled.clone();
            async move {
                if core.id().index() == 2 {
                    cx.sleep(10).await?;
                    panic!("core two gives up");
                }
                // Far longer than the test: only the cancel ends it.
                let slept = cx.sleep(3_600_000).await;
                if slept == Err(Canceled) {
                    canceled.fetch_add(1, Ordering::SeqCst);
                }
                slept
            }
        }
    });
    assert_eq!(
        outcome,
        Err(CoresError::Panicked {
            core: CoreId::new(2),
            message: "core two gives up".into()
        })
    );
    assert_eq!(canceled.load(Ordering::SeqCst), 2);
    assert!(start.elapsed() < HANG);
}

fn a_main_that_returns_canceled_fails_the_run_with_its_core(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let outcome = cores.run(|cx, core| async move {
        if core.id().index() == 1 {
            return Err::<(), _>(Canceled);
        }
        cx.sleep(3_600_000).await
    });
    assert_eq!(
        outcome,
        Err(CoresError::Canceled {
            core: CoreId::new(1)
        })
    );
}

fn cores_serve_spawns_until_every_main_has_returned(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    // Core 1's main returns at once; core 0 spawns on it afterwards, and is still served.
    let returned = Arc::new(AtomicBool::new(false));
    let values = cores
        .run(move |cx, core| {
            let returned = returned.clone();
            async move {
                if core.id().index() == 1 {
                    returned.store(true, Ordering::SeqCst);
                    return Ok(0);
                }
                until(&cx, &returned).await?;
                core.spawn_on(CoreId::new(1), |cx| async move {
                    cx.sleep(1).await?;
                    Ok(7)
                })
                .await
            }
        })
        .unwrap();
    assert_eq!(values, vec![7, 0]);
}

fn a_task_left_on_a_core_at_shutdown_is_canceled_and_its_joiner_told(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let values = cores
        .run(move |_cx, core| {
            let tx = tx.clone();
            async move {
                if core.id().index() == 0 {
                    let task = core.spawn_on(CoreId::new(1), |cx| async move {
                        cx.sleep(3_600_000).await?;
                        Ok(())
                    });
                    tx.send(task).unwrap();
                }
                Ok(())
            }
        })
        .unwrap();
    assert_eq!(values, vec![(), ()]);
    let task = rx.recv().unwrap();
    assert!(task.is_finished());
    assert_eq!(futures_lite::future::block_on(task), Err(Canceled));
}

fn a_shared_channel_carries_values_between_cores_in_order(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let (tx, rx) = shared::bounded::<u32>(4);
    // The closure is kept until every core is done: the sender is taken out of it, so that
    // dropping it closes the channel.
    let tx = std::sync::Mutex::new(Some(tx));
    let values = cores
        .run(move |cx, _core| {
            let tx = tx.lock().unwrap().take();
            let rx = rx.clone();
            async move {
                if let Some(tx) = tx {
                    for n in 0..1_000 {
                        tx.send(&cx, n).await.map_err(|_| Canceled)?;
                    }
                    return Ok(Vec::new());
                }
                let mut got = Vec::new();
                loop {
                    match rx.recv(&cx).await {
                        Ok(n) => got.push(n),
                        Err(RecvError::Closed) => break Ok(got),
                        Err(RecvError::Canceled) => break Err(Canceled),
                    }
                }
            }
        })
        .unwrap();
    let received: Vec<u32> = values.concat();
    assert_eq!(received, (0..1_000).collect::<Vec<_>>());
    assert!(
        values.iter().any(Vec::is_empty),
        "one core sent, one received"
    );
}

fn a_canceled_shared_send_gets_its_value_back_and_a_canceled_recv_takes_nothing(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let values = cores
        .run(|cx, core| async move {
            if core.id().index() != 0 {
                return Ok(None);
            }
            let (tx, rx) = shared::bounded::<u32>(1);
            tx.try_send(1).unwrap();
            let keep_open = tx.clone();
            // The buffer is full: the send on core 1 waits (or is refused, if the cancel comes
            // first); either way its value comes back.
            let started = Arc::new(AtomicBool::new(false));
            let sender = core.spawn_on(CoreId::new(1), {
                let started = started.clone();
                move |cx| async move {
                    started.store(true, Ordering::SeqCst);
                    Ok(tx.send(&cx, 2).await)
                }
            });
            // Once started (a task canceled before it starts never runs, and joins `Canceled`).
            until(&cx, &started).await?;
            sender.cancel();
            assert_eq!(sender.await?, Err(SendError::Canceled(2)));
            assert_eq!(rx.try_recv(), Ok(1));
            // The buffer is empty: the receive on core 1 waits and is canceled, taking nothing.
            let started = Arc::new(AtomicBool::new(false));
            let receiver = core.spawn_on(CoreId::new(1), {
                let (rx, started) = (rx.clone(), started.clone());
                move |cx| async move {
                    started.store(true, Ordering::SeqCst);
                    Ok(rx.recv(&cx).await)
                }
            });
            until(&cx, &started).await?;
            receiver.cancel();
            assert_eq!(receiver.await?, Err(RecvError::Canceled));
            let left = rx.try_recv();
            drop(keep_open);
            Ok(Some(left))
        })
        .unwrap();
    assert_eq!(
        values,
        vec![Some(Err(ioswap::channel::TryRecvError::Empty)), None]
    );
}

/// Many cores send to each other through shared channels, spawn on each other and cancel each
/// other's tasks, all at once: every message sent is received exactly once, every task joined
/// is accounted for.
fn a_storm_of_cross_core_messages_spawns_and_cancels_loses_nothing(backend: Backend) {
    const CORES: usize = 4;
    const MESSAGES: u64 = 5_000;
    const SPAWNS: u64 = 300;
    let Some(cores) = cores(backend, CORES) else {
        return;
    };
    let (tx, rx) = shared::bounded::<(usize, u64)>(16);
    let senders = std::sync::Mutex::new(vec![tx; CORES]);
    let started = Instant::now();
    let values = cores
        .run(move |cx, core| {
            let tx = senders.lock().unwrap().pop().expect("a sender per core");
            let rx = rx.clone();
            async move {
                let me = core.id().index();
                // Everyone's receiver drains the shared channel until every sender is gone.
                let receiving = cx.spawn(move |cx| async move {
                    let mut got = vec![Vec::new(); CORES];
                    loop {
                        match rx.recv(&cx).await {
                            Ok((from, n)) => got[from].push(n),
                            Err(RecvError::Closed) => break Ok(got),
                            Err(RecvError::Canceled) => break Err(Canceled),
                        }
                    }
                });
                let sending = cx.spawn(move |cx| async move {
                    for n in 0..MESSAGES {
                        tx.send(&cx, (me, n)).await.map_err(|_| Canceled)?;
                    }
                    Ok(())
                });
                // Spawns on every other core: odd ones canceled at once, even ones joined.
                let mut joined = 0u64;
                let mut canceled = 0u64;
                for i in 0..SPAWNS {
                    let on = CoreId::new((me + 1 + i as usize) % CORES);
                    let task = core.spawn_on(on, move |cx| async move {
                        cx.yield_now().await?;
                        Ok(i)
                    });
                    if i % 2 == 1 {
                        task.cancel();
                        match task.await {
                            Ok(got) => {
                                assert_eq!(got, i);
                                joined += 1
                            }
                            Err(Canceled) => canceled += 1,
                        }
                    } else {
                        assert_eq!(task.await?, i);
                        joined += 1;
                    }
                }
                sending.await?;
                Ok((receiving.await?, joined, canceled))
            }
        })
        .unwrap();
    assert!(started.elapsed() < HANG);
    let mut per_sender: Vec<Vec<u64>> = vec![Vec::new(); CORES];
    for (got, joined, canceled) in &values {
        assert_eq!(joined + canceled, SPAWNS);
        assert!(*joined >= SPAWNS / 2);
        for (from, values) in got.iter().enumerate() {
            // Each receiver sees each sender's values in order.
            assert!(values.windows(2).all(|w| w[0] < w[1]));
            per_sender[from].extend(values);
        }
    }
    for values in &mut per_sender {
        values.sort_unstable();
        assert_eq!(
            *values,
            (0..MESSAGES).collect::<Vec<_>>(),
            "lost or doubled"
        );
    }
}

fn each_core_accepts_on_its_own_reuse_port_listener(backend: Backend) {
    const CONNECTIONS: usize = 64;
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let (stop_tx, stop_rx) = shared::bounded::<()>(1);
    let stop_tx = std::sync::Mutex::new(Some(stop_tx));
    let values = cores
        .run(move |cx, core| {
            let stop_tx = (core.id().index() == 0)
                .then(|| stop_tx.lock().unwrap().take())
                .flatten();
            let stop_rx = stop_rx.clone();
            async move {
                let any_port = "127.0.0.1:0".parse().unwrap();
                let listener = core
                    .bind_reuse_port(&cx, any_port, SocketOptions::default())
                    .await
                    .expect("a reuse-port listener");
                let addr = listener.local_addr().unwrap();
                let served = std::rc::Rc::new(std::cell::Cell::new(0));
                let server = cx.spawn({
                    let served = served.clone();
                    move |cx| async move {
                        while let Ok((stream, _)) = listener.accept().await {
                            served.set(served.get() + 1);
                            cx.spawn(move |_cx| async move {
                                let (n, byte) = stream.read(Vec::with_capacity(1)).await;
                                if n.is_ok_and(|n| n == 1) {
                                    let _ = stream.write_all(byte).await;
                                }
                                Ok(())
                            })
                            .detach();
                        }
                        Ok(())
                    }
                });
                if let Some(stop_tx) = stop_tx {
                    for i in 0..CONNECTIONS {
                        let stream = TcpStream::connect(&cx, addr).await.unwrap();
                        let (sent, _) = stream.write_all(vec![i as u8]).await;
                        sent.unwrap();
                        let (n, back) = stream.read(Vec::with_capacity(1)).await;
                        assert_eq!((n.unwrap(), back), (1, vec![i as u8]));
                    }
                    drop(stop_tx);
                }
                assert_eq!(stop_rx.recv(&cx).await, Err(RecvError::Closed));
                drop(server);
                Ok((addr, served.get()))
            }
        })
        .unwrap();
    assert_eq!(values[0].0, values[1].0, "one address for every core");
    assert_eq!(values[0].1 + values[1].1, CONNECTIONS);
}

fn a_remote_task_canceled_before_it_starts_never_runs(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let ran = Arc::new(AtomicBool::new(false));
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(Some(go_rx));
    let go_tx = std::sync::Mutex::new(go_tx);
    let values = cores
        .run({
            let ran = ran.clone();
            move |_cx, core| {
                let ran = ran.clone();
                let go_tx = go_tx.lock().unwrap().clone();
                let go_rx = (core.id().index() == 1)
                    .then(|| go_rx.lock().unwrap().take())
                    .flatten();
                async move {
                    if let Some(go_rx) = go_rx {
                        // Core 1's loop is held here, so it reads its inbox only after core 0
                        // has spawned and canceled. (Simulated cores share one thread: core 0
                        // spawns and cancels in one poll, before core 1's inbox can run.)
                        if backend != Backend::Fiber {
                            go_rx.recv_timeout(HANG).expect("core 0 says go");
                        }
                        return Ok(None);
                    }
                    let task = core.spawn_on(CoreId::new(1), move |_cx| {
                        ran.store(true, Ordering::SeqCst);
                        async { Ok(()) }
                    });
                    task.cancel();
                    let _ = go_tx.send(());
                    Ok(Some(task.await))
                }
            }
        })
        .unwrap();
    assert_eq!(values, vec![Some(Err(Canceled)), None]);
    assert!(
        !ran.load(Ordering::SeqCst),
        "a task canceled before it started ran"
    );
}

/// Producers on one core and consumers on another, both canceled at random moments, over a
/// small shared channel: every value is either sent (and then received exactly once) or given
/// back to its producer, never both, never neither.
fn a_shared_channel_loses_nothing_under_random_cancels(backend: Backend) {
    const ROUNDS: u64 = 30;
    const VALUES: u64 = 100;
    let Some(cores) = cores(backend, 3) else {
        return;
    };
    let (tx, rx) = shared::bounded::<u64>(4);
    let leftover = rx.clone();
    let values = cores
        .run(move |cx, core| {
            let (tx, rx) = (tx.clone(), rx.clone());
            async move {
                let me = core.id().index() as u64;
                let next = CoreId::new((core.id().index() + 1) % core.count());
                let (mut sent, mut returned, mut received) = (Vec::new(), Vec::new(), Vec::new());
                for round in 0..ROUNDS {
                    let base = (me * ROUNDS + round) * VALUES;
                    let producer = core.spawn_on(next, {
                        let tx = tx.clone();
                        move |cx| async move {
                            let (mut sent, mut returned) = (Vec::new(), Vec::new());
                            for v in base..base + VALUES {
                                match tx.send(&cx, v).await {
                                    Ok(()) => sent.push(v),
                                    Err(error) => returned.push(error.into_inner()),
                                }
                            }
                            Ok((sent, returned))
                        }
                    });
                    let consumer = cx.spawn({
                        let rx = rx.clone();
                        move |cx| async move {
                            let mut got = Vec::new();
                            while let Ok(v) = rx.recv(&cx).await {
                                got.push(v);
                            }
                            Ok(got)
                        }
                    });
                    cx.sleep(cx.random_below(3)).await?;
                    producer.cancel();
                    if cx.random_below(2) == 0 {
                        consumer.cancel();
                    }
                    match producer.await {
                        Ok((s, r)) => {
                            sent.extend(s);
                            returned.extend(r);
                        }
                        // Canceled before it started: nothing was offered.
                        Err(Canceled) => returned.extend(base..base + VALUES),
                    }
                    consumer.cancel();
                    received.extend(consumer.await?);
                }
                Ok((sent, returned, received))
            }
        })
        .unwrap();
    let (mut sent, mut returned, mut received) = (Vec::new(), Vec::new(), Vec::new());
    for (s, r, got) in values {
        sent.extend(s);
        returned.extend(r);
        received.extend(got);
    }
    while let Ok(v) = leftover.try_recv() {
        received.push(v);
    }
    let mut offered: Vec<u64> = sent.iter().chain(&returned).copied().collect();
    offered.sort_unstable();
    assert_eq!(
        offered,
        (0..3 * ROUNDS * VALUES).collect::<Vec<_>>(),
        "offered once each"
    );
    sent.sort_unstable();
    received.sort_unstable();
    assert_eq!(received, sent, "every value sent is received exactly once");
}

/// Completion wins (DESIGN.md, binding rule 3): a joiner that reaches a *finished* remote task
/// with a cancel pending gets its value, as it would from a local `Task`.
fn a_finished_remote_task_is_joined_with_its_value_even_by_a_canceled_joiner(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let values = cores
        .run(|cx, core| async move {
            if core.id().index() != 0 {
                return Ok(None);
            }
            let remote = core.spawn_on(CoreId::new(1), |_cx| async move { Ok(7u32) });
            while !remote.is_finished() {
                cx.sleep(1).await?;
            }
            // Canceled at another suspend point, the joiner then joins the finished task.
            let joiner = cx.spawn(move |cx| async move {
                let _ = cx.sleep(3_600_000).await;
                Ok(remote.await)
            });
            cx.sleep(5).await?;
            joiner.cancel();
            Ok(Some(joiner.await?))
        })
        .unwrap();
    assert_eq!(values, vec![Some(Ok(7)), None]);
    // The same with a local task: the rule the remote join follows.
    let local = backend
        .run(|cx| async move {
            let local = cx.spawn(|_| async move { Ok(7u32) });
            while !local.is_finished() {
                cx.sleep(1).await?;
            }
            let joiner = cx.spawn(move |cx| async move {
                let _ = cx.sleep(3_600_000).await;
                Ok(local.await)
            });
            cx.sleep(5).await?;
            joiner.cancel();
            joiner.await
        })
        .unwrap();
    assert_eq!(local, Ok(7));
}

/// Cancel racing completion, many rounds: a joiner canceled after its remote task finished
/// never loses the value (a canceled join is only allowed while the task is still running).
fn a_remote_join_canceled_as_the_task_completes_never_drops_a_finished_value(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let cores = cores.seed(3);
    let lost = support::within(30, "remote join cancel vs completion", move || {
        let lost = Arc::new(AtomicUsize::new(0));
        let counted = lost.clone();
        cores
            .run(move |cx, core| {
                let lost = counted.clone();
                async move {
                    if core.id().index() != 0 {
                        return Ok(());
                    }
                    for round in 0..300u32 {
                        let remote =
                            core.spawn_on(CoreId::new(1), move |_cx| async move { Ok(round) });
                        let remote = Arc::new(std::sync::Mutex::new(Some(remote)));
                        let joiner = cx.spawn({
                            let remote = remote.clone();
                            move |cx| async move {
                                let _ = cx.sleep(u64::from(round % 3)).await;
                                let remote = remote.lock().unwrap().take().unwrap();
                                Ok(remote.await)
                            }
                        });
                        cx.sleep(u64::from(round % 2)).await?;
                        // Whether the value was there when the cancel was asked for.
                        let finished_before_cancel = remote
                            .lock()
                            .unwrap()
                            .as_ref()
                            .is_some_and(|r| r.is_finished());
                        joiner.cancel();
                        // `Err`: the joiner was canceled before it took the handle.
                        let got = joiner.await.unwrap_or(Ok(u32::MAX));
                        if got.is_err() && finished_before_cancel {
                            lost.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(())
                }
            })
            .unwrap();
        lost.load(Ordering::SeqCst)
    });
    assert_eq!(
        lost, 0,
        "finished values dropped by a joiner's cancel (of 300)"
    );
}

/// A panic in the `spawn_on` closure itself, before it returns its future, is the task's panic:
/// it resumes in the joiner.
fn a_panic_in_the_spawn_on_closure_reaches_its_joiner(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let outcome = cores.run(|_cx, core| async move {
        if core.id().index() != 0 {
            return Ok(());
        }
        let task = core.spawn_on(CoreId::new(1), |_cx| {
            if true {
                panic!("remote closure boom");
            }
            async move { Ok(()) }
        });
        task.await
    });
    assert_eq!(
        outcome,
        Err(CoresError::Panicked {
            core: CoreId::new(0),
            message: "remote closure boom".into()
        })
    );
}

/// A canceled join leaves the handle as it was: joined again (in a shield), it gives the value,
/// as a local `Task` does.
fn a_remote_task_can_be_joined_again_after_a_canceled_join(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let values = cores
        .run(|cx, core| async move {
            if core.id().index() != 0 {
                return Ok(None);
            }
            let joiner = cx.spawn(move |cx| async move {
                let mut remote = core.spawn_on(CoreId::new(1), |cx| async move {
                    cx.sleep(10).await?;
                    Ok(7u32)
                });
                cx.current_task().unwrap().cancel();
                let first = (&mut remote).await;
                let second = cx.shield(&mut remote).await;
                Ok((first, second))
            });
            Ok(Some(joiner.await?))
        })
        .unwrap();
    assert_eq!(values, vec![Some((Err(Canceled), Ok(7))), None]);
    // The same with a local task.
    let local = backend
        .run(|cx| async move {
            let joiner = cx.spawn(|cx| async move {
                let mut local = cx.spawn(|cx| async move {
                    cx.sleep(10).await?;
                    Ok(7u32)
                });
                cx.current_task().unwrap().cancel();
                let first = (&mut local).await;
                let second = cx.shield(&mut local).await;
                Ok((first, second))
            });
            joiner.await
        })
        .unwrap();
    assert_eq!(local, (Err(Canceled), Ok(7)));
}

/// The CPUs the calling thread may run on, as the kernel reports them.
fn cpus_allowed() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    list.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![part.parse().unwrap()],
        })
        .collect()
}

/// Core `i` is pinned to the `i`-th CPU of the process's affinity mask, wrapping, never outside
/// it (the OS lets a thread widen its mask). A process confined to one CPU (`taskset -c N`) is
/// played by a thread that narrows its own mask before the run: its cores inherit that mask.
/// Fiber simulates the cores on the calling thread and pins nothing.
fn pinning_stays_inside_the_process_affinity_mask(backend: Backend) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Some(cores) = cores(backend, 3) else {
        return;
    };
    let masks = |cores: Cores| {
        cores
            .run(|cx, _core| async move {
                cx.sleep(1).await?;
                Ok(cpus_allowed())
            })
            .unwrap()
    };
    let (allowed, unconfined, confined, confined_to) = support::within(30, "pinning", move || {
        let allowed = cpus_allowed();
        let unconfined = masks(cores.clone());
        let confined_to = *allowed.last().unwrap();
        io_core::pin_current_thread(confined_to).unwrap();
        (allowed, unconfined, masks(cores), confined_to)
    });
    assert_eq!(confined, vec![vec![confined_to]; 3], "{backend:?}");
    for (i, mask) in unconfined.iter().enumerate() {
        let want = match backend {
            Backend::Fiber => allowed.clone(),
            _ => vec![allowed[i % allowed.len()]],
        };
        // A refusal (a cgroup) leaves a core with the whole mask.
        assert!(
            *mask == want || *mask == allowed,
            "{backend:?}: core {i} may run on {mask:?}, the process on {allowed:?}"
        );
    }
}

/// Port 0 is chosen per bind, not remembered for the run: after the first listeners are closed,
/// binding port 0 again gets a fresh free port, even when something else took the old one
/// meanwhile (on real sockets, a std listener squats it; fiber's simulated network hands out
/// ports in order, so a fresh one differs from the old).
fn a_second_port_zero_bind_after_the_first_listeners_closed_gets_a_free_port(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let closed = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(AtomicBool::new(false));
    let squatter = Arc::new(std::sync::Mutex::new(None::<std::net::TcpListener>));
    let values = cores
        .run(move |cx, core| {
            let (closed, taken, squatter) = (closed.clone(), taken.clone(), squatter.clone());
            async move {
                let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
                let first = core
                    .bind_reuse_port(&cx, addr, SocketOptions::default())
                    .await
                    .unwrap();
                let port = first.local_addr().unwrap().port();
                drop(first);
                closed.fetch_add(1, Ordering::SeqCst);
                if core.id().index() == 0 {
                    while closed.load(Ordering::SeqCst) < 2 {
                        cx.sleep(1).await?;
                    }
                    if backend != Backend::Fiber {
                        // Another program takes the port that is free again.
                        let held = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
                        *squatter.lock().unwrap() = Some(held);
                    }
                    taken.store(true, Ordering::SeqCst);
                } else {
                    until(&cx, &taken).await?;
                }
                let second = core
                    .bind_reuse_port(&cx, addr, SocketOptions::default())
                    .await
                    .map(|l| l.local_addr().unwrap().port());
                Ok(second
                    .map(|second| (second != port, second))
                    .map_err(|e| e.to_string()))
            }
        })
        .unwrap();
    let (fresh, ports): (Vec<bool>, Vec<u16>) = values.into_iter().map(|v| v.unwrap()).unzip();
    assert_eq!(fresh, vec![true, true], "{backend:?}");
    assert_eq!(
        ports[0], ports[1],
        "{backend:?}: the second bind is one port for all cores"
    );
}

/// Many rounds of a plain thread spawning on a core while the run ends: every handle resolves
/// (joined `Ok` or `Err(Canceled)`), none hangs. Fiber's simulated cores run on the calling
/// thread, so a plain thread's spawns there are only served while the run lasts: the same.
fn spawning_on_a_stopping_core_always_resolves(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let cores = cores.pin(false);
    let rounds = if backend == Backend::Fiber { 20 } else { 100 };
    for round in 0..rounds {
        let cores = cores.clone();
        let handles = support::within(30, "spawning on a stopping core", move || {
            let (tx, rx) = std::sync::mpsc::channel();
            let values = cores
                .run(move |_cx, core| {
                    let tx = tx.clone();
                    async move {
                        if core.id().index() == 1 {
                            std::thread::spawn(move || {
                                for _ in 0..50 {
                                    let task =
                                        core.spawn_on(CoreId::new(0), |_cx| async { Ok(1u8) });
                                    let _ = tx.send(task);
                                }
                            });
                        }
                        Ok(round)
                    }
                })
                .unwrap();
            assert_eq!(values, vec![round, round]);
            let mut resolved = 0;
            while let Ok(task) = rx.recv_timeout(Duration::from_secs(5)) {
                let _ = futures_lite::future::block_on(task);
                resolved += 1;
            }
            resolved
        });
        assert_eq!(handles, 50, "round {round}");
    }
}

/// A core that panics while another core's *thread* is blocked (std, not cancelable) on a task
/// of the panicking core: that core's run ending cancels the task, so the block ends. Fiber's
/// simulated cores share one thread, which a blocked core would stop: no such case there.
fn a_panicking_core_releases_a_thread_blocked_on_its_remote_task(backend: Backend) {
    if backend != Backend::Fiber {
        a_panicking_core_releases_a_join(backend, Join::BlockThread);
    }
}

/// The same with the joiner in a shield (the run's cancel of its main is not delivered there):
/// the remote task's cancel at its core's end still ends the join.
fn a_panicking_core_releases_a_shielded_remote_join(backend: Backend) {
    a_panicking_core_releases_a_join(backend, Join::Shielded);
}

/// How core 0 waits for its task on core 1, which panics.
#[derive(Clone, Copy)]
enum Join {
    /// Blocks core 0's thread (std): only core 1's run ending can end it.
    BlockThread,
    /// Awaited in a shield.
    Shielded,
}

fn a_panicking_core_releases_a_join(backend: Backend, join: Join) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let outcome = support::within(30, "a panicking core releases a join", move || {
        cores.pin(false).run(move |cx, core| async move {
            if core.id().index() == 1 {
                cx.sleep(20).await?;
                panic!("core one gives up");
            }
            let remote = core.spawn_on(CoreId::new(1), |cx| async move {
                cx.sleep(3_600_000).await?;
                Ok(())
            });
            let joined = match join {
                Join::BlockThread => futures_lite::future::block_on(remote),
                Join::Shielded => cx.shield(remote).await,
            };
            assert_eq!(joined, Err(Canceled));
            Ok(())
        })
    });
    assert_eq!(
        outcome,
        Err(CoresError::Panicked {
            core: CoreId::new(1),
            message: "core one gives up".into()
        })
    );
}

/// Port 0 on an address no core can bind: every core gets the error, none waits forever for a
/// port that will never be published. (Fiber's simulated host has every address: not a case.)
fn a_port_zero_bind_that_fails_everywhere_never_hangs(backend: Backend) {
    let Some(cores) = cores(backend, 4) else {
        return;
    };
    if backend == Backend::Fiber {
        return;
    }
    let out = support::within(30, "a port-0 bind failing everywhere", move || {
        cores.pin(false).run(|cx, core| async move {
            // TEST-NET-3: not a local address.
            let addr = "203.0.113.7:0".parse().unwrap();
            let got = core
                .bind_reuse_port(&cx, addr, SocketOptions::default())
                .await;
            Ok(got.is_err())
        })
    });
    assert_eq!(out, Ok(vec![true; 4]));
}

/// More cores than CPUs: the extra ones share CPUs (pinning wraps), the run completes.
fn more_cores_than_cpus_run(backend: Backend) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()) * 2 + 1;
    let Some(cores) = cores(backend, n) else {
        return;
    };
    let out = support::within(30, "more cores than CPUs", move || {
        cores.run(|cx, core| async move {
            cx.sleep(1).await?;
            Ok(core.id().index())
        })
    });
    assert_eq!(out, Ok((0..n).collect::<Vec<_>>()));
}

/// Lost inbox wake-ups: core 1 goes idle between every spawn (each is joined before the next),
/// spawned on from a core and from a plain thread at once. A lost wake is a hang. (Fiber: the
/// plain thread would block the simulation's one thread; the core's half runs alone.)
fn an_idle_core_is_woken_by_every_spawn(backend: Backend) {
    const N: u64 = 2_000;
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let from_thread = backend != Backend::Fiber;
    let out = support::within(30, "inbox wakes", move || {
        let (done_tx, done_rx) = shared::bounded::<()>(1);
        let done_tx = Arc::new(std::sync::Mutex::new(Some(done_tx)));
        cores.pin(false).run(move |cx, core| {
            let (done_rx, done_tx) = (done_rx.clone(), done_tx.clone());
            async move {
                if core.id().index() == 1 {
                    // An idle core: its main waits for the end.
                    let _ = done_rx.recv(&cx).await;
                    return Ok(0u64);
                }
                let other = core.clone();
                let thread = from_thread.then(|| {
                    std::thread::spawn(move || {
                        (0..N)
                            .map(|i| {
                                let task =
                                    other.spawn_on(CoreId::new(1), move |_cx| async move { Ok(i) });
                                futures_lite::future::block_on(task).unwrap()
                            })
                            .sum::<u64>()
                    })
                });
                let mut sum = 0;
                for i in 0..N {
                    sum += core
                        .spawn_on(CoreId::new(1), move |_cx| async move { Ok(i) })
                        .await?;
                }
                if let Some(thread) = thread {
                    while !thread.is_finished() {
                        cx.sleep(1).await?;
                    }
                    sum += thread.join().unwrap();
                }
                drop(done_tx.lock().unwrap().take());
                Ok(sum)
            }
        })
    });
    let one = (0..N).sum::<u64>();
    let want = if from_thread { 2 * one } else { one };
    assert_eq!(out, Ok(vec![want, 0]));
}

/// A shared channel's woken receiver that is canceled (or dropped, a lost select) before it
/// takes passes its wake on. Core 1 has a steady receiver and a stream of short-lived receivers
/// canceled or dropped; core 0 sends one value at a time and waits for its ack. A lost wake is a
/// hang.
fn a_shared_wake_is_never_lost_on_a_canceled_receiver(backend: Backend) {
    const N: u32 = 1_000;
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let out = support::within(30, "shared wake", move || {
        let (tx, rx) = shared::bounded::<u32>(1);
        let (ack_tx, ack_rx) = shared::unbounded::<u32>();
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        cores.seed(9).pin(false).run(move |cx, core| {
            let (rx, ack_tx, ack_rx) = (rx.clone(), ack_tx.clone(), ack_rx.clone());
            let tx = tx.lock().unwrap().clone();
            async move {
                if core.id().index() == 0 {
                    let tx = tx.unwrap();
                    for i in 0..N {
                        tx.send(&cx, i).await.map_err(|_| Canceled)?;
                        assert_eq!(ack_rx.recv(&cx).await, Ok(i));
                    }
                    tx.close();
                    return Ok(N);
                }
                drop(tx);
                let steady = cx.spawn({
                    let (rx, ack_tx) = (rx.clone(), ack_tx.clone());
                    move |cx| async move {
                        while let Ok(v) = rx.recv(&cx).await {
                            let _ = ack_tx.try_send(v);
                        }
                        Ok(())
                    }
                });
                for round in 0u64.. {
                    let flaky = cx.spawn({
                        let (rx, ack_tx) = (rx.clone(), ack_tx.clone());
                        move |cx| async move {
                            if round % 2 == 0 {
                                // Dropped while waiting (a lost select).
                                let got = futures_lite::future::or(
                                    async { Some(rx.recv(&cx).await) },
                                    async {
                                        let _ = cx.sleep(0).await;
                                        None
                                    },
                                )
                                .await;
                                if let Some(Ok(v)) = got {
                                    let _ = ack_tx.try_send(v);
                                }
                                return Ok(false);
                            }
                            match rx.recv(&cx).await {
                                Ok(v) => {
                                    let _ = ack_tx.try_send(v);
                                    Ok(false)
                                }
                                Err(RecvError::Closed) => Ok(true),
                                Err(_) => Ok(false),
                            }
                        }
                    });
                    let _ = cx.sleep(round % 2).await;
                    flaky.cancel();
                    if let Ok(true) = flaky.await {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(v) => {
                            let _ = ack_tx.try_send(v);
                        }
                        Err(ioswap::channel::TryRecvError::Closed) => break,
                        Err(_) => {}
                    }
                }
                let _ = steady.await;
                Ok(0)
            }
        })
    });
    assert_eq!(out, Ok(vec![N, 0]));
}

/// A remote cancel racing the task's start and completion: a body that completed (its side
/// effect is visible) joins `Ok`; one that did not joins `Err(Canceled)`.
fn a_remote_cancel_racing_start_and_completion_joins_what_the_body_did(backend: Backend) {
    let Some(cores) = cores(backend, 2) else {
        return;
    };
    let bad = support::within(30, "remote cancel vs start", move || {
        cores.seed(5).pin(false).run(|cx, core| async move {
            if core.id().index() != 0 {
                return Ok(0);
            }
            let mut bad = 0;
            for i in 0..1_000u32 {
                let done = Arc::new(AtomicBool::new(false));
                let task = core.spawn_on(CoreId::new(1), {
                    let done = done.clone();
                    move |cx| async move {
                        if i % 3 == 0 {
                            cx.yield_now().await?;
                        }
                        done.store(true, Ordering::SeqCst);
                        Ok(i)
                    }
                });
                if i % 5 == 0 {
                    cx.yield_now().await?;
                }
                task.cancel();
                let got = task.await;
                if done.load(Ordering::SeqCst) != got.is_ok() {
                    bad += 1;
                }
            }
            Ok(bad)
        })
    });
    assert_eq!(bad, Ok(vec![0, 0]));
}

conformance!(
    every_core_runs_its_main_on_its_own_thread,
    a_task_spawned_on_another_core_runs_there_and_is_joined,
    a_remote_cancel_is_delivered_at_the_remote_suspend_point,
    dropping_a_remote_handle_cancels_and_detach_lets_it_run,
    a_joiner_canceled_while_awaiting_a_remote_task_gets_canceled,
    a_panic_in_a_remote_task_reaches_its_joiner,
    a_panic_on_one_core_cancels_the_others_and_names_the_core,
    a_main_that_returns_canceled_fails_the_run_with_its_core,
    cores_serve_spawns_until_every_main_has_returned,
    a_task_left_on_a_core_at_shutdown_is_canceled_and_its_joiner_told,
    a_shared_channel_carries_values_between_cores_in_order,
    a_canceled_shared_send_gets_its_value_back_and_a_canceled_recv_takes_nothing,
    a_storm_of_cross_core_messages_spawns_and_cancels_loses_nothing,
    each_core_accepts_on_its_own_reuse_port_listener,
    a_remote_task_canceled_before_it_starts_never_runs,
    a_shared_channel_loses_nothing_under_random_cancels,
    a_finished_remote_task_is_joined_with_its_value_even_by_a_canceled_joiner,
    a_remote_join_canceled_as_the_task_completes_never_drops_a_finished_value,
    a_panic_in_the_spawn_on_closure_reaches_its_joiner,
    a_remote_task_can_be_joined_again_after_a_canceled_join,
    pinning_stays_inside_the_process_affinity_mask,
    a_second_port_zero_bind_after_the_first_listeners_closed_gets_a_free_port,
    spawning_on_a_stopping_core_always_resolves,
    a_panicking_core_releases_a_thread_blocked_on_its_remote_task,
    a_panicking_core_releases_a_shielded_remote_join,
    a_port_zero_bind_that_fails_everywhere_never_hangs,
    more_cores_than_cpus_run,
    an_idle_core_is_woken_by_every_spawn,
    a_shared_wake_is_never_lost_on_a_canceled_receiver,
    a_remote_cancel_racing_start_and_completion_joins_what_the_body_did,
);

/// The log of a simulated run of three cores that message each other and spawn on each other:
/// who did what, in order.
#[cfg(feature = "fiber")]
fn simulated_log(seed: u64) -> Vec<String> {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = shared::unbounded::<(usize, u32)>();
    let senders = std::sync::Mutex::new(vec![tx; 3]);
    let values = Cores::new()
        .count(3)
        .backend(Backend::Fiber)
        .seed(seed)
        .run({
            let log = log.clone();
            move |cx, core| {
                let log = log.clone();
                let tx = senders.lock().unwrap().pop().expect("a sender per core");
                let rx = rx.clone();
                async move {
                    let me = core.id().index();
                    let next = CoreId::new((me + 1) % core.count());
                    let remote = core.spawn_on(next, {
                        let log = log.clone();
                        move |cx| async move {
                            cx.yield_now().await?;
                            log.lock().unwrap().push(format!("task of {me} ran"));
                            Ok(me)
                        }
                    });
                    for n in 0..3 {
                        tx.send(&cx, (me, n)).await.map_err(|_| Canceled)?;
                        cx.yield_now().await?;
                    }
                    drop(tx);
                    let mut got = 0;
                    while let Ok((from, n)) = rx.recv(&cx).await {
                        log.lock().unwrap().push(format!("{me} got {from}.{n}"));
                        got += 1;
                    }
                    assert_eq!(remote.await?, me);
                    Ok(got)
                }
            }
        })
        .unwrap();
    assert_eq!(
        values.iter().sum::<usize>(),
        9,
        "every message received once"
    );
    let log = log.lock().unwrap().clone();
    log
}

/// Simulated cores on fiber: the same seed gives the same interleaving of every core, event for
/// event; different seeds give different interleavings.
#[cfg(feature = "fiber")]
#[test]
fn simulated_cores_are_a_function_of_the_seed() {
    let runs: Vec<Vec<String>> = (0..16).map(simulated_log).collect();
    for (seed, run) in runs.iter().enumerate() {
        assert_eq!(
            *run,
            simulated_log(seed as u64),
            "seed {seed} replays differently"
        );
    }
    let distinct: std::collections::BTreeSet<_> = runs.iter().collect();
    assert!(
        distinct.len() >= 4,
        "16 seeds gave only {} interleavings",
        distinct.len()
    );
}

/// Simulated cores share one virtual clock: a core's sleep ends at the same virtual instant the
/// others see, and an hour passes in no real time.
#[cfg(feature = "fiber")]
#[test]
fn simulated_cores_share_one_virtual_clock() {
    let start = Instant::now();
    let values = Cores::new()
        .count(3)
        .backend(Backend::Fiber)
        .run(|cx, core| async move {
            let me = core.id().index() as u64;
            cx.sleep(3_600_000 * (me + 1)).await?;
            let remote = core.spawn_on(CoreId::new(0), |cx| async move { Ok(cx.now_ms()) });
            Ok((cx.now_ms(), remote.await?))
        })
        .unwrap();
    assert_eq!(
        values,
        vec![
            (3_600_000, 3_600_000),
            (7_200_000, 7_200_000),
            (10_800_000, 10_800_000)
        ]
    );
    assert!(start.elapsed() < HANG);
}

/// A simulated run whose cores wait on each other in a cycle is reported as a deadlock, not a
/// hang.
#[cfg(feature = "fiber")]
#[test]
fn a_deadlock_across_simulated_cores_is_reported() {
    let (tx, rx) = shared::bounded::<()>(1);
    let outcome = Cores::new()
        .count(2)
        .backend(Backend::Fiber)
        .run(move |cx, _core| {
            let (_tx, rx) = (tx.clone(), rx.clone());
            async move { rx.recv(&cx).await.map_err(|_| Canceled) }
        });
    match outcome {
        Err(CoresError::Simulation(ioswap::Error::Run(ioswap::RunError::Deadlock(_)))) => {}
        other => panic!("expected a deadlock, got {other:?}"),
    }
}

/// What crosses cores is `Send` (and the handles `Sync`), checked at compile time.
#[test]
fn what_crosses_cores_is_send() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<ioswap::cores::RemoteTask<u32>>();
    send_sync::<ioswap::cores::Core>();
    send_sync::<shared::Sender<u32>>();
    send_sync::<shared::Receiver<u32>>();
}

#[test]
fn a_run_on_zero_cores_is_an_error() {
    let outcome = Cores::new()
        .count(0)
        .backend(Backend::Fiber)
        .run(|_cx, _core| async { Ok(()) });
    assert_eq!(outcome, Err(CoresError::NoCores));
}

/// Values left in a shared channel's buffer when both sides are gone are dropped, once each.
#[test]
fn values_left_in_a_shared_channel_are_dropped() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = shared::bounded::<Counted>(8);
    for _ in 0..5 {
        assert!(tx.try_send(Counted(drops.clone())).is_ok());
    }
    drop(rx);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(tx);
    assert_eq!(drops.load(Ordering::SeqCst), 5);
}

/// A simulated run with remote tasks, cancels and shared channels is a function of its seed.
#[cfg(feature = "fiber")]
#[test]
fn simulated_cores_with_cancels_and_channels_are_a_function_of_the_seed() {
    fn log(seed: u64) -> Vec<String> {
        let (tx, rx) = shared::bounded::<(usize, u32)>(2);
        let log = Cores::new()
            .count(3)
            .backend(Backend::Fiber)
            .seed(seed)
            .run(move |cx, core| {
                let (tx, rx) = (tx.clone(), rx.clone());
                async move {
                    let me = core.id().index();
                    let next = CoreId::new((me + 1) % core.count());
                    let mut log = Vec::new();
                    for i in 0..20u32 {
                        let task = core.spawn_on(next, move |cx| async move {
                            cx.sleep(u64::from(i % 3)).await?;
                            Ok(i)
                        });
                        if i % 4 == 0 {
                            task.cancel();
                        }
                        log.push(format!("{me} join {i} {:?} @{}", task.await, cx.now_ms()));
                        if let Err(e) = tx.send(&cx, (me, i)).await {
                            log.push(format!("{me} send err {e:?}"));
                        }
                        if let Ok(v) = rx.recv(&cx).await {
                            log.push(format!("{me} got {v:?} @{}", cx.now_ms()));
                        }
                    }
                    Ok(log)
                }
            })
            .unwrap();
        log.into_iter().flatten().collect()
    }
    for seed in 0..10 {
        assert_eq!(log(seed), log(seed), "seed {seed}");
    }
}
