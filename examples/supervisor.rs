//! A one-for-one supervisor over `ioswap::process`: it traps exits, restarts a child that
//! crashes, and gives up when children crash more than `MAX_RESTARTS` times within
//! `PERIOD_MS` (Erlang's restart intensity), stopping the others.
//!
//! ```sh
//! cargo run --example supervisor
//! IOSWAP_BACKEND=fiber cargo run --example supervisor   # the same story on the virtual clock
//! ```
//!
//! Two children: a `ticker` that sends a job to the process registered as `flaky` every
//! 50 ms, and `flaky`, which does the jobs but panics on every third and fails on every
//! fourth. Each restart registers the new `flaky` under the name again, so the ticker never
//! learns that the process behind it changed. The blocking backend runs tasks inline and so
//! cannot run processes side by side: there the first spawn is refused, which this prints.

use std::collections::VecDeque;

use ioswap::process::{ExitReason, Message, Node, ProcId, Process};
use ioswap::{Backend, Canceled, SpawnError};

const MAX_RESTARTS: usize = 3;
const PERIOD_MS: u64 = 500;

/// Does jobs; job `n` panics when `n % 3 == 0` and fails when `n % 4 == 0`.
async fn flaky(me: Process<u32>) -> Result<(), ExitReason> {
    loop {
        let Message::Msg(job) = me.receive().await? else {
            continue;
        };
        if job % 3 == 0 {
            panic!("job {job} is cursed");
        }
        if job % 4 == 0 {
            return Err(ExitReason::error(format!("job {job} failed")));
        }
        println!(
            "{:>4} ms  flaky {} did job {job}",
            me.cx().now_ms(),
            me.id()
        );
    }
}

/// Sends job 1, 2, 3, … to whoever is registered as `flaky`, every 50 ms.
async fn ticker(me: Process<()>) -> Result<(), ExitReason> {
    for job in 1u32.. {
        me.cx().sleep(50).await?;
        if let Err(err) = me.node().send_named("flaky", job) {
            println!("         job {job} lost: {err}");
        }
    }
    Ok(())
}

/// How the supervisor starts (and restarts) a child.
struct Child {
    name: &'static str,
    start: fn(&Process<()>) -> Result<ProcId, SpawnError>,
    pid: Option<ProcId>,
}

fn start_flaky(sup: &Process<()>) -> Result<ProcId, SpawnError> {
    let pid = sup.spawn_link(flaky)?;
    sup.node()
        .register("flaky", &pid)
        .expect("the crashed flaky's name died with it");
    Ok(pid.id())
}

fn start_ticker(sup: &Process<()>) -> Result<ProcId, SpawnError> {
    Ok(sup.spawn_link(ticker)?.id())
}

/// The supervisor loop, in the run's own task: ends when the restart intensity is exceeded.
async fn supervise(node: &Node) -> Result<Result<usize, SpawnError>, Canceled> {
    let sup = node.attach::<()>();
    sup.trap_exit(true);
    let mut children = [
        Child {
            name: "flaky",
            start: start_flaky,
            pid: None,
        },
        Child {
            name: "ticker",
            start: start_ticker,
            pid: None,
        },
    ];
    for child in &mut children {
        match (child.start)(&sup) {
            Ok(pid) => child.pid = Some(pid),
            Err(refused) => return Ok(Err(refused)),
        }
        println!("   0 ms  started {} as {}", child.name, child.pid.unwrap());
    }
    let at = |sup: &Process<()>| sup.cx().now_ms();
    let mut restarts: VecDeque<u64> = VecDeque::new();
    loop {
        let Message::Exit(exit) = sup.receive().await? else {
            continue;
        };
        let Some(child) = children.iter_mut().find(|c| c.pid == Some(exit.from)) else {
            continue;
        };
        println!(
            "{:>4} ms  {} {} exited: {}",
            at(&sup),
            child.name,
            exit.from,
            exit.reason
        );
        if exit.reason.is_normal() {
            child.pid = None;
            continue;
        }
        let now = at(&sup);
        restarts.push_back(now);
        while restarts.front().is_some_and(|t| now - t > PERIOD_MS) {
            restarts.pop_front();
        }
        if restarts.len() > MAX_RESTARTS {
            println!(
                "{now:>4} ms  {} crashes within {PERIOD_MS} ms: giving up, stopping the others",
                restarts.len()
            );
            for other in children.iter().filter_map(|c| c.pid) {
                if other != exit.from {
                    sup.node().kill(other);
                }
            }
            // Wait for the others' exits, so nothing outlives its supervisor.
            while sup.node().processes().len() > 1 {
                if let Message::Exit(exit) = sup.receive().await? {
                    println!("{:>4} ms  {} exited: {}", at(&sup), exit.from, exit.reason);
                }
            }
            return Ok(Ok(restarts.len()));
        }
        child.pid = Some((child.start)(&sup).expect("it started before"));
        println!(
            "{now:>4} ms  restarted {} as {}",
            child.name,
            child.pid.unwrap()
        );
    }
}

fn main() {
    // A crash is reported by the supervisor, with its message: keep the default hook's
    // report (and backtrace) of each contained panic out of the story.
    std::panic::set_hook(Box::new(|_| {}));
    let backend = Backend::from_env().expect("a usable backend");
    println!(
        "supervisor on {backend}: one-for-one, at most {MAX_RESTARTS} restarts in {PERIOD_MS} ms"
    );
    let outcome = backend.run(|cx| async move { supervise(&Node::new(&cx)).await });
    match outcome {
        Ok(Ok(restarts)) => {
            println!("supervisor stopped: {restarts} crashes within {PERIOD_MS} ms")
        }
        Ok(Err(SpawnError::ConcurrencyUnavailable)) => println!(
            "the {backend} backend runs tasks inline: processes cannot run side by side there \
             (try IOSWAP_BACKEND=fiber, or the default)"
        ),
        Ok(Err(refused)) => println!("spawn refused: {refused}"),
        Err(err) => println!("run failed: {err}"),
    }
}
