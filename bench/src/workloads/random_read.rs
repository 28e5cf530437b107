//! random-read: 4 KiB reads at random (seeded) block offsets of a page-cached file, N reads
//! split over 32 readers. The file is made once under `target/bench/` (each 4 KiB block starts
//! with its own offset, so every read is checked) and read through once before each
//! measurement so every page is cached: the figure is the read path, not the disk.

use std::fs;
use std::io::{self, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ioswap::{Backend, File};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{check, why, Measurement, Size, Unit, Workload};
use crate::runner::{self, timed, Runner, TokioClock};
use crate::BenchError;

/// Readers (tasks) sharing the reads.
const READERS: usize = 32;
/// Bytes per read.
const BLOCK: usize = 4096;

/// The raw io-uring floor's note.
const RAW_NOTE: &str = "floor of the ring's READ path: the io-uring crate, no executor, 32 READs in flight, one io_uring_enter per turn";

pub const WORKLOAD: Workload = Workload {
    name: "random-read",
    what: "200k reads of 4 KiB at random offsets of a page-cached 64 MiB file, 32 readers",
    unit: Unit::NsPerOp,
    opt_in: &[
        Runner::StdPread,
        Runner::RawIoUring,
        Runner::Monoio,
        Runner::Compio,
    ],
    warm_up: false,
    skip: |runner| match runner {
        Runner::Ioswap(Backend::Fiber) => Some(why::SIMULATED_IO),
        Runner::Ioswap(_)
        | Runner::Tokio
        | Runner::StdPread
        | Runner::RawIoUring
        | Runner::Monoio
        | Runner::Compio => None,
        _ => Some("not measured: tokio::fs is this workload's peer (issue 5)"),
    },
    note: |runner| match runner {
        Runner::Ioswap(Backend::Blocking) => {
            Some("inline: the 32 tasks read one after another, each read a pread")
        }
        Runner::Ioswap(Backend::Uring) => {
            Some("32 tasks: a cached read is a preadv2 inside submit, else a READ SQE")
        }
        Runner::Ioswap(Backend::Poll) => Some("32 tasks, each read a pread inside submit"),
        Runner::Tokio => Some("tokio::fs::File, seek + read_exact: spawn_blocking hops"),
        Runner::StdPread => Some("floor: FileExt::read_at (pread) in a loop, one thread"),
        Runner::RawIoUring => Some(RAW_NOTE),
        Runner::Monoio => Some("monoio::fs::File::read_at (io_uring READ), 32 tasks"),
        Runner::Compio => Some("compio::fs::File, AsyncReadAt::read_at, 32 tasks"),
        _ => None,
    },
    counted: false,
    measure,
};

/// The offsets each reader reads: the same for every runner.
fn offsets(size: &Size) -> Vec<Vec<u64>> {
    let blocks = size.file_mib * (1 << 20) / BLOCK as u64;
    let rng = io_core::SplitMix64::new(0x4ead);
    (0..READERS)
        .map(|_| {
            (0..size.reads / READERS)
                .map(|_| rng.below(blocks) * BLOCK as u64)
                .collect()
        })
        .collect()
}

/// Whether a block read at `offset` is what the file holds there.
fn intact(block: &[u8], offset: u64) -> bool {
    block.len() == BLOCK && block[..8] == offset.to_le_bytes()
}

/// Makes the file if it is not there at the right size, then reads it through once.
fn page_cached_file(size: &Size) -> Result<PathBuf, BenchError> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target_dir.join("bench");
    let path = dir.join(format!("random-read-{}MiB.dat", size.file_mib));
    let len = size.file_mib << 20;
    let io = |source: io::Error| BenchError::Output {
        path: path.clone(),
        source,
    };
    if fs::metadata(&path).map(|m| m.len()).ok() != Some(len) {
        fs::create_dir_all(&dir).map_err(io)?;
        let partial = path.with_extension("partial");
        let file = fs::File::create(&partial).map_err(io)?;
        let mut chunk = vec![0u8; 1 << 20];
        for start in (0..len).step_by(chunk.len()) {
            for (i, block) in chunk.chunks_mut(BLOCK).enumerate() {
                block[..8].copy_from_slice(&(start + (i * BLOCK) as u64).to_le_bytes());
            }
            file.write_all_at(&chunk, start).map_err(io)?;
        }
        fs::rename(&partial, &path).map_err(io)?;
    }
    let file = fs::File::open(&path).map_err(io)?;
    let mut chunk = vec![0u8; 1 << 20];
    for start in (0..len).step_by(chunk.len()) {
        file.read_exact_at(&mut chunk, start).map_err(io)?;
    }
    Ok(path)
}

fn measure(runner: Runner, size: &Size) -> Result<Measurement, BenchError> {
    let path = page_cached_file(size)?;
    let offsets = offsets(size);
    let reads = offsets.iter().map(Vec::len).sum::<usize>();
    let (good, wall) = timed(|| read_all(runner, &path, offsets));
    let good = good?;
    check(
        good == reads,
        WORKLOAD.name,
        runner,
        format!("{good} of {reads} reads returned their block"),
    )?;
    Ok(Measurement::per_op(wall, reads))
}

/// Reads every offset, each reader's share in order; returns how many reads were intact.
fn read_all(runner: Runner, path: &Path, offsets: Vec<Vec<u64>>) -> Result<usize, BenchError> {
    let failed = |error: io::Error| BenchError::Peer(format!("read: {error}"));
    let path = path.to_path_buf();
    match runner {
        Runner::Ioswap(backend) => backend
            .run(move |cx| async move {
                let file = match File::open(&cx, &path).await {
                    Ok(file) => Rc::new(file),
                    Err(error) => return Ok(Err(error)),
                };
                let readers: Vec<_> = offsets
                    .into_iter()
                    .map(|share| {
                        let file = file.clone();
                        cx.spawn(move |_| async move {
                            let mut buf = Vec::with_capacity(BLOCK);
                            let mut good = 0;
                            for offset in share {
                                let (n, back) = file.read_at(buf, offset).await;
                                if let Err(error) = n {
                                    return Ok(Err(error));
                                }
                                good += usize::from(intact(&back, offset));
                                buf = back;
                            }
                            Ok(Ok(good))
                        })
                    })
                    .collect();
                let mut good = 0;
                for reader in readers {
                    match reader.await? {
                        Ok(n) => good += n,
                        Err(error) => return Ok(Err(error)),
                    }
                }
                Ok(Ok(good))
            })?
            .map_err(failed),
        Runner::Tokio => runner::tokio_local(TokioClock::Real, async move {
            let readers: Vec<_> = offsets
                .into_iter()
                .map(|share| {
                    let path = path.clone();
                    tokio::task::spawn_local(async move {
                        let mut file = tokio::fs::File::open(&path).await?;
                        let mut buf = vec![0u8; BLOCK];
                        let mut good = 0;
                        for offset in share {
                            file.seek(SeekFrom::Start(offset)).await?;
                            file.read_exact(&mut buf).await?;
                            good += usize::from(intact(&buf, offset));
                        }
                        io::Result::Ok(good)
                    })
                })
                .collect();
            let mut good = 0;
            for reader in readers {
                good += reader.await.map_err(runner::tokio_join)?.map_err(failed)?;
            }
            Ok(good)
        })?,
        Runner::StdPread => {
            let file = fs::File::open(&path).map_err(failed)?;
            let mut buf = vec![0u8; BLOCK];
            let mut good = 0;
            for offset in offsets.into_iter().flatten() {
                let n = file.read_at(&mut buf, offset).map_err(failed)?;
                good += usize::from(intact(&buf[..n], offset));
            }
            Ok(good)
        }
        Runner::RawIoUring => {
            let file = fs::File::open(&path).map_err(failed)?;
            crate::uring_floor::raw_reads(&file, &offsets, BLOCK, intact).map_err(failed)
        }
        Runner::Monoio => {
            let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .build()
                .map_err(|error| BenchError::Peer(format!("monoio runtime: {error}")))?;
            runtime.block_on(async move {
                let file = Rc::new(monoio::fs::File::open(&path).await.map_err(failed)?);
                let readers: Vec<_> = offsets
                    .into_iter()
                    .map(|share| {
                        let file = file.clone();
                        monoio::spawn(async move {
                            let mut buf = Vec::with_capacity(BLOCK);
                            let mut good = 0;
                            for offset in share {
                                buf.clear();
                                let (n, back) = file.read_at(buf, offset).await;
                                n?;
                                good += usize::from(intact(&back, offset));
                                buf = back;
                            }
                            io::Result::Ok(good)
                        })
                    })
                    .collect();
                let mut good = 0;
                for reader in readers {
                    good += reader.await.map_err(failed)?;
                }
                Ok(good)
            })
        }
        Runner::Compio => {
            use compio::io::AsyncReadAt;
            let runtime = compio::runtime::Runtime::new()
                .map_err(|error| BenchError::Peer(format!("compio runtime: {error}")))?;
            runtime.block_on(async move {
                let file = Rc::new(compio::fs::File::open(&path).await.map_err(failed)?);
                let readers: Vec<_> = offsets
                    .into_iter()
                    .map(|share| {
                        let file = file.clone();
                        compio::runtime::spawn(async move {
                            let mut buf = Vec::with_capacity(BLOCK);
                            let mut good = 0;
                            for offset in share {
                                buf.clear();
                                let compio::BufResult(n, back) = file.read_at(buf, offset).await;
                                n?;
                                good += usize::from(intact(&back, offset));
                                buf = back;
                            }
                            io::Result::Ok(good)
                        })
                    })
                    .collect();
                let mut good = 0;
                for reader in readers {
                    good += reader
                        .await
                        .map_err(|_| BenchError::Peer("a compio reader task failed".into()))?
                        .map_err(failed)?;
                }
                Ok(good)
            })
        }
        _ => unreachable!(
            "random-read runs on ioswap, tokio, monoio, compio, std and the raw ring only"
        ),
    }
}
