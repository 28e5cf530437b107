//! File reads served from the page cache inside `submit`.
//!
//! A read whose pages are cached needs no waiting: `preadv2` with `RWF_NOWAIT` copies them, or
//! says `EAGAIN` without blocking when it would have to wait for the device (or for a lock).
//! Trying that first makes a cached read one system call and no suspend, as `pread` on the
//! poll backend is, where an SQE costs the task a suspend, a completion and a wake-up besides
//! the kernel's own io_uring bookkeeping (`bench/`'s random-read: see DESIGN.md, "Cached reads").
//! Anything but a count falls back to the ring, which then gives the op's own outcome (the
//! descriptor's error, a short read at the end of a file, the device's data), so this path
//! changes when a read completes, never what it returns.

use io_core::Handle;

/// `preadv2(RWF_NOWAIT)` into `buf`'s spare capacity at `offset`: the count read (the buffer's
/// length set to it), or `None` if the ring must make the read (the pages are not cached, the
/// file cannot be read without waiting, or the call failed in any way).
pub(super) fn read(file: &Handle, buf: &mut Vec<u8>, offset: u64) -> Option<usize> {
    let fd = file.raw_fd()?;
    let offset = libc::off_t::try_from(offset).ok()?;
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.capacity(),
    };
    // SAFETY: `iov` names `buf`'s allocation, `capacity` bytes the call may write (and nothing
    // else reads while it does: the buffer is borrowed mutably); `fd` is open for as long as
    // `file` is borrowed. The call does not keep the pointer past its return.
    let count = unsafe { libc::preadv2(fd, &iov, 1, offset, libc::RWF_NOWAIT) };
    let count = usize::try_from(count).ok()?;
    debug_assert!(count <= buf.capacity());
    // SAFETY: the kernel wrote `count` bytes, at most the capacity it was given, at the start
    // of the buffer.
    unsafe { buf.set_len(count) };
    Some(count)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;

    use super::*;

    /// A file holding `bytes` (removed when the guard drops), and a handle reading it.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    fn file_with(name: &str, bytes: &[u8]) -> (Scratch, Handle) {
        let path =
            std::env::temp_dir().join(format!("ioswap-cached-read-{name}-{}", std::process::id()));
        fs::write(&path, bytes).unwrap();
        let handle = Handle::new(fs::File::open(&path).unwrap());
        (Scratch(path), handle)
    }

    #[test]
    fn a_cached_read_is_served_and_sets_the_length() {
        let (_keep, file) = file_with("served", b"hello, page cache");
        let mut buf = Vec::with_capacity(5);
        assert_eq!(read(&file, &mut buf, 7), Some(5));
        assert_eq!(buf, b"page ");
    }

    #[test]
    fn the_end_of_the_file_reads_as_zero_and_past_it_too() {
        let (_keep, file) = file_with("end", b"abc");
        let mut buf = Vec::with_capacity(8);
        assert_eq!(read(&file, &mut buf, 1), Some(2));
        assert_eq!(buf, b"bc");
        let mut buf = Vec::with_capacity(8);
        assert_eq!(read(&file, &mut buf, 3), Some(0));
        assert_eq!(read(&file, &mut buf, 1 << 40), Some(0));
        assert!(buf.is_empty());
    }

    #[test]
    fn what_cannot_be_read_at_once_goes_to_the_ring() {
        // An offset the call refuses, and a descriptor that cannot be read at an offset: each
        // is the ring's to answer, and the buffer is left as it was.
        let (_keep, file) = file_with("refused", b"abc");
        let mut buf = Vec::with_capacity(8);
        assert_eq!(read(&file, &mut buf, u64::MAX), None);
        let (socket, _peer) = UnixStream::pair().unwrap();
        assert_eq!(read(&Handle::new(socket), &mut buf, 0), None);
        assert!(buf.is_empty());
    }
}
