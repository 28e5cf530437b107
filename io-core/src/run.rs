//! [`run`]: the driver loop every backend's `run` is, written once over [`Driver`].

use std::future::Future;
use std::rc::Rc;

use crate::task;
use crate::{Canceled, Cx, Driver, Next, RunError, SpawnOptions};

/// Runs `main` as the main task of `io` and drives `io` until it finishes — the driver every
/// backend's `run` is. Then it cancels every task still alive, drives them to their end, and
/// shuts the backend down: nothing spawned outlives `run`. A leftover task that can never end
/// (waiting, shielded, on something nothing will ready) has its future dropped at shutdown.
///
/// When a turn leaves nothing that could make a task runnable ([`Next::Idle`]) and the main task
/// is unfinished, `run` ends with [`RunError::Deadlock`]; while a task waits on a foreign future
/// ([`Next::Foreign`]), backends that wait for wakes from other threads keep waiting. The drain
/// does not: a leftover stuck on a foreign future is dropped like any other stuck leftover.
///
/// A backend runs once: a second `run` gives [`RunError::ShutDown`].
#[track_caller]
pub fn run<T, F, Fut>(io: Rc<dyn Driver>, main: F) -> Result<T, RunError>
where
    T: 'static,
    F: FnOnce(Cx) -> Fut,
    Fut: Future<Output = Result<T, Canceled>> + 'static,
{
    // A run inside a task's poll (a nested backend) drives itself: the outer poll's budget is
    // not its to spend.
    let _unbudgeted = crate::task::Unbudgeted::enter();
    let core = io.core();
    core.start_run()?;
    let cx = Cx::new(io.clone());
    let main = cx
        .spawn_with(SpawnOptions::new().name("main"), main)
        .map_err(|_| RunError::ShutDown)?;
    let mut deadlock = None;
    while !main.is_finished() {
        let next = io.poll(u64::MAX);
        if !main.is_finished() && next == Next::Idle {
            deadlock = Some(crate::Deadlock {
                at_ms: io.now_ms(),
                blocked: core.blocked_tasks(),
            });
            break;
        }
    }
    let outcome = match deadlock {
        None => task::take_finished(main, "main"),
        Some(deadlock) => {
            drop(main); // cancels it, like every other task left
            Err(RunError::Deadlock(deadlock))
        }
    };
    // Cancel what is left and let it unwind through its suspend points. Canceling again before
    // each turn also catches tasks spawned while unwinding (spawn is not a suspend point), before
    // they first run. A cancel is sticky, so only a spawn makes a new pass over the live tasks
    // worth its cost: N leftovers on a backend that runs one task per turn (fiber's step
    // schedulers) cost N turns, not N passes over N tasks.
    let mut ids_canceled = None;
    loop {
        let ids = core.queue().ids_issued();
        if ids_canceled != Some(ids) {
            let live = core.live_tasks();
            if live.is_empty() {
                break;
            }
            for task in &live {
                task.cancel();
            }
            ids_canceled = Some(ids);
        } else if core.live_count() == 0 {
            break;
        }
        // A turn that does not wait: it runs what the cancels readied. Then wait only for what
        // the backend will deliver itself (a task, a timer, I/O), never for a foreign wake.
        let next = io.poll(io.now_ms());
        if !next.will_come() {
            // Only stuck tasks remain (shielded waits that nothing will end, foreign futures
            // that ignore the cancel): shutting down drops their futures.
            break;
        }
        if next != Next::Run {
            io.poll(u64::MAX);
        }
    }
    io.shut_down();
    outcome
}
