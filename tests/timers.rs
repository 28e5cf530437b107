//! Sleeps and the timer protocol, on every backend.
mod support;

use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use ioswap::protocol::{Next, Park};
use ioswap::{Backend, RunError};
use support::{new_io, Log};

/// Records the order in which parks' wakers are woken.
struct Recorder {
    name: &'static str,
    order: Arc<Mutex<Vec<&'static str>>>,
}

impl Wake for Recorder {
    fn wake(self: Arc<Self>) {
        self.order.lock().unwrap().push(self.name);
    }
}

/// Timers fire in deadline order, ties in arming order — observed through the wakers the
/// protocol wakes, turn by turn.
fn timers_fire_in_deadline_order(backend: Backend) {
    let io = new_io(backend);
    let order = Arc::new(Mutex::new(Vec::new()));
    let now = io.now_ms();
    let arms = [
        ("a", 30),
        ("b", 10),
        ("c", 20),
        ("d", 10),
        ("e", 30),
        ("f", 20),
    ];
    let parks: Vec<Park> = arms
        .iter()
        .map(|&(name, offset)| {
            let park = Park::new("timer");
            io.arm_timer(now + offset, &park);
            let waker = Waker::from(Arc::new(Recorder {
                name,
                order: order.clone(),
            }));
            assert!(io
                .suspend_raw(&park, &mut Context::from_waker(&waker))
                .is_pending());
            park
        })
        .collect();
    while order.lock().unwrap().len() < parks.len() {
        io.poll(u64::MAX);
    }
    assert_eq!(*order.lock().unwrap(), ["b", "d", "c", "f", "a", "e"]);
}

/// A deadline at or before now does not fire synchronously, but on the next turn.
fn past_deadline_fires_next_turn(backend: Backend) {
    let io = new_io(backend);
    // Let the clock move (virtually or for real) so that a deadline strictly in the past exists.
    while io.now_ms() < 20 {
        io.poll(20);
    }
    let park = Park::new("past");
    let now = io.now_ms();
    io.arm_timer(now - 15, &park);
    assert!(!park.is_ready(), "arming never fires synchronously");
    io.poll(now);
    assert!(park.is_ready());
}

/// `u64::MAX` never fires, is not a pending deadline, and can still be disarmed.
fn max_deadline_never_fires(backend: Backend) {
    let io = new_io(backend);
    let park = Park::new("never");
    let id = io.arm_timer(u64::MAX, &park);
    let deadline = io.now_ms() + 20;
    let mut next = Next::Run;
    while io.now_ms() < deadline {
        next = io.poll(deadline);
    }
    assert!(!park.is_ready());
    assert_eq!(next, Next::Idle, "a never-timer is not a pending deadline");
    assert_eq!(io.disarm_timer(id), Some(u64::MAX));
    assert_eq!(io.disarm_timer(id), None);
}

/// Sleeping forever with nothing else to do is reported as a deadlock, never a hang.
fn sleep_forever_is_a_deadlock(backend: Backend) {
    let err = backend
        .run(|cx| async move { cx.sleep_until(u64::MAX).await })
        .unwrap_err();
    let ioswap::Error::Run(RunError::Deadlock(deadlock)) = err else {
        panic!("expected a deadlock, got {err:?}");
    };
    assert_eq!(deadlock.blocked.len(), 1);
    assert_eq!(deadlock.blocked[0].name, "main");
    assert_eq!(deadlock.blocked[0].parked_on, "sleep");
}

/// Sleeps return in deadline order. Blocking runs each sleeper inline, so its order is spawn
/// order by design.
fn sleep_ordering(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    backend
        .run(|cx| async move {
            let sleepers: Vec<_> = [30, 10, 20]
                .into_iter()
                .map(|ms| {
                    let l = l.clone();
                    cx.spawn(move |cx| async move {
                        cx.sleep(ms).await?;
                        l.push(ms);
                        Ok(())
                    })
                })
                .collect();
            for sleeper in sleepers {
                sleeper.await?;
            }
            Ok(())
        })
        .unwrap();
    match backend {
        Backend::Blocking => assert_eq!(log.joined(), "30 10 20"),
        _ => assert_eq!(log.joined(), "10 20 30"),
    }
}

/// A sleep takes at least its duration on the backend's clock (exactly, on the virtual one).
fn sleep_duration(backend: Backend) {
    let (start, end) = backend
        .run(|cx| async move {
            let start = cx.now_ms();
            cx.sleep(25).await?;
            Ok((start, cx.now_ms()))
        })
        .unwrap();
    assert!(end - start >= 25, "slept {} ms", end - start);
    if backend == Backend::Fiber {
        assert_eq!(end - start, 25);
    }
}

/// `disarm_timer` gives the remaining ms while armed and `None` once fired.
fn disarm_remaining(backend: Backend) {
    let (left, after_fire) = backend
        .run(|cx| async move {
            let park = cx.park("disarm");
            let id = cx.arm_timer(cx.now_ms() + 100, &park);
            let left = cx.disarm_timer(id);
            let fired = cx.arm_timer(cx.now_ms() + 5, &park);
            cx.sleep(20).await?;
            Ok((left, cx.disarm_timer(fired)))
        })
        .unwrap();
    let left = left.expect("still armed");
    // Real clocks move between the two calls; a generous floor keeps this deterministic.
    assert!((50..=100).contains(&left), "left {left}");
    if backend == Backend::Fiber {
        assert_eq!(left, 100);
    }
    assert_eq!(after_fire, None);
}

/// `sleep(0)` and `yield_now` return on the next turn, with `Ok`.
fn zero_sleep_and_yield(backend: Backend) {
    let at = backend
        .run(|cx| async move {
            cx.sleep(0).await?;
            cx.yield_now().await?;
            Ok(cx.now_ms())
        })
        .unwrap();
    if backend == Backend::Fiber {
        assert_eq!(at, 0);
    }
}

conformance!(
    timers_fire_in_deadline_order,
    past_deadline_fires_next_turn,
    max_deadline_never_fires,
    sleep_forever_is_a_deadlock,
    sleep_ordering,
    sleep_duration,
    disarm_remaining,
    zero_sleep_and_yield,
);
