//! Files through the op protocol, on every backend.
mod support;

use std::io;
use std::path::PathBuf;

use ioswap::{AbandonedWrite, Backend, Canceled, File, OpenOptions, Unsupported};

/// A fresh path in the temp dir, unique per test and backend; removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(test: &str, backend: Backend) -> TempPath {
        TempPath(
            std::env::temp_dir().join(format!("ioswap-{test}-{backend}-{}", std::process::id())),
        )
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Asserts the fiber backend refused real I/O with the typed error.
fn assert_unsupported(err: &io::Error) {
    assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
    let refusal = err.get_ref().and_then(|e| e.downcast_ref::<Unsupported>());
    assert_eq!(refusal.map(|u| u.backend), Some("fiber"), "{err}");
}

/// Write, sync, close, reopen, read back: the bytes survive the round trip.
fn file_round_trip(backend: Backend) {
    let path = TempPath::new("round-trip", backend);
    let p = path.0.clone();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let expected = data.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let file = File::create(&cx, &p).await?;
                let (written, back) = file.write_all_at(data, 0).await;
                written?;
                assert_eq!(back.len(), 100_000, "the buffer comes back");
                file.sync_all().await?;
                file.close().await?;
                let file = File::open(&cx, &p).await?;
                let len = file.len().await?;
                let read = file.read_to_end().await?;
                file.close().await?;
                Ok::<_, io::Error>((len, read))
            }
            .await)
        })
        .unwrap();
    match backend {
        Backend::Fiber => assert_unsupported(&result.unwrap_err()),
        _ => {
            let (len, read) = result.unwrap();
            assert_eq!(len, 100_000);
            assert!(read == expected, "read back different bytes");
            assert_eq!(std::fs::read(&path.0).unwrap(), expected);
        }
    }
}

/// `read_at`/`write_at` work at offsets; a read fills at most the buffer's capacity, at its
/// start, and past the end reads 0.
fn positional_reads_and_writes(backend: Backend) {
    let path = TempPath::new("positional", backend);
    let p = path.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&cx, &p)
                    .await?;
                file.write_all_at(b"hello world".to_vec(), 0).await.0?;
                file.write_all_at(b"W".to_vec(), 6).await.0?;
                let (n, buf) = file.read_at(Vec::with_capacity(5), 6).await;
                let middle = (n?, buf);
                let (n, buf) = file.read_at(vec![9; 3], 9).await;
                let tail = (n?, buf);
                let (n, buf) = file.read_at(Vec::with_capacity(8), 100).await;
                let past_end = (n?, buf.len());
                Ok::<_, io::Error>((middle, tail, past_end))
            }
            .await)
        })
        .unwrap();
    match backend {
        Backend::Fiber => assert_unsupported(&result.unwrap_err()),
        _ => {
            let (middle, tail, past_end) = result.unwrap();
            assert_eq!(middle, (5, b"World".to_vec()));
            assert_eq!(tail, (2, b"ld".to_vec()));
            assert_eq!(past_end, (0, 0));
        }
    }
}

/// `futures-io` on files: sequential writes through `AsyncWriteExt`, then lines read back with
/// the ecosystem's `BufReader` — the way codecs use a file.
fn futures_io_traits_on_a_file(backend: Backend) {
    use futures_lite::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use futures_lite::StreamExt;
    let path = TempPath::new("futures-io", backend);
    let p = path.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let mut file = File::create(&cx, &p).await?;
                file.write_all(b"first line\nsecond").await?;
                file.write_all(b" line\nthird line\n").await?;
                file.flush().await?;
                file.close().await?;
                let file = File::open(&cx, &p).await?;
                let lines: Vec<String> = BufReader::new(file).lines().try_collect().await?;
                Ok::<_, io::Error>(lines)
            }
            .await)
        })
        .unwrap();
    match backend {
        Backend::Fiber => assert_unsupported(&result.unwrap_err()),
        _ => assert_eq!(result.unwrap(), ["first line", "second line", "third line"]),
    }
}

/// Opening a missing file is `NotFound`, with the OS's error.
fn open_missing_file_is_not_found(backend: Backend) {
    let path = TempPath::new("missing", backend);
    let p = path.0.clone();
    let err = backend
        .run(|cx| async move { Ok(File::open(&cx, &p).await.map(drop)) })
        .unwrap()
        .unwrap_err();
    match backend {
        Backend::Fiber => assert_unsupported(&err),
        _ => assert_eq!(err.kind(), io::ErrorKind::NotFound),
    }
}

/// A task canceled before its I/O starts never starts it, and its buffer comes back.
fn canceled_task_starts_no_io(backend: Backend) {
    let path = TempPath::new("canceled-before", backend);
    let p = path.0.clone();
    let (is_canceled, capacity, exists) = backend
        .run(|cx| async move {
            let task = cx.current_task().unwrap();
            task.cancel();
            let done = cx
                .submit(ioswap::protocol::op::Op::Open {
                    path: p.clone(),
                    options: OpenOptions::new().write(true).create(true),
                    file: None,
                })
                .await;
            let (result, buf) = {
                let file =
                    ioswap::protocol::op::Handle::new(std::fs::File::open("/dev/null").unwrap());
                let done = cx
                    .submit(ioswap::protocol::op::Op::ReadAt {
                        file,
                        buf: Vec::with_capacity(64),
                        offset: 0,
                    })
                    .await;
                (done.result, done.op.into_buf())
            };
            assert!(Canceled::is_canceled(&result.unwrap_err()));
            Ok((
                done.result.is_err_and(|e| Canceled::is_canceled(&e)),
                buf.capacity(),
                p.exists(),
            ))
        })
        .unwrap();
    assert!(is_canceled);
    assert_eq!(capacity, 64);
    assert!(!exists, "a canceled open created the file");
}

/// `AsyncWrite::write` reports only bytes that reached the file: dropping the file right after
/// (no flush, no close) loses none of them.
fn trait_write_reports_only_bytes_in_the_file(backend: Backend) {
    use futures_lite::io::AsyncWriteExt;
    let path = TempPath::new("write-reported", backend);
    let p = path.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let mut file = File::create(&cx, &p).await?;
                let reported = file.write(b"hello").await?;
                drop(file);
                Ok::<_, io::Error>(reported)
            }
            .await)
        })
        .unwrap();
    match backend {
        Backend::Fiber => assert_unsupported(&result.unwrap_err()),
        _ => {
            let reported = result.unwrap();
            assert!(reported > 0, "nothing written");
            assert_eq!(std::fs::read(&path.0).unwrap(), &b"hello"[..reported]);
        }
    }
}

/// A `poll_write` answered `Pending` and polled again with the same bytes (futures-io's
/// contract) writes them once, not twice.
fn trait_write_polled_again_after_pending_writes_once(backend: Backend) {
    use futures_lite::io::AsyncWriteExt;
    let path = TempPath::new("write-once", backend);
    let p = path.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let mut file = File::create(&cx, &p).await?;
                let data = b"hello";
                let mut written = 0;
                // The first poll of each write may be Pending; poll the same bytes again.
                while written < data.len() {
                    let rest = &data[written..];
                    let mut write = file.write(rest);
                    written += match futures_lite::future::poll_once(&mut write).await {
                        Some(n) => n?,
                        None => write.await?,
                    };
                }
                file.close().await?;
                Ok::<_, io::Error>(())
            }
            .await)
        })
        .unwrap();
    match backend {
        Backend::Fiber => assert_unsupported(&result.unwrap_err()),
        _ => {
            result.unwrap();
            assert_eq!(std::fs::read(&path.0).unwrap(), b"hello");
        }
    }
}

/// A write given up on after `Pending` is never credited to a later write of other bytes: the
/// file holds exactly the bytes the writer was told were written. (Its bytes were in the kernel
/// and reached the file; the next write reports them as an `AbandonedWrite` instead of writing.)
fn a_given_up_trait_write_is_never_credited_to_other_bytes(backend: Backend) {
    use futures_lite::io::AsyncWriteExt;
    let path = TempPath::new("given-up-write", backend);
    let p = path.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let mut file = File::create(&cx, &p).await?;
                // Polled once, then given up: `Pending` while the write is in flight (uring);
                // blocking writes inline.
                let first = futures_lite::future::poll_once(file.write(b"AAAA"))
                    .await
                    .transpose()?;
                let then = file.write_all(b"BBBBBBBB").await;
                file.close().await?;
                Ok::<_, io::Error>((first, then))
            }
            .await)
        })
        .unwrap();
    match backend {
        Backend::Fiber => assert_unsupported(&result.unwrap_err()),
        // Poll, like blocking, writes at once when the socket or file takes the bytes: a
        // readiness-based write is only ever `Pending` before it has written anything.
        Backend::Blocking | Backend::Poll => {
            let (first, then) = result.unwrap();
            assert_eq!((first, then.ok()), (Some(4), Some(())));
            assert_eq!(std::fs::read(&path.0).unwrap(), b"AAAABBBBBBBB");
        }
        _ => {
            let (first, then) = result.unwrap();
            assert_eq!(first, None, "the first write was pending");
            let err = then.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            let report = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<AbandonedWrite>());
            assert_eq!(
                report,
                Some(&AbandonedWrite { written: 4, len: 4 }),
                "{err}"
            );
            let on_disk = std::fs::read(&path.0).unwrap();
            assert_eq!(String::from_utf8_lossy(&on_disk), "AAAA");
        }
    }
}

/// An offset past `i64::MAX` (`u64::MAX` included, which io_uring would read as "the current
/// position") is `InvalidInput`, as `pread`/`pwrite` give.
fn offset_past_i64_max_is_invalid_input(backend: Backend) {
    let path = TempPath::new("huge-offset", backend);
    let p = path.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let file = File::create(&cx, &p).await?;
                file.write_all_at(b"data".to_vec(), 0).await.0?;
                let (read, _) = file.read_at(Vec::with_capacity(4), u64::MAX).await;
                let (written, _) = file.write_at(b"x".to_vec(), u64::MAX).await;
                file.close().await?;
                Ok::<_, io::Error>((read.map_err(|e| e.kind()), written.map_err(|e| e.kind())))
            }
            .await)
        })
        .unwrap();
    match backend {
        Backend::Fiber => assert_unsupported(&result.unwrap_err()),
        _ => {
            let invalid = Err(io::ErrorKind::InvalidInput);
            assert_eq!(result.unwrap(), (invalid, invalid));
        }
    }
}

/// A resource no backend issued.
struct NotADescriptor;

impl ioswap::protocol::op::Resource for NotADescriptor {}

/// An op on a handle the backend did not issue (not a descriptor: another backend's object) is
/// refused with the typed `Unsupported` naming the backend and the op, on every backend, and
/// its buffer comes back.
fn op_on_a_foreign_handle_is_a_typed_unsupported(backend: Backend) {
    use ioswap::protocol::op::{Handle, Op};
    let (result, capacity) = backend
        .run(|cx| async move {
            let done = cx
                .submit(Op::ReadAt {
                    file: Handle::new(NotADescriptor),
                    buf: Vec::with_capacity(16),
                    offset: 0,
                })
                .await;
            Ok((done.result, done.op.into_buf().capacity()))
        })
        .unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    let refusal = err
        .get_ref()
        .unwrap()
        .downcast_ref::<Unsupported>()
        .unwrap();
    assert_eq!((refusal.backend, refusal.op), (backend.name(), "read_at"));
    assert_eq!(capacity, 16);
}

conformance!(
    op_on_a_foreign_handle_is_a_typed_unsupported,
    a_given_up_trait_write_is_never_credited_to_other_bytes,
    offset_past_i64_max_is_invalid_input,
    trait_write_reports_only_bytes_in_the_file,
    trait_write_polled_again_after_pending_writes_once,
    file_round_trip,
    futures_io_traits_on_a_file,
    positional_reads_and_writes,
    open_missing_file_is_not_found,
    canceled_task_starts_no_io,
);
