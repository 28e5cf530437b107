//! Each op as an SQE (`prepare`), and each CQE's result as the op's outcome (`finish`), by op
//! family: files, then sockets.

use std::ffi::CString;
use std::fs;
use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{self, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;

use io_core::{Canceled, Handle, Op, OpenOptions, Unsupported};
use io_uring::{opcode, squeue, types};

use super::sockaddr::{new_tcp_socket, sockaddr_of, socket_addr, SockAddr};
use super::{Aux, KernelMem};

/// The descriptor behind a handle this backend issued; a handle of another kind (a simulated
/// object) is refused with the typed [`Unsupported`].
fn fd_of(handle: &Handle, op: &'static str) -> io::Result<types::Fd> {
    handle
        .raw_fd()
        .map(types::Fd)
        .ok_or_else(|| Unsupported::io_error("uring", op))
}

/// The largest length one SQE can carry.
fn io_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// An offset `pread`/`pwrite` accept: io_uring reads `-1` (u64::MAX) as "the file's current
/// position", and larger than `i64::MAX` is `EINVAL` for the system calls; both are refused here.
fn file_offset(offset: u64) -> io::Result<u64> {
    if offset > i64::MAX as u64 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(offset)
}

/// Builds the SQE for `op`, with whatever extra kernel-visible memory it needs in `aux`.
pub(super) fn prepare(op: &mut Op, aux: &mut Aux) -> io::Result<squeue::Entry> {
    match op {
        Op::Nop => Ok(opcode::Nop::new().build()),
        Op::Open { .. }
        | Op::ReadAt { .. }
        | Op::WriteAt { .. }
        | Op::SyncAll { .. }
        | Op::Len { .. } => prepare_file(op, aux),
        Op::Accept { .. }
        | Op::Connect { .. }
        | Op::Recv { .. }
        | Op::Send { .. }
        | Op::Shutdown { .. } => prepare_net(op, aux),
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the uring backend does not know the op `{}`", other.name()),
        )),
    }
}

/// `prepare` for the file ops.
fn prepare_file(op: &mut Op, aux: &mut Aux) -> io::Result<squeue::Entry> {
    Ok(match op {
        Op::Open { path, options, .. } => {
            let flags = open_flags(options)?;
            let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte")
            })?;
            let entry = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
                .flags(flags | libc::O_CLOEXEC)
                .mode(options.mode())
                .build();
            *aux = Aux::Path(path);
            entry
        }
        Op::ReadAt { file, buf, offset } => opcode::Read::new(
            fd_of(file, "read_at")?,
            buf.as_mut_ptr(),
            io_len(buf.capacity()),
        )
        .offset(file_offset(*offset)?)
        .build(),
        Op::WriteAt { file, buf, offset } => {
            opcode::Write::new(fd_of(file, "write_at")?, buf.as_ptr(), io_len(buf.len()))
                .offset(file_offset(*offset)?)
                .build()
        }
        Op::SyncAll { file } => opcode::Fsync::new(fd_of(file, "sync_all")?).build(),
        Op::Len { file, .. } => {
            let statx = KernelMem::new(MaybeUninit::<libc::statx>::zeroed());
            let entry = opcode::Statx::new(
                fd_of(file, "len")?,
                c"".as_ptr(),
                statx.ptr().cast::<types::statx>(),
            )
            .flags(libc::AT_EMPTY_PATH)
            .mask(libc::STATX_SIZE)
            .build();
            *aux = Aux::Statx(statx);
            entry
        }
        other => unreachable!("`{}` is not a file op", other.name()),
    })
}

/// `prepare` for the socket ops (bind is a plain system call, made in `Ops::submit`).
fn prepare_net(op: &mut Op, aux: &mut Aux) -> io::Result<squeue::Entry> {
    Ok(match op {
        Op::Accept { listener, .. } => {
            let addr = KernelMem::new(SockAddr {
                // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
                storage: unsafe { mem::zeroed() },
                len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
            });
            let ptr = addr.ptr();
            // SAFETY: `ptr` points to the live allocation just made; only field addresses are
            // taken, nothing is read or written.
            let (storage, len) = unsafe {
                (
                    std::ptr::addr_of_mut!((*ptr).storage).cast::<libc::sockaddr>(),
                    std::ptr::addr_of_mut!((*ptr).len),
                )
            };
            let entry = opcode::Accept::new(fd_of(listener, "accept")?, storage, len)
                .flags(libc::SOCK_CLOEXEC)
                .build();
            *aux = Aux::Accept(addr);
            entry
        }
        Op::Connect { addr, .. } => {
            let socket = new_tcp_socket(addr)?;
            let sockaddr = KernelMem::new(sockaddr_of(addr));
            // SAFETY: the allocation was just made and is fully initialized; only field
            // addresses and the length are read.
            let (ptr, len) = unsafe {
                let p = sockaddr.ptr();
                (
                    std::ptr::addr_of!((*p).storage).cast::<libc::sockaddr>(),
                    (*p).len,
                )
            };
            let entry = opcode::Connect::new(types::Fd(socket.as_raw_fd()), ptr, len).build();
            *aux = Aux::Connect {
                socket: Some(socket),
                addr: sockaddr,
            };
            entry
        }
        Op::Recv { stream, buf } => opcode::Recv::new(
            fd_of(stream, "recv")?,
            buf.as_mut_ptr(),
            io_len(buf.capacity()),
        )
        .build(),
        Op::Send { stream, buf } => {
            opcode::Send::new(fd_of(stream, "send")?, buf.as_ptr(), io_len(buf.len()))
                .flags(libc::MSG_NOSIGNAL)
                .build()
        }
        Op::Shutdown { stream, how } => {
            let how = match how {
                net::Shutdown::Read => libc::SHUT_RD,
                net::Shutdown::Write => libc::SHUT_WR,
                net::Shutdown::Both => libc::SHUT_RDWR,
            };
            opcode::Shutdown::new(fd_of(stream, "shutdown")?, how).build()
        }
        other => unreachable!("`{}` is not a socket op", other.name()),
    })
}

/// Turns a CQE's result into the op's outcome, filling its outputs.
pub(super) fn finish(op: &mut Op, aux: &mut Aux, result: i32) -> io::Result<usize> {
    if result < 0 {
        if let Op::ReadAt { buf, .. } | Op::Recv { buf, .. } = op {
            buf.clear();
        }
        return Err(match -result {
            libc::ECANCELED => Canceled.into(),
            errno => io::Error::from_raw_os_error(errno),
        });
    }
    let count = result as usize;
    match op {
        Op::ReadAt { buf, .. } | Op::Recv { buf, .. } => {
            debug_assert!(count <= buf.capacity());
            // SAFETY: the kernel wrote `count` bytes (at most the capacity it was given) at the
            // start of the buffer.
            unsafe { buf.set_len(count) };
            Ok(count)
        }
        Op::Open { .. } | Op::Len { .. } => finish_file(op, aux, result),
        Op::Accept { .. } | Op::Connect { .. } => finish_net(op, aux, result),
        _ => Ok(count),
    }
}

/// `finish` for a successful file op with outputs besides its count.
fn finish_file(op: &mut Op, aux: &mut Aux, result: i32) -> io::Result<usize> {
    match op {
        Op::Open { file, .. } => {
            // SAFETY: a successful openat returns a new descriptor that nothing else owns.
            *file = Some(Handle::new(unsafe { fs::File::from_raw_fd(result) }));
            Ok(0)
        }
        Op::Len { len, .. } => {
            let Aux::Statx(statx) = aux else {
                unreachable!("a statx op always has its buffer")
            };
            // SAFETY: the statx completed successfully, so the kernel filled the structure.
            *len = unsafe { (*statx.ptr()).assume_init_ref().stx_size };
            Ok(0)
        }
        other => unreachable!("`{}` has no file outputs", other.name()),
    }
}

/// `finish` for a successful socket op with outputs besides its count.
fn finish_net(op: &mut Op, aux: &mut Aux, result: i32) -> io::Result<usize> {
    match op {
        Op::Accept { accepted, .. } => {
            // SAFETY: a successful accept returns a new descriptor that nothing else owns.
            let stream = unsafe { net::TcpStream::from_raw_fd(result) };
            let Aux::Accept(addr) = aux else {
                unreachable!("an accept op always has its sockaddr")
            };
            // SAFETY: the accept completed, so the kernel wrote the peer address and its length.
            let peer = unsafe { socket_addr(&*addr.ptr()) };
            // The connection is returned even if its peer is already gone (the address is then
            // unspecified): dropping it here would lose it.
            let peer = peer
                .or_else(|| stream.peer_addr().ok())
                .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
            *accepted = Some((Handle::new(stream), peer));
            Ok(0)
        }
        Op::Connect { stream, .. } => {
            let Aux::Connect { socket, .. } = aux else {
                unreachable!("a connect op always has its socket")
            };
            *stream = socket.take().map(Handle::new);
            Ok(0)
        }
        other => unreachable!("`{}` has no socket outputs", other.name()),
    }
}

/// `open(2)` flags from options, with std's validation rules.
fn open_flags(options: &OpenOptions) -> io::Result<i32> {
    let invalid = || Err(io::Error::from_raw_os_error(libc::EINVAL));
    let access = match (options.is_read(), options.is_write(), options.is_append()) {
        (true, false, false) => libc::O_RDONLY,
        (false, true, false) => libc::O_WRONLY,
        (true, true, false) => libc::O_RDWR,
        (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
        (true, _, true) => libc::O_RDWR | libc::O_APPEND,
        (false, false, false) => return invalid(),
    };
    let creating = options.is_create() || options.is_truncate() || options.is_create_new();
    if creating && !options.is_write() && !options.is_append() {
        return invalid();
    }
    if options.is_append() && options.is_truncate() && !options.is_create_new() {
        return invalid();
    }
    let creation = match (
        options.is_create(),
        options.is_truncate(),
        options.is_create_new(),
    ) {
        (false, false, false) => 0,
        (true, false, false) => libc::O_CREAT,
        (false, true, false) => libc::O_TRUNC,
        (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
        (_, _, true) => libc::O_CREAT | libc::O_EXCL,
    };
    Ok(access | creation)
}
