//! Finding bugs, not just replaying them: planted concurrency bugs of depth 1, 2 and 3, and how
//! many runs each scheduler needs to find them.
//!
//! Each program is a handful of tasks taking steps (a step ends at a `yield_now`) plus noise
//! tasks that only take steps. Its check fails only when a few events happen in one particular
//! order (the bug's *depth* is how many orderings must line up, as in the PCT paper). A run is a
//! pure function of (scheduler, seed), so every count below is fixed: the test asserts the
//! ordering of the counts, and prints the table (`cargo test --test explore -- --nocapture`).
#![cfg(feature = "fiber")]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ioswap::sim::{Faults, World};
use ioswap::{Canceled, Cx, DecisionLog, FiberIo, Scheduler, TcpListener, TcpStream};

/// The planted bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    /// Depth 1, an ordering violation: `late` reaches step 5 before `early` does (FIFO runs
    /// `early` first in every turn).
    Ordering,
    /// Depth 2, an atomicity violation (a lost update): `a` reads the counter at its step 1
    /// and writes it back plus one at its step 2; `b` increments it at its step 12. The update
    /// is lost only if `b`'s increment falls between `a`'s read and `a`'s write.
    LostUpdate,
    /// Depth 3: the lost update again, but `a` splits its read-modify-write only when `c`
    /// has warmed the cache (its step 12) before `a`'s first step.
    WarmLostUpdate,
}

impl Bug {
    fn depth(self) -> u32 {
        match self {
            Bug::Ordering => 1,
            Bug::LostUpdate => 2,
            Bug::WarmLostUpdate => 3,
        }
    }
}

/// The size of a planted program.
#[derive(Debug, Clone, Copy)]
struct Shape {
    noise_tasks: usize,
    noise_steps: usize,
    /// The step at which `b` increments and `c` warms the cache.
    late_step: usize,
    /// The noise tasks also print and draw random numbers: changes that take no scheduling
    /// decision.
    chatty: bool,
}

/// The programs the schedulers are measured on.
const SMALL: Shape = Shape {
    noise_tasks: 3,
    noise_steps: 12,
    late_step: 12,
    chatty: false,
};

#[derive(Default)]
struct Shared {
    counter: u64,
    warm: bool,
    at_step_5: Vec<&'static str>,
}

async fn steps(cx: &Cx, n: usize) -> Result<(), Canceled> {
    for _ in 0..n {
        cx.yield_now().await?;
    }
    Ok(())
}

/// The planted program: whether its check failed (the bug showed).
async fn program(cx: Cx, bug: Bug, shape: Shape) -> Result<bool, Canceled> {
    let late_step = shape.late_step;
    let shared = Rc::new(RefCell::new(Shared::default()));
    let mut tasks = Vec::new();
    match bug {
        Bug::Ordering => {
            for name in ["early", "late"] {
                let shared = shared.clone();
                tasks.push(cx.spawn(move |cx| async move {
                    steps(&cx, 5).await?;
                    shared.borrow_mut().at_step_5.push(name);
                    steps(&cx, 5).await
                }));
            }
        }
        Bug::LostUpdate | Bug::WarmLostUpdate => {
            let a = shared.clone();
            tasks.push(cx.spawn(move |cx| async move {
                cx.yield_now().await?;
                let split = bug == Bug::LostUpdate || a.borrow().warm;
                if split {
                    let read = a.borrow().counter;
                    cx.yield_now().await?;
                    a.borrow_mut().counter = read + 1;
                } else {
                    a.borrow_mut().counter += 1;
                    cx.yield_now().await?;
                }
                Ok(())
            }));
            let b = shared.clone();
            tasks.push(cx.spawn(move |cx| async move {
                steps(&cx, late_step).await?;
                b.borrow_mut().counter += 1;
                Ok(())
            }));
            if bug == Bug::WarmLostUpdate {
                let c = shared.clone();
                tasks.push(cx.spawn(move |cx| async move {
                    steps(&cx, late_step).await?;
                    c.borrow_mut().warm = true;
                    Ok(())
                }));
            }
        }
    }
    for _ in 0..shape.noise_tasks {
        let n = shape.noise_steps;
        let chatty = shape.chatty;
        tasks.push(cx.spawn(move |cx| async move {
            if chatty {
                let draw = cx.random_below(100);
                println!("noise task draws {draw}");
            }
            steps(&cx, n).await
        }));
    }
    for task in tasks {
        task.await?;
    }
    let shared = shared.borrow();
    Ok(match bug {
        Bug::Ordering => shared.at_step_5 != ["early", "late"],
        Bug::LostUpdate | Bug::WarmLostUpdate => shared.counter != 2,
    })
}

/// Runs the planted program on `io`: whether the bug showed.
fn shows(io: &FiberIo, bug: Bug) -> bool {
    shows_in(io, bug, SMALL)
}

fn shows_in(io: &FiberIo, bug: Bug, shape: Shape) -> bool {
    io.run(move |cx| program(cx, bug, shape))
        .expect("the program runs to its end")
}

/// The length of a FIFO run: PCT's expected run length `k`.
fn fifo_steps(bug: Bug) -> u64 {
    let io = FiberIo::new();
    assert!(!shows(&io, bug), "{bug:?} must not show under FIFO");
    io.steps()
}

fn scheduler_for(name: &str, bug: Bug) -> Scheduler {
    match name {
        "random" => Scheduler::Random,
        "walk" => Scheduler::Walk,
        _ => Scheduler::Pct {
            depth: bug.depth(),
            steps: fifo_steps(bug),
        },
    }
}

/// Seeds `1..=RUNS` per scheduler and bug.
const RUNS: u64 = 5_000;

/// For one scheduler and bug: how many of seeds `1..=RUNS` show it, and the first that does.
fn measure(name: &str, bug: Bug) -> (u64, Option<u64>) {
    let scheduler = scheduler_for(name, bug);
    let mut hits = 0;
    let mut first = None;
    for seed in 1..=RUNS {
        if shows(&FiberIo::with_scheduler(seed, scheduler.clone()), bug) {
            hits += 1;
            first.get_or_insert(seed);
        }
    }
    (hits, first)
}

#[test]
fn pct_finds_deeper_bugs_in_fewer_runs() {
    let bugs = [Bug::Ordering, Bug::LostUpdate, Bug::WarmLostUpdate];
    let schedulers = ["random", "walk", "pct"];
    let mut table = Vec::new();
    println!(
        "failing runs per {RUNS} (seeds 1..={RUNS}), then one failure per how many runs, \
         then [the first failing seed]"
    );
    println!(
        "{:<16} {:>6} {:>22} {:>22} {:>22}",
        "bug", "depth", "random (turns)", "walk", "pct"
    );
    for bug in bugs {
        let row: Vec<(u64, Option<u64>)> = schedulers.iter().map(|s| measure(s, bug)).collect();
        let cell = |(hits, first): (u64, Option<u64>)| match first {
            Some(first) => format!("{hits} (1/{:.0}) [{first}]", RUNS as f64 / hits as f64),
            None => format!("0 (-) [>{RUNS}]"),
        };
        println!(
            "{:<16} {:>6} {:>22} {:>22} {:>22}",
            format!("{bug:?}"),
            bug.depth(),
            cell(row[0]),
            cell(row[1]),
            cell(row[2])
        );
        table.push((bug, row));
    }
    for (bug, row) in &table {
        let [random, walk, pct] = [row[0], row[1], row[2]];
        // Every scheduler finds the depth-1 bug; beyond it, PCT finds more, and sooner.
        assert!(pct.0 > 0, "{bug:?}: PCT never found it");
        if bug.depth() == 1 {
            assert!(random.0 > 0 && walk.0 > 0, "{bug:?}: {row:?}");
        } else {
            assert!(pct.0 > random.0 && pct.0 > walk.0, "{bug:?}: {row:?}");
            let first = |m: (u64, Option<u64>)| m.1.unwrap_or(u64::MAX);
            assert!(
                first(pct) < first(random) && first(pct) < first(walk),
                "{bug:?}: {row:?}"
            );
        }
    }
}

/// A lost update in a run of about 10,000 steps (16 noise tasks of 600 steps), found by the
/// random walk, shrinks to a schedule of a few non-default picks that still fails.
#[test]
fn a_ten_thousand_step_failure_shrinks_to_a_few_choices() {
    let shape = Shape {
        noise_tasks: 16,
        noise_steps: 600,
        late_step: 3,
        chatty: false,
    };
    let seed = (1..200)
        .find(|&seed| {
            shows_in(
                &FiberIo::with_scheduler(seed, Scheduler::Walk),
                Bug::LostUpdate,
                shape,
            )
        })
        .expect("the walk finds the lost update within 200 seeds");
    let io = FiberIo::with_scheduler(seed, Scheduler::Walk).record_decisions();
    assert!(shows_in(&io, Bug::LostUpdate, shape));
    let log = io.decisions();
    assert!(io.steps() >= 9_000, "a long run: {} steps", io.steps());

    // The log replays the failure exactly, through its text form.
    let replay = FiberIo::replay(log.to_string().parse().unwrap());
    assert!(shows_in(&replay, Bug::LostUpdate, shape));
    assert_eq!(replay.trace_hash(), io.trace_hash());
    assert_eq!(replay.replay_report().mismatched, 0);

    let shrunk = ioswap::shrink(log, |candidate| {
        shows_in(&FiberIo::replay(candidate.clone()), Bug::LostUpdate, shape)
    })
    .unwrap();
    println!(
        "seed {seed}: {} steps, {} non-default picks shrunk to {} in {} replays:\n{}",
        io.steps(),
        shrunk.before,
        shrunk.after,
        shrunk.runs,
        shrunk.log
    );
    assert!(
        shrunk.before >= 5_000,
        "{} non-default picks",
        shrunk.before
    );
    assert!(
        shrunk.after < 100,
        "{} non-default picks left",
        shrunk.after
    );
    // The shrunk schedule still fails; with every pick reset, it is FIFO, which does not.
    assert!(shows_in(
        &FiberIo::replay(shrunk.log.clone()),
        Bug::LostUpdate,
        shape
    ));
    let fifo = DecisionLog {
        decisions: Vec::new(),
        ..shrunk.log
    };
    assert!(!shows_in(&FiberIo::replay(fifo), Bug::LostUpdate, shape));
}

/// A log recorded on one program replays the same task picks on a changed one, when the
/// change takes no scheduling decision: each kind of decision has its own cursor, and a pick
/// names its task.
#[test]
fn a_schedule_survives_changes_that_take_no_decision() {
    let seed = (1..RUNS)
        .find(|&seed| {
            shows(
                &FiberIo::with_scheduler(seed, Scheduler::Walk),
                Bug::LostUpdate,
            )
        })
        .unwrap();
    let recorded = FiberIo::with_scheduler(seed, Scheduler::Walk)
        .record_decisions()
        .record_trace();
    assert!(shows(&recorded, Bug::LostUpdate));
    let tasks = |io: &FiberIo| io.trace().iter().map(|e| e.task).collect::<Vec<_>>();

    let chatty = Shape {
        chatty: true,
        ..SMALL
    };
    let replay = FiberIo::replay(recorded.decisions()).record_trace();
    assert!(shows_in(&replay, Bug::LostUpdate, chatty));
    assert_eq!(tasks(&replay), tasks(&recorded));
    let report = replay.replay_report();
    assert_eq!(report.mismatched, 0);
    // The new draws find no logged draw: they fall back to the seed, and say so.
    assert_eq!(report.defaulted, chatty.noise_tasks as u64);

    assert_eq!(
        report.followed as usize,
        recorded.decisions().decisions.len()
    );
}

/// A world with a jittery network, several clients and an echo server.
fn echo_world(seed: u64, scheduler: Scheduler) -> World {
    let mut faults = Faults::none();
    faults.net.latency_ms = (1, 30);
    let mut world = World::new(seed)
        .scheduler(scheduler)
        .record_decisions()
        .faults(faults)
        .host("echo", |cx, _world| async move {
            let listener =
                TcpListener::bind(&cx, "0.0.0.0:7000".parse::<std::net::SocketAddr>()?).await?;
            loop {
                let (conn, _) = listener.accept().await?;
                cx.spawn(move |_| async move {
                    loop {
                        let (n, buf) = conn.read(Vec::with_capacity(64)).await;
                        match n {
                            Ok(n) if n > 0 => {
                                if conn.write_all(buf).await.0.is_err() {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                    Ok(())
                })
                .detach();
            }
        });
    for client in ["a", "b", "c"] {
        world = world.client(client, |cx, world| async move {
            let conn =
                TcpStream::connect(&cx, std::net::SocketAddr::new(world.ip("echo"), 7000)).await?;
            for round in 0..5u64 {
                cx.sleep(cx.random_below(20)).await?;
                conn.write_all(vec![round as u8]).await.0?;
                let (n, buf) = conn.read(Vec::with_capacity(8)).await;
                assert_eq!((n?, buf), (1, vec![round as u8]));
            }
            Ok(())
        });
    }
    world
}

/// The log, not the seed, drives a replayed world: replayed under another seed, it makes the
/// same decisions and the same run (network latencies, program draws, task picks).
#[test]
fn a_world_replays_from_its_log_under_another_seed() {
    let original = echo_world(5, Scheduler::Walk).run().unwrap();
    let log = *original.decisions.clone().unwrap();
    assert!(log
        .decisions
        .iter()
        .any(|d| matches!(d, ioswap::Decision::World { .. })));
    assert!(log
        .decisions
        .iter()
        .any(|d| matches!(d, ioswap::Decision::Program(_))));

    let replayed = echo_world(999, Scheduler::Replay(log.clone()))
        .run()
        .unwrap();
    assert_eq!(replayed.trace_hash, original.trace_hash);
    assert_eq!(replayed.now_ms, original.now_ms);
    assert_eq!(replayed.decisions.unwrap().decisions, log.decisions);

    // Seed 999 on its own is another run.
    let other = echo_world(999, Scheduler::Walk).run().unwrap();
    assert_ne!(other.trace_hash, original.trace_hash);
}

/// Every scheduler's run replays exactly from its log's text: same steps, same trace hash, no
/// decision missing or unfollowed.
#[test]
fn every_scheduler_replays_exactly_from_its_log() {
    let pct = Scheduler::Pct {
        depth: 3,
        steps: fifo_steps(Bug::WarmLostUpdate),
    };
    for scheduler in [Scheduler::Random, Scheduler::Walk, pct] {
        for seed in 0..20 {
            let recorded = FiberIo::with_scheduler(seed, scheduler.clone()).record_decisions();
            let showed = shows(&recorded, Bug::WarmLostUpdate);
            let log: DecisionLog = recorded.decisions().to_string().parse().unwrap();
            assert_eq!(log, recorded.decisions());
            let replay = FiberIo::replay(log.clone());
            assert_eq!(shows(&replay, Bug::WarmLostUpdate), showed);
            assert_eq!(
                (replay.trace_hash(), replay.steps()),
                (recorded.trace_hash(), recorded.steps()),
                "{scheduler:?}, seed {seed}"
            );
            let report = replay.replay_report();
            assert_eq!(report.followed as usize, log.decisions.len());
            assert_eq!((report.defaulted, report.mismatched), (0, 0));
            // The replay's own log is the one it replayed (the default scheduler's included:
            // its swap-remove picks are replayed as swap-removes, at index 0 too).
            assert_eq!(replay.decisions(), log, "{scheduler:?}, seed {seed}");
        }
    }
}

/// Two tasks ping-pong over channels (each hands the turn to the other, so neither runs two
/// steps in a row) until a third, `worker`, sets a flag. Returns how many rounds they played,
/// or an error once they reach `LIMIT` (a scheduler that starves `worker`).
fn ping_pong_until_worker(io: &FiberIo) -> Result<u64, String> {
    const LIMIT: u64 = 20_000;
    io.run(|cx| async move {
        let done = Rc::new(Cell::new(false));
        let rounds = Rc::new(Cell::new(0u64));
        let (to_b, from_a) = ioswap::channel::unbounded::<u64>(&cx);
        let (to_a, from_b) = ioswap::channel::unbounded::<u64>(&cx);
        let a = {
            let (done, rounds) = (done.clone(), rounds.clone());
            cx.spawn(move |_| async move {
                while !done.get() && rounds.get() < LIMIT {
                    rounds.set(rounds.get() + 1);
                    let _ = to_b.send(1).await;
                    let _ = from_b.recv().await;
                }
                drop(to_b);
                Ok(())
            })
        };
        let b = {
            let done = done.clone();
            cx.spawn(move |_| async move {
                while !done.get() {
                    match from_a.recv().await {
                        Ok(n) => {
                            if to_a.send(n).await.is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                Ok(())
            })
        };
        let worker = {
            let done = done.clone();
            cx.spawn(move |_| async move {
                done.set(true);
                Ok(())
            })
        };
        worker.await?;
        a.await?;
        b.await?;
        Ok(rounds.get())
    })
    .map_err(|e| e.to_string())
    .and_then(|rounds| match rounds {
        LIMIT.. => Err(format!("worker starved for {rounds} ping-pong rounds")),
        _ => Ok(rounds),
    })
}

#[test]
fn the_fair_schedulers_run_a_task_behind_a_two_task_spin_soon() {
    for seed in 0..20 {
        assert!(ping_pong_until_worker(&FiberIo::with_seed(seed)).unwrap() < 10);
        ping_pong_until_worker(&FiberIo::with_scheduler(seed, Scheduler::Walk)).unwrap();
    }
}

/// PCT runs the highest-priority enabled task; a spin of one task drops it after 1,000 steps,
/// but two tasks handing the turn to each other never run twice in a row. The starvation guard
/// runs a task enabled for 1,000 steps without running: `worker` runs within about 1,000
/// steps (a round is about three), on every seed (seed 10 starved it forever before).
#[test]
fn pct_never_starves_a_task_behind_a_two_task_spin() {
    let pct = Scheduler::Pct {
        depth: 2,
        steps: 20,
    };
    let mut worst = 0;
    for seed in 0..20 {
        let rounds = ping_pong_until_worker(&FiberIo::with_scheduler(seed, pct.clone()))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        worst = worst.max(rounds);
    }
    assert!(worst <= 1_000, "worker waited {worst} rounds");
}

/// `IOSWAP_SCHEDULER` refuses a depth above `Scheduler::MAX_PCT_DEPTH` (its change points are
/// drawn up front); a `Pct` built directly that deep runs as the deepest (it allocated
/// `depth - 1` change points, 34 GB for `u32::MAX`, and aborted).
#[test]
fn pct_with_a_huge_depth_is_refused_by_name_and_bounded_when_built() {
    let refused = format!("pct:{}:10", u32::MAX).parse::<Scheduler>();
    assert_eq!(refused.unwrap_err().why, "the depth is not in 1..=1000");
    let huge = Scheduler::Pct {
        depth: u32::MAX,
        steps: 10,
    };
    let io = FiberIo::with_scheduler(1, huge);
    let n = io.run(|cx| async move {
        let task = cx.spawn(|cx| async move { cx.yield_now().await });
        cx.yield_now().await?;
        task.await?;
        Ok(1)
    });
    assert_eq!(n.unwrap(), 1);
}

/// A program with many tasks: fails if task 7 finishes before task 0.
fn order_bug(io: &FiberIo) -> bool {
    io.run(|cx| async move {
        let order = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = (0..8u64)
            .map(|i| {
                let order = order.clone();
                cx.spawn(move |cx| async move {
                    for _ in 0..3 {
                        cx.yield_now().await?;
                    }
                    order.borrow_mut().push(i);
                    Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await?;
        }
        let order = order.borrow().clone();
        Ok(order.iter().position(|&i| i == 7) < order.iter().position(|&i| i == 0))
    })
    .unwrap()
}

/// For every scheduler (the turns shuffle included), the shrunk log fails when replayed, has
/// no more non-default picks than the log given, and is 1-minimal (io-fiber/DESIGN.md):
/// resetting any one of its remaining non-default picks makes the run pass. `before` counts
/// only picks of another task than the default's: a turns log's index-0 picks are not.
#[test]
fn shrinking_gives_a_failing_1_minimal_log_for_every_scheduler() {
    for scheduler in [
        Scheduler::Random,
        Scheduler::Walk,
        Scheduler::Pct {
            depth: 2,
            steps: 40,
        },
    ] {
        let seed = (1..2_000)
            .find(|&s| order_bug(&FiberIo::with_scheduler(s, scheduler.clone())))
            .unwrap_or_else(|| panic!("{scheduler:?} finds the bug"));
        let io = FiberIo::with_scheduler(seed, scheduler.clone()).record_decisions();
        assert!(order_bug(&io));
        let log = io.decisions();
        let shrunk =
            ioswap::shrink(log.clone(), |log| order_bug(&FiberIo::replay(log.clone()))).unwrap();
        let picks_elsewhere = log
            .decisions
            .iter()
            .filter(|d| matches!(d, ioswap::Decision::Task { index, .. } if *index > 0))
            .count();
        assert_eq!(shrunk.before, picks_elsewhere, "{scheduler:?}");
        assert!(shrunk.after <= shrunk.before, "{scheduler:?}: {shrunk:?}");
        assert!(
            order_bug(&FiberIo::replay(shrunk.log.clone())),
            "{scheduler:?}"
        );
        for (i, d) in shrunk.log.decisions.iter().enumerate() {
            if d.is_non_default_pick() {
                let mut smaller = shrunk.log.clone();
                smaller.decisions[i] = ioswap::Decision::First;
                assert!(
                    !order_bug(&FiberIo::replay(smaller)),
                    "{scheduler:?}: resetting pick {i} of {} still fails",
                    shrunk.log
                );
            }
        }
    }
}

/// An empty log that does not fail is refused; one that fails is already the smallest.
#[test]
fn shrinking_an_empty_log() {
    let empty = DecisionLog {
        seed: 0,
        granularity: ioswap::Granularity::Steps,
        decisions: Vec::new(),
    };
    assert_eq!(
        ioswap::shrink(empty.clone(), |_| false),
        Err(ioswap::ShrinkError::DoesNotFail)
    );
    let shrunk = ioswap::shrink(empty.clone(), |_| true).unwrap();
    assert_eq!((shrunk.before, shrunk.after, shrunk.log), (0, 0, empty));
}

/// How long the step schedulers take with many enabled tasks, and with many leftovers to cancel
/// at the end of a run, next to the default scheduler: a measurement, not a check (run it in
/// release: `cargo test --release --test explore -- --ignored --nocapture`). Before, PCT scanned
/// every enabled task at each step (40,000 tasks: 64 s) and the end of a run passed over every
/// leftover before each of the walk's one-task turns (40,000 leftovers: 10 s).
#[test]
#[ignore = "measures: run with --release --ignored --nocapture"]
fn many_tasks_under_the_step_schedulers() {
    fn timed(io: &FiberIo, n: u64, finish: bool) -> std::time::Duration {
        let start = std::time::Instant::now();
        io.run(|cx| async move {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    cx.spawn(move |cx| async move {
                        if !finish {
                            cx.sleep(u64::MAX).await?;
                        }
                        Ok(())
                    })
                })
                .collect();
            if finish {
                for task in tasks {
                    task.await?;
                }
            } else {
                tasks.into_iter().for_each(|t| t.detach());
                cx.yield_now().await?;
            }
            Ok(())
        })
        .unwrap();
        start.elapsed()
    }
    for n in [10_000, 20_000, 40_000] {
        let pct = Scheduler::Pct {
            depth: 3,
            steps: 2 * n,
        };
        let row = |finish| {
            [Scheduler::Random, Scheduler::Walk, pct.clone()]
                .map(|s| timed(&FiberIo::with_scheduler(1, s), n, finish))
        };
        let ([r, w, p], [lr, lw, lp]) = (row(true), row(false));
        println!(
            "{n} tasks: finishing: random {r:?} walk {w:?} pct {p:?}; \
             left behind: random {lr:?} walk {lw:?} pct {lp:?}"
        );
    }
}
