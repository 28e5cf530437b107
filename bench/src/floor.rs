//! The floor: a bare async-task loop on one thread, with no runtime around it.
//!
//! What a spawn + run + join costs when nothing but async-task's allocation, state machine and
//! waker is involved: a thread-local queue, no task registry, no cancel state, no timers. Every
//! runtime built on async-task (smol, ioswap) pays this plus what it adds.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;

type Runnable = async_task::Runnable;

thread_local! {
    static QUEUE: RefCell<VecDeque<Runnable>> = const { RefCell::new(VecDeque::new()) };
}

fn schedule(runnable: Runnable) {
    QUEUE.with(|queue| queue.borrow_mut().push_back(runnable));
}

/// Spawns `future` on the loop.
pub fn spawn<F>(future: F) -> async_task::Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let (runnable, task) = async_task::spawn_local(future, schedule);
    runnable.schedule();
    task
}

/// Runs `main` and everything it spawns until `main` finishes.
///
/// Panics if the queue runs dry with `main` unfinished: the bench's own futures never wait for
/// anything but tasks of this loop, so that would be a bug in the bench.
pub fn block_on<F>(main: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    let main = spawn(main);
    while !main.is_finished() {
        let next = QUEUE.with(|queue| queue.borrow_mut().pop_front());
        match next {
            Some(runnable) => {
                runnable.run();
            }
            None => panic!("the floor loop ran dry before its main task finished"),
        }
    }
    QUEUE.with(|queue| queue.borrow_mut().clear());
    futures_lite::future::block_on(main)
}
