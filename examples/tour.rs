//! The same async code on every compiled backend: what it did, and how long it took on the
//! backend's clock versus the wall clock.
//!
//! ```sh
//! cargo run --example tour
//! ```

use std::time::Instant;

use ioswap::{Backend, Canceled, Cx};

/// A small service: `workers` tasks each beat `beats` times, `period_ms` apart; the main task
/// waits for all of them and reports the total. Written once, against `Cx` only.
async fn heartbeats(cx: &Cx, workers: u64, beats: u64, period_ms: u64) -> Result<u64, Canceled> {
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            cx.spawn(move |cx| async move {
                for _ in 0..beats {
                    cx.sleep(period_ms).await?;
                }
                Ok(beats)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await?;
    }
    Ok(total)
}

fn main() {
    println!("ioswap tour: 3 workers, 10 heartbeats each\n");
    for backend in Backend::compiled() {
        // An hour of heartbeats on the virtual clock; a fraction of a second on a real one.
        let period_ms = if backend == Backend::Fiber {
            360_000
        } else {
            10
        };
        let wall = Instant::now();
        let result = backend.run(move |cx| async move {
            let start = cx.now_ms();
            let beats = heartbeats(&cx, 3, 10, period_ms).await?;
            Ok((beats, cx.now_ms() - start))
        });
        let wall_ms = wall.elapsed().as_secs_f64() * 1e3;
        match result {
            Ok((beats, clock_ms)) => {
                let how = match backend {
                    Backend::Fiber => "virtual clock: tasks overlap, time jumps to the next timer",
                    Backend::Blocking => "real clock: each task runs inline, one after another",
                    Backend::Uring | Backend::Poll => "real clock: tasks overlap on one thread",
                };
                println!("{backend:>8}: {beats} beats, {clock_ms:>9} ms on the backend clock, {wall_ms:>8.2} ms of wall time ({how})");
            }
            Err(e) => println!("{backend:>8}: failed: {e}"),
        }
    }
    println!("\nPick the backend for `ioswap::run` with IOSWAP_BACKEND=blocking|fiber|uring|poll.");
}
