//! Panics in tasks, on every backend.
mod support;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::FutureExt;
use ioswap::{Backend, Canceled, Error, RunError};

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

/// A task future whose own `Drop` panics (after the body inside it has done its work).
struct PanicsOnDrop<F>(Pin<Box<F>>);

impl<F: Future> Future for PanicsOnDrop<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl<F> Drop for PanicsOnDrop<F> {
    fn drop(&mut self) {
        panic!("drop panicked");
    }
}

/// A value whose `Drop` panics, as a task's output.
struct PanickyValue;

impl Drop for PanickyValue {
    fn drop(&mut self) {
        panic!("output drop panicked");
    }
}

fn drop_panic_message(err: Error) -> String {
    match err {
        Error::Run(RunError::Panicked { task, message }) => format!("{task}: {message}"),
        other => panic!("expected a panic, got {other:?}"),
    }
}

/// A task canceled before it ran has its future dropped unpolled; a panic in that drop reaches
/// the joiner (here main, so `run` reports it) instead of aborting the process. On blocking the
/// task ran inline before the cancel, and its drop panics at its end: the same report.
fn panicking_drop_of_a_task_canceled_before_it_ran_reaches_the_joiner(backend: Backend) {
    let err = backend
        .run(|cx| async move {
            let task = cx.spawn(|_| PanicsOnDrop(Box::pin(async { Ok(1) })));
            task.cancel();
            task.await
        })
        .unwrap_err();
    assert_eq!(drop_panic_message(err), "main: drop panicked");
}

/// A task canceled at a suspend point unwinds; its future's panicking drop reaches the joiner.
fn panicking_drop_of_a_task_canceled_while_waiting_reaches_the_joiner(backend: Backend) {
    let err = backend
        .run(|cx| async move {
            let task = cx.spawn(|cx| {
                PanicsOnDrop(Box::pin(async move {
                    cx.sleep(20).await?;
                    Ok(1)
                }))
            });
            cx.sleep(10).await?;
            task.cancel();
            task.await
        })
        .unwrap_err();
    assert_eq!(drop_panic_message(err), "main: drop panicked");
}

/// A detached task's output, dropped by the backend because nobody will join it, may panic in
/// its `Drop`: contained like a detached task's panic, never an abort.
fn detached_output_with_a_panicking_drop_is_contained(backend: Backend) {
    let value = backend
        .run(|cx| async move {
            cx.spawn(|cx| async move {
                cx.yield_now().await?;
                Ok(PanickyValue)
            })
            .detach();
            // Finished and never joined: the handle's drop drops the output.
            let unjoined = cx.spawn(|_| async { Ok(PanickyValue) });
            cx.sleep(5).await?;
            assert!(unjoined.is_finished());
            drop(unjoined);
            Ok(42)
        })
        .unwrap();
    assert_eq!(value, 42);
}

/// A leftover stuck when main returns is dropped at shutdown; a panic in that drop is contained
/// (no joiner is left) and `run` still returns main's value. On blocking the stuck task is a
/// reported deadlock at its spawn, and its drop at shutdown is contained the same way.
fn panicking_drop_of_a_leftover_at_shutdown_is_contained(backend: Backend) {
    let outcome = backend.run(|cx| async move {
        cx.spawn(|cx| {
            PanicsOnDrop(Box::pin(async move {
                let never = cx.park("never readied");
                cx.shield(cx.suspend(never)).await
            }))
        })
        .detach();
        cx.sleep(5).await?;
        Ok("main done")
    });
    match backend {
        Backend::Blocking => assert!(
            matches!(outcome, Err(Error::Run(RunError::Deadlock(_)))),
            "{outcome:?}"
        ),
        _ => assert_eq!(outcome, Ok("main done")),
    }
}

/// The main task's own future panicking in its drop is `RunError::Panicked`, even when the body
/// returned a value (the drop runs when the task ends, before `run` hands the value over).
fn panicking_drop_of_main_is_a_typed_error(backend: Backend) {
    let err = backend
        .run(|cx| {
            PanicsOnDrop(Box::pin(async move {
                cx.yield_now().await?;
                Ok::<_, Canceled>(5)
            }))
        })
        .unwrap_err();
    assert_eq!(drop_panic_message(err), "main: drop panicked");
}

/// A panic payload whose own `Drop` panics.
struct PanickyPayload;

impl Drop for PanickyPayload {
    fn drop(&mut self) {
        panic!("payload drop panicked");
    }
}

/// The main task panics with a payload whose drop panics too: still `RunError::Panicked`, and
/// `run` returns (its drain and shutdown ran) instead of unwinding out.
fn panicking_main_with_a_panicking_payload_is_a_typed_error(backend: Backend) {
    let outcome = std::panic::catch_unwind(|| {
        backend.run(|cx| async move {
            cx.yield_now().await?;
            if cx.now_ms() < u64::MAX {
                std::panic::panic_any(PanickyPayload);
            }
            Ok(())
        })
    });
    let err = outcome.expect("run returns").unwrap_err();
    assert_eq!(drop_panic_message(err), "main: <non-string panic payload>");
}

conformance!(
    panic_reaches_joiner,
    panicking_main_with_a_panicking_payload_is_a_typed_error,
    panicking_main_is_a_typed_error,
    detached_panic_is_contained,
    panicking_drop_of_a_task_canceled_before_it_ran_reaches_the_joiner,
    panicking_drop_of_a_task_canceled_while_waiting_reaches_the_joiner,
    detached_output_with_a_panicking_drop_is_contained,
    panicking_drop_of_a_leftover_at_shutdown_is_contained,
    panicking_drop_of_main_is_a_typed_error,
);
