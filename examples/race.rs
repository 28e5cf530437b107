//! Ask three mirrors for the same file; the first to answer wins, the other two are canceled and
//! joined (they close their connections, in a shield) before `race` returns.
//!
//! ```sh
//! cargo run --example race                       # the default backend (blocking)
//! IOSWAP_BACKEND=fiber cargo run --example race  # the virtual clock
//! ```

use ioswap::{race, Canceled, Cx, Winner3};

/// One download, written once against `Cx`. A canceled download still closes its connection:
/// the cancel arrives as a value at the sleep, and the cleanup runs in a shield.
async fn download(cx: Cx, mirror: &'static str, latency_ms: u64) -> Result<String, Canceled> {
    println!("[{:>3} ms] {mirror:>4}: request sent", cx.now_ms());
    if let Err(canceled) = cx.sleep(latency_ms).await {
        println!(
            "[{:>3} ms] {mirror:>4}: canceled, closing the connection",
            cx.now_ms()
        );
        cx.shield(cx.sleep(2)).await?;
        println!("[{:>3} ms] {mirror:>4}: closed", cx.now_ms());
        return Err(canceled);
    }
    println!("[{:>3} ms] {mirror:>4}: answered", cx.now_ms());
    Ok(format!("release.tar.gz from {mirror}"))
}

fn main() {
    let ran_on = ioswap::run(|cx| async move {
        println!("--- on {}", cx.backend());
        let won = race(
            &cx,
            (
                |cx| download(cx, "eu", 120),
                |cx| download(cx, "us", 40),
                |cx| download(cx, "asia", 80),
            ),
        )
        .await?;
        let file = match won.winner {
            Winner3::A(file) | Winner3::B(file) | Winner3::C(file) => file,
        };
        let alive = cx.live_tasks();
        println!(
            "[{:>3} ms] race: got {file}; tasks still alive: {alive} (main)",
            cx.now_ms()
        );
        Ok(cx.backend())
    });
    match ran_on {
        Ok("blocking") => println!(
            "\nBlocking runs a spawned task inline to completion, so there is nothing to race:\n\
             the first mirror answers and the others are never started. Try IOSWAP_BACKEND=fiber."
        ),
        Ok(_) => {}
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
