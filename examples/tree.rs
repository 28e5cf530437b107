//! `tree`: lists a directory tree with sizes and a checksum of each file, on the backend
//! `IOSWAP_BACKEND` picks.
//!
//! ```sh
//! cargo run --example tree -- src          # the crate's own sources
//! IOSWAP_BACKEND=poll cargo run --example tree -- .
//! ```
//!
//! Directories are listed with `fs::read_dir` (sorted by name on every backend) and walked with
//! `fs::symlink_metadata` (links are shown, never followed); each file is read whole with
//! `fs::read`, and its checksum is computed off the loop's thread with `spawn_blocking`, so a
//! big file's hashing never stalls the other I/O.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ioswap::fs::{self, FileType};
use ioswap::Cx;

/// FNV-1a, 64 bits: enough to tell files apart at a glance.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Prints the tree under `root`; returns (files, bytes).
async fn walk(cx: &Cx, root: &Path) -> io::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    // Depth first, without recursion: (path, depth).
    let mut stack: Vec<(PathBuf, usize)> = vec![(root.to_path_buf(), 0)];
    while let Some((path, depth)) = stack.pop() {
        let meta = fs::symlink_metadata(cx, &path).await?;
        let name = match depth {
            0 => path.display().to_string(),
            _ => path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        };
        let indent = "  ".repeat(depth);
        match meta.file_type() {
            FileType::Dir => {
                println!("{indent}{name}/");
                // Pushed in reverse, so they pop in name order.
                for entry in fs::read_dir(cx, &path).await?.into_iter().rev() {
                    stack.push((entry.path().to_path_buf(), depth + 1));
                }
            }
            FileType::File => {
                let data = fs::read(cx, &path).await?;
                let len = data.len() as u64;
                let sum = cx.spawn_blocking(move || checksum(&data)).await?;
                println!("{indent}{name}  {len} B  {sum:016x}");
                files += 1;
                bytes += len;
            }
            FileType::Symlink => {
                let target = fs::read_link(cx, &path).await?;
                println!("{indent}{name} -> {}", target.display());
            }
            _ => println!("{indent}{name}  (special)"),
        }
    }
    Ok((files, bytes))
}

fn main() -> ExitCode {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let outcome = ioswap::run(move |cx| async move { Ok((cx.backend(), walk(&cx, &root).await)) });
    match outcome {
        Ok((backend, Ok((files, bytes)))) => {
            eprintln!("tree: {files} files, {bytes} bytes ({backend} backend)");
            ExitCode::SUCCESS
        }
        Ok((_, Err(e))) => {
            eprintln!("tree: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tree: {e}");
            ExitCode::FAILURE
        }
    }
}
