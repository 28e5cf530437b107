//! `select` on every backend: ready cases, default, timeout, fairness, waiting, cancellation.
mod support;

use ioswap::channel::{self, TryRecvError};
use ioswap::{Backend, Canceled, FiberIo};
use support::{where_concurrent, Log};

#[derive(Debug, PartialEq, Eq)]
enum Picked<T> {
    A(Option<T>),
    B(Option<T>),
    Sent(Result<(), T>),
    Timeout,
    Nothing,
}

/// The one ready case is taken; the other channel is left alone.
fn takes_the_ready_case(backend: Backend) {
    let (picked, a_left) = backend
        .run(|cx| async move {
            let (atx, arx) = channel::bounded::<u32>(&cx, 1);
            let (btx, brx) = channel::bounded(&cx, 1);
            btx.try_send(2).unwrap();
            let picked = channel::select(&cx)
                .recv(&arx, Picked::A)
                .recv(&brx, Picked::B)
                .await?;
            drop(atx);
            Ok((picked, arx.try_recv()))
        })
        .unwrap();
    assert_eq!(picked, Picked::B(Some(2)));
    assert_eq!(a_left, Err(TryRecvError::Closed));
}

/// With a default case and nothing ready, select returns at once without waiting.
fn default_runs_when_nothing_is_ready(backend: Backend) {
    let (picked, waited) = backend
        .run(|cx| async move {
            let (_tx, rx) = channel::bounded::<u8>(&cx, 0);
            let start = cx.now_ms();
            let picked = channel::select(&cx)
                .recv(&rx, Picked::A)
                .timeout(1_000, || Picked::Timeout)
                .default(|| Picked::Nothing)
                .await?;
            Ok((picked, cx.now_ms() - start))
        })
        .unwrap();
    assert_eq!(picked, Picked::Nothing);
    assert!(waited < 1_000, "a default never waits");
}

/// With nothing ready and no default, the timeout case fires at its deadline: exactly on the
/// virtual clock, no earlier on a real one.
fn timeout_fires_when_nothing_else_comes(backend: Backend) {
    let (picked, waited) = backend
        .run(|cx| async move {
            let (_tx, rx) = channel::bounded::<u8>(&cx, 1);
            let start = cx.now_ms();
            let picked = channel::select(&cx)
                .recv(&rx, Picked::A)
                .timeout(100, || Picked::Timeout)
                .await?;
            Ok((picked, cx.now_ms() - start))
        })
        .unwrap();
    assert_eq!(picked, Picked::Timeout);
    match backend {
        Backend::Fiber => assert_eq!(waited, 100),
        _ => assert!(waited >= 100, "waited {waited} ms"),
    }
}

/// Three always-ready cases over 3,000 selects: each is chosen about a third of the time. The
/// draws come from the backend's seeded generator, so the counts are the same every run.
fn chooses_uniformly_among_ready_cases(backend: Backend) {
    let counts = backend
        .run(|cx| async move {
            let channels: Vec<_> = (0..3).map(|_| channel::unbounded(&cx)).collect();
            let mut counts = [0u32; 3];
            for _ in 0..3_000 {
                for (tx, rx) in &channels {
                    if rx.is_empty() {
                        tx.try_send(()).unwrap();
                    }
                }
                let chosen = channel::select(&cx)
                    .recv(&channels[0].1, |_| 0)
                    .recv(&channels[1].1, |_| 1)
                    .recv(&channels[2].1, |_| 2)
                    .await?;
                counts[chosen] += 1;
            }
            Ok(counts)
        })
        .unwrap();
    for count in counts {
        assert!((900..=1_100).contains(&count), "counts {counts:?}");
    }
}

/// Cases not chosen consume nothing: the losing receive leaves its value, the losing send
/// sends nothing.
fn unchosen_cases_consume_nothing(backend: Backend) {
    backend
        .run(|cx| async move {
            let (atx, arx) = channel::bounded(&cx, 1);
            let (btx, brx) = channel::bounded(&cx, 1);
            let (ctx, crx) = channel::bounded(&cx, 1);
            for _ in 0..50 {
                atx.try_send('a').ok();
                btx.try_send('b').ok();
                let picked = channel::select(&cx)
                    .recv(&arx, Picked::A)
                    .recv(&brx, Picked::B)
                    .send(&ctx, 'c', Picked::Sent)
                    .await?;
                let (a, b, c) = (arx.len(), brx.len(), crx.len());
                match picked {
                    Picked::A(Some('a')) => assert_eq!((a, b, c), (0, 1, 0)),
                    Picked::B(Some('b')) => assert_eq!((a, b, c), (1, 0, 0)),
                    Picked::Sent(Ok(())) => {
                        assert_eq!((a, b, c), (1, 1, 1));
                        assert_eq!(crx.try_recv(), Ok('c'));
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            Ok(())
        })
        .unwrap();
}

/// A receive case on a closed channel is ready and gets `None`; a send case on one gets its
/// value back.
fn closed_channels_are_ready_cases(backend: Backend) {
    let picked = backend
        .run(|cx| async move {
            let (tx, rx) = channel::bounded::<u8>(&cx, 1);
            tx.close();
            let received = channel::select(&cx).recv(&rx, Picked::A).await?;
            let sent = channel::select(&cx).send(&tx, 9, Picked::Sent).await?;
            Ok((received, sent))
        })
        .unwrap();
    assert_eq!(picked, (Picked::A(None), Picked::Sent(Err(9))));
}

/// A waiting select is completed by whichever case a counterpart serves first (here a timed
/// message on the second channel), at that time.
fn waits_for_the_first_counterpart(backend: Backend) {
    let (picked, at) = backend
        .run(|cx| async move {
            let (_atx, arx) = channel::bounded::<&str>(&cx, 1);
            let (btx, brx) = channel::bounded(&cx, 1);
            channel::send_after(30, &btx, "late");
            let start = cx.now_ms();
            let picked = channel::select(&cx)
                .recv(&arx, Picked::A)
                .recv(&brx, Picked::B)
                .timeout(500, || Picked::Timeout)
                .await?;
            Ok((picked, cx.now_ms() - start))
        })
        .unwrap();
    assert_eq!(picked, Picked::B(Some("late")));
    match backend {
        Backend::Fiber => assert_eq!(at, 30),
        _ => assert!((30..500).contains(&at), "at {at}"),
    }
}

/// A waiting send case completes when a receiver arrives on the rendezvous channel, and its
/// other case (a receive) takes nothing.
fn waiting_send_case_completed_by_a_receiver(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, rx) = channel::bounded(&cx, 0);
        let (otx, orx) = channel::bounded(&cx, 1);
        let receiver = spawn_concurrent!(cx, move |cx| async move {
            cx.sleep(40).await?;
            Ok((rx.recv().await, cx.now_ms()))
        });
        let picked = channel::select(&cx)
            .send(&tx, "hello", Picked::Sent)
            .recv(&orx, Picked::A)
            .await?;
        let at = cx.now_ms();
        otx.try_send("other").unwrap();
        Ok(Ok((picked, at, receiver.await?, orx.len())))
    });
    if let Some(results) = where_concurrent(backend, outcome) {
        assert_eq!(results, (Picked::Sent(Ok(())), 40, (Ok("hello"), 40), 1));
    }
}

/// A select canceled while waiting returns `Canceled` and leaves its channels as they were:
/// a later value goes to the buffer, not to the dead select.
fn canceled_while_waiting(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, rx) = channel::bounded::<u8>(&cx, 1);
        let rx2 = rx.clone();
        let selector = spawn_concurrent!(cx, move |cx| async move {
            let picked = channel::select(&cx).recv(&rx2, Picked::A).await;
            Ok(picked)
        });
        cx.sleep(10).await?;
        selector.cancel();
        let joined = selector.await?;
        tx.try_send(5).unwrap();
        Ok(Ok((joined, rx.try_recv())))
    });
    if let Some(results) = where_concurrent(backend, outcome) {
        assert_eq!(results, (Err(Canceled), Ok(5)));
    }
}

/// Completion wins in a select too: a value handed to a waiting select before its task is
/// canceled is returned by the select; the cancel lands at the next suspend point.
fn completed_case_wins_over_cancel(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let (tx, rx) = channel::bounded(&cx, 0);
        let l = log.clone();
        let selector = spawn_concurrent!(cx, move |cx| async move {
            let picked = channel::select(&cx)
                .recv(&rx, Picked::A)
                .timeout(1_000, || Picked::Timeout)
                .await;
            l.push(format!("{picked:?}"));
            cx.sleep(1).await?;
            l.push("never");
            Ok(())
        });
        cx.yield_now().await?;
        tx.send(3).await.unwrap();
        selector.cancel();
        log.push(format!("{:?}", selector.await));
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_eq!(log, "Ok(A(Some(3))) Err(Canceled)");
    }
}

/// Select in a loop: fan-in from two channels until both are closed, with the values of each
/// channel in order. The senders are timers, so the loop waits between them on every backend.
fn fan_in_loop_until_both_close(backend: Backend) {
    let got = backend
        .run(|cx| async move {
            let (atx, arx) = channel::unbounded(&cx);
            let (btx, brx) = channel::unbounded(&cx);
            for (n, at) in [(1, 5), (2, 25), (3, 45)] {
                channel::send_after(at, &atx, n);
                channel::send_after(at + 10, &btx, n * 10);
            }
            drop((atx, btx));
            let (mut a_open, mut b_open) = (true, true);
            let mut got = Vec::new();
            while a_open || b_open {
                let mut select = channel::select(&cx);
                if a_open {
                    select = select.recv(&arx, Picked::A);
                }
                if b_open {
                    select = select.recv(&brx, Picked::B);
                }
                match select.await? {
                    Picked::A(Some(n)) | Picked::B(Some(n)) => got.push(n),
                    Picked::A(None) => a_open = false,
                    Picked::B(None) => b_open = false,
                    other => panic!("unexpected {other:?}"),
                }
            }
            Ok(got)
        })
        .unwrap();
    assert_eq!(got, [1, 10, 2, 20, 3, 30]);
}

conformance!(
    takes_the_ready_case,
    default_runs_when_nothing_is_ready,
    timeout_fires_when_nothing_else_comes,
    chooses_uniformly_among_ready_cases,
    unchosen_cases_consume_nothing,
    closed_channels_are_ready_cases,
    waits_for_the_first_counterpart,
    waiting_send_case_completed_by_a_receiver,
    canceled_while_waiting,
    completed_case_wins_over_cancel,
    fan_in_loop_until_both_close,
);

/// The choices among ready cases, over 64 selects on fiber with `seed`.
fn choices_with_seed(seed: u64) -> Vec<usize> {
    FiberIo::with_seed(seed)
        .run(|cx| async move {
            let (atx, arx) = channel::unbounded(&cx);
            let (btx, brx) = channel::unbounded(&cx);
            let mut choices = Vec::new();
            for _ in 0..64 {
                atx.try_send(()).unwrap();
                btx.try_send(()).unwrap();
                choices.push(
                    channel::select(&cx)
                        .recv(&arx, |_| 0)
                        .recv(&brx, |_| 1)
                        .await?,
                );
                // Drain the loser so both are ready again next time, and only once.
                while arx.len() + brx.len() > 0 {
                    arx.try_recv().ok();
                    brx.try_recv().ok();
                }
            }
            Ok(choices)
        })
        .unwrap()
}

/// On fiber the choice among ready cases is part of the seeded run: the same seed chooses the
/// same way every time, different seeds choose differently.
#[test]
fn fiber_select_choices_follow_the_seed() {
    assert_eq!(choices_with_seed(7), choices_with_seed(7));
    assert_ne!(choices_with_seed(7), choices_with_seed(8));
    assert_ne!(choices_with_seed(0), choices_with_seed(1));
}

/// The trace hash of a run of yielding tasks on fiber, drawing from `Io::random_u64` or not.
fn schedule_hash(seed: u64, draw: bool) -> u64 {
    let fiber = FiberIo::with_seed(seed);
    fiber
        .run(|cx| async move {
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    cx.spawn(move |cx| async move {
                        for _ in 0..5 {
                            if draw {
                                cx.io().random_u64();
                            }
                            cx.yield_now().await?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for task in tasks {
                task.await?;
            }
            Ok(())
        })
        .unwrap();
    fiber.trace_hash()
}

/// Select's draws come from a stream of their own: a program that draws runs the same
/// schedule as one that does not.
#[test]
fn fiber_choices_do_not_perturb_the_schedule() {
    for seed in [1, 2, 99] {
        assert_eq!(schedule_hash(seed, true), schedule_hash(seed, false));
    }
    assert_ne!(schedule_hash(1, false), schedule_hash(2, false));
}
