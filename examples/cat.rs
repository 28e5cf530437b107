//! `cat`: copies a file, or standard input, through the Io protocol, on the backend
//! `IOSWAP_BACKEND` picks.
//!
//! ```sh
//! cargo run --example cat -- SOURCE DEST   # copy SOURCE to DEST (created or truncated)
//! cargo run --example cat -- SOURCE        # print SOURCE on standard output
//! echo hello | cargo run --example cat -- -  # copy standard input to standard output
//! IOSWAP_BACKEND=blocking cargo run --example cat -- Cargo.toml
//! ```
//!
//! File reads go through `File::read_at` in 64 KiB chunks and writes through `write_all_at`,
//! with one buffer handed back and forth: owned buffers mean no copy between the two. Standard
//! input and output go through `ioswap::stdio`, on the backend's thread pool (uring, poll) or
//! inline (blocking).

use std::io;
use std::process::ExitCode;

use ioswap::stdio::{stdin, stdout};
use ioswap::{Cx, File};

const CHUNK: usize = 64 * 1024;

/// Where the bytes come from.
enum Source {
    File(File),
    Stdin(ioswap::stdio::Stdin),
}

impl Source {
    async fn read(&self, buf: Vec<u8>, offset: u64) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Source::File(file) => file.read_at(buf, offset).await,
            Source::Stdin(stdin) => stdin.read(buf).await,
        }
    }
}

async fn copy(cx: &Cx, source: &str, dest: Option<&str>) -> io::Result<u64> {
    let input = match source {
        "-" => Source::Stdin(stdin(cx)),
        path => Source::File(File::open(cx, path).await?),
    };
    let output = match dest {
        Some(dest) => Some(File::create(cx, dest).await?),
        None => None,
    };
    let out = stdout(cx);
    let mut offset = 0u64;
    let mut buf = Vec::with_capacity(CHUNK);
    loop {
        let (n, chunk) = input.read(buf, offset).await;
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
                let (written, chunk) = out.write_all(chunk).await;
                written?;
                chunk
            }
        };
        offset += buf.len() as u64;
        buf.clear();
    }
    if let Some(output) = output {
        output.sync_all().await?;
        output.close().await?;
    }
    if let Source::File(file) = input {
        file.close().await?;
    }
    Ok(offset)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (source, dest) = match args.as_slice() {
        [source] => (source.clone(), None),
        [source, dest] => (source.clone(), Some(dest.clone())),
        _ => {
            eprintln!("usage: cat SOURCE|- [DEST]");
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
