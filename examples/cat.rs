//! `cat`: copies a file through the Io protocol, on the backend `IOSWAP_BACKEND` picks.
//!
//! ```sh
//! cargo run --example cat -- SOURCE DEST   # copy SOURCE to DEST (created or truncated)
//! cargo run --example cat -- SOURCE        # print SOURCE
//! IOSWAP_BACKEND=blocking cargo run --example cat -- Cargo.toml
//! ```
//!
//! Reads go through `File::read_at` in 64 KiB chunks and writes through `write_all_at`, with
//! one buffer handed back and forth: owned buffers mean no copy between the two.

use std::io::{self, Write};
use std::process::ExitCode;

use ioswap::{Cx, File};

const CHUNK: usize = 64 * 1024;

async fn copy(cx: &Cx, source: &str, dest: Option<&str>) -> io::Result<u64> {
    let input = File::open(cx, source).await?;
    let output = match dest {
        Some(dest) => Some(File::create(cx, dest).await?),
        None => None,
    };
    let mut offset = 0u64;
    let mut buf = Vec::with_capacity(CHUNK);
    loop {
        let (n, chunk) = input.read_at(buf, offset).await;
        if n? == 0 {
            break;
        }
        buf = match &output {
            Some(output) => {
                let (written, chunk) = output.write_all_at(chunk, offset).await;
                written?;
                chunk
            }
            None => {
                io::stdout().write_all(&chunk)?;
                chunk
            }
        };
        offset += buf.len() as u64;
    }
    if let Some(output) = output {
        output.sync_all().await?;
        output.close().await?;
    }
    input.close().await?;
    Ok(offset)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (source, dest) = match args.as_slice() {
        [source] => (source.clone(), None),
        [source, dest] => (source.clone(), Some(dest.clone())),
        _ => {
            eprintln!("usage: cat SOURCE [DEST]");
            return ExitCode::from(2);
        }
    };
    let outcome = ioswap::run(move |cx| async move {
        let copied = copy(&cx, &source, dest.as_deref()).await;
        Ok((cx.backend(), copied))
    });
    match outcome {
        Ok((backend, Ok(bytes))) => {
            eprintln!("cat: {bytes} bytes through the {backend} backend");
            ExitCode::SUCCESS
        }
        Ok((_, Err(e))) => {
            eprintln!("cat: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cat: {e}");
            ExitCode::FAILURE
        }
    }
}
