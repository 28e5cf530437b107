//! Two tasks bat a ball over rendezvous channels (`bounded(cx, 0)`): every send completes only
//! once the other side has taken the ball, so the two tasks move in lockstep.
//!
//! ```sh
//! cargo run --example pingpong
//! ```
//!
//! The two players must run at the same time, so the second one is spawned with
//! `SpawnOptions::concurrent()`. The blocking backend runs tasks inline and refuses that spawn
//! up front (instead of deadlocking later), which this example prints.

use ioswap::channel::{self, Receiver, RecvError, SendError, Sender};
use ioswap::{Backend, Canceled, Cx, SpawnError, SpawnOptions};

const ROUNDS: u32 = 5;

/// Returns every ball it receives, one higher, after a 5 ms swing; stops when the table closes.
async fn ponger(cx: Cx, balls: Receiver<u32>, back: Sender<u32>) -> Result<u32, Canceled> {
    let mut hits = 0;
    loop {
        let ball = match balls.recv().await {
            Ok(ball) => ball,
            Err(RecvError::Closed) => return Ok(hits),
            Err(RecvError::Canceled) => return Err(Canceled),
        };
        cx.sleep(5).await?;
        match back.send(ball + 1).await {
            Ok(()) => hits += 1,
            Err(SendError::Closed(_)) => return Ok(hits),
            Err(SendError::Canceled(_)) => return Err(Canceled),
        }
    }
}

async fn game(cx: Cx) -> Result<Result<u32, SpawnError>, Canceled> {
    let (ping, balls) = channel::bounded(&cx, 0);
    let (back, pongs) = channel::bounded(&cx, 0);
    let opts = SpawnOptions::new().name("ponger").concurrent();
    let ponger = match cx.spawn_with(opts, |cx| ponger(cx, balls, back)) {
        Ok(task) => task,
        Err(refused) => return Ok(Err(refused)),
    };
    let mut ball = 0;
    for _ in 0..ROUNDS {
        if ping.send(ball).await.is_err() {
            break;
        }
        println!("[{:>3} ms] ping {ball} (taken)", cx.now_ms());
        ball = match pongs.recv().await {
            Ok(ball) => ball,
            Err(_) => break,
        };
        println!("[{:>3} ms] pong {ball}", cx.now_ms());
        cx.sleep(5).await?;
        ball += 1;
    }
    drop(ping); // closes the table: the ponger's next receive says Closed
    Ok(Ok(ponger.await?))
}

fn main() {
    for backend in Backend::compiled() {
        println!("--- on {backend}");
        match backend.run(game) {
            Ok(Ok(hits)) => println!("the ponger returned {hits} balls"),
            Ok(Err(refused)) => println!("not on this backend: {refused}"),
            Err(e) => println!("failed: {e}"),
        }
    }
}
