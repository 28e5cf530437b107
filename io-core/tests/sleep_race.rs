//! A loop that keeps owning its run queue while it sleeps ([`RunQueue::begin_sleep`]) never
//! misses a push from another thread: the pusher's store of its push and the sleeper's store of
//! its flag are a SeqCst pair, so at least one of them sees the other and the idle hook runs.
//! Three threads push tasks (built on the loop's thread) at random moments while the loop runs, sleeps on a semaphore the
//! hook posts, and wakes; a lost wake-up shows as a sleep with tasks queued and no post.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use io_core::{Canceled, RawTask, RunQueue, SpawnOptions};

const PUSHERS: u64 = 3;
const EACH: u64 = 20_000;

/// Posts of the idle hook, and the condition the loop sleeps on.
type Semaphore = Arc<(Mutex<u64>, Condvar)>;

#[test]
fn no_push_from_another_thread_is_lost_across_a_sleep() {
    let posts: Semaphore = Arc::new((Mutex::new(0), Condvar::new()));
    let queue = {
        let posts = posts.clone();
        RunQueue::with_idle_hook(move || {
            let (count, posted) = &*posts;
            *count.lock().unwrap() += 1;
            posted.notify_one();
        })
    };
    let pushed = Arc::new(AtomicU64::new(0));
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|k| {
            // Tasks are built (and so run) on this thread; their runnables may be pushed from
            // any thread.
            let runnables: Vec<_> = (0..EACH)
                .map(|_| {
                    let (raw, task) = RawTask::new(&queue, &SpawnOptions::new(), async {
                        Ok::<_, Canceled>(())
                    });
                    task.detach();
                    raw.into_parts().0
                })
                .collect();
            let (queue, pushed) = (queue.clone(), pushed.clone());
            std::thread::spawn(move || {
                let mut x = (k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                for runnable in runnables {
                    // xorshift: a spin of 0..512, so pushes land before, during and after the
                    // loop's begin_sleep.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    for _ in 0..(x % 512) {
                        std::hint::spin_loop();
                    }
                    queue.push(runnable);
                    pushed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut batch = VecDeque::new();
    let mut ran = 0;
    while ran < PUSHERS * EACH {
        queue.drain_into(&mut batch);
        while let Some(runnable) = batch.pop_front() {
            runnable.run();
            ran += 1;
        }
        if !queue.begin_sleep() {
            continue;
        }
        let (count, posted) = &*posts;
        let mut count = count.lock().unwrap();
        let mut slept = Duration::ZERO;
        while *count == 0 {
            let (now, timeout) = posted
                .wait_timeout(count, Duration::from_millis(100))
                .unwrap();
            count = now;
            if !timeout.timed_out() {
                continue;
            }
            slept += Duration::from_millis(100);
            let all_pushed = pushed.load(Ordering::Relaxed) == PUSHERS * EACH;
            assert!(
                slept < Duration::from_secs(10) || all_pushed && queue.is_empty(),
                "a lost wake-up: slept {slept:?} with {} queued, {ran} run",
                queue.len()
            );
            if all_pushed && queue.is_empty() {
                break;
            }
        }
        *count = 0;
        drop(count);
        queue.end_sleep();
    }
    for pusher in pushers {
        pusher.join().unwrap();
    }
    assert_eq!(ran, PUSHERS * EACH);
}
