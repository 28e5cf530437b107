//! The store in the fiber backend's simulated world: a primary, a backup and a client that
//! writes keys and reads back every acknowledged one, under crashes, partitions, lost packets
//! and disk faults. `tests/sim_kv.rs` sweeps it over a thousand seeds;
//! `cargo run --example kv -- --sim SEED` runs one seed (and `--trace FILE` records it).

use std::io;

use ioswap::sim::{Control, Faults, Outcome, World};
use ioswap::{Cx, Scheduler};

use crate::service::{backup, call, primary, Config};

/// Keys written, one every `PACE_MS`: a run lasts long enough for crashes and partitions.
pub const KEYS: usize = 40;
const PACE_MS: u64 = 300;

pub fn config(world: &Control, bug: bool) -> Config {
    Config {
        primary: world.addr("primary", 7001),
        backup: world.addr("backup", 7002),
        log: "/data/kv.log".into(),
        ack_before_sync: bug,
    }
}

/// One call with a deadline: `None` if it failed or took too long.
pub async fn call_within(cx: &Cx, config: &Config, request: String) -> Option<String> {
    let addr = config.primary;
    let attempt = move |cx: Cx| async move { Ok(call(&cx, addr, &request).await) };
    match ioswap::timeout(cx, 3_000, attempt).await {
        Ok(Ok(Ok(answer))) => Some(answer),
        _ => None,
    }
}

/// Writes each key once (retrying until acknowledged), then reads every acknowledged key back.
async fn workload(cx: Cx, world: Control) -> Outcome {
    let config = config(&world, false);
    let mut acked = Vec::new();
    for key in 0..KEYS {
        let request = format!("SET k{key} v{key}");
        loop {
            if call_within(&cx, &config, request.clone()).await.as_deref() == Some("OK") {
                acked.push(key);
                cx.sleep(PACE_MS).await?;
                break;
            }
            cx.sleep(200).await?;
        }
    }
    for &key in &acked {
        loop {
            match call_within(&cx, &config, format!("GET k{key}")).await {
                Some(answer) if answer == format!("VALUE v{key}") => break,
                Some(answer) if answer.starts_with("VALUE") || answer == "NONE" => {
                    return Err(
                        format!("acknowledged write k{key}=v{key} lost: read {answer}").into(),
                    )
                }
                _ => cx.sleep(200).await?,
            }
        }
    }
    Ok(())
}

/// Runs a service in a host, starting it again after an error it returns (a disk error while
/// opening its log, say), as a supervisor would.
pub async fn supervise(
    cx: Cx,
    world: Control,
    bug: bool,
    serve: impl AsyncFn(Cx, Config) -> io::Result<()>,
) -> Outcome {
    loop {
        let _ = serve(cx.clone(), config(&world, bug)).await;
        cx.sleep(100).await?;
    }
}

/// Hostile but recoverable, with crashes often enough for a short run to meet some.
fn faults() -> Faults {
    let mut faults = Faults::default();
    faults.crash_every_ms = Some((2_000, 15_000));
    faults.restart_after_ms = Some((200, 3_000));
    faults
}

/// The world of one seed (`bug`: with the planted bug, `Config::ack_before_sync`), ready to
/// run, or to record first (`record_trace`, `record_decisions`).
pub fn world(seed: u64, bug: bool, scheduler: &Scheduler) -> World {
    World::new(seed)
        .scheduler(scheduler.clone())
        .faults(faults())
        .host("primary", move |cx, world| {
            supervise(cx, world, bug, async |cx, config| primary(cx, config).await)
        })
        .host("backup", move |cx, world| {
            supervise(cx, world, bug, async |cx, config| backup(cx, config).await)
        })
        .client("client", workload)
        .time_limit_ms(4 * 3_600_000)
}
