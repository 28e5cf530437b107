//! `race` and `race_all`, on every backend. Blocking runs every spawn inline to completion, so
//! there the first racer always wins and later bodies never start: asserted per backend.
mod support;
mod workers;

use ioswap::{race, race_all, Backend, Canceled, Cx, Winner3, Winner8, Won};
use support::{assert_time, assert_timed, Log};
use workers::{panic_message, panicking, untimed, worker};

/// Golden: racers sleeping 30, 10 and 20 ms, of three different types. Fiber returns at t = 10
/// with the 10 ms racer's value; the others are canceled at their sleep, so their post-sleep
/// lines never run.
fn race_returns_the_first_finisher(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let (won, at) = backend
        .run(|cx| async move {
            let won = race(
                &cx,
                (
                    worker(&l, "a", 30, 0, 30_u32),
                    worker(&l, "b", 10, 0, "ten"),
                    worker(&l, "c", 20, 0, 'c'),
                ),
            )
            .await?;
            l.push(format!("race:{:?}@{}", won.winner, cx.now_ms()));
            Ok((won, cx.now_ms()))
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            assert_eq!(won.winner, Winner3::A(30));
            assert_eq!(won.also_finished, (None, None, None));
            assert!(at >= 30, "a slept 30 ms inline, t = {at}");
            // a ran to its end inline; b and c were never started.
            assert_eq!(untimed(&log), "a:start a:done race:A(30)");
        }
        _ => {
            assert_eq!(won.winner, Winner3::B("ten"));
            assert_eq!(won.also_finished, (None, None, None));
            assert_time(backend, at, 10);
            assert_timed(
                backend,
                &log.joined(),
                "a:start@0 b:start@0 c:start@0 b:done@10 a:canceled@10 c:canceled@10 \
                 race:B(\"ten\")@10",
            );
        }
    }
}

/// Racing tasks spawned before the race. On blocking they have all finished by then: the first
/// wins and the others' values come back in `also_finished`, none lost.
fn race_over_running_tasks(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let won = backend
        .run(|cx| async move {
            let a = cx.spawn(worker(&l, "a", 30, 0, 30_u32));
            let b = cx.spawn(worker(&l, "b", 10, 0, "ten"));
            let c = cx.spawn(worker(&l, "c", 20, 0, 'c'));
            race(&cx, (a, b, c)).await
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            assert_eq!(won.winner, Winner3::A(30));
            assert_eq!(won.also_finished, (None, Some("ten"), Some('c')));
            assert_eq!(
                untimed(&log),
                "a:start a:done b:start b:done c:start c:done"
            );
        }
        _ => {
            assert_eq!(won.winner, Winner3::B("ten"));
            assert_eq!(won.also_finished, (None, None, None));
            assert_timed(
                backend,
                &log.joined(),
                "a:start@0 b:start@0 c:start@0 b:done@10 a:canceled@10 c:canceled@10",
            );
        }
    }
}

/// Two racers finish at the same instant (t = 10), before the race looks again: the lower
/// position wins and the other's value is handed back in `also_finished`, not dropped.
fn simultaneous_finishers_keep_their_values(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let won = backend
        .run(|cx| async move {
            race(
                &cx,
                (
                    worker(&l, "a", 20, 0, 'a'),
                    worker(&l, "b", 10, 0, 'b'),
                    worker(&l, "c", 10, 0, 'c'),
                ),
            )
            .await
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            assert_eq!(won.winner, Winner3::A('a'));
            assert_eq!(won.also_finished, (None, None, None));
        }
        _ => {
            assert_eq!(won.winner, Winner3::B('b'));
            assert_eq!(won.also_finished, (None, None, Some('c')));
            assert_timed(
                backend,
                &log.joined(),
                "a:start@0 b:start@0 c:start@0 b:done@10 c:done@10 a:canceled@10",
            );
        }
    }
}

#[cfg(feature = "fiber")]
/// Whatever order a seed runs the simultaneous finishers in, the result is the same.
#[test]
fn simultaneous_finishers_resolve_by_position_under_every_seed() {
    for seed in 0..32 {
        let won = ioswap::FiberIo::with_seed(seed)
            .run(|cx| async move {
                let racers: Vec<_> = [10, 20, 10, 10]
                    .into_iter()
                    .map(|ms| move |cx: Cx| async move { cx.sleep(ms).await.map(|()| ms) })
                    .collect();
                race_all(&cx, racers).await
            })
            .unwrap();
        assert_eq!(won.winner, (0, 10), "seed {seed}");
        assert_eq!(won.also_finished, [(2, 10), (3, 10)], "seed {seed}");
    }
}

#[cfg(feature = "fiber")]
/// Same seed, same run: a race with cleanup, a timeout and a group give the same schedule
/// (trace hash) and the same answers every time.
#[test]
fn race_runs_are_reproducible_per_seed() {
    let run = |seed: u64| {
        let fiber = ioswap::FiberIo::with_seed(seed);
        let log = Log::new();
        let l = log.clone();
        fiber
            .run(|cx| async move {
                let won = race(&cx, (worker(&l, "a", 10, 3, 1), worker(&l, "b", 10, 3, 2))).await?;
                let timed = ioswap::timeout(&cx, 5, worker(&l, "c", 9, 2, 3)).await?;
                l.push(format!("{:?}/{:?}", won.winner, timed.is_err()));
                Ok(())
            })
            .unwrap();
        (fiber.trace_hash(), log.joined())
    };
    for seed in [1, 7, 42] {
        assert_eq!(run(seed), run(seed), "seed {seed}");
    }
}

/// The caller is canceled mid-race: every racer is canceled and joined — the joins wait for
/// the racers' shielded cleanup even though the caller is canceled — then race returns
/// `Err(Canceled)` and no racer is left alive.
fn canceled_caller_cancels_and_joins_every_racer(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let joined = backend
        .run(|cx| async move {
            let racing = cx.spawn({
                let l = l.clone();
                |cx| async move {
                    let raced = race(
                        &cx,
                        (
                            worker(&l, "a", 30, 5, 'a'),
                            worker(&l, "b", 40, 5, 'b'),
                            worker(&l, "c", 50, 5, 'c'),
                        ),
                    )
                    .await;
                    let alive = cx.live_tasks();
                    let winner = raced.map(|won| won.winner);
                    l.push(format!("race:{winner:?}:alive={alive}@{}", cx.now_ms()));
                    winner
                }
            });
            cx.sleep(5).await?;
            l.push(format!("cancel@{}", cx.now_ms()));
            racing.cancel();
            Ok(racing.await)
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            // The racing task ran inline to its end before it could be canceled.
            assert_eq!(joined, Ok(Winner3::A('a')));
            assert_eq!(
                untimed(&log),
                "a:start a:done race:Ok(A('a')):alive=2 cancel"
            );
        }
        _ => {
            assert_eq!(joined, Err(Canceled));
            assert_timed(
                backend,
                &log.joined(),
                "a:start@0 b:start@0 c:start@0 cancel@5 a:canceled@5 b:canceled@5 \
                 c:canceled@5 a:cleaned@10 b:cleaned@10 c:cleaned@10 \
                 race:Err(Canceled):alive=2@10",
            );
        }
    }
}

/// Losers are joined before race returns: a loser's shielded cleanup delays the return to
/// t = 15, and afterwards only the caller is alive.
fn losers_are_joined_before_race_returns(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let alive = backend
        .run(|cx| async move {
            let won = race(&cx, (worker(&l, "a", 10, 0, 1), worker(&l, "b", 30, 5, 2))).await?;
            l.push(format!("race:{:?}@{}", won.winner, cx.now_ms()));
            Ok(cx.live_tasks())
        })
        .unwrap();
    assert_eq!(alive, 1, "only main is left");
    match backend {
        Backend::Blocking => assert_eq!(untimed(&log), "a:start a:done race:A(1)"),
        _ => assert_timed(
            backend,
            &log.joined(),
            "a:start@0 b:start@0 a:done@10 b:canceled@10 b:cleaned@15 race:A(1)@15",
        ),
    }
}

/// A racer panics: the others are canceled and joined first, then the panic reaches the race
/// caller.
fn panicking_racer_resumes_after_cleanup(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    backend
        .run(|cx| async move {
            let raced = race(
                &cx,
                (
                    panicking::<u8, _>(10, "racer a broke"),
                    // Long, so printing the panic cannot outlast it on a real clock.
                    worker(&l, "b", 1_000, 5, 'b'),
                ),
            );
            let message = panic_message(raced).await;
            l.push(format!("caught:{message}@{}", cx.now_ms()));
            Ok(())
        })
        .unwrap();
    match backend {
        // a ran inline and panicked before b could start.
        Backend::Blocking => assert_eq!(untimed(&log), "caught:racer_a_broke"),
        _ => assert_timed(
            backend,
            &log.joined(),
            "b:start@0 b:canceled@10 b:cleaned@15 caught:racer_a_broke@15",
        ),
    }
}

/// A body that panics before it even returns its future ends the race the same way: the racers
/// after it never start, and the panic reaches the caller.
fn body_panicking_before_its_future(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let message = backend
        .run(|cx| async move {
            let broken = |_cx: Cx| -> std::future::Ready<Result<u8, Canceled>> {
                panic!("no future");
            };
            Ok(panic_message(race(&cx, (broken, worker(&l, "b", 10, 0, 'b')))).await)
        })
        .unwrap();
    assert_eq!(message, "no_future");
    assert_eq!(log.joined(), "");
}

/// A racer canceled by someone else drops out and the others race on; when every racer has
/// dropped out, race returns `Err(Canceled)`. On blocking the tasks finished before the cancel,
/// so completion wins.
fn canceled_racers_drop_out(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let (one_left, none_left) = backend
        .run(|cx| async move {
            let a = cx.spawn(worker(&l, "a", 10, 0, 'a'));
            let b = cx.spawn(worker(&l, "b", 20, 0, 'b'));
            a.cancel();
            let one_left = race_all(&cx, [a, b]).await;
            let c = cx.spawn(worker(&l, "c", 10, 0, 'c'));
            let d = cx.spawn(worker(&l, "d", 20, 0, 'd'));
            c.cancel();
            d.cancel();
            let none_left = race_all(&cx, [c, d]).await;
            Ok((one_left, none_left))
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            let both = |x, y| Won {
                winner: (0, x),
                also_finished: vec![(1, y)],
            };
            assert_eq!(one_left, Ok(both('a', 'b')));
            assert_eq!(none_left, Ok(both('c', 'd')));
        }
        _ => {
            // Canceled before they ever ran: a, c and d never start.
            assert_eq!(one_left.map(|won| won.winner), Ok((1, 'b')));
            assert_eq!(none_left, Err(Canceled));
            assert_timed(backend, &log.joined(), "b:start@0 b:done@20");
        }
    }
}

/// `race_all` over bodies of one type: the fastest wins; on blocking the first body runs and the
/// rest never start.
fn race_all_over_bodies(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let (winner, at) = backend
        .run(|cx| async move {
            let names = ["a", "b", "c", "d"];
            let racers = [40, 25, 5, 15]
                .into_iter()
                .zip(names)
                .map(|(ms, name)| worker(&l, name, ms, 0, ms));
            let won = race_all(&cx, racers).await?;
            Ok((won.winner, cx.now_ms()))
        })
        .unwrap();
    match backend {
        Backend::Blocking => {
            assert_eq!(winner, (0, 40));
            assert!(at >= 40);
            assert_eq!(untimed(&log), "a:start a:done");
        }
        _ => {
            assert_eq!(winner, (2, 5));
            assert_time(backend, at, 5);
            assert_timed(
                backend,
                &log.joined(),
                "a:start@0 b:start@0 c:start@0 d:start@0 c:done@5 a:canceled@5 b:canceled@5 \
                 d:canceled@5",
            );
        }
    }
}

/// Eight racers of eight types; the last one is the fastest.
fn race_of_eight(backend: Backend) {
    let winner = backend
        .run(|cx| async move {
            let won = race(
                &cx,
                (
                    |cx: Cx| async move { cx.sleep(80).await.map(|()| 1_u8) },
                    |cx: Cx| async move { cx.sleep(70).await.map(|()| 2_u16) },
                    |cx: Cx| async move { cx.sleep(60).await.map(|()| 3_u32) },
                    |cx: Cx| async move { cx.sleep(50).await.map(|()| 4_u64) },
                    |cx: Cx| async move { cx.sleep(40).await.map(|()| 5_i8) },
                    |cx: Cx| async move { cx.sleep(30).await.map(|()| "6") },
                    |cx: Cx| async move { cx.sleep(20).await.map(|()| '7') },
                    |cx: Cx| async move { cx.sleep(10).await.map(|()| 8.0_f64) },
                ),
            )
            .await?;
            Ok(won.winner)
        })
        .unwrap();
    match backend {
        Backend::Blocking => assert_eq!(winner, Winner8::A(1)),
        _ => assert_eq!(winner, Winner8::H(8.0)),
    }
    assert_eq!(
        Winner8::<u8, u8, u8, u8, u8, u8, u8, f64>::H(8.0).position(),
        7
    );
}

/// A caller that is canceled before it races starts no body, on every backend (blocking
/// included: the check comes before the inline spawn), and gets `Err(Canceled)`.
fn canceled_caller_starts_no_racer(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    let raced = backend
        .run(|cx| async move {
            cx.current_task().expect("main is a task").cancel();
            let raced = race(&cx, (worker(&l, "a", 10, 0, 1), worker(&l, "b", 20, 0, 2))).await;
            Ok(raced.map(|won| won.winner))
        })
        .unwrap();
    assert_eq!(raced, Err(Canceled));
    assert_eq!(log.joined(), "");
}

conformance!(
    race_returns_the_first_finisher,
    canceled_caller_starts_no_racer,
    race_over_running_tasks,
    simultaneous_finishers_keep_their_values,
    canceled_caller_cancels_and_joins_every_racer,
    losers_are_joined_before_race_returns,
    panicking_racer_resumes_after_cleanup,
    body_panicking_before_its_future,
    canceled_racers_drop_out,
    race_all_over_bodies,
    race_of_eight,
);
