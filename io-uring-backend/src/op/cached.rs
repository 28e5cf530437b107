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

/// What [`Handle::hint`] says of a handle here: not yet looked at (0, every new handle), a file
/// whose reads are tried from the cache, or one whose reads always go to the ring (opened
/// `O_DIRECT`, on a file system without `RWF_NOWAIT`, or not a file one reads at offsets).
const UNKNOWN: u8 = 0;
const TRY: u8 = 1;
const RING: u8 = 2;

/// `preadv2(RWF_NOWAIT)` into `buf`'s spare capacity at `offset`: the count read (the buffer's
/// length set to it), or `None` if the ring must make the read (the pages are not all cached,
/// the file cannot be read without waiting, or the call failed in any way; the buffer is then
/// untouched).
pub(super) fn read(file: &Handle, buf: &mut Vec<u8>, offset: u64) -> Option<usize> {
    let hint = file.hint();
    if hint.get() == RING {
        return None;
    }
    let fd = file.raw_fd()?;
    if hint.get() == UNKNOWN {
        // Once per handle: a direct read waits for the device even with `RWF_NOWAIT`.
        // SAFETY: `F_GETFL` only reads the open file's flags; `fd` is open while `file` is.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        hint.set(if flags < 0 || flags & libc::O_DIRECT != 0 {
            RING
        } else {
            TRY
        });
        if hint.get() == RING {
            return None;
        }
    }
    let start = libc::off_t::try_from(offset).ok()?;
    let mut count = 0;
    // A short count is the end of the file or the first page that is not cached; the ring, like
    // `pread`, reads a regular file in full up to its end, so the rest is tried too, and only a
    // count of 0 (the end) or a read that would wait (the ring's then) ends it early. The first
    // call is made even for no room: its errors are the ring's too.
    loop {
        let at = start.checked_add(libc::off_t::try_from(count).ok()?)?;
        let rest = libc::iovec {
            // SAFETY: `count` is at most the capacity: the pointer stays within (or one past
            // the end of) `buf`'s allocation.
            iov_base: unsafe { buf.as_mut_ptr().add(count) }.cast(),
            iov_len: buf.capacity() - count,
        };
        // SAFETY: `rest` names the spare room of `buf`'s allocation after the bytes already
        // read, which the call may write (nothing else reads it: the buffer is borrowed
        // mutably); `fd` is open for as long as `file` is borrowed. The call does not keep the
        // pointer past its return.
        let more = unsafe { libc::preadv2(fd, &rest, 1, at, libc::RWF_NOWAIT) };
        match usize::try_from(more) {
            Ok(0) => break,
            Ok(more) => {
                count += more;
                if count >= buf.capacity() {
                    break;
                }
            }
            Err(_) => {
                let errno = std::io::Error::last_os_error().raw_os_error();
                if matches!(errno, Some(libc::EOPNOTSUPP | libc::ESPIPE)) {
                    hint.set(RING); // no `RWF_NOWAIT` there, or no offsets: it will not change
                }
                return None;
            }
        }
    }
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

    /// `read`, or where the temp directory's file system has no `RWF_NOWAIT` (tmpfs), the
    /// check that it said so: `None`, and the handle's reads go to the ring from then on.
    fn read_or_ring(file: &Handle, buf: &mut Vec<u8>, offset: u64) -> Option<usize> {
        let count = read(file, buf, offset);
        if count.is_none() {
            assert_eq!(file.hint().get(), RING, "a cached file read was refused");
            assert_eq!(read(file, buf, offset), None);
        }
        count
    }

    #[test]
    fn a_cached_read_is_served_and_sets_the_length() {
        let (_keep, file) = file_with("served", b"hello, page cache");
        let mut buf = Vec::with_capacity(5);
        if read_or_ring(&file, &mut buf, 7).is_some() {
            assert_eq!(buf, b"page ");
            assert_eq!(file.hint().get(), TRY);
        }
    }

    #[test]
    fn the_end_of_the_file_reads_as_zero_and_past_it_too() {
        let (_keep, file) = file_with("end", b"abc");
        let mut buf = Vec::with_capacity(8);
        if read_or_ring(&file, &mut buf, 1) == Some(2) {
            assert_eq!(buf, b"bc");
            let mut buf = Vec::with_capacity(8);
            assert_eq!(read(&file, &mut buf, 3), Some(0));
            assert_eq!(read(&file, &mut buf, 1 << 40), Some(0));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn what_cannot_be_read_at_once_goes_to_the_ring() {
        // An offset the call refuses, and a descriptor that cannot be read at an offset: each
        // is the ring's to answer, and the buffer is left as it was. A socket's reads go to the
        // ring from then on, without a call.
        let (_keep, file) = file_with("refused", b"abc");
        let mut buf = Vec::with_capacity(8);
        assert_eq!(read(&file, &mut buf, u64::MAX), None);
        let (socket, _peer) = UnixStream::pair().unwrap();
        let socket = Handle::new(socket);
        assert_eq!(read(&socket, &mut buf, 0), None);
        assert_eq!(socket.hint().get(), RING);
        assert!(buf.is_empty());
    }
}
