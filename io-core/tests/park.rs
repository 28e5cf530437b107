//! Poll-by-poll behaviour of the leaf futures, with tokio-test's mock task.
use tokio_test::task;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};

use io_core::{Cx, Next, Park};

#[test]
fn first_suspend_always_yields_even_when_ready() {
    let io = io_fiber::FiberIo::new().io();
    let cx = Cx::new(io);
    let park = Park::new("ready early");
    park.ready();
    let mut suspend = task::spawn(cx.suspend(park.clone()));
    assert_pending!(suspend.poll());
    assert!(suspend.is_woken(), "a ready park re-wakes the task at once");
    assert_ready_ok!(suspend.poll());
    assert!(!park.is_ready(), "the suspend consumed the readiness");
}

#[test]
fn ready_wakes_exactly_once() {
    let cx = Cx::new(io_fiber::FiberIo::new().io());
    let park = Park::new("signal");
    let mut suspend = task::spawn(cx.suspend(park.clone()));
    assert_pending!(suspend.poll());
    assert_pending!(suspend.poll(), "spurious polls stay parked");
    assert_eq!(suspend.waker_ref_count(), 2, "the park holds one waker");
    park.ready();
    park.ready();
    assert!(suspend.is_woken());
    assert_ready!(suspend.poll()).unwrap();
}

#[test]
fn sleep_disarms_its_timer_when_dropped() {
    let io = io_fiber::FiberIo::new().io();
    let cx = Cx::new(io.clone());
    let mut sleep = task::spawn(cx.sleep(50));
    assert_pending!(sleep.poll());
    assert_eq!(io.poll(0), Next::Timer(50), "armed");
    drop(sleep);
    assert_eq!(io.poll(0), Next::Idle, "dropping the sleep disarmed it");
}

#[test]
fn sleep_completes_when_its_timer_fires() {
    let io = io_fiber::FiberIo::new().io();
    let cx = Cx::new(io.clone());
    let mut sleep = task::spawn(cx.sleep(50));
    assert_pending!(sleep.poll());
    assert!(!sleep.is_woken());
    io.poll(u64::MAX); // nothing runnable: the clock jumps to 50 and the timer fires
    assert_eq!(io.now_ms(), 50);
    assert!(sleep.is_woken());
    assert_ready_ok!(sleep.poll());
}

#[test]
fn an_abandoned_suspend_does_not_skip_the_next_yield() {
    let cx = Cx::new(io_fiber::FiberIo::new().io());
    let park = Park::new("signal");
    let mut first = task::spawn(cx.suspend(park.clone()));
    assert_pending!(first.poll());
    drop(first); // e.g. the losing branch of a select
    park.ready();
    let mut second = task::spawn(cx.suspend(park.clone()));
    assert_pending!(
        second.poll(),
        "a fresh suspend yields once, even on a ready park"
    );
    assert_ready_ok!(second.poll());
}

#[test]
fn a_canceled_suspend_leaves_readiness_for_the_primitive() {
    let fiber = io_fiber::FiberIo::new();
    let (readied, still_ready) = fiber
        .run(|cx| async move {
            let park = cx.park("handed over");
            park.ready();
            cx.current_task().unwrap().cancel();
            let readied = cx.suspend(park.clone()).await;
            Ok((readied, park.is_ready()))
        })
        .unwrap();
    assert_eq!(readied, Err(io_core::Canceled));
    assert!(
        still_ready,
        "the primitive can still see its value was handed over"
    );
}

#[test]
fn a_sleep_polled_after_it_returned_stays_ready() {
    let io = io_fiber::FiberIo::new().io();
    let cx = Cx::new(io.clone());
    let mut sleep = task::spawn(cx.sleep(5));
    assert_pending!(sleep.poll());
    io.poll(u64::MAX);
    assert_ready_ok!(sleep.poll());
    assert_ready_ok!(sleep.poll());
}
