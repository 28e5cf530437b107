//! File reads served from the page cache inside submit (`UringIo::set_cached_reads`): they
//! return what the ring returns, whatever part of the file is cached, and a read that would
//! wait for the device (a file opened `O_DIRECT`) is never made on the loop's thread.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use io_core::{Handle, Op};
use io_uring_backend::UringIo;

/// A file in the target's scratch directory (a disk file system, whose page cache can be
/// dropped; tmpfs has no `RWF_NOWAIT` and no `O_DIRECT`), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, bytes: &[u8]) -> Scratch {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join(format!("ioswap-cached-{name}-{}", std::process::id()));
        fs::write(&path, bytes).unwrap();
        Scratch(path)
    }

    fn open(&self) -> fs::File {
        fs::File::open(&self.0).unwrap()
    }

    /// Drops the cached pages of `len` bytes from `from` (0: to the end).
    fn uncache(&self, from: usize, len: usize) {
        let file = self.open();
        file.sync_all().unwrap();
        // SAFETY: advice on an open descriptor; it reads no memory of ours.
        let rc = unsafe {
            libc::posix_fadvise(
                file.as_raw_fd(),
                from as libc::off_t,
                len as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        assert_eq!(rc, 0);
    }
}

/// Whether this file system serves `RWF_NOWAIT` reads (tmpfs, say, does not: every read then
/// goes to the ring, and the cached path is never taken).
fn nowait_here(file: &Scratch) -> bool {
    let file = file.open();
    let mut byte = 0u8;
    let iov = libc::iovec {
        iov_base: (&raw mut byte).cast(),
        iov_len: 1,
    };
    // SAFETY: `iov` names one byte of ours; the descriptor is open.
    let count = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
    count >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EOPNOTSUPP)
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// One read of `capacity` bytes at `offset`, as its op: the result and the bytes.
fn read(
    io: &UringIo,
    file: fs::File,
    capacity: usize,
    offset: u64,
) -> (Result<usize, String>, Vec<u8>) {
    io.run(move |cx| async move {
        let done = cx
            .submit(Op::ReadAt {
                file: Handle::new(file),
                buf: Vec::with_capacity(capacity),
                offset,
            })
            .await;
        Ok((done.result.map_err(|e| e.to_string()), done.op.into_buf()))
    })
    .unwrap()
}

fn ring_only() -> UringIo {
    let io = UringIo::new().unwrap();
    io.set_cached_reads(false);
    io
}

/// The first half cached and the second not: the cached path stops at the first page it would
/// wait for, and the read must still return all of it, as the ring (and `pread`) do for a
/// regular file — a short count only at its end.
#[test]
fn a_partly_cached_read_returns_all_the_ring_returns() {
    const LEN: usize = 1 << 20;
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let file = Scratch::new("partly", &data);
    let half_cached = || {
        file.uncache(0, 0);
        let mut head = vec![0; LEN / 2];
        std::os::unix::fs::FileExt::read_exact_at(&file.open(), &mut head, 0).unwrap();
        file.uncache(LEN / 2, 0); // what readahead brought in past the half
    };
    half_cached();
    let cached = UringIo::new().unwrap();
    let served = read(&cached, file.open(), LEN, 0);
    half_cached();
    let ring = read(&ring_only(), file.open(), LEN, 0);
    assert_eq!(ring.0, Ok(LEN));
    assert!(ring.1 == data, "the ring read other bytes");
    assert_eq!(served.0, Ok(LEN), "{:?}", cached.stats());
    assert!(served.1 == data, "the cached path read other bytes");
}

/// A direct read waits for the device even with `RWF_NOWAIT`: it goes to the ring.
#[test]
fn an_o_direct_file_is_read_through_the_ring() {
    const BLOCK: usize = 4096;
    let file = Scratch::new("direct", &[9; 4 * BLOCK]);
    file.uncache(0, 0);
    let direct = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&file.0)
    {
        Ok(direct) => direct,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            eprintln!("skipped: the target directory's file system has no O_DIRECT");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    // O_DIRECT wants the buffer aligned to the block: a Vec of 4 KiB blocks' capacity
    // allocated until one is (the allocator gives page-aligned ones often).
    let mut tried = Vec::new();
    let buf = loop {
        let buf: Vec<u8> = Vec::with_capacity(BLOCK);
        if buf.as_ptr() as usize % BLOCK == 0 {
            break buf;
        }
        tried.push(buf);
    };
    let io = UringIo::new().unwrap();
    let (result, bytes) = io
        .run(move |cx| async move {
            let done = cx
                .submit(Op::ReadAt {
                    file: Handle::new(direct),
                    buf,
                    offset: 0,
                })
                .await;
            Ok((done.result.map_err(|e| e.to_string()), done.op.into_buf()))
        })
        .unwrap();
    assert_eq!(result, Ok(BLOCK));
    assert!(bytes.iter().all(|&b| b == 9));
    assert_eq!(io.stats().reads_from_cache, 0, "{:?}", io.stats());
    assert!(io.stats().submitted >= 1);
}

/// Cached, a read is served at once; what it returns is the ring's, at the end of the file,
/// past it, with no room, at offsets the kernel refuses, and on a descriptor the read is not
/// allowed on.
#[test]
fn cached_reads_return_what_the_ring_returns() {
    let file = Scratch::new("same", b"0123456789");
    let write_only = || fs::OpenOptions::new().write(true).open(&file.0).unwrap();
    let cases: [(&str, usize, u64); 7] = [
        ("middle", 4, 3),
        ("to the end", 8, 6),
        ("at the end", 8, 10),
        ("past the end", 8, 1 << 40),
        ("no room", 0, 0),
        ("i64::MAX", 8, i64::MAX as u64),
        ("u64::MAX", 8, u64::MAX),
    ];
    for (what, capacity, offset) in cases {
        let served = read(&UringIo::new().unwrap(), file.open(), capacity, offset);
        let ring = read(&ring_only(), file.open(), capacity, offset);
        assert_eq!(served, ring, "{what}");
    }
    let served = read(&UringIo::new().unwrap(), write_only(), 8, 0);
    assert_eq!(served, read(&ring_only(), write_only(), 8, 0));
    assert!(served.0.is_err());
    let cached = UringIo::new().unwrap();
    assert_eq!(read(&cached, file.open(), 4, 3), (Ok(4), b"3456".to_vec()));
    let stats = cached.stats();
    if nowait_here(&file) {
        assert_eq!(
            (stats.reads_from_cache, stats.submitted),
            (1, 0),
            "{stats:?}"
        );
    } else {
        assert_eq!(
            (stats.reads_from_cache, stats.submitted),
            (0, 1),
            "{stats:?}"
        );
    }
}
