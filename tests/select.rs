//! `select` on every backend: ready cases, default, timeout, fairness, waiting, cancellation.
mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::task::{Context, Poll};

use ioswap::channel::{self, TryRecvError};
use ioswap::protocol::op::{Op, OpId, Submitted};
use ioswap::protocol::{BackendCore, Driver, Io, Next, Park, RawTask, TimerId};
use ioswap::{Backend, Canceled, SpawnError, SpawnOptions};
use support::{assert_time, new_io, where_concurrent, Log};

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
/// sends nothing and its value stays in its slot.
fn unchosen_cases_consume_nothing(backend: Backend) {
    backend
        .run(|cx| async move {
            let (atx, arx) = channel::bounded(&cx, 1);
            let (btx, brx) = channel::bounded(&cx, 1);
            let (ctx, crx) = channel::bounded(&cx, 1);
            let mut picks = [0; 3];
            for _ in 0..50 {
                atx.try_send('a').ok();
                btx.try_send('b').ok();
                let mut c = Some('c');
                let picked = channel::select(&cx)
                    .recv(&arx, Picked::A)
                    .recv(&brx, Picked::B)
                    .send(&ctx, &mut c, Picked::Sent)
                    .await?;
                let (a, b, len_c) = (arx.len(), brx.len(), crx.len());
                match picked {
                    Picked::A(Some('a')) => {
                        assert_eq!((a, b, len_c, c), (0, 1, 0, Some('c')));
                        picks[0] += 1;
                    }
                    Picked::B(Some('b')) => {
                        assert_eq!((a, b, len_c, c), (1, 0, 0, Some('c')));
                        picks[1] += 1;
                    }
                    Picked::Sent(Ok(())) => {
                        assert_eq!((a, b, len_c, c), (1, 1, 1, None));
                        assert_eq!(crx.try_recv(), Ok('c'));
                        picks[2] += 1;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(
                picks.iter().all(|&n| n > 0),
                "every case won some: {picks:?}"
            );
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
            let mut nine = Some(9);
            let sent = channel::select(&cx)
                .send(&tx, &mut nine, Picked::Sent)
                .await?;
            Ok((received, sent, nine))
        })
        .unwrap();
    assert_eq!(picked, (Picked::A(None), Picked::Sent(Err(9)), None));
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
        let mut hello = Some("hello");
        let picked = channel::select(&cx)
            .send(&tx, &mut hello, Picked::Sent)
            .recv(&orx, Picked::A)
            .await?;
        assert_eq!(hello, None, "delivered");
        let at = cx.now_ms();
        otx.try_send("other").unwrap();
        Ok(Ok((picked, at, receiver.await?, orx.len())))
    });
    if let Some((picked, at, (received, received_at), left)) = where_concurrent(backend, outcome) {
        assert_eq!(
            (picked, received, left),
            (Picked::Sent(Ok(())), Ok("hello"), 1)
        );
        assert_time(backend, at, 40);
        assert_time(backend, received_at, 40);
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

/// A select whose send case waits when its task is canceled returns `Canceled` and the value is
/// still in the caller's slot: neither delivered nor lost. Nothing reached the channel.
fn canceled_send_case_keeps_its_value(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, rx) = channel::bounded(&cx, 0);
        let (_otx, orx) = channel::bounded::<String>(&cx, 1);
        let sender = spawn_concurrent!(cx, move |cx| async move {
            let mut slot = Some(String::from("mine"));
            let picked = channel::select(&cx)
                .send(&tx, &mut slot, Picked::Sent)
                .recv(&orx, Picked::A)
                .await;
            Ok((picked, slot))
        });
        cx.sleep(5).await?;
        sender.cancel();
        let joined = sender.await?;
        Ok(Ok((joined, rx.try_recv())))
    });
    if let Some((joined, left)) = where_concurrent(backend, outcome) {
        assert_eq!(joined, (Err(Canceled), Some(String::from("mine"))));
        assert_eq!(left, Err(TryRecvError::Closed), "nothing was delivered");
    }
}

/// A select dropped while its send case waits puts the value back in the slot.
fn dropped_select_puts_the_value_back(backend: Backend) {
    let (raced, slot, left) = backend
        .run(|cx| async move {
            let (tx, rx) = channel::bounded(&cx, 0);
            let mut slot = Some(7);
            let select = channel::select(&cx).send(&tx, &mut slot, Picked::Sent);
            let raced = futures_lite::future::or(async { Some(select.await) }, async {
                cx.sleep(10).await.ok();
                None
            })
            .await;
            Ok((raced, slot, rx.try_recv()))
        })
        .unwrap();
    assert_eq!(
        (raced, slot, left),
        (None, Some(7), Err(TryRecvError::Empty))
    );
}

/// A send case with an empty slot is disabled, like a `nil` channel in Go: never chosen, even
/// where a send would succeed at once.
fn send_case_with_an_empty_slot_is_disabled(backend: Backend) {
    let (picked, left) = backend
        .run(|cx| async move {
            let (tx, rx) = channel::unbounded::<u8>(&cx);
            let mut nothing = None;
            let picked = channel::select(&cx)
                .send(&tx, &mut nothing, Picked::Sent)
                .timeout(10, || Picked::Timeout)
                .await?;
            Ok((picked, rx.try_recv()))
        })
        .unwrap();
    assert_eq!((picked, left), (Picked::Timeout, Err(TryRecvError::Empty)));
}

/// A send case that loses keeps its value, so a loop offers the same value again until a
/// receiver takes it: the Go idiom of a select between "send the pending value" and "do
/// something else".
fn losing_send_case_offers_the_same_value_again(backend: Backend) {
    let log = backend
        .run(|cx| async move {
            let (tx, rx) = channel::bounded(&cx, 1);
            tx.try_send(0).unwrap(); // full until the timer-driven drain below
            let (ticks_tx, ticks) = channel::unbounded(&cx);
            for at in [10, 20] {
                channel::send_after(at, &ticks_tx, at);
            }
            let log = Log::new();
            let mut pending = Some(1);
            while pending.is_some() {
                let picked = channel::select(&cx)
                    .send(&tx, &mut pending, Picked::Sent)
                    .recv(&ticks, Picked::A)
                    .await?;
                log.push(format!("{picked:?}"));
                if picked == Picked::A(Some(20)) {
                    assert_eq!(rx.try_recv(), Ok(0)); // makes room
                }
            }
            assert_eq!(rx.try_recv(), Ok(1));
            Ok(log.joined())
        })
        .unwrap();
    assert_eq!(log, "A(Some(10)) A(Some(20)) Sent(Ok(()))");
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

/// A waiting send case whose channel closes completes at the close with its value handed back
/// (`Err(value)`, as a plain `send` gets `Closed(value)`): it neither waits on in the closed
/// channel's queue holding the value nor loses it.
fn waiting_send_case_gets_its_value_back_when_the_channel_closes(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, rx) = channel::bounded(&cx, 1);
        tx.try_send(0).unwrap();
        let closer = spawn_concurrent!(cx, move |cx| async move {
            cx.sleep(10).await?;
            rx.close();
            Ok(rx)
        });
        let mut slot = Some(1);
        let picked = channel::select(&cx)
            .send(&tx, &mut slot, Picked::Sent)
            .timeout(1_000, || Picked::Timeout)
            .await?;
        let at = cx.now_ms();
        let rx = closer.await?;
        Ok(Ok((picked, slot, at, rx.try_recv())))
    });
    if let Some((picked, slot, at, left)) = where_concurrent(backend, outcome) {
        assert_eq!((picked, slot, left), (Picked::Sent(Err(1)), None, Ok(0)));
        assert_time(backend, at, 10);
    }
}

/// A backend whose clock moves on between any two readings, as a real clock may: the k-th
/// `now_ms` reads the backend's own clock plus k ms. Everything else is the backend's.
struct TickingClock {
    backend: Rc<dyn Driver>,
    readings: Cell<u64>,
}

impl TickingClock {
    fn around(backend: Rc<dyn Driver>) -> Rc<dyn Driver> {
        Rc::new(TickingClock {
            backend,
            readings: Cell::new(0),
        })
    }
}

impl Io for TickingClock {
    fn core(&self) -> &BackendCore {
        self.backend.core()
    }
    fn spawn_raw(&self, task: RawTask, opts: &SpawnOptions) -> Result<(), SpawnError> {
        self.backend.spawn_raw(task, opts)
    }
    fn suspend_raw(&self, park: &Park, cx: &mut Context<'_>) -> Poll<Result<(), Canceled>> {
        self.backend.suspend_raw(park, cx)
    }
    fn ready(&self, park: &Park) {
        self.backend.ready(park)
    }
    fn now_ms(&self) -> u64 {
        let k = self.readings.get();
        self.readings.set(k + 1);
        self.backend.now_ms() + k
    }
    fn arm_timer(&self, deadline_ms: u64, park: &Park) -> TimerId {
        self.backend.arm_timer(deadline_ms, park)
    }
    fn disarm_timer(&self, id: TimerId) -> Option<u64> {
        self.backend.disarm_timer(id)
    }
    fn random_u64(&self) -> u64 {
        self.backend.random_u64()
    }
    fn submit(&self, op: Op) -> Submitted {
        self.backend.submit(op)
    }
    fn cancel_op(&self, id: OpId) {
        self.backend.cancel_op(id)
    }
    fn discard_op(&self, id: OpId) {
        self.backend.discard_op(id)
    }
}

impl Driver for TickingClock {
    fn poll(&self, deadline_ms: u64) -> Next {
        self.backend.poll(deadline_ms)
    }
    fn shut_down(&self) {
        self.backend.shut_down()
    }
}

/// A `send_after` message that falls due while a select looks at its send case — between
/// checking that the buffer has room and sending — neither panics the select nor costs the
/// caller its value: the select sees one instant, so either the message came first (the buffer
/// is full, the timeout wins, the value stays in the slot) or the value did (then the message
/// follows it). Every offset of the deadline against the clock's readings is tried, on a clock
/// that moves at each reading, as a real one may.
fn timed_message_falling_due_mid_select_keeps_the_send_case_whole(backend: Backend) {
    for due_in in 0..12 {
        let io = TickingClock::around(new_io(backend));
        let (picked, slot, received) = ioswap::protocol::run(io, move |cx| async move {
            let (tx, rx) = channel::bounded(&cx, 1);
            channel::send_after(due_in, &tx, "timed");
            let mut slot = Some("mine");
            let picked = channel::select(&cx)
                .send(&tx, &mut slot, Picked::Sent)
                .timeout(5, || Picked::Timeout)
                .await?;
            drop(tx);
            let mut received = Vec::new();
            while let Ok(message) = rx.recv().await {
                received.push(message);
            }
            Ok((picked, slot, received))
        })
        .unwrap_or_else(|error| panic!("timed message due in {due_in} ms: {error}"));
        match picked {
            Picked::Sent(Ok(())) => {
                assert_eq!((slot, &received[..]), (None, &["mine", "timed"][..]));
            }
            Picked::Timeout => {
                assert_eq!((slot, &received[..]), (Some("mine"), &["timed"][..]));
            }
            other => panic!("timed message due in {due_in} ms: picked {other:?}"),
        }
    }
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
    canceled_send_case_keeps_its_value,
    dropped_select_puts_the_value_back,
    send_case_with_an_empty_slot_is_disabled,
    losing_send_case_offers_the_same_value_again,
    timed_message_falling_due_mid_select_keeps_the_send_case_whole,
    waiting_send_case_gets_its_value_back_when_the_channel_closes,
);

#[cfg(feature = "fiber")]
/// The choices among ready cases, over 64 selects on fiber with `seed`.
fn choices_with_seed(seed: u64) -> Vec<usize> {
    ioswap::FiberIo::with_seed(seed)
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
#[cfg(feature = "fiber")]
#[test]
fn fiber_select_choices_follow_the_seed() {
    assert_eq!(choices_with_seed(7), choices_with_seed(7));
    assert_ne!(choices_with_seed(7), choices_with_seed(8));
    assert_ne!(choices_with_seed(0), choices_with_seed(1));
}

#[cfg(feature = "fiber")]
/// The trace hash of a run of yielding tasks on fiber, drawing from `Io::random_u64` or not.
fn schedule_hash(seed: u64, draw: bool) -> u64 {
    let fiber = ioswap::FiberIo::with_seed(seed);
    fiber
        .run(|cx| async move {
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    cx.spawn(move |cx| async move {
                        for _ in 0..5 {
                            if draw {
                                cx.random_below(2);
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
#[cfg(feature = "fiber")]
#[test]
fn fiber_choices_do_not_perturb_the_schedule() {
    for seed in [1, 2, 99] {
        assert_eq!(schedule_hash(seed, true), schedule_hash(seed, false));
    }
    assert_ne!(schedule_hash(1, false), schedule_hash(2, false));
}
