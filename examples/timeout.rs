//! A slow job under a deadline: on a timeout the job is canceled and joined (its cleanup runs)
//! before `timeout` returns `Elapsed`; a job that makes it returns its value.
//!
//! ```sh
//! cargo run --example timeout                       # the default backend (blocking)
//! IOSWAP_BACKEND=fiber cargo run --example timeout  # the virtual clock
//! ```

use ioswap::{timeout, Canceled, Cx};

/// A job that takes `ms`; canceled, it says so and rolls back (in a shield) before it ends.
async fn job(cx: Cx, name: &'static str, ms: u64) -> Result<&'static str, Canceled> {
    println!("[{:>3} ms] {name}: started, needs {ms} ms", cx.now_ms());
    if let Err(canceled) = cx.sleep(ms).await {
        println!("[{:>3} ms] {name}: canceled, rolling back", cx.now_ms());
        cx.shield(cx.sleep(1)).await?;
        return Err(canceled);
    }
    Ok(name)
}

fn main() {
    let ran_on = ioswap::run(|cx| async move {
        println!("--- on {}", cx.backend());
        for (name, ms) in [("quick", 20), ("slow", 200)] {
            match timeout(&cx, 50, move |cx| job(cx, name, ms)).await? {
                Ok(done) => println!("[{:>3} ms] {done}: finished, value returned", cx.now_ms()),
                Err(elapsed) => println!("[{:>3} ms] {name}: {elapsed}", cx.now_ms()),
            }
        }
        Ok(cx.backend())
    });
    match ran_on {
        Ok("blocking") => println!(
            "\nBlocking runs the job inline to completion before the deadline can be looked at, so\n\
             nothing is cut short there and the slow job's value comes back late (completion\n\
             wins). Try IOSWAP_BACKEND=fiber."
        ),
        Ok(_) => {}
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
