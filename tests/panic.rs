//! Panics in tasks, on every backend.
mod support;

use futures_lite::FutureExt;
use ioswap::{Backend, Error, RunError};

/// A panic in a task reaches its joiner (as a panic, with its payload), and the backend goes on
/// running the next task.
fn panic_reaches_joiner(backend: Backend) {
    let (message, next) = backend
        .run(|cx| async move {
            let bad = cx.spawn(|_| async {
                if true {
                    panic!("boom");
                }
                Ok(())
            });
            let caught = std::panic::AssertUnwindSafe(bad).catch_unwind().await;
            let payload = caught.expect_err("the panic reaches the joiner");
            let message = payload.downcast_ref::<&str>().copied().unwrap_or("?");
            let next = cx.spawn(|cx| async move {
                cx.sleep(1).await?;
                Ok(7)
            });
            Ok((message.to_string(), next.await?))
        })
        .unwrap();
    assert_eq!((message.as_str(), next), ("boom", 7));
}

/// A panicking main task becomes a typed error naming the task; nothing unwinds out of `run`.
fn panicking_main_is_a_typed_error(backend: Backend) {
    let err = backend
        .run(|cx| async move {
            cx.yield_now().await?;
            if cx.now_ms() < u64::MAX {
                panic!("main gave up");
            }
            Ok(())
        })
        .unwrap_err();
    assert_eq!(
        err,
        Error::Run(RunError::Panicked {
            task: "main".into(),
            message: "main gave up".into()
        })
    );
}

/// A detached task's panic does not stop the backend or the main task.
fn detached_panic_is_contained(backend: Backend) {
    let value = backend
        .run(|cx| async move {
            cx.spawn(|cx| async move {
                cx.yield_now().await?;
                if cx.now_ms() < u64::MAX {
                    panic!("detached boom");
                }
                Ok(())
            })
            .detach();
            cx.sleep(5).await?;
            Ok(42)
        })
        .unwrap();
    assert_eq!(value, 42);
}

conformance!(
    panic_reaches_joiner,
    panicking_main_is_a_typed_error,
    detached_panic_is_contained,
);
