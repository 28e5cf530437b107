//! Spawning and joining, on every backend.
mod support;

use ioswap::{Backend, SpawnError, SpawnOptions};
use support::Log;

fn spawn_join(backend: Backend) {
    let sum = backend
        .run(|cx| async move {
            let a = cx.spawn(|cx| async move {
                cx.sleep(5).await?;
                Ok(40)
            });
            let b = cx.spawn(|_| async { Ok(2) });
            Ok(a.await? + b.await?)
        })
        .unwrap();
    assert_eq!(sum, 42);
}

/// Blocking runs a spawned task inline, before `spawn` returns; the others defer it.
fn spawn_order(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    backend
        .run(|cx| async move {
            l.push(1);
            let a = cx.spawn({
                let l = l.clone();
                |_| async move {
                    l.push(10);
                    Ok(10)
                }
            });
            l.push(2);
            let sum = a.await?;
            l.push(sum);
            Ok(())
        })
        .unwrap();
    match backend {
        Backend::Blocking => assert_eq!(log.joined(), "1 10 2 10"),
        _ => assert_eq!(log.joined(), "1 2 10 10"),
    }
}

/// Blocking cannot give real concurrency and says so; the others can.
fn spawn_concurrent(backend: Backend) {
    let spawned = backend
        .run(|cx| async move {
            let opts = SpawnOptions::new().name("needs-concurrency").concurrent();
            Ok(match cx.spawn_with(opts, |_| async { Ok(7) }) {
                Ok(task) => Ok(task.await?),
                Err(e) => Err(e),
            })
        })
        .unwrap();
    match backend {
        Backend::Blocking => assert_eq!(spawned, Err(SpawnError::ConcurrencyUnavailable)),
        _ => assert_eq!(spawned, Ok(7)),
    }
}

/// A `Cx` kept past its run cannot spawn: a typed error, and the body never runs.
fn spawn_after_shutdown(backend: Backend) {
    let log = Log::new();
    let cx = backend.run(|cx| async move { Ok(cx.clone()) }).unwrap();
    let l = log.clone();
    let refused = cx.spawn_with(SpawnOptions::new(), move |_| async move {
        l.push("ran");
        Ok(())
    });
    assert_eq!(refused.unwrap_err(), SpawnError::ShutDown);
    let l = log.clone();
    let task = cx.spawn(move |_| async move {
        l.push("ran");
        Ok(())
    });
    assert_eq!(futures_lite::future::block_on(task), Err(ioswap::Canceled));
    assert_eq!(log.joined(), "");
}

/// `detach` lets a task run to completion after its handle is gone.
fn detach_runs_to_completion(backend: Backend) {
    let log = Log::new();
    let l = log.clone();
    backend
        .run(|cx| async move {
            cx.spawn(move |cx| async move {
                cx.sleep(10).await?;
                l.push("detached done");
                Ok(())
            })
            .detach();
            cx.sleep(30).await?;
            Ok(())
        })
        .unwrap();
    assert_eq!(log.joined(), "detached done");
}

/// Task ids count up from the main task (1) in spawn order.
fn task_ids(backend: Backend) {
    let ids = backend
        .run(|cx| async move {
            let main = cx.current_task().unwrap().id();
            let a = cx.spawn(|cx| async move { Ok(cx.current_task().unwrap().id()) });
            let b = cx.spawn(|_| async { Ok(0) });
            Ok((main, a.id(), b.id(), a.await?))
        })
        .unwrap();
    assert_eq!(ids, (1, 2, 3, 2));
}

/// A body returning `io::Result` uses `?` on I/O errors and on cancellation alike; joining gives
/// the error typed; a task canceled before its body returned joins as `E::from(Canceled)`.
fn spawn_try_gives_the_error_typed(backend: Backend) {
    use std::io;
    let (failed, canceled, fine) = backend
        .run(|cx| async move {
            let failing = cx.spawn_try(|cx| async move {
                cx.yield_now().await?;
                let missing: io::Result<()> = Err(io::ErrorKind::NotFound.into());
                missing?;
                Ok::<u32, io::Error>(1)
            });
            let failed = failing.await.map_err(|e| e.kind());
            let sleeper = cx.spawn_try(|cx| async move {
                cx.sleep(100).await?;
                Ok::<u32, io::Error>(2)
            });
            sleeper.cancel();
            let canceled = sleeper.await.map_err(|e| ioswap::Canceled::is_canceled(&e));
            let fine = cx
                .spawn_try(|_| async move { Ok::<u32, io::Error>(3) })
                .await
                .map_err(|e| e.kind());
            Ok((failed, canceled, fine))
        })
        .unwrap();
    assert_eq!(failed, Err(std::io::ErrorKind::NotFound));
    match backend {
        // Blocking ran the sleeper inline, to its end, before the cancel was asked for.
        Backend::Blocking => assert_eq!(canceled, Ok(2)),
        _ => assert_eq!(canceled, Err(true)),
    }
    assert_eq!(fine, Ok(3));
}

conformance!(
    spawn_join,
    spawn_order,
    spawn_concurrent,
    spawn_after_shutdown,
    detach_runs_to_completion,
    task_ids,
    spawn_try_gives_the_error_typed,
);
