//! The signals of `ioswap::sync` on every backend: Notify, oneshot, watch, broadcast — their
//! semantics, what a canceled waiter holds (nothing), and the completion-wins cases; then, on
//! fiber, seeded storms of cancels and timeouts that account for every value and notification.
mod support;

use std::cell::RefCell;
use std::rc::Rc;

use futures_lite::future;
use ioswap::sync::{broadcast, oneshot, watch, Notify};
use ioswap::{Backend, Canceled, Cx, SpawnOptions};
use support::{assert_timed, expect_deadlock, where_concurrent, Log};

/// `fut` raced against a sleep of `ms` that wins ties: `None` when the sleep won (and `fut`
/// was dropped mid-wait).
async fn within<T>(cx: &Cx, ms: u64, fut: impl std::future::Future<Output = T>) -> Option<T> {
    future::or(
        async {
            cx.sleep(ms).await.ok();
            None
        },
        async { Some(fut.await) },
    )
    .await
}

/// Where a receiver lives between the tasks that use it in turn.
type Home<T> = Rc<RefCell<Option<T>>>;

fn home<T>(value: T) -> Home<T> {
    Rc::new(RefCell::new(Some(value)))
}

/// A value lent out of its [`Home`] to one task, and back home when that task is done with it:
/// when it ends, or is canceled and dropped. (So no task holds a `RefCell` borrow across an
/// await, and what a canceled task's receiver still holds can be looked at afterwards.)
struct Lent<T> {
    value: Option<T>,
    home: Home<T>,
}

fn lend<T>(home: &Home<T>) -> Lent<T> {
    let value = home.borrow_mut().take();
    assert!(value.is_some(), "lent to one task at a time");
    Lent {
        value,
        home: home.clone(),
    }
}

impl<T> std::ops::Deref for Lent<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_ref().expect("lent")
    }
}

impl<T> std::ops::DerefMut for Lent<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("lent")
    }
}

impl<T> Drop for Lent<T> {
    fn drop(&mut self) {
        *self.home.borrow_mut() = self.value.take();
    }
}

// ---------------------------------------------------------------------------------------------
// Notify

/// A `notify_one` with nobody waiting is stored as one permit (one at most), which the next
/// `notified()` takes without waiting.
fn notify_one_stores_one_permit(backend: Backend) {
    let waited = backend
        .run(|cx| async move {
            let notify = Notify::new(&cx);
            notify.notify_one();
            notify.notify_one();
            let start = cx.now_ms();
            notify.notified().await?;
            let at_once = cx.now_ms() - start < 5;
            let second = within(&cx, 10, notify.notified()).await;
            Ok((at_once, second))
        })
        .unwrap();
    assert_eq!(
        waited,
        (true, None),
        "one permit, taken at once; the second waits"
    );
}

/// `notify_one` wakes the waiters one at a time, oldest first.
fn notify_one_wakes_the_oldest_waiter(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let notify = Rc::new(Notify::new(&cx));
        let mut waiters = Vec::new();
        for name in ["a", "b", "c"] {
            let (notify, log) = (notify.clone(), log.clone());
            waiters.push(spawn_concurrent!(cx, move |cx| async move {
                notify.notified().await?;
                log.push(format!("{name}@{}", cx.now_ms()));
                Ok(())
            }));
            cx.sleep(1).await?; // a, b, c queue in that order
        }
        for _ in 0..3 {
            cx.sleep(10).await?;
            notify.notify_one();
        }
        for waiter in waiters {
            waiter.await?;
        }
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_timed(backend, &log, "a@13 b@23 c@33");
    }
}

/// `notify_waiters` wakes every task waiting now and stores nothing.
fn notify_waiters_wakes_all_and_stores_nothing(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let notify = Rc::new(Notify::new(&cx));
        notify.notify_waiters(); // nobody waits: nothing is kept
        let mut waiters = Vec::new();
        for name in ["a", "b"] {
            let (notify, log) = (notify.clone(), log.clone());
            waiters.push(spawn_concurrent!(cx, move |cx| async move {
                notify.notified().await?;
                log.push(format!("{name}@{}", cx.now_ms()));
                Ok(())
            }));
        }
        cx.sleep(20).await?;
        notify.notify_waiters();
        for waiter in waiters {
            waiter.await?;
        }
        let later = within(&cx, 5, notify.notified()).await;
        log.push(format!("later-{}", later.is_some()));
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_timed(backend, &log, "a@20 b@20 later-false");
    }
}

/// A waiter canceled just as a `notify_one` chose it returns `Canceled`, and the notification
/// goes to the next waiter; with nobody else waiting it is stored as the permit.
fn canceled_waiter_passes_the_notification_on(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let notify = Rc::new(Notify::new(&cx));
        let wait = |notify: Rc<Notify>| move |_: Cx| async move { Ok(notify.notified().await) };
        let first = spawn_concurrent!(cx, wait(notify.clone()));
        let second = spawn_concurrent!(cx, wait(notify.clone()));
        cx.yield_now().await?; // both wait, first the oldest
        first.cancel();
        notify.notify_one(); // chooses `first`, canceled at the same moment
        let (first, second) = (first.await?, second.await?);

        let alone = spawn_concurrent!(cx, wait(notify.clone()));
        cx.yield_now().await?;
        alone.cancel();
        notify.notify_one(); // chooses `alone`; nobody else waits: stored
        let alone = alone.await?;
        let stored = within(&cx, 5, notify.notified()).await;
        Ok(Ok((first, second, alone, stored)))
    });
    if let Some(seen) = where_concurrent(backend, outcome) {
        assert_eq!(seen, (Err(Canceled), Ok(()), Err(Canceled), Some(Ok(()))));
    }
}

/// A `Notified` dropped after a `notify_one` chose it (a timeout won the race) passes the
/// notification on: here, back as the permit.
fn dropped_waiter_passes_the_notification_on(backend: Backend) {
    let stored = backend
        .run(|cx| async move {
            let notify = Notify::new(&cx);
            let mut waiting = Box::pin(notify.notified());
            assert!(future::poll_once(&mut waiting).await.is_none(), "it waits");
            notify.notify_one(); // chooses it
            drop(waiting); // and it is given up before it returned
            Ok(within(&cx, 5, notify.notified()).await)
        })
        .unwrap();
    assert_eq!(stored, Some(Ok(())));
}

/// A canceled task's `notified()` returns `Canceled` at once and leaves the permit stored.
fn canceled_task_takes_no_permit(backend: Backend) {
    let (waited, stored) = backend
        .run(|cx| async move {
            let notify = Rc::new(Notify::new(&cx));
            notify.notify_one();
            let n = notify.clone();
            let canceled = cx.spawn(move |cx| async move {
                cx.current_task().unwrap().cancel();
                Ok(n.notified().await)
            });
            let waited = canceled.await?;
            Ok((waited, within(&cx, 5, notify.notified()).await))
        })
        .unwrap();
    assert_eq!(waited, Err(Canceled));
    assert_eq!(stored, Some(Ok(())));
}

/// Waiting for a notification nothing can give is a deadlock, reported with the park's name.
fn notified_nothing_can_give_is_a_deadlock(backend: Backend) {
    let deadlock = expect_deadlock(backend.run(|cx| async move {
        let notify = Notify::new(&cx);
        notify.notified().await
    }));
    assert_eq!(deadlock.blocked.len(), 1);
    assert_eq!(deadlock.blocked[0].parked_on, "notify");
}

// ---------------------------------------------------------------------------------------------
// oneshot

/// The value arrives; a sender dropped unused closes; a send to a gone receiver gives it back.
fn oneshot_delivers_closes_and_refuses(backend: Backend) {
    let seen = backend
        .run(|cx| async move {
            let (tx, mut rx) = oneshot::channel(&cx);
            cx.spawn(move |_| async move {
                tx.send(String::from("hi")).unwrap();
                Ok(())
            })
            .await?;
            let got = rx.recv().await;
            let again = rx.recv().await;

            let (tx, mut rx) = oneshot::channel::<u8>(&cx);
            drop(tx);
            let closed = (rx.try_recv(), rx.recv().await);

            let (tx, rx) = oneshot::channel(&cx);
            drop(rx);
            let refused = tx.send(9);
            Ok((got, again, closed, refused))
        })
        .unwrap();
    assert_eq!(seen.0, Ok(String::from("hi")));
    assert_eq!(seen.1, Err(oneshot::RecvError::Closed));
    assert_eq!(
        seen.2,
        (
            Err(oneshot::TryRecvError::Closed),
            Err(oneshot::RecvError::Closed)
        )
    );
    assert_eq!(seen.3, Err(9));
}

/// `recv` waits until the value is sent, or until the sender is dropped.
fn oneshot_recv_waits_for_the_value(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let (tx, mut rx) = oneshot::channel(&cx);
        let (tx2, mut rx2) = oneshot::channel::<u8>(&cx);
        spawn_concurrent!(cx, move |cx| async move {
            cx.sleep(30).await?;
            tx.send(5).unwrap();
            cx.sleep(10).await?;
            drop(tx2);
            Ok(())
        })
        .detach();
        let got = rx.recv().await;
        log.push(format!("{got:?}@{}", cx.now_ms()));
        let closed = rx2.recv().await;
        log.push(format!("{closed:?}@{}", cx.now_ms()));
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_timed(backend, &log, "Ok(5)@30 Err(Closed)@40");
    }
}

/// Completion wins: a receiver whose task is canceled as the value arrives gets the value; the
/// cancel comes at its next suspend point.
fn oneshot_receiver_canceled_as_the_value_arrives_gets_it(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let (tx, mut rx) = oneshot::channel(&cx);
        let l = log.clone();
        let receiver = spawn_concurrent!(cx, move |cx| async move {
            let got = rx.recv().await;
            l.push(format!("got {got:?}"));
            cx.sleep(1).await?;
            l.push("never");
            Ok(())
        });
        cx.yield_now().await?; // it waits
        receiver.cancel();
        tx.send(42).unwrap(); // the same moment
        let joined = receiver.await;
        log.push(format!("joined {joined:?}"));
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_eq!(log, "got Ok(42) joined Err(Canceled)");
    }
}

/// A `recv` given up (a timeout won) or refused (its task was canceled before it began) takes
/// nothing: the value stays for a later receive on the same receiver.
fn oneshot_value_stays_for_a_later_recv(backend: Backend) {
    let seen = backend
        .run(|cx| async move {
            let (tx, mut rx) = oneshot::channel(&cx);
            let gave_up = within(&cx, 5, rx.recv()).await;
            tx.send('v').unwrap();
            let rx = home(rx);
            let r = rx.clone();
            let canceled = cx
                .spawn(move |cx| async move {
                    cx.current_task().unwrap().cancel();
                    Ok(lend(&r).recv().await)
                })
                .await?;
            let later = lend(&rx).recv().await;
            Ok((gave_up, canceled, later))
        })
        .unwrap();
    assert_eq!(
        seen,
        (None, Err(oneshot::RecvError::Canceled), Ok('v')),
        "nothing taken until the last recv"
    );
}

/// On blocking a child waiting for its spawner's value never wakes: a deadlock naming it.
fn oneshot_inline_child_waiting_for_its_spawner(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, mut rx) = oneshot::channel(&cx);
        let child = cx.spawn_with(SpawnOptions::new().name("receiver"), move |_| async move {
            Ok(rx.recv().await)
        });
        tx.send(7).ok();
        child.expect("not a concurrent spawn").await
    });
    match backend {
        Backend::Blocking => {
            let deadlock = expect_deadlock(outcome);
            let receiver = deadlock.blocked.iter().find(|t| t.name == "receiver");
            assert_eq!(receiver.unwrap().parked_on, "oneshot recv", "{deadlock}");
        }
        _ => assert_eq!(outcome.unwrap(), Ok(7)),
    }
}

// ---------------------------------------------------------------------------------------------
// watch

/// `changed()` returns when the version moved; a receiver that falls behind sees the latest
/// value; an unseen change is reported before the close.
fn watch_changed_follows_the_versions(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let (tx, mut rx) = watch::channel(&cx, 0);
        let l = log.clone();
        let reader = spawn_concurrent!(cx, move |cx| async move {
            loop {
                match rx.changed().await {
                    Ok(()) => l.push(format!("{}@{}", *rx.borrow(), cx.now_ms())),
                    Err(e) => {
                        l.push(format!("{e:?}@{}", cx.now_ms()));
                        return Ok(());
                    }
                }
            }
        });
        cx.sleep(10).await?;
        tx.send(1).unwrap();
        cx.sleep(10).await?;
        tx.send(2).unwrap();
        tx.send_modify(|n| *n += 1); // 3: the reader has not looked since 2
        cx.sleep(10).await?;
        drop(tx);
        reader.await?;
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_timed(backend, &log, "1@10 3@20 Closed@30");
    }
}

/// `borrow`, `has_changed`, `borrow_and_update`, clones and `subscribe` (what each has seen),
/// `send` with no receiver, and `changed` after the sender is gone.
fn watch_receivers_track_what_they_have_seen(backend: Backend) {
    backend
        .run(|cx| async move {
            let (tx, mut rx) = watch::channel(&cx, "a");
            tx.send("b").unwrap();
            let clone = rx.clone(); // has seen what rx has: "a"
            let fresh = tx.subscribe(); // has seen "b"
            assert!(rx.has_changed() && clone.has_changed() && !fresh.has_changed());
            assert_eq!(*rx.borrow_and_update(), "b");
            assert!(!rx.has_changed());
            assert_eq!(tx.receiver_count(), 3);
            drop((clone, fresh));
            tx.send("c").unwrap();
            drop(tx);
            assert!(rx.is_closed());
            assert_eq!(rx.changed().await, Ok(()));
            assert_eq!(*rx.borrow(), "c");
            assert_eq!(rx.changed().await, Err(watch::RecvError::Closed));

            let (tx, rx) = watch::channel(&cx, 1);
            drop(rx);
            assert_eq!(tx.send(2), Err(watch::SendError(2)));
            assert_eq!(*tx.borrow(), 1);
            Ok(())
        })
        .unwrap();
}

/// A `changed()` canceled as a send comes marks nothing seen: the change is still there for
/// the receiver's next `changed()`.
fn watch_canceled_changed_marks_nothing_seen(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, rx) = watch::channel(&cx, 0);
        let rx = home(rx);
        let r = rx.clone();
        let waiter = spawn_concurrent!(cx, move |_| async move { Ok(lend(&r).changed().await) });
        cx.yield_now().await?;
        waiter.cancel();
        tx.send(1).unwrap(); // the same moment
        let waited = waiter.await?;
        let mut rx = lend(&rx);
        let pending = rx.has_changed();
        let next = rx.changed().await;
        let value = *rx.borrow();
        Ok(Ok((waited, pending, next, value)))
    });
    if let Some(seen) = where_concurrent(backend, outcome) {
        assert_eq!(seen, (Err(watch::RecvError::Canceled), true, Ok(()), 1));
    }
}

// ---------------------------------------------------------------------------------------------
// broadcast

/// Every value reaches every receiver subscribed when it was sent, in order; then `Closed`.
fn broadcast_every_value_to_every_receiver(backend: Backend) {
    let seen = backend
        .run(|cx| async move {
            let (tx, mut first) = broadcast::channel(&cx, 8);
            tx.send(1).unwrap();
            let mut second = tx.subscribe(); // misses 1
            let tx2 = tx.clone();
            cx.spawn(move |_| async move {
                tx2.send(2).unwrap();
                tx2.send(3).unwrap();
                Ok(())
            })
            .await?;
            drop(tx);
            let mut seen = Vec::new();
            for rx in [&mut first, &mut second] {
                let mut got = Vec::new();
                loop {
                    match rx.recv().await {
                        Ok(n) => got.push(n),
                        Err(e) => {
                            assert_eq!(e, broadcast::RecvError::Closed);
                            break;
                        }
                    }
                }
                seen.push(got);
            }
            Ok(seen)
        })
        .unwrap();
    assert_eq!(seen, [vec![1, 2, 3], vec![2, 3]]);
}

/// A receiver that falls behind is told how many values it missed, then continues at the
/// oldest one kept; a value every receiver has read is released.
fn broadcast_lagging_receiver_is_told_and_continues(backend: Backend) {
    backend
        .run(|cx| async move {
            let (tx, mut slow) = broadcast::channel(&cx, 3);
            let mut fast = tx.subscribe();
            for n in 1..=5 {
                tx.send(n).unwrap();
                assert_eq!(fast.recv().await, Ok(n));
            }
            assert_eq!(tx.len(), 3, "4 and 5... and 3 kept for the slow one");
            assert_eq!(slow.recv().await, Err(broadcast::RecvError::Lagged(2)));
            assert_eq!(slow.len(), 3);
            for n in 3..=5 {
                assert_eq!(slow.recv().await, Ok(n));
            }
            assert!(tx.is_empty(), "read by everyone: released");
            drop(tx);
            assert_eq!(slow.recv().await, Err(broadcast::RecvError::Closed));
            assert_eq!(fast.try_recv(), Err(broadcast::TryRecvError::Closed));
            Ok(())
        })
        .unwrap();
}

/// A send with no receiver gives the value back; a dropped receiver releases what it had
/// not read.
fn broadcast_without_receivers(backend: Backend) {
    backend
        .run(|cx| async move {
            let (tx, rx) = broadcast::channel(&cx, 4);
            tx.send(Rc::new(1)).unwrap();
            tx.send(Rc::new(2)).unwrap();
            assert_eq!(tx.len(), 2);
            drop(rx);
            assert!(tx.is_empty(), "nobody left to read them");
            assert_eq!(tx.receiver_count(), 0);
            assert_eq!(tx.send(Rc::new(3)), Err(broadcast::SendError(Rc::new(3))));
            Ok(())
        })
        .unwrap();
}

/// Waiting receivers wake at each send, each at the time it came.
fn broadcast_waiting_receivers_wake(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let (tx, rx) = broadcast::channel(&cx, 2);
        let mut tasks = Vec::new();
        for (name, mut rx) in [("a", rx.resubscribe()), ("b", rx)] {
            let l = log.clone();
            tasks.push(spawn_concurrent!(cx, move |cx| async move {
                while let Ok(n) = rx.recv().await {
                    l.push(format!("{name}{n}@{}", cx.now_ms()));
                }
                Ok(())
            }));
        }
        for n in 1..=2 {
            cx.sleep(10).await?;
            tx.send(n).unwrap();
        }
        drop(tx);
        for task in tasks {
            task.await?;
        }
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_timed(backend, &log, "a1@10 b1@10 a2@20 b2@20");
    }
}

/// A `recv` canceled as a value comes reads nothing: the value is the receiver's next.
fn broadcast_canceled_recv_reads_nothing(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let (tx, rx) = broadcast::channel(&cx, 2);
        let rx = home(rx);
        let r = rx.clone();
        let waiter = spawn_concurrent!(cx, move |_| async move { Ok(lend(&r).recv().await) });
        cx.yield_now().await?;
        waiter.cancel();
        tx.send("v").unwrap(); // the same moment
        let waited = waiter.await?;
        let next = lend(&rx).try_recv();
        Ok(Ok((waited, next)))
    });
    if let Some((waited, next)) = where_concurrent(backend, outcome) {
        assert_eq!(waited, Err(broadcast::RecvError::Canceled));
        assert_eq!(next, Ok("v"), "still there for the next receive");
    }
}

conformance!(
    notify_one_stores_one_permit,
    notify_one_wakes_the_oldest_waiter,
    notify_waiters_wakes_all_and_stores_nothing,
    canceled_waiter_passes_the_notification_on,
    dropped_waiter_passes_the_notification_on,
    canceled_task_takes_no_permit,
    notified_nothing_can_give_is_a_deadlock,
    oneshot_delivers_closes_and_refuses,
    oneshot_recv_waits_for_the_value,
    oneshot_receiver_canceled_as_the_value_arrives_gets_it,
    oneshot_value_stays_for_a_later_recv,
    oneshot_inline_child_waiting_for_its_spawner,
    watch_changed_follows_the_versions,
    watch_receivers_track_what_they_have_seen,
    watch_canceled_changed_marks_nothing_seen,
    broadcast_every_value_to_every_receiver,
    broadcast_lagging_receiver_is_told_and_continues,
    broadcast_without_receivers,
    broadcast_waiting_receivers_wake,
    broadcast_canceled_recv_reads_nothing,
);

// ---------------------------------------------------------------------------------------------
// Seeded storms on fiber: random cancels and timeouts; every value and notification accounted.

#[cfg(feature = "fiber")]
mod storms {
    use super::*;
    use ioswap::FiberIo;

    const SEEDS: u64 = 250;

    /// A short random pause: nothing, a yield, or a sleep of a few virtual milliseconds.
    async fn pause(cx: &Cx) -> Result<(), Canceled> {
        match cx.random_below(3) {
            0 => Ok(()),
            1 => cx.yield_now().await,
            _ => cx.sleep(cx.random_below(4)).await,
        }
    }

    /// Whether the current task's cancel has been requested.
    fn cancel_requested(cx: &Cx) -> bool {
        cx.current_task().is_some_and(|t| t.is_cancel_requested())
    }

    /// What one broadcast receiver saw.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Seen {
        Value(u64),
        Lagged(u64),
    }

    #[derive(Default)]
    struct BroadcastLedger {
        /// Every value sent, in sending order.
        sent: Vec<u64>,
        /// Per receiver: how many values had been sent when it subscribed, and what it saw.
        receivers: Vec<(usize, Vec<Seen>)>,
        /// Receives given up because a sleep won the race.
        abandoned: u64,
        /// Receiver tasks that ended canceled.
        canceled: u64,
    }

    type Broadcasts = Rc<RefCell<BroadcastLedger>>;

    /// Reads `rx` until it closes or the task is canceled, sometimes giving a receive up to a
    /// timeout; records what it saw as receiver `me`.
    async fn broadcast_reader(
        cx: Cx,
        me: usize,
        rx: Home<broadcast::Receiver<u64>>,
        ledger: Broadcasts,
    ) -> Result<(), Canceled> {
        let mut rx = lend(&rx);
        loop {
            let received = if cx.random_below(2) == 0 {
                Some(rx.recv().await)
            } else {
                let wait = cx.random_below(5);
                let got = within(&cx, wait, rx.recv()).await;
                if got.is_none() {
                    ledger.borrow_mut().abandoned += 1;
                }
                got
            };
            let seen = match received {
                None => None,
                Some(Ok(v)) => Some(Seen::Value(v)),
                Some(Err(broadcast::RecvError::Lagged(n))) => Some(Seen::Lagged(n)),
                Some(Err(broadcast::RecvError::Closed)) => return Ok(()),
                Some(Err(broadcast::RecvError::Canceled)) => {
                    ledger.borrow_mut().canceled += 1;
                    return Err(Canceled);
                }
            };
            if let Some(seen) = seen {
                ledger.borrow_mut().receivers[me].1.push(seen);
            }
            pause(&cx).await?;
        }
    }

    fn broadcast_storm(seed: u64) -> BroadcastLedger {
        let ledger: Broadcasts = Rc::default();
        let l = ledger.clone();
        FiberIo::with_seed(seed)
            .run(|cx| async move {
                let capacity = [1, 2, 4, 16][(seed % 4) as usize];
                let (tx, first) = broadcast::channel::<u64>(&cx, capacity);
                let receivers = Rc::new(RefCell::new(Vec::new()));
                let subscribe = |rx: broadcast::Receiver<u64>| {
                    let mut ledger = l.borrow_mut();
                    let me = ledger.receivers.len();
                    let at = ledger.sent.len();
                    ledger.receivers.push((at, Vec::new()));
                    let rx = home(rx);
                    receivers.borrow_mut().push(rx.clone());
                    cx.spawn(|cx| broadcast_reader(cx, me, rx, l.clone()))
                };
                let mut readers = vec![subscribe(first)];
                let senders: Vec<_> = (0..3u64)
                    .map(|id| {
                        let (tx, l) = (tx.clone(), l.clone());
                        cx.spawn(move |cx| async move {
                            for n in 0..40 {
                                let value = id * 1_000 + n;
                                // Main keeps a receiver until the senders are done: never refused.
                                tx.send(value).expect("a receiver is subscribed");
                                l.borrow_mut().sent.push(value);
                                pause(&cx).await?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                // Subscribe and cancel readers at random while the senders run.
                while senders.iter().any(|s| !s.is_finished()) {
                    cx.sleep(cx.random_below(6)).await?;
                    match cx.random_below(3) {
                        0 => readers.push(subscribe(tx.subscribe())),
                        1 => {
                            let victim = cx.random_below(readers.len() as u64) as usize;
                            readers[victim].cancel();
                        }
                        _ => {}
                    }
                }
                drop(tx);
                for sender in senders {
                    sender.await?;
                }
                for reader in readers {
                    reader.await.ok();
                }
                // A canceled reader lost nothing: what it did not read is still in its receiver.
                for (me, rx) in receivers.borrow().iter().enumerate() {
                    let mut rx = lend(rx);
                    loop {
                        let seen = match rx.try_recv() {
                            Ok(v) => Seen::Value(v),
                            Err(broadcast::TryRecvError::Lagged(n)) => Seen::Lagged(n),
                            Err(broadcast::TryRecvError::Closed) => break,
                            Err(broadcast::TryRecvError::Empty) => panic!("no sender is left"),
                        };
                        l.borrow_mut().receivers[me].1.push(seen);
                    }
                }
                Ok(())
            })
            .unwrap();
        ledger.take()
    }

    /// Every receiver saw, from the moment it subscribed, each value sent in order, with a
    /// `Lagged(n)` for each gap of `n` values and nothing else: none lost, none twice.
    #[test]
    fn broadcast_storm_every_receiver_sees_every_value_or_a_lag() {
        let (mut lagged, mut abandoned, mut canceled, mut delivered) = (0, 0, 0, 0);
        for seed in 0..SEEDS {
            let ledger = broadcast_storm(seed);
            assert_eq!(ledger.sent.len(), 120, "seed {seed}");
            for (me, (start, seen)) in ledger.receivers.iter().enumerate() {
                let mut at = *start;
                for event in seen {
                    match *event {
                        Seen::Value(v) => {
                            assert_eq!(Some(&v), ledger.sent.get(at), "seed {seed} receiver {me}");
                            at += 1;
                            delivered += 1;
                        }
                        // Two in a row are possible: more values pushed out before it read again.
                        Seen::Lagged(n) => {
                            assert!(n > 0, "seed {seed} receiver {me}: {seen:?}");
                            at += n as usize;
                            lagged += n;
                        }
                    }
                }
                assert_eq!(at, ledger.sent.len(), "seed {seed} receiver {me}: {seen:?}");
            }
            abandoned += ledger.abandoned;
            canceled += ledger.canceled;
        }
        println!("{delivered} delivered, {lagged} lagged past, {abandoned} receives abandoned, {canceled} readers canceled");
        assert!(
            lagged > 100 && abandoned > 100 && canceled > 50,
            "the storm must storm"
        );
    }

    #[derive(Default)]
    struct OneshotLedger {
        /// Values whose send returned `Ok`.
        sent: Vec<u64>,
        /// Values a send gave back (the receiver was closed).
        returned: Vec<u64>,
        /// Values received, by their task or by the final drain.
        received: Vec<u64>,
        /// Receives that returned a value although their task's cancel had been requested.
        won_over_cancel: u64,
        /// Receives that returned `Canceled`.
        canceled: u64,
    }

    type Oneshots = Rc<RefCell<OneshotLedger>>;

    fn oneshot_storm(seed: u64) -> OneshotLedger {
        let ledger: Oneshots = Rc::default();
        let l = ledger.clone();
        FiberIo::with_seed(seed)
            .run(|cx| async move {
                let mut tasks = Vec::new();
                let mut receivers = Vec::new();
                for value in 0..40u64 {
                    let (tx, rx) = oneshot::channel(&cx);
                    let rx = home(rx);
                    receivers.push(rx.clone());
                    let ls = l.clone();
                    tasks.push(cx.spawn(move |cx| async move {
                        cx.sleep(cx.random_below(20)).await?;
                        match tx.send(value) {
                            Ok(()) => ls.borrow_mut().sent.push(value),
                            Err(back) => ls.borrow_mut().returned.push(back),
                        }
                        Ok(())
                    }));
                    let lr = l.clone();
                    tasks.push(cx.spawn(move |cx| async move {
                        let mut rx = lend(&rx);
                        loop {
                            let received = match cx.random_below(4) {
                                0 | 1 => rx.recv().await,
                                way => match within(&cx, cx.random_below(8), rx.recv()).await {
                                    Some(received) => received,
                                    None => {
                                        // Gave up; sometimes for good: a later send is refused.
                                        if way == 3 && cx.random_below(4) == 0 {
                                            rx.close();
                                        }
                                        continue;
                                    }
                                },
                            };
                            match received {
                                Ok(v) => {
                                    let mut ledger = lr.borrow_mut();
                                    ledger.received.push(v);
                                    ledger.won_over_cancel += u64::from(cancel_requested(&cx));
                                    return Ok(());
                                }
                                Err(oneshot::RecvError::Closed) => return Ok(()),
                                Err(oneshot::RecvError::Canceled) => {
                                    lr.borrow_mut().canceled += 1;
                                    return Err(Canceled);
                                }
                            }
                        }
                    }));
                }
                // Cancel random senders and receivers at random times; a sender canceled before it
                // sent drops its half, which closes the channel.
                while tasks.iter().any(|t| !t.is_finished()) && cx.random_below(10) != 0 {
                    cx.sleep(cx.random_below(3)).await?;
                    tasks[cx.random_below(tasks.len() as u64) as usize].cancel();
                }
                for task in tasks {
                    task.await.ok();
                }
                for rx in receivers {
                    if let Ok(v) = lend(&rx).try_recv() {
                        l.borrow_mut().received.push(v);
                    }
                }
                Ok(())
            })
            .unwrap();
        ledger.take()
    }

    fn sorted(values: &[u64]) -> Vec<u64> {
        let mut values = values.to_vec();
        values.sort_unstable();
        values
    }

    /// Each oneshot value either reaches its receiver exactly once (its task, or the receiver
    /// afterwards) or comes back to its sender: never lost, never twice, never both.
    #[test]
    fn oneshot_storm_every_value_received_or_returned() {
        let (mut won, mut canceled, mut returned) = (0, 0, 0);
        for seed in 0..SEEDS {
            let ledger = oneshot_storm(seed);
            assert_eq!(
                sorted(&ledger.received),
                sorted(&ledger.sent),
                "seed {seed}"
            );
            let both = [ledger.sent.clone(), ledger.returned.clone()].concat();
            let mut unique = sorted(&both);
            unique.dedup();
            assert_eq!(unique.len(), both.len(), "seed {seed}: sent and returned");
            won += ledger.won_over_cancel;
            canceled += ledger.canceled;
            returned += ledger.returned.len();
        }
        println!("{won} receives won over a cancel, {canceled} canceled, {returned} returned");
        assert!(
            won > 0 && canceled > 50 && returned > 20,
            "the storm must storm"
        );
    }

    #[derive(Default)]
    struct NotifyLedger {
        /// `notified()` calls that returned `Ok`.
        woken: u64,
        /// Waits given up to a timeout.
        abandoned: u64,
        /// Waits that returned `Canceled`.
        canceled: u64,
    }

    /// One producer hands `TOKENS` notifications out one at a time (the next only once the last
    /// was taken, so none is ever folded into a stored permit) to consumers that are canceled and
    /// replaced at random, and give waits up to timeouts.
    fn notify_storm(seed: u64) -> (NotifyLedger, bool, u64) {
        const TOKENS: u64 = 60;
        let ledger: Rc<RefCell<NotifyLedger>> = Rc::default();
        let l = ledger.clone();
        let (finished, extra) = FiberIo::with_seed(seed)
            .run(|cx| async move {
                let notify = Rc::new(Notify::new(&cx));
                let (ack, acks) = ioswap::channel::unbounded::<()>(&cx);
                let consumer = || {
                    let (notify, ack, l) = (notify.clone(), ack.clone(), l.clone());
                    cx.spawn(move |cx| async move {
                        loop {
                            let woke = if cx.random_below(2) == 0 {
                                Some(notify.notified().await)
                            } else {
                                within(&cx, cx.random_below(5), notify.notified()).await
                            };
                            match woke {
                                // Acknowledged before any suspend point: a cancel cannot come between.
                                Some(Ok(())) => {
                                    l.borrow_mut().woken += 1;
                                    ack.try_send(()).unwrap();
                                }
                                Some(Err(Canceled)) => {
                                    l.borrow_mut().canceled += 1;
                                    return Err::<(), _>(Canceled);
                                }
                                None => l.borrow_mut().abandoned += 1,
                            }
                            pause(&cx).await?;
                        }
                    })
                };
                let mut consumers: Vec<_> = (0..3).map(|_| consumer()).collect();
                let n = notify.clone();
                let producer = cx.spawn(move |cx| async move {
                    for _ in 0..TOKENS {
                        n.notify_one();
                        // Closed only once main gave up on a lost notification and dropped
                        // the consumers.
                        acks.recv().await.map_err(|_| Canceled)?;
                        pause(&cx).await?;
                    }
                    Ok(acks)
                });
                // Cancel a random consumer now and then, spawning another in its place. A lost
                // notification would leave the producer waiting: bounded by the virtual clock.
                while !producer.is_finished() && cx.now_ms() < 100_000 {
                    cx.sleep(cx.random_below(8)).await?;
                    let victim = cx.random_below(consumers.len() as u64) as usize;
                    consumers[victim].cancel();
                    consumers[victim] = consumer();
                }
                let finished = producer.is_finished();
                for c in &consumers {
                    c.cancel();
                }
                for c in consumers {
                    c.await.ok();
                }
                let mut extra = 0;
                if finished {
                    let acks = producer.await?;
                    while acks.try_recv().is_ok() {
                        extra += 1;
                    }
                    // No notification left over either: a stored permit would be one too many.
                    let mut left = Box::pin(notify.notified());
                    extra += u64::from(future::poll_once(&mut left).await.is_some());
                }
                Ok((finished, extra))
            })
            .unwrap();
        (ledger.take(), finished, extra)
    }

    /// Every `notify_one` wakes exactly one waiter, however the waiters are canceled or give up:
    /// a notification chosen for a waiter that leaves is passed on, never lost, never doubled.
    #[test]
    fn notify_storm_every_notification_wakes_exactly_one_waiter() {
        let (mut abandoned, mut canceled) = (0, 0);
        for seed in 0..SEEDS {
            let (ledger, finished, extra) = notify_storm(seed);
            assert!(finished, "seed {seed}: a notification was lost");
            assert_eq!(extra, 0, "seed {seed}: a notification woke two waiters");
            assert_eq!(ledger.woken, 60, "seed {seed}");
            abandoned += ledger.abandoned;
            canceled += ledger.canceled;
        }
        println!("{abandoned} waits abandoned, {canceled} canceled");
        assert!(abandoned > 100 && canceled > 100, "the storm must storm");
    }

    #[test]
    fn storms_are_reproducible() {
        for seed in [5, 77] {
            let (a, b) = (broadcast_storm(seed), broadcast_storm(seed));
            assert_eq!(a.sent, b.sent);
            assert_eq!(a.receivers, b.receivers);
            let (a, b) = (oneshot_storm(seed), oneshot_storm(seed));
            assert_eq!((a.sent, a.received), (b.sent, b.received));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Re-entrant wakers and clones, and the broadcast capacity limit, on fiber.

/// Wakers and `Clone`s that use the primitive that called them, and ones that panic: polled by
/// hand with a [`Probe`](support::Probe) waker.
#[cfg(feature = "fiber")]
mod reentrancy {
    use std::cell::RefCell;
    use std::pin::pin;
    use std::rc::Rc;
    use std::task::{Poll, Waker};

    use ioswap::sync::broadcast::{self, TryRecvError};
    use ioswap::sync::Notify;
    use ioswap::FiberIo;

    use super::support::{on_wake, panic_of, poll_with, Probe};

    /// A waker runs while `notify_one` readies a waiter, or a waiter that gives up passes its
    /// notification on, and may use the `Notify`. (It used to run inside the `Notify`'s
    /// `RefCell` borrow: "already mutably borrowed".)
    #[test]
    fn a_waker_may_use_the_notify_that_woke_it() {
        FiberIo::new()
            .run(|cx| async move {
                let notify = Rc::new(Notify::new(&cx));
                let seen = Rc::new(RefCell::new(Vec::new()));
                on_wake(Some(Rc::new({
                    let (notify, seen) = (notify.clone(), seen.clone());
                    move || seen.borrow_mut().push(format!("{notify:?}"))
                })));
                let (probe, waker) = Probe::new();

                // Woken by notify_one.
                let mut first = pin!(notify.notified());
                assert!(poll_with(first.as_mut(), &waker).is_pending());
                notify.notify_one();
                assert_eq!(*seen.borrow(), ["Notify { waiters: 0, permit: false }"]);
                assert!(matches!(
                    poll_with(first.as_mut(), &waker),
                    Poll::Ready(Ok(()))
                ));

                // Passed on by a waiter that gives up.
                let mut chosen = pin!(notify.notified());
                assert!(poll_with(chosen.as_mut(), Waker::noop()).is_pending());
                let mut next = pin!(notify.notified());
                assert!(poll_with(next.as_mut(), &waker).is_pending());
                notify.notify_one(); // chooses `chosen`...
                assert_eq!(probe.wakes(), 1);
                chosen.set(notify.notified()); // ...which gives up: `next` gets it
                assert_eq!(probe.wakes(), 2);
                assert_eq!(seen.borrow()[1], "Notify { waiters: 0, permit: false }");
                assert!(matches!(
                    poll_with(next.as_mut(), &waker),
                    Poll::Ready(Ok(()))
                ));
                on_wake(None);
                Ok(())
            })
            .unwrap();
    }

    thread_local! {
        /// What cloning a [`Touchy`] runs first.
        static ON_CLONE: RefCell<Option<Rc<dyn Fn()>>> = RefCell::new(None);
    }

    fn on_clone(run: Option<Rc<dyn Fn()>>) {
        ON_CLONE.with(|slot| *slot.borrow_mut() = run);
    }

    /// A value whose `Clone` runs [`ON_CLONE`] (which may panic, or use the channel).
    #[derive(Debug, PartialEq)]
    struct Touchy(u32);

    impl Clone for Touchy {
        fn clone(&self) -> Touchy {
            let run = ON_CLONE.with(|slot| slot.borrow().clone());
            if let Some(run) = run {
                run();
            }
            Touchy(self.0)
        }
    }

    /// A receive whose clone panics reads nothing: the value is still there for that
    /// receiver. (The receiver used to be moved past the value before the clone: a panicking
    /// clone lost the value.)
    #[test]
    fn a_broadcast_clone_that_panics_loses_nothing() {
        FiberIo::new()
            .run(|cx| async move {
                let (tx, mut rx1) = broadcast::channel(&cx, 4);
                let mut rx2 = tx.subscribe();
                tx.send(Touchy(1)).unwrap();
                on_clone(Some(Rc::new(|| panic!("a clone that panics"))));
                let panic = panic_of(|| drop(rx1.try_recv()));
                assert_eq!(panic.as_deref(), Some("a clone that panics"));
                on_clone(None);
                assert_eq!(rx1.try_recv(), Ok(Touchy(1)), "still there after the panic");
                assert_eq!(rx2.try_recv(), Ok(Touchy(1)));
                assert!(tx.is_empty());
                Ok(())
            })
            .unwrap();
    }

    /// A clone may read the channel it is received from. (It used to run inside the channel's
    /// mutable borrow: "already mutably borrowed".)
    #[test]
    fn a_broadcast_clone_may_read_the_channel() {
        FiberIo::new()
            .run(|cx| async move {
                let (tx, mut rx1) = broadcast::channel(&cx, 4);
                let mut rx2 = tx.subscribe();
                let tx = Rc::new(tx);
                let seen = Rc::new(RefCell::new(Vec::new()));
                on_clone(Some(Rc::new({
                    let (tx, seen) = (tx.clone(), seen.clone());
                    move || seen.borrow_mut().push((tx.len(), tx.receiver_count()))
                })));
                tx.send(Touchy(2)).unwrap();
                assert_eq!(rx1.try_recv(), Ok(Touchy(2)));
                assert_eq!(*seen.borrow(), [(1, 2)]);
                on_clone(None);
                assert_eq!(rx2.try_recv(), Ok(Touchy(2)), "the last reader takes it");
                assert_eq!(rx1.try_recv(), Err(TryRecvError::Empty));
                Ok(())
            })
            .unwrap();
    }

    /// A capacity is a bound, not an allocation: the largest allowed one makes a channel that
    /// works, and a larger one is refused with a message that says so. (The ring used to be
    /// allocated to the full capacity up front: `usize::MAX` panicked with "capacity overflow",
    /// and a merely huge one aborted the process on the allocation.)
    #[test]
    fn broadcast_capacity_is_a_bound_not_an_allocation() {
        FiberIo::new()
            .run(|cx| async move {
                let (tx, mut rx) = broadcast::channel(&cx, broadcast::MAX_CAPACITY);
                for n in 0..3u64 {
                    tx.send(n).unwrap();
                }
                assert_eq!((rx.try_recv(), tx.len()), (Ok(0), 2));
                let refused = panic_of(|| drop(broadcast::channel::<u64>(&cx, usize::MAX)));
                assert!(
                    refused
                        .as_deref()
                        .is_some_and(|m| m.contains("broadcast::MAX_CAPACITY")),
                    "{refused:?}"
                );
                Ok(())
            })
            .unwrap();
    }
}
