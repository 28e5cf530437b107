//! A primary/backup replicated key-value store over TCP with synced logs, written once: here
//! it serves on 127.0.0.1 on the default backend; `tests/sim_kv.rs` runs the same code in the
//! fiber backend's simulated world over a thousand seeds of crashes, partitions and disk
//! faults, and finds the planted bug (`Config::ack_before_sync`).
//!
//! ```sh
//! cargo run --example kv
//! ```

mod service;

use std::io;

use ioswap::Cx;
use service::{backup, call, primary, Config};

async fn demo(cx: Cx) -> io::Result<()> {
    let dir = std::env::temp_dir().join(format!("ioswap-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = |log: &str| Config {
        primary: "127.0.0.1:47401".parse().unwrap(),
        backup: "127.0.0.1:47402".parse().unwrap(),
        log: dir.join(log),
        ack_before_sync: false,
    };
    let (primary_config, backup_config) = (config("primary.log"), config("backup.log"));
    let addr = primary_config.primary;
    let backup_task = cx.spawn(move |cx| async move { Ok(backup(cx, backup_config).await) });
    let primary_task = cx.spawn(move |cx| async move { Ok(primary(cx, primary_config).await) });
    // The primary serves once it has caught up with the backup.
    let mut answer = Err(io::Error::from(io::ErrorKind::NotConnected));
    for _ in 0..50 {
        answer = call(&cx, addr, "SET greeting hello").await;
        if answer.is_ok() {
            break;
        }
        cx.sleep(20).await?;
    }
    println!("SET greeting hello -> {}", answer?);
    println!(
        "SET answer 42 -> {}",
        call(&cx, addr, "SET answer 42").await?
    );
    println!("GET greeting -> {}", call(&cx, addr, "GET greeting").await?);
    println!("GET missing -> {}", call(&cx, addr, "GET missing").await?);
    drop((primary_task, backup_task));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn main() {
    match ioswap::run(|cx| async move { Ok(demo(cx).await) }) {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            eprintln!("kv: {err}");
            std::process::exit(1);
        }
        Err(err) => {
            eprintln!("kv: {err}");
            std::process::exit(1);
        }
    }
}
