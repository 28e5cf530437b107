//! Semaphore, Mutex, RwLock and Barrier on every backend: FIFO order, the `try_*` variants,
//! permits given back on drop, cancel-safety (a canceled waiter holds nothing; a hand-over wins
//! over a cancel in the same turn), close, and what the blocking backend does with a lock held
//! across an inline spawn. Then a seeded storm on fiber.
mod support;

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::task::Poll;

use futures_lite::future;
use ioswap::sync::{
    AcquireError, Barrier, Mutex, RwLock, Semaphore, SemaphorePermit, TryAcquireError,
};
use ioswap::{Backend, Canceled, Cx, SpawnOptions};
use support::{assert_time, assert_timed, expect_deadlock, where_concurrent, Log};

/// A future that is ready once `flag` is set (and pending, without registering a waker, until
/// then): raced first against an acquire, it makes the task drop its acquire at a chosen moment.
fn when_set(flag: Rc<Cell<bool>>) -> impl Future<Output = Option<SemaphorePermit>> {
    std::future::poll_fn(move |_| {
        if flag.get() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    })
}

/// Waiters are served in the order they came, and a large request at the head blocks later
/// small ones even while enough permits are free for them (no starvation of the large one).
fn semaphore_serves_waiters_first_come_first_served(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let sem = Rc::new(Semaphore::new(&cx, 2));
        let first = sem.acquire(1).await.unwrap();
        let second = sem.acquire(1).await.unwrap();
        let mut tasks = Vec::new();
        for (name, n) in [("a", 2), ("b", 1), ("c", 1)] {
            let (sem, log) = (sem.clone(), log.clone());
            tasks.push(spawn_concurrent!(cx, move |cx| async move {
                let permit = sem.acquire(n).await.unwrap();
                log.push(format!("{name}@{}", cx.now_ms()));
                cx.sleep(10).await?;
                drop(permit);
                Ok(())
            }));
            cx.sleep(1).await?; // queue them in this order, on real clocks too
        }
        cx.sleep(7).await?;
        drop(first); // t = 10: one free, but "a" wants two and comes first
        assert_eq!(sem.available_permits(), 1);
        assert_eq!(sem.try_acquire(1).unwrap_err(), TryAcquireError::NoPermits);
        cx.sleep(10).await?;
        drop(second); // t = 20: "a" gets both
        for task in tasks {
            task.await?;
        }
        assert_eq!(sem.available_permits(), 2);
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_timed(backend, &log, "a@20 b@30 c@30");
    }
}

/// `try_acquire`, `try_lock`, `try_read` and `try_write` never wait: they take what is free
/// now, or say no and take nothing.
fn try_variants_never_wait(backend: Backend) {
    backend
        .run(|cx| async move {
            let sem = Semaphore::new(&cx, 3);
            let two = sem.try_acquire(2).unwrap();
            assert_eq!(two.num_permits(), 2);
            assert_eq!(sem.try_acquire(2).unwrap_err(), TryAcquireError::NoPermits);
            let one = sem.try_acquire(1).unwrap();
            assert_eq!(sem.available_permits(), 0);
            assert!(sem.try_acquire(0).is_ok(), "nothing is always free");
            drop((two, one));
            assert_eq!(sem.available_permits(), 3);

            let mutex = Mutex::new(&cx, 5);
            let guard = mutex.try_lock().unwrap();
            assert!(mutex.try_lock().is_none());
            drop(guard);
            assert_eq!(*mutex.try_lock().unwrap(), 5);

            let lock = RwLock::new(&cx, 'x');
            let (r1, r2) = (lock.try_read().unwrap(), lock.try_read().unwrap());
            assert!(lock.try_write().is_none());
            drop((r1, r2));
            let mut w = lock.try_write().unwrap();
            *w = 'y';
            assert!(lock.try_read().is_none());
            assert!(lock.try_write().is_none());
            drop(w);
            assert_eq!(*lock.try_read().unwrap(), 'y');
            Ok(())
        })
        .unwrap();
}

/// Dropping a permit or a guard gives the permits back; `forget` keeps them out; `get_mut` and
/// `into_inner` reach the value without locking.
fn permits_and_locks_come_back_on_drop(backend: Backend) {
    backend
        .run(|cx| async move {
            let sem = Semaphore::new(&cx, 4);
            for n in 0..=4 {
                let permit = sem.acquire(n).await.unwrap();
                assert_eq!(sem.available_permits(), 4 - n);
                drop(permit);
                assert_eq!(sem.available_permits(), 4);
            }
            sem.acquire(3).await.unwrap().forget();
            assert_eq!(sem.available_permits(), 1);
            sem.add_permits(3);
            assert_eq!(sem.available_permits(), 4);

            let mut mutex = Mutex::new(&cx, Vec::new());
            for n in 0..3 {
                mutex.lock().await?.push(n);
            }
            mutex.get_mut().push(3);
            assert_eq!(mutex.into_inner(), [0, 1, 2, 3]);

            let mut lock = RwLock::new(&cx, 0);
            for _ in 0..3 {
                *lock.write().await? += 1;
                let (a, b) = (lock.read().await?, lock.read().await?);
                assert_eq!(*a, *b);
            }
            *lock.get_mut() += 1;
            assert_eq!(lock.into_inner(), 4);
            Ok(())
        })
        .unwrap();
}

/// A waiter canceled while it waits gets `Canceled`, holds nothing and leaves the queue: the
/// next waiter gets what it was waiting for, and at the end every permit is back.
fn canceled_waiter_holds_nothing(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let sem = Rc::new(Semaphore::new(&cx, 1));
        let held = sem.acquire(1).await.unwrap();
        let s = sem.clone();
        let canceled =
            spawn_concurrent!(cx, move |_| async move { Ok(s.acquire(1).await.map(drop)) });
        cx.sleep(1).await?;
        let s = sem.clone();
        let next = spawn_concurrent!(cx, move |cx| async move {
            let permit = s.acquire(1).await.unwrap();
            Ok((cx.now_ms(), permit.num_permits()))
        });
        cx.sleep(4).await?;
        canceled.cancel();
        let canceled = canceled.await;
        cx.sleep(5).await?;
        drop(held); // t = 10: straight to `next`
        let next = next.await?;
        Ok(Ok((canceled, next, sem.available_permits())))
    });
    if let Some((canceled, (at, permits), available)) = where_concurrent(backend, outcome) {
        assert_eq!(canceled, Ok(Err(AcquireError::Canceled)));
        assert_time(backend, at, 10);
        assert_eq!((permits, available), (1, 1));
    }
}

/// A canceled mutex waiter and a canceled writer hold nothing either: the lock goes to the next
/// waiter (for the writer, the readers queued behind it get in).
fn canceled_lock_waiters_hold_nothing(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let mutex = Rc::new(Mutex::new(&cx, 0));
        let guard = mutex.lock().await?;
        let m = mutex.clone();
        let quitter = spawn_concurrent!(cx, move |_| async move {
            let mut guard = m.lock().await?;
            *guard += 100;
            Ok(())
        });
        cx.sleep(1).await?;
        let m = mutex.clone();
        let stayer = spawn_concurrent!(cx, move |_| async move {
            *m.lock().await? += 1;
            Ok(())
        });
        cx.sleep(1).await?;
        quitter.cancel();
        let quit = quitter.await; // gone from the queue before the lock is let go
        drop(guard);
        stayer.await?;

        let lock = Rc::new(RwLock::new(&cx, 0));
        let reader = lock.read().await?;
        let l = lock.clone();
        let writer = spawn_concurrent!(cx, move |_| async move {
            *l.write().await? += 100;
            Ok(())
        });
        cx.sleep(1).await?;
        let l = lock.clone();
        let late_reader = spawn_concurrent!(cx, move |cx| async move {
            let value = *l.read().await?;
            Ok((value, cx.now_ms()))
        });
        cx.sleep(1).await?;
        assert!(
            lock.try_read().is_none(),
            "a waiting writer blocks new readers"
        );
        writer.cancel();
        let wrote = writer.await;
        let late = late_reader.await?; // in as soon as the writer left, beside `reader`
        drop(reader);
        let value = *lock.read().await?;
        let count = *mutex.lock().await?;
        Ok(Ok((quit, count, wrote, late.0, value)))
    });
    if let Some(seen) = where_concurrent(backend, outcome) {
        assert_eq!(seen, (Err(Canceled), 1, Err(Canceled), 0, 0));
    }
}

/// Completion wins: permits handed to a waiter in the same turn as its cancel are its own (it
/// returns `Ok`; the cancel comes at its next suspend point, where it unwinds and gives them
/// back). Dropped instead while holding the hand-over, its acquire passes them to the next
/// waiter. Either way nothing is lost or held twice.
fn handed_over_permits_win_over_a_cancel(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let sem = Rc::new(Semaphore::new(&cx, 1));
        let held = sem.acquire(1).await.unwrap();
        let (s, l) = (sem.clone(), log.clone());
        let winner = spawn_concurrent!(cx, move |cx| async move {
            let permit = s.acquire(1).await;
            l.push(format!("acquired:{}", permit.is_ok()));
            let slept = cx.sleep(1).await;
            l.push(format!("then:{slept:?}"));
            slept
        });
        cx.sleep(2).await?;
        drop(held); // handed to `winner`...
        winner.cancel(); // ...which is canceled in the same turn
        let joined = winner.await;
        assert_eq!(sem.available_permits(), 1, "given back as it unwound");

        // Dropping an acquire that was handed the permit: the permit goes on to the next one.
        let held = sem.acquire(1).await.unwrap();
        let give_up = Rc::new(Cell::new(false));
        let (s, g, l) = (sem.clone(), give_up.clone(), log.clone());
        let dropper = spawn_concurrent!(cx, move |_| async move {
            let got = future::or(when_set(g), async { s.acquire(1).await.ok() }).await;
            l.push(format!("dropper:{}", got.is_some()));
            Ok(())
        });
        cx.sleep(1).await?;
        let (s, l) = (sem.clone(), log.clone());
        let next = spawn_concurrent!(cx, move |_| async move {
            let permit = s.acquire(1).await.unwrap();
            l.push("next");
            drop(permit);
            Ok(())
        });
        cx.sleep(1).await?;
        give_up.set(true);
        drop(held); // handed to `dropper`, which gives up on it the moment it runs
        dropper.await?;
        next.await?;
        Ok(Ok((joined, log.joined(), sem.available_permits())))
    });
    if let Some((joined, log, available)) = where_concurrent(backend, outcome) {
        assert_eq!(joined, Err(Canceled));
        assert_eq!(
            log, "acquired:true then:Err(Canceled) dropper:false next",
            "completion wins, then the cancel lands"
        );
        assert_eq!(available, 1);
    }
}

/// The same for a barrier: a waiter the barrier released in the same turn as its cancel
/// returns `Ok`; one canceled before withdraws its arrival.
fn barrier_release_wins_over_a_cancel(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let barrier = Rc::new(Barrier::new(&cx, 2));
        let b = barrier.clone();
        let quitter = spawn_concurrent!(cx, move |_| async move { b.wait().await.map(drop) });
        cx.sleep(1).await?;
        quitter.cancel();
        let quit = quitter.await;
        let withdrawn = barrier.arrived();
        let b = barrier.clone();
        let released = spawn_concurrent!(cx, move |_| async move {
            let met = b.wait().await?;
            Ok(met.is_leader())
        });
        cx.sleep(1).await?;
        let leader = barrier.wait().await?.is_leader(); // releases `released`...
        released.cancel(); // ...canceled in the same turn
        Ok(Ok((
            quit,
            withdrawn,
            leader,
            released.await,
            barrier.arrived(),
        )))
    });
    if let Some(seen) = where_concurrent(backend, outcome) {
        assert_eq!(seen, (Err(Canceled), 0, true, Ok(false), 0));
    }
}

/// Closing wakes every waiter with `Closed` and refuses later acquires; permits held across the
/// close still come back on drop.
fn close_wakes_waiters_with_closed(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let sem = Rc::new(Semaphore::new(&cx, 1));
        let held = sem.acquire(1).await.unwrap();
        let mut waiters = Vec::new();
        for n in 1..=3 {
            let s = sem.clone();
            waiters.push(spawn_concurrent!(cx, move |_| async move {
                Ok(s.acquire(n).await.map(drop))
            }));
        }
        cx.sleep(1).await?;
        assert!(sem.close());
        assert!(!sem.close());
        let mut got = Vec::new();
        for waiter in waiters {
            got.push(waiter.await?);
        }
        assert_eq!(sem.acquire(1).await.unwrap_err(), AcquireError::Closed);
        assert_eq!(sem.try_acquire(1).unwrap_err(), TryAcquireError::Closed);
        drop(held);
        Ok(Ok((got, sem.is_closed(), sem.available_permits())))
    });
    if let Some((got, closed, available)) = where_concurrent(backend, outcome) {
        assert_eq!(got, [Err(AcquireError::Closed); 3]);
        assert!(closed);
        assert_eq!(available, 1);
    }
}

/// The mutex is handed on in the order tasks asked, each holding it across suspends.
fn mutex_is_first_come_first_served(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let mutex = Rc::new(Mutex::new(&cx, Vec::new()));
        let guard = mutex.lock().await?;
        let mut tasks = Vec::new();
        for name in ["a", "b", "c"] {
            let (mutex, log) = (mutex.clone(), log.clone());
            tasks.push(spawn_concurrent!(cx, move |cx| async move {
                let mut order = mutex.lock().await?;
                log.push(format!("{name}@{}", cx.now_ms()));
                cx.sleep(10).await?;
                order.push(name);
                Ok(())
            }));
            cx.sleep(1).await?;
        }
        cx.sleep(7).await?;
        drop(guard);
        for task in tasks {
            task.await?;
        }
        let order = mutex.lock().await?.clone();
        Ok(Ok((log.joined(), order)))
    });
    if let Some((log, order)) = where_concurrent(backend, outcome) {
        assert_timed(backend, &log, "a@10 b@20 c@30");
        assert_eq!(order, ["a", "b", "c"]);
    }
}

/// Readers share the lock; a writer waits for them, and readers that come after a waiting
/// writer wait for it.
fn waiting_writer_blocks_later_readers(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let lock = Rc::new(RwLock::new(&cx, 0));
        let mut tasks = Vec::new();
        // Two readers at t = 0 and 1, a writer at 2, a reader at 3.
        for (name, write) in [("r1", false), ("r2", false), ("w", true), ("r3", false)] {
            let (lock, log) = (lock.clone(), log.clone());
            tasks.push(spawn_concurrent!(cx, move |cx| async move {
                if write {
                    let mut value = lock.write().await?;
                    log.push(format!("{name}@{}", cx.now_ms()));
                    cx.sleep(10).await?;
                    *value += 1;
                } else {
                    let value = lock.read().await?;
                    log.push(format!("{name}={}@{}", *value, cx.now_ms()));
                    cx.sleep(10).await?;
                }
                Ok(())
            }));
            cx.sleep(1).await?;
        }
        for task in tasks {
            task.await?;
        }
        Ok(Ok(log.joined()))
    });
    if let Some(log) = where_concurrent(backend, outcome) {
        assert_timed(backend, &log, "r1=0@0 r2=0@1 w@11 r3=1@21");
    }
}

/// `n` tasks leave the barrier together, the last to arrive leading, generation after
/// generation.
fn barrier_releases_together_generation_after_generation(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let log = Log::new();
        let barrier = Rc::new(Barrier::new(&cx, 3));
        let mut tasks = Vec::new();
        for i in 0..3u64 {
            let (barrier, log) = (barrier.clone(), log.clone());
            tasks.push(spawn_concurrent!(cx, move |cx| async move {
                for round in 0..2 {
                    cx.sleep(5 * (i + 1)).await?;
                    let met = barrier.wait().await?;
                    if met.is_leader() {
                        log.push(format!("round{round}:leader{i}@{}", cx.now_ms()));
                    }
                }
                Ok(cx.now_ms())
            }));
        }
        let mut left_at = Vec::new();
        for task in tasks {
            left_at.push(task.await?);
        }
        Ok(Ok((log.joined(), left_at)))
    });
    if let Some((log, left_at)) = where_concurrent(backend, outcome) {
        // Round 0 fills at t = 15 (the slowest), round 1 at 15 + 15 = 30.
        assert_timed(backend, &log, "round0:leader2@15 round1:leader2@30");
        if matches!(backend, Backend::Fiber) {
            assert_eq!(left_at, [30, 30, 30]);
        }
    }
}

/// An acquire raced against a timeout (the body canceled at the deadline) holds nothing when
/// it gives up, on every backend, blocking included: its deadline is a timer, so blocking's
/// inline wait ends there.
fn timed_out_acquire_holds_nothing(backend: Backend) {
    let (outcome, available) = backend
        .run(|cx| async move {
            let sem = Rc::new(Semaphore::new(&cx, 1));
            let held = sem.acquire(1).await.unwrap();
            let s = sem.clone();
            let outcome = ioswap::timeout(&cx, 20, move |_: Cx| async move {
                s.acquire(1).await.map(drop).map_err(|_| Canceled)
            })
            .await?;
            let at = cx.now_ms();
            drop(held);
            let again = sem.try_acquire(1).map(|p| p.num_permits());
            Ok((
                (outcome.map_err(|e| e.deadline_ms), at, again),
                sem.available_permits(),
            ))
        })
        .unwrap();
    let (timed_out, at, again) = outcome;
    assert!(timed_out.is_err());
    match backend {
        Backend::Fiber => assert_eq!(at, 20),
        _ => assert!(at >= 20, "gave up at {at} ms, before its deadline"), // a real clock
    }
    assert_eq!((again, available), (Ok(1), 1));
}

/// An acquire nothing can ever satisfy is a deadlock naming the task and its park, on every
/// backend.
fn acquire_nothing_can_satisfy_is_a_deadlock(backend: Backend) {
    let deadlock = expect_deadlock(backend.run(|cx| async move {
        let sem = Semaphore::new(&cx, 1);
        let got = sem.acquire(2).await.is_ok();
        Ok(got)
    }));
    assert_eq!(deadlock.blocked.len(), 1);
    assert_eq!(deadlock.blocked[0].name, "main");
    assert_eq!(deadlock.blocked[0].parked_on, "semaphore acquire");
}

/// A lock held across a spawn whose task wants it: fine where tasks overlap (the child gets it
/// once the spawner lets go); on blocking the child runs inline while its spawner holds the
/// lock, so nothing can release it, and the run ends with a deadlock report naming the child —
/// not a hang. (Spawn it with `SpawnOptions::concurrent()` to be refused up front instead.)
fn lock_held_across_an_inline_spawn(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let mutex = Rc::new(Mutex::new(&cx, 0));
        let guard = mutex.lock().await?;
        let m = mutex.clone();
        let child = cx
            .spawn_with(SpawnOptions::new().name("locker"), move |_| async move {
                *m.lock().await? += 1;
                Ok(())
            })
            .expect("not a concurrent spawn");
        cx.sleep(1).await?;
        drop(guard);
        let joined = child.await;
        let value = *mutex.lock().await?;
        Ok((joined, value))
    });
    match backend {
        Backend::Blocking => {
            let deadlock = expect_deadlock(outcome);
            let locker = deadlock.blocked.iter().find(|t| t.name == "locker");
            assert_eq!(locker.unwrap().parked_on, "mutex lock", "{deadlock}");
        }
        _ => assert_eq!(outcome.unwrap(), (Ok(()), 1)),
    }
}

/// A barrier its spawner is to meet: fine where tasks overlap; on blocking the inline child
/// waits for a spawner that cannot run until it is done, and the run ends with a deadlock
/// report naming the child, not a hang.
fn barrier_met_by_an_inline_spawn(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        let barrier = Rc::new(Barrier::new(&cx, 2));
        let b = barrier.clone();
        let child = cx
            .spawn_with(SpawnOptions::new().name("meeter"), move |_| async move {
                Ok(b.wait().await?.is_leader())
            })
            .expect("not a concurrent spawn");
        let main_leads = barrier.wait().await?.is_leader();
        Ok((main_leads, child.await?))
    });
    match backend {
        Backend::Blocking => {
            let deadlock = expect_deadlock(outcome);
            let meeter = deadlock.blocked.iter().find(|t| t.name == "meeter");
            assert_eq!(meeter.unwrap().parked_on, "barrier wait", "{deadlock}");
        }
        // The child is deferred, so main arrives first and the child leads.
        _ => assert_eq!(outcome.unwrap(), (false, true)),
    }
}

conformance!(
    semaphore_serves_waiters_first_come_first_served,
    try_variants_never_wait,
    permits_and_locks_come_back_on_drop,
    canceled_waiter_holds_nothing,
    canceled_lock_waiters_hold_nothing,
    handed_over_permits_win_over_a_cancel,
    barrier_release_wins_over_a_cancel,
    close_wakes_waiters_with_closed,
    mutex_is_first_come_first_served,
    waiting_writer_blocks_later_readers,
    barrier_releases_together_generation_after_generation,
    timed_out_acquire_holds_nothing,
    acquire_nothing_can_satisfy_is_a_deadlock,
    lock_held_across_an_inline_spawn,
    barrier_met_by_an_inline_spawn,
);

/// The seeded storm on fiber: workers acquire and release random permit counts, lock a
/// mutex-protected counter and an RwLock, each way at random (a plain await, a timeout, a race
/// against a sleep that drops the waiting future, a `try_*`), while the main task cancels random
/// workers at random times. No permit is ever lost or duplicated.
#[cfg(feature = "fiber")]
mod storm {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use futures_lite::future;
    use ioswap::sync::{Mutex, RwLock, Semaphore, SemaphorePermit};
    use ioswap::{Canceled, Cx, FiberIo};

    const SEEDS: u64 = 250;
    const WORKERS: u64 = 8;
    const ROUNDS: u64 = 25;

    #[derive(Default)]
    struct Ledger {
        total: usize,
        /// Permits held right now by the workers, and the most ever held at once.
        held: Cell<usize>,
        max_held: Cell<usize>,
        /// Increments of the mutex-protected counter that completed.
        increments: Cell<u64>,
        /// A task is between reading and writing the counter.
        in_critical: Cell<bool>,
        /// RwLock holders now.
        readers: Cell<usize>,
        writer: Cell<bool>,
        /// Acquires that returned `Ok` although their task's cancel had been requested.
        won_over_cancel: Cell<u64>,
        /// Acquires that ended `Canceled`, or whose future was dropped while it waited.
        gave_up: Cell<u64>,
        granted: Cell<u64>,
        violations: RefCell<Vec<String>>,
    }

    impl Ledger {
        fn violation(&self, what: String) {
            self.violations.borrow_mut().push(what);
        }
    }

    /// Permits a worker holds, counted in the ledger until dropped (also when the worker
    /// unwinds from a cancel while holding them).
    struct Held {
        ledger: Rc<Ledger>,
        permit: Option<SemaphorePermit>,
    }

    impl Held {
        fn new(ledger: &Rc<Ledger>, cx: &Cx, permit: SemaphorePermit) -> Held {
            let held = ledger.held.get() + permit.num_permits();
            ledger.held.set(held);
            ledger.max_held.set(ledger.max_held.get().max(held));
            if held > ledger.total {
                ledger.violation(format!("{held} permits held of {}", ledger.total));
            }
            ledger.granted.set(ledger.granted.get() + 1);
            if cx.current_task().is_some_and(|t| t.is_cancel_requested()) {
                ledger.won_over_cancel.set(ledger.won_over_cancel.get() + 1);
            }
            Held {
                ledger: ledger.clone(),
                permit: Some(permit),
            }
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            let permit = self.permit.take().expect("held until dropped");
            self.ledger
                .held
                .set(self.ledger.held.get() - permit.num_permits());
        }
    }

    fn random(cx: &Cx, n: u64) -> u64 {
        cx.random_below(n)
    }

    async fn pause(cx: &Cx) -> Result<(), Canceled> {
        match random(cx, 3) {
            0 => Ok(()),
            1 => cx.yield_now().await,
            _ => cx.sleep(random(cx, 4)).await,
        }
    }

    /// Takes `n` permits one of four ways; `Ok(None)`: gave up (try, timeout, lost race).
    async fn acquire(
        cx: &Cx,
        sem: &Rc<Semaphore>,
        n: usize,
        ledger: &Rc<Ledger>,
    ) -> Result<Option<Held>, Canceled> {
        let permit = match random(cx, 4) {
            0 => match sem.acquire(n).await {
                Ok(permit) => Some(permit),
                Err(_) => {
                    ledger.gave_up.set(ledger.gave_up.get() + 1);
                    return Err(Canceled);
                }
            },
            1 => sem.try_acquire(n).ok(),
            2 => {
                let s = sem.clone();
                let wait = random(cx, 5);
                let timed = ioswap::timeout(cx, wait, move |_: Cx| async move {
                    s.acquire(n).await.map_err(|_| Canceled)
                })
                .await?;
                timed.ok()
            }
            _ => {
                let wait = random(cx, 5);
                let slept = async {
                    cx.sleep(wait).await?;
                    ledger.gave_up.set(ledger.gave_up.get() + 1);
                    Ok(None)
                };
                let acquired = async { sem.acquire(n).await.map(Some).map_err(|_| Canceled) };
                future::or(slept, acquired).await?
            }
        };
        Ok(permit.map(|permit| Held::new(ledger, cx, permit)))
    }

    async fn work(
        cx: Cx,
        sem: Rc<Semaphore>,
        counter: Rc<Mutex<u64>>,
        lock: Rc<RwLock<u64>>,
        ledger: Rc<Ledger>,
    ) -> Result<(), Canceled> {
        for _ in 0..ROUNDS {
            match random(&cx, 3) {
                0 => {
                    let n = 1 + random(&cx, ledger.total as u64) as usize;
                    if let Some(held) = acquire(&cx, &sem, n, &ledger).await? {
                        pause(&cx).await?;
                        drop(held);
                    }
                }
                1 => {
                    let guard = if random(&cx, 2) == 0 {
                        Some(counter.lock().await?)
                    } else {
                        let wait = random(&cx, 5);
                        let slept = async {
                            cx.sleep(wait).await?;
                            Ok(None)
                        };
                        future::or(slept, async { counter.lock().await.map(Some) }).await?
                    };
                    if let Some(mut guard) = guard {
                        if ledger.in_critical.replace(true) {
                            ledger.violation("two tasks inside the mutex".into());
                        }
                        let read = *guard;
                        let paused = pause(&cx).await;
                        ledger.in_critical.set(false);
                        paused?;
                        *guard = read + 1;
                        ledger.increments.set(ledger.increments.get() + 1);
                    }
                }
                _ => {
                    if random(&cx, 3) == 0 {
                        let mut value = lock.write().await?;
                        if ledger.writer.replace(true) || ledger.readers.get() > 0 {
                            ledger.violation("a writer beside another holder".into());
                        }
                        let paused = pause(&cx).await;
                        ledger.writer.set(false);
                        paused?;
                        *value += 1;
                    } else {
                        let value = lock.read().await?;
                        ledger.readers.set(ledger.readers.get() + 1);
                        if ledger.writer.get() {
                            ledger.violation("a reader beside a writer".into());
                        }
                        let _ = *value;
                        let paused = pause(&cx).await;
                        ledger.readers.set(ledger.readers.get() - 1);
                        paused?;
                    }
                }
            }
            pause(&cx).await?;
        }
        Ok(())
    }

    /// One run; gives the ledger, the final (available permits, counter), and the trace hash.
    fn run_seed(seed: u64) -> (Rc<Ledger>, (usize, u64, bool), u64) {
        let fiber = FiberIo::with_seed(seed);
        let ledger = Rc::new(Ledger {
            total: 1 + (seed % 5) as usize,
            ..Ledger::default()
        });
        let l = ledger.clone();
        let end = fiber
            .run(|cx| async move {
                let sem = Rc::new(Semaphore::new(&cx, l.total));
                let counter = Rc::new(Mutex::new(&cx, 0u64));
                let lock = Rc::new(RwLock::with_max_readers(&cx, 0u64, 3));
                let workers: Vec<_> = (0..WORKERS)
                    .map(|_| {
                        let (sem, counter, lock, l) =
                            (sem.clone(), counter.clone(), lock.clone(), l.clone());
                        cx.spawn(move |cx| work(cx, sem, counter, lock, l))
                    })
                    .collect();
                let mut victims: Vec<_> = workers.iter().map(|w| w.task_ref()).collect();
                while !victims.is_empty() && random(&cx, 5) != 0 {
                    cx.sleep(random(&cx, 12)).await?;
                    let victim = random(&cx, victims.len() as u64) as usize;
                    victims.swap_remove(victim).cancel();
                }
                for worker in workers {
                    worker.await.ok();
                }
                let all = sem.try_acquire(l.total).is_ok();
                let count = *counter.lock().await?;
                Ok((sem.available_permits(), count, all))
            })
            .unwrap();
        (ledger, end, fiber.trace_hash())
    }

    #[test]
    fn no_permit_is_lost_or_duplicated() {
        let (mut won, mut gave_up, mut granted) = (0, 0, 0);
        for seed in 0..SEEDS {
            let (ledger, (available, counter, all), _) = run_seed(seed);
            assert_eq!(
                *ledger.violations.borrow(),
                Vec::<String>::new(),
                "seed {seed}"
            );
            assert_eq!(available, ledger.total, "seed {seed}: permits lost or made");
            assert!(all, "seed {seed}: all permits free, yet not takeable");
            assert_eq!(ledger.held.get(), 0, "seed {seed}");
            assert!(ledger.max_held.get() <= ledger.total, "seed {seed}");
            assert_eq!(counter, ledger.increments.get(), "seed {seed}: counter");
            won += ledger.won_over_cancel.get();
            gave_up += ledger.gave_up.get();
            granted += ledger.granted.get();
        }
        println!("{granted} grants, {gave_up} given up, {won} won over a cancel");
        // The storm must really storm: waiters gave up, and hand-overs beat cancels.
        assert!(granted > 5_000, "granted {granted}");
        assert!(gave_up > 300, "gave up {gave_up}");
        assert!(won > 0, "no acquire completed over a cancel");
    }

    #[test]
    fn storm_runs_are_reproducible() {
        for seed in [5, 77] {
            let (a, end_a, hash_a) = run_seed(seed);
            let (b, end_b, hash_b) = run_seed(seed);
            assert_eq!((hash_a, end_a), (hash_b, end_b));
            assert_eq!(a.granted.get(), b.granted.get());
        }
    }
}

/// Wakers that use the semaphore that woke them, wakers that panic, and the limits on permit
/// counts: acquires polled by hand with a [`Probe`](support::Probe) waker, on fiber.
#[cfg(feature = "fiber")]
mod wakers_and_limits {
    use std::cell::RefCell;
    use std::pin::pin;
    use std::rc::Rc;
    use std::task::{Poll, Waker};

    use ioswap::sync::{AcquireError, Semaphore};
    use ioswap::FiberIo;

    use super::support::{on_wake, panic_of, poll_with, Probe};

    /// A waker runs while the semaphore readies its waiter, and may read the semaphore: on a
    /// hand-over (`add_permits`), a hand-over when the waiter ahead leaves, and `close`. (It
    /// used to run inside the semaphore's `RefCell` borrow: "already mutably borrowed".)
    #[test]
    fn a_waker_may_read_the_semaphore_that_woke_it() {
        FiberIo::new()
            .run(|cx| async move {
                let sem = Rc::new(Semaphore::new(&cx, 0));
                let seen = Rc::new(RefCell::new(Vec::new()));
                on_wake(Some(Rc::new({
                    let (sem, seen) = (sem.clone(), seen.clone());
                    move || {
                        // Served (or closed out) and off the queue before its waker runs.
                        let off_queue = format!("{sem:?}").contains("waiting: 0");
                        seen.borrow_mut().push((
                            sem.available_permits(),
                            sem.is_closed(),
                            off_queue,
                        ));
                    }
                })));
                let (probe, waker) = Probe::new();

                // Handed over by add_permits.
                let mut first = pin!(sem.acquire(1));
                assert!(poll_with(first.as_mut(), &waker).is_pending());
                sem.add_permits(1);
                assert_eq!(*seen.borrow(), [(0, false, true)]);
                let Poll::Ready(Ok(first)) = poll_with(first.as_mut(), &waker) else {
                    panic!("the permit was handed over");
                };

                // Handed over when the waiter ahead (wanting more) leaves.
                let mut big = pin!(sem.acquire(2));
                assert!(poll_with(big.as_mut(), Waker::noop()).is_pending());
                let mut small = pin!(sem.acquire(1));
                assert!(poll_with(small.as_mut(), &waker).is_pending());
                drop(first); // one free, kept for `big`
                assert_eq!(probe.wakes(), 1);
                big.set(sem.acquire(0)); // `big` leaves: `small` gets the free one
                assert_eq!(probe.wakes(), 2);
                assert_eq!(seen.borrow()[1], (0, false, true));
                let Poll::Ready(Ok(small)) = poll_with(small.as_mut(), &waker) else {
                    panic!("the permit was handed over");
                };

                // Woken by close.
                let mut last = pin!(sem.acquire(1));
                assert!(poll_with(last.as_mut(), &waker).is_pending());
                assert!(sem.close());
                assert_eq!(seen.borrow()[2], (0, true, true));
                assert!(matches!(
                    poll_with(last.as_mut(), &waker),
                    Poll::Ready(Err(AcquireError::Closed))
                ));
                drop(small);
                assert_eq!(sem.available_permits(), 1);
                on_wake(None);
                Ok(())
            })
            .unwrap();
    }

    /// A waker that panics while a release hands permits over leaves the semaphore whole: the
    /// waiter it belonged to holds its permits, the waiters after it are still served and
    /// woken, the panic reaches the releaser, and the next release works. (The served waiter
    /// used to stay at the queue's front, and the next release hit `unreachable!`.)
    #[test]
    fn a_panicking_waker_leaves_the_semaphore_whole() {
        FiberIo::new()
            .run(|cx| async move {
                let sem = Semaphore::new(&cx, 0);
                let (_, bomb) = Probe::panicking();
                let (probe, waker) = Probe::new();
                let mut first = pin!(sem.acquire(1));
                assert!(poll_with(first.as_mut(), &bomb).is_pending());
                let mut second = pin!(sem.acquire(1));
                assert!(poll_with(second.as_mut(), &waker).is_pending());

                let panic = panic_of(|| sem.add_permits(2));
                assert_eq!(panic.as_deref(), Some("a waker that panics"));
                sem.add_permits(1);
                assert_eq!(
                    probe.wakes(),
                    1,
                    "the waiter after the panicking one was woken"
                );
                assert_eq!(sem.available_permits(), 1);
                let Poll::Ready(Ok(first)) = poll_with(first.as_mut(), Waker::noop()) else {
                    panic!("the first waiter holds its permit");
                };
                let Poll::Ready(Ok(second)) = poll_with(second.as_mut(), &waker) else {
                    panic!("the second waiter holds its permit");
                };
                drop((first, second));
                assert_eq!(sem.available_permits(), 3);
                Ok(())
            })
            .unwrap();
    }

    /// `add_permits` is where the count is checked, against every permit the semaphore has
    /// (free, held or handed over): giving held permits back never panics. (A semaphore of 1
    /// with its permit held, topped up to `MAX_PERMITS` free, used to panic in the permit's
    /// drop.)
    #[test]
    fn giving_permits_back_never_panics() {
        FiberIo::new()
            .run(|cx| async move {
                let max = Semaphore::MAX_PERMITS;
                let sem = Semaphore::new(&cx, 1);
                let held = sem.try_acquire(1).unwrap();
                let refused = panic_of(|| sem.add_permits(max));
                assert!(
                    refused
                        .as_deref()
                        .is_some_and(|m| m.contains("MAX_PERMITS")),
                    "1 held + {max} added is over the limit: refused by add_permits ({refused:?})"
                );
                assert_eq!(sem.available_permits(), 0, "a refused add adds nothing");
                sem.add_permits(max - 1);
                drop(held);
                assert_eq!(sem.available_permits(), max);

                // Handed to a waiter that then leaves: given back the same way.
                let all = sem.try_acquire(max).unwrap();
                let mut waiter = pin!(sem.acquire(1));
                assert!(poll_with(waiter.as_mut(), Waker::noop()).is_pending());
                drop(all);
                waiter.set(sem.acquire(0)); // leaves holding the permit handed to it
                assert_eq!(sem.available_permits(), max);

                // Forgotten permits are gone for good, so there is room for as many again.
                sem.try_acquire(2).unwrap().forget();
                sem.add_permits(2);
                assert_eq!(sem.available_permits(), max);
                Ok(())
            })
            .unwrap();
    }

    /// A request for more than `MAX_PERMITS` can never be served: `acquire` panics at once
    /// instead of waiting forever at the head of the queue.
    #[test]
    fn acquiring_more_than_max_permits_panics() {
        FiberIo::new()
            .run(|cx| async move {
                let max = Semaphore::MAX_PERMITS;
                let sem = Semaphore::new(&cx, max);
                let refused = panic_of(|| drop(sem.acquire(max + 1)));
                assert!(
                    refused
                        .as_deref()
                        .is_some_and(|m| m.contains("MAX_PERMITS")),
                    "{refused:?}"
                );
                assert_eq!(sem.acquire(max).await.unwrap().num_permits(), max);
                Ok(())
            })
            .unwrap();
    }
}
