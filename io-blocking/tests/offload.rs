//! Offloaded work on the blocking backend runs inline: closures, lookups.
mod support;

use std::net::SocketAddr;

use io_core::offload::{Blocking, Offload};
use io_core::Op;
use support::run;

/// Runs a `spawn_blocking` closure through the backend and returns its output (or panic).
async fn blocking<T: Send + 'static>(
    cx: &io_core::Cx,
    f: impl FnOnce() -> T + Send + 'static,
) -> io_core::offload::BlockingOutput {
    let done = cx
        .submit(Op::Offload(Offload::Blocking(Blocking::new(f))))
        .await;
    assert_eq!(done.result.unwrap(), 0);
    match done.op {
        Op::Offload(Offload::Blocking(mut job)) => {
            assert!(!job.is_pending());
            job.take_output().expect("the closure ran")
        }
        op => panic!("{op:?}"),
    }
}

/// The closure runs on the loop's own thread, and its output comes back.
#[test]
fn a_blocking_closure_runs_inline_and_gives_its_output() {
    let (value, same_thread) = run(10, |cx| async move {
        let here = std::thread::current().id();
        let out = blocking(&cx, move || (42_u32, std::thread::current().id() == here)).await;
        *out.unwrap().downcast::<(u32, bool)>().unwrap()
    });
    assert_eq!(value, 42);
    assert!(same_thread);
}

/// A panic in the closure is caught and comes back as its output; the run goes on.
#[test]
fn a_blocking_closures_panic_travels_as_its_output() {
    let (message, after) = run(10, |cx| async move {
        let out = blocking(&cx, || -> u32 { panic!("boom in the closure") }).await;
        let payload = out.unwrap_err();
        let message = payload.downcast_ref::<&str>().copied().unwrap_or_default();
        let after = blocking(&cx, || 7_u8)
            .await
            .unwrap()
            .downcast::<u8>()
            .unwrap();
        (message.to_owned(), *after)
    });
    assert_eq!(message, "boom in the closure");
    assert_eq!(after, 7);
}

/// `localhost` resolves to loopback addresses, each with the port asked for.
#[test]
fn localhost_resolves_to_loopback() {
    let addrs: Vec<SocketAddr> = run(10, |cx| async move {
        let work = Offload::Resolve {
            host: "localhost".into(),
            port: 80,
            addrs: Vec::new(),
        };
        let done = cx.submit(Op::Offload(work)).await;
        done.result.unwrap();
        match done.op {
            Op::Offload(Offload::Resolve { addrs, .. }) => addrs,
            op => panic!("{op:?}"),
        }
    });
    assert!(!addrs.is_empty());
    for addr in addrs {
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 80);
    }
}
