//! Offloaded work on the poll backend: closures and lookups on its pool, a cancel of a running
//! closure, and a loop that sleeps (does not spin) while a job runs.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{is_canceled, on_poll, submit};
use io_core::offload::{Blocking, Offload};
use io_core::{Cx, Op};

async fn blocking<T: Send + 'static>(
    cx: &Cx,
    f: impl FnOnce() -> T + Send + 'static,
) -> (std::io::Result<usize>, Option<T>) {
    match submit(cx, Op::Offload(Offload::Blocking(Blocking::new(f)))).await {
        (result, Op::Offload(Offload::Blocking(mut job))) => {
            let value = job
                .take_output()
                .map(|out| *out.expect("no panic").downcast::<T>().expect("a T"));
            (result, value)
        }
        (_, other) => panic!("not a closure back: {other:?}"),
    }
}

/// The CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant POSIX defines.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A closure runs on the pool, off the loop's thread, and its value comes back.
#[test]
fn a_blocking_closure_runs_on_the_pool() {
    let (value, elsewhere) = on_poll("spawn_blocking", |cx| async move {
        let loop_thread = std::thread::current().id();
        let (result, value) = blocking(&cx, move || {
            (6 * 7, std::thread::current().id() != loop_thread)
        })
        .await;
        result.unwrap();
        Ok(value.unwrap())
    });
    assert_eq!(value, 42);
    assert!(elsewhere, "it ran on another thread");
}

/// A name lookup on the pool: `localhost` has loopback addresses, each with the port.
#[test]
fn resolve_localhost() {
    let addrs = on_poll("resolve localhost", |cx| async move {
        let (result, op) = submit(
            &cx,
            Op::Offload(Offload::Resolve {
                host: "localhost".into(),
                port: 80,
                addrs: Vec::new(),
            }),
        )
        .await;
        result.unwrap();
        match op {
            Op::Offload(Offload::Resolve { addrs, .. }) => Ok(addrs),
            other => panic!("{other:?}"),
        }
    });
    assert!(!addrs.is_empty());
    for addr in addrs {
        assert_eq!(addr.port(), 80);
        assert!(IpAddr::is_loopback(&addr.ip()), "{addr}");
    }
}

/// A closure canceled while it runs lets its caller go at once (canceled), though it runs on;
/// the run then ends without waiting for it.
#[test]
fn a_running_blocking_closure_canceled_completes_canceled_at_once() {
    let started = Instant::now();
    let (canceled, waited) = on_poll("a canceled closure", |cx| async move {
        let (running, is_running) = std::sync::mpsc::channel();
        let task = cx.spawn(move |cx| async move {
            let done = cx
                .submit(Op::Offload(Offload::Blocking(Blocking::new(move || {
                    running.send(()).unwrap();
                    std::thread::sleep(Duration::from_secs(2));
                }))))
                .await;
            Ok(is_canceled(&done.result))
        });
        // Wait (on the loop's clock) until the closure runs on its thread.
        while is_running.try_recv().is_err() {
            cx.sleep(1).await?;
        }
        let at = Instant::now();
        task.cancel();
        let canceled = task.await?;
        Ok((canceled, at.elapsed()))
    });
    assert!(canceled, "completed as canceled");
    assert!(waited < Duration::from_millis(500), "at once ({waited:?})");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the run did not wait for the closure ({:?})",
        started.elapsed()
    );
}

/// While the only thing in flight is a pool job sleeping 100 ms, the loop sleeps in the poller:
/// it reports no deadlock, and uses little CPU (a spinning loop would use the whole 100 ms).
#[test]
fn the_loop_sleeps_while_a_pool_job_runs() {
    let (slept, cpu) = on_poll("a loop waiting for a pool job", |cx| async move {
        let cpu = thread_cpu_time();
        let start = Instant::now();
        let (result, _) = blocking(&cx, || std::thread::sleep(Duration::from_millis(100))).await;
        result.unwrap();
        Ok((start.elapsed(), thread_cpu_time() - cpu))
    });
    assert!(slept >= Duration::from_millis(100));
    assert!(
        cpu < Duration::from_millis(25),
        "the loop used {cpu:?} of CPU waiting {slept:?}"
    );
}
