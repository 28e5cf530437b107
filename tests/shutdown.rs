//! A backend after its run: nothing waits on it forever.
mod support;

use futures_lite::future::block_on;
use ioswap::channel::{self, RecvError};
use ioswap::protocol::op::Op;
use ioswap::{Backend, Canceled, Cx};

/// Every wait on a `Cx` whose backend has shut down fails at once with `Canceled` — a sleep, a
/// yield, a shielded sleep, a channel receive, an op — whether it is polled outside any task or
/// by a task of another, live backend. Before, each of them parked forever.
fn waits_after_shutdown_fail_at_once(backend: Backend) {
    let (dead, rx) = backend
        .run(|cx| async move {
            let (tx, rx) = channel::bounded::<u32>(&cx, 1);
            std::mem::forget(tx); // the channel stays open: only the shutdown ends the wait
            Ok((cx.clone(), rx))
        })
        .unwrap();
    assert_eq!(block_on(dead.sleep(10)), Err(Canceled));
    assert_eq!(block_on(dead.sleep_until(u64::MAX)), Err(Canceled));
    assert_eq!(block_on(dead.yield_now()), Err(Canceled));
    assert_eq!(block_on(dead.shield(dead.sleep(10))), Err(Canceled));
    assert_eq!(block_on(rx.recv()), Err(RecvError::Canceled));
    let nop = block_on(dead.submit(Op::Nop));
    assert!(Canceled::is_canceled(&nop.result.unwrap_err()));
    assert!(matches!(nop.op, Op::Nop), "the op comes back unrun");

    // From a task of a live backend (a new one of the same kind): the dead backend's waits
    // fail there too, and the live backend's own clock goes on.
    let (slept, took) = backend
        .run(move |cx: Cx| async move {
            let start = cx.now_ms();
            let slept = dead.sleep(10).await;
            cx.sleep(3).await?;
            Ok((slept, cx.now_ms() - start))
        })
        .unwrap();
    assert_eq!(slept, Err(Canceled));
    match backend {
        Backend::Fiber => assert_eq!(took, 3),
        _ => assert!(took >= 3, "{took}"),
    }
}

conformance!(waits_after_shutdown_fail_at_once);
