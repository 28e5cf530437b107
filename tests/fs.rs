//! Files through the op protocol, on every backend.
mod support;

use std::io;

use ioswap::{AbandonedWrite, Backend, Canceled, File, OpenOptions, Unsupported};
use support::{read_back, TempPath};

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
    let (len, read) = result.unwrap();
    assert_eq!(len, 100_000);
    assert!(read == expected, "read back different bytes");
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
    let (middle, tail, past_end) = result.unwrap();
    assert_eq!(middle, (5, b"World".to_vec()));
    assert_eq!(tail, (2, b"ld".to_vec()));
    assert_eq!(past_end, (0, 0));
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
                let mut file = File::create(&cx, &p).await?.compat();
                file.write_all(b"first line\nsecond").await?;
                file.write_all(b" line\nthird line\n").await?;
                file.flush().await?;
                file.close().await?;
                let file = File::open(&cx, &p).await?.compat();
                let lines: Vec<String> = BufReader::new(file).lines().try_collect().await?;
                Ok::<_, io::Error>(lines)
            }
            .await)
        })
        .unwrap();
    assert_eq!(result.unwrap(), ["first line", "second line", "third line"]);
}

/// Opening a missing file is `NotFound`, with the OS's error.
fn open_missing_file_is_not_found(backend: Backend) {
    let path = TempPath::new("missing", backend);
    let p = path.0.clone();
    let err = backend
        .run(|cx| async move { Ok(File::open(&cx, &p).await.map(drop)) })
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
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
                // Never submitted: on any backend this handle would be refused as `Unsupported`.
                let file = ioswap::protocol::op::Handle::new(NotADescriptor);
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
            // Looked up through the backend (fiber's disk is its own), shielded from the cancel.
            let exists = cx.shield(File::open(&cx, &p)).await.is_ok();
            Ok((
                done.result.is_err_and(|e| Canceled::is_canceled(&e)),
                buf.capacity(),
                exists,
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
                let mut file = File::create(&cx, &p).await?.compat();
                let reported = file.write(b"hello").await?;
                drop(file);
                Ok::<_, io::Error>((reported, read_back(&cx, &p).await?))
            }
            .await)
        })
        .unwrap();
    let (reported, in_file) = result.unwrap();
    assert!(reported > 0, "nothing written");
    assert_eq!(in_file, &b"hello"[..reported]);
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
                let mut file = File::create(&cx, &p).await?.compat();
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
                read_back(&cx, &p).await
            }
            .await)
        })
        .unwrap();
    assert_eq!(result.unwrap(), b"hello");
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
                let mut file = File::create(&cx, &p).await?.compat();
                // Polled once, then given up: `Pending` while the write is in flight (uring);
                // blocking writes inline.
                let first = futures_lite::future::poll_once(file.write(b"AAAA"))
                    .await
                    .transpose()?;
                let then = file.write_all(b"BBBBBBBB").await;
                file.close().await?;
                Ok::<_, io::Error>((first, then, read_back(&cx, &p).await?))
            }
            .await)
        })
        .unwrap();
    let (first, then, on_disk) = result.unwrap();
    match backend {
        // Poll, like blocking, writes at once when the socket or file takes the bytes: a
        // readiness-based write is only ever `Pending` before it has written anything. Fiber's
        // disk has no latency in a plain run (`Faults::none`): its writes complete at once too.
        Backend::Blocking | Backend::Poll | Backend::Fiber => {
            assert_eq!((first, then.ok()), (Some(4), Some(())));
            assert_eq!(on_disk, b"AAAABBBBBBBB");
        }
        _ => {
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
    let invalid = Err(io::ErrorKind::InvalidInput);
    assert_eq!(result.unwrap(), (invalid, invalid));
}

/// Open follows `open(2)`: `create_new` refuses an existing file, `truncate` empties one, and a
/// write on an `append` file goes to its end whatever the offset (as `pwrite` on `O_APPEND`).
fn open_modes_create_new_truncate_and_append(backend: Backend) {
    let path = TempPath::new("open-modes", backend);
    let p = path.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&cx, &p)
                    .await?;
                file.write_all_at(b"hello".to_vec(), 0).await.0?;
                file.close().await?;
                let again = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&cx, &p)
                    .await
                    .map(drop)
                    .map_err(|e| e.kind());
                let file = OpenOptions::new().append(true).open(&cx, &p).await?;
                let (appended, _) = file.write_at(b" world".to_vec(), 0).await;
                file.close().await?;
                let after_append = read_back(&cx, &p).await?;
                let file = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&cx, &p)
                    .await?;
                let truncated_len = file.len().await?;
                file.close().await?;
                Ok::<_, io::Error>((again, appended?, after_append, truncated_len))
            }
            .await)
        })
        .unwrap();
    let (again, appended, after_append, truncated_len) = result.unwrap();
    assert_eq!(again, Err(io::ErrorKind::AlreadyExists));
    assert_eq!(appended, 6);
    assert_eq!(after_append, b"hello world");
    assert_eq!(truncated_len, 0);
}

/// A write past the end leaves zeros in the gap; `len` counts them.
fn a_write_past_the_end_leaves_zeros(backend: Backend) {
    let path = TempPath::new("past-end", backend);
    let p = path.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let file = File::create(&cx, &p).await?;
                file.write_all_at(b"x".to_vec(), 4).await.0?;
                let len = file.len().await?;
                let data = file.read_to_end().await?;
                file.close().await?;
                Ok::<_, io::Error>((len, data))
            }
            .await)
        })
        .unwrap();
    assert_eq!(result.unwrap(), (5, b"\0\0\0\0x".to_vec()));
}

/// A write on a file opened only for reading, or a read on one opened only for writing, fails
/// as Linux fails it: `EBADF`.
fn access_the_file_was_not_opened_for_is_ebadf(backend: Backend) {
    let path = TempPath::new("access-mode", backend);
    let p = path.0.clone();
    let result = backend
        .run(|cx| async move {
            Ok(async {
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .open(&cx, &p)
                    .await?;
                let (read, _) = file.read_at(Vec::with_capacity(4), 0).await;
                file.close().await?;
                let file = File::open(&cx, &p).await?;
                let (written, _) = file.write_at(b"x".to_vec(), 0).await;
                file.close().await?;
                let errno = |r: io::Result<usize>| r.map_err(|e| (e.kind(), e.raw_os_error()));
                Ok::<_, io::Error>((errno(read), errno(written)))
            }
            .await)
        })
        .unwrap();
    let ebadf = io::Error::from_raw_os_error(9);
    let bad_descriptor = Err((ebadf.kind(), Some(9)));
    assert_eq!(result.unwrap(), (bad_descriptor, bad_descriptor));
}

/// Options std refuses (no access, `create` or `truncate` without write access, `append` with
/// `truncate`) are `InvalidInput`, whether or not the file exists.
fn open_options_std_refuses_are_invalid_input(backend: Backend) {
    let path = TempPath::new("bad-options", backend);
    let p = path.0.clone();
    let kinds = backend
        .run(|cx| async move {
            let refused = [
                OpenOptions::new(),
                OpenOptions::new().read(true).create(true),
                OpenOptions::new().read(true).truncate(true),
                OpenOptions::new().append(true).truncate(true),
            ];
            let mut kinds = Vec::new();
            for options in refused {
                let opened = options.open(&cx, &p).await;
                kinds.push(opened.map(drop).map_err(|e| e.kind()));
            }
            Ok(kinds)
        })
        .unwrap();
    assert_eq!(kinds, [Err(io::ErrorKind::InvalidInput); 4]);
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
    open_modes_create_new_truncate_and_append,
    a_write_past_the_end_leaves_zeros,
    access_the_file_was_not_opened_for_is_ebadf,
    open_options_std_refuses_are_invalid_input,
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
