//! Cancellation at a suspend point, step by step.
//!
//! ```sh
//! cargo run --example cancel
//! ```

use ioswap::{Backend, Canceled};

fn main() {
    for backend in Backend::compiled() {
        println!("--- on {backend}");
        let result = backend.run(|cx| async move {
            let worker = cx.spawn(|cx| async move {
                println!(
                    "[{:>3} ms] worker: step 1, now sleeping 100 ms",
                    cx.now_ms()
                );
                let slept = cx.sleep(100).await;
                println!(
                    "[{:>3} ms] worker: the sleep returned {slept:?}",
                    cx.now_ms()
                );
                if slept.is_err() {
                    // Sticky: every later suspend point fails too...
                    println!(
                        "[{:>3} ms] worker: a yield now gives {:?}",
                        cx.now_ms(),
                        cx.yield_now().await
                    );
                    // ...except inside a shield, which is for cleanup.
                    let cleanup = cx.shield(cx.sleep(5)).await;
                    println!(
                        "[{:>3} ms] worker: shielded 5 ms cleanup gave {cleanup:?}",
                        cx.now_ms()
                    );
                }
                slept?; // `?` unwinds: the line below never runs after a cancel
                println!(
                    "[{:>3} ms] worker: step 2 (only when not canceled)",
                    cx.now_ms()
                );
                Ok("finished")
            });
            cx.sleep(30).await?;
            println!("[{:>3} ms] main: cancel the worker", cx.now_ms());
            worker.cancel();
            let joined = worker.await;
            println!(
                "[{:>3} ms] main: joined the worker: {joined:?}",
                cx.now_ms()
            );
            Ok::<_, Canceled>(joined)
        });
        if let Err(e) = result {
            println!("run failed: {e}");
        }
    }
    println!(
        "\nOn fiber the worker is deferred, so the cancel lands at its sleep. On blocking a spawn\n\
         runs inline to completion, so the worker has finished before main can cancel it."
    );
}
